//! `zumik bench`: the end-to-end Kafka benchmark (DESIGN §9), on fresh topics of a real broker.
//!
//! 1. **Throughput.** N synthetic requests with their completions and telemetry are produced;
//!    then (a) a raw passthrough — consume the input topics, produce every message unchanged
//!    to the decisions topic, in exactly-once transactions with the consumed offsets, same batch
//!    settings, no logic — and (b) the broker (`run_broker`, exactly-once, RocksDB snapshots on)
//!    with each engine (the actix actors on the passthrough's topics, the inline router on a
//!    second set with the same inputs: a broker run journals on its topics, and a second run
//!    there would restore the first one's state), each with its own consumer group. Prints
//!    inputs/s of each and the ratio to the passthrough, and the process RSS sampled during each
//!    broker run.
//! 2. **Latency.** Requests produced at a fixed rate; each one's latency is the time from its
//!    `send` to its decision arriving at a consumer (read_uncommitted for at-least-once,
//!    read_committed for exactly-once). Four paths, so the broker's figures can be read against
//!    Kafka's own on the same machine: Kafka alone (one hop, the reader consumes the requests),
//!    a forwarder with the broker's client settings and no logic (two hops, the broker's path),
//!    the broker at-least-once, the broker exactly-once. Prints p50/p99/max. `--only` runs one
//!    part.
//!
//! Measures, never asserts: the numbers depend on the machine.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::Config;
use crate::events::codec::encode_input;
use crate::events::{InputEvent, OutputEvent};
use crate::kafka::topics::ensure_topics;
use crate::kafka::worker::{
    self, commit_transaction, run_broker_with, BatchSink, CommittedBatch, Delivery,
};
use crate::kafka::{BrokerStats, DeliveryMode, EngineKind, KafkaConfig, Topics};
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
    /// `linger.ms` of the latency runs' request producer (the platform's side): 0 sends each
    /// request at once; a small linger batches them, fewer and larger produce requests for the
    /// Kafka broker. Its wait is part of the measured latency.
    #[arg(long, default_value_t = 0)]
    pub producer_linger_ms: u32,
    /// Run only one part (default: both).
    #[arg(long, value_enum)]
    pub only: Option<Part>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Throughput,
    Latency,
}

#[derive(Debug, Serialize)]
struct Latency {
    mode: &'static str,
    batch_wait_ms: u64,
    producer_linger_ms: u32,
    rate: u64,
    requests: u64,
    decisions: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Broker batches (0 on the Kafka-only paths) and their mean commit time. At least once,
    /// a batch does not wait for its commit (its offsets are committed once its outputs are
    /// acknowledged, in a later round), so the mean is that of no wait: 0.
    batches: u64,
    commit_ms_avg: f64,
}

#[derive(Debug, Serialize)]
struct Figures {
    /// Absent with `--only latency`.
    throughput: Option<Throughput>,
    latency: Vec<Latency>,
}

#[derive(Debug, Serialize)]
struct Throughput {
    inputs: u64,
    requests: u64,
    batch_max: usize,
    batch_wait_ms: u64,
    passthrough_inputs_per_s: f64,
    /// The broker with each engine (`kafka.engine`), over the same inputs.
    broker: Vec<BrokerRun>,
}

#[derive(Debug, Serialize)]
struct BrokerRun {
    engine: EngineKind,
    inputs_per_s: f64,
    requests_per_s: f64,
    /// Of the passthrough's rate.
    ratio: f64,
    peak_rss_mb: f64,
    time: Tally,
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

fn producer(cfg: &KafkaConfig, linger_ms: u32) -> anyhow::Result<ThreadedProducer<Delivery>> {
    cfg.client_config()
        .set("enable.idempotence", "true")
        .set("linger.ms", linger_ms.to_string())
        .create_with_context(Delivery::default())
        .context("creating the bench producer")
}

fn send(
    p: &ThreadedProducer<Delivery>,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> anyhow::Result<()> {
    worker::send(p, BaseRecord::to(topic).key(key).payload(payload)).context("producing")
}

/// The raw passthrough: input topics → one output topic, exactly-once batches, no logic.
/// Returns the seconds it took to move `expected` messages.
fn passthrough(cfg: &KafkaConfig, topics: &Topics, expected: u64) -> anyhow::Result<f64> {
    // The broker's own output topic, its client settings and its commit, so the two differ
    // only by the broker's work (group and transactional id of their own).
    let out_topic = topics.decisions.clone();
    let own = KafkaConfig {
        group_id: format!("{}pt", cfg.group_id),
        transactional_id: format!("{}pt", cfg.transactional_id),
        ..cfg.clone()
    };
    let producer: ThreadedProducer<Delivery> =
        worker::producer_config(&own).create_with_context(Delivery::default())?;
    let t = Duration::from_secs(30);
    producer.init_transactions(t)?;
    let consumer: BaseConsumer = worker::consumer_config(&own).create()?;
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
            worker::send(
                &producer,
                BaseRecord::to(&out_topic)
                    .key(key)
                    .payload(m.payload().unwrap_or_default()),
            )?;
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
        commit_transaction(&producer, t)?;
        moved += n as u64;
    }
    Ok(started.map_or(0.0, |s| s.elapsed().as_secs_f64()))
}

/// Where the broker's time went in a throughput run (summed over its batches).
#[derive(Debug, Default, Serialize)]
struct Tally {
    batches: u64,
    /// First input to commit, summed over batches.
    batch_s: f64,
    /// Of which committing (exactly-once: send offsets + commit the transaction).
    commit_s: f64,
    snapshots: u64,
    snapshot_s: f64,
}

impl BatchSink for Tally {
    fn committed(&mut self, batch: CommittedBatch) {
        self.batches += 1;
        self.batch_s += batch.took.as_secs_f64();
        self.commit_s += batch.commit.as_secs_f64();
    }

    fn snapshot_written(&mut self, took: Duration) {
        self.snapshots += 1;
        self.snapshot_s += took.as_secs_f64();
    }
}

/// The broker with the default routing config until `stop`, and where its time went.
fn tallied_broker(
    cfg: &KafkaConfig,
    stop: &AtomicBool,
    stats: &BrokerStats,
) -> Result<Tally, crate::kafka::worker::BrokerError> {
    let mut tally = Tally::default();
    run_broker_with(
        cfg,
        Arc::new(crate::core::RoutingConfig::default()),
        Arc::new(crate::core::PriceTable::embedded()),
        stop,
        stats,
        &mut tally,
    )?;
    Ok(tally)
}

/// The broker over pre-produced inputs: seconds to apply `expected` inputs, peak RSS (MB), and
/// where the time went.
fn broker_run(cfg: &KafkaConfig, expected: u64) -> anyhow::Result<(f64, f64, Tally)> {
    let (stop, stats) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(BrokerStats::default()),
    );
    let handle = {
        let (cfg, stop, stats) = (cfg.clone(), stop.clone(), stats.clone());
        std::thread::Builder::new()
            .name("broker".into())
            .spawn(move || tallied_broker(&cfg, &stop, &stats))?
    };
    let mut started: Option<Instant> = None;
    let mut peak: f64 = 0.0;
    loop {
        let done = stats.inputs.load(Ordering::Relaxed) + stats.dlq.load(Ordering::Relaxed);
        if started.is_none() && done > 0 {
            started = Some(Instant::now());
        }
        peak = peak.max(crate::telemetry::rss_mb());
        if done >= expected || handle.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    let tally = handle
        .join()
        .map_err(|_| anyhow::anyhow!("broker thread panicked"))??;
    Ok((secs, peak, tally))
}

/// What a latency run measures between the request's producer and the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// The floor: no broker, the reader consumes the requests topic itself (produce → consume).
    OneHop,
    /// The floor of the broker's path: a forwarder with the broker's client settings moves each
    /// request unchanged to the decisions topic (two hops, no logic, no journal, no commits).
    TwoHops,
    Broker(DeliveryMode),
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::OneHop => "kafka_one_hop",
            Path::TwoHops => "kafka_two_hops",
            Path::Broker(DeliveryMode::AtLeastOnce) => "at_least_once",
            Path::Broker(DeliveryMode::ExactlyOnce) => "exactly_once",
        }
    }
}

/// The two-hop floor: consumes the input topics with the at-least-once broker's consumer
/// settings and produces every message unchanged to the decisions topic, until `stop`.
fn forward(cfg: &KafkaConfig, topics: &Topics, stop: &AtomicBool) -> anyhow::Result<()> {
    let p = producer(cfg, 0)?;
    let consumer: BaseConsumer = worker::consumer_config(cfg).create()?;
    consumer.subscribe(&topics.inputs())?;
    while !stop.load(Ordering::Relaxed) {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m?;
        let key = m.key().and_then(|k| std::str::from_utf8(k).ok());
        send(
            &p,
            &topics.decisions,
            key.unwrap_or(""),
            m.payload().unwrap_or_default(),
        )?;
    }
    Ok(())
}

/// Requests at `rate` along `path`; the latency of each decision (or forwarded request) seen by
/// a consumer.
fn latency(base: &KafkaConfig, args: &BenchArgs, path: Path) -> anyhow::Result<Latency> {
    let name = path.name();
    let one_hop = path == Path::OneHop;
    let mode = match path {
        Path::Broker(mode) => mode,
        _ => DeliveryMode::AtLeastOnce,
    };
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
        let topics = topics.clone();
        std::thread::spawn(move || match path {
            Path::Broker(_) => tallied_broker(&cfg, &stop, &stats).map_err(anyhow::Error::from),
            Path::OneHop => {
                stats.ready.store(true, Ordering::Relaxed);
                Ok(Tally::default())
            }
            Path::TwoHops => {
                stats.ready.store(true, Ordering::Relaxed);
                forward(&cfg, &topics, &stop).map(|()| Tally::default())
            }
        })
    };
    while !stats.ready.load(Ordering::Relaxed) && !broker.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let p = producer(&cfg, args.producer_linger_ms)?;
    for e in setup.iter().filter(|_| matches!(path, Path::Broker(_))) {
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
        let consumer: BaseConsumer = cfg
            .client_config()
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
    let tally = broker
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
        producer_linger_ms: args.producer_linger_ms,
        rate: args.rate,
        requests: requests.len() as u64,
        decisions: s.len() as u64,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        max_ms: s.last().copied().unwrap_or(0.0),
        batches: tally.batches,
        commit_ms_avg: if tally.batches > 0 {
            tally.commit_s * 1000.0 / tally.batches as f64
        } else {
            0.0
        },
    })
}

/// The throughput part: one set of inputs, read by the passthrough and by the broker.
fn throughput(base: &KafkaConfig, args: &BenchArgs) -> anyhow::Result<Throughput> {
    let snapshots = std::env::temp_dir().join(format!("zumik-bench-{}", std::process::id()));
    let cfg = KafkaConfig {
        snapshot_dir: Some(snapshots.clone()),
        ..fresh(base, "throughput")
    };
    let w = Workload::new(WorkloadSpec {
        requests: args.requests,
        rate_per_sec: 2_000,
        ..WorkloadSpec::default()
    })?;
    // The inputs, produced once per topic set: a broker run journals and snapshots on its
    // set, so each engine gets a set of its own (the passthrough shares the first engine's).
    let produce_inputs = |cfg: &KafkaConfig| -> anyhow::Result<u64> {
        let topics = Topics::new(&cfg.topic_prefix);
        ensure_topics(cfg, &topics)?;
        eprintln!(
            "zumik bench: producing {} requests and their traffic to {}*",
            args.requests, cfg.topic_prefix
        );
        let p = producer(cfg, 5)?;
        let mut inputs = 0u64;
        for e in w.setup_events().into_iter().chain(w.events()) {
            send(&p, topics.for_input(&e), e.key(), &encode_input(&e))?;
            inputs += 1;
        }
        p.flush(Duration::from_secs(60))?;
        Ok(inputs)
    };
    let inputs = produce_inputs(&cfg)?;
    eprintln!("zumik bench: passthrough over {inputs} inputs");
    let pt_secs = passthrough(&cfg, &Topics::new(&cfg.topic_prefix), inputs)?;
    let per_s = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let mut broker = Vec::new();
    for (i, engine) in [EngineKind::Actors, EngineKind::Inline]
        .into_iter()
        .enumerate()
    {
        let name = format!("{engine:?}").to_lowercase();
        let topics_cfg = if i == 0 {
            cfg.clone()
        } else {
            let other = KafkaConfig {
                snapshot_dir: cfg.snapshot_dir.clone(),
                ..fresh(base, &format!("throughput-{name}"))
            };
            produce_inputs(&other)?;
            other
        };
        eprintln!(
            "zumik bench: broker ({name}) over the same {inputs} inputs (exactly-once, snapshots on)"
        );
        // A consumer group, transactional id and snapshot store of its own per engine.
        let run_cfg = KafkaConfig {
            engine,
            group_id: format!("{}-{name}", topics_cfg.group_id),
            transactional_id: format!("{}-{name}", topics_cfg.transactional_id),
            snapshot_dir: Some(snapshots.join(&name)),
            ..topics_cfg
        };
        let (secs, peak_rss_mb, time) = broker_run(&run_cfg, inputs)?;
        broker.push(BrokerRun {
            engine,
            inputs_per_s: per_s(inputs, secs),
            requests_per_s: per_s(args.requests, secs),
            ratio: if secs > 0.0 { pt_secs / secs } else { 0.0 },
            peak_rss_mb,
            time,
        });
    }
    let _ = std::fs::remove_dir_all(&snapshots);
    Ok(Throughput {
        inputs,
        requests: args.requests,
        batch_max: cfg.batch_max,
        batch_wait_ms: cfg.batch_wait_ms,
        passthrough_inputs_per_s: per_s(inputs, pt_secs),
        broker,
    })
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.config.as_deref())?;
    let base = config.kafka.clone();
    let part = |p: Part| args.only.is_none_or(|o| o == p);
    let throughput = if part(Part::Throughput) {
        Some(throughput(&base, &args)?)
    } else {
        None
    };
    let mut latencies = Vec::new();
    let paths = [
        Path::OneHop,
        Path::TwoHops,
        Path::Broker(DeliveryMode::AtLeastOnce),
        Path::Broker(DeliveryMode::ExactlyOnce),
    ];
    for path in paths.into_iter().filter(|_| part(Part::Latency)) {
        eprintln!(
            "zumik bench: latency, {}, {} requests/s for {} s",
            path.name(),
            args.rate,
            args.latency_secs
        );
        latencies.push(latency(&base, &args, path)?);
    }
    let f = Figures {
        throughput,
        latency: latencies,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(t) = &f.throughput {
        println!(
            "throughput ({} inputs = {} requests + completions + telemetry; batch {} / {} ms):",
            t.inputs, t.requests, t.batch_max, t.batch_wait_ms
        );
        println!(
            "  passthrough (exactly-once, no logic)  {:>10.0} inputs/s",
            t.passthrough_inputs_per_s
        );
        for b in &t.broker {
            println!(
                "  broker, {:<7} (exactly-once, snapshots on) {:>10.0} inputs/s = {:.0} requests/s  ({:.0} % of passthrough); RSS {:.1} MB peak",
                format!("{:?}", b.engine).to_lowercase(),
                b.inputs_per_s,
                b.requests_per_s,
                b.ratio * 100.0,
                b.peak_rss_mb
            );
            let x = &b.time;
            println!(
                "    time: {} batches {:.2} s (commits {:.2} s), {} snapshots {:.2} s",
                x.batches, x.batch_s, x.commit_s, x.snapshots, x.snapshot_s
            );
        }
    }
    for l in &f.latency {
        let batches = if l.batches > 0 && l.mode == "at_least_once" {
            format!(
                "; {} batches, offsets committed once acknowledged, not waited for",
                l.batches
            )
        } else if l.batches > 0 {
            format!(
                "; {} batches, commit {:.1} ms avg",
                l.batches, l.commit_ms_avg
            )
        } else {
            String::new()
        };
        println!(
            "latency {:<14} at {} req/s, batch wait {} ms, producer linger {} ms: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} of {} seen{batches})",
            l.mode, l.rate, l.batch_wait_ms, l.producer_linger_ms, l.p50_ms, l.p99_ms, l.max_ms, l.decisions, l.requests
        );
    }
    Ok(ExitCode::SUCCESS)
}
