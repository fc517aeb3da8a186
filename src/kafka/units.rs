//! Per-partition units (DESIGN §6 scale-out): the broker's state is split by input partition,
//! so that instances in one consumer group share the work and hand partitions over.
//!
//! Unit `p` owns partition `p` of the requests and completions topics (both keyed by lane and
//! created with the same partition count, so a lane's requests and completions meet in one
//! unit, and the range assignor gives both to the same instance). Its deciders see every
//! cluster and tenant fact: each instance reads **all** partitions of the telemetry and
//! control topics (the broadcast inputs) and applies each record to every unit it holds. A
//! unit keeps the broadcast offsets it has applied — journaled after each batch
//! (`CHUNK_POSITIONS`) and in its snapshots — so wherever it is loaded it applies each
//! broadcast record exactly once, catching up on those it has not seen.
//!
//! A unit journals to partition `p` of the journal topic (its own `input_seq` sequence), is
//! snapshotted under its own key (RocksDB, and the snapshots topic's partition
//! `p % partitions`), and recovers from the newer of the local and the published snapshot
//! plus its journal tail. Capacity needs no coordination between units: a cluster's slots
//! are already split among its lanes (`ClusterView::lane_limit`), and a lane lives in one
//! unit. What a unit does not see is other units' completions: a cluster's circuit breaker
//! and a tenant's budget count the traffic of the unit's own lanes.
//!
//! [`GroupContext`] records the consumer group's rebalances; the broker loop acts on them
//! between batches (it drops a batch's messages of revoked partitions, keeps the units it is
//! assigned again, drops the others and loads the new ones).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

use super::config::KafkaConfig;
use super::topics::Topics;
use super::worker::{
    published_snapshot, scan_topic, scan_topic_at, BrokerError, BrokerStats, JournalChunks,
    JournalRecord, Scan, SnapState, Snapshots,
};
use crate::actors::{ActorSystem, Engine};
use crate::core::{Output, PriceTable, RoutingConfig};
use crate::events::InputEvent;

/// Per broadcast partition `(topic, partition)`: the offset of the first record not applied.
pub type Positions = BTreeMap<(String, i32), i64>;

/// A broadcast record read for a catch-up: topic, partition, offset, payload.
pub type BroadcastRecord = (String, i32, i64, Vec<u8>);

/// One input partition's deciders and where they stand.
pub struct Unit {
    pub partition: i32,
    pub engine: Engine,
    /// Inputs applied (its own partition's and broadcast ones): the journal's `input_seq`.
    pub input_seq: u64,
    /// Where the unit stands on each broadcast partition.
    pub broadcast: Positions,
    /// Broadcast positions moved in this batch (journaled at its end).
    pub moved: bool,
    pub(super) chunks: JournalChunks,
    pub(super) snap: SnapState,
}

impl Unit {
    /// Whether the broadcast record at `offset` of `(topic, partition)` is still to apply.
    pub fn wants(&self, topic: &str, partition: i32, offset: i64) -> bool {
        self.broadcast
            .get(&(topic.to_owned(), partition))
            .is_none_or(|&next| offset >= next)
    }

    /// Records that the broadcast record at `offset` was applied.
    pub fn applied_broadcast(&mut self, topic: &str, partition: i32, offset: i64) {
        self.broadcast
            .insert((topic.to_owned(), partition), offset + 1);
        self.moved = true;
    }
}

/// Builds unit `partition` from what was committed: the newer of its local and its published
/// snapshot, then its journal tail (the inputs journaled after the snapshot, in order). The
/// broadcast records it has not applied yet are for [`catch_up_reads`].
#[allow(clippy::too_many_arguments)]
pub(super) fn load_unit(
    cfg: &KafkaConfig,
    topics: &Topics,
    partition: i32,
    engine: Engine,
    snapshots: Option<&Snapshots>,
    snapshot_partitions: i32,
    stats: &BrokerStats,
) -> Result<Unit, BrokerError> {
    let began = Instant::now();
    let mut unit = Unit {
        partition,
        engine,
        input_seq: 0,
        broadcast: BTreeMap::new(),
        moved: false,
        chunks: JournalChunks::default(),
        snap: SnapState::default(),
    };
    let mut start = 0;
    let mut from = "no snapshot";
    if let Some(s) = snapshots {
        let local = s.local(partition)?;
        let published = published_snapshot(
            cfg,
            topics,
            partition % snapshot_partitions.max(1),
            &s.key(partition),
        )?;
        let local_seq = local.as_ref().map(|l| l.position.input_seq);
        let newest = match (local, published) {
            (Some(l), Some(p)) if p.position.input_seq > l.position.input_seq => Some(p),
            (Some(l), _) => Some(l),
            (None, p) => p,
        };
        if let Some(snap) = newest {
            from = if local_seq == Some(snap.position.input_seq) {
                "local snapshot"
            } else {
                stats.from_topic.store(true, Ordering::Relaxed);
                "snapshots topic"
            };
            unit.engine.restore(&snap.state)?;
            unit.input_seq = snap.position.input_seq;
            unit.broadcast = snap.position.broadcast;
            start = snap
                .position
                .journal_offsets
                .get(&partition)
                .copied()
                .unwrap_or(0);
            unit.snap.last_seq = unit.input_seq;
            stats
                .restored_seq
                .fetch_add(unit.input_seq, Ordering::Relaxed);
        }
    }
    let snapshot_at = began.elapsed();
    /// A journal message recovery uses.
    enum Tail {
        Input(InputEvent),
        Positions(Positions),
    }
    let Scan {
        records,
        kept: read,
        ends,
    } = scan_topic(
        cfg,
        &topics.journal,
        Some(partition),
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
    // Everything before these offsets is in the state once the tail below is applied.
    unit.snap.journal_base = ends.get(&partition).copied().unwrap_or(start).max(start);
    let _ = read;
    let inputs_read = records
        .iter()
        .filter(|(_, r)| matches!(r, Tail::Input(_)))
        .count() as u64;
    let mut n = 0;
    let mut out = Output::default();
    for (seq, rec) in records {
        match rec {
            Tail::Positions(p) => {
                for (k, v) in p {
                    let at = unit.broadcast.entry(k).or_default();
                    *at = (*at).max(v);
                }
            }
            Tail::Input(e) => {
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
    stats.journal_read.fetch_add(inputs_read, Ordering::Relaxed);
    tracing::info!(
        unit = partition,
        from,
        snapshot_seq = unit.input_seq - n,
        replayed = n,
        snapshot_ms = snapshot_at.as_millis() as u64,
        journal_ms = (began.elapsed() - snapshot_at).as_millis() as u64,
        "broker: unit {partition} restored from {from} and {n} journaled inputs"
    );
    Ok(unit)
}

/// The broadcast records (telemetry and control) that `units` have not applied yet, from the
/// lowest position any of them needs up to each partition's end now, in topic, partition and
/// offset order, as `(topic, partition, offset, payload)`. Records the broadcast consumer
/// delivers again later are skipped by position ([`Unit::wants`]).
pub(super) fn catch_up_reads<'a>(
    cfg: &KafkaConfig,
    topics: &Topics,
    units: impl Iterator<Item = &'a Unit> + Clone,
) -> Result<Vec<BroadcastRecord>, BrokerError> {
    let mut all = Vec::new();
    for topic in [&topics.telemetry, &topics.control] {
        // Per partition, the lowest next offset over the units; a partition some unit has
        // never read is read from its start.
        let mut start: Option<BTreeMap<i32, i64>> = None;
        for u in units.clone() {
            let mine: BTreeMap<i32, i64> = u
                .broadcast
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
        let Some(start) = start else {
            continue;
        };
        let records = scan_topic_at(cfg, topic, None, &start, |bytes, out| {
            out.push((0, bytes.to_vec()));
            Ok(())
        })?;
        all.extend(
            records
                .into_iter()
                .map(|(_, p, o, bytes)| (topic.clone(), p, o, bytes)),
        );
    }
    Ok(all)
}

/// Records the consumer group's rebalances for the broker loop (called inside `poll`).
#[derive(Default)]
pub struct GroupContext {
    events: Mutex<Rebalances>,
}

/// What happened to the assignment since the loop last looked.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rebalances {
    /// Partitions revoked (requests or completions), whatever came after.
    pub revoked: Vec<(String, i32)>,
    /// The latest assignment, if one came.
    pub assigned: Option<Vec<(String, i32)>>,
}

impl GroupContext {
    /// Whether a rebalance was recorded and not taken yet.
    pub fn pending(&self) -> bool {
        let ev = self.events.lock().unwrap_or_else(|e| e.into_inner());
        !ev.revoked.is_empty() || ev.assigned.is_some()
    }

    /// Takes what was recorded.
    pub fn take(&self) -> Rebalances {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut ev = self.events.lock().unwrap_or_else(|e| e.into_inner());
            ev.revoked.extend(
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition())),
            );
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut ev = self.events.lock().unwrap_or_else(|e| e.into_inner());
            ev.assigned = Some(
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect(),
            );
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
