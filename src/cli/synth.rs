//! `zumik synth`: writes a synthetic workload (the same generator as the benches and, later,
//! the demo) as input-event JSONL, for `zumik decide`, `zumik replay` and `zumik gate`.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::events::codec::encode_input;
use crate::workload::{Workload, WorkloadSpec};

#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Requests to generate.
    #[arg(long, default_value_t = 100_000)]
    pub requests: u64,
    /// Mean request rate (event time), requests per second.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u32,
    /// Seed: the same seed and settings give the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Full workload spec as TOML (every field of `WorkloadSpec`); overrides the flags above.
    #[arg(long)]
    pub spec: Option<PathBuf>,
}

pub fn run(args: SynthArgs) -> anyhow::Result<ExitCode> {
    let spec = match &args.spec {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => WorkloadSpec {
            requests: args.requests,
            rate_per_sec: args.rate,
            seed: args.seed,
            ..WorkloadSpec::default()
        },
    };
    let w = Workload::new(spec)
        .map_err(|e| anyhow::anyhow!("workload spec: field `{}`: {}", e.field, e.reason))?;
    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    for e in w.setup_events().into_iter().chain(w.events()) {
        out.write_all(&encode_input(&e))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
