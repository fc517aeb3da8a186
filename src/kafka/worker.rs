//! The broker loop: consume input batches, run them through the deciders (an [`Engine`]: the
//! actix actors of `crate::actors` by default, or the inline `core::Router`), and write
//! decisions, journal and DLQ records — with the consumed offsets — durably before going on.
//!
//! Exactly-once (default): one Kafka transaction per batch holds every output record and the
//! input offsets (`send_offsets_to_transaction`), so a crash either loses the whole batch (it is
//! consumed again) or none of it. At-least-once: outputs flushed, then offsets committed.
//!
//! Recovery: every applied input is journaled (`JournalEntry::Input`) with a global sequence
//! number in the same transaction as its outputs, so on start the router is rebuilt by applying
//! the journaled inputs in sequence order, and consumption resumes at the committed offsets:
//! the state is exactly the state after the last committed batch. RocksDB snapshots (also
//! published on the snapshots topic) bound this replay to the journal written after them.
//! The loop assumes one instance: scale-out with per-partition state and handover between
//! instances is not built yet.
//!
//! Blocking calls only, on the caller's thread: never run this on an async executor. The actors'
//! actix system belongs to this thread and runs only inside `Engine` calls, between the Kafka
//! calls.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::config::{DeliveryMode, KafkaConfig};
use super::topics::{ensure_topics, TopicError, Topics};
use crate::actors::{ActorGone, Engine};
use crate::core::router::{JournalEntry, SnapshotError};
use crate::core::view::RouterView;
use crate::core::{Output, PriceTable, RoutingConfig};
use crate::events::codec::{decode_input, encode_decision_into};
use crate::events::{DecisionV1, InputEvent, Source};
use crate::store::{Snapshot, SnapshotPosition, SnapshotStore, StoreError};

/// Format version of a single journal record on the journal topic (first byte).
pub const JOURNAL_RECORD_VERSION: u8 = 1;
/// Format version of a journal chunk: several records of one key in one message (first byte),
/// then a kind byte ([`CHUNK_INPUTS`] or [`CHUNK_ACTORS`]), then bincode `Vec<JournalRecord>`.
pub const JOURNAL_CHUNK_VERSION: u8 = 2;
/// A chunk of `Input` records only (all that recovery decodes).
pub const CHUNK_INPUTS: u8 = 0;
/// A chunk of actor records (creations, commands with their events, evidence).
pub const CHUNK_ACTORS: u8 = 1;
/// Largest snapshot message (and the snapshots topic's `max.message.bytes`): 64 MiB.
pub const SNAPSHOT_MESSAGE_MAX: usize = 64 * 1024 * 1024;
/// A chunk is cut once its records pass this size (well under Kafka's 1 MB message default).
const CHUNK_BYTES: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);

/// One message on the journal topic: a journal entry and the global position of the input it
/// belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct JournalRecord {
    /// Inputs applied before this record's input, plus one (1-based).
    pub input_seq: u64,
    pub entry: JournalEntry,
}

impl JournalRecord {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(JOURNAL_RECORD_VERSION);
        // Plain data: encoding into a Vec cannot fail.
        bincode::encode_into_std_write(self, out, bincode::config::standard())
            .expect("journal records encode");
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        match bytes.split_first() {
            Some((&JOURNAL_RECORD_VERSION, body)) => {
                bincode::decode_from_slice(body, bincode::config::standard())
                    .map(|(r, _)| r)
                    .map_err(|e| e.to_string())
            }
            Some((v, _)) => Err(format!(
                "journal record version {v}, this build reads {JOURNAL_RECORD_VERSION}"
            )),
            None => Err("empty journal record".into()),
        }
    }

    /// Every record of a journal message (a single record or a chunk), appended to `out`.
    pub fn decode_all(bytes: &[u8], out: &mut Vec<JournalRecord>) -> Result<(), String> {
        match bytes {
            [JOURNAL_CHUNK_VERSION, _kind, body @ ..] => {
                let (recs, used): (Vec<JournalRecord>, usize) =
                    bincode::decode_from_slice(body, bincode::config::standard())
                        .map_err(|e| e.to_string())?;
                if used != body.len() {
                    return Err(format!("{} bytes after the chunk", body.len() - used));
                }
                out.extend(recs);
                Ok(())
            }
            _ => {
                out.push(Self::decode(bytes)?);
                Ok(())
            }
        }
    }

    /// The inputs of a journal message as `(input_seq, input)`, without decoding actor records
    /// (recovery needs only the inputs), appended to `out`.
    pub fn decode_inputs(bytes: &[u8], out: &mut Vec<(u64, InputEvent)>) -> Result<(), String> {
        match bytes {
            [JOURNAL_CHUNK_VERSION, CHUNK_ACTORS, ..] => Ok(()),
            [JOURNAL_CHUNK_VERSION, ..] => {
                let mut recs = Vec::new();
                Self::decode_all(bytes, &mut recs)?;
                out.extend(recs.into_iter().filter_map(|r| match r.entry {
                    JournalEntry::Input(e) => Some((r.input_seq, e)),
                    _ => None,
                }));
                Ok(())
            }
            _ => {
                out.extend(Self::decode_input(bytes)?);
                Ok(())
            }
        }
    }

    /// The `input_seq` and input of an `Input` record, without decoding any other kind of record
    /// (recovery needs only the inputs); `None` for the others.
    pub fn decode_input(bytes: &[u8]) -> Result<Option<(u64, InputEvent)>, String> {
        let cfg = bincode::config::standard();
        let body = match bytes.split_first() {
            Some((&JOURNAL_RECORD_VERSION, body)) => body,
            _ => return Self::decode(bytes).map(|_| None),
        };
        let (input_seq, used): (u64, usize) =
            bincode::decode_from_slice(body, cfg).map_err(|e| e.to_string())?;
        // `JournalEntry::Input` is variant 0: its index is the single byte 0.
        if body.get(used) != Some(&0) {
            return Ok(None);
        }
        match bincode::decode_from_slice(&body[used..], cfg).map_err(|e| e.to_string())? {
            (JournalEntry::Input(e), _) => Ok(Some((input_seq, e))),
            _ => Ok(None),
        }
    }

    /// The Kafka key: the actor the entry belongs to.
    pub fn key(&self) -> &str {
        match &self.entry {
            JournalEntry::Input(e) => e.key(),
            JournalEntry::LaneCreated { lane, .. } | JournalEntry::Lane { lane, .. } => lane,
            JournalEntry::Cluster { cluster_id, .. }
            | JournalEntry::ClusterRemoved { cluster_id } => cluster_id,
            JournalEntry::Tenant { tenant_id, .. } => tenant_id,
            JournalEntry::DiagnosticFlagged(f) => &f.lane,
        }
    }
}

/// The journal records of one batch, grouped into chunks by key and kind: one Kafka message per
/// chunk instead of one per record. A key's records keep their order.
#[derive(Default)]
struct JournalChunks {
    /// (kind, key) → (records, encoded records).
    open: BTreeMap<(u8, String), (u64, Vec<u8>)>,
}

impl JournalChunks {
    /// Adds a record; returns a full chunk to send now, if this one filled it.
    fn push(&mut self, rec: &JournalRecord) -> Option<(String, Vec<u8>)> {
        let kind = if matches!(rec.entry, JournalEntry::Input(_)) {
            CHUNK_INPUTS
        } else {
            CHUNK_ACTORS
        };
        let key = (kind, rec.key().to_owned());
        let (n, buf) = self.open.entry(key.clone()).or_default();
        // Plain data: encoding into a Vec cannot fail.
        bincode::encode_into_std_write(rec, buf, bincode::config::standard())
            .expect("journal records encode");
        *n += 1;
        if buf.len() < CHUNK_BYTES {
            return None;
        }
        let (n, buf) = self.open.remove(&key).unwrap_or_default();
        Some((key.1, Self::message(kind, n, &buf)))
    }

    /// Every open chunk as `(key, payload)`.
    fn drain(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut self.open)
            .into_iter()
            .map(|((kind, key), (n, buf))| (key, Self::message(kind, n, &buf)))
            .collect()
    }

    /// Version, kind, then the records as a bincode `Vec` (its length, then the elements).
    fn message(kind: u8, n: u64, records: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(records.len() + 11);
        out.push(JOURNAL_CHUNK_VERSION);
        out.push(kind);
        bincode::encode_into_std_write(n, &mut out, bincode::config::standard())
            .expect("a length encodes");
        out.extend_from_slice(records);
        out
    }
}

/// Live counters of a broker (read by tests, `serve` and later `/metrics`).
#[derive(Debug, Default)]
pub struct BrokerStats {
    pub inputs: AtomicU64,
    pub decisions: AtomicU64,
    pub dlq: AtomicU64,
    pub batches: AtomicU64,
    /// Journaled inputs replayed at start (after the snapshot, when one was restored).
    pub recovered: AtomicU64,
    /// Journaled input records decoded at start (of the whole journal, or of the part after the
    /// snapshot's offsets).
    pub journal_read: AtomicU64,
    /// `input_seq` of the snapshot restored at start (0: none).
    pub restored_seq: AtomicU64,
    /// Snapshots written.
    pub snapshots: AtomicU64,
    /// The snapshot restored at start came from the snapshots topic (no local one).
    pub from_topic: AtomicBool,
    /// Set once recovery is done and the consumer runs.
    pub ready: AtomicBool,
}

/// A committed batch, as reported to a [`BatchSink`].
#[derive(Debug, Default)]
pub struct CommittedBatch {
    /// The batch's decisions (committed: readers see them now).
    pub decisions: Vec<DecisionV1>,
    /// Input messages applied (DLQ records not included).
    pub inputs: u64,
    pub dlq: u64,
    /// From the batch's first input to its commit.
    pub took: Duration,
    /// Of which the commit (transaction commit, or flush + offset commit).
    pub commit: Duration,
}

/// Observers of the broker loop (the HTTP API's read model and the metrics). Called on the
/// broker's thread after commits, so a slow observer slows consumption instead of queueing
/// without bound.
pub trait BatchSink {
    fn committed(&mut self, batch: CommittedBatch);
    /// Whether a fresh [`RouterView`] is wanted now (asked after batches and on idle polls).
    fn view_due(&mut self) -> bool {
        false
    }
    /// The state after the last committed batch, and the lag of each assigned input partition
    /// (topic, partition, messages behind the high watermark).
    fn view(&mut self, _view: RouterView, _lag: Vec<(String, i32, i64)>) {}
    fn snapshot_written(&mut self, _took: Duration) {}
    /// Whether the Kafka cluster answered a metadata request (checked with the views, at most
    /// every [`REACHABILITY_EVERY`]).
    fn kafka_reachable(&mut self, _ok: bool) {}
    /// Recovery is done and the consumer runs.
    fn ready(&mut self) {}
}

/// How often the broker asks Kafka for metadata to tell its observers Kafka is reachable.
pub const REACHABILITY_EVERY: Duration = Duration::from_secs(5);

/// A sink that ignores everything (benchmarks, tests).
pub struct NoSink;

impl BatchSink for NoSink {
    fn committed(&mut self, _: CommittedBatch) {}
}

/// Why the broker stopped with an error. All are fatal for this process: it exits and a restart
/// recovers from the journal and the committed offsets.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error("kafka {what}: {source}")]
    Kafka {
        what: &'static str,
        source: KafkaError,
    },
    #[error("journal topic {topic} partition {partition} offset {offset}: {message}")]
    Journal {
        topic: String,
        partition: i32,
        offset: i64,
        message: String,
    },
    #[error("{failed} output records were not delivered; offsets not committed")]
    Delivery { failed: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored snapshot does not restore: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Actors(#[from] ActorGone),
}

impl BrokerError {
    /// Whether starting the broker again can succeed: Kafka errors (an outage, a fenced or
    /// failed transaction, undelivered outputs) are; a corrupt journal record or snapshot and a
    /// store that cannot be opened are not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BrokerError::Kafka { .. } | BrokerError::Delivery { .. } | BrokerError::Topics(_)
        )
    }
}

fn kafka(what: &'static str) -> impl FnOnce(KafkaError) -> BrokerError {
    move |source| BrokerError::Kafka { what, source }
}

/// Counts sent records and their delivery reports: at-least-once waits until every record of a
/// batch is acknowledged (and none failed) before it commits the input offsets.
///
/// (rdkafka's `flush` would do, but with `ThreadedProducer` its loop polls for up to 100 ms
/// while the background thread takes the delivery reports: ~100 ms per batch. Waiting on this
/// count wakes as soon as the last report is served.)
#[derive(Default)]
pub struct Delivery {
    sent: AtomicU64,
    failed: AtomicU64,
    reported: Mutex<u64>,
    wake: Condvar,
    /// The journal topic, whose acknowledged offsets are tracked.
    journal: Option<String>,
    /// Per journal partition: one past the last offset acknowledged to this producer.
    journal_ends: Mutex<BTreeMap<i32, i64>>,
}

impl Delivery {
    /// A context that also tracks where this producer's records end on `journal`.
    fn tracking(journal: &str) -> Self {
        Delivery {
            journal: Some(journal.to_owned()),
            ..Delivery::default()
        }
    }

    /// One past the last acknowledged journal offset of each partition this producer wrote to.
    fn journal_ends(&self) -> BTreeMap<i32, i64> {
        self.journal_ends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Waits until every record sent so far has its delivery report; `false` on timeout.
    fn wait_reported(&self, timeout: Duration) -> bool {
        let want = self.sent.load(Ordering::Acquire);
        let reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        let (reported, _) = self
            .wake
            .wait_timeout_while(reported, timeout, |n| *n < want)
            .unwrap_or_else(|e| e.into_inner());
        *reported >= want
    }
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(m) if self.journal.as_deref() == Some(m.topic()) => {
                let mut ends = self.journal_ends.lock().unwrap_or_else(|e| e.into_inner());
                let end = ends.entry(m.partition()).or_default();
                *end = (*end).max(m.offset() + 1);
            }
            Ok(_) => {}
        }
        *self.reported.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.wake.notify_all();
    }
}

/// Commits the open transaction once every record of it is acknowledged.
///
/// rdkafka's `commit_transaction` first flushes by polling for delivery reports, up to 100 ms a
/// poll; with a `ThreadedProducer` the background thread serves those reports, so whenever it
/// takes the last one the flush sleeps out a whole 100 ms poll (measured: 100 ms per commit,
/// whatever the batch). Waiting on this producer's own delivery count first, then for the last
/// message to be released, leaves that flush nothing to wait for.
pub fn commit_transaction(
    producer: &ThreadedProducer<Delivery>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    if !producer.context().wait_reported(timeout) {
        return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
    }
    // A record's report is counted inside the callback; the record is released right after.
    let released_by = Instant::now() + Duration::from_millis(50);
    while producer.in_flight_count() > 0 && Instant::now() < released_by {
        std::thread::yield_now();
    }
    producer.commit_transaction(timeout)
}

/// Sends one record, counted for [`commit_transaction`]; a full local queue is waited out.
pub fn send(
    producer: &ThreadedProducer<Delivery>,
    mut record: BaseRecord<'_, str, [u8]>,
) -> Result<(), BrokerError> {
    loop {
        match producer.send(record) {
            Ok(()) => {
                producer.context().sent.fetch_add(1, Ordering::Release);
                return Ok(());
            }
            // Back-pressure: the local queue is full; let librdkafka drain it.
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => {
                return Err(BrokerError::Kafka {
                    what: "produce",
                    source: e,
                })
            }
        }
    }
}

/// At-least-once: the batches whose offsets wait for their output records' acknowledgements,
/// and when their offsets were last committed.
struct Unacked {
    /// (records sent when the batch ended, its offsets), oldest first.
    batches: VecDeque<(u64, TopicPartitionList)>,
    every: Duration,
    committed_at: Instant,
}

impl Unacked {
    fn new(every: Duration) -> Self {
        Unacked {
            batches: VecDeque::new(),
            every,
            committed_at: Instant::now(),
        }
    }

    /// A batch whose offsets may be committed once the records sent so far (`sent`) are all
    /// acknowledged.
    fn push(&mut self, sent: u64, offsets: TopicPartitionList) {
        self.batches.push_back((sent, offsets));
    }

    /// Commits what is acknowledged, once `every` has passed since the last commit.
    fn commit_due(
        &mut self,
        producer: &ThreadedProducer<Delivery>,
        consumer: &BaseConsumer,
    ) -> Result<(), BrokerError> {
        if self.committed_at.elapsed() < self.every {
            return Ok(());
        }
        self.committed_at = Instant::now();
        commit_acknowledged(producer, consumer, &mut self.batches, false)
    }

    /// Waits for every acknowledgement and commits all offsets, synchronously.
    fn commit_all(
        &mut self,
        producer: &ThreadedProducer<Delivery>,
        consumer: &BaseConsumer,
    ) -> Result<(), BrokerError> {
        self.committed_at = Instant::now();
        commit_acknowledged(producer, consumer, &mut self.batches, true)
    }
}

/// At-least-once: commits the offsets of the batches whose output records are all
/// acknowledged, oldest first (`wait`: waits for all of them, synchronously). Fails if any
/// output record failed: its batch must be consumed again, so no later offset may be committed.
fn commit_acknowledged(
    producer: &ThreadedProducer<Delivery>,
    consumer: &BaseConsumer,
    unacked: &mut VecDeque<(u64, TopicPartitionList)>,
    wait: bool,
) -> Result<(), BrokerError> {
    if unacked.is_empty() {
        return Ok(());
    }
    let ctx = producer.context();
    if wait && !ctx.wait_reported(TIMEOUT) {
        return Err(BrokerError::Kafka {
            what: "flush",
            source: KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut),
        });
    }
    let failed = ctx.failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(BrokerError::Delivery { failed });
    }
    let reported = *ctx.reported.lock().unwrap_or_else(|e| e.into_inner());
    // The acknowledged batches' offsets, merged: per partition, the newest.
    let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
    while unacked.front().is_some_and(|(mark, _)| *mark <= reported) {
        let (_, tpl) = unacked.pop_front().expect("checked above");
        for e in tpl.elements() {
            if let Offset::Offset(o) = e.offset() {
                let at = offsets
                    .entry((e.topic().to_owned(), e.partition()))
                    .or_default();
                *at = (*at).max(o);
            }
        }
    }
    if offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in &offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(kafka("offsets"))?;
    }
    // Asynchronous in the steady state: librdkafka keeps commits in order, and a crash before
    // one lands only decides its batch again (at-least-once).
    let mode = if wait {
        CommitMode::Sync
    } else {
        CommitMode::Async
    };
    consumer.commit(&tpl, mode).map_err(kafka("commit offsets"))
}

/// Watermarks of a partition; right after topic creation the leader may not be elected yet,
/// so transient errors are retried for a while.
fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), BrokerError> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
            Ok(w) => return Ok(w),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                return Err(BrokerError::Kafka {
                    what: "journal watermarks",
                    source: e,
                })
            }
        }
    }
}

/// Every committed record of the journal topic, as `(input_seq, partition, offset, record)`,
/// sorted so that each actor's records keep their order (an actor's records share a key, hence a
/// partition, in which offsets and `input_seq` both grow).
pub fn read_journal(cfg: &KafkaConfig, topics: &Topics) -> Result<Vec<JournalRecord>, BrokerError> {
    read_journal_from(cfg, topics, &BTreeMap::new())
}

/// [`read_journal`] from the given offset of each partition (partitions not named: from the
/// beginning).
pub fn read_journal_from(
    cfg: &KafkaConfig,
    topics: &Topics,
    start: &BTreeMap<i32, i64>,
) -> Result<Vec<JournalRecord>, BrokerError> {
    let Scan { records, .. } = scan_topic(cfg, &topics.journal, start, |bytes, out| {
        let mut recs = Vec::new();
        JournalRecord::decode_all(bytes, &mut recs)?;
        out.extend(recs.into_iter().map(|r| (r.input_seq, r)));
        Ok(())
    })?;
    Ok(records)
}

/// Every committed record of `topic` (all partitions, from the beginning to the end at the
/// time of the call), as raw payloads in partition/offset order.
pub fn read_topic(cfg: &KafkaConfig, topic: &str) -> Result<Vec<Vec<u8>>, BrokerError> {
    let Scan {
        records: payloads, ..
    } = scan_topic(cfg, topic, &BTreeMap::new(), |bytes, out| {
        out.push((0, bytes.to_vec()));
        Ok(())
    })?;
    Ok(payloads)
}

/// Appends `entries` to the journal topic (not tied to an input: `input_seq` 0, which orders
/// them first and keeps recovery from applying them). Plain idempotent produce, awaited.
pub fn append_to_journal(
    cfg: &KafkaConfig,
    topics: &Topics,
    entries: Vec<JournalEntry>,
) -> Result<(), BrokerError> {
    let producer: ThreadedProducer<Delivery> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .create_with_context(Delivery::default())
        .map_err(kafka("journal producer"))?;
    let mut buf = Vec::new();
    for entry in entries {
        let rec = JournalRecord {
            input_seq: 0,
            entry,
        };
        rec.encode(&mut buf);
        send(
            &producer,
            BaseRecord::to(&topics.journal)
                .key(rec.key())
                .payload(&buf[..]),
        )?;
    }
    producer.flush(TIMEOUT).map_err(kafka("flush"))?;
    match producer.context().failed.load(Ordering::Relaxed) {
        0 => Ok(()),
        failed => Err(BrokerError::Delivery { failed }),
    }
}

/// What [`scan_topic`] read.
struct Scan<T> {
    records: Vec<T>,
    /// Records `decode` kept.
    kept: u64,
    /// Where the read ended on each partition it read.
    ends: BTreeMap<i32, i64>,
}

/// Reads a topic (committed records) from `start` (per partition; others from the beginning)
/// up to its end at the time of the call, keeping what `decode` returns with its sort key,
/// sorted by `(key, partition, offset)`. Also returns the number of records kept and where the
/// read ended on each partition.
fn scan_topic<T>(
    cfg: &KafkaConfig,
    topic: &str,
    start: &BTreeMap<i32, i64>,
    decode: impl Fn(&[u8], &mut Vec<(u64, T)>) -> Result<(), String>,
) -> Result<Scan<T>, BrokerError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", format!("{}-reader", cfg.group_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(kafka("reader consumer"))?;
    let meta = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(kafka("topic metadata"))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for t in meta.topics() {
        for p in t.partitions() {
            let (low, high) = watermarks(&consumer, topic, p.id())?;
            let from = start.get(&p.id()).copied().unwrap_or(low).max(low);
            if high > from {
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(from))
                    .map_err(kafka("reader assign"))?;
                ends.insert(p.id(), high);
            }
        }
    }
    let mut records: Vec<(u64, i32, i64, T)> = Vec::new();
    let mut kept: Vec<(u64, T)> = Vec::new();
    let mut read = 0u64;
    if ends.is_empty() {
        return Ok(Scan {
            records: Vec::new(),
            kept: 0,
            ends,
        });
    }
    consumer.assign(&tpl).map_err(kafka("reader assign"))?;
    let mut done = BTreeMap::new();
    // With read_committed, aborted records and transaction markers are skipped: a partition is
    // read once the position reaches its high watermark (the last stable offset after commits).
    while done.len() < ends.len() {
        // Short polls: the end of an exactly-once partition is a commit marker, which is never
        // delivered, so each partition is finished by the position check of an empty poll;
        // its wait is pure recovery time.
        match consumer.poll(Duration::from_millis(20)) {
            Some(Ok(m)) => {
                kept.clear();
                decode(m.payload().unwrap_or_default(), &mut kept).map_err(|message| {
                    BrokerError::Journal {
                        topic: topic.to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                        message,
                    }
                })?;
                read += kept.len() as u64;
                records.extend(
                    kept.drain(..)
                        .map(|(seq, rec)| (seq, m.partition(), m.offset(), rec)),
                );
                if m.offset() + 1 >= ends[&m.partition()] {
                    done.insert(m.partition(), ());
                }
            }
            Some(Err(e)) => {
                return Err(BrokerError::Kafka {
                    what: "topic read",
                    source: e,
                })
            }
            None => {
                // Past the last stable offset only markers remain: check positions.
                let pos = consumer.position().map_err(kafka("reader position"))?;
                for e in pos.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        if o >= ends[&e.partition()] {
                            done.insert(e.partition(), ());
                        }
                    }
                }
            }
        }
    }
    records.sort_by_key(|(seq, partition, offset, _)| (*seq, *partition, *offset));
    Ok(Scan {
        records: records.into_iter().map(|(_, _, _, r)| r).collect(),
        kept: read,
        ends,
    })
}

/// Advances `ends` to `more` where `more` is further, per partition.
fn merge_ends(ends: &mut BTreeMap<i32, i64>, more: &BTreeMap<i32, i64>) {
    for (&p, &o) in more {
        let end = ends.entry(p).or_default();
        *end = (*end).max(o);
    }
}

/// Messages behind the high watermark on each assigned input partition, from the consumer's
/// position and its cached watermarks (no broker round trip).
fn input_lag(consumer: &BaseConsumer) -> Vec<(String, i32, i64)> {
    let Ok(position) = consumer.position() else {
        return Vec::new();
    };
    position
        .elements()
        .iter()
        .filter_map(|e| {
            let high = cached_high_watermark(consumer, e.topic(), e.partition())?;
            let at = match e.offset() {
                Offset::Offset(o) => o,
                // Nothing consumed yet on this partition: all of it is behind.
                _ => 0,
            };
            Some((e.topic().to_owned(), e.partition(), (high - at).max(0)))
        })
        .collect()
}

/// The high watermark librdkafka last learnt from fetches (`rd_kafka_get_watermark_offsets`,
/// which the rdkafka crate does not wrap): local, never blocks on the broker.
fn cached_high_watermark(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; the topic is a NUL-terminated
    // string that outlives the call; the out pointers are valid i64s.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

/// The RocksDB snapshots of one broker and when the next is due.
struct Snapshots {
    store: SnapshotStore,
    /// Publishes each snapshot on the compacted snapshots topic (keyed like the store), so an
    /// instance without this store (a new machine, a lost volume) restores from Kafka.
    publisher: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    /// One snapshot per consumer group and topic prefix.
    key: String,
    every_inputs: u64,
    interval: Duration,
    last_seq: u64,
    last_at: Instant,
    /// Journal offsets the state reflects without this producer's records: the restored
    /// snapshot's, advanced by the recovery read.
    journal_base: BTreeMap<i32, i64>,
}

impl Snapshots {
    fn open(cfg: &KafkaConfig) -> Result<Option<Self>, BrokerError> {
        let Some(dir) = &cfg.snapshot_dir else {
            return Ok(None);
        };
        let publisher = ClientConfig::new()
            .set("bootstrap.servers", &cfg.brokers)
            .set("compression.type", "lz4")
            .set("message.max.bytes", SNAPSHOT_MESSAGE_MAX.to_string())
            .create()
            .map_err(kafka("snapshot producer"))?;
        Ok(Some(Snapshots {
            store: SnapshotStore::open(dir)?,
            publisher,
            topic: Topics::new(&cfg.topic_prefix).snapshots,
            key: format!("{}/{}", cfg.group_id, cfg.topic_prefix),
            every_inputs: cfg.snapshot_every_inputs,
            interval: Duration::from_millis(cfg.snapshot_interval_ms),
            last_seq: 0,
            last_at: Instant::now(),
            journal_base: BTreeMap::new(),
        }))
    }

    fn due(&self, input_seq: u64) -> bool {
        input_seq > self.last_seq
            && (input_seq - self.last_seq >= self.every_inputs
                || self.last_at.elapsed() >= self.interval)
    }

    /// Writes the state after the last committed batch (`input_seq` inputs) with the journal
    /// position it reflects: the recovery base advanced by every journal record this producer
    /// had acknowledged (all of them: called after a commit). Taken from delivery reports, not
    /// from a watermark query, which can run ahead of the commit markers and so land before
    /// the records of the batch just committed.
    fn save(
        &mut self,
        engine: &Engine,
        input_seq: u64,
        producer: &ThreadedProducer<Delivery>,
        stats: &BrokerStats,
    ) -> Result<Duration, BrokerError> {
        let started = Instant::now();
        let mut journal_offsets = self.journal_base.clone();
        merge_ends(&mut journal_offsets, &producer.context().journal_ends());
        let position = SnapshotPosition {
            input_seq,
            journal_offsets,
        };
        let snapshot = Snapshot {
            position,
            state: engine.snapshot()?,
        };
        self.store.save(&self.key, &snapshot)?;
        // Best effort: the local store is the primary copy; a snapshot that Kafka refuses
        // (too large for the topic, say) only means a moved partition replays more journal.
        let message = snapshot.to_message();
        let record = BaseRecord::to(&self.topic)
            .key(self.key.as_str())
            .payload(&message[..]);
        if let Err((e, _)) = self.publisher.send(record) {
            tracing::warn!(
                "snapshot at input {input_seq} not published on {}: {e}",
                self.topic
            );
        }
        self.last_seq = input_seq;
        self.last_at = Instant::now();
        stats.snapshots.fetch_add(1, Ordering::Relaxed);
        Ok(started.elapsed())
    }
}

/// The newest snapshot of `key` on the snapshots topic (compacted: the latest per key), read up
/// to the topic's end at the time of the call.
fn published_snapshot(
    cfg: &KafkaConfig,
    topics: &Topics,
    key: &str,
) -> Result<Option<Snapshot>, BrokerError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", format!("{}snapshot-reader", cfg.group_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.max.bytes", SNAPSHOT_MESSAGE_MAX.to_string())
        .set(
            "receive.message.max.bytes",
            (2 * SNAPSHOT_MESSAGE_MAX).to_string(),
        )
        .create()
        .map_err(kafka("snapshot reader"))?;
    let meta = consumer
        .fetch_metadata(Some(&topics.snapshots), TIMEOUT)
        .map_err(kafka("snapshots metadata"))?;
    let mut latest: Option<Snapshot> = None;
    for t in meta.topics() {
        for p in t.partitions() {
            let (low, high) = watermarks(&consumer, &topics.snapshots, p.id())?;
            if high <= low {
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topics.snapshots, p.id(), Offset::Offset(low))
                .map_err(kafka("assign"))?;
            consumer.assign(&tpl).map_err(kafka("assign"))?;
            let deadline = Instant::now() + TIMEOUT;
            loop {
                let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                    if Instant::now() > deadline {
                        break;
                    }
                    continue;
                };
                let m = m.map_err(kafka("read snapshots"))?;
                if m.key() == Some(key.as_bytes()) {
                    if let Some(bytes) = m.payload() {
                        match Snapshot::from_message(bytes) {
                            Ok(snap) => {
                                if latest
                                    .as_ref()
                                    .is_none_or(|l| snap.position.input_seq >= l.position.input_seq)
                                {
                                    latest = Some(snap);
                                }
                            }
                            Err(e) => tracing::warn!(
                                "skipping snapshot at {}/{}/{}: {e}",
                                topics.snapshots,
                                p.id(),
                                m.offset()
                            ),
                        }
                    }
                }
                if m.offset() + 1 >= high {
                    break;
                }
            }
        }
    }
    Ok(latest)
}

/// Rebuilds the router: the latest snapshot if there is one, then every journaled `Input` after
/// it, in input order. Returns the `input_seq` reached.
fn recover(
    cfg: &KafkaConfig,
    topics: &Topics,
    engine: &mut Engine,
    snapshots: Option<&mut Snapshots>,
    stats: &BrokerStats,
) -> Result<u64, BrokerError> {
    let began = Instant::now();
    let mut snapshots = snapshots;
    let mut start = BTreeMap::new();
    let mut input_seq = 0;
    if let Some(s) = snapshots.as_mut() {
        // The local store first; without a snapshot there (a new instance, a lost volume), the
        // one published on the snapshots topic.
        let snap = match s.store.load(&s.key)? {
            Some(snap) => Some(snap),
            None => {
                let snap = published_snapshot(cfg, topics, &s.key)?;
                if snap.is_some() {
                    stats.from_topic.store(true, Ordering::Relaxed);
                }
                snap
            }
        };
        if let Some(snap) = snap {
            engine.restore(&snap.state)?;
            input_seq = snap.position.input_seq;
            start = snap.position.journal_offsets;
            s.last_seq = input_seq;
            stats.restored_seq.store(input_seq, Ordering::Relaxed);
        }
    }
    let snapshot_at = began.elapsed();
    let Scan {
        records: inputs,
        kept: read,
        ends: read_to,
    } = scan_topic(cfg, &topics.journal, &start, |bytes, out| {
        let mut inputs = Vec::new();
        JournalRecord::decode_inputs(bytes, &mut inputs)?;
        out.extend(inputs.into_iter().map(|(seq, e)| (seq, (seq, e))));
        Ok(())
    })?;
    stats.journal_read.store(read, Ordering::Relaxed);
    if let Some(s) = snapshots {
        // Everything before these offsets is in the state once the tail below is applied.
        s.journal_base = start;
        merge_ends(&mut s.journal_base, &read_to);
    }
    let mut n = 0;
    let mut out = Output::default();
    for (seq, e) in inputs {
        // A snapshot's journal offsets are exact (acknowledged offsets), but a journal written
        // by an older build may hold records the state already reflects: `input_seq` tells.
        if seq <= input_seq {
            continue;
        }
        engine.apply(e, &mut out)?;
        out.clear();
        input_seq = seq;
        n += 1;
    }
    stats.recovered.store(n, Ordering::Relaxed);
    tracing::debug!(
        snapshot_ms = snapshot_at.as_millis() as u64,
        journal_ms = (began.elapsed() - snapshot_at).as_millis() as u64,
        journal_records = read,
        replayed = n,
        "broker: recovery"
    );
    Ok(input_seq)
}

/// The settings of the broker's output producer (also the bench's passthrough).
pub fn producer_config(cfg: &KafkaConfig) -> ClientConfig {
    let exactly_once = cfg.mode == DeliveryMode::ExactlyOnce;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        // At-least-once is the low-latency mode: records leave at once (a batch's records
        // still share requests, as they are queued together).
        .set("linger.ms", if exactly_once { "1" } else { "0" });
    if exactly_once {
        c.set("transactional.id", &cfg.transactional_id)
            .set("transaction.timeout.ms", "60000");
    }
    c
}

/// The settings of the broker's input consumer (also the bench's passthrough and two-hop floor).
pub fn consumer_config(cfg: &KafkaConfig) -> ClientConfig {
    let exactly_once = cfg.mode == DeliveryMode::ExactlyOnce;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        // Short fetch waits: at-least-once is the low-latency mode.
        .set("fetch.wait.max.ms", if exactly_once { "100" } else { "5" })
        .set("partition.assignment.strategy", "range")
        // Static membership: a restarted instance (same transactional id) takes its partitions
        // back at once instead of waiting out the dead member's session.
        .set("group.instance.id", &cfg.transactional_id);
    c
}

/// Runs the broker until `stop` is set (the current batch is finished and committed first).
pub fn run_broker(
    cfg: &KafkaConfig,
    routing: Arc<RoutingConfig>,
    prices: Arc<PriceTable>,
    stop: &AtomicBool,
    stats: &BrokerStats,
) -> Result<(), BrokerError> {
    run_broker_with(cfg, routing, prices, stop, stats, &mut NoSink)
}

/// [`run_broker`], reporting commits, snapshots and state views to `sink`.
pub fn run_broker_with(
    cfg: &KafkaConfig,
    routing: Arc<RoutingConfig>,
    prices: Arc<PriceTable>,
    stop: &AtomicBool,
    stats: &BrokerStats,
    sink: &mut dyn BatchSink,
) -> Result<(), BrokerError> {
    let started = Instant::now();
    let topics = Topics::new(&cfg.topic_prefix);
    if cfg.create_topics {
        ensure_topics(cfg, &topics)?;
    }
    let topics_at = started.elapsed();
    let mut engine = Engine::new(cfg.engine, routing, prices);
    let mut snapshots = Snapshots::open(cfg)?;
    let mut input_seq = recover(cfg, &topics, &mut engine, snapshots.as_mut(), stats)?;
    tracing::debug!(
        topics_ms = topics_at.as_millis() as u64,
        recovered_ms = started.elapsed().as_millis() as u64,
        "broker: topics checked, state recovered"
    );

    let exactly_once = cfg.mode == DeliveryMode::ExactlyOnce;
    let producer: ThreadedProducer<Delivery> = producer_config(cfg)
        .create_with_context(Delivery::tracking(&topics.journal))
        .map_err(kafka("producer"))?;
    if exactly_once {
        // Fences any older instance with the same transactional id (a zombie after a crash).
        producer
            .init_transactions(TIMEOUT)
            .map_err(kafka("init transactions"))?;
    }
    let consumer: BaseConsumer = consumer_config(cfg).create().map_err(kafka("consumer"))?;
    consumer
        .subscribe(&topics.inputs())
        .map_err(kafka("subscribe"))?;
    // A replayed tail is snapshotted at once, so the next start need not replay it again.
    if let Some(s) = snapshots.as_mut().filter(|s| input_seq > s.last_seq) {
        sink.snapshot_written(s.save(&engine, input_seq, &producer, stats)?);
    }
    stats.ready.store(true, Ordering::Relaxed);
    sink.ready();

    let mut out = Output::with_journal();
    let mut buf = Vec::with_capacity(512);
    let mut chunks = JournalChunks::default();
    let wait = Duration::from_millis(cfg.batch_wait_ms);
    let mut decided = Vec::new();
    let mut unacked = Unacked::new(Duration::from_millis(cfg.commit_interval_ms));
    let mut probed: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        unacked.commit_due(&producer, &consumer)?;
        if sink.view_due() {
            sink.view(engine.view()?, input_lag(&consumer));
            // A consumer waits out an outage silently: ask the cluster itself (a local round
            // trip normally; during an outage this blocks up to 500 ms every few seconds, when
            // nothing can be processed anyway).
            if probed.is_none_or(|t| t.elapsed() >= REACHABILITY_EVERY) {
                probed = Some(Instant::now());
                let ok = consumer
                    .fetch_metadata(Some(&topics.requests), Duration::from_millis(500))
                    .is_ok_and(|m| !m.brokers().is_empty());
                sink.kafka_reachable(ok);
            }
        }
        let Some(first) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let started = Instant::now();
        if exactly_once {
            producer
                .begin_transaction()
                .map_err(kafka("begin transaction"))?;
        }
        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut next = Some(first);
        let mut n = 0;
        let mut dlq = 0;
        while let Some(polled) = next.take() {
            let m = polled.map_err(kafka("consume"))?;
            n += 1;
            offsets.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
            let payload = m.payload().unwrap_or_default();
            match decode_input(payload) {
                Ok(event) => {
                    input_seq += 1;
                    stats.inputs.fetch_add(1, Ordering::Relaxed);
                    engine.apply(event, &mut out)?;
                    for entry in out.journal.drain(..) {
                        let rec = JournalRecord { input_seq, entry };
                        if let Some((key, payload)) = chunks.push(&rec) {
                            send(
                                &producer,
                                BaseRecord::to(&topics.journal)
                                    .key(key.as_str())
                                    .payload(&payload[..]),
                            )?;
                        }
                    }
                    for mut d in out.decisions.drain(..) {
                        d.source = Some(Source {
                            topic: m.topic().to_owned(),
                            partition: m.partition(),
                            offset: m.offset(),
                        });
                        buf.clear();
                        encode_decision_into(&d, &mut buf);
                        send(
                            &producer,
                            BaseRecord::to(&topics.decisions)
                                .key(&*d.lane)
                                .payload(&buf[..]),
                        )?;
                        stats.decisions.fetch_add(1, Ordering::Relaxed);
                        decided.push(d);
                    }
                    out.clear();
                }
                Err(e) => {
                    let source = format!("{}/{}/{}", m.topic(), m.partition(), m.offset());
                    let reason = e.to_string();
                    let headers = OwnedHeaders::new()
                        .insert(Header {
                            key: "zumik.error",
                            value: Some(reason.as_str()),
                        })
                        .insert(Header {
                            key: "zumik.error_code",
                            value: Some(e.code()),
                        })
                        .insert(Header {
                            key: "zumik.source",
                            value: Some(source.as_str()),
                        });
                    let key = m
                        .key()
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .unwrap_or("");
                    send(
                        &producer,
                        BaseRecord::to(&topics.dlq)
                            .key(key)
                            .payload(payload)
                            .headers(headers),
                    )?;
                    stats.dlq.fetch_add(1, Ordering::Relaxed);
                    dlq += 1;
                }
            }
            // The batch takes whatever input is already here, up to `batch_max`; it waits for
            // more only until `batch_wait_ms` after its first input. (Bounding the batch by time
            // spent *processing* would shrink batches to what fits in the window and make the
            // per-batch commit the limit.)
            if n < cfg.batch_max {
                next = consumer.poll(Duration::ZERO).or_else(|| {
                    wait.checked_sub(started.elapsed())
                        .filter(|left| !left.is_zero())
                        .and_then(|left| consumer.poll(left))
                });
            }
        }
        // The batch's journal, one message per key and kind, in the same transaction.
        for (key, payload) in chunks.drain() {
            send(
                &producer,
                BaseRecord::to(&topics.journal)
                    .key(key.as_str())
                    .payload(&payload[..]),
            )?;
        }
        let committing = Instant::now();
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(kafka("offsets"))?;
        }
        if exactly_once {
            let group = consumer.group_metadata().ok_or(BrokerError::Kafka {
                what: "group metadata",
                source: KafkaError::Subscription("no consumer group metadata".into()),
            })?;
            producer
                .send_offsets_to_transaction(&tpl, &group, TIMEOUT)
                .map_err(kafka("send offsets"))?;
            commit_transaction(&producer, TIMEOUT).map_err(kafka("commit transaction"))?;
        } else {
            // At-least-once does not wait for the acknowledgements: the offsets are committed
            // once every output record sent before them is acknowledged (checked each round).
            unacked.push(producer.context().sent.load(Ordering::Acquire), tpl);
            unacked.commit_due(&producer, &consumer)?;
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        sink.committed(CommittedBatch {
            decisions: std::mem::take(&mut decided),
            inputs: n as u64 - dlq,
            dlq,
            took: started.elapsed(),
            commit: committing.elapsed(),
        });
        if let Some(s) = snapshots.as_mut().filter(|s| s.due(input_seq)) {
            // A snapshot reflects only acknowledged outputs and committed offsets.
            unacked.commit_all(&producer, &consumer)?;
            sink.snapshot_written(s.save(&engine, input_seq, &producer, stats)?);
        }
    }
    // Clean shutdown: the last batch is committed; a final snapshot makes the restart instant.
    unacked.commit_all(&producer, &consumer)?;
    if let Some(s) = snapshots.as_mut().filter(|s| input_seq > s.last_seq) {
        sink.snapshot_written(s.save(&engine, input_seq, &producer, stats)?);
    }
    if let Some(s) = &snapshots {
        if let Err(e) = s.publisher.flush(TIMEOUT) {
            tracing::warn!("the last snapshot may not be published: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Output, PriceTable, Router, RoutingConfig};

    /// Journal records of the example scenario, as the broker writes them.
    fn records() -> Vec<JournalRecord> {
        let mut router = Router::new(
            Arc::new(RoutingConfig::default()),
            Arc::new(PriceTable::embedded()),
        );
        let mut out = Output::with_journal();
        let mut recs = Vec::new();
        let text = include_str!("../../examples/scenario.jsonl");
        for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            router.apply(decode_input(line.as_bytes()).unwrap(), &mut out);
            for entry in out.journal.drain(..) {
                recs.push(JournalRecord {
                    input_seq: i as u64 + 1,
                    entry,
                });
            }
            out.clear();
        }
        recs
    }

    #[test]
    fn recovery_decodes_exactly_the_input_records() {
        let recs = records();
        let mut buf = Vec::new();
        let (mut inputs, mut others) = (0, 0);
        for r in &recs {
            r.encode(&mut buf);
            assert_eq!(JournalRecord::decode(&buf).unwrap(), *r);
            match (&r.entry, JournalRecord::decode_input(&buf).unwrap()) {
                (JournalEntry::Input(e), Some((seq, got))) => {
                    assert_eq!((seq, &got), (r.input_seq, e));
                    inputs += 1;
                }
                (JournalEntry::Input(_), None) => panic!("input record {} skipped", r.input_seq),
                (_, Some(_)) => panic!("a non-input record decoded as an input"),
                (_, None) => others += 1,
            }
        }
        assert!(
            inputs > 10 && others > 10,
            "{inputs} inputs, {others} others"
        );
        assert!(JournalRecord::decode_input(&[9, 0, 0]).is_err());
        assert!(JournalRecord::decode_input(&[]).is_err());
    }

    #[test]
    fn chunks_carry_every_record_in_order_and_recovery_reads_only_input_chunks() {
        let recs = records();
        let mut chunks = JournalChunks::default();
        let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
        for r in &recs {
            messages.extend(chunks.push(r));
        }
        messages.extend(chunks.drain());
        assert!(
            messages.len() < recs.len() / 2,
            "{} messages",
            messages.len()
        );
        let (mut all, mut inputs) = (Vec::new(), Vec::new());
        for (key, payload) in &messages {
            let before = all.len();
            JournalRecord::decode_all(payload, &mut all).unwrap();
            assert!(all[before..].iter().all(|r| r.key() == key));
            JournalRecord::decode_inputs(payload, &mut inputs).unwrap();
        }
        // Per key and kind (inputs, actor records), the records come back in their order; all
        // of them, once. (Readers merge the two kinds again by `input_seq`.)
        let by_key = |v: &[JournalRecord]| {
            let mut m: BTreeMap<(String, bool), Vec<JournalRecord>> = BTreeMap::new();
            for r in v {
                let input = matches!(r.entry, JournalEntry::Input(_));
                m.entry((r.key().to_owned(), input))
                    .or_default()
                    .push(r.clone());
            }
            m
        };
        assert_eq!(by_key(&all), by_key(&recs));
        let want: Vec<(u64, InputEvent)> = recs
            .iter()
            .filter_map(|r| match &r.entry {
                JournalEntry::Input(e) => Some((r.input_seq, e.clone())),
                _ => None,
            })
            .collect();
        inputs.sort_by_key(|(seq, _)| *seq);
        assert_eq!(inputs, want);
        // A chunk bigger than the cut is split, not lost.
        let mut big = JournalChunks::default();
        let mut sent = 0;
        for _ in 0..200 {
            for r in &recs {
                sent += big.push(r).is_some() as usize;
            }
        }
        assert!(sent > 0);
    }
}
