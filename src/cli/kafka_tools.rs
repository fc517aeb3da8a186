//! `zumik serve`, `zumik produce`, `zumik tail`: the Kafka-facing commands.

use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use actix::Actor;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::api::model::{ModelSink, ReadModel};
use crate::api::{ApiState, Control};
use crate::config::Config;
use crate::core::PriceTable;
use crate::events::codec::{decode_input, encode_input};
use crate::events::InputEvent;
use crate::events::{DecisionV1, OutputEvent};
use crate::kafka::{run_broker_with, BrokerStats, Topics};
use crate::telemetry::{init_logs, LogFormat, Metrics};

use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Log format (level from `ZUMIK_LOG`, default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Human, env = "ZUMIK_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// `zumik serve`: the broker on real Kafka, with the HTTP API, until SIGINT/SIGTERM (the batch
/// in flight is finished and committed, and a snapshot written, first).
///
/// Threads: the broker loop (blocking librdkafka calls) runs on its own thread; the actix
/// system runs the read-model actor and the HTTP workers. The broker feeds the read model
/// through its bounded mailbox after each commit.
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logs(args.log_format);
    let cfg = Config::load(args.config.config.as_deref())?;
    let prices = Arc::new(cfg.price_table()?);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    tracing::info!(
        brokers = %cfg.kafka.brokers,
        topics = %format!("{}*", cfg.kafka.topic_prefix),
        mode = ?cfg.kafka.mode,
        "zumik serve starting"
    );
    let metrics = Arc::new(Metrics::new());
    actix_web::rt::System::new().block_on(async move {
        let model = ReadModel::new(metrics.clone(), cfg.api.recent_decisions).start();
        let api = if cfg.api.enabled {
            Some(start_api(&cfg, model.clone(), metrics.clone())?)
        } else {
            None
        };
        let broker = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("zumik-broker".into())
                .spawn(move || run_with_restarts(&cfg, prices, &stop, model, metrics))
                .context("starting the broker thread")?
        };
        let result = actix_web::rt::task::spawn_blocking(move || broker.join())
            .await
            .context("joining the broker thread")?;
        if let Some(handle) = api {
            handle.stop(true).await;
        }
        match result {
            Ok(r) => r,
            Err(_) => anyhow::bail!("the broker thread panicked"),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the HTTP API on the actix system; returns the handle that stops it.
fn start_api(
    cfg: &Config,
    model: actix::Addr<ReadModel>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<actix_web::dev::ServerHandle> {
    let producer: FutureProducer = cfg
        .kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "10000")
        .create()
        .context("creating the API's control producer")?;
    let topics = Topics::new(&cfg.kafka.topic_prefix);
    let control: Control = Arc::new(move |e: InputEvent| {
        let payload = encode_input(&e);
        let topic = topics.for_input(&e).to_owned();
        let key = e.key().to_owned();
        let sent = producer
            .send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
            .map_err(|(err, _)| err.to_string());
        Box::pin(async move {
            match sent?.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((err, _))) => Err(err.to_string()),
                Err(_) => Err("producer closed".to_owned()),
            }
        })
    });
    let state = actix_web::web::Data::new(ApiState {
        model,
        metrics,
        control,
        admin_token: cfg.api.admin_token.clone(),
        read_token: cfg.api.read_token.clone(),
        max_body_bytes: cfg.api.max_body_bytes,
        apply_wait: Duration::from_millis(cfg.api.apply_wait_ms),
        stall_after: Duration::from_millis(cfg.api.view_interval_ms * 10 + 5_000),
    });
    let server = actix_web::HttpServer::new(move || crate::api::app(state.clone()))
        .workers(cfg.api.workers)
        .disable_signals()
        .shutdown_timeout(5)
        .bind(&cfg.api.listen)
        .with_context(|| format!("api.listen {}", cfg.api.listen))?;
    for addr in server.addrs() {
        tracing::info!("http api listening on {addr}");
    }
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Ok(handle)
}

/// The broker loop stops on any Kafka error (an outage, a failed commit). Its state is durable
/// (snapshot + journal + committed offsets), so it is simply started again, with backoff, until
/// Kafka answers; only errors no retry can fix end the process.
fn run_with_restarts(
    cfg: &Config,
    prices: Arc<PriceTable>,
    stop: &AtomicBool,
    model: actix::Addr<ReadModel>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let view_every = Duration::from_millis(cfg.api.view_interval_ms);
    let mut backoff = Duration::from_secs(1);
    loop {
        let stats = Arc::new(BrokerStats::default());
        watch_recovery(stats.clone());
        let mut sink = ModelSink::new(model.clone(), view_every);
        let result = run_broker_with(
            &cfg.kafka,
            cfg.routing_arc(),
            prices.clone(),
            stop,
            &stats,
            &mut sink,
        );
        sink.stopped();
        match result {
            Ok(()) => {
                tracing::info!(
                    "zumik serve: stopped after {} inputs, {} decisions, {} DLQ records ({} journaled inputs recovered at start)",
                    stats.inputs.load(Ordering::Relaxed),
                    stats.decisions.load(Ordering::Relaxed),
                    stats.dlq.load(Ordering::Relaxed),
                    stats.recovered.load(Ordering::Relaxed)
                );
                return Ok(());
            }
            Err(e) if stop.load(Ordering::Relaxed) || !e.is_transient() => {
                tracing::error!(error = %e, "broker stopped");
                return Err(e.into());
            }
            Err(e) => {
                metrics.restarts.inc();
                if stats.batches.load(Ordering::Relaxed) > 0 {
                    backoff = Duration::from_secs(1);
                }
                tracing::warn!(
                    "zumik serve: broker stopped: {e}; restarting from the snapshot and the journal in {} s",
                    backoff.as_secs()
                );
                let until = Instant::now() + backoff;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
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
        tracing::info!(
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
        tracing::info!(
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
    let producer: ThreadedProducer<DefaultProducerContext> = cfg
        .kafka
        .client_config()
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
            Ok(e) if e.is_internal() => {
                eprintln!(
                    "line {}: skipped: {} is internal to the broker (its units write it)",
                    i + 1,
                    e.schema_name()
                );
                skipped += 1;
                continue;
            }
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
    let consumer: BaseConsumer = cfg
        .kafka
        .client_config()
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
