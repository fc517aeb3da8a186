//! The router: all lane, cluster and tenant deciders of one process, wired together.
//!
//! It routes each input event to the decider that owns it and turns the facts one decider emits
//! into commands for the others (cluster health → its lanes, completions → cluster breaker and
//! tenant budget, provider health → the provider's lanes). Everything happens synchronously and
//! in input order, so the same inputs always give the same decisions; `zumik decide`, the gate's
//! replay and the Kafka runtime all drive this same type.
//!
//! It must not do I/O: outputs (decisions, journal, warnings) are returned in [`Output`].

use std::collections::BTreeMap;

use super::index::{HashIndex, SmallMap};
use crate::events::InlineId;
use crate::events::Name;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::events::{
    ClusterDeregisteredV1, CompletionV1, DecisionV1, InputEvent, Outcome, ProviderStatus,
    RequestV1, Timestamp,
};

use super::cluster::{ClusterCommand, ClusterEvent, ClusterState, ClusterView};
use super::config::RoutingConfig;
use super::lane::{LaneCommand, LaneEvent, LaneState};
use super::price::{ModelPrice, PriceTable};
use super::tenant::{TenantCommand, TenantEvent, TenantPolicy, TenantState, TenantView};

/// Format version of [`Router::snapshot`] bytes (first byte).
pub const SNAPSHOT_VERSION: u8 = 5;

/// One journal record. The journal is the truth (DESIGN §6): every command an actor was given,
/// with the events it produced, in order. Re-deciding the commands of one actor from its
/// creation reproduces its events — and so every decision — without any other actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum JournalEntry {
    /// An input event as the router received it (what-if replays start from these).
    Input(InputEvent),
    /// A lane came into existence with this price.
    LaneCreated {
        lane: Name,
        price: Option<ModelPrice>,
    },
    Lane {
        lane: Name,
        command: LaneCommand,
        events: Vec<LaneEvent>,
    },
    Cluster {
        cluster_id: Name,
        command: ClusterCommand,
        events: Vec<ClusterEvent>,
    },
    /// A cluster was deregistered and its state dropped.
    ClusterRemoved { cluster_id: Name },
    Tenant {
        tenant_id: Name,
        command: TenantCommand,
        events: Vec<TenantEvent>,
    },
    /// `zumik diagnose` over Kafka flagged a lane as a gate candidate (DESIGN §5). Evidence for
    /// the audit trail, not a command: replays skip it. Last variant, so the others keep their
    /// encoding.
    DiagnosticFlagged(DiagnosticFlagged),
}

/// A lane the workload diagnostic flagged: its figures over the window, in integers (shares and
/// ratios in thousandths) so the record is exact and comparable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct DiagnosticFlagged {
    pub lane: Name,
    /// Event-time window of the history diagnosed.
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    pub requests: u64,
    pub tokens: u64,
    pub request_share_permille: u64,
    pub token_share_permille: u64,
    pub tokens_per_min_p50: u64,
    pub tokens_per_min_p95: u64,
    pub tokens_per_min_peak: u64,
    pub peak_to_mean_permille: u64,
    pub cv_permille: u64,
    /// Estimated utilisation of the candidate cluster vs its break-even utilisation.
    pub utilisation_permille: u64,
    pub break_even_permille: u64,
    /// The candidate cluster: replicas × GPUs at a GPU-hour price, its usable sequences.
    pub replicas: u32,
    pub gpus_per_replica: u32,
    pub gpu_hour_micros: u64,
    pub usable_slots: u32,
    /// SHA-256 (hex) of the whole diagnosis as JSON: ties the record to the full report.
    pub diagnosis_digest: String,
}

/// Something an operator should know that is not a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Stable code: `price_missing`, `unknown_cluster`, `activation_refused`, `lane_demoted`.
    pub code: &'static str,
    pub message: String,
}

/// What applying inputs produced. Reuse one across calls and drain it.
#[derive(Debug, Default)]
pub struct Output {
    pub decisions: Vec<DecisionV1>,
    /// Filled only when `record_journal` is set (runtime and audit); off for the fast path.
    pub journal: Vec<JournalEntry>,
    pub record_journal: bool,
    pub warnings: Vec<Warning>,
}

impl Output {
    pub fn with_journal() -> Self {
        Output {
            record_journal: true,
            ..Output::default()
        }
    }

    pub fn clear(&mut self) {
        self.decisions.clear();
        self.journal.clear();
        self.warnings.clear();
    }
}

/// The state of all actors of one router, serializable for snapshots.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
pub struct RouterState {
    /// Lanes and tenants are hash maps: they are looked up on every event and never iterated
    /// into an output without sorting first.
    pub lanes: HashIndex<Name, LaneState>,
    /// A sorted vector: a fleet's clusters are tens to hundreds, found by `Name` (compared by
    /// address) on every BYOC completion, and added or removed only on registration.
    pub clusters: SmallMap<Name, ClusterState>,
    pub tenants: HashIndex<Name, TenantState>,
    /// Latest health of each managed provider, with its event time.
    pub providers: BTreeMap<Name, (ProviderStatus, Timestamp)>,
    /// Input events applied so far.
    pub applied: u64,
}

impl RouterState {
    /// Snapshot bytes: [`SNAPSHOT_VERSION`], then bincode. The maps are ordered (or encode in
    /// key order), so equal states are equal bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![SNAPSHOT_VERSION];
        // Plain data with no maps keyed by non-serializable types: encoding cannot fail.
        let body = bincode::encode_to_vec(self, bincode::config::standard())
            .expect("router state encodes");
        out.extend_from_slice(&body);
        out
    }

    /// The state of [`RouterState::encode`] bytes. Derived data (a lane's expiry queue) is not
    /// in the bytes: [`Router::from_state`] and the actor shells rebuild it.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let (&version, body) = bytes.split_first().ok_or(SnapshotError::Empty)?;
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version {
                found: version,
                expected: SNAPSHOT_VERSION,
            });
        }
        let (state, used) = bincode::decode_from_slice(body, bincode::config::standard())?;
        if used != body.len() {
            return Err(SnapshotError::Trailing {
                bytes: body.len() - used,
            });
        }
        Ok(state)
    }
}

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is empty")]
    Empty,
    #[error("snapshot format version {found}, this build reads {expected}")]
    Version { found: u8, expected: u8 },
    #[error("snapshot has {bytes} bytes after the state")]
    Trailing { bytes: usize },
    #[error("snapshot is corrupt: {0}")]
    Decode(#[from] bincode::error::DecodeError),
}

/// All deciders of one process.
pub struct Router {
    cfg: Arc<RoutingConfig>,
    prices: Arc<PriceTable>,
    default_policy: Arc<TenantPolicy>,
    state: RouterState,
    /// Scratch buffers for events (not state).
    lane_events: Vec<LaneEvent>,
    cluster_events: Vec<ClusterEvent>,
    tenant_events: Vec<TenantEvent>,
}

impl Router {
    /// A router with empty state. `cfg` must have passed `validate()`.
    pub fn new(cfg: Arc<RoutingConfig>, prices: Arc<PriceTable>) -> Self {
        Router {
            cfg,
            prices,
            default_policy: Arc::new(TenantPolicy::permissive()),
            state: RouterState::default(),
            lane_events: Vec::with_capacity(4),
            cluster_events: Vec::with_capacity(4),
            tenant_events: Vec::with_capacity(4),
        }
    }

    pub fn state(&self) -> &RouterState {
        &self.state
    }

    pub fn config(&self) -> &RoutingConfig {
        &self.cfg
    }

    /// The routing config and price table this router was made with (to restore another).
    pub fn parts(&self) -> (Arc<RoutingConfig>, Arc<PriceTable>) {
        (self.cfg.clone(), self.prices.clone())
    }

    /// Serializes the whole state: a version byte, then bincode.
    pub fn snapshot(&self) -> Vec<u8> {
        self.state.encode()
    }

    /// A router continuing from [`Router::snapshot`] bytes.
    pub fn restore(
        cfg: Arc<RoutingConfig>,
        prices: Arc<PriceTable>,
        bytes: &[u8],
    ) -> Result<Self, SnapshotError> {
        Ok(Router::from_state(cfg, prices, RouterState::decode(bytes)?))
    }

    /// A router continuing from a state (as restored, or gathered from actors).
    pub fn from_state(
        cfg: Arc<RoutingConfig>,
        prices: Arc<PriceTable>,
        state: RouterState,
    ) -> Self {
        let mut r = Router::new(cfg, prices);
        r.state = state;
        for lane in r.state.lanes.values_mut() {
            lane.rebuild_expiry();
        }
        r
    }

    /// Applies one validated input event.
    pub fn apply(&mut self, event: InputEvent, out: &mut Output) {
        self.state.applied += 1;
        if out.record_journal {
            out.journal.push(JournalEntry::Input(event.clone()));
        }
        match event {
            InputEvent::Request(r) => self.on_request(r, out),
            InputEvent::Completion(c) => self.on_completion(c, out),
            InputEvent::ClusterRegistered(e) => self.on_register(e, out),
            InputEvent::ClusterDeregistered(e) => self.on_deregister(e, out),
            InputEvent::ClusterHeartbeat(hb) => {
                let id = hb.cluster_id.clone();
                self.cluster_cmd(id.as_str(), ClusterCommand::Heartbeat(Box::new(hb)), out);
            }
            InputEvent::ProviderHealth(p) => {
                let provider = Name::new(&p.provider);
                self.state.providers.insert(provider, (p.status, p.ts));
                let mut lanes: Vec<Name> = self
                    .state
                    .lanes
                    .values()
                    .filter(|l| l.provider == provider)
                    .map(|l| l.lane)
                    .collect();
                // Hash order must not decide the order of the journal: lanes go in id order.
                lanes.sort_unstable();
                for lane in lanes {
                    self.lane_cmd(
                        &lane,
                        LaneCommand::ProviderHealth {
                            status: p.status,
                            ts: p.ts,
                        },
                        out,
                    );
                }
            }
            InputEvent::TenantPolicy(p) => {
                let id = Name::new(&p.tenant_id);
                self.tenant_cmd(&id, TenantCommand::SetPolicy(Box::new(p)), out);
            }
            InputEvent::LaneActivated(a) => {
                let lane = self.lane_key(&a.lane, out);
                self.lane_cmd(
                    &lane,
                    LaneCommand::Activate {
                        report_digest: a.report_digest,
                        ts: a.ts,
                    },
                    out,
                );
            }
            InputEvent::LaneDeactivated(a) => {
                let lane = self.lane_key(&a.lane, out);
                self.lane_cmd(
                    &lane,
                    LaneCommand::Deactivate {
                        reason: a.reason,
                        ts: a.ts,
                    },
                    out,
                );
            }
            InputEvent::LaneActivate(a) => {
                let lane = self.lane_key(&a.lane, out);
                let cmd = LaneCommand::RequestActivation {
                    report_digest: a.report_digest,
                    ts: a.ts,
                };
                self.lane_cmd(&lane, cmd, out);
            }
            InputEvent::GateReport(r) => {
                let lane = self.lane_key(&r.lane, out);
                self.lane_cmd(&lane, LaneCommand::RecordReport(r), out);
            }
            InputEvent::Usage(u) => {
                let (id, cmd) = unit_usage(u);
                self.tenant_cmd(&id, cmd, out);
            }
            InputEvent::BreakerTripped(b) => {
                let (id, cmd) = unit_breaker_trip(b);
                self.cluster_cmd(id.as_str(), cmd, out);
            }
        }
    }

    /// The per-request path, with a single lane lookup when the lane exists: expiry of the
    /// reservations whose deadline the request's event time reached, then its decision.
    fn on_request(&mut self, r: RequestV1, out: &mut Output) {
        let tenant = match self.state.tenants.get(r.tenant_id.as_str()) {
            Some(t) => t.view(r.ts, &self.default_policy),
            None => default_tenant_view(&r.tenant_id, &self.default_policy),
        };
        let follow_ups = match self.state.lanes.get_mut(r.model.as_str()) {
            Some(state) => lane_route_step(state, &self.cfg, &mut self.lane_events, r, tenant, out),
            None => {
                let key = self.lane_key(&r.model, out);
                let cmd = LaneCommand::Route { request: r, tenant };
                return self.lane_cmd(&key, cmd, out);
            }
        };
        self.follow_up(follow_ups, out);
    }

    /// A completion, on the lane its request names.
    fn on_completion(&mut self, c: CompletionV1, out: &mut Output) {
        let follow_ups = match self.state.lanes.get_mut(c.model.as_str()) {
            Some(state) => lane_complete_step(state, c, out),
            None => {
                let key = self.lane_key(&c.model, out);
                return self.lane_cmd(&key, LaneCommand::Complete(c), out);
            }
        };
        self.follow_up(follow_ups, out);
    }

    fn on_register(&mut self, e: crate::events::ClusterRegisteredV1, out: &mut Output) {
        let id = Name::new(&e.cluster_id);
        let old_lanes = match self.state.clusters.get(&id) {
            Some(c) => c.lanes.clone(),
            None => {
                self.state.clusters.insert(id, ClusterState::registered(&e));
                vec![]
            }
        };
        let ts = e.ts;
        self.cluster_cmd(&id, ClusterCommand::Register(Box::new(e)), out);
        let new_lanes = self.state.clusters[&id].lanes.clone();
        for lane in old_lanes.iter().filter(|l| !new_lanes.contains(l)) {
            self.lane_cmd(
                lane,
                LaneCommand::ClusterRemoved { cluster_id: id, ts },
                out,
            );
        }
    }

    fn on_deregister(&mut self, e: ClusterDeregisteredV1, out: &mut Output) {
        let Some(c) = self.state.clusters.remove(e.cluster_id.as_str()) else {
            out.warnings.push(Warning {
                code: "unknown_cluster",
                message: format!("deregistration of unknown cluster {}", e.cluster_id),
            });
            return;
        };
        if out.record_journal {
            out.journal.push(JournalEntry::ClusterRemoved {
                cluster_id: c.cluster_id,
            });
        }
        for lane in &c.lanes {
            self.lane_cmd(
                lane,
                LaneCommand::ClusterRemoved {
                    cluster_id: c.cluster_id,
                    ts: e.ts,
                },
                out,
            );
        }
    }

    /// The lane's key, creating the lane (priced, with the clusters and provider status that
    /// already concern it) on first sight.
    fn lane_key(&mut self, lane: &str, out: &mut Output) -> Name {
        if let Some((k, _)) = self.state.lanes.get_key_value(lane) {
            return *k;
        }
        let state = create_lane(&self.prices, lane, out);
        let key = state.lane;
        let provider = state.provider;
        self.state.lanes.insert(key, state);
        if let Some(&(status, ts)) = self.state.providers.get(&provider) {
            if status == ProviderStatus::Down {
                self.lane_cmd(&key, LaneCommand::ProviderHealth { status, ts }, out);
            }
        }
        let views: Vec<_> = self
            .state
            .clusters
            .values()
            .filter_map(|c| c.catch_up(lane, &self.cfg))
            .collect();
        for (view, ts) in views {
            self.lane_cmd(&key, LaneCommand::ClusterUpdated { view, ts }, out);
        }
        key
    }

    fn lane_cmd(&mut self, lane: &Name, cmd: LaneCommand, out: &mut Output) {
        if !self.state.lanes.contains_key(lane) {
            self.lane_key(lane, out);
        }
        // Present: `lane_key` just created it if it was missing.
        let state = self.state.lanes.get_mut(lane).expect("lane exists");
        let follow_ups = lane_step(state, &self.cfg, &mut self.lane_events, cmd, out);
        self.follow_up(follow_ups, out);
    }

    /// Commands a lane's events give other deciders (at most one of each per command).
    fn follow_up(&mut self, (to_cluster, to_tenant): FollowUps, out: &mut Output) {
        if let Some((id, cmd)) = to_cluster {
            self.cluster_cmd(&id, cmd, out);
        }
        if let Some((id, cmd)) = to_tenant {
            self.tenant_cmd(&id, cmd, out);
        }
    }

    /// `id` is a `str` (an input), or a `Name` (a lane's follow-up), which the map finds by
    /// address without comparing strings.
    fn cluster_cmd<Q>(&mut self, id: &Q, cmd: ClusterCommand, out: &mut Output)
    where
        Name: std::borrow::Borrow<Q>,
        Q: Eq + std::fmt::Display + ?Sized,
    {
        let Some(state) = self.state.clusters.get_mut(id) else {
            out.warnings.push(Warning {
                code: "unknown_cluster",
                message: format!("event for unregistered cluster {id} ignored"),
            });
            return;
        };
        let fan_out = cluster_step(state, &self.cfg, &mut self.cluster_events, cmd, out);
        for (lane, view) in fan_out.views {
            let ts = fan_out.ts;
            self.lane_cmd(&lane, LaneCommand::ClusterUpdated { view, ts }, out);
        }
    }

    fn tenant_cmd(&mut self, id: &str, cmd: TenantCommand, out: &mut Output) {
        let t = match self.state.tenants.get_mut(id) {
            Some(t) => t,
            None => {
                let id = Name::new(id);
                self.state
                    .tenants
                    .entry(id)
                    .or_insert_with(|| TenantState::new(id))
            }
        };
        tenant_step(t, &self.cfg, &mut self.tenant_events, cmd, out);
    }
}

// The steps below are each actor's share of the wiring: one command on one actor, its events
// applied, its journal record and outputs written to `out`, and what it gives other actors. The
// inline `Router` and the actix shells (`crate::actors`) both run exactly these, so the two
// engines cannot drift apart; only the order in which they are driven is the router's.

/// Another unit's usage record as the command for its tenant (the id is interned only if the
/// tenant is new).
pub fn unit_usage(u: crate::events::UsageV1) -> (String, TenantCommand) {
    let cmd = TenantCommand::RecordUnitUsage {
        unit: u.unit,
        requests: u.requests,
        cost_micros: u.cost_micros,
        unit_spent_micros: u.unit_spent_micros,
        ts: u.ts,
    };
    (u.tenant_id, cmd)
}

/// Another unit's breaker trip as the command for its cluster (a trip for an unknown cluster is
/// only warned about: its id is not interned).
pub fn unit_breaker_trip(b: crate::events::BreakerTrippedV1) -> (String, ClusterCommand) {
    let cmd = ClusterCommand::BreakerTripped {
        unit: b.unit,
        failures: b.failures,
        samples: b.samples,
        ts: b.ts,
    };
    (b.cluster_id, cmd)
}

/// A completion's outcome for its cluster's breaker and its cost for its tenant's budget.
pub type FollowUps = (
    Option<(Name, ClusterCommand)>,
    Option<(InlineId, TenantCommand)>,
);

/// The view a request gets of a tenant the router has no state for: the default policy.
pub fn default_tenant_view(tenant_id: &str, default: &Arc<TenantPolicy>) -> TenantView {
    TenantView {
        tenant_id: Name::from(tenant_id),
        known: false,
        version: 0,
        policy: default.clone(),
        paused: false,
    }
}

/// A lane on first sight, priced from the table: a `price_missing` warning when the model has
/// no price, and the `LaneCreated` journal record. The caller then gives it the provider status
/// and cluster views that already concern it ([`ClusterState::catch_up`]).
pub fn create_lane(prices: &PriceTable, lane: &str, out: &mut Output) -> LaneState {
    let price = prices.resolve(lane);
    if price.is_none() {
        out.warnings.push(Warning {
            code: "price_missing",
            message: format!(
                "lane {lane}: model has no price in the price table; cost estimates are 0 \
                 (map it under [pricing.models] in the config)"
            ),
        });
    }
    let state = LaneState::new(lane, price.map(|m| m.price));
    if out.record_journal {
        out.journal.push(JournalEntry::LaneCreated {
            lane: state.lane,
            price: state.price,
        });
    }
    state
}

/// A request or completion on its lane (the per-request path): [`lane_route_step`] or
/// [`lane_complete_step`].
pub fn lane_hot_step(
    state: &mut LaneState,
    cfg: &RoutingConfig,
    events: &mut Vec<LaneEvent>,
    cmd: LaneCommand,
    out: &mut Output,
) -> FollowUps {
    match cmd {
        LaneCommand::Route { request, tenant } => {
            lane_route_step(state, cfg, events, request, tenant, out)
        }
        LaneCommand::Complete(c) => lane_complete_step(state, c, out),
        other => lane_step(state, cfg, events, other, out),
    }
}

/// A request on its lane: first expires the reservations whose deadline its event time has
/// reached (no follow-ups: released capacity stays within the lane), then decides it. Does
/// what [`lane_step`] does with the `Route` command, journal record included, but routes and
/// applies the decision in one step ([`LaneState::route_now`]), so the decision is copied once,
/// into `out`, instead of through the event buffer.
pub fn lane_route_step(
    state: &mut LaneState,
    cfg: &RoutingConfig,
    events: &mut Vec<LaneEvent>,
    request: RequestV1,
    tenant: TenantView,
    out: &mut Output,
) -> FollowUps {
    let now = request.ts;
    if state.expiry_due(now.millis()) {
        lane_step(state, cfg, events, LaneCommand::Expire { now }, out);
    }
    let Some((reservation, fallback)) = state.route_now(&request, &tenant, cfg, &mut out.decisions)
    else {
        let cmd = LaneCommand::Route { request, tenant };
        return lane_step(state, cfg, events, cmd, out);
    };
    if out.record_journal {
        let decision = out.decisions.last().expect("route_now appended it").clone();
        let decided = LaneEvent::Decided {
            decision,
            reservation,
        };
        out.journal.push(JournalEntry::Lane {
            lane: state.lane,
            command: LaneCommand::Route { request, tenant },
            events: std::iter::once(decided)
                .chain(fallback.map(|f| *f))
                .collect(),
        });
    }
    // A decision and its audit record give no other decider a command.
    (None, None)
}

/// A completion on its lane: [`lane_step`] with the `Complete` command, whose one event needs
/// no buffer.
pub fn lane_complete_step(state: &mut LaneState, c: CompletionV1, out: &mut Output) -> FollowUps {
    let event = state.complete(&c);
    state.evolve(&event);
    if out.record_journal {
        out.journal.push(JournalEntry::Lane {
            lane: state.lane,
            command: LaneCommand::Complete(c),
            events: vec![event.clone()],
        });
    }
    let mut follow_ups = (None, None);
    completion_follow_ups(event, &mut follow_ups);
    follow_ups
}

/// What a cluster command gives the cluster's lanes: each lane's new view, with the event time
/// of the command (empty when the view did not change).
#[derive(Debug, Default)]
pub struct ClusterFanOut {
    pub views: Vec<(Name, ClusterView)>,
    pub ts: Timestamp,
}

/// Decides and applies one command on a cluster, with its journal record.
pub fn cluster_step(
    state: &mut ClusterState,
    cfg: &RoutingConfig,
    events: &mut Vec<ClusterEvent>,
    cmd: ClusterCommand,
    out: &mut Output,
) -> ClusterFanOut {
    events.clear();
    state.decide_into(&cmd, cfg, events);
    if events.is_empty() {
        return ClusterFanOut::default();
    }
    for event in events.iter() {
        state.evolve(event, cfg);
    }
    // What lanes see of a cluster (its view) changes only with a registration, a heartbeat
    // or a health change; a plain completion outcome leaves it as it was.
    let changed = events
        .iter()
        .any(|e| !matches!(e, ClusterEvent::OutcomeRecorded { .. }));
    let views = if changed {
        state
            .lanes
            .iter()
            .map(|l| (*l, state.view(l, cfg)))
            .collect()
    } else {
        Vec::new()
    };
    let ts = match &cmd {
        ClusterCommand::Register(e) => e.ts,
        ClusterCommand::Heartbeat(h) => h.ts,
        ClusterCommand::Outcome { ts, .. } | ClusterCommand::BreakerTripped { ts, .. } => *ts,
    };
    if out.record_journal {
        out.journal.push(JournalEntry::Cluster {
            cluster_id: state.cluster_id,
            command: cmd,
            events: events.clone(),
        });
    }
    ClusterFanOut { views, ts }
}

/// Decides and applies one command on a tenant, with its journal record.
pub fn tenant_step(
    state: &mut TenantState,
    cfg: &RoutingConfig,
    events: &mut Vec<TenantEvent>,
    cmd: TenantCommand,
    out: &mut Output,
) {
    events.clear();
    state.decide_into(&cmd, cfg, events);
    for event in events.iter() {
        state.evolve(event, cfg);
    }
    if out.record_journal {
        out.journal.push(JournalEntry::Tenant {
            tenant_id: state.tenant_id,
            command: cmd,
            events: events.clone(),
        });
    }
}

/// Decides and applies one command on a lane: decisions and warnings to `out`, the journal
/// record when recording, and the commands it gives other deciders. `events` is a scratch buffer.
pub fn lane_step(
    state: &mut LaneState,
    cfg: &RoutingConfig,
    events: &mut Vec<LaneEvent>,
    cmd: LaneCommand,
    out: &mut Output,
) -> FollowUps {
    events.clear();
    state.decide_into(&cmd, cfg, events);
    for event in events.iter() {
        state.evolve(event);
    }
    let lane = &state.lane;
    if out.record_journal {
        out.journal.push(JournalEntry::Lane {
            lane: *lane,
            command: cmd,
            events: events.clone(),
        });
    }
    let mut follow_ups = (None, None);
    // Matched straight on `next()`: binding each event to a variable first copied every
    // event once more (a decision event is over 200 bytes, and this runs for every command).
    let mut drained = events.drain(..);
    loop {
        match drained.next() {
            None => break,
            Some(LaneEvent::Decided { decision, .. }) => out.decisions.push(decision),
            Some(LaneEvent::ActivationRefused {
                report_digest,
                reason,
                ..
            }) => out.warnings.push(Warning {
                code: "activation_refused",
                message: format!(
                    "lane {lane}: activation with report {report_digest} refused: {reason}"
                ),
            }),
            Some(LaneEvent::Deactivated {
                reason,
                demoted: true,
                ..
            }) => out.warnings.push(Warning {
                code: "lane_demoted",
                message: format!("lane {lane}: {reason}"),
            }),
            Some(completed @ LaneEvent::Completed { .. }) => {
                completion_follow_ups(completed, &mut follow_ups)
            }
            Some(_) => {}
        }
    }
    follow_ups
}

/// What a `Completed` event gives the cluster it released (its outcome) and the tenant it
/// bills (its usage).
fn completion_follow_ups(event: LaneEvent, (to_cluster, to_tenant): &mut FollowUps) {
    let LaneEvent::Completed {
        request_id,
        tenant_id,
        cluster,
        outcome,
        billable_micros,
        ts,
        ..
    } = event
    else {
        return;
    };
    if let Some(c) = cluster {
        let failed = matches!(outcome, Outcome::Failed | Outcome::Expired);
        *to_cluster = Some((c, ClusterCommand::Outcome { failed, ts }));
    }
    if billable_micros > 0 {
        *to_tenant = Some((
            tenant_id,
            TenantCommand::RecordUsage {
                request_id,
                cost_micros: billable_micros,
                ts,
            },
        ));
    }
}
