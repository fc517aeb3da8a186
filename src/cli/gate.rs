//! `zumik gate`: the replay gate of one lane (DESIGN §5). Reads the history files, runs the pure
//! gate ([`crate::gate`]) with a progress bar, prints the verdict, writes the sealed report as
//! JSON and as a self-contained HTML page.
//!
//! Exit status: 0 when the candidate passes, 1 when it fails, 2 on errors.
//! Also home of the trace and cluster options `zumik diagnose` shares.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Config;
use crate::gate::model::{parse_usd_micros, usd};
use crate::gate::report::{
    DEFAULT_CLUSTER_RELIABILITY, DEFAULT_MANAGED_RELIABILITY, DEFAULT_MARGIN, DEFAULT_MIN_OBSERVED,
    EMBEDDED_PRICES,
};
use crate::gate::trace::is_jsonl;
use crate::gate::{html, ClusterSpec, GateOptions, GatePlan, Trace, TraceBuilder};

use super::ConfigArg;

/// The candidate cluster's shape. Defaults describe one 8-GPU node at $2.50 per GPU-hour.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// GPUs per replica.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub gpus_per_replica: u32,
    /// Price of one GPU-hour in dollars (exact to the micro).
    #[arg(long = "gpu-hour-usd", default_value = "2.50", value_name = "USD", value_parser = parse_usd)]
    pub gpu_hour_micros: u64,
    /// Concurrent sequences one replica serves.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub seqs_per_replica: u32,
    /// Prompt (prefill) tokens per second per sequence.
    #[arg(
        long = "prefill-tps",
        default_value_t = 2000,
        value_name = "TOKENS_PER_S"
    )]
    pub prefill_tokens_per_s: u32,
    /// Generated (decode) tokens per second per sequence.
    #[arg(long = "decode-tps", default_value_t = 40, value_name = "TOKENS_PER_S")]
    pub decode_tokens_per_s: u32,
}

fn parse_usd(s: &str) -> Result<u64, String> {
    parse_usd_micros(s)
}

impl ClusterArgs {
    pub fn spec(&self, replicas: u32) -> ClusterSpec {
        ClusterSpec {
            replicas,
            gpus_per_replica: self.gpus_per_replica,
            gpu_hour_micros: self.gpu_hour_micros,
            seqs_per_replica: self.seqs_per_replica,
            prefill_tokens_per_s: self.prefill_tokens_per_s,
            decode_tokens_per_s: self.decode_tokens_per_s,
        }
    }
}

/// Reads history files. `lanes` are the lanes of the CSV files in the order given (one lane
/// applies to all of them); JSONL files name their lanes in the events.
pub fn load_trace(files: &[PathBuf], lanes: &[String]) -> anyhow::Result<Trace> {
    let mut read = Vec::with_capacity(files.len());
    for path in files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        read.push((path, bytes));
    }
    let csvs = read
        .iter()
        .filter(|(p, b)| !is_jsonl(&p.to_string_lossy(), b))
        .count();
    if csvs > 0 && lanes.len() != 1 && lanes.len() != csvs {
        bail!("{csvs} CSV trace(s) need a --lane each, in the same order (or one --lane for all); got {}", lanes.len());
    }
    let mut b = TraceBuilder::new();
    let mut k = 0;
    for (path, bytes) in &read {
        // Reports name files without their directory, so they do not depend on the checkout.
        let name = path
            .file_name()
            .map_or_else(|| path.to_string_lossy(), |n| n.to_string_lossy());
        if is_jsonl(&path.to_string_lossy(), bytes) {
            b.add_jsonl(&name, bytes)?;
        } else {
            let lane = if lanes.len() == 1 {
                &lanes[0]
            } else {
                &lanes[k]
            };
            k += 1;
            b.add_azure_csv(&name, bytes, lane)?;
        }
    }
    Ok(b.finish()?)
}

/// Where prices come from, for the record.
pub fn price_source(cfg: &Config) -> String {
    match &cfg.pricing.table {
        Some(p) => p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        None => EMBEDDED_PRICES.to_owned(),
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Request history: an Azure trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens) or a JSONL
    /// export of zumik.request.v1 / zumik.completion.v1 events. Repeatable.
    #[arg(long = "trace", short = 't', required = true, value_name = "FILE")]
    pub traces: Vec<PathBuf>,
    /// The lane to gate (`provider/model`); CSV traces are read as this lane's requests.
    #[arg(long, short = 'l', value_name = "LANE")]
    pub lane: String,
    /// Replicas of the candidate; default: the cheapest passing size of the sweep.
    #[arg(long, value_name = "N")]
    pub replicas: Option<u32>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Also simulate 1..=N replicas and report the cheapest passing size (0 = no sweep).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub sweep: u32,
    /// Required saving: pass when blended ≤ baseline × (1 − margin).
    #[arg(long, default_value_t = DEFAULT_MARGIN, value_name = "FRACTION")]
    pub margin: f64,
    /// Success rate assumed for managed providers without enough observed completions.
    #[arg(long, default_value_t = DEFAULT_MANAGED_RELIABILITY, value_name = "FRACTION")]
    pub managed_reliability: f64,
    /// Success rate assumed for the cluster without enough observed BYOC completions.
    #[arg(long, default_value_t = DEFAULT_CLUSTER_RELIABILITY, value_name = "FRACTION")]
    pub cluster_reliability: f64,
    /// Completions a side needs before its observed success rate replaces the assumed one.
    #[arg(long, default_value_t = DEFAULT_MIN_OBSERVED, value_name = "N")]
    pub min_observed: u64,
    /// Write the report (zumik.gate_report.v1 JSON) here.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write the self-contained HTML report page here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print only the verdict line and the digest.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// A progress bar on stderr when it is a terminal; hidden otherwise (logs, CI, tests).
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} requests ({eta})")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let prices = Arc::new(cfg.price_table()?);
    let trace = load_trace(&args.traces, std::slice::from_ref(&args.lane))?;
    let opts = GateOptions {
        lane: args.lane.clone(),
        spec: args.cluster.spec(args.replicas.unwrap_or(1)),
        candidate_replicas: args.replicas,
        sweep: args.sweep,
        margin: args.margin,
        managed_reliability: args.managed_reliability,
        cluster_reliability: args.cluster_reliability,
        min_observed_samples: args.min_observed,
        price_source: price_source(&cfg),
    };
    let plan = GatePlan::new(&trace, &cfg.routing, prices, opts)?;
    let bar = progress_bar(plan.total_work(), "replaying");
    let report = plan.run(&mut |n| bar.inc(n));
    bar.finish_and_clear();

    if let Some(path) = &args.out {
        let mut bytes =
            serde_json::to_vec_pretty(&report.to_value()).context("serializing the report")?;
        bytes.push(b'\n');
        write_file(path, &bytes)?;
    }
    if let Some(path) = &args.html {
        write_file(path, html::render(&report).as_bytes())?;
    }

    let mut out = std::io::stdout().lock();
    let res = &report.results;
    let verdict = if report.passed { "PASS" } else { "FAIL" };
    if !args.quiet {
        let win = &report.inputs["window"];
        writeln!(
            out,
            "lane {}: {} requests, window {} – {} ({:.1} min), priced as {}",
            report.lane,
            report.inputs["requests"],
            report.window.start,
            report.window.end,
            win["duration_ms"].as_f64().unwrap_or(0.0) / 60_000.0,
            report.inputs["price"]["key"].as_str().unwrap_or("?"),
        )?;
        if let Some(rows) = res["sweep"].as_array().filter(|r| !r.is_empty()) {
            writeln!(
                out,
                "{:>8} {:>6} {:>6} {:>12} {:>12} {:>12} {:>9} {:>7} {:>10}  verdict",
                "replicas",
                "gpus",
                "slots",
                "cluster",
                "overflow",
                "blended",
                "overflow",
                "util",
                "break-even"
            )?;
            for s in rows {
                let money = |k: &str| usd(s[k].as_u64().unwrap_or(0));
                let pct = |k: &str| {
                    s[k].as_f64()
                        .map_or("n/a".to_owned(), |x| format!("{:.1}%", x * 100.0))
                };
                writeln!(
                    out,
                    "{:>8} {:>6} {:>6} {:>12} {:>12} {:>12} {:>9} {:>7} {:>10}  {}",
                    s["replicas"].as_u64().unwrap_or(0),
                    s["gpus"].as_u64().unwrap_or(0),
                    s["usable_slots"].as_u64().unwrap_or(0),
                    money("cluster_cost_micros"),
                    money("managed_cost_micros"),
                    money("blended_cost_micros"),
                    pct("overflow_share"),
                    pct("utilisation"),
                    pct("break_even_utilisation"),
                    if s["passed"].as_bool() == Some(true) {
                        "pass"
                    } else {
                        "fail"
                    }
                )?;
            }
        }
    }
    writeln!(
        out,
        "{verdict}: {} replicas of {} for lane {}",
        res["candidate_replicas"],
        gpus_label(&args.cluster),
        report.lane
    )?;
    if !args.quiet {
        for reason in res["verdict"]["reasons"].as_array().into_iter().flatten() {
            writeln!(out, "  - {}", reason.as_str().unwrap_or(""))?;
        }
        writeln!(
            out,
            "  overflow {:.2}% of requests; BYOC TTFT p50 {} ms, p95 {} ms; break-even utilisation {}",
            res["overflow_share"].as_f64().unwrap_or(0.0) * 100.0,
            res["ttft_ms"]["byoc_p50"],
            res["ttft_ms"]["byoc_p95"],
            res["break_even_utilisation"].as_f64().map_or("n/a".to_owned(), |x| format!("{:.1}%", x * 100.0)),
        )?;
        for (code, w) in res["warnings"].as_object().into_iter().flatten() {
            writeln!(
                out,
                "  warning [{code}] ×{}: {}",
                w["count"],
                w["example"].as_str().unwrap_or("")
            )?;
        }
    }
    writeln!(out, "digest {}", report.digest)?;
    for (what, path) in [("report", &args.out), ("html", &args.html)] {
        if let (Some(p), false) = (path, args.quiet) {
            writeln!(out, "wrote {what} {}", p.display())?;
        }
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn gpus_label(c: &ClusterArgs) -> String {
    format!(
        "{} GPUs at {}/GPU-h",
        c.gpus_per_replica,
        usd(c.gpu_hour_micros)
    )
}
