//! `zumik decide`: the offline router over a JSONL event file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::core::{Output, Router};
use crate::events::codec::{decode_input, encode_decision_into};
use crate::journal::{Format, Header, JournalWriter};

use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// Input events, one JSON object per line, in order; `-` reads stdin.
    #[arg(long, short = 'e')]
    pub events: PathBuf,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Exit with status 1 when any line was skipped as malformed or invalid.
    #[arg(long)]
    pub strict: bool,
    /// Also write the journal of the run (every command and event, for `zumik replay`);
    /// `.bin` = bincode, anything else JSONL.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Do not print the summary line on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Counts of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub decisions: u64,
    pub skipped: u64,
}

/// Routes every event of `input` and writes decisions to `out`, problems to `err`.
/// The same function serves the CLI and the tests.
pub fn decide_stream(
    input: impl BufRead,
    router: &mut Router,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<Summary> {
    decide_stream_journaled::<io::Sink>(input, router, out, err, None)
}

/// [`decide_stream`] that also writes the journal of the run.
pub fn decide_stream_journaled<J: Write>(
    input: impl BufRead,
    router: &mut Router,
    out: &mut impl Write,
    err: &mut impl Write,
    mut journal: Option<&mut JournalWriter<J>>,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    let mut output = if journal.is_some() {
        Output::with_journal()
    } else {
        Output::default()
    };
    let mut buf = Vec::with_capacity(512);
    for (idx, line) in input.split(b'\n').enumerate() {
        let line_no = idx + 1;
        let line = line.with_context(|| format!("reading events at line {line_no}"))?;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match decode_input(text) {
            Ok(event) => {
                summary.events += 1;
                router.apply(event, &mut output);
            }
            Err(e) => {
                summary.skipped += 1;
                writeln!(err, "line {line_no}: skipped: {e}")?;
                continue;
            }
        }
        if let Some(j) = journal.as_deref_mut() {
            for entry in output.journal.drain(..) {
                j.write(&entry)?;
            }
        }
        for w in output.warnings.drain(..) {
            writeln!(err, "line {line_no}: warning [{}]: {}", w.code, w.message)?;
        }
        for d in output.decisions.drain(..) {
            buf.clear();
            encode_decision_into(&d, &mut buf);
            buf.push(b'\n');
            out.write_all(&buf)?;
            summary.decisions += 1;
        }
        output.clear();
    }
    out.flush()?;
    Ok(summary)
}

pub fn run(args: DecideArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let prices = Arc::new(cfg.price_table()?);
    let mut router = Router::new(cfg.routing_arc(), prices);
    let input: Box<dyn BufRead> = if args.events.as_os_str() == "-" {
        Box::new(BufReader::new(io::stdin().lock()))
    } else {
        let f = File::open(&args.events)
            .with_context(|| format!("opening {}", args.events.display()))?;
        Box::new(BufReader::new(f))
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let mut err = io::stderr().lock();
    let s = match &args.journal {
        None => decide_stream(input, &mut router, &mut out, &mut err)?,
        Some(path) => {
            let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
            let header = Header::new(
                format!("zumik decide --events {}", args.events.display()),
                cfg.routing.clone(),
            );
            let mut j = JournalWriter::new(BufWriter::new(f), Format::from_path(path), &header)?;
            let s = decide_stream_journaled(input, &mut router, &mut out, &mut err, Some(&mut j))?;
            j.finish()?;
            s
        }
    };
    if !args.quiet {
        writeln!(
            err,
            "zumik decide: {} events, {} decisions, {} lines skipped",
            s.events, s.decisions, s.skipped
        )?;
    }
    Ok(if args.strict && s.skipped > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
