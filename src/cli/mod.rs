//! The `zumik` command line. Thin: parses arguments, reads and writes files, calls the core.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod bench;
pub mod decide;
pub mod demo;
pub mod diagnose;
pub mod gate;
pub mod kafka_tools;
pub mod replay;
pub mod schema;
pub mod synth;

/// Zumik execution broker.
#[derive(Debug, Parser)]
#[command(name = "zumik", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Route an event file offline: reads input events (JSONL, in order) and writes one
    /// zumik.decision.v1 per request to stdout. Deterministic: same input, same bytes.
    Decide(decide::DecideArgs),
    /// Audit: re-fold a journal and verify every recorded decision; explain, time-travel, what-if.
    Replay(replay::ReplayArgs),
    /// Workload diagnostic: which lanes are concentrated enough for a BYOC hot lane.
    Diagnose(diagnose::Args),
    /// Replay gate: simulate a candidate cluster on a lane's real history and write the report.
    Gate(gate::Args),
    /// The whole system on an embedded Kafka: broker, synthetic traffic with a burst and a
    /// cluster outage, and a live view of the decisions. Needs nothing installed.
    Demo(demo::DemoArgs),
    /// Run the broker on real Kafka (exactly-once by default) until SIGINT/SIGTERM.
    Serve(kafka_tools::ServeArgs),
    /// Play input events (JSONL) onto the input topics, optionally at a rate.
    Produce(kafka_tools::ProduceArgs),
    /// Follow the decision stream, human-readable or JSON.
    Tail(kafka_tools::TailArgs),
    /// End-to-end benchmark on a real Kafka: broker vs raw passthrough throughput, decision
    /// latency at a fixed rate (at-least-once and exactly-once), RSS.
    Bench(bench::BenchArgs),
    /// Write (or check) the JSON Schemas of the public events.
    Schema(schema::SchemaArgs),
    /// Write a synthetic workload (concentrated hot lanes + long tail) as input-event JSONL.
    Synth(synth::SynthArgs),
}

/// Common `--config` option.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file (TOML); defaults apply when omitted. ZUMIK_* variables override it.
    #[arg(long, short = 'c', env = "ZUMIK_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Runs the CLI; the binary's `main` calls this.
pub fn run() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Decide(args) => decide::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Diagnose(args) => diagnose::run(args),
        Command::Gate(args) => gate::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => kafka_tools::serve(args),
        Command::Produce(args) => kafka_tools::produce(args),
        Command::Tail(args) => kafka_tools::tail(args),
        Command::Schema(args) => schema::run(args),
        Command::Synth(args) => synth::run(args),
    }
}
