//! Per-partition units (DESIGN §6 scale-out): the broker's state is split by input partition,
//! so that instances in one consumer group share the work and hand partitions over.
//!
//! Unit `p` owns partition `p` of the requests and completions topics (both keyed by lane and
//! created with the same partition count, so a lane's requests and completions meet in one
//! unit, and the range assignor gives both to the same instance). Its deciders see every
//! cluster and tenant fact: each instance reads **all** partitions of the telemetry, control,
//! usage and status topics (the broadcast inputs) and applies each record to every unit it
//! holds. A
//! unit keeps the broadcast offsets it has applied — journaled after each batch
//! (`CHUNK_POSITIONS`) and in its snapshots — so wherever it is loaded it applies each
//! broadcast record exactly once, catching up on those it has not seen.
//!
//! A unit journals to partition `p` of the journal topic (its own `input_seq` sequence), is
//! snapshotted under its own key (RocksDB, and the snapshots topic's partition
//! `p % partitions`), and recovers from the newer of the local and the published snapshot
//! plus its journal tail. Capacity needs no coordination between units: a cluster's slots
//! are already split among its lanes (`ClusterView::lane_limit`), and a lane lives in one
//! unit.
//!
//! A tenant's budget does: its requests spread over lanes in every unit. Each unit charges
//! its own completions directly and, at the end of each batch, sends what they cost per
//! tenant (and month) to the usage topic with its month total for the tenant, in the batch's
//! transaction ([`Shared`]); a receiver counts only what a total adds to the largest it has
//! from that unit, so a batch sent again counts once. Likewise a
//! circuit breaker that its own lanes' completions open goes to the status topic. Both topics
//! are broadcast inputs like telemetry and control: every unit applies the *other* units'
//! records (`zumik.usage.v1`, `zumik.breaker_tripped.v1` inputs, journaled), so a tenant's
//! spend in each unit is its spend everywhere, and a cluster failing on one unit's lanes is
//! out of rotation in all of them, up to those topics' lag.
//!
//! [`GroupContext`] records the consumer group's rebalances; the broker loop acts on them
//! between batches (it drops a batch's messages of revoked partitions, keeps the units it is
//! assigned again, drops the others and loads the new ones).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

use super::config::{DeliveryMode, KafkaConfig};
use super::topics::Topics;
use super::worker::{
    published_snapshot, scan_journal, scan_topic_keyed, watermarks, BrokerError, BrokerStats,
    Delivery, JournalChunks, JournalRecord, Scan, SnapState, Snapshots, Unacked,
};
use crate::actors::{ActorSystem, Engine};
use crate::core::cluster::{ClusterEvent, HealthCause};
use crate::core::router::JournalEntry;
use crate::core::tenant::{TenantCommand, TenantEvent};
use crate::core::{Output, PriceTable, RoutingConfig};
use crate::events::Name;
use crate::events::{BreakerTrippedV1, InputEvent, UsageV1};
use crate::store::Snapshot;

/// Per broadcast partition `(topic, partition)`: the offset of the first record not applied.
pub type Positions = BTreeMap<(String, i32), i64>;

/// A broadcast record read for a catch-up.
#[derive(Debug, Clone)]
pub struct BroadcastRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Vec<u8>,
}

/// One input partition's deciders and where they stand.
pub struct Unit {
    pub partition: i32,
    pub engine: Engine,
    /// Inputs applied (its own partition's and broadcast ones): the journal's `input_seq`.
    pub input_seq: u64,
    /// Where the unit stands on each broadcast partition and on its own requests and
    /// completions partitions: the broker skips what it consumes again below the latter (see
    /// [`committed_cut`] and [`check_own_logs`]).
    pub broadcast: Positions,
    /// Broadcast positions moved in this batch (journaled at its end).
    pub moved: bool,
    pub(super) chunks: JournalChunks,
    pub(super) snap: SnapState,
    /// What this batch tells the other units (its spend, its breaker trips).
    pub(super) shared: Shared,
    /// At-least-once: loaded from a journal whose tail ran past the committed offsets, it
    /// stands at this `input_seq`; a [`CHUNK_RESUMED`](super::worker::CHUNK_RESUMED) marker
    /// goes to its journal before anything else.
    pub(super) resumed: Option<u64>,
}

impl Unit {
    /// Whether the record at `offset` of `(topic, partition)` is still to apply.
    pub fn wants(&self, topic: &str, partition: i32, offset: i64) -> bool {
        offset >= self.applied_below(topic, partition)
    }

    /// The first offset of `(topic, partition)` the unit has not applied (0: none applied).
    pub fn applied_below(&self, topic: &str, partition: i32) -> i64 {
        self.broadcast
            .get(&(topic.to_owned(), partition))
            .copied()
            .unwrap_or(0)
    }

    /// Records that the broadcast record at `offset` was applied.
    pub fn applied_broadcast(&mut self, topic: &str, partition: i32, offset: i64) {
        self.broadcast
            .insert((topic.to_owned(), partition), offset + 1);
        self.moved = true;
    }
}

/// What one unit's batch tells the other units, read off the journal records the batch
/// produced: the billable spend of its own completions, summed per tenant and calendar month
/// (a month's budget must not receive another month's spend) with the unit's month total
/// after them, and the circuit breakers its own completions opened. Sent at the batch's end
/// (usage and status topics), in its transaction.
#[derive(Debug, Default)]
pub struct Shared {
    /// Keyed by tenant, month, and whether the unit counted the spend (late completions of a
    /// month the tenant's state has left are sent without a total, apart from the others).
    usage: BTreeMap<(Name, u32, bool), UsageV1>,
    trips: Vec<BreakerTrippedV1>,
}

impl Shared {
    /// Adds what `entry` records for the other units, if anything: a tenant's `RecordUsage`
    /// (only this unit's completions give one; other units' usage arrives as
    /// `RecordUnitUsage`) or a breaker opened by this unit's completions (not one opened by
    /// another unit's trip).
    pub fn add(&mut self, unit: i32, entry: &JournalEntry) {
        // Partitions are never negative.
        let unit = u32::try_from(unit).unwrap_or_default();
        match entry {
            JournalEntry::Tenant {
                tenant_id,
                command:
                    TenantCommand::RecordUsage {
                        cost_micros, ts, ..
                    },
                events,
            } => {
                let own = events.iter().find_map(|e| match e {
                    TenantEvent::UsageRecorded { own_micros, .. } => *own_micros,
                    _ => None,
                });
                let usage = self
                    .usage
                    .entry((*tenant_id, ts.year_month(), own.is_some()))
                    .or_insert_with(|| UsageV1 {
                        tenant_id: tenant_id.to_string(),
                        unit,
                        requests: 0,
                        cost_micros: 0,
                        unit_spent_micros: None,
                        ts: *ts,
                    });
                usage.requests = usage.requests.saturating_add(1);
                usage.cost_micros = usage.cost_micros.saturating_add(*cost_micros);
                usage.unit_spent_micros = usage.unit_spent_micros.max(own);
                usage.ts = usage.ts.max(*ts);
            }
            JournalEntry::Cluster {
                cluster_id, events, ..
            } => {
                for e in events {
                    if let ClusterEvent::HealthChanged {
                        cause: HealthCause::Breaker { failures, samples },
                        ts,
                        ..
                    } = e
                    {
                        self.trips.push(BreakerTrippedV1 {
                            cluster_id: cluster_id.to_string(),
                            unit,
                            failures: *failures,
                            samples: *samples,
                            ts: *ts,
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// The batch's records for the other units — usage in tenant and month order, then the
    /// breaker trips in the order they happened; empties the batch.
    pub fn drain(&mut self) -> impl Iterator<Item = InputEvent> {
        let usage = std::mem::take(&mut self.usage).into_values();
        let trips = std::mem::take(&mut self.trips);
        usage
            .map(InputEvent::Usage)
            .chain(trips.into_iter().map(InputEvent::BreakerTripped))
    }
}

/// The unit an internal record came from (it acted on it already: the others apply it).
pub fn sent_by(event: &InputEvent) -> Option<u32> {
    match event {
        InputEvent::Usage(u) => Some(u.unit),
        InputEvent::BreakerTripped(b) => Some(b.unit),
        _ => None,
    }
}

/// A journal message recovery uses.
enum Tail {
    Input(InputEvent),
    Positions(Positions),
}

/// Where a unit's state came from when it was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restored {
    LocalSnapshot,
    SnapshotsTopic,
    /// No snapshot: the whole journal of the unit.
    JournalOnly,
}

impl std::fmt::Display for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Restored::LocalSnapshot => "local snapshot",
            Restored::SnapshotsTopic => "snapshots topic",
            Restored::JournalOnly => "no snapshot",
        })
    }
}

/// What a unit's recovery reads (from the store and Kafka, on any thread).
pub(super) struct Fetched {
    pub(super) partition: i32,
    snapshot: Option<Snapshot>,
    from: Restored,
    /// The journaled inputs and positions after the snapshot, in `input_seq` order.
    tail: Vec<(u64, Tail)>,
    /// Where the journal read started on the unit's partition (the snapshot's offset).
    journal_start: i64,
    /// Where the journal read ended on the unit's partition.
    journal_end: i64,
    /// At-least-once: the group's committed offsets of the unit's requests and completions
    /// partitions (see [`committed_cut`]); `None` exactly once.
    committed: Option<Positions>,
    took: Duration,
}

impl Fetched {
    /// At-least-once: the `input_seq` the unit resumes at when its tail runs past the committed
    /// offsets (see [`committed_cut`]); the tail's records past it are not applied.
    fn cut(&self) -> Option<u64> {
        let snapshot_seq = self.snapshot.as_ref().map_or(0, |s| s.position.input_seq);
        self.committed
            .as_ref()
            .and_then(|c| committed_cut(&self.tail, c, snapshot_seq))
    }

    /// The tail the unit is built from: all of it, or at least once the part up to its cut
    /// and before the first positions record past the commit (a batch that applied nothing,
    /// its inputs all dead-lettered, has the cut's `input_seq` but is not committed either).
    fn kept_tail(&self) -> usize {
        let Some(committed) = &self.committed else {
            return self.tail.len();
        };
        let uncommitted = self
            .tail
            .iter()
            .position(|(_, r)| matches!(r, Tail::Positions(p) if beyond_committed(p, committed)))
            .unwrap_or(self.tail.len());
        match self.cut() {
            Some(cut) => uncommitted.min(self.tail.partition_point(|(seq, _)| *seq <= cut)),
            None => uncommitted,
        }
    }

    /// The broadcast positions the unit will stand at once built: its snapshot's, moved on by
    /// the positions its (kept) journal tail records.
    pub(super) fn positions(&self) -> Positions {
        let mut at = self
            .snapshot
            .as_ref()
            .map(|s| s.position.broadcast.clone())
            .unwrap_or_default();
        for (_, rec) in &self.tail[..self.kept_tail()] {
            if let Tail::Positions(p) = rec {
                for (k, v) in p {
                    let o = at.entry(k.clone()).or_default();
                    *o = (*o).max(*v);
                }
            }
        }
        at
    }
}

/// Reads a unit's journal partition from `start` to its end now (every transaction in it
/// resolved): the inputs and positions recorded, in `input_seq` order, and where the read
/// ended.
fn read_tail(
    cfg: &KafkaConfig,
    topics: &Topics,
    partition: i32,
    start: i64,
) -> Result<(Vec<(u64, Tail)>, i64), BrokerError> {
    let Scan { records, ends, .. } = scan_journal(
        cfg,
        &topics.journal,
        partition,
        &BTreeMap::from([(partition, start)]),
        |bytes, out| {
            if let Some((seq, p)) = JournalChunks::decode_positions(bytes)? {
                out.push((seq, (seq, Tail::Positions(p))));
                return Ok(());
            }
            let mut inputs = Vec::new();
            JournalRecord::decode_inputs(bytes, &mut inputs)?;
            out.extend(
                inputs
                    .into_iter()
                    .map(|(seq, e)| (seq, (seq, Tail::Input(e)))),
            );
            Ok(())
        },
    )?;
    let end = ends.get(&partition).copied().unwrap_or(start).max(start);
    Ok((records, end))
}

/// Reads what unit `partition` was when last committed: the newer of its local and its
/// published snapshot, and its journal tail (everything journaled after the snapshot).
fn fetch_unit(
    cfg: &KafkaConfig,
    topics: &Topics,
    log_ends: &BaseConsumer,
    partition: i32,
    snapshots: Option<&Snapshots>,
    snapshot_partitions: i32,
) -> Result<Fetched, BrokerError> {
    let began = Instant::now();
    // Committed offsets first: a commit landing after the journal read covers records the
    // read has not seen, and those would be cut without being consumed again.
    let committed = group_committed(cfg, topics, partition)?;
    // At least once, a snapshot past the committed offsets (a unit handed over after its
    // revoke's commit failed) holds inputs that will be consumed again: not restored.
    let usable = |s: &Option<Snapshot>| match (s, &committed) {
        (Some(s), Some(c)) if beyond_committed(&s.position.broadcast, c) => {
            tracing::warn!(
                unit = partition,
                input_seq = s.position.input_seq,
                "broker: unit {partition}'s snapshot is past the committed offsets; not restored"
            );
            false
        }
        _ => true,
    };
    let (mut snapshot, mut from) = (None, Restored::JournalOnly);
    let mut local_ms = 0;
    if let Some(s) = snapshots {
        let local = Some(s.local(partition)?).filter(usable).flatten();
        local_ms = began.elapsed().as_millis() as u64;
        let published = Some(published_snapshot(
            cfg,
            topics,
            partition % snapshot_partitions.max(1),
            &s.key(partition),
        )?)
        .filter(usable)
        .flatten();
        (snapshot, from) = match (local, published) {
            (Some(l), Some(p)) if p.position.input_seq > l.position.input_seq => {
                (Some(p), Restored::SnapshotsTopic)
            }
            (Some(l), _) => (Some(l), Restored::LocalSnapshot),
            (None, Some(p)) => (Some(p), Restored::SnapshotsTopic),
            (None, None) => (None, Restored::JournalOnly),
        };
    }
    let snapshot_ms = began.elapsed().as_millis() as u64;
    let start = snapshot
        .as_ref()
        .and_then(|s| s.position.journal_offsets.get(&partition).copied())
        .unwrap_or(0);
    let (tail, journal_end) = read_tail(cfg, topics, partition, start)?;
    tracing::debug!(
        unit = partition,
        local_ms,
        snapshot_ms,
        journal_ms = began.elapsed().as_millis() as u64 - snapshot_ms,
        records = tail.len(),
        "broker: unit {partition} read"
    );
    let mut fetched = Fetched {
        partition,
        snapshot,
        from,
        tail,
        journal_start: start,
        // Everything before this offset is in the state once the tail is applied.
        journal_end,
        committed,
        took: began.elapsed(),
    };
    check_own_logs(log_ends, topics, &fetched)?;
    fetched.took = began.elapsed();
    Ok(fetched)
}

/// Refuses a unit whose positions stand past the end of its own requests or completions
/// partition. The unit skips what it consumes below its positions (applied already), which
/// is right only while an offset names the same message: a topic re-created or truncated
/// under a kept journal starts its offsets over, and skipping would lose new inputs.
fn check_own_logs(
    log_ends: &BaseConsumer,
    topics: &Topics,
    f: &Fetched,
) -> Result<(), BrokerError> {
    let at = f.positions();
    for topic in [&topics.requests, &topics.completions] {
        let Some(&applied) = at.get(&(topic.clone(), f.partition)) else {
            continue;
        };
        let (_, end) = super::worker::watermarks(log_ends, topic, f.partition)?;
        if applied > end {
            let p = f.partition;
            return Err(BrokerError::Partitions(format!(
                "{topic}/{p} ends at offset {end}, but unit {p}'s journal says it applied it up \
                 to offset {applied}: the topic was re-created or truncated under a kept \
                 journal, and its offsets now name other messages. Start on a new \
                 kafka.topic_prefix (or delete the journal and snapshots topics and the \
                 snapshot dir)"
            )));
        }
    }
    Ok(())
}

/// Reads what was journaled on `f`'s partition since `f` was read (normally nothing: a read
/// made before this instance fenced the previous one, which may have committed more since).
fn top_up(cfg: &KafkaConfig, topics: &Topics, f: &mut Fetched) -> Result<(), BrokerError> {
    let began = Instant::now();
    if f.committed.is_some() {
        // At least once: the previous owner may have committed more since, or resumed (a
        // marker in the new part supersedes records of the old part): committed offsets
        // first, then the whole tail again.
        f.committed = group_committed(cfg, topics, f.partition)?;
        (f.tail, f.journal_end) = read_tail(cfg, topics, f.partition, f.journal_start)?;
    } else {
        let (more, end) = read_tail(cfg, topics, f.partition, f.journal_end)?;
        f.tail.extend(more);
        f.journal_end = end;
    }
    f.took += began.elapsed();
    Ok(())
}

/// Runs `read` for each of `items` on its own thread (the reads wait on Kafka), in order.
fn in_parallel<I: Send, T: Send>(
    items: Vec<I>,
    read: impl Fn(I) -> Result<T, BrokerError> + Sync,
) -> Result<Vec<T>, BrokerError> {
    let read = &read;
    std::thread::scope(|s| {
        let reads: Vec<_> = items
            .into_iter()
            .map(|i| s.spawn(move || read(i)))
            .collect();
        reads
            .into_iter()
            .map(|r| r.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Reads units `partitions` as last committed (see [`fetch_unit`]), in parallel.
pub(super) fn fetch_units(
    cfg: &KafkaConfig,
    topics: &Topics,
    partitions: &[i32],
    snapshots: Option<&Snapshots>,
    snapshot_partitions: i32,
) -> Result<Vec<Fetched>, BrokerError> {
    // One client asks every unit's input partitions for their ends (`check_own_logs`).
    let log_ends: BaseConsumer = cfg
        .client_config()
        .create()
        .map_err(|e| BrokerError::Kafka {
            what: "watermarks client",
            source: e,
        })?;
    in_parallel(partitions.to_vec(), |p| {
        fetch_unit(cfg, topics, &log_ends, p, snapshots, snapshot_partitions)
    })
}

/// Brings units read earlier up to what is committed now (see [`top_up`]), in parallel. A unit
/// whose journal partition did not grow since (its log end, asked of `log_ends`, a
/// `read_uncommitted` client, is where its read ended) is not read again.
pub(super) fn top_up_units(
    cfg: &KafkaConfig,
    topics: &Topics,
    log_ends: &BaseConsumer,
    fetched: Vec<Fetched>,
) -> Result<Vec<Fetched>, BrokerError> {
    let mut grew = Vec::with_capacity(fetched.len());
    for f in &fetched {
        grew.push(watermarks(log_ends, &topics.journal, f.partition)?.1 > f.journal_end);
    }
    in_parallel(fetched.into_iter().zip(grew).collect(), |(mut f, grew)| {
        if grew {
            top_up(cfg, topics, &mut f)?;
        }
        Ok(f)
    })
}

/// At-least-once: the consumer group's committed offsets of unit `partition`'s requests and
/// completions partitions (0 for one without a commit); `None` exactly once, where the journal
/// and the offsets commit together.
fn group_committed(
    cfg: &KafkaConfig,
    topics: &Topics,
    partition: i32,
) -> Result<Option<Positions>, BrokerError> {
    if cfg.mode == DeliveryMode::ExactlyOnce {
        return Ok(None);
    }
    // Not a member: an offset fetch needs only the group id.
    let consumer: BaseConsumer = cfg
        .client_config()
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| BrokerError::Kafka {
            what: "offsets client",
            source: e,
        })?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for topic in [&topics.requests, &topics.completions] {
        tpl.add_partition(topic, partition);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .map_err(|e| BrokerError::Kafka {
            what: "committed offsets",
            source: e,
        })?;
    Ok(Some(
        got.elements()
            .iter()
            .map(|e| {
                let at = match e.offset() {
                    rdkafka::Offset::Offset(o) => o,
                    _ => 0,
                };
                ((e.topic().to_owned(), e.partition()), at)
            })
            .collect(),
    ))
}

/// At-least-once: the `input_seq` up to which a unit's journal tail is committed, or `None`
/// when all of it is.
///
/// Each batch's positions record holds, with the broadcast positions, the unit's offsets on its
/// requests and completions partitions; those offsets are committed only after the batch's
/// outputs (its journal records among them) are acknowledged. A tail that runs past the last
/// positions record whose offsets the group has committed holds inputs that will be consumed
/// again: recovery stops before them and applies them when they come, so the state never holds
/// an input twice and each decision is taken again on the state it was first taken on. A tail
/// whose positions hold no such offsets (a journal of an earlier build) is taken whole; exactly
/// once this is not asked (the positions and the offsets commit in one transaction).
fn committed_cut(tail: &[(u64, Tail)], committed: &Positions, snapshot_seq: u64) -> Option<u64> {
    let mut cut = snapshot_seq;
    let mut tracked = false;
    for (seq, rec) in tail {
        let Tail::Positions(p) = rec else { continue };
        tracked |= committed.keys().any(|k| p.contains_key(k));
        if beyond_committed(p, committed) {
            break;
        }
        cut = cut.max(*seq);
    }
    let last = tail.last().map_or(snapshot_seq, |(seq, _)| *seq);
    (tracked && last > cut).then_some(cut)
}

/// Whether `position` (a positions record's or a snapshot's) stands past the `committed`
/// offsets on one of the unit's own partitions.
fn beyond_committed(position: &Positions, committed: &Positions) -> bool {
    committed
        .iter()
        .any(|(k, c)| position.get(k).is_some_and(|v| v > c))
}

/// Builds a unit on `engine` (on the broker thread) from what [`fetch_unit`] read: the
/// snapshot restored, then the tail's inputs it does not hold applied in order.
fn build_unit(f: Fetched, engine: Engine, stats: &BrokerStats) -> Result<Unit, BrokerError> {
    let began = Instant::now();
    let (cut, kept) = (f.cut(), f.kept_tail());
    let mut unit = Unit {
        partition: f.partition,
        engine,
        input_seq: 0,
        broadcast: BTreeMap::new(),
        moved: false,
        chunks: JournalChunks::default(),
        snap: SnapState::default(),
        shared: Shared::default(),
        resumed: None,
    };
    if let Some(snap) = f.snapshot {
        if f.from == Restored::SnapshotsTopic {
            stats.from_topic.store(true, Ordering::Relaxed);
        }
        unit.engine.restore(&snap.state)?;
        unit.input_seq = snap.position.input_seq;
        unit.broadcast = snap.position.broadcast;
        unit.snap.last_seq = unit.input_seq;
        stats
            .restored_seq
            .fetch_add(unit.input_seq, Ordering::Relaxed);
    }
    unit.snap.journal_base = f.journal_end;
    let restored = unit.input_seq;
    unit.resumed = cut;
    let (mut n, mut read) = (0, 0);
    let mut out = Output::default();
    let mut tail = f.tail;
    tail.truncate(kept);
    for (seq, rec) in tail {
        match rec {
            Tail::Positions(p) => {
                for (k, v) in p {
                    let at = unit.broadcast.entry(k).or_default();
                    *at = (*at).max(v);
                }
            }
            Tail::Input(e) => {
                read += 1;
                // The inputs come in `input_seq` order; those the snapshot holds are skipped.
                if seq <= unit.input_seq {
                    continue;
                }
                unit.engine.apply(e, &mut out)?;
                out.clear();
                unit.input_seq = seq;
                n += 1;
            }
        }
    }
    stats.recovered.fetch_add(n, Ordering::Relaxed);
    stats.journal_read.fetch_add(read, Ordering::Relaxed);
    let (p, from) = (unit.partition, f.from);
    tracing::info!(
        unit = p,
        from = %from,
        snapshot_seq = restored,
        replayed = n,
        read_ms = f.took.as_millis() as u64,
        apply_ms = began.elapsed().as_millis() as u64,
        "broker: unit {p} restored from {from} and {n} journaled inputs"
    );
    if let Some(cut) = cut {
        tracing::info!(
            unit = p,
            input_seq = cut,
            "broker: unit {p} resumes at input {cut}, its last committed batch (at least once: \
             the journaled inputs after it are consumed and decided again)"
        );
    }
    Ok(unit)
}

/// Builds units from what [`fetch_units`] read, each on an engine from `engine` (on this
/// thread). The broadcast records they have not applied yet are for [`catch_up_reads`].
pub(super) fn build_units(
    fetched: Vec<Fetched>,
    mut engine: impl FnMut() -> Engine,
    stats: &BrokerStats,
) -> Result<Vec<Unit>, BrokerError> {
    fetched
        .into_iter()
        .map(|f| build_unit(f, engine(), stats))
        .collect()
}

/// The broadcast records (telemetry, control, usage) that `units` have not applied yet, from the
/// lowest position any of them needs up to each partition's end now. Each partition's records
/// keep their order; partitions are merged by event time (the earliest head first), so a
/// cluster's registration comes before its heartbeats as it did live. Records the broadcast
/// consumer delivers again later are skipped by position ([`Unit::wants`]).
pub(super) fn catch_up_reads<'a>(
    cfg: &KafkaConfig,
    topics: &Topics,
    units: impl Iterator<Item = &'a Positions> + Clone,
) -> Result<Vec<BroadcastRecord>, BrokerError> {
    // Where each topic is read from: per partition, the lowest next offset over the units; a
    // partition some unit has never read is read from its start.
    let mut starts = Vec::new();
    for topic in topics.broadcast() {
        let mut start: Option<BTreeMap<i32, i64>> = None;
        for u in units.clone() {
            let mine: BTreeMap<i32, i64> = u
                .iter()
                .filter(|((t, _), _)| t == topic)
                .map(|((_, p), o)| (*p, *o))
                .collect();
            start = Some(match start {
                None => mine,
                Some(mut s) => {
                    s.retain(|p, o| {
                        mine.get(p).is_some_and(|m| {
                            *o = (*o).min(*m);
                            true
                        })
                    });
                    s
                }
            });
        }
        starts.extend(start.map(|s| (topic, s)));
    }
    // All the broadcast topics at once.
    let reads = in_parallel(starts, |(topic, start)| {
        scan_topic_keyed(cfg, topic, &start)
    })?;
    // Per partition: (event time, record), in offset order.
    let mut lanes: Vec<std::collections::VecDeque<(i64, BroadcastRecord)>> = Vec::new();
    for records in reads {
        let mut by_partition: BTreeMap<(String, i32), std::collections::VecDeque<_>> =
            BTreeMap::new();
        for r in records {
            // Undecodable records sort as early as possible; the DLQ takes them.
            let ts = topics
                .decode(&r.topic, &r.payload)
                .map_or(i64::MIN, |e| e.ts().millis());
            by_partition
                .entry((r.topic.clone(), r.partition))
                .or_default()
                .push_back((ts, r));
        }
        lanes.extend(by_partition.into_values());
    }
    Ok(merge_by_time(lanes))
}

/// Merges sequences that are each in order into one: the earliest head first (the first
/// sequence on ties); every sequence keeps its own order.
fn merge_by_time<T>(mut seqs: Vec<std::collections::VecDeque<(i64, T)>>) -> Vec<T> {
    let mut all = Vec::with_capacity(seqs.iter().map(|l| l.len()).sum());
    while let Some(next) = seqs
        .iter_mut()
        .filter(|l| !l.is_empty())
        .min_by_key(|l| l.front().map(|(ts, _)| *ts))
    {
        all.push(next.pop_front().expect("not empty").1);
    }
    all
}

/// A change of the consumer group's assignment, as the consumer reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalanced {
    /// These partitions (requests or completions) are no longer ours. `lost`: the group
    /// moved them without this instance (a missed session or poll interval, an error), so
    /// another instance may have decided on them since: their units must be reloaded, not
    /// kept.
    Revoked { partitions: Vec<i32>, lost: bool },
    /// The consumer gave up its whole assignment after an error: every unit is lost.
    LostAll,
    /// The new assignment (eager protocol: all of it).
    Assigned(Vec<i32>),
}

/// The group consumer's context: records rebalances in order for the broker loop (the
/// callbacks run inside `poll`, on the broker thread), and before partitions are revoked makes
/// at-least-once output durable and commits its acknowledged offsets, so the partitions' next
/// owner reads a journal that holds everything their offsets say was applied.
pub struct GroupContext {
    events: Mutex<Vec<Rebalanced>>,
    /// At-least-once: the batches whose offsets wait for acknowledgements.
    pub unacked: Mutex<Unacked>,
    /// The output producer's delivery counts (set once the producer exists).
    pub delivery: OnceLock<Arc<Delivery>>,
    at_least_once: bool,
}

impl GroupContext {
    pub fn new(cfg: &KafkaConfig) -> Self {
        GroupContext {
            events: Mutex::new(Vec::new()),
            unacked: Mutex::new(Unacked::new(Duration::from_millis(cfg.commit_interval_ms))),
            delivery: OnceLock::new(),
            at_least_once: cfg.mode == DeliveryMode::AtLeastOnce,
        }
    }

    /// Whether a rebalance was recorded and not taken yet.
    pub fn pending(&self) -> bool {
        !self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Takes what was recorded, oldest first.
    pub fn take(&self) -> Vec<Rebalanced> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn record(&self, event: Rebalanced) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }
}

/// The partitions of a rebalance's list (requests and completions share their numbers).
fn partitions(tpl: &rdkafka::TopicPartitionList) -> Vec<i32> {
    let mut ps: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    ps.sort_unstable();
    ps.dedup();
    ps
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let tpl = match rebalance {
            Rebalance::Revoke(tpl) => tpl,
            Rebalance::Assign(_) => return,
            // The consumer unassigns everything: every unit counts as lost.
            Rebalance::Error(e) => {
                tracing::warn!("consumer group rebalance failed: {e}");
                self.record(Rebalanced::LostAll);
                return;
            }
        };
        // Exactly-once has nothing in flight here (each batch commits before the next poll).
        if self.at_least_once {
            if let Some(delivery) = self.delivery.get() {
                let mut unacked = self.unacked.lock().unwrap_or_else(|e| e.into_inner());
                let durable = delivery.wait_reported(Duration::from_secs(30));
                if let Err(e) = unacked.commit_all(delivery, consumer).map(|_| durable) {
                    tracing::warn!("offsets not committed before a rebalance: {e}");
                }
            }
        }
        self.record(Rebalanced::Revoked {
            partitions: partitions(tpl),
            lost: consumer.assignment_lost(),
        });
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.record(Rebalanced::Assigned(partitions(tpl)));
        }
    }
}

/// A new engine for a unit.
pub(super) fn new_engine(
    system: &ActorSystem,
    cfg: &KafkaConfig,
    routing: &Arc<RoutingConfig>,
    prices: &Arc<PriceTable>,
) -> Engine {
    Engine::on(system, cfg.engine, routing.clone(), prices.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tail of three batches of unit 0: inputs 1–2 (requests up to offset 2), 3–4 (requests
    /// up to 4), 5 (requests up to 5, its positions not journaled: a crash mid-batch).
    fn tail() -> Vec<(u64, Tail)> {
        let input = || {
            Tail::Input(InputEvent::ProviderHealth(
                crate::events::ProviderHealthV1 {
                    provider: "openai".into(),
                    status: crate::events::ProviderStatus::Ok,
                    error_rate: None,
                    ts: crate::events::Timestamp(0),
                },
            ))
        };
        let at = |requests: i64| {
            Tail::Positions(Positions::from([
                (("telemetry".to_owned(), 0), 7),
                (("requests".to_owned(), 0), requests),
            ]))
        };
        vec![
            (1, input()),
            (2, input()),
            (2, at(2)),
            (3, input()),
            (4, input()),
            (4, at(4)),
            (5, input()),
        ]
    }

    fn committed(requests: i64) -> Positions {
        Positions::from([
            (("requests".to_owned(), 0), requests),
            (("completions".to_owned(), 0), 0),
        ])
    }

    #[test]
    fn at_least_once_recovery_keeps_the_journal_up_to_the_last_committed_batch() {
        let tail = tail();
        // The first batch committed: the second batch's inputs and the third's are cut.
        assert_eq!(committed_cut(&tail, &committed(2), 0), Some(2));
        // Both committed: only the input of the batch without positions is cut.
        assert_eq!(committed_cut(&tail, &committed(4), 0), Some(4));
        // Nothing committed: everything after the snapshot is cut.
        assert_eq!(committed_cut(&tail, &committed(0), 0), Some(0));
        assert_eq!(
            committed_cut(&tail[..1], &committed(0), 0),
            None,
            "untracked tail"
        );
        // A snapshot standing at requests offset 4 is past a commit at 2, not past one at 4.
        let snapshot_at = Positions::from([(("requests".to_owned(), 0), 4)]);
        assert!(beyond_committed(&snapshot_at, &committed(2)));
        assert!(!beyond_committed(&snapshot_at, &committed(4)));
    }

    #[test]
    fn a_cut_unit_catches_up_on_broadcast_records_from_its_cut_not_from_its_tails_end() {
        let fetched = |committed: Option<Positions>| Fetched {
            partition: 0,
            snapshot: None,
            from: Restored::JournalOnly,
            tail: tail(),
            journal_start: 0,
            journal_end: 7,
            committed,
            took: Duration::ZERO,
        };
        let requests_at = |f: &Fetched| f.positions()[&("requests".to_owned(), 0)];
        // Committed up to the first batch: the unit stands where that batch left it.
        let cut = fetched(Some(committed(2)));
        assert_eq!(
            (cut.cut(), cut.kept_tail(), requests_at(&cut)),
            (Some(2), 3, 2)
        );
        // Exactly once (no committed offsets asked): the whole tail.
        let whole = fetched(None);
        assert_eq!(
            (whole.cut(), whole.kept_tail(), requests_at(&whole)),
            (None, 7, 4)
        );
    }

    #[test]
    fn a_unit_never_stands_past_the_committed_offsets_on_its_own_partitions() {
        // The batch after the commit applied nothing (its requests went to the DLQ): its
        // positions record has the cut's `input_seq` and survives the cut, past the commit.
        let mut tail = tail();
        tail.truncate(3);
        tail.push((
            2,
            Tail::Positions(Positions::from([(("requests".to_owned(), 0), 5)])),
        ));
        let f = Fetched {
            partition: 0,
            snapshot: None,
            from: Restored::JournalOnly,
            tail,
            journal_start: 0,
            journal_end: 4,
            committed: Some(committed(2)),
            took: Duration::ZERO,
        };
        let engine = crate::actors::Engine::new(
            crate::kafka::EngineKind::Inline,
            Arc::new(RoutingConfig::default()),
            Arc::new(PriceTable::embedded()),
        );
        let unit = build_unit(f, engine, &BrokerStats::default()).unwrap();
        // The requests from offset 2 on are consumed again and applied (or dead-lettered again),
        // not skipped as applied.
        assert_eq!(unit.broadcast[&("requests".to_owned(), 0)], 2);
        assert_eq!(unit.input_seq, 2);
    }

    #[test]
    fn a_tail_ending_at_its_committed_positions_or_without_group_offsets_is_kept_whole() {
        let tail = tail();
        assert_eq!(committed_cut(&tail[..6], &committed(4), 0), None);
        // Positions without the unit's own offsets (exactly once, or an earlier build).
        let broadcast_only: Vec<(u64, Tail)> = tail
            .into_iter()
            .map(|(seq, t)| match t {
                Tail::Positions(mut p) => {
                    p.retain(|(t, _), _| t == "telemetry");
                    (seq, Tail::Positions(p))
                }
                t => (seq, t),
            })
            .collect();
        assert_eq!(committed_cut(&broadcast_only, &committed(0), 0), None);
    }

    #[test]
    fn a_catch_up_merges_partitions_by_event_time_and_keeps_each_partitions_order() {
        let seq = |xs: &[(i64, &'static str)]| xs.iter().copied().collect();
        // Control (a registration at 10) and telemetry (heartbeats at 5, 11, 3: a late one).
        let merged = merge_by_time(vec![
            seq(&[(5, "hb1"), (11, "hb2"), (3, "hb3-late")]),
            seq(&[(10, "registered")]),
        ]);
        assert_eq!(merged, ["hb1", "registered", "hb2", "hb3-late"]);
        assert!(merge_by_time::<()>(Vec::new()).is_empty());
    }

    #[test]
    fn a_batch_shares_its_own_usage_per_tenant_and_month_and_its_own_breaker_trips() {
        use crate::core::cluster::{ClusterCommand, Health};
        use crate::events::Timestamp;
        const NOV_30: i64 = 1_796_083_200_000 - 1; // 2026-11-30T23:59:59.999Z

        // Each tenant's usage decided and applied by its own state, as the unit journals it.
        let cfg = RoutingConfig::default();
        let mut tenants: BTreeMap<&str, crate::core::tenant::TenantState> = BTreeMap::new();
        let mut own = |tenant: &'static str, cost_micros: u64, at: i64| {
            let state = tenants
                .entry(tenant)
                .or_insert_with(|| crate::core::tenant::TenantState::new(tenant.into()));
            let command = TenantCommand::RecordUsage {
                request_id: "r".into(),
                cost_micros,
                ts: Timestamp(at),
            };
            let events = state.decide(&command, &cfg);
            for e in &events {
                state.evolve(e, &cfg);
            }
            JournalEntry::Tenant {
                tenant_id: tenant.into(),
                command,
                events,
            }
        };
        let opened = |cause: HealthCause| JournalEntry::Cluster {
            cluster_id: "byc_x".into(),
            command: ClusterCommand::Outcome {
                failed: true,
                ts: Timestamp(NOV_30),
            },
            events: vec![ClusterEvent::HealthChanged {
                from: Health::Healthy,
                to: Health::BreakerOpen,
                cause,
                slow_start: false,
                ts: Timestamp(NOV_30),
            }],
        };
        let mut s = Shared::default();
        s.add(2, &own("prj_b", 10, NOV_30 - 5));
        s.add(2, &own("prj_a", 7, NOV_30 - 9));
        s.add(
            2,
            &opened(HealthCause::Breaker {
                failures: 6,
                samples: 10,
            }),
        );
        s.add(2, &own("prj_b", 5, NOV_30 - 1));
        // December.
        s.add(2, &own("prj_b", 1, NOV_30 + 2));
        // A late November completion: not counted by the unit, sent without a total.
        s.add(2, &own("prj_b", 3, NOV_30 - 2));
        // Another unit's usage and trip applied here, and anything else: not this unit's news.
        s.add(
            2,
            &JournalEntry::Tenant {
                tenant_id: "prj_a".into(),
                command: TenantCommand::RecordUnitUsage {
                    unit: 1,
                    requests: 1,
                    cost_micros: 99,
                    unit_spent_micros: Some(99),
                    ts: Timestamp(NOV_30),
                },
                events: vec![],
            },
        );
        s.add(
            2,
            &opened(HealthCause::BreakerInUnit {
                unit: 1,
                failures: 6,
                samples: 10,
            }),
        );
        s.add(
            2,
            &JournalEntry::ClusterRemoved {
                cluster_id: "byc_x".into(),
            },
        );
        let sent: Vec<InputEvent> = s.drain().collect();
        let usage = |tenant: &str, requests, cost_micros, unit_spent_micros, ts| {
            InputEvent::Usage(UsageV1 {
                tenant_id: tenant.into(),
                unit: 2,
                requests,
                cost_micros,
                unit_spent_micros,
                ts: Timestamp(ts),
            })
        };
        assert_eq!(
            sent,
            [
                usage("prj_a", 1, 7, Some(7), NOV_30 - 9),
                usage("prj_b", 1, 3, None, NOV_30 - 2),
                usage("prj_b", 2, 15, Some(15), NOV_30 - 1),
                usage("prj_b", 1, 1, Some(1), NOV_30 + 2),
                InputEvent::BreakerTripped(BreakerTrippedV1 {
                    cluster_id: "byc_x".into(),
                    unit: 2,
                    failures: 6,
                    samples: 10,
                    ts: Timestamp(NOV_30),
                }),
            ]
        );
        assert!(sent.iter().all(|e| sent_by(e) == Some(2)));
        assert_eq!(s.drain().count(), 0, "a drain empties the batch");
    }
}
