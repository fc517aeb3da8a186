//! `zumik bench`: the end-to-end Kafka benchmark (DESIGN §9), on fresh topics of a real broker.
//!
//! 1. **Throughput.** N synthetic requests with their completions and telemetry are produced
//!    once; then (a) a raw passthrough — consume the input topics, produce every message unchanged
//!    to the decisions topic, in exactly-once transactions with the consumed offsets, same batch
//!    settings, no logic — and (b) the broker (`run_broker`, exactly-once, RocksDB snapshots on)
//!    each read all of them with their own consumer group. Prints inputs/s of both and the ratio,
//!    and the process RSS sampled during (b).
//! 2. **Latency.** Requests produced at a fixed rate to a broker in at-least-once mode, then in
//!    exactly-once mode; each decision's latency is the time from the request's `send` to the
//!    decision arriving at a consumer (read_uncommitted for at-least-once, read_committed for
//!    exactly-once). Prints p50/p99/max.
//!
//! Measures, never asserts: the numbers depend on the machine.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::Config;
use crate::events::codec::encode_input;
use crate::events::{InputEvent, OutputEvent};
use crate::kafka::topics::ensure_topics;
use crate::kafka::{run_broker, BrokerStats, DeliveryMode, KafkaConfig, Topics};
use crate::workload::{Workload, WorkloadSpec};

use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Requests of the throughput run (each with its completion, plus telemetry).
    #[arg(long, default_value_t = 200_000)]
    pub requests: u64,
    /// Request rate of the latency runs, per second.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seconds each latency run produces for.
    #[arg(long, default_value_t = 10)]
    pub latency_secs: u64,
    /// `batch_wait_ms` of the latency runs (the throughput runs use the config's).
    #[arg(long, default_value_t = 1)]
    pub latency_batch_wait_ms: u64,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Serialize)]
struct Latency {
    mode: &'static str,
    batch_wait_ms: u64,
    rate: u64,
    requests: u64,
    decisions: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct Figures {
    inputs: u64,
    requests: u64,
    batch_max: usize,
    batch_wait_ms: u64,
    passthrough_inputs_per_s: f64,
    broker_inputs_per_s: f64,
    broker_requests_per_s: f64,
    ratio: f64,
    broker_peak_rss_mb: f64,
    latency: Vec<Latency>,
}

/// A config on fresh topics of the configured broker.
fn fresh(base: &KafkaConfig, what: &str) -> KafkaConfig {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
    let prefix = format!("bench{nonce}-{what}.");
    KafkaConfig {
        topic_prefix: prefix.clone(),
        group_id: format!("{prefix}group"),
        transactional_id: format!("{prefix}tx"),
        ..base.clone()
    }
}

fn producer(
    cfg: &KafkaConfig,
    linger_ms: u32,
) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", linger_ms.to_string())
        .create()
        .context("creating the bench producer")
}

fn send(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> anyhow::Result<()> {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err((e, _)) => return Err(e).context("producing"),
        }
    }
}

/// Resident set size of this process now, MB.
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The raw passthrough: input topics → one output topic, exactly-once batches, no logic.
/// Returns the seconds it took to move `expected` messages.
fn passthrough(cfg: &KafkaConfig, topics: &Topics, expected: u64) -> anyhow::Result<f64> {
    // The broker's own output topic: same topics, same client settings.
    let out_topic = topics.decisions.clone();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("transactional.id", format!("{}pt", cfg.transactional_id))
        .set("transaction.timeout.ms", "60000")
        .create()?;
    let t = Duration::from_secs(30);
    producer.init_transactions(t)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", format!("{}pt", cfg.group_id))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()?;
    consumer.subscribe(&topics.inputs())?;
    let wait = Duration::from_millis(cfg.batch_wait_ms);
    let mut moved = 0u64;
    let mut started: Option<Instant> = None;
    while moved < expected {
        let Some(first) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let batch_start = Instant::now();
        started.get_or_insert(batch_start);
        producer.begin_transaction()?;
        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let (mut next, mut n) = (Some(first), 0usize);
        while let Some(m) = next.take() {
            let m = m?;
            n += 1;
            offsets.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
            let key = m
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .unwrap_or("");
            let mut record = BaseRecord::to(&out_topic)
                .key(key)
                .payload(m.payload().unwrap_or_default());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
            // Same batching as the broker: what is here, up to batch_max; wait only until
            // batch_wait_ms after the first message.
            if n < cfg.batch_max {
                next = consumer.poll(Duration::ZERO).or_else(|| {
                    wait.checked_sub(batch_start.elapsed())
                        .filter(|left| !left.is_zero())
                        .and_then(|left| consumer.poll(left))
                });
            }
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        let group = consumer
            .group_metadata()
            .context("passthrough consumer has no group metadata")?;
        producer.send_offsets_to_transaction(&tpl, &group, t)?;
        producer.commit_transaction(t)?;
        moved += n as u64;
    }
    Ok(started.map_or(0.0, |s| s.elapsed().as_secs_f64()))
}

/// The broker over pre-produced inputs: seconds to apply `expected` inputs, peak RSS (MB).
fn broker_run(cfg: &KafkaConfig, expected: u64) -> anyhow::Result<(f64, f64)> {
    let (stop, stats) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(BrokerStats::default()),
    );
    let handle = {
        let (cfg, stop, stats) = (cfg.clone(), stop.clone(), stats.clone());
        std::thread::spawn(move || {
            run_broker(
                &cfg,
                Arc::new(crate::core::RoutingConfig::default()),
                Arc::new(crate::core::PriceTable::embedded()),
                &stop,
                &stats,
            )
        })
    };
    let mut started: Option<Instant> = None;
    let mut peak: f64 = 0.0;
    loop {
        let done = stats.inputs.load(Ordering::Relaxed) + stats.dlq.load(Ordering::Relaxed);
        if started.is_none() && done > 0 {
            started = Some(Instant::now());
        }
        peak = peak.max(rss_mb());
        if done >= expected || handle.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("broker thread panicked"))??;
    Ok((secs, peak))
}

/// Requests at `rate` into a broker of `mode`; latency of each decision seen by a consumer.
///
/// `mode: None` measures the floor instead: no broker, the reader consumes the requests topic
/// itself (one Kafka hop, produce → consume; the broker's path has two).
fn latency(
    base: &KafkaConfig,
    args: &BenchArgs,
    mode: Option<DeliveryMode>,
) -> anyhow::Result<Latency> {
    let name = match mode {
        Some(DeliveryMode::AtLeastOnce) => "at_least_once",
        Some(DeliveryMode::ExactlyOnce) => "exactly_once",
        None => "kafka_one_hop",
    };
    let one_hop = mode.is_none();
    let mode = mode.unwrap_or(DeliveryMode::AtLeastOnce);
    let cfg = KafkaConfig {
        mode,
        batch_wait_ms: args.latency_batch_wait_ms,
        snapshot_dir: None,
        ..fresh(base, name)
    };
    let topics = Topics::new(&cfg.topic_prefix);
    ensure_topics(&cfg, &topics)?;
    let total = args.rate * args.latency_secs;
    let spec = WorkloadSpec {
        requests: total,
        rate_per_sec: u32::try_from(args.rate).context("--rate is too large")?,
        ..WorkloadSpec::default()
    };
    let w = Workload::new(spec)?;
    let setup = w.setup_events();
    let requests: Vec<InputEvent> = w
        .events()
        .filter(|e| matches!(e, InputEvent::Request(_)))
        .collect();
    let (stop, stats) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(BrokerStats::default()),
    );
    let broker = {
        let (cfg, stop, stats) = (cfg.clone(), stop.clone(), stats.clone());
        std::thread::spawn(move || {
            if one_hop {
                stats.ready.store(true, Ordering::Relaxed);
                return Ok(());
            }
            run_broker(
                &cfg,
                Arc::new(crate::core::RoutingConfig::default()),
                Arc::new(crate::core::PriceTable::embedded()),
                &stop,
                &stats,
            )
        })
    };
    while !stats.ready.load(Ordering::Relaxed) && !broker.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let p = producer(&cfg, 0)?;
    for e in setup.iter().filter(|_| !one_hop) {
        let before = stats.inputs.load(Ordering::Relaxed);
        send(&p, topics.for_input(e), e.key(), &encode_input(e))?;
        p.flush(Duration::from_secs(30))?;
        while stats.inputs.load(Ordering::Relaxed) <= before && !broker.is_finished() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let samples: Arc<Mutex<Vec<f64>>> = Arc::default();
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let (sent_at, samples, reading) = (sent_at.clone(), samples.clone(), reading.clone());
        let isolation = if mode == DeliveryMode::ExactlyOnce {
            "read_committed"
        } else {
            "read_uncommitted"
        };
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &cfg.brokers)
            .set("group.id", format!("{}latency", cfg.topic_prefix))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", isolation)
            .set("fetch.wait.max.ms", "1")
            .create()?;
        let read = if one_hop {
            &topics.requests
        } else {
            &topics.decisions
        };
        consumer.subscribe(&[read.as_str()])?;
        std::thread::spawn(move || {
            while reading.load(Ordering::Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let now = Instant::now();
                let payload = m.payload().unwrap_or_default();
                let id = match serde_json::from_slice::<OutputEvent>(payload) {
                    Ok(OutputEvent::Decision(d)) => Some(d.request_id.to_string()),
                    Err(_) => match crate::events::codec::decode_input(payload) {
                        Ok(InputEvent::Request(r)) => Some(r.request_id.to_string()),
                        _ => None,
                    },
                };
                if let Some(id) = id {
                    let sent = sent_at.lock().expect("not poisoned").remove(&id);
                    if let Some(t) = sent {
                        let ms = now.duration_since(t).as_secs_f64() * 1000.0;
                        samples.lock().expect("not poisoned").push(ms);
                    }
                }
            }
        })
    };
    // Let the reader join its group before the clock starts.
    std::thread::sleep(Duration::from_secs(3));
    let start = Instant::now();
    for (i, e) in requests.iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / args.rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if let InputEvent::Request(r) = e {
            sent_at
                .lock()
                .expect("not poisoned")
                .insert(r.request_id.to_string(), Instant::now());
        }
        send(&p, topics.for_input(e), e.key(), &encode_input(e))?;
    }
    p.flush(Duration::from_secs(30))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while samples.lock().expect("not poisoned").len() < requests.len() && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    reading.store(false, Ordering::Relaxed);
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    stop.store(true, Ordering::Relaxed);
    broker
        .join()
        .map_err(|_| anyhow::anyhow!("broker thread panicked"))??;
    let mut s = std::mem::take(&mut *samples.lock().expect("not poisoned"));
    s.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        if s.is_empty() {
            0.0
        } else {
            s[((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1]
        }
    };
    Ok(Latency {
        mode: name,
        batch_wait_ms: cfg.batch_wait_ms,
        rate: args.rate,
        requests: requests.len() as u64,
        decisions: s.len() as u64,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        max_ms: s.last().copied().unwrap_or(0.0),
    })
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.config.as_deref())?;
    let base = config.kafka.clone();
    let snapshots = std::env::temp_dir().join(format!("zumik-bench-{}", std::process::id()));

    // Throughput: one set of inputs, read by the passthrough and by the broker.
    let cfg = KafkaConfig {
        snapshot_dir: Some(snapshots.clone()),
        ..fresh(&base, "throughput")
    };
    let topics = Topics::new(&cfg.topic_prefix);
    ensure_topics(&cfg, &topics)?;
    let w = Workload::new(WorkloadSpec {
        requests: args.requests,
        rate_per_sec: 2_000,
        ..WorkloadSpec::default()
    })?;
    eprintln!(
        "zumik bench: producing {} requests and their traffic to {}*",
        args.requests, cfg.topic_prefix
    );
    let p = producer(&cfg, 5)?;
    let mut inputs = 0u64;
    for e in w.setup_events().into_iter().chain(w.events()) {
        send(&p, topics.for_input(&e), e.key(), &encode_input(&e))?;
        inputs += 1;
    }
    p.flush(Duration::from_secs(60))?;
    drop(p);
    eprintln!("zumik bench: passthrough over {inputs} inputs");
    let pt_secs = passthrough(&cfg, &topics, inputs)?;
    eprintln!("zumik bench: broker over the same {inputs} inputs (exactly-once, snapshots on)");
    let (broker_secs, peak_rss) = broker_run(&cfg, inputs)?;
    let _ = std::fs::remove_dir_all(&snapshots);

    let mut lat = Vec::new();
    for mode in [
        None,
        Some(DeliveryMode::AtLeastOnce),
        Some(DeliveryMode::ExactlyOnce),
    ] {
        eprintln!(
            "zumik bench: latency, {}, {} requests/s for {} s",
            mode.map_or("Kafka alone (one hop)".to_owned(), |m| format!("{m:?}")),
            args.rate,
            args.latency_secs
        );
        lat.push(latency(&base, &args, mode)?);
    }
    let per_s = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let f = Figures {
        inputs,
        requests: args.requests,
        batch_max: cfg.batch_max,
        batch_wait_ms: cfg.batch_wait_ms,
        passthrough_inputs_per_s: per_s(inputs, pt_secs),
        broker_inputs_per_s: per_s(inputs, broker_secs),
        broker_requests_per_s: per_s(args.requests, broker_secs),
        ratio: if broker_secs > 0.0 {
            pt_secs / broker_secs
        } else {
            0.0
        },
        broker_peak_rss_mb: peak_rss,
        latency: lat,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
    } else {
        println!(
            "throughput ({} inputs = {} requests + completions + telemetry; batch {} / {} ms):",
            f.inputs, f.requests, f.batch_max, f.batch_wait_ms
        );
        println!(
            "  passthrough (exactly-once, no logic)  {:>10.0} inputs/s",
            f.passthrough_inputs_per_s
        );
        println!(
            "  broker (exactly-once, snapshots on)   {:>10.0} inputs/s = {:.0} requests/s  ({:.0} % of passthrough)",
            f.broker_inputs_per_s,
            f.broker_requests_per_s,
            f.ratio * 100.0
        );
        println!(
            "  process RSS during the broker run     {:>10.1} MB (peak)",
            f.broker_peak_rss_mb
        );
        for l in &f.latency {
            println!(
                "latency {:<13} at {} req/s, batch wait {} ms: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} of {} decisions seen)",
                l.mode, l.rate, l.batch_wait_ms, l.p50_ms, l.p99_ms, l.max_ms, l.decisions, l.requests
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
