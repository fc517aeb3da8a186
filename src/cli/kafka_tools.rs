//! `zumik serve`, `zumik produce`, `zumik tail`: the Kafka-facing commands.

use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::events::codec::{decode_input, encode_input};
use crate::events::{DecisionV1, OutputEvent};
use crate::kafka::{run_broker, BrokerStats, Topics};

use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

/// `zumik serve`: the broker on real Kafka until SIGINT/SIGTERM (the batch in flight is
/// finished and committed first).
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let prices = Arc::new(cfg.price_table()?);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    eprintln!(
        "zumik serve: brokers {}, topics {}*, mode {:?}",
        cfg.kafka.brokers, cfg.kafka.topic_prefix, cfg.kafka.mode
    );
    // The broker loop stops on any Kafka error (an outage, a failed commit). Its state is
    // durable (snapshot + journal + committed offsets), so it is simply started again, with
    // backoff, until Kafka answers; only errors no retry can fix end the process.
    let mut backoff = Duration::from_secs(1);
    loop {
        let stats = Arc::new(BrokerStats::default());
        watch_recovery(stats.clone());
        match run_broker(&cfg.kafka, cfg.routing_arc(), prices.clone(), &stop, &stats) {
            Ok(()) => {
                eprintln!(
                    "zumik serve: stopped after {} inputs, {} decisions, {} DLQ records ({} journaled inputs recovered at start)",
                    stats.inputs.load(Ordering::Relaxed),
                    stats.decisions.load(Ordering::Relaxed),
                    stats.dlq.load(Ordering::Relaxed),
                    stats.recovered.load(Ordering::Relaxed)
                );
                break;
            }
            Err(e) if stop.load(Ordering::Relaxed) || !e.is_transient() => return Err(e.into()),
            Err(e) => {
                if stats.batches.load(Ordering::Relaxed) > 0 {
                    backoff = Duration::from_secs(1);
                }
                eprintln!(
                    "zumik serve: broker stopped: {e}; restarting from the snapshot and the journal in {} s",
                    backoff.as_secs()
                );
                let until = Instant::now() + backoff;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints when a broker run has recovered and when it committed its first batch (how long a
/// (re)start takes to process again).
fn watch_recovery(stats: Arc<BrokerStats>) {
    let started = Instant::now();
    std::thread::spawn(move || {
        while !stats.ready.load(Ordering::Relaxed) {
            if Arc::strong_count(&stats) == 1 {
                return; // that run ended before it was ready
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!(
            "zumik serve: recovered in {} ms: snapshot at input {}, {} journaled inputs read, {} replayed",
            started.elapsed().as_millis(),
            stats.restored_seq.load(Ordering::Relaxed),
            stats.journal_read.load(Ordering::Relaxed),
            stats.recovered.load(Ordering::Relaxed)
        );
        while stats.batches.load(Ordering::Relaxed) == 0 {
            if Arc::strong_count(&stats) == 1 {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!(
            "zumik serve: first batch committed {} ms after start",
            started.elapsed().as_millis()
        );
    });
}

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Input events (JSONL, `-` for stdin), each put on its topic keyed by lane / cluster /
    /// provider / tenant. Lines that are not valid events are sent to the requests topic as they
    /// are only with --raw (to exercise the DLQ); otherwise they are reported and skipped.
    #[arg(long, short = 'e')]
    pub events: PathBuf,
    /// Events per second (event order is kept); 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Send undecodable lines too (to the requests topic), for DLQ tests.
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// `zumik produce`: plays an event file onto the input topics.
pub fn produce(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let topics = Topics::new(&cfg.kafka.topic_prefix);
    crate::kafka::topics::ensure_topics(&cfg.kafka, &topics)?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .set("enable.idempotence", "true")
        .create()
        .context("creating the producer")?;
    let input: Box<dyn BufRead> = if args.events.as_os_str() == "-" {
        Box::new(BufReader::new(io::stdin().lock()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(&args.events)
                .with_context(|| format!("opening {}", args.events.display()))?,
        ))
    };
    let started = Instant::now();
    let (mut sent, mut skipped) = (0u64, 0u64);
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let (topic, key, payload) = match decode_input(line.as_bytes()) {
            Ok(e) => (
                topics.for_input(&e).to_owned(),
                e.key().to_owned(),
                encode_input(&e),
            ),
            Err(e) if !args.raw => {
                eprintln!("line {}: skipped: {e}", i + 1);
                skipped += 1;
                continue;
            }
            Err(_) => (topics.requests.clone(), String::new(), line.into_bytes()),
        };
        let mut record = BaseRecord::to(&topic).key(&key).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        sent += 1;
        if args.rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing")?;
    eprintln!(
        "zumik produce: {sent} events sent, {skipped} skipped, in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Start at the oldest decision instead of new ones.
    #[arg(long)]
    pub from_beginning: bool,
    /// Print the decision JSON as published.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many decisions.
    #[arg(long)]
    pub count: Option<u64>,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// `zumik tail`: follows the decision stream (committed decisions only).
pub fn tail(args: TailArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let topics = Topics::new(&cfg.kafka.topic_prefix);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .set("group.id", "zumik-tail")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .context("creating the consumer")?;
    let meta = consumer.fetch_metadata(Some(&topics.decisions), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        for p in t.partitions() {
            let start = if args.from_beginning {
                Offset::Beginning
            } else {
                Offset::End
            };
            tpl.add_partition_offset(&topics.decisions, p.id(), start)?;
        }
    }
    consumer.assign(&tpl)?;
    let mut out = io::stdout().lock();
    let mut seen = 0;
    while args.count.is_none_or(|c| seen < c) {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m?;
        let payload = m.payload().unwrap_or_default();
        if args.json {
            out.write_all(payload)?;
            writeln!(out)?;
        } else if let Ok(OutputEvent::Decision(d)) = serde_json::from_slice::<OutputEvent>(payload)
        {
            writeln!(out, "{}", human(&d))?;
        }
        seen += 1;
    }
    Ok(ExitCode::SUCCESS)
}

fn human(d: &DecisionV1) -> String {
    let name = |v: serde_json::Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    format!(
        "{} {:<12} {:<40} {:<18} {:<20} {:<14} -> {}",
        d.decided_at,
        d.request_id,
        d.lane,
        name(serde_json::to_value(d.profile).unwrap_or_default()),
        name(serde_json::to_value(d.mode).unwrap_or_default()),
        d.reason.as_str(),
        d.target.as_deref().unwrap_or("-")
    )
}
