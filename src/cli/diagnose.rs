//! `zumik diagnose`: the workload diagnostic over request history (DESIGN §5). Reads the files,
//! runs [`crate::gate::diagnose`] and prints a table (or JSON with `--json`).
//!
//! Emitting `DiagnosticFlagged` events needs the Kafka runtime and is not done here.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::gate::diagnose;
use crate::gate::model::usd;

use super::gate::{load_trace, ClusterArgs};
use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Request history: an Azure trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens; needs a
    /// --lane) or a JSONL export of zumik.request.v1 / zumik.completion.v1 events. Repeatable:
    /// several CSVs with their --lane each are diagnosed as several lanes.
    #[arg(long = "trace", short = 't', required = true, value_name = "FILE")]
    pub traces: Vec<PathBuf>,
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
    let trace = load_trace(&args.traces, &args.lanes)?;
    let d = diagnose(&trace, &prices, &spec, &cfg.routing);
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
