//! Audit replay: re-decide every journaled command from a fresh state and check that it
//! reproduces the events that were recorded — decisions above all.
//!
//! Pure: the caller reads journal records from wherever (file, Kafka) and feeds them in order.
//! Actors are rebuilt exactly as the router builds them (a lane from its `LaneCreated` record,
//! a cluster from its first registration, a tenant empty), so a journal replays on its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::events::{DecisionV1, Name, Timestamp};

use super::cluster::{ClusterCommand, ClusterState};
use super::config::RoutingConfig;
use super::lane::{LaneCommand, LaneEvent, LaneState};
use super::router::JournalEntry;
use super::tenant::{TenantState, TenantView};

/// A journaled command whose recomputed events differ from the recorded ones.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    /// Position of the record in the journal (0-based).
    pub index: u64,
    /// `lane <id>`, `cluster <id>` or `tenant <id>`.
    pub actor: String,
    pub command: serde_json::Value,
    pub recorded: serde_json::Value,
    pub recomputed: serde_json::Value,
}

/// Counts of a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AuditStats {
    pub records: u64,
    pub commands: u64,
    pub events: u64,
    pub decisions: u64,
    pub mismatches: u64,
}

/// Everything that explains one decision.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub decision: DecisionV1,
    /// The tenant facts the decision was made with.
    pub tenant: TenantView,
    /// The lane as it was just before the decision (clusters with health, heartbeat and
    /// reservations; activation; provider health).
    pub lane_before: LaneState,
    /// Other events the same command produced (e.g. a demotion, an OpenRouter audit record).
    pub other_events: Vec<LaneEvent>,
}

/// Replays journal records and collects mismatches.
pub struct Auditor {
    cfg: Arc<RoutingConfig>,
    /// Looked up on every lane record (hash map: never iterated into an output unsorted).
    pub lanes: super::index::HashIndex<Name, LaneState>,
    pub clusters: BTreeMap<Name, ClusterState>,
    pub tenants: BTreeMap<Name, TenantState>,
    pub stats: AuditStats,
    pub mismatches: Vec<Mismatch>,
    /// Keep at most this many mismatches in detail (all are counted).
    pub max_detailed: usize,
    explain: Option<String>,
    pub explanation: Option<Explanation>,
    /// Scratch buffer for recomputed lane events.
    recomputed: Vec<LaneEvent>,
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

impl Auditor {
    pub fn new(cfg: Arc<RoutingConfig>) -> Self {
        Auditor {
            cfg,
            lanes: Default::default(),
            clusters: BTreeMap::new(),
            tenants: BTreeMap::new(),
            stats: AuditStats::default(),
            mismatches: Vec::new(),
            max_detailed: 100,
            explain: None,
            explanation: None,
            recomputed: Vec::new(),
        }
    }

    /// Also capture the explanation of the decision for `request_id`.
    pub fn explain(mut self, request_id: &str) -> Self {
        self.explain = Some(request_id.to_owned());
        self
    }

    fn mismatch(
        &mut self,
        actor: String,
        command: serde_json::Value,
        recorded: serde_json::Value,
        recomputed: serde_json::Value,
    ) {
        self.stats.mismatches += 1;
        if self.mismatches.len() < self.max_detailed {
            self.mismatches.push(Mismatch {
                index: self.stats.records - 1,
                actor,
                command,
                recorded,
                recomputed,
            });
        }
    }

    /// Replays one record.
    /// Starts the journal of another unit (the broker's per-partition state): its actors are
    /// new; counts, mismatches and an explanation found so far are kept.
    pub fn next_unit(&mut self) {
        self.lanes = Default::default();
        self.clusters.clear();
        self.tenants.clear();
    }

    pub fn apply(&mut self, entry: &JournalEntry) {
        self.stats.records += 1;
        match entry {
            JournalEntry::Input(_) => {}
            JournalEntry::LaneCreated { lane, price } => {
                self.lanes.insert(*lane, LaneState::new(lane, *price));
            }
            JournalEntry::Lane {
                lane,
                command,
                events,
            } => {
                self.stats.commands += 1;
                self.stats.events += events.len() as u64;
                let state = match self.lanes.get_mut(lane) {
                    Some(state) => state,
                    None => self
                        .lanes
                        .entry(*lane)
                        .or_insert_with(|| LaneState::new(lane, None)),
                };
                let mut recomputed = std::mem::take(&mut self.recomputed);
                recomputed.clear();
                state.decide_into(command, &self.cfg, &mut recomputed);
                if let (Some(want), LaneCommand::Route { request, tenant }) =
                    (&self.explain, command)
                {
                    if *request.request_id == **want {
                        let mut decision = None;
                        let mut other = Vec::new();
                        for e in events {
                            match e {
                                LaneEvent::Decided { decision: d, .. } => {
                                    decision = Some(d.clone())
                                }
                                e => other.push(e.clone()),
                            }
                        }
                        if let Some(decision) = decision {
                            self.explanation = Some(Explanation {
                                decision,
                                tenant: tenant.clone(),
                                lane_before: state.clone(),
                                other_events: other,
                            });
                        }
                    }
                }
                // Follow history as recorded, so one mismatch does not cascade into many.
                for e in events {
                    state.evolve(e);
                }
                self.stats.decisions += events
                    .iter()
                    .filter(|e| matches!(e, LaneEvent::Decided { .. }))
                    .count() as u64;
                if recomputed != *events {
                    self.mismatch(
                        format!("lane {lane}"),
                        json(command),
                        json(events),
                        json(&recomputed),
                    );
                }
                self.recomputed = recomputed;
            }
            JournalEntry::Cluster {
                cluster_id,
                command,
                events,
            } => {
                self.stats.commands += 1;
                self.stats.events += events.len() as u64;
                let cfg = self.cfg.clone();
                if !self.clusters.contains_key(cluster_id) {
                    let ClusterCommand::Register(reg) = command else {
                        self.mismatch(
                            format!("cluster {cluster_id}"),
                            json(command),
                            json(events),
                            json(&"cluster not registered"),
                        );
                        return;
                    };
                    self.clusters
                        .insert(*cluster_id, ClusterState::registered(reg));
                }
                // Present: checked or inserted just above.
                let state = self.clusters.get_mut(cluster_id).expect("cluster exists");
                let recomputed = state.decide(command, &cfg);
                for e in events {
                    state.evolve(e, &cfg);
                }
                if recomputed != *events {
                    self.mismatch(
                        format!("cluster {cluster_id}"),
                        json(command),
                        json(events),
                        json(&recomputed),
                    );
                }
            }
            JournalEntry::ClusterRemoved { cluster_id } => {
                self.clusters.remove(cluster_id);
            }
            // Evidence of a diagnostic run: nothing to re-derive.
            JournalEntry::DiagnosticFlagged(_) => {}
            JournalEntry::Tenant {
                tenant_id,
                command,
                events,
            } => {
                self.stats.commands += 1;
                self.stats.events += events.len() as u64;
                let cfg = self.cfg.clone();
                let state = self
                    .tenants
                    .entry(*tenant_id)
                    .or_insert_with(|| TenantState::new(*tenant_id));
                let recomputed = state.decide(command, &cfg);
                for e in events {
                    state.evolve(e, &cfg);
                }
                if recomputed != *events {
                    self.mismatch(
                        format!("tenant {tenant_id}"),
                        json(command),
                        json(events),
                        json(&recomputed),
                    );
                }
            }
        }
    }
}

/// Event time of a lane command, when it carries one.
pub fn command_ts(cmd: &LaneCommand) -> Option<Timestamp> {
    match cmd {
        LaneCommand::Route { request, .. } => Some(request.ts),
        LaneCommand::Complete(c) => Some(c.ts),
        LaneCommand::Expire { now } => Some(*now),
        LaneCommand::RecordReport(_) => None,
        LaneCommand::ClusterUpdated { ts, .. }
        | LaneCommand::ClusterRemoved { ts, .. }
        | LaneCommand::ProviderHealth { ts, .. }
        | LaneCommand::Activate { ts, .. }
        | LaneCommand::RequestActivation { ts, .. }
        | LaneCommand::Deactivate { ts, .. } => Some(*ts),
    }
}
