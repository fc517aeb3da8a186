//! Lane decider: the per-request routing decision of one model path (DESIGN §4).
//!
//! Owns the lane's activation, its view of the clusters that serve it, the health of its
//! provider, the capacity reservations of its requests and its decision sequence. Everything a
//! decision depends on arrives as a [`LaneCommand`] (tenant facts ride inside the route command),
//! so folding one lane's commands reproduces its decisions without any other actor.
//!
//! Must not read clocks, other actors' state or `HashMap` order: `decide` is a pure function of
//! `(&LaneState, &LaneCommand, &RoutingConfig)`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::{
    CompletionV1, Considered, DataBoundary, DecisionV1, GateReportV1, Mode, ModelPath, Name,
    Outcome, Profile, ProfileClass, ProviderStatus, Reason, RequestV1, Stack, Timestamp, Verdict,
};

use super::cluster::{ClusterView, Health};
use super::config::RoutingConfig;
use super::expiry::ExpiryQueue;
use super::index::{HashIndex, SmallMap};
use super::price::ModelPrice;
use super::tenant::{ProfileSet, TenantView};
use crate::events::InlineId;

/// A cluster as one lane sees it: the cluster's view plus this lane's reservations on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct LaneCluster {
    pub view: ClusterView,
    pub reserved: u32,
}

/// One in-flight BYOC request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct Reservation {
    pub cluster: Name,
    /// Shown in lane views (`zumik replay --at … --lane`); routing no longer reads it (a
    /// completion names its own tenant).
    pub tenant: Name,
    pub expires_at: i64,
    /// `seq` of the decision that made it (unique in the lane; orders equal deadlines).
    pub seq: u64,
}

/// In-flight requests by id. A hash map (lookups by id are the hot path) keyed by inline ids,
/// so a lookup reads only the table; its iteration order never reaches a decision, and it is
/// written sorted wherever it is shown.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
#[serde(transparent)]
pub struct Reservations(HashIndex<InlineId, Reservation>);

impl Reservations {
    pub fn get(&self, id: &str) -> Option<&Reservation> {
        self.0.get(id.as_bytes())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.contains_key(id.as_bytes())
    }

    pub fn insert(&mut self, id: InlineId, r: Reservation) {
        self.0.insert(id, r);
    }

    pub fn remove(&mut self, id: &str) -> Option<Reservation> {
        self.0.remove(id.as_bytes())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Hash order: sort before it reaches an output.
    pub fn iter(&self) -> impl Iterator<Item = (&InlineId, &Reservation)> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Reservations {
    type Item = (&'a InlineId, &'a Reservation);
    type IntoIter = std::collections::hash_map::Iter<'a, InlineId, Reservation>;
    /// Hash order: sort before it reaches an output.
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl super::expiry::Live for Reservations {
    fn live(&self, id: &InlineId, seq: u64) -> bool {
        self.0.get(id).is_some_and(|r| r.seq == seq)
    }
}

/// What a lane keeps of a stored gate report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct StoredReport {
    pub digest: String,
    pub passed: bool,
    /// The digest recomputed from the content equals the one the report claims.
    pub digest_ok: bool,
    /// End of the replayed window: the report's age reference.
    pub window_end: i64,
    /// `results.break_even_utilisation` of the report, in thousandths.
    pub break_even_permille: Option<u64>,
}

/// Gate reports a lane keeps (newest windows win).
pub const MAX_STORED_REPORTS: usize = 16;

/// Accumulators of the current demotion window of an active lane.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct UsageWindow {
    pub start: i64,
    /// Event time up to which the integrals below are accumulated.
    pub last: i64,
    /// ∫ reserved slots dt (slot·ms).
    pub busy_slot_ms: u64,
    /// ∫ lane capacity dt (slot·ms).
    pub capacity_slot_ms: u64,
    pub byoc_completions: u32,
    pub byoc_failures: u32,
}

/// State of one lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct LaneState {
    pub lane: Name,
    pub provider: Name,
    /// `openrouter/<provider>/<model>`: the emergency target.
    pub openrouter_target: Name,
    /// Managed price of the lane's model, if the price table knows it.
    pub price: Option<ModelPrice>,
    pub active: bool,
    pub report_digest: Option<String>,
    /// Break-even utilisation of the report that activated the lane (thousandths).
    pub break_even_permille: Option<u64>,
    pub reports: BTreeMap<String, StoredReport>,
    pub window: UsageWindow,
    /// `routing.stale_after_ms` when the lane was activated (utilisation ignores silent clusters).
    pub stale_after_ms: i64,
    pub clusters: SmallMap<Name, LaneCluster>,
    pub provider_down: bool,
    /// In-flight BYOC requests by `request_id`.
    pub reservations: Reservations,
    /// The reservations' deadlines, earliest first: derived from `reservations` (rebuilt by
    /// [`LaneState::rebuild_expiry`] after a restore, left out of snapshots).
    #[serde(skip)]
    pub expiry: ExpiryQueue,
    /// Decisions made so far; the next decision gets `seq + 1`.
    pub seq: u64,
    /// Completed output tokens (sum, count), for the expected output of cost estimates.
    pub output_tokens_sum: u64,
    pub output_tokens_count: u64,
}

/// Inputs of the lane decider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum LaneCommand {
    Route {
        request: RequestV1,
        tenant: TenantView,
    },
    Complete(CompletionV1),
    /// Event time reached `now`: expire reservations whose deadline passed.
    Expire {
        now: Timestamp,
    },
    /// The cluster's view changed at event time `ts` (registration, heartbeat, breaker).
    ClusterUpdated {
        view: ClusterView,
        ts: Timestamp,
    },
    ClusterRemoved {
        cluster_id: Name,
        ts: Timestamp,
    },
    ProviderHealth {
        status: ProviderStatus,
        ts: Timestamp,
    },
    /// A trusted activation fact (`zumik.lane_activated.v1`, e.g. the broker's own record).
    Activate {
        report_digest: String,
        ts: Timestamp,
    },
    /// The gated activation command (`zumik.lane_activate.v1`): checked against stored reports.
    RequestActivation {
        report_digest: String,
        ts: Timestamp,
    },
    RecordReport(Box<GateReportV1>),
    Deactivate {
        reason: String,
        ts: Timestamp,
    },
}

/// Facts the lane decider emits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum LaneEvent {
    /// A decision; `reservation` is `(cluster, expires_at)` for BYOC.
    Decided {
        decision: DecisionV1,
        reservation: Option<(Name, i64)>,
    },
    /// Audit record of an OpenRouter emergency route (DESIGN §4.7).
    EmergencyFallback {
        request_id: InlineId,
        tenant_id: Name,
        provider: Name,
        ts: Timestamp,
    },
    /// A routed request finished. `cluster` is set when it released a BYOC reservation;
    /// `billable_micros` is what the tenant's budget is charged.
    Completed {
        request_id: InlineId,
        /// Inline: a managed completion has no reservation holding the tenant's name, and this
        /// saves interning one per completion.
        tenant_id: InlineId,
        cluster: Option<Name>,
        profile: Profile,
        outcome: Outcome,
        output_tokens: u32,
        billable_micros: u64,
        ts: Timestamp,
    },
    /// A reservation outlived its deadline without a completion.
    Expired {
        request_id: InlineId,
        cluster: Name,
        ts: Timestamp,
    },
    ClusterUpdated {
        view: ClusterView,
        ts: Timestamp,
    },
    ClusterRemoved {
        cluster_id: Name,
        ts: Timestamp,
    },
    ProviderHealthChanged {
        down: bool,
        ts: Timestamp,
    },
    Activated {
        report_digest: String,
        break_even_permille: Option<u64>,
        stale_after_ms: i64,
        ts: Timestamp,
    },
    /// A `zumik.lane_activate.v1` that was refused, and why.
    ActivationRefused {
        report_digest: String,
        reason: String,
        ts: Timestamp,
    },
    ReportStored(StoredReport),
    /// A demotion window of an active lane ended (utilisation in thousandths of capacity).
    WindowClosed {
        utilisation_permille: u64,
        completions: u32,
        failures: u32,
        ts: Timestamp,
    },
    /// Deactivated by command or demoted (`demoted: true`) by the lane itself.
    Deactivated {
        reason: String,
        demoted: bool,
        ts: Timestamp,
    },
}

impl LaneEvent {
    /// Event time the event happened at, when it carries one.
    pub fn ts(&self) -> Option<Timestamp> {
        match self {
            LaneEvent::Decided { decision, .. } => Some(decision.decided_at),
            LaneEvent::EmergencyFallback { ts, .. }
            | LaneEvent::Completed { ts, .. }
            | LaneEvent::Expired { ts, .. }
            | LaneEvent::ClusterRemoved { ts, .. }
            | LaneEvent::ClusterUpdated { ts, .. }
            | LaneEvent::ProviderHealthChanged { ts, .. }
            | LaneEvent::Activated { ts, .. }
            | LaneEvent::ActivationRefused { ts, .. }
            | LaneEvent::WindowClosed { ts, .. }
            | LaneEvent::Deactivated { ts, .. } => Some(*ts),
            LaneEvent::ReportStored(_) => None,
        }
    }
}

/// What routing one request decided: the parts of its `Decided` event and, for an OpenRouter
/// emergency route, the audit record that follows it.
#[derive(Debug)]
struct Routed {
    decision: DecisionV1,
    /// `(cluster, expires_at)` of a BYOC decision.
    reservation: Option<(Name, i64)>,
    /// Boxed: it is rare, and a `Routed` is moved on every request.
    fallback: Option<Box<LaneEvent>>,
}

/// What [`LaneState::route_now`] returns besides the decision it appends: the reservation and
/// the emergency-fallback record that follows it.
pub type RoutedRest = (Option<(Name, i64)>, Option<Box<LaneEvent>>);

impl Routed {
    fn unreserved(decision: DecisionV1, fallback: Option<Box<LaneEvent>>) -> Self {
        Routed {
            decision,
            reservation: None,
            fallback,
        }
    }

    /// The lane events this is, in journal order.
    fn into_events(self) -> impl Iterator<Item = LaneEvent> {
        let decided = LaneEvent::Decided {
            decision: self.decision,
            reservation: self.reservation,
        };
        std::iter::once(decided).chain(self.fallback.map(|f| *f))
    }
}

/// Outcome of evaluating the BYOC step.
enum Byoc {
    Chosen { cluster: Name, stack: Stack },
    NotServed(Reason),
}

impl LaneState {
    /// A new lane (not active, no clusters, provider assumed up).
    pub fn new(lane: &str, price: Option<ModelPrice>) -> Self {
        let (provider, model) =
            ModelPath::parse(lane).map_or(("", lane), |p| (p.provider, p.model));
        LaneState {
            lane: Name::from(lane),
            provider: Name::from(provider),
            openrouter_target: Name::from(format!("openrouter/{provider}/{model}")),
            price,
            active: false,
            report_digest: None,
            break_even_permille: None,
            reports: BTreeMap::new(),
            window: UsageWindow::default(),
            stale_after_ms: i64::MAX,
            clusters: SmallMap::new(),
            provider_down: false,
            reservations: Reservations::default(),
            expiry: ExpiryQueue::default(),
            seq: 0,
            output_tokens_sum: 0,
            output_tokens_count: 0,
        }
    }

    /// Whether a reservation's deadline is at or before `now`: the shell then sends `Expire`.
    pub fn expiry_due(&mut self, now: i64) -> bool {
        self.expiry.due(now, &self.reservations)
    }

    /// Rebuilds the deadline index from the reservations (after decoding a snapshot).
    pub fn rebuild_expiry(&mut self) {
        self.expiry = ExpiryQueue::from_entries(self.reservations.iter().map(|(id, r)| {
            super::expiry::Entry {
                at: r.expires_at,
                seq: r.seq,
                id: id.clone(),
            }
        }));
    }

    /// Held reservations whose deadline is before `bound`, as `(deadline, seq, id)`, in hash
    /// order (sort before output).
    fn due_before(&self, bound: i64) -> Vec<(i64, u64, &InlineId)> {
        use super::expiry::Live;
        let mut due = Vec::new();
        self.expiry.for_each_before(bound, |e| {
            if self.reservations.live(&e.id, e.seq) {
                due.push((e.at, e.seq, &e.id));
            }
        });
        due
    }

    pub fn decide(&self, cmd: &LaneCommand, cfg: &RoutingConfig) -> Vec<LaneEvent> {
        let mut out = Vec::new();
        self.decide_into(cmd, cfg, &mut out);
        out
    }

    /// [`LaneState::decide`] appending to a caller's buffer (the hot path reuses one).
    pub fn decide_into(&self, cmd: &LaneCommand, cfg: &RoutingConfig, out: &mut Vec<LaneEvent>) {
        match cmd {
            LaneCommand::Route { request, tenant } => match self.close_window(request.ts, cfg) {
                None => out.extend(self.route(request, tenant, cfg).into_events()),
                Some(closing) => {
                    // Rare (once per window): apply the window's verdict to a copy, then route
                    // on it, so a demotion already governs this request.
                    let mut next = self.clone();
                    for e in &closing {
                        next.evolve(e);
                    }
                    out.extend(closing);
                    out.extend(next.route(request, tenant, cfg).into_events());
                }
            },
            LaneCommand::Complete(c) => out.push(self.complete(c)),
            other => out.extend(self.decide_rare(other, cfg)),
        }
    }

    fn decide_rare(&self, cmd: &LaneCommand, cfg: &RoutingConfig) -> Vec<LaneEvent> {
        match cmd {
            LaneCommand::Route { .. } | LaneCommand::Complete(_) => {
                unreachable!("handled by decide_into")
            }
            LaneCommand::Expire { now } => {
                let mut due = self.due_before(now.millis().saturating_add(1));
                // Heap order must not reach the journal: earliest deadline first, then seq.
                due.sort_unstable();
                due.into_iter()
                    .filter_map(|(_, _, id)| {
                        let r = self.reservations.get(id)?;
                        Some(LaneEvent::Expired {
                            request_id: id.clone(),
                            cluster: r.cluster,
                            ts: *now,
                        })
                    })
                    .collect()
            }
            LaneCommand::ClusterUpdated { view, ts } => vec![LaneEvent::ClusterUpdated {
                view: view.clone(),
                ts: *ts,
            }],
            LaneCommand::ClusterRemoved { cluster_id, ts } => {
                if self.clusters.contains_key(cluster_id) {
                    vec![LaneEvent::ClusterRemoved {
                        cluster_id: *cluster_id,
                        ts: *ts,
                    }]
                } else {
                    vec![]
                }
            }
            LaneCommand::ProviderHealth { status, ts } => {
                let down = *status == ProviderStatus::Down;
                if down != self.provider_down {
                    vec![LaneEvent::ProviderHealthChanged { down, ts: *ts }]
                } else {
                    vec![]
                }
            }
            LaneCommand::Activate { report_digest, ts } => vec![LaneEvent::Activated {
                report_digest: report_digest.clone(),
                break_even_permille: self
                    .reports
                    .get(report_digest)
                    .and_then(|r| r.break_even_permille),
                stale_after_ms: cfg.stale_after_ms,
                ts: *ts,
            }],
            LaneCommand::RequestActivation { report_digest, ts } => {
                vec![self.check_activation(report_digest, *ts, cfg)]
            }
            LaneCommand::RecordReport(report) => vec![LaneEvent::ReportStored(StoredReport {
                digest: report.digest.clone(),
                passed: report.passed,
                digest_ok: report.digest_verifies(),
                window_end: report.window.end.millis(),
                break_even_permille: report
                    .results
                    .get("break_even_utilisation")
                    .and_then(serde_json::Value::as_f64)
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .map(|x| super::config::permille(x.min(1.0))),
            })],
            LaneCommand::Deactivate { reason, ts } => {
                if self.active {
                    vec![LaneEvent::Deactivated {
                        reason: reason.clone(),
                        demoted: false,
                        ts: *ts,
                    }]
                } else {
                    vec![]
                }
            }
        }
    }

    /// Routes one request and applies what it decided, in one step: `decide` and `evolve` of a
    /// `Route` command without materializing its events (the per-request path). The decision is
    /// appended to `decisions` (moved once, not through an event buffer); returned are the
    /// other parts of its events: the reservation of a BYOC decision and the emergency-fallback
    /// record. `None`, with nothing appended, when the command would close the lane's demotion
    /// window first: then take `decide`/`evolve`, which handle that.
    pub fn route_now(
        &mut self,
        request: &RequestV1,
        tenant: &TenantView,
        cfg: &RoutingConfig,
        decisions: &mut Vec<DecisionV1>,
    ) -> Option<RoutedRest> {
        if self.window_closing(request.ts, cfg) {
            return None;
        }
        let Routed {
            decision,
            reservation,
            fallback,
        } = self.route(request, tenant, cfg);
        // `evolve` of the `Decided` event, then of the fallback record.
        self.advance(decision.decided_at.millis());
        self.record_decided(&decision, reservation);
        if let Some(fallback) = &fallback {
            self.evolve(fallback);
        }
        decisions.push(decision);
        Some((reservation, fallback))
    }

    /// What a `Decided` event changes (after the usage window has advanced to its time): the
    /// sequence and, for BYOC, the reservation.
    fn record_decided(&mut self, decision: &DecisionV1, reservation: Option<(Name, i64)>) {
        self.seq = decision.seq;
        if let Some((cluster, expires_at)) = reservation {
            if let Some(c) = self.clusters.get_mut(&cluster) {
                c.reserved += 1;
            }
            let id = decision.request_id.clone();
            self.expiry.push(expires_at, decision.seq, id.clone());
            let r = Reservation {
                cluster,
                tenant: decision.tenant_id,
                expires_at,
                seq: decision.seq,
            };
            self.reservations.insert(id, r);
        }
    }

    pub fn evolve(&mut self, event: &LaneEvent) {
        if let Some(ts) = event.ts() {
            self.advance(ts.millis());
        }
        match event {
            LaneEvent::Decided {
                decision,
                reservation,
            } => self.record_decided(decision, *reservation),
            LaneEvent::EmergencyFallback { .. } => {}
            LaneEvent::Completed {
                request_id,
                cluster,
                outcome,
                output_tokens,
                ..
            } => {
                if cluster.is_some() {
                    self.release(request_id);
                }
                if *outcome == Outcome::Completed {
                    self.output_tokens_sum += *output_tokens as u64;
                    self.output_tokens_count += 1;
                }
                if cluster.is_some() && self.active {
                    self.window.byoc_completions += 1;
                    if matches!(outcome, Outcome::Failed | Outcome::Expired) {
                        self.window.byoc_failures += 1;
                    }
                }
            }
            LaneEvent::Expired { request_id, .. } => self.release(request_id),
            LaneEvent::ClusterUpdated { view: v, .. } => {
                let reserved = self.clusters.get(&v.cluster_id).map_or(0, |c| c.reserved);
                self.clusters.insert(
                    v.cluster_id,
                    LaneCluster {
                        view: v.clone(),
                        reserved,
                    },
                );
            }
            LaneEvent::ClusterRemoved { cluster_id, .. } => {
                self.clusters.remove(cluster_id);
                // Requests in flight on a removed cluster no longer hold capacity anywhere.
                let gone: Vec<InlineId> = self
                    .reservations
                    .iter()
                    .filter(|(_, r)| r.cluster == *cluster_id)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in gone {
                    self.release(&id);
                }
            }
            LaneEvent::ProviderHealthChanged { down, .. } => self.provider_down = *down,
            LaneEvent::Activated {
                report_digest,
                break_even_permille,
                stale_after_ms,
                ts,
            } => {
                self.active = true;
                self.stale_after_ms = *stale_after_ms;
                self.report_digest = Some(report_digest.clone());
                self.break_even_permille = *break_even_permille;
                self.window = UsageWindow {
                    start: ts.millis(),
                    last: ts.millis(),
                    ..UsageWindow::default()
                };
            }
            LaneEvent::ActivationRefused { .. } => {}
            LaneEvent::ReportStored(r) => {
                self.reports.insert(r.digest.clone(), r.clone());
                if self.reports.len() > MAX_STORED_REPORTS {
                    // Drop the report with the oldest window (ties: smallest digest).
                    if let Some(oldest) = self
                        .reports
                        .values()
                        .min_by_key(|r| (r.window_end, r.digest.clone()))
                        .map(|r| r.digest.clone())
                    {
                        self.reports.remove(&oldest);
                    }
                }
            }
            LaneEvent::WindowClosed { ts, .. } => {
                self.window = UsageWindow {
                    start: ts.millis(),
                    last: ts.millis(),
                    ..UsageWindow::default()
                };
            }
            LaneEvent::Deactivated { .. } => self.active = false,
        }
    }

    /// Reserved slots, and capacity of the clusters that could serve at `now`: healthy with a
    /// fresh heartbeat. An outage or a silent cluster is failover, not idle GPUs.
    fn slot_totals(&self, now: i64, stale_after_ms: i64) -> (u64, u64) {
        self.clusters.values().fold((0, 0), |(r, l), c| {
            let serving = c.view.health == Health::Healthy
                && c.view
                    .last_heartbeat
                    .is_some_and(|t| now - t <= stale_after_ms);
            let cap = if serving { c.view.lane_limit as u64 } else { 0 };
            (r + c.reserved as u64, l + cap)
        })
    }

    /// Integrates reserved slots and capacity up to `now` (event time never runs backwards here).
    fn advance(&mut self, now: i64) {
        if !self.active || now <= self.window.last {
            return;
        }
        let (reserved, limit) = self.slot_totals(now, self.stale_after_ms);
        let busy = self.busy_between(reserved, self.window.last, now);
        let dt = (now - self.window.last) as u64;
        self.window.busy_slot_ms = self.window.busy_slot_ms.saturating_add(busy);
        self.window.capacity_slot_ms = self
            .window
            .capacity_slot_ms
            .saturating_add(limit.saturating_mul(dt));
        self.window.last = now;
    }

    /// ∫ reserved slots dt over `[from, to]`, where a reservation stops counting at its
    /// deadline even if its `Expired` event has not been applied yet. `reserved` is the slots
    /// reserved now (from [`LaneState::slot_totals`]).
    fn busy_between(&self, reserved: u64, from: i64, to: i64) -> u64 {
        if to <= from {
            return 0;
        }
        let full = reserved.saturating_mul((to - from) as u64);
        // Only reservations whose deadline passed before `to` overlap the interval partially.
        if self.expiry.peek().is_none_or(|t| t >= to) {
            return full;
        }
        // One lookup per due entry: held (same `seq`) on a cluster the lane still has.
        let mut unused: u64 = 0;
        self.expiry.for_each_before(to, |e| {
            let held = self
                .reservations
                .get(&e.id)
                .is_some_and(|r| r.seq == e.seq && self.clusters.contains_key(&r.cluster));
            if held {
                unused += (to - e.at.max(from)) as u64;
            }
        });
        full.saturating_sub(unused)
    }

    /// Whether a command at `now` closes the demotion window of an active lane.
    fn window_closing(&self, now: Timestamp, cfg: &RoutingConfig) -> bool {
        let g = &cfg.gate;
        self.active && g.demotion && now.millis() - self.window.start >= g.demotion_window_ms
    }

    /// When the demotion window of an active lane is over at `now`: the window's verdict, and a
    /// demotion when utilisation fell below break-even by the hysteresis margin or BYOC
    /// reliability broke its floor.
    fn close_window(&self, now: Timestamp, cfg: &RoutingConfig) -> Option<Vec<LaneEvent>> {
        let g = &cfg.gate;
        if !self.window_closing(now, cfg) {
            return None;
        }
        let dt = (now.millis() - self.window.last).max(0) as u64;
        let (reserved, limit) = self.slot_totals(now.millis(), cfg.stale_after_ms);
        let busy = self.window.busy_slot_ms.saturating_add(self.busy_between(
            reserved,
            self.window.last,
            now.millis(),
        ));
        let capacity = self
            .window
            .capacity_slot_ms
            .saturating_add(limit.saturating_mul(dt));
        let utilisation_permille = if capacity == 0 {
            0
        } else {
            (busy as u128 * 1000 / capacity as u128).min(1000) as u64
        };
        let w = &self.window;
        let mut out = vec![LaneEvent::WindowClosed {
            utilisation_permille,
            completions: w.byoc_completions,
            failures: w.byoc_failures,
            ts: now,
        }];
        let floor = self.break_even_permille.map(|be| {
            be.saturating_mul(1000 - super::config::permille(g.demotion_hysteresis)) / 1000
        });
        // No healthy capacity in the whole window says nothing about demand: that is failover.
        let reason = if let Some(floor) =
            floor.filter(|&f| capacity > 0 && utilisation_permille < f)
        {
            Some(format!(
                "demoted: BYOC utilisation {:.1}% below break-even {:.1}% less the hysteresis margin ({:.1}%)",
                utilisation_permille as f64 / 10.0,
                self.break_even_permille.unwrap_or(0) as f64 / 10.0,
                floor as f64 / 10.0
            ))
        } else if w.byoc_completions >= g.min_reliability_samples
            && ((w.byoc_completions - w.byoc_failures) as u64 * 1000)
                < super::config::permille(g.min_reliability) * w.byoc_completions as u64
        {
            Some(format!(
                "demoted: BYOC success {}/{} below the {:.1}% reliability floor",
                w.byoc_completions - w.byoc_failures,
                w.byoc_completions,
                g.min_reliability * 100.0
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            out.push(LaneEvent::Deactivated {
                reason,
                demoted: true,
                ts: now,
            });
        }
        Some(out)
    }

    /// Accepts a gated activation only for a stored, passing, untampered, fresh report.
    fn check_activation(&self, digest: &str, ts: Timestamp, cfg: &RoutingConfig) -> LaneEvent {
        let refuse = |reason: String| LaneEvent::ActivationRefused {
            report_digest: digest.to_owned(),
            reason,
            ts,
        };
        let Some(r) = self.reports.get(digest) else {
            return refuse(format!(
                "no gate report {digest} is stored for lane {}",
                self.lane
            ));
        };
        if !r.digest_ok {
            return refuse(
                "the stored report does not match its digest (altered after the gate ran)"
                    .to_owned(),
            );
        }
        if !r.passed {
            return refuse("the report did not pass the gate".to_owned());
        }
        let age = ts.millis() - r.window_end;
        if age > cfg.gate.max_report_age_ms {
            return refuse(format!(
                "the report is stale: its window ended {:.1} h before the activation, the limit is {:.1} h",
                age as f64 / 3_600_000.0,
                cfg.gate.max_report_age_ms as f64 / 3_600_000.0
            ));
        }
        LaneEvent::Activated {
            report_digest: digest.to_owned(),
            break_even_permille: r.break_even_permille,
            stale_after_ms: cfg.stale_after_ms,
            ts,
        }
    }

    fn release(&mut self, request_id: &str) {
        // The deadline stays in the expiry queue until it surfaces or the queue is compacted.
        if let Some(r) = self.reservations.remove(request_id) {
            self.expiry
                .compact_if_sparse(self.reservations.len(), &self.reservations);
            if let Some(c) = self.clusters.get_mut(&r.cluster) {
                c.reserved = c.reserved.saturating_sub(1);
            }
        }
    }

    /// Cost estimate of a request at the managed price, with the lane's observed mean output
    /// (capped by the request's `max_output_tokens`) as the expected output.
    pub fn estimate_micros(&self, r: &RequestV1) -> u64 {
        let Some(price) = &self.price else { return 0 };
        let expected_output = self
            .output_tokens_sum
            .checked_div(self.output_tokens_count)
            .map_or(r.max_output_tokens, |mean| {
                mean.min(r.max_output_tokens as u64) as u32
            });
        price.cost_micros(r.input_tokens, r.cached_input_tokens, expected_output)
    }

    /// `decide` of a `Complete` command: its one event.
    pub fn complete(&self, c: &CompletionV1) -> LaneEvent {
        let reservation = self.reservations.get(&c.request_id);
        let profile = match (c.profile, reservation) {
            (Some(p), _) => p,
            (None, Some(r)) => self
                .clusters
                .get(&r.cluster)
                .map_or(Profile::ByocDynamo, |lc| byoc_profile(lc.view.stack)),
            (None, None) => Profile::ManagedProvider,
        };
        // The platform bills managed traffic; BYOC is paid per cluster-hour, subscriptions are
        // bundled and BYOK is billed to the tenant's own key. Only completed requests are billed.
        let billable_micros = match (profile, c.outcome, &self.price) {
            (Profile::ManagedProvider, Outcome::Completed, Some(p)) => {
                p.cost_micros(c.input_tokens, c.cached_input_tokens, c.output_tokens)
            }
            _ => 0,
        };
        LaneEvent::Completed {
            request_id: c.request_id.clone(),
            tenant_id: c.tenant_id.clone(),
            cluster: reservation.map(|r| r.cluster),
            profile,
            outcome: c.outcome,
            output_tokens: c.output_tokens,
            billable_micros,
            ts: c.ts,
        }
    }

    /// Why a request cannot be routed at all, if it cannot.
    fn invalid_reason(&self, r: &RequestV1) -> Option<String> {
        if let Some(held) = self.reservations.get(&r.request_id) {
            // A resend of a request still in flight: answering twice would reserve twice.
            return Some(format!(
                "request_id {} is already in flight on {}",
                r.request_id, held.cluster
            ));
        }
        if r.cached_input_tokens > r.input_tokens {
            return Some(format!(
                "cached_input_tokens ({}) exceeds input_tokens ({})",
                r.cached_input_tokens, r.input_tokens
            ));
        }
        if r.allowed_profiles.as_ref().is_some_and(|p| p.is_empty()) {
            return Some("allowed_profiles is empty: nothing may serve the request".to_owned());
        }
        if let Some(p) = &self.price {
            if let Some(max) = p.max_input_tokens.filter(|&m| r.input_tokens > m) {
                return Some(format!(
                    "input_tokens ({}) exceeds the model's {max}",
                    r.input_tokens
                ));
            }
            if let Some(max) = p.max_output_tokens.filter(|&m| r.max_output_tokens > m) {
                return Some(format!(
                    "max_output_tokens ({}) exceeds the model's {max}",
                    r.max_output_tokens
                ));
            }
        }
        None
    }

    fn route(&self, r: &RequestV1, tenant: &TenantView, cfg: &RoutingConfig) -> Routed {
        let seq = self.seq + 1;
        // Borrowed, not cloned: each clone of a shared id is an atomic increment and decrement.
        let tenant_id = &tenant.tenant_id;
        let mut d = DecisionV1 {
            request_id: r.request_id.clone(),
            tenant_id: *tenant_id,
            lane: self.lane,
            profile: None,
            mode: Mode::Rejected,
            target: None,
            reason: Reason::InvalidRequest,
            considered: Vec::new(),
            estimated_cost_micros: 0,
            decided_at: r.ts,
            seq,
            policy_version: tenant.version,
            detail: None,
            source: None,
        };
        let policy = &tenant.policy;
        // Admission (DESIGN §4.2): rejections are decisions too.
        let rejection = if let Some(why) = self.invalid_reason(r) {
            d.detail = Some(why);
            Some(Reason::InvalidRequest)
        } else if !tenant.known && cfg.unknown_tenant == super::config::UnknownTenant::Reject {
            Some(Reason::UnknownTenant)
        } else if r
            .region
            .as_deref()
            .is_some_and(|reg| !policy.region_allowed(reg))
        {
            Some(Reason::RegionNotAllowed)
        } else if tenant.paused {
            Some(Reason::QuotaExceeded)
        } else {
            None
        };
        if let Some(reason) = rejection {
            d.reason = reason;
            return Routed::unreserved(d, None);
        }

        let allowed = r.allowed_profiles.as_deref().map_or(policy.profiles, |p| {
            policy.profiles.intersect(ProfileSet::from_slice(p))
        });
        let order = policy.escalation.as_deref().unwrap_or(&cfg.escalation);
        let provider = &*self.provider;
        let estimate = self.estimate_micros(r);
        let mut byoc_reason: Option<Reason> = None;
        let mut provider_blocked = false;
        // Credential routes skipped for a down provider; listed after the clusters.
        let mut skipped_credentials: Vec<Considered> = Vec::new();
        let mut fallback: Option<Box<LaneEvent>> = None;

        for step in order.iter().copied().filter(|&s| allowed.contains(s)) {
            match step {
                ProfileClass::Subscription | ProfileClass::Byok => {
                    let (has, profile, reason, prefix) = if step == ProfileClass::Subscription {
                        (
                            policy.has_subscription(provider),
                            Profile::Subscription,
                            Reason::Subscription,
                            "subscription",
                        )
                    } else {
                        (
                            policy.has_byok(provider),
                            Profile::Byok,
                            Reason::Byok,
                            "byok",
                        )
                    };
                    if !has {
                        continue;
                    }
                    if self.provider_down {
                        provider_blocked = true;
                        skipped_credentials.push(Considered {
                            target: Name::from(format!("{prefix}:{provider}")),
                            verdict: Verdict::ProviderDown,
                        });
                        continue;
                    }
                    d.profile = Some(profile);
                    d.mode = Mode::Live;
                    d.target = Some(self.lane);
                    d.reason = reason;
                    // Bundled allowance costs nothing at the margin; BYOK is the provider's list price.
                    d.estimated_cost_micros = if profile == Profile::Byok {
                        estimate
                    } else {
                        0
                    };
                    d.considered.append(&mut skipped_credentials);
                    return Routed::unreserved(d, None);
                }
                ProfileClass::Byoc => {
                    match self.byoc(r, tenant_id, tenant, &mut d.considered, cfg) {
                        Byoc::Chosen { cluster, stack } => {
                            d.profile = Some(byoc_profile(stack));
                            d.mode = Mode::Live;
                            d.target = Some(cluster);
                            d.reason = Reason::HotLane;
                            let deadline =
                                r.qos.deadline_ms.unwrap_or(cfg.default_deadline_ms) as i64;
                            let reservation = Some((cluster, r.ts.millis() + deadline));
                            d.considered.append(&mut skipped_credentials);
                            return Routed {
                                decision: d,
                                reservation,
                                fallback: None,
                            };
                        }
                        Byoc::NotServed(reason) => byoc_reason = Some(reason),
                    }
                }
                ProfileClass::ManagedProvider => {
                    d.reason = byoc_reason.unwrap_or_else(|| self.reason_without_byoc());
                    d.profile = Some(Profile::ManagedProvider);
                    d.estimated_cost_micros = estimate;
                    if !self.provider_down {
                        d.mode = Mode::Live;
                        d.target = Some(self.lane);
                    } else if cfg.openrouter_fallback
                        && policy.data_boundary == DataBoundary::Project
                    {
                        d.mode = Mode::OpenrouterFallback;
                        d.reason = Reason::ManagedDown;
                        d.target = Some(self.openrouter_target);
                        fallback = Some(Box::new(LaneEvent::EmergencyFallback {
                            request_id: r.request_id.clone(),
                            tenant_id: *tenant_id,
                            provider: self.provider,
                            ts: r.ts,
                        }));
                    } else {
                        d.mode = Mode::Placeholder;
                        d.reason = Reason::ManagedDown;
                        d.profile = None;
                        d.estimated_cost_micros = 0;
                    }
                    d.considered.append(&mut skipped_credentials);
                    return Routed::unreserved(d, fallback);
                }
            }
        }
        // Nothing the tenant allows could serve: never drop, answer with a placeholder.
        d.mode = Mode::Placeholder;
        d.reason = if provider_blocked {
            Reason::ManagedDown
        } else {
            byoc_reason.unwrap_or(Reason::TenantPolicy)
        };
        d.detail = Some("no profile allowed for this tenant and request could serve it".to_owned());
        d.considered.append(&mut skipped_credentials);
        Routed::unreserved(d, None)
    }

    /// The reason a managed decision carries when the BYOC step did not run (not allowed or not
    /// in the escalation order).
    fn reason_without_byoc(&self) -> Reason {
        if self.clusters.is_empty() && !self.active {
            Reason::Tail
        } else if !self.active {
            Reason::NotActivated
        } else {
            Reason::TenantPolicy
        }
    }

    /// The BYOC step: eligibility of every cluster, dedicated first, least utilised, id tie-break.
    fn byoc(
        &self,
        r: &RequestV1,
        tenant_id: &Name,
        tenant: &TenantView,
        considered: &mut Vec<Considered>,
        cfg: &RoutingConfig,
    ) -> Byoc {
        if !self.active {
            return Byoc::NotServed(if self.clusters.is_empty() {
                Reason::Tail
            } else {
                Reason::NotActivated
            });
        }
        if self.clusters.is_empty() {
            return Byoc::NotServed(Reason::Failover);
        }
        let now = r.ts.millis();
        let first = considered.len();
        // (index in `considered`, is dedicated, reserved, limit) of the best so far.
        let mut best: Option<(usize, bool, u32, u32)> = None;
        let (mut saw_capacity, mut saw_health) = (false, false);
        for (id, c) in &self.clusters {
            let v = &c.view;
            let dedicated = v.dedicated_to.is_some();
            let verdict = if v.dedicated_to.as_ref().is_some_and(|t| t != tenant_id) {
                Verdict::DedicatedToOtherTenant
            } else if !dedicated && tenant.policy.data_boundary == DataBoundary::Strict {
                Verdict::DataBoundary
            } else if !tenant.policy.region_allowed(&v.region) {
                Verdict::RegionNotAllowed
            } else if let Some(h) = health_verdict(v.health) {
                saw_health = true;
                h
            } else if v
                .last_heartbeat
                .is_none_or(|t| now - t > cfg.stale_after_ms)
            {
                saw_health = true;
                if v.last_heartbeat.is_none() {
                    Verdict::NoHeartbeat
                } else {
                    Verdict::Stale
                }
            } else {
                let limit = effective_limit(v, now, cfg);
                if c.reserved >= limit {
                    saw_capacity = true;
                    if limit < v.lane_limit {
                        Verdict::SlowStart
                    } else {
                        Verdict::Saturated
                    }
                } else {
                    let idx = considered.len();
                    // Dedicated beats shared; then lower utilisation (reserved/limit, compared by
                    // cross-multiplication); ties keep the earlier, i.e. smaller, cluster id.
                    let better = match best {
                        None => true,
                        Some((_, bd, br, bl)) => {
                            (dedicated && !bd)
                                || (dedicated == bd
                                    && (c.reserved as u64) * (bl as u64)
                                        < (br as u64) * (limit as u64))
                        }
                    };
                    if better {
                        best = Some((idx, dedicated, c.reserved, limit));
                    }
                    Verdict::NotChosen
                }
            };
            considered.push(Considered {
                target: *id,
                verdict,
            });
        }
        debug_assert!(considered.len() > first);
        match best {
            Some((idx, ..)) => {
                considered[idx].verdict = Verdict::Chosen;
                let id = considered[idx].target;
                // `best` only ever indexes a cluster pushed from `self.clusters` above.
                let stack = self.clusters[&id].view.stack;
                Byoc::Chosen { cluster: id, stack }
            }
            None if saw_capacity => Byoc::NotServed(Reason::Overflow),
            None if saw_health => Byoc::NotServed(Reason::Failover),
            None => Byoc::NotServed(Reason::TenantPolicy),
        }
    }
}

fn byoc_profile(stack: Stack) -> Profile {
    match stack {
        Stack::Dynamo => Profile::ByocDynamo,
        Stack::Epp => Profile::ByocEpp,
    }
}

fn health_verdict(h: Health) -> Option<Verdict> {
    match h {
        Health::Healthy => None,
        Health::NoHeartbeat => Some(Verdict::NoHeartbeat),
        Health::Down => Some(Verdict::Down),
        Health::Draining => Some(Verdict::Draining),
        Health::Unhealthy => Some(Verdict::Unhealthy),
        Health::BreakerOpen => Some(Verdict::BreakerOpen),
        Health::Recovering => Some(Verdict::Recovering),
    }
}

/// The lane's limit on a cluster at `now`, ramped linearly during slow start from
/// `slow_start_initial` of the limit to all of it (at least one slot once ramping).
pub fn effective_limit(v: &ClusterView, now: i64, cfg: &RoutingConfig) -> u32 {
    let ramp = cfg.breaker.slow_start_ms;
    match v.slow_start_since {
        Some(since) if ramp > 0 && now - since < ramp => {
            let elapsed = (now - since).max(0) as u64;
            let init = cfg.breaker.slow_start_initial_permille();
            let share = init + (1000 - init) * elapsed / ramp as u64;
            ((v.lane_limit as u64 * share / 1000) as u32).clamp(1.min(v.lane_limit), v.lane_limit)
        }
        _ => v.lane_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by tests/fuzz.rs (debug build): the demotion window's capacity integral
    /// (slots × ms) overflowed for a lane share of ~u32::MAX slots (a hostile `max_inflight`)
    /// over decades of event time (a heartbeat stamped far ahead keeps the cluster serving).
    /// The integrals saturate now.
    #[test]
    fn the_usage_integrals_saturate_instead_of_overflowing() {
        let century_ms = 100 * 365 * 86_400_000i64;
        let mut lane = LaneState::new("acme/m", None);
        lane.active = true;
        lane.clusters.insert(
            Name::from("byc_a"),
            LaneCluster {
                view: ClusterView {
                    cluster_id: Name::from("byc_a"),
                    stack: crate::events::Stack::Dynamo,
                    region: Name::from("eu"),
                    dedicated_to: None,
                    health: Health::Healthy,
                    last_heartbeat: Some(century_ms),
                    lane_limit: u32::MAX,
                    slow_start_since: None,
                },
                reserved: 0,
            },
        );
        lane.advance(century_ms);
        assert_eq!(lane.window.capacity_slot_ms, u64::MAX);
        assert_eq!(lane.window.last, century_ms);
    }
}
