//! `zumik diagnose`: the workload diagnostic over request history (DESIGN §5). Reads the files
//! or, with `--from-kafka`, the committed requests and completions on Kafka (optionally an
//! event-time window), runs [`crate::gate::diagnose`] and prints a table (or JSON with `--json`).
//! Against Kafka it also appends a `DiagnosticFlagged` record per flagged lane to the journal
//! topic (unless `--no-emit`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::core::router::{DiagnosticFlagged, JournalEntry};
use crate::events::codec::decode_input;
use crate::events::{InputEvent, Timestamp};
use crate::gate::diagnose;
use crate::gate::diagnose::Diagnosis;
use crate::gate::model::usd;
use crate::gate::trace::TraceBuilder;
use crate::kafka::{append_to_journal, read_topic, Topics};

use super::gate::{load_trace, ClusterArgs};
use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Request history: an Azure trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens; needs a
    /// --lane) or a JSONL export of zumik.request.v1 / zumik.completion.v1 events. Repeatable:
    /// several CSVs with their --lane each are diagnosed as several lanes.
    #[arg(
        long = "trace",
        short = 't',
        value_name = "FILE",
        required_unless_present = "from_kafka"
    )]
    pub traces: Vec<PathBuf>,
    /// Read the history from Kafka instead: the committed `zumik.request.v1` and
    /// `zumik.completion.v1` events on the requests and completions topics of the config's
    /// `[kafka]` section, up to their end at start.
    #[arg(long, conflicts_with = "traces")]
    pub from_kafka: bool,
    /// Only events with `ts` at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events with `ts` before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// With --from-kafka: do not append `DiagnosticFlagged` records to the journal topic.
    #[arg(long)]
    pub no_emit: bool,
    /// Lane (`provider/model`) of each CSV trace, in the same order (one --lane applies to all).
    #[arg(long = "lane", short = 'l', value_name = "LANE")]
    pub lanes: Vec<String>,
    /// Replicas of the candidate cluster whose utilisation is estimated.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub replicas: u32,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print the diagnosis as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let prices = cfg.price_table()?;
    let spec = args.cluster.spec(args.replicas);
    spec.validate()?;
    let window = |t: &Option<String>, flag: &str| {
        t.as_deref()
            .map(Timestamp::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
    };
    let (since, until) = (window(&args.since, "since")?, window(&args.until, "until")?);
    let in_window = |ts: Timestamp| since.is_none_or(|s| ts >= s) && until.is_none_or(|u| ts < u);
    let trace = if args.from_kafka {
        let topics = Topics::new(&cfg.kafka.topic_prefix);
        let mut jsonl = Vec::new();
        let (mut kept, mut skipped) = (0u64, 0u64);
        for topic in [&topics.requests, &topics.completions] {
            for payload in read_topic(&cfg.kafka, topic)? {
                // Only valid request/completion events count (the broker sent the rest to the DLQ).
                match decode_input(&payload) {
                    Ok(e @ (InputEvent::Request(_) | InputEvent::Completion(_)))
                        if in_window(e.ts()) =>
                    {
                        jsonl.extend_from_slice(&payload);
                        jsonl.push(b'\n');
                        kept += 1;
                    }
                    Ok(_) => {}
                    Err(_) => skipped += 1,
                }
            }
        }
        eprintln!(
            "read {kept} events from {} and {} ({skipped} invalid skipped)",
            topics.requests, topics.completions
        );
        let mut b = TraceBuilder::new();
        b.add_jsonl(&format!("kafka:{}", topics.requests), &jsonl)?;
        b.finish()?
    } else {
        if since.is_some() || until.is_some() {
            anyhow::bail!("--since/--until select a window of --from-kafka history");
        }
        load_trace(&args.traces, &args.lanes)?
    };
    let d = diagnose(&trace, &prices, &spec, &cfg.routing);
    if args.from_kafka && !args.no_emit {
        let flags = flagged(&d)?;
        let n = flags.len();
        let topics = Topics::new(&cfg.kafka.topic_prefix);
        append_to_journal(
            &cfg.kafka,
            &topics,
            flags
                .into_iter()
                .map(JournalEntry::DiagnosticFlagged)
                .collect(),
        )?;
        eprintln!(
            "{n} DiagnosticFlagged record(s) appended to {}",
            topics.journal
        );
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &d)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{} requests, {} tokens over {} – {} ({} minutes)",
        d.requests, d.tokens, d.window_start, d.window_end, d.minutes
    )?;
    writeln!(
        out,
        "candidate cluster: {} × {} GPUs at {}/GPU-h = {}/h; {} sequences ({} usable at headroom {}); prefill {} tok/s, decode {} tok/s per sequence",
        spec.replicas,
        spec.gpus_per_replica,
        usd(spec.gpu_hour_micros),
        usd(d.cluster_cost_per_hour_micros),
        spec.max_inflight(),
        d.usable_slots,
        d.headroom,
        spec.prefill_tokens_per_s,
        spec.decode_tokens_per_s
    )?;
    let lane_w = d
        .lanes
        .iter()
        .map(|l| l.lane.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:<lane_w$} {:>7} {:>7} {:>11} {:>11} {:>9} {:>6} {:>10} {:>7} {:>10}  flag",
        "lane",
        "req%",
        "tok%",
        "tok/min p50",
        "tok/min p95",
        "peak/mean",
        "cv",
        "managed",
        "util",
        "break-even"
    )?;
    for l in &d.lanes {
        writeln!(
            out,
            "{:<lane_w$} {:>6.1}% {:>6.1}% {:>11} {:>11} {:>9.2} {:>6.2} {:>10} {:>6.1}% {:>10}  {}",
            l.lane,
            l.request_share * 100.0,
            l.token_share * 100.0,
            l.tokens_per_min_p50,
            l.tokens_per_min_p95,
            l.peak_to_mean,
            l.cv,
            if l.price_key.is_some() { usd(l.managed_cost_micros) } else { "unpriced".to_owned() },
            l.utilisation * 100.0,
            l.break_even_utilisation.map_or("n/a".to_owned(), |b| format!("{:.1}%", b * 100.0)),
            if l.flagged { "GATE CANDIDATE" } else { "-" }
        )?;
    }
    let flagged = d.lanes.iter().filter(|l| l.flagged).count();
    writeln!(
        out,
        "{flagged} lane(s) flagged: estimated utilisation above break-even; run `zumik gate --lane …` on them"
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Thousandths of a ratio, rounded (the record keeps integers).
fn permille(x: f64) -> u64 {
    (x * 1000.0).round().max(0.0) as u64
}

/// One `DiagnosticFlagged` record per flagged lane, in lane order, each carrying the digest of
/// the whole diagnosis.
pub fn flagged(d: &Diagnosis) -> anyhow::Result<Vec<DiagnosticFlagged>> {
    let digest = hex(&Sha256::digest(serde_json::to_vec(d)?));
    Ok(d.lanes
        .iter()
        .filter(|l| l.flagged)
        .map(|l| DiagnosticFlagged {
            lane: l.lane.as_str().into(),
            window_start: d.window_start,
            window_end: d.window_end,
            requests: l.requests,
            tokens: l.tokens,
            request_share_permille: permille(l.request_share),
            token_share_permille: permille(l.token_share),
            tokens_per_min_p50: l.tokens_per_min_p50,
            tokens_per_min_p95: l.tokens_per_min_p95,
            tokens_per_min_peak: l.tokens_per_min_peak,
            peak_to_mean_permille: permille(l.peak_to_mean),
            cv_permille: permille(l.cv),
            utilisation_permille: permille(l.utilisation),
            break_even_permille: l.break_even_utilisation.map_or(0, permille),
            replicas: d.cluster.replicas,
            gpus_per_replica: d.cluster.gpus_per_replica,
            gpu_hour_micros: d.cluster.gpu_hour_micros,
            usable_slots: d.usable_slots,
            diagnosis_digest: digest.clone(),
        })
        .collect())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
