//! The broker on a real Apache Kafka (started by `scripts/test` with `scripts/kafka`; the
//! address comes in `KAFKA_BOOTSTRAP`), with random topic names per test: decisions over Kafka
//! equal the offline decisions and the journal topic replays them with zero mismatches (a tampered
//! record is caught), poison input lands in the DLQ without stopping the partition, and a
//! restarted broker recovers its state from the journal topic (and from a RocksDB snapshot plus
//! only the journal after it) and decides exactly once — also when `zumik serve` is killed with
//! SIGKILL three times while requests flow. The brokers run the default engine, the actix actors
//! (`kafka.engine = "actors"`); the snapshot test switches one restart to the inline engine.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use zumik::core::audit::Auditor;
use zumik::core::lane::LaneEvent;
use zumik::core::router::JournalEntry;
use zumik::core::{Output, PriceTable, Router, RoutingConfig};
use zumik::events::codec::encode_input;
use zumik::events::{DecisionV1, InputEvent, OutputEvent};
use zumik::kafka::worker::producer_config;
use zumik::kafka::{
    read_journal, read_journal_units, run_broker, BrokerStats, DeliveryMode, EngineKind,
    KafkaConfig, Topics,
};
use zumik::workload::{Workload, WorkloadSpec};

fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").expect(
        "these tests need a real Kafka: run scripts/test (it starts one with scripts/kafka) \
         or start one and set KAFKA_BOOTSTRAP=host:port",
    )
}

/// A config with topic names no other test (or run) uses.
fn config(test: &str) -> KafkaConfig {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!(
        "t{}-{test}-{}.",
        nonce % 1_000_000_000_000,
        std::process::id()
    );
    KafkaConfig {
        brokers: bootstrap(),
        topic_prefix: prefix.clone(),
        group_id: format!("{prefix}group"),
        transactional_id: format!("{prefix}tx"),
        partitions: 3,
        batch_wait_ms: 5,
        ..KafkaConfig::default()
    }
}

struct Broker {
    stop: Arc<AtomicBool>,
    stats: Arc<BrokerStats>,
    handle: JoinHandle<Result<(), zumik::kafka::worker::BrokerError>>,
}

/// A broker running on its own thread (not waited for), with its stop flag and stats.
fn spawn_broker(
    cfg: &KafkaConfig,
) -> (
    Arc<AtomicBool>,
    Arc<BrokerStats>,
    JoinHandle<Result<(), zumik::kafka::worker::BrokerError>>,
) {
    let (stop, stats) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(BrokerStats::default()),
    );
    let (cfg, s, st) = (cfg.clone(), stop.clone(), stats.clone());
    let handle = std::thread::spawn(move || {
        let prices = Arc::new(PriceTable::embedded());
        run_broker(&cfg, Arc::new(RoutingConfig::default()), prices, &s, &st)
    });
    (stop, stats, handle)
}

fn start(cfg: &KafkaConfig) -> Broker {
    let (stop, stats, handle) = spawn_broker(cfg);
    wait_for("broker ready", || {
        handle.is_finished() || stats.ready.load(Ordering::Relaxed)
    });
    if handle.is_finished() {
        let ended = handle.join().expect("broker thread");
        panic!("the broker stopped before it was ready: {ended:?}");
    }
    Broker {
        stop,
        stats,
        handle,
    }
}

impl Broker {
    fn inputs(&self) -> u64 {
        self.stats.inputs.load(Ordering::Relaxed) + self.stats.dlq.load(Ordering::Relaxed)
    }
    fn stop(self) -> Arc<BrokerStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .expect("broker thread")
            .expect("broker runs");
        self.stats
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn producer(cfg: &KafkaConfig) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .create()
        .unwrap()
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, key: &str, payload: &[u8]) {
    p.send(BaseRecord::to(topic).key(key).payload(payload))
        .map_err(|(e, _)| e)
        .unwrap();
}

fn produce(cfg: &KafkaConfig, events: &[InputEvent]) {
    let (p, topics) = (producer(cfg), Topics::new(&cfg.topic_prefix));
    for e in events {
        send(&p, topics.for_input(e), e.key(), &encode_input(e));
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Setup events one by one, each consumed before the next: they go to different topics and
/// partitions, and their relative order matters (a heartbeat before its registration is void).
fn produce_in_order(cfg: &KafkaConfig, broker: &Broker, events: &[InputEvent]) {
    for e in events {
        let before = broker.inputs();
        produce(cfg, std::slice::from_ref(e));
        wait_for("a setup event to be consumed", || broker.inputs() > before);
    }
}

/// Every committed record of `topic`, with its headers as strings.
fn read_all(
    cfg: &KafkaConfig,
    topic: &str,
    expected: usize,
) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", format!("{}reader", cfg.topic_prefix))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..cfg.partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while out.len() < expected && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((m.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    // Anything beyond `expected` would be a duplicate: give it a moment to show up.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            out.push((
                m.unwrap().payload().unwrap_or_default().to_vec(),
                BTreeMap::new(),
            ));
        }
    }
    out
}

fn decisions(cfg: &KafkaConfig, expected: usize) -> Vec<DecisionV1> {
    let topics = Topics::new(&cfg.topic_prefix);
    read_all(cfg, &topics.decisions, expected)
        .into_iter()
        .map(
            |(p, _)| match serde_json::from_slice::<OutputEvent>(&p).unwrap() {
                OutputEvent::Decision(mut d) => {
                    assert!(
                        d.source.is_some(),
                        "decisions from Kafka carry their input coordinates"
                    );
                    d.source = None;
                    d
                }
            },
        )
        .collect()
}

fn offline(events: &[InputEvent]) -> Vec<DecisionV1> {
    let mut r = Router::new(
        Arc::new(RoutingConfig::default()),
        Arc::new(PriceTable::embedded()),
    );
    let mut out = Output::default();
    for e in events {
        r.apply(e.clone(), &mut out);
    }
    out.decisions
}

/// A small workload: setup events, then requests only (per-lane order is kept by the lane key,
/// and no cross-lane fact changes while they flow, so the offline order is equivalent).
fn workload(requests: u64) -> (Vec<InputEvent>, Vec<InputEvent>) {
    let spec = WorkloadSpec {
        requests,
        rate_per_sec: 2_000,
        hot_lanes: 2,
        tail_lanes: 10,
        tenants: 10,
        ..WorkloadSpec::default()
    };
    let w = Workload::new(spec).unwrap();
    let reqs = w
        .events()
        .filter(|e| matches!(e, InputEvent::Request(_)))
        .collect();
    (w.setup_events(), reqs)
}

fn by_request(ds: Vec<DecisionV1>) -> BTreeMap<String, DecisionV1> {
    let n = ds.len();
    let map: BTreeMap<String, DecisionV1> = ds
        .into_iter()
        .map(|d| (d.request_id.to_string(), d))
        .collect();
    assert_eq!(map.len(), n, "a request got more than one decision");
    map
}

/// Every request has exactly one committed decision (`got`, by request id), equal to the
/// offline router's over the same events: the setup, then the requests.
fn assert_decided_as_offline(
    got: &BTreeMap<String, DecisionV1>,
    setup: &[InputEvent],
    requests: &[InputEvent],
    when: &str,
) {
    assert_eq!(
        got.len(),
        requests.len(),
        "none lost, none duplicated {when}"
    );
    let want = by_request(offline(&[setup, requests].concat()));
    for (id, w) in &want {
        assert_eq!(got.get(id), Some(w), "decision for {id} {when}");
    }
}

/// Starts a broker, has it decide the setup and then `requests`, and stops it.
fn decide_all(
    cfg: &KafkaConfig,
    setup: &[InputEvent],
    requests: &[InputEvent],
) -> Arc<BrokerStats> {
    let broker = start(cfg);
    produce_in_order(cfg, &broker, setup);
    produce(cfg, requests);
    wait_for("all decisions", || {
        broker.stats.decisions.load(Ordering::Relaxed) >= requests.len() as u64
    });
    broker.stop()
}

#[test]
fn decisions_over_kafka_equal_zumik_decide_offline() {
    let cfg = config("equal");
    let (setup, requests) = workload(2_000);
    decide_all(&cfg, &setup, &requests);

    let got = by_request(decisions(&cfg, requests.len()));
    let want = by_request(offline(&[setup, requests.clone()].concat()));
    assert_eq!(
        got.len(),
        requests.len(),
        "exactly one committed decision per request"
    );
    for (id, w) in &want {
        assert_eq!(got.get(id), Some(w), "decision for {id}");
    }
    let hot = got
        .values()
        .filter(|d| d.reason == zumik::events::Reason::HotLane)
        .count();
    assert!(hot > 0, "the workload exercised the BYOC path");

    // Audit round trip: the journal topic, read back, replays every decision with no mismatch
    // (each unit's journal on its own); one tampered decision is caught.
    let units = read_journal_units(&cfg, &Topics::new(&cfg.topic_prefix)).unwrap();
    assert_eq!(units.len(), cfg.partitions as usize, "one journal per unit");
    let mut records: Vec<(i32, JournalEntry)> = units
        .into_iter()
        .flat_map(|(u, records)| records.into_iter().map(move |r| (u, r.entry)))
        .collect();
    let audit = |entries: &[(i32, JournalEntry)]| {
        let mut a = Auditor::new(Arc::new(RoutingConfig::default()));
        let mut unit = 0;
        for (u, e) in entries {
            if *u != unit {
                a.next_unit();
                unit = *u;
            }
            a.apply(e);
        }
        a.stats
    };
    let clean = audit(&records);
    assert_eq!(
        (clean.decisions, clean.mismatches),
        (requests.len() as u64, 0)
    );
    let tampered = records.iter_mut().find_map(|(_, e)| match e {
        JournalEntry::Lane { events, .. } => events.iter_mut().find_map(|ev| match ev {
            LaneEvent::Decided { decision, .. } => {
                decision.estimated_cost_micros += 1;
                Some(())
            }
            _ => None,
        }),
        _ => None,
    });
    assert!(tampered.is_some());
    assert_eq!(audit(&records).mismatches, 1);
}

#[test]
fn poison_input_goes_to_the_dlq_and_processing_goes_on() {
    let cfg = config("dlq");
    let topics = Topics::new(&cfg.topic_prefix);
    let broker = start(&cfg);
    let p = producer(&cfg);
    let request = |field: &str, value: &str| {
        let mut r: serde_json::Value = serde_json::from_str(
            r#"{"schema":"zumik.request.v1","request_id":"r-1","tenant_id":"prj_1","model":"openai/gpt-4o","input_tokens":10,"cached_input_tokens":0,"max_output_tokens":10,"qos":{"class":"interactive"},"ts":"2026-11-24T10:00:00Z"}"#,
        )
        .unwrap();
        r[field] = serde_json::from_str(value).unwrap();
        serde_json::to_vec(&r).unwrap()
    };
    let deep = format!(
        r#"{{"schema":"zumik.request.v1","qos":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let huge = format!(
        r#"{{"schema":"zumik.request.v1","pad":"{}"}}"#,
        "x".repeat(300_000)
    );
    // (payload, the field or rule the DLQ reason must name)
    let poison: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not a valid event"),
        (br#"{"schema":"zumik.nope.v1","x":1}"#.to_vec(), "unknown variant"),
        (br#"{"schema":"zumik.cluster_heartbeat.v1","cluster_id":"byc_x","status":"ready","max_inflight":4,"inflight":0,"error_rate":7,"ts":"2026-11-24T10:00:00Z"}"#.to_vec(), "error_rate"),
        (request("input_tokens", "-5"), "invalid value"),
        (request("max_output_tokens", r#""ten""#), "invalid type"),
        (request("request_id", r#""r 1\u200b""#), "request_id"),
        (request("tenant_id", r#""""#), "tenant_id"),
        (request("ts", r#""1970-01-01T00:00:00Z""#), "2000-01-01"),
        (request("ts", r#""9999-12-31T23:59:59Z""#), "2000-01-01"),
        (request("colour", r#""red""#), "unknown field"),
        (deep.into_bytes(), "recursion limit"),
        (huge.into_bytes(), "bytes"),
        // Only the broker charges budgets: its internal usage event is refused on public topics.
        (br#"{"schema":"zumik.usage.v1","tenant_id":"prj_1","unit":0,"requests":1,"cost_micros":5,"ts":"2026-11-24T10:00:00Z"}"#.to_vec(), "internal to the broker"),
    ];
    for (bytes, _) in &poison {
        send(&p, &topics.requests, "openai/gpt-4o", bytes);
    }
    p.flush(Duration::from_secs(30)).unwrap();
    let (_, requests) = workload(5);
    produce(&cfg, &requests);
    wait_for("decisions after the poison", || {
        broker.stats.decisions.load(Ordering::Relaxed) >= 5
    });
    let stats = broker.stop();
    assert_eq!(stats.dlq.load(Ordering::Relaxed), poison.len() as u64);

    let dlq = read_all(&cfg, &topics.dlq, poison.len());
    assert_eq!(dlq.len(), poison.len());
    for ((original, headers), (sent, names)) in dlq.iter().zip(&poison) {
        assert_eq!(original, sent, "the DLQ keeps the original bytes, in order");
        let reason = headers.get("zumik.error").cloned().unwrap_or_default();
        assert!(
            reason.contains(names),
            "reason {reason:?} should name {names:?}"
        );
        assert!(
            headers
                .get("zumik.source")
                .is_some_and(|s| s.starts_with(&topics.requests)),
            "{headers:?}"
        );
    }
    assert_eq!(decisions(&cfg, 5).len(), 5);
}

/// Decides the setup and the first half of `requests` on one instance (config `cfg`), stops
/// it, starts another (config `again`), hands it to `restarted`, decides the second half
/// there and stops it. Returns both instances' stats.
fn decide_across_a_restart(
    cfg: &KafkaConfig,
    again: &KafkaConfig,
    setup: &[InputEvent],
    requests: &[InputEvent],
    restarted: impl FnOnce(&Broker),
) -> (Arc<BrokerStats>, Arc<BrokerStats>) {
    let (first, second) = requests.split_at(requests.len() / 2);
    let a = start(cfg);
    produce_in_order(cfg, &a, setup);
    produce(cfg, first);
    wait_for("first half", || {
        a.stats.decisions.load(Ordering::Relaxed) >= first.len() as u64
    });
    let a = a.stop();

    let b = start(again);
    restarted(&b);
    produce(cfg, second);
    wait_for("second half", || {
        b.stats.decisions.load(Ordering::Relaxed) >= second.len() as u64
    });
    (a, b.stop())
}

#[test]
fn a_restarted_broker_recovers_from_the_journal_and_decides_exactly_once() {
    let cfg = config("restart");
    let (setup, requests) = workload(1_000);
    let mut recovered = 0;
    let (a, _) = decide_across_a_restart(&cfg, &cfg, &setup, &requests, |b| {
        recovered = b.stats.recovered.load(Ordering::Relaxed)
    });
    assert_eq!(
        recovered,
        a.applied.load(Ordering::Relaxed),
        "every committed input is replayed from the journal (into every unit it reached)"
    );
    let got = by_request(decisions(&cfg, requests.len()));
    assert_decided_as_offline(&got, &setup, &requests, "after the restart");
}

/// Kafka drops a group's committed offsets a while after its last member left
/// (`offsets.retention.minutes`); a new `group_id` on kept topics has none either. The
/// restarted broker's consumer then reads the input partitions from the earliest offset: each
/// unit skips what its positions say it applied, so nothing is decided twice.
#[test]
fn a_broker_whose_group_has_no_committed_offsets_applies_nothing_twice() {
    let cfg = config("no-offsets");
    let (setup, requests) = workload(600);
    let fresh_group = KafkaConfig {
        group_id: format!("{}-fresh", cfg.group_id),
        ..cfg.clone()
    };
    let (_, b) = decide_across_a_restart(&cfg, &fresh_group, &setup, &requests, |_| {});
    let got = by_request(decisions(&cfg, requests.len()));
    assert_decided_as_offline(&got, &setup, &requests, "after a restart without offsets");
    // Everything the first instance consumed from the requests partitions came again and was
    // skipped (setup events on the broadcast topics are applied by position, not counted here).
    assert_eq!(
        b.already_applied.load(Ordering::Relaxed),
        (requests.len() / 2) as u64,
        "the first half was consumed again and skipped"
    );
}

/// A requests topic deleted and created again under a kept journal starts its offsets over,
/// so they name other messages than the ones the units applied: the broker refuses to load
/// the units instead of skipping new requests as applied.
#[test]
fn a_requests_topic_recreated_under_a_kept_journal_is_refused() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let cfg = config("recreated");
    let (setup, requests) = workload(300);
    decide_all(&cfg, &setup, &requests);

    let topics = Topics::new(&cfg.topic_prefix);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .create()
        .unwrap();
    futures_executor::block_on(admin.delete_topics(&[&topics.requests], &AdminOptions::new()))
        .unwrap();
    // All topics asked (one named topic could be auto-created by the metadata request).
    wait_for("the requests topic to be gone", || {
        admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(5))
            .is_ok_and(|m| m.topics().iter().all(|t| t.name() != topics.requests))
    });

    // The broker creates the topic again at start, empty.
    let (stop, stats, b) = spawn_broker(&cfg);
    wait_for("the broker to refuse its units or get ready", || {
        b.is_finished() || stats.ready.load(Ordering::Relaxed)
    });
    stop.store(true, Ordering::Relaxed);
    let refused = b
        .join()
        .unwrap()
        .expect_err("the broker refused the units of the re-created topic");
    assert!(
        refused.to_string().contains("re-created or truncated"),
        "{refused}"
    );
}

#[test]
fn a_restart_from_a_snapshot_replays_only_the_journal_after_it() {
    let dir = std::env::temp_dir().join(format!("zumik-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = KafkaConfig {
        snapshot_dir: Some(dir.clone()),
        ..config("snapshot")
    };
    let (setup, requests) = workload(1_500);
    let (first, rest) = requests.split_at(500);
    let (second, third) = rest.split_at(500);

    // A, on the inline engine: the first part, then a clean stop writes each unit's final
    // snapshot. B and C run the actors (the default): the engines' snapshots and journals are
    // the same bytes, so an instance may switch engine across a restart.
    let a = start(&KafkaConfig {
        engine: EngineKind::Inline,
        ..cfg.clone()
    });
    produce_in_order(&cfg, &a, &setup);
    produce(&cfg, first);
    wait_for("first part", || {
        a.stats.decisions.load(Ordering::Relaxed) >= first.len() as u64
    });
    let a = a.stop();
    let a_applied = a.applied.load(Ordering::Relaxed);
    assert!(a.snapshots.load(Ordering::Relaxed) >= cfg.partitions as u64);
    let journal_after_a = read_journal(&cfg, &Topics::new(&cfg.topic_prefix))
        .unwrap()
        .len() as u64;

    // B, without snapshots (as if its store were lost and none were published): it replays
    // the whole journal, and writes no snapshot of its own.
    let b = start(&KafkaConfig {
        snapshot_dir: None,
        ..cfg.clone()
    });
    assert_eq!(b.stats.restored_seq.load(Ordering::Relaxed), 0);
    assert_eq!(b.stats.recovered.load(Ordering::Relaxed), a_applied);
    assert_eq!(b.stats.journal_read.load(Ordering::Relaxed), a_applied);
    produce(&cfg, second);
    wait_for("second part", || {
        b.stats.decisions.load(Ordering::Relaxed) >= second.len() as u64
    });
    let b_applied = b.stop().applied.load(Ordering::Relaxed);
    let journal_total = read_journal(&cfg, &Topics::new(&cfg.topic_prefix))
        .unwrap()
        .len() as u64;

    // C: restores A's snapshots (the newest, local and published) and reads only the journal
    // B wrote after them, replaying exactly B's inputs; then takes the third part.
    let c = start(&cfg);
    assert_eq!(c.stats.restored_seq.load(Ordering::Relaxed), a_applied);
    assert_eq!(c.stats.recovered.load(Ordering::Relaxed), b_applied);
    // The snapshot's journal position is exact (acknowledged offsets): not one record of the
    // batch it reflects is read again.
    assert_eq!(
        c.stats.journal_read.load(Ordering::Relaxed),
        b_applied,
        "only the journal written after the snapshot is read ({} records of {journal_total})",
        journal_total - journal_after_a
    );
    produce(&cfg, third);
    wait_for("third part", || {
        c.stats.decisions.load(Ordering::Relaxed) >= third.len() as u64
    });
    c.stop();

    let got = by_request(decisions(&cfg, requests.len()));
    assert_decided_as_offline(&got, &setup, &requests, "across snapshot restarts");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where spawned brokers of this test append their stderr (printed when the test fails).
fn log_path(cfg: &KafkaConfig) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}serve.log", cfg.topic_prefix))
}

fn log_file(cfg: &KafkaConfig) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(cfg))
        .unwrap()
}

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// `zumik serve` as a child process with `cfg` (environment overrides, no config file).
fn spawn_serve(cfg: &KafkaConfig) -> std::process::Child {
    spawn_serve_logging_to(cfg, log_file(cfg))
}

/// [`spawn_serve`] with its stderr appended to `log`.
fn spawn_serve_logging_to(cfg: &KafkaConfig, log: std::fs::File) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_zumik"));
    cmd.arg("serve")
        .env("ZUMIK_KAFKA__BROKERS", &cfg.brokers)
        .env("ZUMIK_KAFKA__TOPIC_PREFIX", &cfg.topic_prefix)
        .env("ZUMIK_KAFKA__GROUP_ID", &cfg.group_id)
        .env("ZUMIK_KAFKA__TRANSACTIONAL_ID", &cfg.transactional_id)
        .env(
            "ZUMIK_KAFKA__MODE",
            match cfg.mode {
                DeliveryMode::ExactlyOnce => "exactly_once",
                DeliveryMode::AtLeastOnce => "at_least_once",
            },
        )
        .env("ZUMIK_KAFKA__PARTITIONS", cfg.partitions.to_string())
        .env("ZUMIK_KAFKA__BATCH_WAIT_MS", cfg.batch_wait_ms.to_string())
        .env(
            "ZUMIK_KAFKA__SNAPSHOT_EVERY_INPUTS",
            cfg.snapshot_every_inputs.to_string(),
        )
        // Every instance gets its own free port (the log names it).
        .env("ZUMIK_API__LISTEN", "127.0.0.1:0")
        .env("ZUMIK_API__ADMIN_TOKEN", ADMIN_TOKEN)
        .env("ZUMIK_API__VIEW_INTERVAL_MS", "50")
        .env(
            "ZUMIK_KAFKA__SESSION_TIMEOUT_MS",
            cfg.session_timeout_ms.to_string(),
        )
        .stdout(std::process::Stdio::null())
        .stderr(log);
    if let Some(d) = &cfg.snapshot_dir {
        cmd.env("ZUMIK_KAFKA__SNAPSHOT_DIR", d);
    }
    cmd.spawn().expect("zumik serve starts")
}

/// Produces the setup events one at a time (their order across topics matters), each
/// journaled by the running broker before the next.
fn produce_setup_journaled(cfg: &KafkaConfig, topics: &Topics, setup: &[InputEvent]) {
    for (i, e) in setup.iter().enumerate() {
        produce(cfg, std::slice::from_ref(e));
        wait_for("a setup event to be journaled", || {
            read_journal(cfg, topics)
                .unwrap()
                .iter()
                .filter(|r| matches!(r.entry, JournalEntry::Input(_)))
                .count()
                > i
        });
    }
}

/// Keeps requests flowing (~2 000/s) on a thread of their own.
fn feed(cfg: &KafkaConfig, requests: &[InputEvent]) -> JoinHandle<()> {
    let (cfg, requests) = (cfg.clone(), requests.to_vec());
    std::thread::spawn(move || {
        for slice in requests.chunks(100) {
            produce(&cfg, slice);
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// `zumik serve` on `cfg`, with the workload's setup applied first (one event at a time, each
/// journaled before the next: their order across topics matters), then `n` requests flowing
/// (`feed`) while the caller acts. Returns the setup, the requests, the process and the feeder.
fn serve_under_traffic(
    cfg: &KafkaConfig,
    n: u64,
) -> (
    Vec<InputEvent>,
    Vec<InputEvent>,
    std::process::Child,
    JoinHandle<()>,
) {
    let (setup, requests) = workload(n);
    let serve = spawn_serve(cfg);
    produce_setup_journaled(cfg, &Topics::new(&cfg.topic_prefix), &setup);
    let feeder = feed(cfg, &requests);
    (setup, requests, serve, feeder)
}

#[test]
fn kill_9_mid_stream_three_times_loses_and_duplicates_nothing() {
    kill_9_three_times(DeliveryMode::ExactlyOnce, "kill9");
}

/// The same kills at least once, offsets committed only at loads: a restarted instance
/// normally finds its journal past the committed offsets, drops that part, writes a resumed
/// marker and decides those inputs again. Every request is decided, every repeat is a copy of
/// the first decision, the first decisions equal the offline ones, and the journal, without
/// the records the markers superseded, audits clean.
#[test]
fn at_least_once_kill_9_mid_stream_repeats_only_copies() {
    kill_9_three_times(DeliveryMode::AtLeastOnce, "kill9-alo");
}

fn kill_9_three_times(mode: DeliveryMode, name: &str) {
    let dir = std::env::temp_dir().join(format!("zumik-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = match mode {
        DeliveryMode::ExactlyOnce => KafkaConfig {
            snapshot_dir: Some(dir.clone()),
            snapshot_every_inputs: 300,
            ..config(name)
        },
        // Offsets committed only when a unit is loaded or snapshotted, not every 100 ms: a
        // killed instance leaves what it applied since past the commit, even when the feed
        // has ended before the kill.
        DeliveryMode::AtLeastOnce => KafkaConfig {
            snapshot_dir: Some(dir.clone()),
            snapshot_every_inputs: 1_000_000,
            snapshot_interval_ms: 600_000,
            commit_interval_ms: 600_000,
            mode,
            ..config(name)
        },
    };
    // Requests keep flowing (~2 000/s) while the broker is killed and restarted under them:
    // each instance is killed 300 ms after it committed its first batch, i.e. while it works.
    // At least once, for 10 s rather than 3: past the last kill, so that a kill finds inputs
    // past the last commit.
    let n = match mode {
        DeliveryMode::ExactlyOnce => 6_000,
        DeliveryMode::AtLeastOnce => 20_000,
    };
    let (setup, requests, mut serve, feeder) = serve_under_traffic(&cfg, n);
    let committed_first_batch = |n: usize| {
        std::fs::read_to_string(log_path(&cfg))
            .unwrap_or_default()
            .matches("first batch committed")
            .count()
            >= n
    };
    for kill in 1..=3 {
        wait_for("the instance to commit a batch", || {
            committed_first_batch(kill)
        });
        std::thread::sleep(Duration::from_millis(300));
        serve.kill().expect("SIGKILL");
        serve.wait().unwrap();
        serve = spawn_serve(&cfg);
    }
    feeder.join().unwrap();
    let got = match mode {
        DeliveryMode::ExactlyOnce => by_request(decisions(&cfg, requests.len())),
        DeliveryMode::AtLeastOnce => every_request_decided(&cfg, requests.len()),
    };
    serve.kill().ok();
    serve.wait().ok();
    let log = std::fs::read_to_string(log_path(&cfg)).unwrap_or_default();
    assert!(
        log.matches("recovered in").count() >= 4,
        "every instance recovered:\n{log}"
    );
    if mode == DeliveryMode::AtLeastOnce && !log.contains("resumes at input") {
        // Whether a kill finds inputs past the commit depends on how far the feed got by
        // then (under load it may lag behind the kills: seen once in eight runs). The cut
        // itself is asserted by the unit tests of `kafka::units`; the properties below must
        // hold either way.
        eprintln!("note: no unit resumed at a committed batch in this run");
    }
    assert_decided_as_offline(&got, &setup, &requests, "after three kill -9");
    // The journal the four instances left audits clean (at least once: without the records
    // the resumed units superseded).
    let (ok, out, err) = zumik_cli(&cfg, &["replay", "--from-kafka"]);
    assert!(ok && out.contains(": 0 mismatches"), "{out}{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A replacement started while the old instance still runs (a hung pod replaced, say): both
/// have the same transactional id. The new one reads its units while its `init_transactions`
/// fences the old one, which may commit batches meanwhile; it then reads what they journaled
/// too. The old one stops with a `fenced` error instead of restarting (which would fence the
/// new one in turn, and so on), and every request still has exactly one decision, equal to
/// the offline one.
#[test]
fn a_replacement_fences_the_running_instance_which_stops_and_nothing_is_lost() {
    replacement_takes_over(DeliveryMode::ExactlyOnce, "fence");
}

/// The same takeover at least once: the old instance, its membership held by the new one
/// through the check's window, stops too. The new one keeps the old one's journal only up
/// to the offsets the group committed and decides the inputs after them again, on the state
/// they were first decided on: every request is decided, each repeat is a copy of the first
/// decision, and the first decisions equal the offline ones.
#[test]
fn at_least_once_a_replacement_stops_the_running_instance_too() {
    replacement_takes_over(DeliveryMode::AtLeastOnce, "fence-alo");
}

/// A static membership fenced while no other instance took over (as a lone member's own
/// rejoin can do in a Kafka restart, KAFKA-20983): a bare consumer joins the group with the
/// broker's `group.instance.id` and goes away without leaving, as the member that rejoin
/// leaves behind does. Once that member's session expires no other member holds the
/// membership, so the broker restarts its loop instead of stopping, takes its partitions back,
/// and every request still has exactly one decision, equal to the offline one.
#[test]
fn a_membership_fenced_without_a_replacement_restarts_the_broker() {
    membership_fenced_without_a_replacement(DeliveryMode::ExactlyOnce, false, "selffence");
}

/// The same with the producer fenced too, as in a Kafka restart longer than the transaction
/// timeout (Kafka aborts the open transaction and bumps the epoch): here a bare producer with
/// the broker's `transactional_id` initialises beside the bare consumer, as a replacement
/// that died at once would. The fenced epoch does not make it a takeover either.
#[test]
fn a_membership_and_producer_fenced_without_a_replacement_restart_the_broker() {
    membership_fenced_without_a_replacement(DeliveryMode::ExactlyOnce, true, "selffence-tx");
}

/// At least once (no producer epoch at all) the same fencing restarts the broker too.
#[test]
fn at_least_once_a_membership_fenced_without_a_replacement_restarts_the_broker() {
    membership_fenced_without_a_replacement(DeliveryMode::AtLeastOnce, false, "selffence-alo");
}

fn membership_fenced_without_a_replacement(mode: DeliveryMode, producer_too: bool, name: &str) {
    let base = std::env::temp_dir().join(format!("zumik-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let cfg = KafkaConfig {
        snapshot_dir: Some(base.clone()),
        snapshot_every_inputs: 300,
        mode,
        ..config(name)
    };
    let topics = Topics::new(&cfg.topic_prefix);
    let (setup, requests, mut broker, feeder) = serve_under_traffic(&cfg, 4_000);
    let log = || std::fs::read_to_string(log_path(&cfg)).unwrap_or_default();
    wait_for("the broker to commit a batch", || {
        log().contains("first batch committed")
    });
    {
        // The broker's consumer settings (the same assignment strategy, or the join is
        // refused), without a producer.
        let intruder: BaseConsumer = zumik::kafka::worker::consumer_config(&cfg)
            .create()
            .expect("consumer");
        intruder
            .subscribe(&[&topics.requests, &topics.completions])
            .expect("subscribe");
        wait_for("the intruder to join", || {
            let _ = intruder.poll(Duration::from_millis(100));
            intruder.assignment().is_ok_and(|a| a.count() > 0)
        });
        if producer_too {
            let fencer: ThreadedProducer<DefaultProducerContext> =
                producer_config(&cfg).create().expect("producer");
            fencer
                .init_transactions(Duration::from_secs(30))
                .expect("init transactions");
        }
        // Gone at once, without leaving (static members do not): its member heartbeats no
        // more and expires one session timeout later, while the broker learns of the fencing
        // at its next heartbeat or commit and then waits a session timeout and a margin.
    }
    wait_for("the broker to notice its fenced membership", || {
        log().contains("waiting to learn whether another instance holds it")
    });
    wait_for("the broker to find its membership free", || {
        log().contains("no other member holds it")
    });
    feeder.join().unwrap();
    let got = match mode {
        DeliveryMode::ExactlyOnce => by_request(decisions(&cfg, requests.len())),
        DeliveryMode::AtLeastOnce => every_request_decided(&cfg, requests.len()),
    };
    assert!(
        broker.try_wait().unwrap().is_none(),
        "the broker still runs:\n{}",
        log()
    );
    broker.kill().ok();
    broker.wait().ok();
    assert!(
        log().contains("restarting from the snapshot"),
        "the broker restarted its loop:\n{}",
        log()
    );
    assert!(
        !log().contains("fenced: another instance"),
        "the broker did not take it for a takeover:\n{}",
        log()
    );
    assert_decided_as_offline(&got, &setup, &requests, "after the fencing");
    let _ = std::fs::remove_dir_all(&base);
}

fn replacement_takes_over(mode: DeliveryMode, name: &str) {
    let base = std::env::temp_dir().join(format!("zumik-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let cfg = KafkaConfig {
        snapshot_dir: Some(base.join("old")),
        snapshot_every_inputs: 300,
        mode,
        ..config(name)
    };
    let (setup, requests, mut old, feeder) = serve_under_traffic(&cfg, 6_000);
    let log = || std::fs::read_to_string(log_path(&cfg)).unwrap_or_default();
    wait_for("the old instance to commit a batch", || {
        log().contains("first batch committed")
    });
    std::thread::sleep(Duration::from_millis(500));
    // Its own store (the old instance holds the first one's lock): it restores from the
    // snapshots topic and the journal.
    let new_cfg = KafkaConfig {
        snapshot_dir: Some(base.join("new")),
        ..cfg.clone()
    };
    let mut new = spawn_serve(&new_cfg);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = old.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the fenced instance still runs a minute later:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "the fenced instance fails: {status}");
    assert!(
        log().contains("fenced: another instance with transactional id"),
        "the fenced instance says why it stops:\n{}",
        log()
    );
    feeder.join().unwrap();
    let got = match mode {
        DeliveryMode::ExactlyOnce => by_request(decisions(&cfg, requests.len())),
        DeliveryMode::AtLeastOnce => every_request_decided(&cfg, requests.len()),
    };
    assert!(
        new.try_wait().unwrap().is_none(),
        "the new instance still runs:\n{}",
        log()
    );
    new.kill().ok();
    new.wait().ok();
    assert!(
        !log().contains("restarting from the snapshot"),
        "neither instance restarted its broker:\n{}",
        log()
    );
    match mode {
        DeliveryMode::ExactlyOnce => {
            assert_decided_as_offline(&got, &setup, &requests, "after the takeover")
        }
        DeliveryMode::AtLeastOnce => {
            assert_decided_as_offline(&got, &setup, &requests, "after the takeover, first copies")
        }
    }
    // Exactly once, the journal audits clean: the old instance's transactions after the
    // takeover were fenced. (At least once, the old instance may journal a batch after the
    // new one's resumed marker before it learns it was fenced; docs/operations.md.)
    if mode == DeliveryMode::ExactlyOnce {
        let (ok, out, err) = zumik_cli(&cfg, &["replay", "--from-kafka"]);
        assert!(ok && out.contains(": 0 mismatches"), "{out}{err}");
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// The first at-least-once decision of each request (a lane's decisions share a partition, so
/// they are read in the order they were written), once `n` requests have one: read again from
/// the start until they do, for up to a minute. Every repeat must be a copy of the first.
fn every_request_decided(cfg: &KafkaConfig, n: usize) -> BTreeMap<String, DecisionV1> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut got = BTreeMap::new();
        let mut repeated = 0;
        for d in decisions(cfg, n) {
            match got.entry(d.request_id.to_string()) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(d);
                }
                std::collections::btree_map::Entry::Occupied(first) => {
                    assert_eq!(
                        &d,
                        first.get(),
                        "a repeated decision is a copy of the first"
                    );
                    repeated += 1;
                }
            }
        }
        if got.len() >= n || Instant::now() > deadline {
            eprintln!("{repeated} decisions repeated at least once");
            return got;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn two_instances_share_the_units_and_the_survivor_of_a_kill_9_takes_them_over() {
    let dir = std::env::temp_dir().join(format!("zumik-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = KafkaConfig {
        partitions: 4,
        snapshot_every_inputs: 200,
        // Kafka's smallest by default: the killed instance's units move after 6 s.
        session_timeout_ms: 6_000,
        ..config("scale")
    };
    let topics = Topics::new(&cfg.topic_prefix);
    let (setup, requests) = workload(8_000);
    // Two instances of one group: each its own transactional id and snapshot store.
    let instance = |name: &str| KafkaConfig {
        transactional_id: format!("{}-{name}", cfg.transactional_id),
        snapshot_dir: Some(dir.join(name)),
        ..cfg.clone()
    };
    let (a_cfg, b_cfg) = (instance("a"), instance("b"));
    let log_of = |name: &str| std::env::temp_dir().join(format!("{}{name}.log", cfg.topic_prefix));
    let spawn = |c: &KafkaConfig, name: &str| {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_of(name))
            .unwrap();
        spawn_serve_logging_to(c, log)
    };
    let log = |name: &str| std::fs::read_to_string(log_of(name)).unwrap_or_default();

    // A alone holds the four units; setup events reach each of them, one event at a time.
    let mut a = spawn(&a_cfg, "a");
    wait_for("A to load its units", || {
        log("a").matches("restored from").count() == 4
    });
    for (i, e) in setup.iter().enumerate() {
        produce(&cfg, std::slice::from_ref(e));
        wait_for("a setup event to be journaled by every unit", || {
            read_journal(&cfg, &topics)
                .unwrap()
                .iter()
                .filter(|r| matches!(r.entry, JournalEntry::Input(_)))
                .count()
                >= (i + 1) * 4
        });
    }
    // B joins: the group splits the units between them (A hands some over, B restores them).
    let mut b = spawn(&b_cfg, "b");
    wait_for("B to take units from A", || {
        log("b").contains("restored from") && log("a").contains("handed over")
    });
    // Requests flow (~1 000/s) to both; B is killed once it has worked for a while.
    let feeder = {
        let (cfg, requests) = (cfg.clone(), requests.clone());
        std::thread::spawn(move || {
            for slice in requests.chunks(100) {
                produce(&cfg, slice);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    wait_for("B to commit a batch", || {
        log("b").contains("first batch committed")
    });
    std::thread::sleep(Duration::from_millis(2_500));
    b.kill().expect("SIGKILL");
    b.wait().unwrap();
    let a_before = log("a").matches("restored from").count();
    // A takes B's units over from what B published (B's store is gone with it here).
    wait_for("A to take over B's units", || {
        log("a").matches("restored from").count() > a_before
    });
    feeder.join().unwrap();
    let got = by_request(decisions(&cfg, requests.len()));
    a.kill().ok();
    a.wait().ok();
    let (a_log, b_log) = (log("a"), log("b"));
    let taken_over = &a_log[a_log
        .match_indices("restored from")
        .nth(a_before)
        .unwrap()
        .0..];
    assert!(
        taken_over.contains("restored from snapshots topic"),
        "the survivor restored a moved unit from zumik.snapshots:\n{a_log}"
    );
    assert!(b_log.contains("restored from"), "B held units:\n{b_log}");
    assert_decided_as_offline(&got, &setup, &requests, "across the handovers");
    let _ = std::fs::remove_dir_all(&dir);
    if std::env::var_os("ZUMIK_TEST_KEEP_LOGS").is_none() {
        let _ = std::fs::remove_file(log_of("a"));
        let _ = std::fs::remove_file(log_of("b"));
    }
}

/// `scripts/kafka` with these arguments; its stdout (the `VAR=value` lines).
fn kafka_script(args: &[&str]) -> String {
    let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka"))
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/kafka runs");
    assert!(out.status.success(), "scripts/kafka {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_broker_rides_out_a_kafka_restart_under_load() {
    // A Kafka of its own (the other tests keep using theirs), stopped and started again on the
    // same port and data directory while requests flow.
    let base = std::env::temp_dir().join(format!("zumik-kafka-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let kdir = base.join("kafka");
    let kdir_s = kdir.to_str().unwrap().to_owned();
    let started = kafka_script(&["start", "--port", "0", "--dir", &kdir_s]);
    let bootstrap = started
        .lines()
        .find_map(|l| l.strip_prefix("KAFKA_BOOTSTRAP="))
        .expect("scripts/kafka prints KAFKA_BOOTSTRAP")
        .to_owned();
    let cfg = KafkaConfig {
        brokers: bootstrap,
        snapshot_dir: Some(base.join("snapshots")),
        snapshot_every_inputs: 500,
        ..config("kafka-restart")
    };
    let topics = Topics::new(&cfg.topic_prefix);
    let (setup, requests) = workload(3_000);
    let mut serve = spawn_serve(&cfg);
    produce_setup_journaled(&cfg, &topics, &setup);
    let feeder = feed(&cfg, &requests);
    std::thread::sleep(Duration::from_millis(500));
    kafka_script(&["stop", "--dir", &kdir_s]);
    std::thread::sleep(Duration::from_secs(2));
    kafka_script(&["start", "--dir", &kdir_s]);
    feeder.join().unwrap();

    let got = by_request(decisions(&cfg, requests.len()));
    serve.kill().ok();
    serve.wait().ok();
    kafka_script(&["stop", "--dir", &kdir_s]);
    let log = std::fs::read_to_string(log_path(&cfg)).unwrap_or_default();
    assert!(
        log.contains("restarting from the snapshot and the journal"),
        "the outage was noticed and the broker restarted itself:\n{log}"
    );
    assert_eq!(
        got.len(),
        requests.len(),
        "none lost, none duplicated:\n{log}"
    );
    let want = by_request(offline(&[setup, requests.clone()].concat()));
    for (id, w) in &want {
        assert_eq!(
            got.get(id),
            Some(w),
            "decision for {id} across the Kafka restart"
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// `zumik` with `args` and the `[kafka]` section of `cfg` as environment overrides.
fn zumik_cli(cfg: &KafkaConfig, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zumik"))
        .args(args)
        .env("ZUMIK_KAFKA__BROKERS", &cfg.brokers)
        .env("ZUMIK_KAFKA__TOPIC_PREFIX", &cfg.topic_prefix)
        .env("ZUMIK_KAFKA__GROUP_ID", &cfg.group_id)
        .output()
        .expect("zumik runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn diagnose_from_kafka_equals_the_file_and_journals_its_flags() {
    let cfg = config("diagnose");
    let spec = WorkloadSpec {
        requests: 3_000,
        rate_per_sec: 50,
        hot_lanes: 2,
        tail_lanes: 10,
        tenants: 10,
        ..WorkloadSpec::default()
    };
    let w = Workload::new(spec).unwrap();
    let (setup, traffic): (Vec<InputEvent>, Vec<InputEvent>) =
        (w.setup_events(), w.events().collect());
    let history: Vec<&InputEvent> = traffic
        .iter()
        .filter(|e| matches!(e, InputEvent::Request(_) | InputEvent::Completion(_)))
        .collect();
    let file = std::env::temp_dir().join(format!("{}history.jsonl", cfg.topic_prefix));
    let lines: Vec<String> = history
        .iter()
        .map(|e| String::from_utf8(encode_input(e)).unwrap())
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    // The broker takes the traffic, so the journal holds real records besides the flags.
    let b = start(&cfg);
    produce_in_order(&cfg, &b, &setup);
    produce(&cfg, &traffic);
    wait_for("the traffic", || {
        b.inputs() >= (setup.len() + traffic.len()) as u64
    });
    b.stop();

    let small = [
        "--replicas",
        "1",
        "--gpus-per-replica",
        "1",
        "--gpu-hour-usd",
        "1.00",
    ];
    let file_arg = file.to_str().unwrap();
    let (ok, from_file, err) = zumik_cli(
        &cfg,
        &[&["diagnose", "--json", "--trace", file_arg][..], &small].concat(),
    );
    assert!(ok, "{err}");
    let (ok, from_kafka, err) = zumik_cli(
        &cfg,
        &[&["diagnose", "--json", "--from-kafka"][..], &small].concat(),
    );
    assert!(ok, "{err}");
    assert_eq!(
        from_kafka, from_file,
        "the same history gives the same diagnosis"
    );
    let d: serde_json::Value = serde_json::from_str(&from_kafka).unwrap();
    let flagged: Vec<&str> = d["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["flagged"] == true)
        .map(|l| l["lane"].as_str().unwrap())
        .collect();
    assert!(
        !flagged.is_empty(),
        "the hot lanes clear break-even on one small replica: {d}"
    );

    // Each flagged lane got one DiagnosticFlagged record on the journal topic.
    let records = read_journal(&cfg, &Topics::new(&cfg.topic_prefix)).unwrap();
    let mut journaled: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.entry {
            JournalEntry::DiagnosticFlagged(f) => Some(f.lane.to_string()),
            _ => None,
        })
        .collect();
    journaled.sort();
    let mut want: Vec<String> = flagged.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(journaled, want);
    // …and the journal with them still audits clean, from Kafka and from its export.
    let (ok, out, err) = zumik_cli(&cfg, &["replay", "--from-kafka"]);
    assert!(ok && out.contains(": 0 mismatches"), "{out}{err}");
    // A journal of several units exports one unit at a time (`--partition`); each export
    // audits clean on its own, and together they hold every decision.
    let (ok, _, err) = zumik_cli(&cfg, &["replay", "--from-kafka", "--export", "x.bin"]);
    assert!(!ok && err.contains("--partition"), "{err}");
    let requests = history
        .iter()
        .filter(|e| matches!(e, InputEvent::Request(_)))
        .count();
    let mut decided = 0;
    for p in 0..cfg.partitions {
        let exported = std::env::temp_dir().join(format!("{}journal-{p}.bin", cfg.topic_prefix));
        let exported_arg = exported.to_str().unwrap();
        let part = p.to_string();
        let (ok, _, err) = zumik_cli(
            &cfg,
            &[
                "replay",
                "--from-kafka",
                "--partition",
                &part,
                "--export",
                exported_arg,
            ],
        );
        assert!(ok, "{err}");
        let (ok, offline_audit, err) = zumik_cli(&cfg, &["replay", "--journal", exported_arg]);
        assert!(
            ok && offline_audit.contains(": 0 mismatches"),
            "{offline_audit}{err}"
        );
        decided += offline_audit
            .split(" decisions)")
            .next()
            .and_then(|head| head.rsplit(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
            .expect("the audit counts decisions");
        let _ = std::fs::remove_file(&exported);
    }
    assert_eq!(decided, requests);

    // An event-time window keeps exactly the events inside it.
    let ts: Vec<i64> = history.iter().map(|e| e.ts().millis()).collect();
    let (lo, hi) = (ts[ts.len() / 4], ts[ts.len() / 2]);
    let iso = |ms: i64| zumik::events::Timestamp(ms).to_string();
    let expect = history
        .iter()
        .filter(|e| matches!(e, InputEvent::Request(_)) && (lo..hi).contains(&e.ts().millis()))
        .count();
    let (ok, windowed, err) = zumik_cli(
        &cfg,
        &[
            &[
                "diagnose",
                "--json",
                "--from-kafka",
                "--no-emit",
                "--since",
                &iso(lo),
                "--until",
                &iso(hi),
            ][..],
            &small,
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    let d: serde_json::Value = serde_json::from_str(&windowed).unwrap();
    assert_eq!(d["requests"].as_u64().unwrap(), expect as u64);
    let _ = std::fs::remove_file(&file);
}

/// The address `zumik serve` (logging to `log_path(cfg)`) listens on, once it does.
fn api_address(cfg: &KafkaConfig) -> String {
    let mut addr = String::new();
    wait_for("the API to listen", || {
        let log = std::fs::read_to_string(log_path(cfg)).unwrap_or_default();
        match log.split("http api listening on ").nth(1) {
            Some(rest) => {
                addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                true
            }
            None => false,
        }
    });
    addr
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn get_json(agent: &ureq::Agent, url: &str) -> (u16, serde_json::Value) {
    let mut res = agent.get(url).call().unwrap();
    let status = res.status().as_u16();
    (status, res.body_mut().read_json().unwrap_or_default())
}

fn post_json(agent: &ureq::Agent, url: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let mut res = agent
        .post(url)
        .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(body)
        .unwrap();
    let status = res.status().as_u16();
    (status, res.body_mut().read_json().unwrap_or_default())
}

#[test]
fn the_api_registers_a_cluster_activates_its_lane_and_explains_decisions_over_kafka() {
    use serde_json::json;
    let cfg = KafkaConfig {
        mode: zumik::kafka::DeliveryMode::ExactlyOnce,
        ..config("api")
    };
    let mut serve = spawn_serve(&cfg);
    let base = format!("http://{}", api_address(&cfg));
    let agent = http();
    wait_for("/healthz to say ok", || {
        get_json(&agent, &format!("{base}/healthz")).0 == 200
    });
    let lane = "anthropic/claude-sonnet-4-5";

    // Register: 201 only once the broker applied it (read back from the broker's state).
    let (status, c) = post_json(
        &agent,
        &format!("{base}/v2/byoc/clusters"),
        json!({"name": "gpu-a", "region": "eu-west", "stack": "dynamo", "lanes": [lane],
               "max_inflight": 10, "gpus": 8, "gpu_hour_micros": 2_000_000}),
    );
    assert_eq!(status, 201, "{c}");
    let id = c["cluster_id"].as_str().unwrap().to_owned();
    let (status, _) = post_json(
        &agent,
        &format!("{base}/v2/byoc/clusters/{id}/heartbeat"),
        json!({"status": "ready", "max_inflight": 10, "inflight": 0}),
    );
    assert_eq!(status, 202);
    wait_for("the heartbeat to make the cluster healthy", || {
        get_json(&agent, &format!("{base}/v2/byoc/clusters/{id}")).1["health"] == "healthy"
    });

    // A passing gate report published on the control topic; the API activates the lane with it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut report = zumik::events::GateReportV1 {
        lane: lane.into(),
        passed: true,
        window: zumik::events::Window {
            start: zumik::events::Timestamp(now - 86_400_000),
            end: zumik::events::Timestamp(now - 3_600_000),
        },
        inputs: json!({"requests": 10_000}),
        config: json!({"gpus": 8}),
        results: json!({"break_even_utilisation": 0.4}),
        series: json!({}),
        digest: String::new(),
    };
    report.seal();
    produce(&cfg, &[InputEvent::GateReport(Box::new(report.clone()))]);
    wait_for("the report to be stored on the lane", || {
        get_json(&agent, &format!("{base}/v2/lanes/{lane}")).1["reports"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    });
    let (status, l) = post_json(
        &agent,
        &format!("{base}/v2/lanes/{lane}/activate"),
        json!({"report_digest": report.digest}),
    );
    assert_eq!((status, l["state"].as_str()), (200, Some("active")), "{l}");

    // 20 requests on the hot lane: 9 fit the cluster (10 x 0.9), 11 overflow.
    let requests: Vec<InputEvent> = (0..20)
        .map(|i| {
            serde_json::from_value(json!({
                "schema": "zumik.request.v1", "request_id": format!("api-req-{i}"),
                "tenant_id": "prj_1", "model": lane, "input_tokens": 1000,
                "cached_input_tokens": 0, "max_output_tokens": 100,
                "qos": {"class": "interactive"},
                "ts": zumik::events::Timestamp(now + i).to_rfc3339(),
            }))
            .unwrap()
        })
        .collect();
    produce(&cfg, &requests);
    let committed = by_request(decisions(&cfg, 20));
    for (rid, want) in &committed {
        let (status, got) = get_json(&agent, &format!("{base}/v2/decisions/{rid}"));
        assert_eq!(status, 200, "{rid}: {got}");
        let mut got: DecisionV1 = serde_json::from_value(got["decision"].clone()).unwrap();
        got.source = None;
        assert_eq!(&got, want, "the API shows the committed decision");
    }
    let reasons: BTreeMap<String, usize> = committed.values().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d.reason.as_str().to_owned()).or_default() += 1;
        m
    });
    assert_eq!(
        reasons,
        BTreeMap::from([("hot_lane".into(), 9), ("overflow".into(), 11)])
    );
    let (_, d) = get_json(&agent, &format!("{base}/v2/decisions/api-req-0"));
    assert_eq!(d["decision"]["target"], id.as_str(), "{d}");
    assert!(
        d["explanation"]["summary"]
            .as_str()
            .unwrap()
            .contains("hot lane"),
        "{d}"
    );

    // The metrics count the same decisions, and the cluster's reservations.
    let metrics = agent
        .get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains(
            r#"zumik_decisions_total{mode="live",profile="byoc_dynamo",reason="hot_lane"} 9"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"zumik_decisions_total{mode="live",profile="managed_provider",reason="overflow"} 11"#
        ),
        "{metrics}"
    );
    wait_for("the cluster gauge to show 9 in flight", || {
        get_json(&agent, &format!("{base}/v2/byoc/clusters/{id}")).1["inflight"] == 9
    });

    // SIGTERM: a clean stop (batch committed, snapshot, exit 0).
    let pid = serve.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = serve.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "zumik serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    let log = std::fs::read_to_string(log_path(&cfg)).unwrap();
    assert!(log.contains("stopped after"), "{log}");
    assert!(!log.contains(ADMIN_TOKEN), "the token is never logged");
}

#[test]
fn at_least_once_decides_like_offline_and_a_clean_restart_redoes_nothing() {
    let cfg = KafkaConfig {
        mode: zumik::kafka::DeliveryMode::AtLeastOnce,
        batch_wait_ms: 1,
        ..config("alo")
    };
    let (setup, requests) = workload(3_000);
    let (first, second) = requests.split_at(1_500);
    let broker = start(&cfg);
    produce_in_order(&cfg, &broker, &setup);
    produce(&cfg, first);
    wait_for("the first half decided", || {
        broker.stats.decisions.load(Ordering::Relaxed) >= first.len() as u64
    });
    // A clean stop waits for every acknowledgement and commits the offsets, so the restarted
    // broker (recovering from the journal) resumes exactly after the first half.
    broker.stop();
    let broker = start(&cfg);
    produce(&cfg, second);
    wait_for("the second half decided", || {
        broker.stats.decisions.load(Ordering::Relaxed) >= second.len() as u64
    });
    let stats = broker.stop();
    assert_eq!(
        stats.inputs.load(Ordering::Relaxed),
        second.len() as u64,
        "the restarted broker consumed only the new requests"
    );
    let got = decisions(&cfg, requests.len());
    assert_eq!(got.len(), requests.len(), "none lost, none repeated");
    let got = by_request(got);
    let want = by_request(offline(&[setup, requests.clone()].concat()));
    for (id, w) in &want {
        assert_eq!(got.get(id), Some(w), "decision for {id}");
    }
}

#[test]
fn an_instance_without_a_local_snapshot_restores_the_one_published_on_kafka() {
    let dir = std::env::temp_dir().join(format!("zumik-snaptopic-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = KafkaConfig {
        snapshot_dir: Some(dir.join("first-machine")),
        snapshot_every_inputs: 200,
        ..config("snaptopic")
    };
    let (setup, requests) = workload(1_000);
    let (first, second) = requests.split_at(600);

    let a = start(&cfg);
    produce_in_order(&cfg, &a, &setup);
    produce(&cfg, first);
    wait_for("first part", || {
        a.stats.decisions.load(Ordering::Relaxed) >= first.len() as u64
    });
    let a = a.stop();
    let a_applied = a.applied.load(Ordering::Relaxed);
    assert!(a.snapshots.load(Ordering::Relaxed) >= 1);

    // A new machine: same group, an empty snapshot directory. It restores the snapshot A
    // published on the snapshots topic and reads no journal record before it.
    let b = start(&KafkaConfig {
        snapshot_dir: Some(dir.join("new-machine")),
        ..cfg.clone()
    });
    assert!(
        b.stats.from_topic.load(Ordering::Relaxed),
        "restored from Kafka"
    );
    assert_eq!(b.stats.restored_seq.load(Ordering::Relaxed), a_applied);
    assert_eq!(b.stats.journal_read.load(Ordering::Relaxed), 0);
    assert_eq!(b.stats.recovered.load(Ordering::Relaxed), 0);
    produce(&cfg, second);
    wait_for("second part", || {
        b.stats.decisions.load(Ordering::Relaxed) >= second.len() as u64
    });
    b.stop();

    let got = decisions(&cfg, requests.len());
    assert_eq!(got.len(), requests.len(), "none lost, none repeated");
    let got = by_request(got);
    let want = by_request(offline(&[setup, requests.clone()].concat()));
    for (id, w) in &want {
        assert_eq!(got.get(id), Some(w), "decision for {id}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A broker whose lanes the test places in units by hand: each event goes to the partition
/// (unit) the test names, as the lane key would put all of one lane's records in one unit.
struct Placed {
    cfg: KafkaConfig,
    topics: Topics,
    broker: Broker,
    producer: ThreadedProducer<DefaultProducerContext>,
    /// Requests decided so far, and before this broker started.
    decided: u64,
    base: u64,
}

/// An input event from its JSON (the tests' events are valid by construction).
fn event(json: &str) -> InputEvent {
    zumik::events::codec::decode_input(json.as_bytes()).expect("a valid test event")
}

/// `2026-11-24T10:00:<s>.000Z`.
fn at_second(s: u32) -> String {
    format!("2026-11-24T10:{:02}:{:02}.000Z", s / 60, s % 60)
}

impl Placed {
    fn start(test: &str, setup: &[InputEvent]) -> Placed {
        let cfg = config(test);
        let broker = start(&cfg);
        produce_in_order(&cfg, &broker, setup);
        Placed {
            topics: Topics::new(&cfg.topic_prefix),
            producer: producer(&cfg),
            cfg,
            broker,
            decided: 0,
            base: 0,
        }
    }

    fn send(&self, unit: i32, e: &InputEvent) {
        self.producer
            .send(
                BaseRecord::to(self.topics.for_input(e))
                    .key(e.key())
                    .partition(unit)
                    .payload(&encode_input(e)),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        self.producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Stops the broker and starts it again (it recovers every unit from its journal).
    fn restarted(self) -> Placed {
        self.broker.stop();
        Placed {
            broker: start(&self.cfg),
            base: self.decided,
            ..self
        }
    }

    /// Sends a request to `unit` and returns its committed decision.
    fn decide(&mut self, unit: i32, request: &InputEvent) -> DecisionV1 {
        let InputEvent::Request(r) = request else {
            panic!("not a request")
        };
        self.send(unit, request);
        self.decided += 1;
        let n = self.decided;
        wait_for("a decision", || {
            self.broker.stats.decisions.load(Ordering::Relaxed) >= n - self.base
        });
        decisions(&self.cfg, n as usize)
            .into_iter()
            .find(|d| *d.request_id == *r.request_id)
            .expect("the request's decision")
    }

    /// Sends `request(i)` to `unit` for i = 0, 1, … until a decision satisfies `done` (what
    /// another unit sent may take a batch or two to arrive); fails after a minute.
    fn decide_until(
        &mut self,
        unit: i32,
        request: impl Fn(u32) -> InputEvent,
        done: impl Fn(&DecisionV1) -> bool,
        what: &str,
    ) -> DecisionV1 {
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0.. {
            let d = self.decide(unit, &request(i));
            if done(&d) {
                return d;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
        }
        unreachable!()
    }

    /// Stops the broker; every unit's journal audits with no mismatch and its inputs re-fold
    /// offline to the unit's decisions. Returns the journals.
    fn stop_and_audit(
        self,
    ) -> (
        Vec<DecisionV1>,
        Vec<(i32, Vec<zumik::kafka::JournalRecord>)>,
    ) {
        self.broker.stop();
        let all = decisions(&self.cfg, self.decided as usize);
        assert_eq!(all.len() as u64, self.decided, "one decision per request");
        let units = read_journal_units(&self.cfg, &self.topics).unwrap();
        for (unit, records) in &units {
            let mut a = Auditor::new(Arc::new(RoutingConfig::default()));
            records.iter().for_each(|r| a.apply(&r.entry));
            assert_eq!(a.stats.mismatches, 0, "unit {unit}");
            let inputs: Vec<InputEvent> = records
                .iter()
                .filter_map(|r| match &r.entry {
                    JournalEntry::Input(e) => Some(e.clone()),
                    _ => None,
                })
                .collect();
            let refolded = by_request(offline(&inputs));
            let mine: Vec<_> = all
                .iter()
                .filter(|d| refolded.contains_key(&*d.request_id))
                .collect();
            assert_eq!(mine.len(), refolded.len(), "unit {unit}");
            for d in mine {
                assert_eq!(Some(d), refolded.get(&*d.request_id), "unit {unit}");
            }
        }
        (all, units)
    }
}

/// How many internal (other units') records unit `unit` journaled as inputs.
fn internal_inputs(units: &[(i32, Vec<zumik::kafka::JournalRecord>)], unit: i32) -> usize {
    let (_, records) = units
        .iter()
        .find(|(u, _)| *u == unit)
        .expect("the unit's journal");
    records
        .iter()
        .filter(|r| matches!(&r.entry, JournalEntry::Input(e) if e.is_internal()))
        .count()
}

/// The broker's internal records on `topic` (usage or status).
fn internal_records(cfg: &KafkaConfig, topic: &str) -> Vec<InputEvent> {
    read_all(cfg, topic, 1)
        .into_iter()
        .map(|(payload, _)| {
            zumik::events::codec::decode_internal(&payload).expect("internal records decode")
        })
        .collect()
}

#[test]
fn a_tenants_spend_in_one_unit_counts_against_its_budget_in_the_others() {
    use zumik::events::{Mode, Reason};
    let policy = event(&format!(
        r#"{{"schema":"zumik.tenant_policy.v1","tenant_id":"prj_capped","subscriptions":[],"byok":[],"monthly_budget_micros":10000,"overage_mode":"pause","ts":"{}"}}"#,
        at_second(0)
    ));
    let mut t = Placed::start("usage", &[policy]);
    // Lane `gpt-4o` lives in unit 0, lane `gpt-4o-mini` in unit 1.
    let request = |id: &str, s: u32| {
        event(&format!(
            r#"{{"schema":"zumik.request.v1","request_id":"{id}","tenant_id":"prj_capped","model":"openai/gpt-4o-mini","input_tokens":100,"cached_input_tokens":0,"max_output_tokens":100,"qos":{{"class":"interactive"}},"ts":"{}"}}"#,
            at_second(s)
        ))
    };
    let before = t.decide(1, &request("before", 1));
    assert_eq!(
        (before.mode, before.reason),
        (Mode::Live, Reason::Tail),
        "the tenant is served before the spend"
    );
    // Unit 0 completes three managed gpt-4o requests: 1 000 output tokens each, 10 µ$ a
    // token, 30 000 µ$ in all — three times the tenant's budget, all of it spent in unit 0.
    for i in 0..3 {
        t.send(
            0,
            &event(&format!(
                r#"{{"schema":"zumik.completion.v1","request_id":"done-{i}","tenant_id":"prj_capped","model":"openai/gpt-4o","outcome":"completed","input_tokens":0,"cached_input_tokens":0,"output_tokens":1000,"profile":"managed_provider","target":"openai/gpt-4o","ts":"{}"}}"#,
                at_second(2)
            )),
        );
    }
    // Unit 1 hears of it through the usage topic: its requests are soon refused.
    let refused = t.decide_until(
        1,
        |i| request(&format!("after-{i}"), 3),
        |d| d.reason == Reason::QuotaExceeded,
        "unit 1 to refuse the tenant once unit 0 had spent its budget",
    );
    assert_eq!(refused.mode, Mode::Rejected);
    // A restarted broker recovers the spend unit 1 had from unit 0 (its journal), and applies
    // none of the usage records again (its positions).
    let mut t = t.restarted();
    let again = t.decide(1, &request("after-restart", 4));
    assert_eq!(again.reason, Reason::QuotaExceeded);
    let cfg = t.cfg.clone();
    let usage_topic = t.topics.usage.clone();
    let (_, units) = t.stop_and_audit();

    // What unit 0 sent: one record per tenant and batch, with the unit and the sum.
    let usage = internal_records(&cfg, &usage_topic);
    let (mut requests, mut micros) = (0, 0);
    for u in &usage {
        let InputEvent::Usage(u) = u else {
            panic!("{u:?} on the usage topic")
        };
        assert_eq!((u.tenant_id.as_str(), u.unit), ("prj_capped", 0));
        requests += u.requests;
        micros += u.cost_micros;
        // Each record carries unit 0's month total so far: the sum of the records up to it.
        assert_eq!(u.unit_spent_micros, Some(micros), "{u:?}");
    }
    assert_eq!((requests, micros), (3, 30_000));
    // Units 1 and 2 journaled the usage they applied; unit 0 did not apply its own.
    assert_eq!(internal_inputs(&units, 0), 0);
    assert_eq!(internal_inputs(&units, 1), usage.len());
    assert_eq!(internal_inputs(&units, 2), usage.len());
}

#[test]
fn a_breaker_opened_in_one_unit_takes_the_cluster_out_of_every_unit() {
    use zumik::events::{Reason, Verdict};
    // One cluster serves two hot lanes: `gpt-4o` in unit 0, `gpt-4o-mini` in unit 1.
    let setup = [
        format!(
            r#"{{"schema":"zumik.cluster_registered.v1","cluster_id":"byc_shared","name":"shared","region":"eu-west-1","stack":"dynamo","lanes":["openai/gpt-4o","openai/gpt-4o-mini"],"max_inflight":100,"gpus":8,"gpu_hour_micros":2500000,"ts":"{}"}}"#,
            at_second(0)
        ),
        format!(
            r#"{{"schema":"zumik.cluster_heartbeat.v1","cluster_id":"byc_shared","status":"ready","max_inflight":100,"inflight":0,"ts":"{}"}}"#,
            at_second(1)
        ),
        format!(
            r#"{{"schema":"zumik.lane_activated.v1","lane":"openai/gpt-4o","report_digest":"sha256:{:064x}","ts":"{}"}}"#,
            1,
            at_second(2)
        ),
        format!(
            r#"{{"schema":"zumik.lane_activated.v1","lane":"openai/gpt-4o-mini","report_digest":"sha256:{:064x}","ts":"{}"}}"#,
            2,
            at_second(2)
        ),
    ]
    .map(|json| event(&json));
    let mut t = Placed::start("breaker", &setup);
    let request = |id: &str, lane: &str, s: u32| {
        event(&format!(
            r#"{{"schema":"zumik.request.v1","request_id":"{id}","tenant_id":"prj_a","model":"{lane}","input_tokens":100,"cached_input_tokens":0,"max_output_tokens":100,"qos":{{"class":"interactive"}},"ts":"{}"}}"#,
            at_second(s)
        ))
    };
    let mini = t.decide(1, &request("mini-before", "openai/gpt-4o-mini", 3));
    assert_eq!(mini.reason, Reason::HotLane, "{mini:?}");
    // Unit 0 serves ten requests on the cluster and all of them fail: its breaker opens.
    for i in 0..10 {
        let d = t.decide(0, &request(&format!("big-{i}"), "openai/gpt-4o", 4));
        assert_eq!(d.reason, Reason::HotLane, "{d:?}");
    }
    for i in 0..10 {
        t.send(
            0,
            &event(&format!(
                r#"{{"schema":"zumik.completion.v1","request_id":"big-{i}","tenant_id":"prj_a","model":"openai/gpt-4o","outcome":"failed","input_tokens":100,"cached_input_tokens":0,"output_tokens":0,"error_class":"upstream_5xx","ts":"{}"}}"#,
                at_second(5)
            )),
        );
    }
    // Unit 1 saw no failure, yet soon takes the cluster out too (status topic).
    let d = t.decide_until(
        1,
        |i| request(&format!("mini-after-{i}"), "openai/gpt-4o-mini", 6),
        |d| d.reason == Reason::Failover,
        "unit 1 to fail over once unit 0's breaker opened",
    );
    assert!(
        d.considered
            .iter()
            .any(|c| c.verdict == Verdict::BreakerOpen),
        "{d:?}"
    );
    let cfg = t.cfg.clone();
    let status_topic = t.topics.status.clone();
    let (_, units) = t.stop_and_audit();
    let trips = internal_records(&cfg, &status_topic);
    assert!(
        matches!(&trips[..], [InputEvent::BreakerTripped(b)] if b.unit == 0 && b.cluster_id == "byc_shared"),
        "{trips:?}"
    );
    assert_eq!(internal_inputs(&units, 0), 0);
    assert_eq!(internal_inputs(&units, 1), 1);
    assert_eq!(internal_inputs(&units, 2), 1);
}
