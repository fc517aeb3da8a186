//! The broker loop: consume input batches, run them through the deciders (an
//! [`Engine`](crate::actors::Engine): the actix actors of `crate::actors` by default, or the
//! inline `core::Router`), and write decisions, journal, DLQ, usage and status records — with
//! the consumed offsets — durably before going on.
//!
//! Exactly-once (default): one Kafka transaction per batch holds every output record and the
//! input offsets (`send_offsets_to_transaction`), so a crash either loses the whole batch (it is
//! consumed again) or none of it. At-least-once: outputs flushed, then offsets committed.
//!
//! State is split into per-partition units (`super::units`): unit `p` decides the requests and
//! completions of input partition `p` and applies every telemetry and control record, and the
//! other units' usage and breaker trips. Several
//! instances in one consumer group share the units; the loop loads, keeps and drops units as
//! the group's assignment changes, between batches (a batch is polled first and applied after,
//! so a rebalance never lands in the middle of a transaction's work).
//!
//! Recovery: every input a unit applies is journaled (`JournalEntry::Input`, on the unit's
//! journal partition) with the unit's sequence number in the same transaction as its outputs,
//! so a unit is rebuilt by applying its journaled inputs in sequence order, and consumption
//! resumes at the committed offsets: the state is exactly the state after the last committed
//! batch. RocksDB snapshots (also published on the snapshots topic) bound this replay to the
//! journal written after them.
//!
//! Blocking calls only, on the caller's thread: never run this on an async executor. The actors'
//! actix system belongs to this thread and runs only inside `Engine` calls, between the Kafka
//! calls.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::config::{DeliveryMode, KafkaConfig};
use super::topics::{ensure_topics, TopicError, Topics};
use super::units::{
    build_units, catch_up_reads, fetch_units, new_engine, sent_by, top_up_units, BroadcastRecord,
    Fetched, GroupContext, Positions, Rebalanced, Shared, Unit,
};
use crate::actors::{ActorGone, ActorSystem};
use crate::core::router::{JournalEntry, SnapshotError};
use crate::core::view::RouterView;
use crate::core::{Output, PriceTable, RoutingConfig};
use crate::events::codec::{encode_decision_into, encode_internal, DecodeError};
use crate::events::{DecisionV1, InputEvent, Source};
use crate::store::{Snapshot, SnapshotPosition, SnapshotStore, StoreError};

/// Format version of a single journal record on the journal topic (first byte). Version 1
/// carried usage records without their unit's month total. Record and chunk versions never
/// share a number, so the first byte tells the two apart.
pub const JOURNAL_RECORD_VERSION: u8 = 5;
/// Format version of a journal chunk: several records of one key in one message (first byte),
/// then a kind byte ([`CHUNK_INPUTS`] or [`CHUNK_ACTORS`]), then bincode `Vec<JournalRecord>`;
/// or the kind [`CHUNK_POSITIONS`], then bincode `(u64, BTreeMap<(String, i32), i64>)`.
/// Version 2 (before per-partition units) had one journal for all partitions; version 3
/// carried usage records without their unit's month total.
pub const JOURNAL_CHUNK_VERSION: u8 = 4;
/// A chunk of `Input` records only (all that recovery decodes).
pub const CHUNK_INPUTS: u8 = 0;
/// A chunk of actor records (creations, commands with their events, evidence).
pub const CHUNK_ACTORS: u8 = 1;
/// A unit's broadcast positions after a batch: the `input_seq` reached and, per telemetry and
/// control partition, the offset of the first record not applied yet (see `units`).
pub const CHUNK_POSITIONS: u8 = 2;
/// At-least-once: a unit resumed from `input_seq` (bincode `u64`) after a crash or a takeover.
/// The records before it on its partition with a larger `input_seq` were never committed
/// (their offsets were not), their inputs are consumed and journaled again after it: readers
/// drop them ([`scan_journal`]).
pub const CHUNK_RESUMED: u8 = 3;
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
            Some((v @ 1..=3, _)) => Err(format!(
                "a journal message of an earlier build (format {v}): this build cannot recover \
                 from it; start with a new kafka.topic_prefix"
            )),
            Some((v, _)) => Err(format!(
                "journal record version {v}, this build reads {JOURNAL_RECORD_VERSION}"
            )),
            None => Err("empty journal record".into()),
        }
    }

    /// Every record of a journal message (a single record or a chunk), appended to `out`.
    pub fn decode_all(bytes: &[u8], out: &mut Vec<JournalRecord>) -> Result<(), String> {
        match bytes {
            [JOURNAL_CHUNK_VERSION, CHUNK_POSITIONS | CHUNK_RESUMED, ..] => Ok(()),
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
            [JOURNAL_CHUNK_VERSION, CHUNK_ACTORS | CHUNK_POSITIONS | CHUNK_RESUMED, ..] => Ok(()),
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
///
/// Each key keeps its buffer from batch to batch (a fresh one per chunk grew by reallocation,
/// and faulted in new pages, every batch), sized by what that key writes, with room for the
/// message header in front: a chunk is sent from where its records were encoded.
#[derive(Default)]
pub(super) struct JournalChunks {
    /// Per kind ([`CHUNK_INPUTS`], [`CHUNK_ACTORS`]): key → (records, buffer).
    open: [BTreeMap<String, (u64, Vec<u8>)>; 2],
}

/// Room for a chunk's header: version, kind, and the record count (a varint of ≤ 9 bytes).
const CHUNK_HEADER: usize = 11;

/// The message of the `n` records in `buf` (after [`CHUNK_HEADER`] bytes): version, kind, then
/// the records as a bincode `Vec` (its length, then the elements).
fn seal_chunk(kind: u8, n: u64, buf: &mut [u8]) -> &[u8] {
    let mut count = [0u8; CHUNK_HEADER - 2];
    let len = bincode::encode_into_slice(n, &mut count, bincode::config::standard())
        .expect("a count fits in 9 bytes");
    let start = CHUNK_HEADER - 2 - len;
    buf[start] = JOURNAL_CHUNK_VERSION;
    buf[start + 1] = kind;
    buf[start + 2..CHUNK_HEADER].copy_from_slice(&count[..len]);
    &buf[start..]
}

impl JournalChunks {
    /// Adds a record; if that fills its chunk, hands the chunk to `send` as `(key, message)`.
    pub(super) fn push<E>(
        &mut self,
        rec: &JournalRecord,
        send: impl FnOnce(&str, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let kind = if matches!(rec.entry, JournalEntry::Input(_)) {
            CHUNK_INPUTS
        } else {
            CHUNK_ACTORS
        };
        let open = &mut self.open[kind as usize];
        let key = rec.key();
        let (n, buf) = match open.get_mut(key) {
            Some(entry) => entry,
            None => open.entry(key.to_owned()).or_default(),
        };
        if *n == 0 {
            buf.clear();
            buf.resize(CHUNK_HEADER, 0);
        }
        // Plain data: encoding into a Vec cannot fail.
        bincode::encode_into_std_write(rec, &mut *buf, bincode::config::standard())
            .expect("journal records encode");
        *n += 1;
        if buf.len() - CHUNK_HEADER < CHUNK_BYTES {
            return Ok(());
        }
        let records = std::mem::take(n);
        send(key, seal_chunk(kind, records, buf))
    }

    /// Hands every open chunk to `send`, inputs first, each kind in key order.
    pub(super) fn drain<E>(
        &mut self,
        mut send: impl FnMut(&str, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        for (kind, open) in [CHUNK_INPUTS, CHUNK_ACTORS].into_iter().zip(&mut self.open) {
            for (key, (n, buf)) in open.iter_mut().filter(|(_, (n, _))| *n > 0) {
                let records = std::mem::take(n);
                send(key, seal_chunk(kind, records, buf))?;
            }
        }
        Ok(())
    }

    /// A [`CHUNK_POSITIONS`] message.
    pub(super) fn positions(input_seq: u64, positions: &Positions) -> Vec<u8> {
        let mut out = vec![JOURNAL_CHUNK_VERSION, CHUNK_POSITIONS];
        bincode::encode_into_std_write(
            (input_seq, positions),
            &mut out,
            bincode::config::standard(),
        )
        .expect("positions encode");
        out
    }

    /// A [`CHUNK_RESUMED`] message.
    pub(super) fn resumed(input_seq: u64) -> Vec<u8> {
        let mut out = vec![JOURNAL_CHUNK_VERSION, CHUNK_RESUMED];
        bincode::encode_into_std_write(input_seq, &mut out, bincode::config::standard())
            .expect("a u64 encodes");
        out
    }

    /// The `input_seq` of a [`CHUNK_RESUMED`] message; `None` for any other message.
    pub(super) fn decode_resumed(bytes: &[u8]) -> Result<Option<u64>, String> {
        match bytes {
            [JOURNAL_CHUNK_VERSION, CHUNK_RESUMED, body @ ..] => {
                bincode::decode_from_slice(body, bincode::config::standard())
                    .map(|(seq, _)| Some(seq))
                    .map_err(|e| e.to_string())
            }
            _ => Ok(None),
        }
    }

    /// The positions of a [`CHUNK_POSITIONS`] message; `None` for any other message.
    pub(super) fn decode_positions(bytes: &[u8]) -> Result<Option<(u64, Positions)>, String> {
        match bytes {
            [JOURNAL_CHUNK_VERSION, CHUNK_POSITIONS, body @ ..] => {
                bincode::decode_from_slice(body, bincode::config::standard())
                    .map(|(p, _)| Some(p))
                    .map_err(|e| e.to_string())
            }
            _ => Ok(None),
        }
    }
}

/// Live counters of a broker (read by tests, `serve` and later `/metrics`).
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Records consumed from the input topics (requests, completions, telemetry, control),
    /// each once per instance; not the units' own usage and status records.
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
    /// Set once the first assignment's units are loaded and the consumer runs.
    pub ready: AtomicBool,
    /// Inputs applied to units (a broadcast record counts once per unit it reaches).
    pub applied: AtomicU64,
    /// Requests and completions consumed again below the offsets their unit's positions
    /// record (it applied them already) and skipped: the group's committed offsets were gone.
    pub already_applied: AtomicU64,
}

/// A committed batch, as reported to a [`BatchSink`].
#[derive(Debug, Default)]
pub struct CommittedBatch {
    /// The batch's decisions (committed: readers see them now).
    pub decisions: Vec<DecisionV1>,
    /// Input messages applied (DLQ records not included).
    pub inputs: u64,
    pub dlq: u64,
    /// Input messages skipped: their unit had applied them already (see
    /// `BrokerStats::already_applied`).
    pub already_applied: u64,
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
    #[error("partitions: {0}")]
    Partitions(String),
    #[error(
        "fenced: another instance with transactional id {transactional_id} took over \
         ({reason}); this one stops instead of fencing it back"
    )]
    Fenced {
        transactional_id: String,
        reason: String,
    },
}

impl BrokerError {
    /// Whether starting the broker again can succeed: Kafka errors (an outage, a failed
    /// transaction, undelivered outputs) are; a corrupt journal record or snapshot, a store
    /// that cannot be opened and a newer instance with the same transactional id (it would be
    /// fenced in turn, and the two would take the units from each other forever) are not.
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

    /// One past the last journal offset of `partition` acknowledged to this producer.
    fn journal_end(&self, partition: i32) -> Option<i64> {
        self.journal_ends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            .copied()
    }
    /// Waits until every record sent so far has its delivery report; `false` on timeout.
    pub fn wait_reported(&self, timeout: Duration) -> bool {
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
/// and when their offsets were last committed. Kept in the consumer's [`GroupContext`], whose
/// revoke callback commits them before partitions move.
pub struct Unacked {
    /// (records sent when the batch ended, its offsets), oldest first.
    batches: VecDeque<(u64, TopicPartitionList)>,
    every: Duration,
    committed_at: Instant,
}

impl Unacked {
    pub fn new(every: Duration) -> Self {
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
    fn commit_due<C: ConsumerContext>(
        &mut self,
        delivery: &Delivery,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), BrokerError> {
        if self.committed_at.elapsed() < self.every {
            return Ok(());
        }
        self.committed_at = Instant::now();
        commit_acknowledged(delivery, consumer, &mut self.batches, false)
    }

    /// Waits for every acknowledgement and commits all offsets, synchronously.
    pub fn commit_all<C: ConsumerContext>(
        &mut self,
        delivery: &Delivery,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), BrokerError> {
        self.committed_at = Instant::now();
        commit_acknowledged(delivery, consumer, &mut self.batches, true)
    }
}

/// At-least-once: commits the offsets of the batches whose output records are all
/// acknowledged, oldest first (`wait`: waits for all of them, synchronously). Fails if any
/// output record failed: its batch must be consumed again, so no later offset may be committed.
fn commit_acknowledged<C: ConsumerContext>(
    ctx: &Delivery,
    consumer: &BaseConsumer<C>,
    unacked: &mut VecDeque<(u64, TopicPartitionList)>,
    wait: bool,
) -> Result<(), BrokerError> {
    if unacked.is_empty() {
        return Ok(());
    }
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
pub(super) fn watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
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

/// Every committed record of the journal topic: each unit's journal (one partition) in
/// `input_seq` order, unit after unit (see [`read_journal_units`]).
pub fn read_journal(cfg: &KafkaConfig, topics: &Topics) -> Result<Vec<JournalRecord>, BrokerError> {
    Ok(read_journal_units(cfg, topics)?
        .into_iter()
        .flat_map(|(_, records)| records)
        .collect())
}

/// Every committed record of the journal topic, per unit (journal partition): a unit's
/// journal is a journal of its own (its own `input_seq`, its own copy of every cluster and
/// tenant), audited and replayed on its own.
pub fn read_journal_units(
    cfg: &KafkaConfig,
    topics: &Topics,
) -> Result<Vec<(i32, Vec<JournalRecord>)>, BrokerError> {
    let mut units = Vec::new();
    for p in 0..partition_count(cfg, &topics.journal)? {
        let Scan { records, .. } =
            scan_journal(cfg, &topics.journal, p, &BTreeMap::new(), |bytes, out| {
                let mut recs = Vec::new();
                JournalRecord::decode_all(bytes, &mut recs)?;
                out.extend(recs.into_iter().map(|r| (r.input_seq, r)));
                Ok(())
            })?;
        if !records.is_empty() {
            units.push((p, records));
        }
    }
    Ok(units)
}

/// Every committed record of `topic` (all partitions, from the beginning to the end at the
/// time of the call), as raw payloads in partition/offset order.
pub fn read_topic(cfg: &KafkaConfig, topic: &str) -> Result<Vec<Vec<u8>>, BrokerError> {
    let Scan {
        records: payloads, ..
    } = scan_topic(cfg, topic, None, &BTreeMap::new(), |bytes, out| {
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
    let producer: ThreadedProducer<Delivery> = cfg
        .client_config()
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

/// Where a topic read ends (see [`scan_topic_with_coordinates`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The log end: every transaction in the range is waited for.
    Log,
    /// The last stable offset: what is readable now.
    Stable,
}

/// What [`scan_topic`] read.
pub(super) struct Scan<T> {
    pub records: Vec<T>,
    /// Where the read ended on each partition it read: the end it read up to, or the position
    /// it reached past that end's transaction markers.
    pub ends: BTreeMap<i32, i64>,
}

/// Reads a topic (committed records; `only` one partition if given) from `start` (per
/// partition; others from the beginning) up to its end at the time of the call, keeping what
/// `decode` (given each record's key and payload) returns with its sort key, sorted by
/// `(key, partition, offset)`. Also returns where the read
/// ended on each partition.
///
/// With [`End::Log`] the end is the log end (the high watermark of a `read_uncommitted`
/// query): a transaction that is committed but whose markers are not written yet, or one
/// still open, is waited for (an open one until it commits or Kafka aborts it), so the read
/// holds every record committed before the call. With [`End::Stable`] it is the last stable
/// offset: what a `read_committed` consumer can read now. The read fails only when it stops
/// moving for `transaction_timeout_ms` plus 30 s.
fn scan_topic_with_coordinates<T>(
    cfg: &KafkaConfig,
    topic: &str,
    only: Option<i32>,
    end: End,
    start: &BTreeMap<i32, i64>,
    decode: impl Fn(&[u8], &[u8], &mut Vec<(u64, T)>) -> Result<(), String>,
) -> Result<Scan<(u64, i32, i64, T)>, BrokerError> {
    let consumer: BaseConsumer = cfg
        .client_config()
        .set("group.id", format!("{}-reader", cfg.group_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(kafka("reader consumer"))?;
    // Only a read to the log end asks a `read_uncommitted` client where that is.
    let log_ends: Option<BaseConsumer> = match end {
        End::Log => Some(
            cfg.client_config()
                .set("isolation.level", "read_uncommitted")
                .create()
                .map_err(kafka("reader consumer"))?,
        ),
        End::Stable => None,
    };
    let meta = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(kafka("topic metadata"))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for t in meta.topics() {
        for p in t.partitions() {
            if only.is_some_and(|only| only != p.id()) {
                continue;
            }
            let (low, high) = watermarks(log_ends.as_ref().unwrap_or(&consumer), topic, p.id())?;
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
    if ends.is_empty() {
        return Ok(Scan {
            records: Vec::new(),
            ends,
        });
    }
    consumer.assign(&tpl).map_err(kafka("reader assign"))?;
    let mut done = BTreeMap::new();
    let patience = Duration::from_millis(cfg.transaction_timeout_ms) + TIMEOUT;
    let mut deadline = Instant::now() + patience;
    let mut at: BTreeMap<i32, i64> = BTreeMap::new();
    // With read_committed, aborted records and transaction markers are skipped: a partition is
    // read once the position reaches its log end (every transaction in it resolved).
    while done.len() < ends.len() {
        if Instant::now() > deadline {
            return Err(BrokerError::Journal {
                topic: topic.to_owned(),
                partition: ends
                    .keys()
                    .find(|p| !done.contains_key(*p))
                    .copied()
                    .unwrap_or(-1),
                offset: -1,
                message: "the read did not reach the end: a transaction stayed open past \
                          kafka.transaction_timeout_ms"
                    .into(),
            });
        }
        // Short polls: the end of an exactly-once partition is a commit marker, which is never
        // delivered, so each partition is finished by the position check of an empty poll;
        // its wait is pure recovery time.
        match consumer.poll(Duration::from_millis(20)) {
            Some(Ok(m)) => {
                deadline = Instant::now() + patience;
                kept.clear();
                decode(
                    m.key().unwrap_or_default(),
                    m.payload().unwrap_or_default(),
                    &mut kept,
                )
                .map_err(|message| BrokerError::Journal {
                    topic: topic.to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    message,
                })?;
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
                        if at.insert(e.partition(), o) != Some(o) {
                            deadline = Instant::now() + patience;
                        }
                        if o >= ends[&e.partition()] {
                            done.insert(e.partition(), ());
                        }
                        // Past the end's markers too: a later read from here finds nothing.
                        let end = ends.get_mut(&e.partition()).expect("assigned: has an end");
                        *end = (*end).max(o);
                    }
                }
            }
        }
    }
    records.sort_by_key(|(seq, partition, offset, _)| (*seq, *partition, *offset));
    Ok(Scan { records, ends })
}

/// Journal partition `partition` from `start` to its log end, like [`scan_topic`], without the
/// records a [`CHUNK_RESUMED`] marker supersedes: those before it with a larger `input_seq`
/// (an at-least-once run's records past its last committed batch, journaled again after the
/// marker). The markers themselves are not returned.
pub(super) fn scan_journal<T>(
    cfg: &KafkaConfig,
    topic: &str,
    partition: i32,
    start: &BTreeMap<i32, i64>,
    decode: impl Fn(&[u8], &mut Vec<(u64, T)>) -> Result<(), String>,
) -> Result<Scan<T>, BrokerError> {
    let Scan { records, ends } = scan_topic_with_coordinates(
        cfg,
        topic,
        Some(partition),
        End::Log,
        start,
        |_, bytes, out: &mut Vec<(u64, Option<T>)>| {
            if let Some(seq) = JournalChunks::decode_resumed(bytes)? {
                out.push((seq, None));
                return Ok(());
            }
            let mut inner = Vec::new();
            decode(bytes, &mut inner)?;
            out.extend(inner.drain(..).map(|(seq, r)| (seq, Some(r))));
            Ok(())
        },
    )?;
    Ok(Scan {
        records: drop_superseded(records),
        ends,
    })
}

/// Records (`input_seq`, partition, offset, record or `None` for a [`CHUNK_RESUMED`] marker)
/// without the markers and the records they supersede.
fn drop_superseded<T>(records: Vec<(u64, i32, i64, Option<T>)>) -> Vec<T> {
    let markers: Vec<(u64, i32, i64)> = records
        .iter()
        .filter(|(_, _, _, r)| r.is_none())
        .map(|(seq, p, o, _)| (*seq, *p, *o))
        .collect();
    records
        .into_iter()
        .filter(|(seq, p, o, _)| {
            !markers
                .iter()
                .any(|(from, mp, mo)| mp == p && mo > o && seq > from)
        })
        .filter_map(|(_, _, _, r)| r)
        .collect()
}

/// [`scan_topic_with_coordinates`]'s records without their coordinates, decoded from their
/// payloads alone.
pub(super) fn scan_topic<T>(
    cfg: &KafkaConfig,
    topic: &str,
    only: Option<i32>,
    start: &BTreeMap<i32, i64>,
    decode: impl Fn(&[u8], &mut Vec<(u64, T)>) -> Result<(), String>,
) -> Result<Scan<T>, BrokerError> {
    let Scan { records, ends } =
        scan_topic_with_coordinates(cfg, topic, only, End::Log, start, |_, bytes, out| {
            decode(bytes, out)
        })?;
    Ok(Scan {
        records: records.into_iter().map(|(_, _, _, r)| r).collect(),
        ends,
    })
}

/// Every committed record of `topic` from `start` (per partition; others from the beginning)
/// to its last stable offset now, with its coordinates and key, in partition and offset order
/// (for the broadcast topics: their live consumer starts at the same kind of end, and their
/// producers' transactions are none of the broker's business).
pub(super) fn scan_topic_keyed(
    cfg: &KafkaConfig,
    topic: &str,
    start: &BTreeMap<i32, i64>,
) -> Result<Vec<BroadcastRecord>, BrokerError> {
    let scan =
        scan_topic_with_coordinates(cfg, topic, None, End::Stable, start, |key, bytes, out| {
            out.push((
                0,
                (String::from_utf8_lossy(key).into_owned(), bytes.to_vec()),
            ));
            Ok(())
        })?;
    Ok(scan
        .records
        .into_iter()
        .map(|(_, partition, offset, (key, payload))| BroadcastRecord {
            topic: topic.to_owned(),
            partition,
            offset,
            key,
            payload,
        })
        .collect())
}

/// Messages behind the high watermark on each assigned input partition, from the consumer's
/// position and its cached watermarks (no broker round trip).
fn input_lag<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Vec<(String, i32, i64)> {
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
fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
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

/// The RocksDB snapshots of one broker's units, and where they are published.
pub(super) struct Snapshots {
    store: SnapshotStore,
    /// Publishes each snapshot on the compacted snapshots topic (keyed like the store), so an
    /// instance without this store (a new machine, a lost volume, a unit that moved here)
    /// restores from Kafka.
    publisher: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    /// `<group>/<prefix>`; a unit's key adds `/<partition>`.
    prefix: String,
    every_inputs: u64,
    interval: Duration,
}

/// When a unit was last snapshotted, and the journal position its state reflects.
#[derive(Debug, Clone)]
pub(super) struct SnapState {
    pub last_seq: u64,
    pub last_at: Instant,
    /// The journal offset (on the unit's partition) the state reflects without this
    /// producer's records: the restored snapshot's, advanced by the recovery read.
    pub journal_base: i64,
}

impl Default for SnapState {
    fn default() -> Self {
        SnapState {
            last_seq: 0,
            last_at: Instant::now(),
            journal_base: 0,
        }
    }
}

impl Snapshots {
    pub(super) fn open(cfg: &KafkaConfig) -> Result<Option<Self>, BrokerError> {
        let Some(dir) = &cfg.snapshot_dir else {
            return Ok(None);
        };
        let publisher = cfg
            .client_config()
            .set("compression.type", "lz4")
            .set("message.max.bytes", SNAPSHOT_MESSAGE_MAX.to_string())
            .create()
            .map_err(kafka("snapshot producer"))?;
        Ok(Some(Snapshots {
            store: SnapshotStore::open(dir)?,
            publisher,
            topic: Topics::new(&cfg.topic_prefix).snapshots,
            prefix: format!("{}/{}", cfg.group_id, cfg.topic_prefix),
            every_inputs: cfg.snapshot_every_inputs,
            interval: Duration::from_millis(cfg.snapshot_interval_ms),
        }))
    }

    /// The key of unit `partition`'s snapshot (store and topic).
    pub(super) fn key(&self, partition: i32) -> String {
        format!("{}/{partition}", self.prefix)
    }

    /// The local snapshot of unit `partition`, if any.
    pub(super) fn local(&self, partition: i32) -> Result<Option<Snapshot>, BrokerError> {
        Ok(self.store.load(&self.key(partition))?)
    }

    pub(super) fn due(&self, unit: &Unit) -> bool {
        let s = &unit.snap;
        unit.input_seq > s.last_seq
            && (unit.input_seq - s.last_seq >= self.every_inputs
                || s.last_at.elapsed() >= self.interval)
    }

    /// Writes a unit's state after the last committed batch with the journal position it
    /// reflects: the recovery base advanced by every journal record this producer had
    /// acknowledged on the unit's partition (all of them: called after a commit). Taken from
    /// delivery reports, not from a watermark query, which can run ahead of the commit markers
    /// and so land before the records of the batch just committed. Published on the snapshots
    /// topic's partition `unit % partitions`, where a new owner looks for it.
    pub(super) fn save(
        &self,
        unit: &mut Unit,
        producer: &ThreadedProducer<Delivery>,
        snapshot_partitions: i32,
        stats: &BrokerStats,
    ) -> Result<Duration, BrokerError> {
        let started = Instant::now();
        let p = unit.partition;
        let acked = producer.context().journal_end(p).unwrap_or(0);
        let position = SnapshotPosition {
            input_seq: unit.input_seq,
            journal_offsets: BTreeMap::from([(p, unit.snap.journal_base.max(acked))]),
            broadcast: unit.broadcast.clone(),
        };
        let snapshot = Snapshot {
            position,
            state: unit.engine.snapshot()?,
        };
        let key = self.key(p);
        self.store.save(&key, &snapshot)?;
        // Best effort: the local store is the primary copy; a snapshot that Kafka refuses
        // (too large for the topic, say) only means a moved unit replays more journal.
        let message = snapshot.to_message();
        let record = BaseRecord::to(&self.topic)
            .key(key.as_str())
            .partition(p % snapshot_partitions.max(1))
            .payload(&message[..]);
        if let Err((e, _)) = self.publisher.send(record) {
            tracing::warn!(
                "snapshot of unit {p} at input {} not published on {}: {e}",
                unit.input_seq,
                self.topic
            );
        }
        unit.snap.last_seq = unit.input_seq;
        unit.snap.last_at = Instant::now();
        stats.snapshots.fetch_add(1, Ordering::Relaxed);
        Ok(started.elapsed())
    }

    pub(super) fn flush(&self) {
        if let Err(e) = self.publisher.flush(TIMEOUT) {
            tracing::warn!("the last snapshot may not be published: {e}");
        }
    }
}

/// The newest snapshot of `key` on partition `partition` of the snapshots topic (compacted:
/// the latest per key), read up to the partition's end at the time of the call.
pub(super) fn published_snapshot(
    cfg: &KafkaConfig,
    topics: &Topics,
    partition: i32,
    key: &str,
) -> Result<Option<Snapshot>, BrokerError> {
    let consumer: BaseConsumer = cfg
        .client_config()
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
    let (low, high) = watermarks(&consumer, &topics.snapshots, partition)?;
    if high <= low {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topics.snapshots, partition, Offset::Offset(low))
        .map_err(kafka("assign"))?;
    consumer.assign(&tpl).map_err(kafka("assign"))?;
    let mut latest: Option<Snapshot> = None;
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
                        "skipping snapshot at {}/{partition}/{}: {e}",
                        topics.snapshots,
                        m.offset()
                    ),
                }
            }
        }
        if m.offset() + 1 >= high {
            break;
        }
    }
    Ok(latest)
}

/// Partitions of `topic`, from the cluster's metadata.
pub(super) fn partition_count(cfg: &KafkaConfig, topic: &str) -> Result<i32, BrokerError> {
    Ok(partition_counts(cfg, &[topic])?[0])
}

/// Partitions of each of `topics` (0 for one that does not exist), from one metadata request.
pub(super) fn partition_counts(
    cfg: &KafkaConfig,
    topics: &[&str],
) -> Result<Vec<i32>, BrokerError> {
    let consumer: BaseConsumer = cfg
        .client_config()
        .create()
        .map_err(kafka("metadata client"))?;
    let meta = consumer
        .fetch_metadata(None, TIMEOUT)
        .map_err(kafka("topic metadata"))?;
    Ok(topics
        .iter()
        .map(|topic| {
            meta.topics()
                .iter()
                .find(|t| t.name() == *topic)
                .map_or(0, |t| t.partitions().len() as i32)
        })
        .collect())
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
        c.set("transactional.id", &cfg.transactional_id).set(
            "transaction.timeout.ms",
            cfg.transaction_timeout_ms.to_string(),
        );
    }
    // `kafka.client` last: the operator's tuning wins over the defaults above.
    cfg.apply_client(&mut c);
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
        // Range: partition p of the requests and of the completions topic go to the same
        // member (equal partition counts), so a unit's inputs meet in one instance.
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
        // Static membership: a restarted instance (same transactional id) takes its partitions
        // back at once instead of waiting out the dead member's session.
        .set("group.instance.id", &cfg.transactional_id);
    // `kafka.client` last, as for the producer.
    cfg.apply_client(&mut c);
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

/// The parts of a unit that an applied input's outputs go to: borrowed apart from its engine,
/// which [`BatchOut::apply_inputs`] holds for the whole run.
struct UnitOutputs<'u> {
    partition: i32,
    input_seq: &'u mut u64,
    chunks: &'u mut JournalChunks,
    shared: &'u mut Shared,
}

/// A batch's outputs on their way to Kafka (inside the batch's transaction).
struct BatchOut<'a> {
    producer: &'a ThreadedProducer<Delivery>,
    topics: &'a Topics,
    out: Output,
    buf: Vec<u8>,
    decided: Vec<DecisionV1>,
    dlq: u64,
}

impl BatchOut<'_> {
    /// The batch's decisions, for the sink. The next batch's vector is sized like this one's:
    /// growing it by doubling copied every decision a dozen times and faulted in new pages.
    fn take_decided(&mut self) -> Vec<DecisionV1> {
        let next = Vec::with_capacity(self.decided.len());
        std::mem::replace(&mut self.decided, next)
    }

    /// Applies one input to `unit`: its journal records (chunked, to the unit's journal
    /// partition) and its decisions (with the input's coordinates) go out.
    fn apply(
        &mut self,
        unit: &mut Unit,
        event: InputEvent,
        source: (&str, i32, i64),
        stats: &BrokerStats,
    ) -> Result<(), BrokerError> {
        self.apply_inputs(unit, [(event, source)], stats)
    }

    /// Applies one unit's consecutive inputs, in order, as [`BatchOut::apply`] does each, within
    /// one run of its engine ([`crate::actors::Engine::apply_each`]).
    fn apply_inputs<'s>(
        &mut self,
        unit: &mut Unit,
        inputs: impl IntoIterator<Item = (InputEvent, (&'s str, i32, i64))>,
        stats: &BrokerStats,
    ) -> Result<(), BrokerError> {
        let mut out = std::mem::take(&mut self.out);
        let Unit {
            partition,
            engine,
            input_seq,
            chunks,
            shared,
            ..
        } = unit;
        let result = engine.apply_each(inputs, &mut out, |out, source| {
            let to = UnitOutputs {
                partition: *partition,
                input_seq: &mut *input_seq,
                chunks: &mut *chunks,
                shared: &mut *shared,
            };
            self.emit(to, out, source, stats)
        });
        self.out = out;
        result
    }

    /// Applies the pending run (of unit `run_unit`), if any, and clears it.
    fn flush_run(
        &mut self,
        active: &mut BTreeMap<i32, Unit>,
        run_unit: &mut Option<i32>,
        run: &mut Vec<(InputEvent, (&str, i32, i64))>,
        stats: &BrokerStats,
    ) -> Result<(), BrokerError> {
        let Some(p) = run_unit.take() else {
            return Ok(());
        };
        // Present: a run only starts for a unit of `active`, and none leaves mid-batch.
        let unit = active.get_mut(&p).expect("the run's unit is active");
        self.apply_inputs(unit, run.drain(..), stats)
    }

    /// Sends what one input gave (`out`, left empty): its journal records, chunked to the
    /// unit's journal partition, and its decisions with the input's coordinates.
    fn emit(
        &mut self,
        unit: UnitOutputs<'_>,
        out: &mut Output,
        source: (&str, i32, i64),
        stats: &BrokerStats,
    ) -> Result<(), BrokerError> {
        *unit.input_seq += 1;
        stats.applied.fetch_add(1, Ordering::Relaxed);
        for entry in out.journal.drain(..) {
            unit.shared.add(unit.partition, &entry);
            let rec = JournalRecord {
                input_seq: *unit.input_seq,
                entry,
            };
            unit.chunks.push(&rec, |key, payload| {
                send_journal(self.producer, self.topics, unit.partition, key, payload)
            })?;
        }
        for mut d in out.decisions.drain(..) {
            d.source = Some(Source {
                topic: source.0.to_owned(),
                partition: source.1,
                offset: source.2,
            });
            self.buf.clear();
            encode_decision_into(&d, &mut self.buf);
            send(
                self.producer,
                BaseRecord::to(&self.topics.decisions)
                    .key(&*d.lane)
                    .payload(&self.buf[..]),
            )?;
            stats.decisions.fetch_add(1, Ordering::Relaxed);
            self.decided.push(d);
        }
        out.clear();
        Ok(())
    }

    /// An input that does not decode or validate: to the DLQ with its original key and bytes,
    /// and why.
    fn dead_letter(
        &mut self,
        key: &str,
        payload: &[u8],
        error: &DecodeError,
        source: (&str, i32, i64),
        stats: &BrokerStats,
    ) -> Result<(), BrokerError> {
        let source = format!("{}/{}/{}", source.0, source.1, source.2);
        let reason = error.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "zumik.error",
                value: Some(reason.as_str()),
            })
            .insert(Header {
                key: "zumik.error_code",
                value: Some(error.code()),
            })
            .insert(Header {
                key: "zumik.source",
                value: Some(source.as_str()),
            });
        send(
            self.producer,
            BaseRecord::to(&self.topics.dlq)
                .key(key)
                .payload(payload)
                .headers(headers),
        )?;
        stats.dlq.fetch_add(1, Ordering::Relaxed);
        self.dlq += 1;
        Ok(())
    }

    /// Applies a broadcast record to every unit that has not applied it yet (a unit's usage
    /// or breaker trip to every unit but the one it came from, which acted on it already). A
    /// record that does not decode goes to the DLQ once: from the instance holding unit 0.
    fn broadcast<'u>(
        &mut self,
        units: impl Iterator<Item = &'u mut Unit>,
        key: &str,
        payload: &[u8],
        source: (&str, i32, i64),
        stats: &BrokerStats,
    ) -> Result<(), BrokerError> {
        let (topic, partition, offset) = source;
        let decoded = self.topics.decode(topic, payload);
        for unit in units {
            if !unit.wants(topic, partition, offset) {
                continue;
            }
            match &decoded {
                Ok(e) if sent_by(e).is_some_and(|u| i64::from(u) == i64::from(unit.partition)) => {}
                Ok(event) => self.apply(unit, event.clone(), source, stats)?,
                Err(e) if unit.partition == 0 => {
                    self.dead_letter(key, payload, e, source, stats)?
                }
                Err(_) => {}
            }
            unit.applied_broadcast(topic, partition, offset);
        }
        Ok(())
    }

    /// Ends a unit's part of the batch: its records for the other units (usage keyed by
    /// tenant, breaker trips keyed by cluster on the status topic), its open journal chunks
    /// and, if they moved, its broadcast positions, to its journal partition.
    fn finish(&mut self, unit: &mut Unit) -> Result<(), BrokerError> {
        for event in unit.shared.drain() {
            let payload = encode_internal(&event);
            send(
                self.producer,
                BaseRecord::to(self.topics.for_input(&event))
                    .key(event.key())
                    .payload(&payload[..]),
            )?;
        }
        unit.chunks.drain(|key, payload| {
            send_journal(self.producer, self.topics, unit.partition, key, payload)
        })?;
        if std::mem::take(&mut unit.moved) {
            let positions = JournalChunks::positions(unit.input_seq, &unit.broadcast);
            send_journal(
                self.producer,
                self.topics,
                unit.partition,
                "positions",
                &positions,
            )?;
        }
        Ok(())
    }
}

/// One journal message of unit `partition`, to its journal partition.
fn send_journal(
    producer: &ThreadedProducer<Delivery>,
    topics: &Topics,
    partition: i32,
    key: &str,
    payload: &[u8],
) -> Result<(), BrokerError> {
    send(
        producer,
        BaseRecord::to(&topics.journal)
            .key(key)
            .partition(partition)
            .payload(payload),
    )
}

/// The consumer of the broadcast topics (telemetry, control, usage, status): every partition,
/// outside the consumer group (each unit keeps its own positions), from their current end — a
/// unit catches up on older records when it is loaded.
fn broadcast_consumer(
    cfg: &KafkaConfig,
    broadcast: [(&str, i32); 4],
) -> Result<BaseConsumer, BrokerError> {
    let consumer: BaseConsumer = consumer_config(cfg)
        .remove("group.instance.id")
        .set("group.id", format!("{}-broadcast", cfg.group_id))
        .create()
        .map_err(kafka("broadcast consumer"))?;
    let mut tpl = TopicPartitionList::new();
    for (topic, partitions) in broadcast {
        for p in 0..partitions {
            let (_, high) = watermarks(&consumer, topic, p)?;
            tpl.add_partition_offset(topic, p, Offset::Offset(high))
                .map_err(kafka("broadcast assign"))?;
        }
    }
    consumer.assign(&tpl).map_err(kafka("broadcast assign"))?;
    Ok(consumer)
}

/// The partitions of the topics the loop reads by partition, from one metadata request. The
/// number of units is the requests topic's partitions, which the completions topic must match
/// (a lane's requests and completions meet in one unit) and the journal topic must cover (one
/// journal partition per unit).
struct Layout {
    units: i32,
    snapshots: i32,
    /// Per broadcast topic (`Topics::broadcast`), its partitions.
    broadcast: [i32; 4],
}

fn layout(cfg: &KafkaConfig, topics: &Topics) -> Result<Layout, BrokerError> {
    let [telemetry, control, usage, status] = topics.broadcast();
    let [requests, completions, journal, snapshots, telemetry, control, usage, status] =
        partition_counts(
            cfg,
            &[
                &topics.requests,
                &topics.completions,
                &topics.journal,
                &topics.snapshots,
                telemetry,
                control,
                usage,
                status,
            ],
        )?[..]
    else {
        unreachable!("one count per topic asked")
    };
    if requests != completions || journal < requests {
        return Err(BrokerError::Partitions(format!(
            "{} has {requests} partitions, {} {completions} and {} {journal}: the completions \
             topic needs as many partitions as the requests topic, the journal at least as many",
            topics.requests, topics.completions, topics.journal
        )));
    }
    Ok(Layout {
        units: requests,
        snapshots,
        broadcast: [telemetry, control, usage, status],
    })
}

/// Polls both consumers for a batch: whatever is already there, up to `batch_max`, waiting
/// for more only until `batch_wait_ms` after the first message (or up to 100 ms when idle,
/// so the loop can look at its stop flag, commits and views). Stops at the first rebalance
/// the group consumer reports, so the loop acts on it before it applies anything; returns how
/// many of `msgs` were polled before it (the rest came from the new assignment).
fn collect<'c>(
    cfg: &KafkaConfig,
    group: &'c BaseConsumer<GroupContext>,
    bcast: &'c BaseConsumer,
    msgs: &mut Vec<BorrowedMessage<'c>>,
    bmsgs: &mut Vec<BorrowedMessage<'c>>,
) -> Result<usize, BrokerError> {
    let began = Instant::now();
    let wait = Duration::from_millis(cfg.batch_wait_ms);
    let mut first: Option<Instant> = None;
    let full = |msgs: &Vec<_>, bmsgs: &Vec<_>| msgs.len() + bmsgs.len() >= cfg.batch_max;
    // One poll of the group consumer; `true` once a rebalance is recorded (the message the
    // same poll returned, if any, is from after it).
    let poll_group = |msgs: &mut Vec<BorrowedMessage<'c>>, timeout: Duration| {
        let polled = group.poll(timeout);
        let rebalanced = group.context().pending();
        let before = msgs.len();
        let got = match polled {
            Some(m) => {
                msgs.push(m.map_err(kafka("consume"))?);
                true
            }
            None => false,
        };
        Ok::<_, BrokerError>((got, rebalanced.then_some(before)))
    };
    if group.context().pending() {
        return Ok(0);
    }
    // The broadcast records are taken first, up to half a batch: under a backlog of requests
    // they would otherwise wait behind it, and with them the other units' spend and breaker
    // trips (and a restarted unit's catch-up grows with that lag).
    let broadcast_share = cfg.batch_max.div_ceil(2);
    loop {
        let mut got = false;
        while !full(msgs, bmsgs) && bmsgs.len() < broadcast_share {
            let Some(m) = bcast.poll(Duration::ZERO) else {
                break;
            };
            bmsgs.push(m.map_err(kafka("consume broadcast"))?);
            got = true;
        }
        while !full(msgs, bmsgs) {
            let (polled, rebalanced) = poll_group(msgs, Duration::ZERO)?;
            if let Some(before) = rebalanced {
                return Ok(before);
            }
            if !polled {
                break;
            }
            got = true;
        }
        if got {
            first.get_or_insert_with(Instant::now);
        }
        if full(msgs, bmsgs) {
            return Ok(msgs.len());
        }
        // Wait on the group consumer (requests, completions: the latency path); the broadcast
        // consumer is looked at again after each wait.
        let left = match first {
            Some(f) => wait.saturating_sub(f.elapsed()),
            None => Duration::from_millis(100).saturating_sub(began.elapsed()),
        };
        if left.is_zero() {
            return Ok(msgs.len());
        }
        let step = Duration::from_millis(if first.is_some() { 1 } else { 10 });
        let (polled, rebalanced) = poll_group(msgs, left.min(step))?;
        if let Some(before) = rebalanced {
            return Ok(before);
        }
        if polled {
            first.get_or_insert_with(Instant::now);
        }
    }
}

/// What the broker read for its first assignment while its producer was still being
/// initialised (see [`read_early`]).
struct EarlyReads {
    /// The group's rebalance events up to the assignment.
    events: Vec<Rebalanced>,
    /// The assigned units, as committed when read.
    units: Vec<Fetched>,
    /// The broadcast records those units had not applied when read.
    records: Vec<BroadcastRecord>,
    /// The units built from `units` so far (the records hold what they need).
    covers: Vec<i32>,
    /// A `read_uncommitted` client for the journal's log ends (see [`top_up_units`]).
    log_ends: BaseConsumer,
}

/// Reads the units of the group's first assignment, and the broadcast records they need, while
/// `init` (the producer's `init_transactions`) runs: it waits for the previous instance's open
/// transaction to be aborted, up to a second, and the reads need no producer. Polls the group
/// consumer until the assignment is recorded (keeping any message the same poll returns in
/// `msgs`) or `init` is done; then the assignment is read as it is committed now. What the
/// previous instance (a zombie, until `init` fences it) commits later is read again once
/// `init` is done ([`top_up_units`]).
///
/// Meanwhile `bcast` creates the broadcast consumer, which must have its start (the topics'
/// last stable offsets) before the catch-up read takes its end. Returns that consumer, and
/// the assignment with what was read for it, if it came in time.
#[allow(clippy::too_many_arguments)]
fn read_early<'c>(
    cfg: &KafkaConfig,
    topics: &Topics,
    group: &'c BaseConsumer<GroupContext>,
    init: &std::thread::ScopedJoinHandle<'_, Result<Duration, BrokerError>>,
    bcast: impl FnOnce() -> Result<BaseConsumer, BrokerError> + Send,
    snapshots: Option<&Snapshots>,
    snapshot_partitions: i32,
    msgs: &mut Vec<BorrowedMessage<'c>>,
) -> Result<(BaseConsumer, Option<EarlyReads>), BrokerError> {
    let (bcast, read) = std::thread::scope(|s| {
        let bcast = s.spawn(bcast);
        let read = (|| {
            while !group.context().pending() {
                if init.is_finished() {
                    return Ok(None);
                }
                if let Some(m) = group.poll(Duration::from_millis(10)) {
                    msgs.push(m.map_err(kafka("consume"))?);
                }
            }
            let events = group.context().take();
            let assigned = match events.as_slice() {
                [Rebalanced::Assigned(ps)] => ps.clone(),
                // Anything else (a revoke, a lost assignment) is for the loop to sort out.
                _ => Vec::new(),
            };
            let units = fetch_units(cfg, topics, &assigned, snapshots, snapshot_partitions)?;
            let log_ends: BaseConsumer = cfg
                .client_config()
                .set("isolation.level", "read_uncommitted")
                .create()
                .map_err(kafka("journal log ends"))?;
            Ok::<_, BrokerError>(Some((events, units, log_ends)))
        })();
        let bcast = bcast
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (bcast, read)
    });
    let (bcast, read) = (bcast?, read?);
    let Some((events, units, log_ends)) = read else {
        return Ok((bcast, None));
    };
    let positions: Vec<Positions> = units.iter().map(Fetched::positions).collect();
    let records = if units.is_empty() {
        Vec::new()
    } else {
        catch_up_reads(cfg, topics, positions.iter())?
    };
    let early = EarlyReads {
        events,
        units,
        records,
        covers: Vec::new(),
        log_ends,
    };
    Ok((bcast, Some(early)))
}

/// The broker loop's units and what it needs to load, keep and drop them.
struct Units<'a> {
    cfg: &'a KafkaConfig,
    topics: &'a Topics,
    routing: Arc<RoutingConfig>,
    prices: Arc<PriceTable>,
    system: ActorSystem,
    snapshots: Option<Snapshots>,
    snapshot_partitions: i32,
    /// Units this instance decides for.
    active: BTreeMap<i32, Unit>,
    /// Units whose partitions were revoked, until the next assignment keeps or drops them.
    /// Nothing is applied to them meanwhile.
    suspended: BTreeMap<i32, Unit>,
    /// Per broadcast partition, the next offset this instance has counted as an input.
    counted: Positions,
}

impl Units<'_> {
    /// Counts a broadcast record as an input of this instance once, whichever unit applies it
    /// first (live or in a catch-up). The units' own usage and status records are not inputs
    /// from outside and are not counted (they are in `applied`).
    fn count(&mut self, topic: &str, partition: i32, offset: i64, stats: &BrokerStats) {
        if self.topics.is_internal(topic) {
            return;
        }
        let next = self
            .counted
            .entry((topic.to_owned(), partition))
            .or_default();
        if offset >= *next {
            *next = offset + 1;
            stats.inputs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Snapshots a unit this instance gives up (its state is committed: the next owner
    /// restores from it instead of a longer journal tail).
    fn hand_over(
        &self,
        mut unit: Unit,
        producer: &ThreadedProducer<Delivery>,
        stats: &BrokerStats,
        sink: &mut dyn BatchSink,
    ) -> Result<(), BrokerError> {
        if let Some(s) = self
            .snapshots
            .as_ref()
            .filter(|_| unit.input_seq > unit.snap.last_seq)
        {
            sink.snapshot_written(s.save(&mut unit, producer, self.snapshot_partitions, stats)?);
        }
        tracing::info!(
            unit = unit.partition,
            "broker: unit {} handed over",
            unit.partition
        );
        Ok(())
    }

    /// Acts on the group's rebalances, in order: revoked units are suspended; an assignment
    /// keeps the suspended units it names, drops the others (snapshotted first) and loads the
    /// new ones (from `early` when it read them, brought up to date). Kept and new units then
    /// catch up on the broadcast records they have not applied, in transactions of at most
    /// `batch_max` records. Returns whether an assignment came.
    fn rebalance(
        &mut self,
        events: Vec<Rebalanced>,
        mut early: Option<EarlyReads>,
        out: &mut BatchOut<'_>,
        exactly_once: bool,
        stats: &BrokerStats,
        sink: &mut dyn BatchSink,
    ) -> Result<bool, BrokerError> {
        let mut assigned = false;
        let mut joining: Vec<Unit> = Vec::new();
        for event in events {
            match event {
                Rebalanced::Revoked { partitions, lost } => {
                    for p in partitions {
                        let unit = self.active.remove(&p).or_else(|| self.suspended.remove(&p));
                        match unit {
                            Some(unit) if !lost => {
                                self.suspended.insert(p, unit);
                            }
                            // Lost: another instance may have decided on it since; its next
                            // load starts from what was committed.
                            Some(_) => tracing::warn!(unit = p, "broker: unit {p} lost"),
                            None => {}
                        }
                    }
                }
                Rebalanced::LostAll => {
                    let lost = self.active.len() + self.suspended.len();
                    self.active.clear();
                    self.suspended.clear();
                    tracing::warn!("broker: the assignment was lost ({lost} units dropped)");
                }
                Rebalanced::Assigned(ps) => {
                    assigned = true;
                    // Eager protocol: the assignment is whole; units it does not name go.
                    let gone: Vec<i32> = (self.suspended.keys().chain(self.active.keys()))
                        .copied()
                        .filter(|p| !ps.contains(p))
                        .collect();
                    for p in gone {
                        let unit = self.suspended.remove(&p).or_else(|| self.active.remove(&p));
                        if let Some(unit) = unit {
                            self.hand_over(unit, out.producer, stats, sink)?;
                        }
                    }
                    joining.retain(|u| ps.contains(&u.partition));
                    let mut new = Vec::new();
                    for p in ps {
                        if self.active.contains_key(&p) || joining.iter().any(|u| u.partition == p)
                        {
                            continue;
                        }
                        match self.suspended.remove(&p) {
                            Some(kept) => joining.push(kept),
                            None => new.push(p),
                        }
                    }
                    // Units read early: only brought up to date.
                    let (mut fetched, mut read_early) = (Vec::new(), Vec::new());
                    if let Some(e) = early.as_mut() {
                        let (read, not): (Vec<Fetched>, _) = std::mem::take(&mut e.units)
                            .into_iter()
                            .partition(|f| new.contains(&f.partition));
                        e.units = not;
                        read_early = read.iter().map(|f| f.partition).collect();
                        new.retain(|p| !read_early.contains(p));
                        fetched = top_up_units(self.cfg, self.topics, &e.log_ends, read)?;
                    }
                    fetched.extend(fetch_units(
                        self.cfg,
                        self.topics,
                        &new,
                        self.snapshots.as_ref(),
                        self.snapshot_partitions,
                    )?);
                    fetched.sort_by_key(|f| f.partition);
                    let (system, routing, prices) = (&self.system, &self.routing, &self.prices);
                    joining.extend(build_units(
                        fetched,
                        || new_engine(system, self.cfg, routing, prices),
                        stats,
                    )?);
                    if let Some(e) = early.as_mut() {
                        e.covers.extend(read_early);
                    }
                }
            }
        }
        if joining.is_empty() {
            return Ok(assigned);
        }
        for unit in joining.iter_mut() {
            if let Some(seq) = unit.resumed.take() {
                let marker = JournalChunks::resumed(seq);
                send_journal(
                    out.producer,
                    self.topics,
                    unit.partition,
                    "resumed",
                    &marker,
                )?;
            }
        }
        // The early catch-up read starts where the units read early stood then, at or before
        // where they stand now: it holds what they need when it covers them all.
        let began = Instant::now();
        let records = match early {
            Some(e) if joining.iter().all(|u| e.covers.contains(&u.partition)) => e.records,
            _ => catch_up_reads(self.cfg, self.topics, joining.iter().map(|u| &u.broadcast))?,
        };
        let read_ms = began.elapsed().as_millis() as u64;
        for chunk in records.chunks(self.cfg.batch_max.max(1)) {
            if exactly_once {
                out.producer
                    .begin_transaction()
                    .map_err(kafka("begin transaction"))?;
            }
            let mut applied = 0u64;
            for r in chunk {
                if !self.topics.is_internal(&r.topic)
                    && joining
                        .iter()
                        .any(|u| u.wants(&r.topic, r.partition, r.offset))
                {
                    self.count(&r.topic, r.partition, r.offset, stats);
                    applied += 1;
                }
                out.broadcast(
                    joining.iter_mut(),
                    &r.key,
                    &r.payload,
                    (&r.topic, r.partition, r.offset),
                    stats,
                )?;
            }
            for unit in joining.iter_mut() {
                out.finish(unit)?;
            }
            if exactly_once {
                commit_transaction(out.producer, TIMEOUT).map_err(kafka("commit transaction"))?;
            }
            let dlq = std::mem::take(&mut out.dlq);
            sink.committed(CommittedBatch {
                decisions: out.take_decided(),
                inputs: applied.saturating_sub(dlq),
                dlq,
                ..CommittedBatch::default()
            });
        }
        tracing::debug!(
            units = joining.len(),
            records = records.len(),
            read_ms,
            apply_ms = began.elapsed().as_millis() as u64 - read_ms,
            "broker: units caught up on the broadcast topics"
        );
        for unit in joining {
            self.active.insert(unit.partition, unit);
        }
        Ok(assigned)
    }
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
    let exactly_once = cfg.mode == DeliveryMode::ExactlyOnce;
    let producer: ThreadedProducer<Delivery> = producer_config(cfg)
        .create_with_context(Delivery::tracking(&topics.journal))
        .map_err(kafka("producer"))?;
    let group: BaseConsumer<GroupContext> = consumer_config(cfg)
        .create_with_context(GroupContext::new(cfg))
        .map_err(kafka("consumer"))?;
    let _ = group.context().delivery.set(producer.context().clone());
    let snapshots = Snapshots::open(cfg)?;
    // The producer's transactions are initialised on a thread of their own: that fences any
    // older instance with the same transactional id (a zombie after a crash), aborting its
    // open transaction, and librdkafka only learns that the abort is done on a retry half a
    // second later. Meanwhile this thread checks the topics, joins the group and reads what it
    // is assigned (see `read_early`).
    let mut early_msgs = Vec::new();
    let (init, setup) = std::thread::scope(|s| {
        let init = s.spawn(|| {
            let began = Instant::now();
            if exactly_once {
                producer
                    .init_transactions(TIMEOUT)
                    .map_err(kafka("init transactions"))?;
            }
            Ok::<_, BrokerError>(began.elapsed())
        });
        let setup = (|| {
            if cfg.create_topics {
                ensure_topics(cfg, &topics)?;
            }
            let layout = layout(cfg, &topics)?;
            let topics_at = started.elapsed();
            group
                .subscribe(&[&topics.requests, &topics.completions])
                .map_err(kafka("subscribe"))?;
            let names = topics.broadcast();
            let (bcast, early) = read_early(
                cfg,
                &topics,
                &group,
                &init,
                || {
                    broadcast_consumer(
                        cfg,
                        std::array::from_fn(|i| (names[i], layout.broadcast[i])),
                    )
                },
                snapshots.as_ref(),
                layout.snapshots,
                &mut early_msgs,
            )?;
            Ok::<_, BrokerError>((layout, topics_at, bcast, early))
        })();
        let init = init.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (init, setup)
    });
    let (init_took, (layout, topics_at, bcast, mut early)) = (init?, setup?);
    tracing::debug!(
        units = layout.units,
        topics_ms = topics_at.as_millis() as u64,
        init_transactions_ms = init_took.as_millis() as u64,
        read_early = early.as_ref().map_or(0, |e| e.units.len()),
        clients_ms = started.elapsed().as_millis() as u64,
        "broker: topics checked, clients started"
    );
    let unit_n = layout.units;
    let mut units = Units {
        cfg,
        topics: &topics,
        routing,
        prices,
        system: ActorSystem::new(),
        snapshots,
        snapshot_partitions: layout.snapshots,
        active: BTreeMap::new(),
        suspended: BTreeMap::new(),
        counted: Positions::new(),
    };
    let unacked = || {
        group
            .context()
            .unacked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    };

    let run = (|| {
        let mut ready = false;
        let mut probed: Option<Instant> = None;
        let (mut msgs, mut bmsgs) = (Vec::new(), Vec::new());
        let mut out = BatchOut {
            producer: &producer,
            topics: &topics,
            out: Output::with_journal(),
            buf: Vec::with_capacity(512),
            decided: Vec::new(),
            dlq: 0,
        };
        while !stop.load(Ordering::Relaxed) {
            unacked().commit_due(producer.context(), &group)?;
            if ready && sink.view_due() {
                let views = units
                    .active
                    .values()
                    .map(|u| u.engine.view())
                    .collect::<Result<Vec<_>, _>>()?;
                sink.view(RouterView::merge(views), input_lag(&group));
                // A consumer waits out an outage silently: ask the cluster itself (a local round
                // trip normally; during an outage this blocks up to 500 ms every few seconds, when
                // nothing can be processed anyway).
                if probed.is_none_or(|t| t.elapsed() >= REACHABILITY_EVERY) {
                    probed = Some(Instant::now());
                    let ok = group
                        .fetch_metadata(Some(&topics.requests), Duration::from_millis(500))
                        .is_ok_and(|m| !m.brokers().is_empty());
                    sink.kafka_reachable(ok);
                }
            }
            // The batch vectors keep their capacity from batch to batch.
            msgs.clear();
            bmsgs.clear();
            msgs.append(&mut early_msgs);
            // The first assignment, read early, is acted on before anything is collected.
            let (events, early_reads, before_rebalance) = match early.take() {
                Some(mut reads) => (std::mem::take(&mut reads.events), Some(reads), 0),
                None => {
                    let before = collect(cfg, &group, &bcast, &mut msgs, &mut bmsgs)?;
                    (group.context().take(), None, before)
                }
            };
            // Messages polled before a revoke, of the partitions it revoked, are not ours to
            // process: their next owner (maybe this instance again) reads them from the committed
            // offset. Those polled after it come from the new assignment.
            let revoked: Vec<i32> = events
                .iter()
                .filter_map(|e| match e {
                    Rebalanced::Revoked { partitions, .. } => Some(partitions.iter().copied()),
                    Rebalanced::Assigned(_) | Rebalanced::LostAll => None,
                })
                .flatten()
                .collect();
            let lost_all = events.contains(&Rebalanced::LostAll);
            if !revoked.is_empty() || lost_all {
                let mut i = 0;
                msgs.retain(|m| {
                    i += 1;
                    i > before_rebalance || !(lost_all || revoked.contains(&m.partition()))
                });
            }
            let assigned =
                units.rebalance(events, early_reads, &mut out, exactly_once, stats, sink)?;
            out.dlq = 0;
            if assigned && !ready {
                ready = true;
                stats.ready.store(true, Ordering::Relaxed);
                sink.ready();
                tracing::debug!(
                    units = units.active.len(),
                    ready_ms = started.elapsed().as_millis() as u64,
                    "broker: units loaded, consuming"
                );
            }
            if msgs.is_empty() && bmsgs.is_empty() {
                continue;
            }
            let began = Instant::now();
            if exactly_once {
                producer
                    .begin_transaction()
                    .map_err(kafka("begin transaction"))?;
            }
            // Per input partition, the offset after its last message in the batch, and the
            // first offset its unit has not applied (from its positions).
            let mut offsets: Vec<(&str, i32, i64, i64)> = Vec::new();
            let mut skipped = 0;
            // Inputs from outside: the units' own usage and status records are not counted.
            let n = msgs.len()
                + bmsgs
                    .iter()
                    .filter(|m| !topics.is_internal(m.topic()))
                    .count();
            for m in &bmsgs {
                units.count(m.topic(), m.partition(), m.offset(), stats);
                let key = m
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .unwrap_or("");
                out.broadcast(
                    units.active.values_mut(),
                    key,
                    m.payload().unwrap_or_default(),
                    (m.topic(), m.partition(), m.offset()),
                    stats,
                )?;
            }
            // A unit's consecutive inputs are applied in one run of its engine (its actors'
            // runtime entered once per run, not once per input).
            let (mut run, mut run_unit) = (Vec::new(), None);
            for m in &msgs {
                // Once per message: each `topic()` is a C call, a `strlen` and a UTF-8 check.
                let (topic, partition, next) = (m.topic(), m.partition(), m.offset() + 1);
                let applied_below = match offsets
                    .iter_mut()
                    .find(|(t, p, ..)| *p == partition && *t == topic)
                {
                    Some((_, _, offset, below)) => {
                        *offset = next;
                        *below
                    }
                    None => {
                        let below = units
                            .active
                            .get(&partition)
                            .map_or(0, |u| u.applied_below(topic, partition));
                        offsets.push((topic, partition, next, below));
                        below
                    }
                };
                // Consumed again below what the unit's positions say it applied: the group's
                // committed offsets were gone (expired while every instance was down, or a new
                // `group_id` on kept topics) and the consumer started from the earliest, or
                // behind (at least once, a revoke's commit failed and the unit came back here).
                // An offset names the same message as long as the topic is the one the unit
                // read (`check_own_logs` refuses a re-created or truncated one).
                if m.offset() < applied_below {
                    skipped += 1;
                    if stats.already_applied.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!(
                            topic,
                            partition,
                            offset = m.offset(),
                            applied_below,
                            "broker: {topic}/{partition} is consumed again from offset {} but \
                             its unit applied it up to {applied_below}: the group's committed \
                             offsets are gone (expired, or a new group_id) or behind; skipping \
                             what the unit applied",
                            m.offset()
                        );
                    }
                    continue;
                }
                let source = (topic, partition, m.offset());
                let payload = m.payload().unwrap_or_default();
                match (
                    topics.decode(topic, payload),
                    units.active.contains_key(&partition),
                ) {
                    (Ok(event), true) => {
                        stats.inputs.fetch_add(1, Ordering::Relaxed);
                        if run_unit != Some(partition) {
                            out.flush_run(&mut units.active, &mut run_unit, &mut run, stats)?;
                            run_unit = Some(partition);
                        }
                        run.push((event, source));
                    }
                    (Err(e), _) => {
                        let key = m
                            .key()
                            .and_then(|k| std::str::from_utf8(k).ok())
                            .unwrap_or("");
                        out.dead_letter(key, payload, &e, source, stats)?;
                    }
                    (Ok(_), false) => {
                        return Err(BrokerError::Partitions(format!(
                            "a message of {}/{} arrived for unit {} which this instance does not \
                         hold (of {unit_n})",
                            m.topic(),
                            m.partition(),
                            m.partition()
                        )))
                    }
                }
            }
            out.flush_run(&mut units.active, &mut run_unit, &mut run, stats)?;
            // Where each unit stands on its own partitions goes into its positions record: at
            // least once, recovery keeps the journal only up to what the group committed; in
            // both modes, a unit skips what it consumes again below it.
            for (topic, partition, next, _) in &offsets {
                if let Some(unit) = units.active.get_mut(partition) {
                    unit.broadcast
                        .insert(((*topic).to_owned(), *partition), *next);
                    unit.moved = true;
                }
            }
            for unit in units.active.values_mut() {
                out.finish(unit)?;
            }
            let committing = Instant::now();
            let mut tpl = TopicPartitionList::new();
            offsets.sort_unstable();
            for (topic, partition, offset, _) in &offsets {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .map_err(kafka("offsets"))?;
            }
            if exactly_once {
                if tpl.count() > 0 {
                    let meta = group.group_metadata().ok_or(BrokerError::Kafka {
                        what: "group metadata",
                        source: KafkaError::Subscription("no consumer group metadata".into()),
                    })?;
                    producer
                        .send_offsets_to_transaction(&tpl, &meta, TIMEOUT)
                        .map_err(kafka("send offsets"))?;
                }
                commit_transaction(&producer, TIMEOUT).map_err(kafka("commit transaction"))?;
            } else if tpl.count() > 0 {
                // At-least-once does not wait for the acknowledgements: the offsets are committed
                // once every output record sent before them is acknowledged (checked each round).
                let mut unacked = unacked();
                unacked.push(producer.context().sent.load(Ordering::Acquire), tpl);
                unacked.commit_due(producer.context(), &group)?;
            }
            stats.batches.fetch_add(1, Ordering::Relaxed);
            sink.committed(CommittedBatch {
                decisions: out.take_decided(),
                inputs: (n as u64).saturating_sub(out.dlq + skipped),
                dlq: out.dlq,
                already_applied: skipped,
                took: began.elapsed(),
                commit: committing.elapsed(),
            });
            // Done with the batch's messages (librdkafka's buffers are released with them).
            msgs.clear();
            bmsgs.clear();
            if let Some(s) = &units.snapshots {
                for unit in units.active.values_mut().filter(|u| s.due(u)) {
                    // A snapshot reflects only acknowledged outputs and committed offsets.
                    unacked().commit_all(producer.context(), &group)?;
                    sink.snapshot_written(s.save(
                        unit,
                        &producer,
                        units.snapshot_partitions,
                        stats,
                    )?);
                }
            }
        }
        // Clean shutdown: the last batch is committed; a final snapshot makes the restart instant.
        unacked().commit_all(producer.context(), &group)?;
        if let Some(s) = &units.snapshots {
            for unit in units
                .active
                .values_mut()
                .chain(units.suspended.values_mut())
                .filter(|u| u.input_seq > u.snap.last_seq)
            {
                sink.snapshot_written(s.save(unit, &producer, units.snapshot_partitions, stats)?);
            }
            s.flush();
        }
        Ok(())
    })();
    // Whatever failed first, an instance that was fenced stops for good.
    run.map_err(|e| fenced(cfg, &e, &producer, &group, stop).unwrap_or(e))
}

/// [`BrokerError::Fenced`] if a newer instance with this one's ids took over: its static group
/// membership was fenced (`FencedInstanceId`, in `error` or as the group consumer's fatal
/// error) and another member keeps holding it (see [`membership_held_by_another`]). A fenced
/// *producer* alone does not say so: Kafka also bumps the epoch when a transaction times out (a
/// broker outage longer than `transaction_timeout_ms`), and that run must restart. So on a
/// producer fencing the group consumer is polled for up to `FENCE_CHECK` (a heartbeat and a
/// margin) to learn whether its membership was taken too.
fn fenced<C: ConsumerContext>(
    cfg: &KafkaConfig,
    error: &BrokerError,
    producer: &ThreadedProducer<Delivery>,
    group: &BaseConsumer<C>,
    stop: &AtomicBool,
) -> Option<BrokerError> {
    let own = match error {
        BrokerError::Kafka { source, .. } => source
            .rdkafka_error_code()
            .map(|code| (code, source.to_string())),
        _ => None,
    };
    let replaced = |own: Option<(RDKafkaErrorCode, String)>| {
        own.into_iter()
            .chain(group.client().fatal_error())
            .find(|(code, _)| *code == RDKafkaErrorCode::FencedInstanceId)
    };
    let producer_fenced = own
        .iter()
        .cloned()
        .chain(producer.client().fatal_error())
        .any(|(code, _)| epoch_fenced(code));
    let mut found = replaced(own);
    let until = Instant::now() + FENCE_CHECK;
    while found.is_none() && producer_fenced && Instant::now() < until {
        // Messages polled here are dropped: the next run reads from the committed offsets.
        let _ = group.poll(Duration::from_millis(100));
        found = replaced(None);
    }
    let (code, reason) = found?;
    // A lone static member is also fenced by its own rejoin when the group coordinator stalls
    // (a Kafka restart: KAFKA-20983), and in a long enough restart its producer is fenced too
    // (its transaction timed out). What tells a replacement apart is that it stays.
    membership_held_by_another(cfg, stop, &reason, producer_fenced).then(|| BrokerError::Fenced {
        transactional_id: cfg.transactional_id.clone(),
        reason: format!("{code:?}: {reason}"),
    })
}

/// Whether another member holds this instance's static group membership after it was fenced
/// (with `reason`): a member of the instance id (see [`is_static_member_of`]) is still in the
/// group `session_timeout_ms` plus `SESSION_MARGIN` after the first of an unbroken run of
/// conclusive listings.
///
/// A replacement is such a member and heartbeats, so it stays. A member left by this
/// instance's own rejoin (its JoinGroup answered after librdkafka gave up on it, the fencing
/// coming from its retry) gets no heartbeats (librdkafka serves no group after a fatal error)
/// and expires within one session timeout: the first conclusive listing without it answers
/// `false`. A listing is conclusive when it has the group in a known state: one that failed,
/// lacks the group (a coordinator still loading it) or has it in no state (librdkafka hides the
/// DescribeGroups error there) proves nothing, is asked again, and starts the window over. If
/// no answer comes within the window and `LISTING_PATIENCE`, or a stop is asked for (SIGTERM),
/// the answer is `false` too: the error is handled as any other. Each `false` says why at
/// `warn`.
fn membership_held_by_another(
    cfg: &KafkaConfig,
    stop: &AtomicBool,
    reason: &str,
    producer_fenced: bool,
) -> bool {
    let not_held = |why: &str| {
        tracing::warn!(
            reason,
            producer_fenced,
            "broker: the group membership was fenced but {why}: handled as any other broker \
             error (the loop restarts unless stopping)"
        );
        false
    };
    let client = match cfg.client_config().create::<BaseConsumer>() {
        Ok(c) => c,
        Err(e) => return not_held(&format!("no client to list the group with ({e})")),
    };
    let started = Instant::now();
    let window = Duration::from_millis(cfg.session_timeout_ms) + SESSION_MARGIN;
    tracing::info!(
        window_ms = window.as_millis() as u64,
        "broker: the group membership was fenced; waiting to learn whether another instance \
         holds it"
    );
    let mut conclusive_since: Option<Instant> = None;
    loop {
        let listed = client
            .fetch_group_list(Some(&cfg.group_id), LIST_TIMEOUT)
            .map_err(|e| e.to_string())
            .and_then(|list| held_in(&list, &cfg.group_id, &cfg.transactional_id));
        match listed {
            Ok(false) => return not_held("no other member holds it: no other instance took over"),
            Ok(true) => {
                let since = *conclusive_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= window {
                    return true;
                }
            }
            Err(e) => {
                conclusive_since = None;
                tracing::debug!(error = %e, "broker: listing the group proved nothing");
            }
        }
        if stop.load(Ordering::Relaxed) {
            return not_held(
                "a stop was asked for before it was known whether another member holds it",
            );
        }
        if started.elapsed() >= window + LISTING_PATIENCE {
            return not_held("the group could not be listed");
        }
        std::thread::sleep(LIST_EVERY);
    }
}

/// Whether `list` shows a member of static instance `instance` in group `group`; an error when
/// it does not show the group in a known state (so it proves nothing).
fn held_in(list: &rdkafka::groups::GroupList, group: &str, instance: &str) -> Result<bool, String> {
    // librdkafka describes the group only on the brokers whose ListGroups named it (its
    // coordinator); a DescribeGroups error leaves an entry in no state.
    let mut named = list.groups().iter().filter(|g| g.name() == group);
    let g = named
        .clone()
        .find(|g| KNOWN_GROUP_STATES.contains(&g.state()))
        .ok_or_else(|| match named.next() {
            Some(g) => format!("the group is in state {:?}", g.state()),
            None => "the group is not listed".to_owned(),
        })?;
    Ok(g.members()
        .iter()
        .any(|m| is_static_member_of(m.id(), instance)))
}

/// Group states a DescribeGroups answer names when it found the group.
const KNOWN_GROUP_STATES: [&str; 4] = [
    "Stable",
    "PreparingRebalance",
    "CompletingRebalance",
    "Empty",
];

/// Whether a group member id is one Kafka gave static instance `instance`:
/// `<instance>-<java.util.UUID>` (so instance `a` does not claim the members of `a-b`).
fn is_static_member_of(member_id: &str, instance: &str) -> bool {
    let Some(uuid) = member_id
        .strip_prefix(instance)
        .and_then(|rest| rest.strip_prefix('-'))
    else {
        return false;
    };
    uuid.len() == 36
        && uuid.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Whether `code` says a transactional producer's epoch was taken by a newer producer with its
/// transactional id (librdkafka reports its fatal fencing as `Fenced`).
fn epoch_fenced(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// How long a fenced producer's run waits to learn whether its group membership was taken
/// over too (librdkafka's default heartbeat interval is 3 s).
const FENCE_CHECK: Duration = Duration::from_secs(4);

/// Beyond the session timeout, how long a member left by an instance's own rejoin may take to
/// leave the group (the coordinator expires sessions on a timer).
const SESSION_MARGIN: Duration = Duration::from_secs(3);

/// How often, and how long each time, the group is listed while a fencing is checked.
const LIST_EVERY: Duration = Duration::from_millis(500);
const LIST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long listings may keep failing after the window before the check gives up.
const LISTING_PATIENCE: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_static_member_id_names_its_instance_and_no_other() {
        let uuid = "83d7b412-4c78-4eb2-91e7-fb0231959230";
        assert!(is_static_member_of(&format!("inst-1-{uuid}"), "inst-1"));
        // Instance `inst` is not `inst-1`, whose ids start with `inst-` too.
        assert!(!is_static_member_of(&format!("inst-1-{uuid}"), "inst"));
        assert!(!is_static_member_of(&format!("inst-2-{uuid}"), "inst-1"));
        assert!(!is_static_member_of("inst-1-", "inst-1"));
        assert!(!is_static_member_of(&format!("inst-1-{uuid}x"), "inst-1"));
        assert!(!is_static_member_of(&format!("inst-1{uuid}"), "inst-1"));
    }

    #[test]
    fn a_resumed_marker_drops_the_records_it_supersedes_and_only_those() {
        // (input_seq, partition, offset, record; `None` = marker), as a scan sorts them.
        // Partition 0: inputs 1–3, a crash, a marker resuming at 1, inputs 2–3 again, a
        // marker at 3 with nothing past it. Partition 1: no marker, its 2 kept.
        let mut records = vec![
            (1, 0, 0, Some("a1")),
            (2, 0, 1, Some("a2")),
            (3, 0, 2, Some("a3")),
            (1, 0, 3, None),
            (2, 0, 4, Some("b2")),
            (3, 0, 5, Some("b3")),
            (3, 0, 6, None),
            (2, 1, 0, Some("other-partition")),
        ];
        records.sort_by_key(|(seq, p, o, _)| (*seq, *p, *o));
        assert_eq!(
            drop_superseded(records),
            ["a1", "b2", "other-partition", "b3"]
        );
        // And the marker's encoding round-trips; other messages are not markers.
        let m = JournalChunks::resumed(42);
        assert_eq!(JournalChunks::decode_resumed(&m), Ok(Some(42)));
        assert_eq!(JournalChunks::decode_positions(&m), Ok(None));
        let mut recs = Vec::new();
        JournalRecord::decode_all(&m, &mut recs).unwrap();
        assert!(recs.is_empty(), "a marker holds no journal record");
    }
    use crate::core::{Output, PriceTable, Router, RoutingConfig};
    use crate::events::codec::decode_input;

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
        // Messages of earlier builds (records of format 1, chunks of formats 2 and 3) are
        // refused by name, never read as records of this format.
        for old in [1, 2, 3] {
            let mut recs = Vec::new();
            let e = JournalRecord::decode_all(&[old, 0, 0, 0], &mut recs).unwrap_err();
            assert!(e.contains("earlier build"), "{e}");
            assert!(JournalRecord::decode_input(&[old, 0, 0])
                .unwrap_err()
                .contains("earlier build"));
        }
    }

    #[test]
    fn chunks_carry_every_record_in_order_and_recovery_reads_only_input_chunks() {
        let recs = records();
        let mut chunks = JournalChunks::default();
        // Runs a batch of records through `chunks`: the messages, in the order sent.
        fn batch(chunks: &mut JournalChunks, recs: &[JournalRecord]) -> Vec<(String, Vec<u8>)> {
            let mut sent = Vec::new();
            let mut keep = |key: &str, payload: &[u8]| {
                sent.push((key.to_owned(), payload.to_vec()));
                Ok::<_, ()>(())
            };
            for r in recs {
                chunks.push(r, &mut keep).unwrap();
            }
            chunks.drain(&mut keep).unwrap();
            sent
        }
        let messages = batch(&mut chunks, &recs);
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
        let many: Vec<JournalRecord> = (0..200).flat_map(|_| recs.iter().cloned()).collect();
        let mut big = JournalChunks::default();
        let split = batch(&mut big, &many);
        assert!(split.iter().any(|(_, p)| p.len() > CHUNK_BYTES));
        let mut again = Vec::new();
        for (_, payload) in &split {
            JournalRecord::decode_all(payload, &mut again).unwrap();
        }
        assert_eq!(again.len(), many.len());
        // The buffers stay with their keys: later batches give the same messages.
        assert_eq!(batch(&mut chunks, &recs), messages);
        assert_eq!(batch(&mut chunks, &recs), messages);
    }
}
