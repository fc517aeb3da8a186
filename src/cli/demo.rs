//! `zumik demo`: the whole system in one process on librdkafka's in-process mock cluster (or a
//! real Kafka with `--brokers`): the exactly-once broker, a concentrated synthetic workload
//! played in real time with a burst beyond capacity and a cluster outage and recovery, and a
//! live view of what the broker decides.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::events::codec::encode_input;
use crate::events::{InputEvent, OutputEvent};
use actix::Actor;

use crate::api::model::{ModelSink, ReadModel};
use crate::kafka::{run_broker, run_broker_with, BrokerStats, DeliveryMode, KafkaConfig, Topics};
use crate::workload::{Burst, Outage, Workload, WorkloadSpec};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How long to play traffic, wall-clock seconds.
    #[arg(long, default_value_t = 40)]
    pub duration: u64,
    /// Mean request rate, requests per second (a burst quadruples it for a while).
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Use this Kafka (bootstrap servers) instead of the embedded mock cluster.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Plain lines even on a terminal (the default when stdout is not a terminal).
    #[arg(long)]
    pub plain: bool,
    /// Serve the status page and the read-only API here while the demo runs (`off`: none).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub api: String,
}

/// Starts the read model and a read-only HTTP API (status page, `/metrics`, `/v2/...` reads) on
/// its own actix system thread. `None` when the address is `off` or taken: the demo goes on
/// without it.
fn start_status_page(listen: &str) -> Option<actix::Addr<ReadModel>> {
    if listen == "off" {
        return None;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let listen = listen.to_owned();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let metrics = Arc::new(crate::telemetry::Metrics::new());
            let model = ReadModel::new(metrics.clone(), 100_000).start();
            let control: crate::api::Control =
                Arc::new(|_| Box::pin(async { Err("the demo is read-only".to_owned()) }));
            let state = actix_web::web::Data::new(crate::api::ApiState {
                model: model.clone(),
                metrics,
                control,
                admin_token: None,
                read_token: None,
                max_body_bytes: 64 * 1024,
                apply_wait: Duration::ZERO,
                stall_after: Duration::from_secs(10),
            });
            let server = actix_web::HttpServer::new(move || crate::api::app(state.clone()))
                .workers(1)
                .disable_signals()
                .bind(&listen);
            match server {
                Ok(server) => {
                    let _ = tx.send(Some(model));
                    let _ = server.run().await;
                }
                Err(e) => {
                    eprintln!("demo: no status page ({listen}: {e})");
                    let _ = tx.send(None);
                }
            }
        })
    });
    rx.recv().ok().flatten()
}

/// What the decision reader saw.
#[derive(Default)]
struct Seen {
    total: u64,
    /// Latest `decided_at` seen (event time), ms.
    latest_ms: i64,
    window: BTreeMap<&'static str, u64>,
    reasons: BTreeMap<&'static str, u64>,
    profiles: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
}

fn kafka_config(brokers: String, mock: bool) -> KafkaConfig {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let prefix = if mock {
        "zumik.".to_owned()
    } else {
        format!("zumik-demo-{nonce}.")
    };
    KafkaConfig {
        brokers,
        group_id: format!("{prefix}broker"),
        transactional_id: format!("{prefix}tx"),
        topic_prefix: prefix,
        partitions: 4,
        mode: DeliveryMode::ExactlyOnce,
        batch_wait_ms: 10,
        create_topics: !mock,
        // Short fetch waits, for the broker and the viewer below: on the embedded cluster the
        // defaults (100 ms for the broker at exactly-once, 500 ms for the viewer) showed up in
        // the latency the demo prints (produce to committed decision, p50 312 ms with them,
        // 26 ms with 10 ms waits).
        client: crate::kafka::config::ClientProperties(
            [("fetch.wait.max.ms".to_owned(), "10".to_owned())].into(),
        ),
        ..KafkaConfig::default()
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mock = match &args.brokers {
        Some(_) => None,
        None => Some(
            MockCluster::new(1).context("starting the embedded Kafka (librdkafka mock cluster)")?,
        ),
    };
    let brokers = args
        .brokers
        .clone()
        .or_else(|| mock.as_ref().map(MockCluster::bootstrap_servers))
        .unwrap_or_default();
    let kcfg = kafka_config(brokers, mock.is_some());
    let topics = Topics::new(&kcfg.topic_prefix);
    if let Some(m) = &mock {
        for (name, _) in topics.all() {
            m.create_topic(name, kcfg.partitions, 1)
                .with_context(|| format!("creating {name}"))?;
        }
    }
    let cfg = Config::load(None)?;
    let prices = Arc::new(cfg.price_table()?);
    let dur_ms = args.duration.max(5) * 1000;
    let spec = WorkloadSpec {
        // Enough for the whole run including the burst; the run stops at `duration`.
        requests: args.rate as u64 * args.duration.max(5) * 2,
        rate_per_sec: args.rate.max(1),
        hot_lanes: 3,
        tail_lanes: 100,
        tenants: 100,
        cluster_outage_permille: 0,
        provider_health_interval_ms: 0,
        // Several heartbeats within the outage (15 % of the run), so even a short demo sees the
        // clusters go down and come back (3 healthy heartbeats), not one 5-s heartbeat period.
        heartbeat_interval_ms: (dur_ms * 15 / 100 / 4).clamp(250, 5_000) as u32,
        bursts: vec![Burst {
            start_ms: dur_ms * 30 / 100,
            duration_ms: dur_ms / 10,
            rate_permille: 4000,
        }],
        // Both clusters of the busiest hot lane go down: its traffic fails over to managed.
        outages: (0..2)
            .map(|cluster| Outage {
                cluster,
                start_ms: dur_ms * 55 / 100,
                duration_ms: dur_ms * 15 / 100,
            })
            .collect(),
        ..WorkloadSpec::default()
    };
    let w = Workload::new(spec.clone())
        .map_err(|e| anyhow::anyhow!("demo workload: {}: {}", e.field, e.reason))?;
    let out = std::io::stdout();
    let tty = out.is_terminal() && !args.plain;
    println!(
        "zumik demo: {} ({}), {} hot lanes with {} clusters, {} tail lanes, {} tenants, ~{} req/s for {} s",
        if mock.is_some() { "embedded Kafka" } else { "Kafka" },
        kcfg.brokers,
        w.hot_lanes().len(),
        w.clusters().len(),
        w.tail_lanes().len(),
        spec.tenants,
        spec.rate_per_sec,
        args.duration
    );
    let outage_lane = w.hot_lanes().first().cloned().unwrap_or_default();
    println!(
        "script: burst x4 at {}-{} s, the clusters of {} down at {}-{} s (then they recover with slow start)",
        dur_ms * 30 / 100 / 1000,
        dur_ms * 40 / 100 / 1000,
        outage_lane,
        dur_ms * 55 / 100 / 1000,
        dur_ms * 70 / 100 / 1000
    );

    // The broker.
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(BrokerStats::default());
    let broker = {
        let (kcfg, stop, stats, routing, prices) = (
            kcfg.clone(),
            stop.clone(),
            stats.clone(),
            cfg.routing_arc(),
            prices,
        );
        let model = start_status_page(&args.api);
        if model.is_some() {
            println!(
                "status page: http://{}/ (read-only API and /metrics beside it)",
                args.api
            );
        }
        std::thread::spawn(move || match model {
            Some(model) => {
                let mut sink = ModelSink::new(model, Duration::from_millis(500));
                run_broker_with(&kcfg, routing, prices, &stop, &stats, &mut sink)
            }
            None => run_broker(&kcfg, routing, prices, &stop, &stats),
        })
    };
    while !stats.ready.load(Ordering::Relaxed) {
        anyhow::ensure!(!broker.is_finished(), "the broker stopped while starting");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The decision reader.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let (seen, sent_at, reading, kcfg, topic) = (
            seen.clone(),
            sent_at.clone(),
            reading.clone(),
            kcfg.clone(),
            topics.decisions.clone(),
        );
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut cc = ClientConfig::new();
            cc.set("bootstrap.servers", &kcfg.brokers)
                .set("group.id", format!("{}viewer", kcfg.topic_prefix))
                .set("isolation.level", "read_committed")
                .set("enable.auto.commit", "false");
            // The demo's client settings (its short fetch wait: librdkafka's default, 500 ms,
            // would be part of every latency shown).
            kcfg.apply_client(&mut cc);
            let c: BaseConsumer = cc.create()?;
            let mut tpl = TopicPartitionList::new();
            for p in 0..kcfg.partitions {
                tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
            }
            c.assign(&tpl)?;
            while reading.load(Ordering::Relaxed) {
                let Some(m) = c.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let Ok(OutputEvent::Decision(d)) =
                    serde_json::from_slice::<OutputEvent>(m?.payload().unwrap_or_default())
                else {
                    continue;
                };
                let latency = sent_at
                    .lock()
                    .expect("not poisoned")
                    .remove(&*d.request_id)
                    .map(|t| t.elapsed().as_micros() as u64);
                let mut s = seen.lock().expect("not poisoned");
                s.total += 1;
                s.latest_ms = s.latest_ms.max(d.decided_at.millis());
                *s.window.entry(d.reason.as_str()).or_default() += 1;
                *s.reasons.entry(d.reason.as_str()).or_default() += 1;
                let profile = serde_json::to_value(d.profile)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or("none".into());
                *s.profiles
                    .entry(format!(
                        "{profile}/{}",
                        serde_json::to_value(d.mode)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    ))
                    .or_default() += 1;
                if let Some(l) = latency {
                    s.latencies_us.push(l);
                }
            }
            Ok(())
        })
    };

    // The traffic, played at event-time pace.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &kcfg.brokers)
        .set("linger.ms", "1")
        .create()?;
    let send = |e: &InputEvent| -> anyhow::Result<()> {
        let payload = encode_input(e);
        let mut rec = BaseRecord::to(topics.for_input(e))
            .key(e.key())
            .payload(&payload[..]);
        loop {
            match producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    };
    // Setup in two waves: registrations, policies and activations first, heartbeats once those
    // are applied (a heartbeat before its cluster's registration would be void).
    let (heartbeats, first): (Vec<InputEvent>, Vec<InputEvent>) = w
        .setup_events()
        .into_iter()
        .partition(|e| matches!(e, InputEvent::ClusterHeartbeat(_)));
    for wave in [first, heartbeats] {
        let target = stats.inputs.load(Ordering::Relaxed) + wave.len() as u64;
        for e in &wave {
            send(e)?;
        }
        producer.flush(Duration::from_secs(10))?;
        while stats.inputs.load(Ordering::Relaxed) < target {
            anyhow::ensure!(!broker.is_finished(), "the broker stopped");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let t0 = Instant::now();
    let start_ms = w.traffic_start().millis();
    let mut requests = 0u64;
    let mut next_tick = Duration::from_secs(1);
    let mut last_total = 0;
    for e in w.events() {
        let due = Duration::from_millis((e.ts().millis() - start_ms).max(0) as u64);
        if due >= Duration::from_millis(dur_ms) {
            break;
        }
        // One clock read per step: `due - elapsed` must not be taken from two reads.
        while let Some(left) = due.checked_sub(t0.elapsed()).filter(|l| !l.is_zero()) {
            std::thread::sleep(left.min(Duration::from_millis(2)));
        }
        if let InputEvent::Request(r) = &e {
            sent_at
                .lock()
                .expect("not poisoned")
                .insert(r.request_id.to_string(), Instant::now());
            requests += 1;
        }
        send(&e)?;
        if t0.elapsed() >= next_tick {
            let mut s = seen.lock().expect("not poisoned");
            let window = std::mem::take(&mut s.window);
            let rate = s.total - last_total;
            last_total = s.total;
            // The phase of the traffic the decisions are about (they trail the producer).
            let phase = phase((s.latest_ms - start_ms).max(0) as u64, dur_ms);
            drop(s);
            draw(tty, next_tick.as_secs(), rate, &window, phase, &stats);
            next_tick += Duration::from_secs(1);
        }
        anyhow::ensure!(!broker.is_finished(), "the broker stopped");
    }
    producer.flush(Duration::from_secs(30))?;
    // Let the last batches commit and be read.
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().expect("not poisoned").total < requests && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    broker
        .join()
        .map_err(|_| anyhow::anyhow!("broker thread panicked"))??;
    reading.store(false, Ordering::Relaxed);
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))??;

    let mut s = seen.lock().expect("not poisoned");
    s.latencies_us.sort_unstable();
    let pct = |p: usize| {
        s.latencies_us
            .get((s.latencies_us.len() * p / 100).min(s.latencies_us.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let mut o = out.lock();
    writeln!(
        o,
        "\nsummary: {requests} requests produced, {} decisions committed ({})",
        s.total,
        if s.total == requests {
            "exactly one each"
        } else {
            "MISMATCH"
        }
    )?;
    writeln!(o, "by reason:")?;
    for (r, n) in &s.reasons {
        writeln!(
            o,
            "  {r:<20} {n:>8}  {:>5.1}%",
            *n as f64 * 100.0 / s.total.max(1) as f64
        )?;
    }
    writeln!(o, "by profile/mode:")?;
    for (p, n) in &s.profiles {
        writeln!(o, "  {p:<32} {n:>8}")?;
    }
    writeln!(
        o,
        "latency produce -> committed decision (exactly-once, {} ms batches): p50 {:.1} ms, p99 {:.1} ms; broker: {} inputs in {} transactions, {} DLQ",
        kcfg.batch_wait_ms,
        pct(50) as f64 / 1000.0,
        pct(99) as f64 / 1000.0,
        stats.inputs.load(Ordering::Relaxed),
        stats.batches.load(Ordering::Relaxed),
        stats.dlq.load(Ordering::Relaxed)
    )?;
    Ok(if s.total == requests {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What the scripted traffic was doing at `at_ms` after its start.
fn phase(at_ms: u64, dur_ms: u64) -> &'static str {
    match at_ms * 100 / dur_ms.max(1) {
        30..40 => "BURST x4",
        55..70 => "CLUSTERS DOWN",
        70..85 => "recovering: healthy heartbeats, then slow start",
        _ => "steady",
    }
}

fn draw(
    tty: bool,
    second: u64,
    rate: u64,
    window: &BTreeMap<&'static str, u64>,
    phase: &str,
    stats: &BrokerStats,
) {
    let total: u64 = window.values().sum::<u64>().max(1);
    let mix: Vec<String> = window
        .iter()
        .map(|(r, n)| format!("{r} {:.0}%", *n as f64 * 100.0 / total as f64))
        .collect();
    let line = format!(
        "t={second:>3}s  {rate:>6} decisions/s  [{phase}]  {}  (transactions {})",
        mix.join("  "),
        stats.batches.load(Ordering::Relaxed)
    );
    if tty {
        // Redraw one status line in place.
        print!("\r\x1b[2K{line}");
        let _ = std::io::stdout().flush();
    } else {
        println!("{line}");
    }
}
