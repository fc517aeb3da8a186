//! Scenario tests for the per-request decision (DESIGN §4): *given* these input events, *then*
//! these decisions — driven through the public API only (`Router::apply` with the embedded price
//! table), the way `zumik decide` and the Kafka runtime drive it.
//!
//! What is covered, section by section:
//!
//! 1. **Hot lane and capacity** — BYOC serving, overflow at `max_inflight × headroom`, release on
//!    completion, expiry of reservations after their deadline (event time), heartbeats resizing
//!    capacity, least-utilised choice with the cluster-id tie-break, dedicated clusters.
//! 2. **Failover and health** — down, draining, error-rate, stale and missing heartbeats, the
//!    completion circuit breaker, recovery after N healthy heartbeats, slow start, deregistration.
//! 3. **Lane lifecycle** — tail lanes, lanes not (or no longer) activated: the gated activation
//!    command, demotion by command and by utilisation below break-even.
//! 4. **Tenant policy and credential routes** — profiles, regions, subscription, BYOK (and its
//!    provider being down), per-tenant escalation order, request-level `allowed_profiles`.
//! 5. **Admission** — unknown tenants, regions, invalid requests, quota.
//! 6. **Budget** — threshold events from billed managed completions, month rollover.
//! 7. **Managed provider down** — placeholder vs. the OpenRouter emergency route.
//! 8. **Coverage** — every `Reason` and every `Mode` is reached by the scenarios above.
//! 9. **Known bugs** — `#[ignore = "BUG: …"]` scenarios stating the behaviour DESIGN asks for (or
//!    an operator would expect); each fails today and should pass once the core is fixed.
//!
//! Conventions: event time is milliseconds after `T0` (2026-11-24T10:00:00Z); fixtures register
//! clusters at 0, heartbeat them at 1 000 and activate the lane at 2 000, so requests between
//! 3 000 and 16 000 see a fresh heartbeat (default `stale_after_ms` = 15 000). Every event is
//! contract-validated before it is applied, as the codec does in production.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use zumik::core::cluster::{ClusterEvent, Health};
use zumik::core::config::{BreakerConfig, UnknownTenant};
use zumik::core::lane::LaneEvent;
use zumik::core::router::JournalEntry;
use zumik::core::tenant::TenantEvent;
use zumik::core::{Output, PriceTable, Router, RoutingConfig};
use zumik::events::*;

// =================================================================================================
// Fixtures: names, time, prices
// =================================================================================================

/// A priced lane: gpt-4o costs 2.5 µ$ per input token and 10 µ$ per output token.
const GPT4O: &str = "openai/gpt-4o";
/// A lane the price table does not know: cost estimates are 0.
const HOUSE: &str = "acme/house-model";
const ACME: &str = "prj_acme";
const OTHER: &str = "prj_other";
const EU: &str = "eu-west-1";
const US: &str = "us-east-1";

/// Managed estimate of a default [`request`] on gpt-4o: 1 000 input × 2.5 + 100 output × 10.
const GPT4O_ESTIMATE: u64 = 3_500;

/// 2026-11-24T10:00:00Z in ms; scenario times are offsets from it.
const T0: i64 = 1_795_514_400_000;
/// 2026-12-01T00:00:00Z as an offset from `T0` (the next budget month).
const DECEMBER: i64 = 568_800_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp(T0 + offset_ms)
}

fn prices() -> Arc<PriceTable> {
    static PRICES: OnceLock<Arc<PriceTable>> = OnceLock::new();
    PRICES
        .get_or_init(|| Arc::new(PriceTable::embedded()))
        .clone()
}

// =================================================================================================
// Event builders (struct-update syntax tweaks them: `RequestV1 { region: …, ..request(…) }`)
// =================================================================================================

/// 1 000 input tokens (none cached), 100 output tokens, no deadline, no region.
fn request(id: &str, tenant: &str, lane: &str, at_ms: i64) -> RequestV1 {
    RequestV1 {
        request_id: id.into(),
        tenant_id: tenant.into(),
        model: lane.into(),
        alias: None,
        input_tokens: 1_000,
        cached_input_tokens: 0,
        max_output_tokens: 100,
        qos: Qos {
            class: "interactive".into(),
            target_ttft_ms: None,
            deadline_ms: None,
            priority: None,
        },
        region: None,
        allowed_profiles: None,
        ts: at(at_ms),
    }
}

/// `n` requests `{prefix}0…` from `tenant`, 1 ms apart from `at_ms`.
fn burst(prefix: &str, n: usize, tenant: &str, lane: &str, at_ms: i64) -> Vec<InputEvent> {
    (0..n)
        .map(|i| request(&format!("{prefix}{i}"), tenant, lane, at_ms + i as i64).into_event())
        .collect()
}

/// A shared dynamo cluster in `EU` serving one lane.
fn cluster(id: &str, lane: &str, max_inflight: u32) -> ClusterRegisteredV1 {
    ClusterRegisteredV1 {
        cluster_id: id.into(),
        name: format!("{id}-name"),
        region: EU.into(),
        stack: Stack::Dynamo,
        lanes: vec![lane.into()],
        max_inflight,
        gpus: 8,
        gpu_hour_micros: 2_000_000,
        dedicated_to: None,
        ts: at(0),
    }
}

fn dedicated(c: ClusterRegisteredV1, tenant: &str) -> ClusterRegisteredV1 {
    ClusterRegisteredV1 {
        dedicated_to: Some(tenant.into()),
        ..c
    }
}

fn heartbeat(id: &str, status: ClusterStatus, max_inflight: u32, at_ms: i64) -> ClusterHeartbeatV1 {
    ClusterHeartbeatV1 {
        cluster_id: id.into(),
        status,
        replicas: Some(2),
        max_inflight,
        inflight: 0,
        queue_depth: Some(0),
        ttft_p95_ms: Some(400),
        kv_cache_usage: Some(0.4),
        error_rate: Some(0.0),
        ts: at(at_ms),
    }
}

fn ready(id: &str, max_inflight: u32, at_ms: i64) -> ClusterHeartbeatV1 {
    heartbeat(id, ClusterStatus::Ready, max_inflight, at_ms)
}

fn deregister(id: &str, at_ms: i64) -> ClusterDeregisteredV1 {
    ClusterDeregisteredV1 {
        cluster_id: id.into(),
        ts: at(at_ms),
    }
}

fn activate(lane: &str, at_ms: i64) -> LaneActivatedV1 {
    LaneActivatedV1 {
        lane: lane.into(),
        report_digest: "sha256:gate-report".into(),
        ts: at(at_ms),
    }
}

/// The gated activation command: accepted only for a stored, passing, sealed, fresh report.
fn activate_gated(lane: &str, report_digest: &str, at_ms: i64) -> LaneActivateV1 {
    LaneActivateV1 {
        lane: lane.into(),
        report_digest: report_digest.into(),
        ts: at(at_ms),
    }
}

/// A sealed gate report for `lane` whose window ends at `window_end_ms`.
fn gate_report(
    lane: &str,
    passed: bool,
    window_end_ms: i64,
    break_even_utilisation: f64,
) -> GateReportV1 {
    let mut r = GateReportV1 {
        lane: lane.into(),
        passed,
        window: Window {
            start: at(window_end_ms - 86_400_000),
            end: at(window_end_ms),
        },
        inputs: serde_json::json!({ "requests": 10_000 }),
        config: serde_json::json!({ "gpus": 8 }),
        results: serde_json::json!({ "break_even_utilisation": break_even_utilisation }),
        series: serde_json::json!({}),
        digest: String::new(),
    };
    r.seal();
    r
}

fn deactivate(lane: &str, at_ms: i64) -> LaneDeactivatedV1 {
    LaneDeactivatedV1 {
        lane: lane.into(),
        reason: "demoted: utilisation below break-even".into(),
        ts: at(at_ms),
    }
}

fn provider(name: &str, status: ProviderStatus, at_ms: i64) -> ProviderHealthV1 {
    ProviderHealthV1 {
        provider: name.into(),
        status,
        error_rate: None,
        ts: at(at_ms),
    }
}

/// A policy that allows everything (like the default) but makes the tenant known.
fn policy(tenant: &str) -> TenantPolicyV1 {
    TenantPolicyV1 {
        tenant_id: tenant.into(),
        allowed_regions: None,
        allowed_profiles: None,
        data_boundary: None,
        subscriptions: vec![],
        byok: vec![],
        monthly_budget_micros: None,
        overage_mode: None,
        escalation: None,
        ts: at(0),
    }
}

fn completion(id: &str, tenant: &str, lane: &str, outcome: Outcome, at_ms: i64) -> CompletionV1 {
    CompletionV1 {
        request_id: id.into(),
        tenant_id: tenant.into(),
        model: lane.into(),
        outcome,
        input_tokens: 1_000,
        cached_input_tokens: 0,
        output_tokens: 50,
        ttft_ms: Some(300),
        latency_ms: Some(2_000),
        error_class: (outcome == Outcome::Failed).then(|| "upstream_5xx".into()),
        profile: None,
        target: None,
        ts: at(at_ms),
    }
}

/// A completed managed gpt-4o request that costs exactly `micros` (output tokens at 10 µ$ each).
fn billed(id: &str, tenant: &str, micros: u64, at_ms: i64) -> CompletionV1 {
    assert_eq!(micros % 10, 0, "gpt-4o output tokens cost 10 µ$ each");
    CompletionV1 {
        input_tokens: 0,
        output_tokens: (micros / 10) as u32,
        profile: Some(Profile::ManagedProvider),
        target: Some(GPT4O.into()),
        ..completion(id, tenant, GPT4O, Outcome::Completed, at_ms)
    }
}

/// An active lane served by `clusters`: registered at 0, ready heartbeats (at their registered
/// `max_inflight`) at 1 000, lane activated at 2 000.
fn hot_lane(lane: &str, clusters: Vec<ClusterRegisteredV1>) -> Vec<InputEvent> {
    let heartbeats: Vec<InputEvent> = clusters
        .iter()
        .map(|c| ready(&c.cluster_id, c.max_inflight, 1_000).into_event())
        .collect();
    let mut events: Vec<InputEvent> = clusters.into_iter().map(IntoEvent::into_event).collect();
    events.extend(heartbeats);
    events.push(activate(lane, 2_000).into_event());
    events
}

/// The usual hot lane: gpt-4o on one shared cluster `byc_a` with `max_inflight` 10 (9 slots).
fn gpt4o_hot_lane() -> Vec<InputEvent> {
    hot_lane(GPT4O, vec![cluster("byc_a", GPT4O, 10)])
}

/// Turns any v1 input struct into the tagged [`InputEvent`].
trait IntoEvent {
    fn into_event(self) -> InputEvent;
}

macro_rules! into_event {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(impl IntoEvent for $ty {
            fn into_event(self) -> InputEvent {
                InputEvent::$variant(self)
            }
        })*
    };
}

into_event! {
    RequestV1 => Request,
    CompletionV1 => Completion,
    ClusterRegisteredV1 => ClusterRegistered,
    ClusterDeregisteredV1 => ClusterDeregistered,
    ClusterHeartbeatV1 => ClusterHeartbeat,
    ProviderHealthV1 => ProviderHealth,
    TenantPolicyV1 => TenantPolicy,
    LaneActivatedV1 => LaneActivated,
    LaneDeactivatedV1 => LaneDeactivated,
    LaneActivateV1 => LaneActivate,
    UsageV1 => Usage,
    BreakerTrippedV1 => BreakerTripped,
}

impl IntoEvent for GateReportV1 {
    fn into_event(self) -> InputEvent {
        InputEvent::GateReport(Box::new(self))
    }
}

impl IntoEvent for InputEvent {
    fn into_event(self) -> InputEvent {
        self
    }
}

/// `events![a, b, …]`: a `Vec<InputEvent>` from any mix of v1 structs.
macro_rules! events {
    ($($e:expr),* $(,)?) => { vec![$(IntoEvent::into_event($e)),*] };
}

// =================================================================================================
// The harness: a router with the embedded price table and a journal
// =================================================================================================

thread_local! {
    /// When set (by [`recording`]), every decision any [`Broker`] on this thread makes.
    static RECORDER: RefCell<Option<Vec<DecisionV1>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns every decision made on this thread meanwhile.
fn recording(f: impl FnOnce()) -> Vec<DecisionV1> {
    RECORDER.with(|r| *r.borrow_mut() = Some(Vec::new()));
    f();
    RECORDER.with(|r| r.borrow_mut().take()).unwrap_or_default()
}

struct Broker {
    router: Router,
    out: Output,
}

/// A broker with the default routing config that has applied `events`.
fn given(events: Vec<InputEvent>) -> Broker {
    given_config(RoutingConfig::default(), events)
}

fn given_config(cfg: RoutingConfig, events: Vec<InputEvent>) -> Broker {
    cfg.validate().expect("scenario config is valid");
    let mut b = Broker {
        router: Router::new(Arc::new(cfg), prices()),
        out: Output::with_journal(),
    };
    b.when(events);
    b
}

impl Broker {
    /// Applies `events` in order; returns the decisions they produced.
    fn when(&mut self, events: Vec<InputEvent>) -> Vec<DecisionV1> {
        let first = self.out.decisions.len();
        for e in events {
            if let Err(invalid) = e.validate() {
                panic!("scenario event breaks the contract ({invalid}): {e:?}");
            }
            self.router.apply(e, &mut self.out);
        }
        let new = self.out.decisions[first..].to_vec();
        RECORDER.with(|r| {
            if let Some(seen) = r.borrow_mut().as_mut() {
                seen.extend(new.iter().cloned());
            }
        });
        new
    }

    /// Applies one request; returns its decision.
    fn decide(&mut self, r: RequestV1) -> DecisionV1 {
        let id = r.request_id.clone();
        let mut ds = self.when(events![r]);
        assert_eq!(ds.len(), 1, "one decision per request");
        let d = ds.pop().unwrap();
        assert_eq!(d.request_id, id);
        d
    }

    /// Every lane event journaled so far, with its lane.
    fn lane_events(&self) -> impl Iterator<Item = (&str, &LaneEvent)> {
        self.out.journal.iter().flat_map(|j| match j {
            JournalEntry::Lane { lane, events, .. } => {
                events.iter().map(|e| (&**lane, e)).collect()
            }
            _ => vec![],
        })
    }

    /// Every cluster event journaled so far, with its cluster id.
    fn cluster_events(&self) -> impl Iterator<Item = (&str, &ClusterEvent)> {
        self.out.journal.iter().flat_map(|j| match j {
            JournalEntry::Cluster {
                cluster_id, events, ..
            } => events.iter().map(|e| (&**cluster_id, e)).collect(),
            _ => vec![],
        })
    }

    /// Every tenant event journaled so far, with its tenant id.
    fn tenant_events(&self) -> impl Iterator<Item = (&str, &TenantEvent)> {
        self.out.journal.iter().flat_map(|j| match j {
            JournalEntry::Tenant {
                tenant_id, events, ..
            } => events.iter().map(|e| (&**tenant_id, e)).collect(),
            _ => vec![],
        })
    }

    /// `(pct, spent_micros)` of every budget threshold crossed by `tenant` so far.
    fn budget_crossings(&self, tenant: &str) -> Vec<(u8, u64)> {
        self.tenant_events()
            .filter_map(|(t, e)| match e {
                TenantEvent::BudgetThresholdCrossed {
                    pct, spent_micros, ..
                } if t == tenant => Some((*pct, *spent_micros)),
                _ => None,
            })
            .collect()
    }

    /// Request ids of every journaled OpenRouter emergency route.
    fn emergency_fallbacks(&self) -> Vec<String> {
        self.lane_events()
            .filter_map(|(_, e)| match e {
                LaneEvent::EmergencyFallback { request_id, .. } => Some(request_id.to_string()),
                _ => None,
            })
            .collect()
    }

    /// Request ids whose reservation expired without a completion.
    fn expired(&self) -> Vec<String> {
        self.lane_events()
            .filter_map(|(_, e)| match e {
                LaneEvent::Expired { request_id, .. } => Some(request_id.to_string()),
                _ => None,
            })
            .collect()
    }

    /// Health transitions `(from, to)` journaled for `cluster`.
    fn health_changes(&self, cluster: &str) -> Vec<(Health, Health)> {
        self.cluster_events()
            .filter_map(|(c, e)| match e {
                ClusterEvent::HealthChanged { from, to, .. } if c == cluster => Some((*from, *to)),
                _ => None,
            })
            .collect()
    }
}

// =================================================================================================
// Expectations
// =================================================================================================

#[track_caller]
fn expect(
    d: &DecisionV1,
    profile: Option<Profile>,
    mode: Mode,
    target: Option<&str>,
    reason: Reason,
) {
    let got = (d.profile, d.mode, d.target.as_deref(), d.reason);
    assert_eq!(
        got,
        (profile, mode, target, reason),
        "decision for {}: {d:#?}",
        d.request_id
    );
}

/// Served live by BYOC cluster `cluster` (dynamo), at no marginal cost.
#[track_caller]
fn expect_hot(d: &DecisionV1, cluster: &str) {
    expect(
        d,
        Some(Profile::ByocDynamo),
        Mode::Live,
        Some(cluster),
        Reason::HotLane,
    );
    assert_eq!(d.estimated_cost_micros, 0, "BYOC has no marginal cost");
}

/// Served live by the managed provider of the decision's lane.
#[track_caller]
fn expect_managed(d: &DecisionV1, reason: Reason) {
    expect(
        d,
        Some(Profile::ManagedProvider),
        Mode::Live,
        Some(&*d.lane),
        reason,
    );
}

#[track_caller]
fn expect_rejected(d: &DecisionV1, reason: Reason) {
    expect(d, None, Mode::Rejected, None, reason);
    assert_eq!(d.estimated_cost_micros, 0);
    assert!(
        d.considered.is_empty(),
        "a rejection considers nothing: {:?}",
        d.considered
    );
}

#[track_caller]
fn expect_placeholder(d: &DecisionV1, reason: Reason) {
    expect(d, None, Mode::Placeholder, None, reason);
    assert_eq!(d.estimated_cost_micros, 0);
}

/// The `considered` list as `(target, verdict)` pairs.
fn verdicts(d: &DecisionV1) -> Vec<(&str, Verdict)> {
    d.considered
        .iter()
        .map(|c| (&*c.target, c.verdict))
        .collect()
}

fn targets(ds: &[DecisionV1]) -> Vec<&str> {
    ds.iter()
        .map(|d| d.target.as_deref().unwrap_or("-"))
        .collect()
}

fn reasons(ds: &[DecisionV1]) -> Vec<Reason> {
    ds.iter().map(|d| d.reason).collect()
}

/// The reasons of a burst that fills `hot` free slots and then overflows once.
fn hot_then_overflow(hot: usize) -> Vec<Reason> {
    let mut reasons = vec![Reason::HotLane; hot];
    reasons.push(Reason::Overflow);
    reasons
}

// =================================================================================================
// 1. Hot lane and capacity
// =================================================================================================

#[test]
fn hot_lane_serves_on_the_active_lanes_cluster() {
    let d = given(gpt4o_hot_lane()).decide(request("r1", ACME, GPT4O, 3_000));
    expect_hot(&d, "byc_a");
    assert_eq!(verdicts(&d), [("byc_a", Verdict::Chosen)]);
    assert_eq!((d.seq, d.decided_at, d.policy_version), (1, at(3_000), 0));
}

#[test]
fn overflow_when_reserved_reaches_max_inflight_times_headroom() {
    // 10 × 0.9 = 9 slots: the tenth concurrent request overflows to managed.
    let ds = given(gpt4o_hot_lane()).when(burst("r", 10, ACME, GPT4O, 3_000));
    ds[..9].iter().for_each(|d| expect_hot(d, "byc_a"));
    expect_managed(&ds[9], Reason::Overflow);
    assert_eq!(verdicts(&ds[9]), [("byc_a", Verdict::Saturated)]);
    assert_eq!(ds[9].estimated_cost_micros, GPT4O_ESTIMATE);

    // The headroom is the configured one: 10 × 0.5 = 5 slots.
    let cfg = RoutingConfig {
        headroom: 0.5,
        ..RoutingConfig::default()
    };
    let ds = given_config(cfg, gpt4o_hot_lane()).when(burst("r", 6, ACME, GPT4O, 3_000));
    assert_eq!(reasons(&ds), hot_then_overflow(5));
}

#[test]
fn a_completion_releases_its_slot() {
    let mut b = given(gpt4o_hot_lane());
    b.when(burst("r", 9, ACME, GPT4O, 3_000));
    expect_managed(
        &b.decide(request("full", ACME, GPT4O, 4_000)),
        Reason::Overflow,
    );

    b.when(events![completion(
        "r0",
        ACME,
        GPT4O,
        Outcome::Completed,
        4_500
    )]);
    expect_hot(&b.decide(request("after", ACME, GPT4O, 5_000)), "byc_a");
    expect_managed(
        &b.decide(request("full-again", ACME, GPT4O, 5_001)),
        Reason::Overflow,
    );
}

#[test]
fn a_reservation_without_completion_expires_after_its_deadline_in_event_time() {
    let with_deadline = |id: &str, at_ms| RequestV1 {
        qos: Qos {
            deadline_ms: Some(5_000),
            ..request(id, ACME, GPT4O, at_ms).qos
        },
        ..request(id, ACME, GPT4O, at_ms)
    };
    let mut b = given(gpt4o_hot_lane());
    let fill: Vec<InputEvent> = (0..9)
        .map(|i| with_deadline(&format!("r{i}"), 3_000 + i).into_event())
        .collect();
    b.when(fill);
    // r0 holds its slot until 3 000 + 5 000 of event time, no completion ever arrives.
    expect_managed(
        &b.decide(request("before", ACME, GPT4O, 7_999)),
        Reason::Overflow,
    );
    expect_hot(&b.decide(request("after", ACME, GPT4O, 8_000)), "byc_a");
    assert_eq!(b.expired(), ["r0"]);

    // Without `qos.deadline_ms` the configured default deadline applies.
    let cfg = RoutingConfig {
        default_deadline_ms: 4_000,
        ..RoutingConfig::default()
    };
    let mut b = given_config(cfg, gpt4o_hot_lane());
    b.when(burst("r", 9, ACME, GPT4O, 3_000));
    expect_managed(
        &b.decide(request("before", ACME, GPT4O, 6_999)),
        Reason::Overflow,
    );
    expect_hot(&b.decide(request("after", ACME, GPT4O, 7_000)), "byc_a");
}

#[test]
fn a_heartbeat_resets_max_inflight() {
    let mut b = given(gpt4o_hot_lane());
    b.when(burst("r", 9, ACME, GPT4O, 3_000));
    expect_managed(
        &b.decide(request("full", ACME, GPT4O, 3_500)),
        Reason::Overflow,
    );

    // Autoscaled up to 20: 18 slots.
    b.when(events![ready("byc_a", 20, 4_000)]);
    let ds = b.when(burst("up", 10, ACME, GPT4O, 4_100));
    assert_eq!(reasons(&ds), hot_then_overflow(9));

    // Scaled down to 5 (4 slots) with 18 reserved: saturated.
    b.when(events![ready("byc_a", 5, 5_000)]);
    let d = b.decide(request("down", ACME, GPT4O, 5_100));
    expect_managed(&d, Reason::Overflow);
    assert_eq!(verdicts(&d), [("byc_a", Verdict::Saturated)]);
}

#[test]
fn the_least_utilised_cluster_wins_and_ties_go_to_the_smaller_cluster_id() {
    // byc_b (epp) registers first and has twice the slots (18 vs 9).
    let b_epp = ClusterRegisteredV1 {
        stack: Stack::Epp,
        ..cluster("byc_b", GPT4O, 20)
    };
    let mut b = given(hot_lane(GPT4O, vec![b_epp, cluster("byc_a", GPT4O, 10)]));
    let ds = b.when(burst("r", 4, ACME, GPT4O, 3_000));
    // 0/9 = 0/18 → byc_a (id); 1/9 > 0/18 → byc_b; 1/9 > 1/18 → byc_b; 1/9 = 2/18 → byc_a (id).
    assert_eq!(targets(&ds), ["byc_a", "byc_b", "byc_b", "byc_a"]);
    assert_eq!(
        verdicts(&ds[0]),
        [("byc_a", Verdict::Chosen), ("byc_b", Verdict::NotChosen)]
    );
    assert_eq!(
        verdicts(&ds[1]),
        [("byc_a", Verdict::NotChosen), ("byc_b", Verdict::Chosen)]
    );
    expect(
        &ds[1],
        Some(Profile::ByocEpp),
        Mode::Live,
        Some("byc_b"),
        Reason::HotLane,
    );
}

#[test]
fn a_tenants_dedicated_cluster_comes_first() {
    // byc_z is dedicated to ACME: chosen before the shared byc_a although byc_a wins the id tie.
    let mut b = given(hot_lane(
        GPT4O,
        vec![
            cluster("byc_a", GPT4O, 10),
            dedicated(cluster("byc_z", GPT4O, 10), ACME),
        ],
    ));
    let ds = b.when(burst("r", 10, ACME, GPT4O, 3_000));
    ds[..9].iter().for_each(|d| expect_hot(d, "byc_z"));
    assert_eq!(
        verdicts(&ds[0]),
        [("byc_a", Verdict::NotChosen), ("byc_z", Verdict::Chosen)]
    );
    // Only once its own cluster is full does the tenant spill onto the shared one.
    expect_hot(&ds[9], "byc_a");
    assert_eq!(
        verdicts(&ds[9]),
        [("byc_a", Verdict::Chosen), ("byc_z", Verdict::Saturated)]
    );
}

#[test]
fn a_dedicated_cluster_never_serves_another_tenant() {
    // Shared byc_a has one slot (1 × 0.9 → 1); ACME's idle dedicated byc_z must not take OTHER's overflow.
    let mut b = given(hot_lane(
        GPT4O,
        vec![
            cluster("byc_a", GPT4O, 1),
            dedicated(cluster("byc_z", GPT4O, 10), ACME),
        ],
    ));
    let ds = b.when(burst("o", 2, OTHER, GPT4O, 3_000));
    expect_hot(&ds[0], "byc_a");
    assert_eq!(
        verdicts(&ds[0]),
        [
            ("byc_a", Verdict::Chosen),
            ("byc_z", Verdict::DedicatedToOtherTenant)
        ]
    );
    expect_managed(&ds[1], Reason::Overflow);
    assert_eq!(
        verdicts(&ds[1]),
        [
            ("byc_a", Verdict::Saturated),
            ("byc_z", Verdict::DedicatedToOtherTenant)
        ]
    );

    // With only the dedicated cluster on the lane, another tenant's traffic is a policy matter.
    let d = given(hot_lane(
        GPT4O,
        vec![dedicated(cluster("byc_z", GPT4O, 10), ACME)],
    ))
    .decide(request("o", OTHER, GPT4O, 3_000));
    expect_managed(&d, Reason::TenantPolicy);
    assert_eq!(verdicts(&d), [("byc_z", Verdict::DedicatedToOtherTenant)]);
}

// =================================================================================================
// 2. Failover and health
// =================================================================================================

/// Given the gpt-4o hot lane plus `extra` events, a request at `at_ms` fails over to managed
/// because `byc_a` is passed over with `verdict`.
#[track_caller]
fn assert_failover(setup: Vec<InputEvent>, at_ms: i64, verdict: Verdict) {
    let d = given(setup).decide(request("r1", ACME, GPT4O, at_ms));
    expect_managed(&d, Reason::Failover);
    assert_eq!(verdicts(&d), [("byc_a", verdict)]);
    assert_eq!(d.estimated_cost_micros, GPT4O_ESTIMATE);
}

#[test]
fn failover_when_the_cluster_is_down() {
    let setup = [
        gpt4o_hot_lane(),
        events![heartbeat("byc_a", ClusterStatus::Down, 10, 2_500)],
    ]
    .concat();
    assert_failover(setup, 3_000, Verdict::Down);
}

#[test]
fn failover_when_the_cluster_is_draining() {
    let setup = [
        gpt4o_hot_lane(),
        events![heartbeat("byc_a", ClusterStatus::Draining, 10, 2_500)],
    ]
    .concat();
    assert_failover(setup, 3_000, Verdict::Draining);
}

#[test]
fn failover_when_the_heartbeat_reports_a_high_error_rate() {
    let sick = ClusterHeartbeatV1 {
        error_rate: Some(0.6),
        ..ready("byc_a", 10, 2_500)
    };
    assert_failover(
        [gpt4o_hot_lane(), events![sick]].concat(),
        3_000,
        Verdict::Unhealthy,
    );
}

#[test]
fn failover_when_the_heartbeat_is_stale() {
    // Last heartbeat at 1 000: fresh up to 15 000 ms later, stale after (event time only).
    expect_hot(
        &given(gpt4o_hot_lane()).decide(request("r1", ACME, GPT4O, 16_000)),
        "byc_a",
    );
    assert_failover(gpt4o_hot_lane(), 16_001, Verdict::Stale);
}

#[test]
fn failover_when_the_cluster_never_sent_a_heartbeat() {
    let setup = events![cluster("byc_a", GPT4O, 10), activate(GPT4O, 2_000)];
    assert_failover(setup, 3_000, Verdict::NoHeartbeat);
}

/// Serves `outcomes.len()` requests on the gpt-4o lane one after the other from `at_ms`, each
/// completed (or failed) before the next arrives; returns their decisions.
fn serve_one_by_one(b: &mut Broker, outcomes: &[Outcome], at_ms: i64) -> Vec<DecisionV1> {
    let mut ds = Vec::new();
    for (i, &outcome) in outcomes.iter().enumerate() {
        let (id, t) = (format!("seq{i}"), at_ms + 10 * i as i64);
        ds.push(b.decide(request(&id, ACME, GPT4O, t)));
        b.when(events![completion(&id, ACME, GPT4O, outcome, t + 5)]);
    }
    ds
}

#[test]
fn the_breaker_trips_on_completion_errors_recovers_after_n_heartbeats_then_slow_starts() {
    use Outcome::{Completed as Ok, Failed as Fail};
    let breaker = BreakerConfig {
        recovery_heartbeats: 4,
        slow_start_ms: 20_000,
        ..BreakerConfig::default()
    };
    let mut b = given_config(
        RoutingConfig {
            breaker,
            ..RoutingConfig::default()
        },
        gpt4o_hot_lane(),
    );

    // 6 of the last 10 completions failed (threshold 50 %, at least 10 samples): the breaker
    // opens with the tenth, not before.
    let ds = serve_one_by_one(
        &mut b,
        &[Ok, Ok, Ok, Ok, Fail, Fail, Fail, Fail, Fail, Fail],
        3_000,
    );
    ds.iter().for_each(|d| expect_hot(d, "byc_a"));
    let d = b.decide(request("open", ACME, GPT4O, 3_200));
    expect_managed(&d, Reason::Failover);
    assert_eq!(verdicts(&d), [("byc_a", Verdict::BreakerOpen)]);

    // Healthy heartbeats: still out of rotation until the fourth in a row.
    for (i, t) in [4_000, 5_000, 6_000].into_iter().enumerate() {
        b.when(events![ready("byc_a", 10, t)]);
        let d = b.decide(request(&format!("recovering{i}"), ACME, GPT4O, t + 1));
        expect_managed(&d, Reason::Failover);
        assert_eq!(verdicts(&d), [("byc_a", Verdict::Recovering)]);
    }
    b.when(events![ready("byc_a", 10, 7_000)]);
    assert_eq!(
        b.health_changes("byc_a"),
        [
            (Health::NoHeartbeat, Health::Healthy),
            (Health::Healthy, Health::BreakerOpen),
            (Health::BreakerOpen, Health::Recovering),
            (Health::Recovering, Health::Healthy),
        ]
    );

    // Slow start: right after recovery 10 % of the 9 slots, i.e. one.
    let ds = b.when(burst("ramp0-", 2, ACME, GPT4O, 7_000));
    expect_hot(&ds[0], "byc_a");
    expect_managed(&ds[1], Reason::Overflow);
    assert_eq!(verdicts(&ds[1]), [("byc_a", Verdict::SlowStart)]);

    // Half-way (10 of 20 s): 10 % + 90 % × ½ = 55 % of 9 = 4 slots, one already taken.
    b.when(events![ready("byc_a", 10, 17_000)]);
    let ds = b.when(burst("ramp50-", 4, ACME, GPT4O, 17_000));
    assert_eq!(reasons(&ds), hot_then_overflow(3));
    assert_eq!(verdicts(&ds[3]), [("byc_a", Verdict::SlowStart)]);

    // After `slow_start_ms`: all 9 slots, 4 taken.
    b.when(events![ready("byc_a", 10, 27_000)]);
    let ds = b.when(burst("full-", 6, ACME, GPT4O, 27_000));
    assert_eq!(reasons(&ds), hot_then_overflow(5));
    assert_eq!(verdicts(&ds[5]), [("byc_a", Verdict::Saturated)]);
}

/// Another unit's breaker on `cluster` opened at `at_ms` (a `zumik.breaker_tripped.v1`).
fn tripped_elsewhere(cluster: &str, at_ms: i64) -> BreakerTrippedV1 {
    BreakerTrippedV1 {
        cluster_id: cluster.into(),
        unit: 1,
        failures: 6,
        samples: 10,
        ts: at(at_ms),
    }
}

#[test]
fn a_breaker_opened_in_another_unit_takes_the_cluster_out_here_until_it_recovers() {
    let breaker = BreakerConfig {
        recovery_heartbeats: 2,
        slow_start_ms: 0,
        ..BreakerConfig::default()
    };
    let mut b = given_config(
        RoutingConfig {
            breaker,
            ..RoutingConfig::default()
        },
        gpt4o_hot_lane(),
    );
    expect_hot(&b.decide(request("before", ACME, GPT4O, 2_500)), "byc_a");
    // No failure here: the other unit's lanes saw them.
    b.when(events![tripped_elsewhere("byc_a", 3_000)]);
    let d = b.decide(request("open", ACME, GPT4O, 3_100));
    expect_managed(&d, Reason::Failover);
    assert_eq!(verdicts(&d), [("byc_a", Verdict::BreakerOpen)]);
    // A second trip while it is out changes nothing; nor does one for an unknown cluster.
    b.when(events![
        tripped_elsewhere("byc_a", 3_200),
        tripped_elsewhere("byc_gone", 3_200)
    ]);
    // Recovery follows this unit's own heartbeats, as after its own trip.
    b.when(events![
        ready("byc_a", 10, 4_000),
        ready("byc_a", 10, 5_000)
    ]);
    assert_eq!(
        b.health_changes("byc_a"),
        [
            (Health::NoHeartbeat, Health::Healthy),
            (Health::Healthy, Health::BreakerOpen),
            (Health::BreakerOpen, Health::Recovering),
            (Health::Recovering, Health::Healthy),
        ]
    );
    expect_hot(&b.decide(request("after", ACME, GPT4O, 5_100)), "byc_a");
    // A trip from before the freshness window of the last heartbeat (15 s by default) is old
    // news: a unit that worked off a backlog does not take a healthy cluster out again.
    b.when(events![
        ready("byc_a", 10, 15_000),
        ready("byc_a", 10, 25_000),
        ready("byc_a", 10, 35_000),
        tripped_elsewhere("byc_a", 14_000)
    ]);
    expect_hot(&b.decide(request("late", ACME, GPT4O, 35_100)), "byc_a");
    assert_eq!(b.health_changes("byc_a").len(), 4);
}

#[test]
fn an_unhealthy_heartbeat_restarts_the_recovery_count() {
    let mut b = given(gpt4o_hot_lane());
    let hb = |status, t| heartbeat("byc_a", status, 10, t);
    b.when(events![
        hb(ClusterStatus::Down, 2_500),
        hb(ClusterStatus::Ready, 3_000),
        hb(ClusterStatus::Ready, 4_000),
        hb(ClusterStatus::Draining, 5_000),
        hb(ClusterStatus::Ready, 6_000),
        hb(ClusterStatus::Ready, 7_000),
    ]);
    let d = b.decide(request("r1", ACME, GPT4O, 7_100));
    expect_managed(&d, Reason::Failover);
    assert_eq!(verdicts(&d), [("byc_a", Verdict::Recovering)]);
    b.when(events![hb(ClusterStatus::Ready, 8_000)]);
    expect_hot(&b.decide(request("r2", ACME, GPT4O, 8_100)), "byc_a");
}

#[test]
fn a_cluster_back_from_a_stale_gap_must_earn_its_way_back() {
    let mut b = given(gpt4o_hot_lane());
    let d = b.decide(request("gap", ACME, GPT4O, 20_000));
    assert_eq!(verdicts(&d), [("byc_a", Verdict::Stale)]);
    // One late heartbeat is not enough (default: 3 in a row).
    b.when(events![ready("byc_a", 10, 20_000)]);
    let d = b.decide(request("late", ACME, GPT4O, 20_001));
    expect_managed(&d, Reason::Failover);
    assert_eq!(verdicts(&d), [("byc_a", Verdict::Recovering)]);
    b.when(events![
        ready("byc_a", 10, 21_000),
        ready("byc_a", 10, 22_000)
    ]);
    expect_hot(&b.decide(request("back", ACME, GPT4O, 22_001)), "byc_a");
}

#[test]
fn deregistration_removes_the_cluster() {
    let mut b = given(hot_lane(
        GPT4O,
        vec![cluster("byc_a", GPT4O, 10), cluster("byc_b", GPT4O, 10)],
    ));
    b.when(events![deregister("byc_a", 2_500)]);
    let d = b.decide(request("r1", ACME, GPT4O, 3_000));
    expect_hot(&d, "byc_b");
    assert_eq!(verdicts(&d), [("byc_b", Verdict::Chosen)]);

    // The last cluster gone: managed, with nothing left to consider.
    b.when(events![deregister("byc_b", 3_500)]);
    let d = b.decide(request("r2", ACME, GPT4O, 4_000));
    assert_eq!(
        (d.profile, d.mode),
        (Some(Profile::ManagedProvider), Mode::Live)
    );
    assert!(d.considered.is_empty(), "{:?}", d.considered);
}

// =================================================================================================
// 3. Lane lifecycle
// =================================================================================================

#[test]
fn a_lane_without_byoc_is_tail_traffic() {
    let mut b = given(vec![]);
    let d = b.decide(request("r1", ACME, GPT4O, 3_000));
    expect_managed(&d, Reason::Tail);
    assert!(d.considered.is_empty());
    assert_eq!(d.estimated_cost_micros, GPT4O_ESTIMATE);

    // A model without a price still routes; its estimate is 0 and the operator is warned.
    let d = b.decide(request("r2", ACME, HOUSE, 3_000));
    expect_managed(&d, Reason::Tail);
    assert_eq!((d.estimated_cost_micros, d.seq), (0, 1));
    assert!(b
        .out
        .warnings
        .iter()
        .any(|w| w.code == "price_missing" && w.message.contains(HOUSE)));
}

#[test]
fn a_lane_with_clusters_but_no_gate_pass_stays_managed() {
    let setup = events![cluster("byc_a", GPT4O, 10), ready("byc_a", 10, 1_000)];
    let d = given(setup).decide(request("r1", ACME, GPT4O, 3_000));
    expect_managed(&d, Reason::NotActivated);
    assert!(d.considered.is_empty());
    assert_eq!(d.estimated_cost_micros, GPT4O_ESTIMATE);
}

#[test]
fn a_demoted_lane_sends_traffic_back_to_managed() {
    let mut b = given(gpt4o_hot_lane());
    expect_hot(&b.decide(request("r1", ACME, GPT4O, 3_000)), "byc_a");
    b.when(events![deactivate(GPT4O, 3_500)]);
    let d = b.decide(request("r2", ACME, GPT4O, 4_000));
    expect_managed(&d, Reason::NotActivated);
    assert_eq!(d.estimated_cost_micros, GPT4O_ESTIMATE);
    // Activated again after a new gate pass.
    b.when(events![activate(GPT4O, 4_500)]);
    expect_hot(&b.decide(request("r3", ACME, GPT4O, 5_000)), "byc_a");
}

#[test]
fn activation_needs_a_stored_passing_untampered_fresh_gate_report() {
    let mut b = given(events![
        cluster("byc_a", GPT4O, 10),
        ready("byc_a", 10, 1_000)
    ]);
    let failed = gate_report(GPT4O, false, 0, 0.5);
    let stale = gate_report(GPT4O, true, -8 * 86_400_000, 0.5);
    let mut tampered = gate_report(GPT4O, false, 0, 0.5);
    tampered.passed = true;
    let passing = gate_report(GPT4O, true, 0, 0.5);
    b.when(events![
        failed.clone(),
        stale.clone(),
        tampered.clone(),
        passing.clone()
    ]);

    let refused = [
        "sha256:never-stored",
        &failed.digest,
        &stale.digest,
        &tampered.digest,
    ];
    for (i, digest) in refused.into_iter().enumerate() {
        b.when(events![activate_gated(GPT4O, digest, 2_000 + i as i64)]);
        let d = b.decide(request(
            &format!("refused{i}"),
            ACME,
            GPT4O,
            3_000 + i as i64,
        ));
        expect_managed(&d, Reason::NotActivated);
    }
    assert_eq!(
        b.out
            .warnings
            .iter()
            .filter(|w| w.code == "activation_refused")
            .count(),
        4
    );

    b.when(events![activate_gated(GPT4O, &passing.digest, 4_000)]);
    expect_hot(&b.decide(request("gated", ACME, GPT4O, 5_000)), "byc_a");
}

#[test]
fn an_active_lane_below_break_even_utilisation_is_demoted_to_managed() {
    // Break-even 50 %: after a one-hour window at ~1 % utilisation the lane goes back to managed.
    let report = gate_report(GPT4O, true, 0, 0.5);
    let digest = report.digest.clone();
    let mut b = given(events![
        cluster("byc_a", GPT4O, 10),
        ready("byc_a", 10, 1_000),
        report,
        activate_gated(GPT4O, &digest, 2_000),
    ]);
    let d = b.decide(RequestV1 {
        qos: Qos {
            deadline_ms: Some(60_000),
            ..request("r1", ACME, GPT4O, 3_000).qos
        },
        ..request("r1", ACME, GPT4O, 3_000)
    });
    expect_hot(&d, "byc_a");

    // The cluster stays healthy and heartbeating (a silent one would be failover, not idle).
    b.when(keep_alive("byc_a", 10, 2_000, 2_000 + 3_600_000));
    // The first request after the window (default one hour from the activation) closes it.
    let d = b.decide(request("r2", ACME, GPT4O, 2_000 + 3_600_000));
    expect_managed(&d, Reason::NotActivated);
    assert!(b
        .lane_events()
        .any(|(_, e)| matches!(e, LaneEvent::Deactivated { demoted: true, .. })));
    assert!(b.out.warnings.iter().any(|w| w.code == "lane_demoted"));
}

// =================================================================================================
// 4. Tenant policy and credential routes
// =================================================================================================

fn with_subscription(tenant: &str) -> TenantPolicyV1 {
    TenantPolicyV1 {
        subscriptions: vec!["openai".into()],
        ..policy(tenant)
    }
}

fn with_byok(tenant: &str) -> TenantPolicyV1 {
    TenantPolicyV1 {
        byok: vec!["openai".into()],
        ..policy(tenant)
    }
}

/// `considered` as a set, for checks that do not depend on the listing order.
fn verdict_set(d: &DecisionV1) -> BTreeSet<(&str, Verdict)> {
    d.considered
        .iter()
        .map(|c| (&*c.target, c.verdict))
        .collect()
}

#[test]
fn a_tenant_not_allowed_byoc_goes_managed_on_an_active_lane() {
    let managed_only = TenantPolicyV1 {
        allowed_profiles: Some(vec![ProfileClass::ManagedProvider]),
        ..policy(ACME)
    };
    let d = given([gpt4o_hot_lane(), events![managed_only]].concat())
        .decide(request("r1", ACME, GPT4O, 3_000));
    expect_managed(&d, Reason::TenantPolicy);
    assert!(d.considered.is_empty());
    assert_eq!(
        (d.estimated_cost_micros, d.policy_version),
        (GPT4O_ESTIMATE, 1)
    );
}

#[test]
fn clusters_outside_the_tenants_regions_are_passed_over() {
    let eu_only = TenantPolicyV1 {
        allowed_regions: Some(vec![EU.into()]),
        ..policy(ACME)
    };
    let us = ClusterRegisteredV1 {
        region: US.into(),
        ..cluster("byc_us", GPT4O, 10)
    };

    let d = given([hot_lane(GPT4O, vec![us.clone()]), events![eu_only.clone()]].concat())
        .decide(request("r1", ACME, GPT4O, 3_000));
    expect_managed(&d, Reason::TenantPolicy);
    assert_eq!(verdicts(&d), [("byc_us", Verdict::RegionNotAllowed)]);

    let d = given(
        [
            hot_lane(GPT4O, vec![us, cluster("byc_eu", GPT4O, 10)]),
            events![eu_only],
        ]
        .concat(),
    )
    .decide(request("r2", ACME, GPT4O, 3_000));
    expect_hot(&d, "byc_eu");
    assert_eq!(
        verdicts(&d),
        [
            ("byc_eu", Verdict::Chosen),
            ("byc_us", Verdict::RegionNotAllowed)
        ]
    );
}

#[test]
fn a_subscription_serves_first_at_no_marginal_cost() {
    let d = given([gpt4o_hot_lane(), events![with_subscription(ACME)]].concat())
        .decide(request("r1", ACME, GPT4O, 3_000));
    expect(
        &d,
        Some(Profile::Subscription),
        Mode::Live,
        Some(GPT4O),
        Reason::Subscription,
    );
    assert_eq!(d.estimated_cost_micros, 0);
    assert!(d.considered.is_empty());
}

#[test]
fn byok_serves_at_the_providers_list_price() {
    let d = given([gpt4o_hot_lane(), events![with_byok(ACME)]].concat())
        .decide(request("r1", ACME, GPT4O, 3_000));
    expect(
        &d,
        Some(Profile::Byok),
        Mode::Live,
        Some(GPT4O),
        Reason::Byok,
    );
    assert_eq!(d.estimated_cost_micros, GPT4O_ESTIMATE);
}

#[test]
fn credential_routes_are_skipped_while_their_provider_is_down() {
    let both = TenantPolicyV1 {
        byok: vec!["openai".into()],
        ..with_subscription(ACME)
    };
    let mut b = given(
        [
            gpt4o_hot_lane(),
            events![both, provider("openai", ProviderStatus::Down, 2_500)],
        ]
        .concat(),
    );

    // On the hot lane BYOC takes over; both skipped routes are on the record.
    let d = b.decide(request("r1", ACME, GPT4O, 3_000));
    expect_hot(&d, "byc_a");
    assert_eq!(
        verdict_set(&d),
        BTreeSet::from([
            ("subscription:openai", Verdict::ProviderDown),
            ("byok:openai", Verdict::ProviderDown),
            ("byc_a", Verdict::Chosen),
        ])
    );

    // On a tail lane of the same provider nothing is left: placeholder.
    let d = b.decide(request("r2", ACME, "openai/gpt-4o-mini", 3_000));
    expect_placeholder(&d, Reason::ManagedDown);
    assert_eq!(
        verdict_set(&d),
        BTreeSet::from([
            ("subscription:openai", Verdict::ProviderDown),
            ("byok:openai", Verdict::ProviderDown)
        ])
    );

    // The provider is back: the credential route serves again.
    b.when(events![provider("openai", ProviderStatus::Ok, 3_500)]);
    let d = b.decide(request("r3", ACME, GPT4O, 4_000));
    expect(
        &d,
        Some(Profile::Subscription),
        Mode::Live,
        Some(GPT4O),
        Reason::Subscription,
    );
}

#[test]
fn each_tenant_has_its_own_escalation_order() {
    use ProfileClass::*;
    let byoc_first = TenantPolicyV1 {
        escalation: Some(vec![Byoc, Subscription, ManagedProvider]),
        ..with_subscription(ACME)
    };
    let mut b = given(
        [
            gpt4o_hot_lane(),
            events![byoc_first, with_subscription(OTHER)],
        ]
        .concat(),
    );

    expect_hot(&b.decide(request("a1", ACME, GPT4O, 3_000)), "byc_a");
    // The default order puts the subscription first.
    let d = b.decide(request("o1", OTHER, GPT4O, 3_000));
    expect(
        &d,
        Some(Profile::Subscription),
        Mode::Live,
        Some(GPT4O),
        Reason::Subscription,
    );

    // The cluster fails: the BYOC-first tenant moves on to its next step, the subscription.
    b.when(events![heartbeat("byc_a", ClusterStatus::Down, 10, 3_500)]);
    let d = b.decide(request("a2", ACME, GPT4O, 4_000));
    expect(
        &d,
        Some(Profile::Subscription),
        Mode::Live,
        Some(GPT4O),
        Reason::Subscription,
    );
    assert_eq!(verdicts(&d), [("byc_a", Verdict::Down)]);
}

#[test]
fn request_allowed_profiles_narrow_the_tenants_and_never_widen_them() {
    use ProfileClass::*;
    let managed_only = TenantPolicyV1 {
        allowed_profiles: Some(vec![ManagedProvider]),
        ..policy(OTHER)
    };
    let mut b = given(
        [
            gpt4o_hot_lane(),
            events![with_subscription(ACME), managed_only],
        ]
        .concat(),
    );
    let narrowed = |id: &str, tenant: &str, profiles: Vec<ProfileClass>| RequestV1 {
        allowed_profiles: Some(profiles),
        ..request(id, tenant, GPT4O, 3_000)
    };

    let d = b.decide(request("r0", ACME, GPT4O, 3_000));
    assert_eq!(d.reason, Reason::Subscription);
    expect_hot(
        &b.decide(narrowed("r1", ACME, vec![Byoc, ManagedProvider])),
        "byc_a",
    );
    let d = b.decide(narrowed("r2", ACME, vec![ManagedProvider]));
    expect_managed(&d, Reason::TenantPolicy);
    assert_eq!(d.estimated_cost_micros, GPT4O_ESTIMATE);

    // OTHER may only use managed; asking for BYOC leaves nothing that may serve.
    let d = b.decide(narrowed("r3", OTHER, vec![Byoc]));
    expect_placeholder(&d, Reason::TenantPolicy);
    assert!(d.considered.is_empty());
}

// =================================================================================================
// 5. Admission
// =================================================================================================

#[test]
fn an_unknown_tenant_gets_the_permissive_default_policy() {
    let d = given(gpt4o_hot_lane()).decide(request("r1", "prj_nobody", GPT4O, 3_000));
    expect_hot(&d, "byc_a");
    assert_eq!(d.policy_version, 0);
}

#[test]
fn an_unknown_tenant_is_rejected_when_configured() {
    let cfg = RoutingConfig {
        unknown_tenant: UnknownTenant::Reject,
        ..RoutingConfig::default()
    };
    let mut b = given_config(cfg, [gpt4o_hot_lane(), events![policy(ACME)]].concat());
    let d = b.decide(request("r1", "prj_nobody", GPT4O, 3_000));
    expect_rejected(&d, Reason::UnknownTenant);
    assert_eq!(d.policy_version, 0);
    // A tenant with a policy is routed as usual.
    let d = b.decide(request("r2", ACME, GPT4O, 3_000));
    expect_hot(&d, "byc_a");
    assert_eq!(d.policy_version, 1);
}

#[test]
fn a_request_from_outside_the_tenants_regions_is_rejected() {
    let eu_only = TenantPolicyV1 {
        allowed_regions: Some(vec![EU.into()]),
        ..policy(ACME)
    };
    let mut b = given([gpt4o_hot_lane(), events![eu_only]].concat());
    let from = |id: &str, region: &str| RequestV1 {
        region: Some(region.into()),
        ..request(id, ACME, GPT4O, 3_000)
    };
    expect_rejected(&b.decide(from("r1", US)), Reason::RegionNotAllowed);
    expect_hot(&b.decide(from("r2", EU)), "byc_a");
}

#[test]
fn invalid_requests_are_rejected_with_the_reason_in_detail() {
    let mut b = given(gpt4o_hot_lane());
    let too_much_cache = RequestV1 {
        cached_input_tokens: 2_000,
        ..request("r1", ACME, GPT4O, 3_000)
    };
    let d = b.decide(too_much_cache);
    expect_rejected(&d, Reason::InvalidRequest);
    assert!(
        d.detail
            .as_deref()
            .is_some_and(|s| s.contains("cached_input_tokens")),
        "{:?}",
        d.detail
    );

    // gpt-4o takes at most 128 000 input tokens.
    let too_long = RequestV1 {
        input_tokens: 200_000,
        ..request("r2", ACME, GPT4O, 3_000)
    };
    let d = b.decide(too_long);
    expect_rejected(&d, Reason::InvalidRequest);
    assert!(
        d.detail.as_deref().is_some_and(|s| s.contains("128000")),
        "{:?}",
        d.detail
    );

    // Rejections use no capacity: all 9 slots are still free.
    let ds = b.when(burst("ok", 9, ACME, GPT4O, 3_100));
    assert!(ds.iter().all(|d| d.reason == Reason::HotLane));
}

fn capped(tenant: &str, budget_micros: u64, overage: OverageMode) -> TenantPolicyV1 {
    TenantPolicyV1 {
        monthly_budget_micros: Some(budget_micros),
        overage_mode: Some(overage),
        ..policy(tenant)
    }
}

#[test]
fn a_spent_budget_with_overage_pause_rejects_with_quota_exceeded() {
    let mut b = given(events![
        capped(ACME, 10_000, OverageMode::Pause),
        billed("b1", ACME, 9_990, 1_000)
    ]);
    expect_managed(&b.decide(request("r1", ACME, GPT4O, 2_000)), Reason::Tail);
    b.when(events![billed("b2", ACME, 10, 2_500)]);
    expect_rejected(
        &b.decide(request("r2", ACME, GPT4O, 3_000)),
        Reason::QuotaExceeded,
    );
    // Other tenants are not affected.
    expect_managed(&b.decide(request("r3", OTHER, GPT4O, 3_000)), Reason::Tail);
}

#[test]
fn a_spent_budget_with_overage_allow_keeps_serving() {
    let mut b = given(events![
        capped(ACME, 10_000, OverageMode::Allow),
        billed("b1", ACME, 20_000, 1_000)
    ]);
    expect_managed(&b.decide(request("r1", ACME, GPT4O, 3_000)), Reason::Tail);
    assert_eq!(
        b.budget_crossings(ACME),
        [(50, 20_000), (80, 20_000), (100, 20_000)]
    );
}

// =================================================================================================
// 6. Budget
// =================================================================================================

#[test]
fn budget_thresholds_fire_at_50_80_and_100_percent_of_billed_managed_spend() {
    let mut b = given(events![capped(ACME, 100_000, OverageMode::Allow)]);
    b.when(events![billed("m1", ACME, 49_990, 1_000)]);
    assert_eq!(b.budget_crossings(ACME), []);
    b.when(events![billed("m2", ACME, 10, 1_100)]);
    assert_eq!(b.budget_crossings(ACME), [(50, 50_000)]);

    // Not billed to the tenant: BYOC, subscription and BYOK traffic, failed requests, unpriced models.
    let not_billed = |id: &str, profile| CompletionV1 {
        profile: Some(profile),
        ..billed(id, ACME, 90_000, 1_200)
    };
    b.when(events![
        not_billed("byoc", Profile::ByocDynamo),
        not_billed("sub", Profile::Subscription),
        not_billed("byok", Profile::Byok),
        CompletionV1 {
            outcome: Outcome::Failed,
            ..billed("failed", ACME, 90_000, 1_300)
        },
        CompletionV1 {
            model: HOUSE.into(),
            ..billed("house", ACME, 90_000, 1_400)
        },
    ]);
    assert_eq!(b.budget_crossings(ACME), [(50, 50_000)]);

    b.when(events![billed("m3", ACME, 30_000, 2_000)]);
    assert_eq!(b.budget_crossings(ACME), [(50, 50_000), (80, 80_000)]);
    b.when(events![
        billed("m4", ACME, 20_000, 3_000),
        billed("m5", ACME, 20_000, 4_000)
    ]);
    // Each threshold fires once per month.
    assert_eq!(
        b.budget_crossings(ACME),
        [(50, 50_000), (80, 80_000), (100, 100_000)]
    );
}

#[test]
fn a_new_month_resets_the_spend() {
    assert_eq!(at(DECEMBER).to_rfc3339(), "2026-12-01T00:00:00.000Z");
    let mut b = given(events![
        capped(ACME, 10_000, OverageMode::Pause),
        billed("nov", ACME, 10_000, 1_000)
    ]);
    assert_eq!(
        b.budget_crossings(ACME),
        [(50, 10_000), (80, 10_000), (100, 10_000)]
    );
    expect_rejected(
        &b.decide(request("late-nov", ACME, GPT4O, DECEMBER - 1)),
        Reason::QuotaExceeded,
    );

    // December: the pause lifts before any December spend is recorded …
    expect_managed(
        &b.decide(request("dec", ACME, GPT4O, DECEMBER)),
        Reason::Tail,
    );
    // … and the thresholds count from zero again.
    b.when(events![billed("dec-1", ACME, 5_000, DECEMBER + 1_000)]);
    assert_eq!(b.budget_crossings(ACME)[3..], [(50, 5_000)]);
}

/// What `tenant` spent in another unit (a `zumik.usage.v1` record from unit 1).
fn elsewhere(tenant: &str, micros: u64, at_ms: i64) -> UsageV1 {
    UsageV1 {
        tenant_id: tenant.into(),
        unit: 1,
        requests: 3,
        cost_micros: micros,
        unit_spent_micros: None,
        ts: at(at_ms),
    }
}

/// The same from a unit that sends its month total for the tenant with each record.
fn elsewhere_totalling(tenant: &str, micros: u64, total: u64, at_ms: i64) -> UsageV1 {
    UsageV1 {
        unit_spent_micros: Some(total),
        ..elsewhere(tenant, micros, at_ms)
    }
}

#[test]
fn another_units_usage_sent_again_counts_once() {
    let mut b = given(events![
        capped(ACME, 10_000, OverageMode::Pause),
        billed("here", ACME, 4_000, 1_000)
    ]);
    b.when(events![
        elsewhere_totalling(ACME, 2_000, 2_000, 1_100),
        elsewhere_totalling(ACME, 3_000, 5_000, 1_200)
    ]);
    assert_eq!(b.budget_crossings(ACME), [(50, 6_000), (80, 9_000)]);
    // That unit crashed before committing and decides the same completions again, in other
    // batches: its records repeat spend already counted, and add nothing.
    b.when(events![
        elsewhere_totalling(ACME, 1_000, 1_000, 1_300),
        elsewhere_totalling(ACME, 4_000, 5_000, 1_400)
    ]);
    expect_managed(&b.decide(request("r1", ACME, GPT4O, 1_500)), Reason::Tail);
    // Its next completion is new spend: 10 000 reached.
    b.when(events![elsewhere_totalling(ACME, 1_000, 6_000, 1_600)]);
    assert_eq!(
        b.budget_crossings(ACME),
        [(50, 6_000), (80, 9_000), (100, 10_000)]
    );
    expect_rejected(
        &b.decide(request("r2", ACME, GPT4O, 2_000)),
        Reason::QuotaExceeded,
    );
    // December: that unit's total counts from zero again, and in full.
    b.when(events![elsewhere_totalling(
        ACME,
        5_000,
        5_000,
        DECEMBER + 1_000
    )]);
    assert_eq!(b.budget_crossings(ACME)[3..], [(50, 5_000)]);
}

#[test]
fn spend_in_other_units_counts_against_the_budget() {
    let mut b = given(events![
        capped(ACME, 10_000, OverageMode::Pause),
        billed("here", ACME, 4_000, 1_000)
    ]);
    b.when(events![elsewhere(ACME, 5_000, 1_500)]);
    assert_eq!(b.budget_crossings(ACME), [(50, 9_000), (80, 9_000)]);
    expect_managed(&b.decide(request("r1", ACME, GPT4O, 2_000)), Reason::Tail);
    // Another unit's spend alone takes the tenant over its budget.
    b.when(events![elsewhere(ACME, 1_000, 2_500)]);
    assert_eq!(
        b.budget_crossings(ACME),
        [(50, 9_000), (80, 9_000), (100, 10_000)]
    );
    expect_rejected(
        &b.decide(request("r2", ACME, GPT4O, 3_000)),
        Reason::QuotaExceeded,
    );
}

#[test]
fn late_spend_from_last_month_does_not_take_the_tenant_back_to_it() {
    let mut b = given(events![
        capped(ACME, 10_000, OverageMode::Pause),
        billed("dec-1", ACME, 6_000, DECEMBER + 1_000)
    ]);
    // November's last minutes, reported by another unit after December began (and one of this
    // unit's own completions, late): recorded, not charged to December, no month rewind.
    b.when(events![
        elsewhere(ACME, 9_000, DECEMBER - 1),
        billed("late", ACME, 9_000, DECEMBER - 2)
    ]);
    assert_eq!(b.budget_crossings(ACME), [(50, 6_000)]);
    expect_managed(
        &b.decide(request("r1", ACME, GPT4O, DECEMBER + 2_000)),
        Reason::Tail,
    );
    b.when(events![elsewhere(ACME, 4_000, DECEMBER + 3_000)]);
    expect_rejected(
        &b.decide(request("r2", ACME, GPT4O, DECEMBER + 4_000)),
        Reason::QuotaExceeded,
    );
}

// =================================================================================================
// 7. Managed provider down
// =================================================================================================

fn bounded(tenant: &str, boundary: DataBoundary) -> TenantPolicyV1 {
    TenantPolicyV1 {
        data_boundary: Some(boundary),
        ..policy(tenant)
    }
}

#[test]
fn managed_down_without_openrouter_fallback_is_a_placeholder() {
    // Reported before the lane was ever seen: the lane starts out knowing its provider is down.
    let mut b = given(events![
        bounded(ACME, DataBoundary::Project),
        provider("openai", ProviderStatus::Down, 1_000)
    ]);
    let d = b.decide(request("r1", ACME, GPT4O, 3_000));
    expect_placeholder(&d, Reason::ManagedDown);
    assert!(b.emergency_fallbacks().is_empty());

    b.when(events![provider("openai", ProviderStatus::Ok, 4_000)]);
    let d = b.decide(request("r2", ACME, GPT4O, 5_000));
    expect_managed(&d, Reason::Tail);
    assert_eq!(d.estimated_cost_micros, GPT4O_ESTIMATE);
}

#[test]
fn a_hot_lane_keeps_serving_while_its_managed_provider_is_down_and_overflow_gets_a_placeholder() {
    let one_slot = hot_lane(GPT4O, vec![cluster("byc_a", GPT4O, 1)]);
    let mut b = given(
        [
            one_slot,
            events![provider("openai", ProviderStatus::Down, 2_500)],
        ]
        .concat(),
    );
    let ds = b.when(burst("r", 2, ACME, GPT4O, 3_000));
    expect_hot(&ds[0], "byc_a");
    expect_placeholder(&ds[1], Reason::ManagedDown);
    assert_eq!(verdicts(&ds[1]), [("byc_a", Verdict::Saturated)]);
}

#[test]
fn managed_down_falls_back_to_openrouter_only_when_enabled_and_the_boundary_is_project() {
    let tenants = events![
        bounded("prj_project", DataBoundary::Project),
        bounded("prj_strict", DataBoundary::Strict),
        bounded("prj_no_or", DataBoundary::NoOpenrouter),
        provider("openai", ProviderStatus::Down, 1_000),
    ];
    let cfg = RoutingConfig {
        openrouter_fallback: true,
        ..RoutingConfig::default()
    };
    let mut b = given_config(cfg, tenants.clone());
    for (id, tenant) in [("p1", "prj_project"), ("u1", "prj_unknown")] {
        let d = b.decide(request(id, tenant, GPT4O, 3_000));
        let target = Some("openrouter/openai/gpt-4o");
        expect(
            &d,
            Some(Profile::ManagedProvider),
            Mode::OpenrouterFallback,
            target,
            Reason::ManagedDown,
        );
        assert_eq!(d.estimated_cost_micros, GPT4O_ESTIMATE);
    }
    for (id, tenant) in [("s1", "prj_strict"), ("n1", "prj_no_or")] {
        expect_placeholder(
            &b.decide(request(id, tenant, GPT4O, 3_000)),
            Reason::ManagedDown,
        );
    }
    // Every emergency route is an audit event in the journal.
    assert_eq!(b.emergency_fallbacks(), ["p1", "u1"]);

    // Disabled globally (the default): even a `project` tenant gets a placeholder.
    let mut b = given(tenants);
    expect_placeholder(
        &b.decide(request("p2", "prj_project", GPT4O, 3_000)),
        Reason::ManagedDown,
    );
    assert!(b.emergency_fallbacks().is_empty());
}

// =================================================================================================
// 8. Coverage: the scenarios above reach every reason and every mode
// =================================================================================================

/// Every scenario that must pass (the ignored bug scenarios are left out on purpose).
const SCENARIOS: &[fn()] = &[
    hot_lane_serves_on_the_active_lanes_cluster,
    overflow_when_reserved_reaches_max_inflight_times_headroom,
    a_completion_releases_its_slot,
    a_reservation_without_completion_expires_after_its_deadline_in_event_time,
    a_heartbeat_resets_max_inflight,
    the_least_utilised_cluster_wins_and_ties_go_to_the_smaller_cluster_id,
    a_tenants_dedicated_cluster_comes_first,
    a_dedicated_cluster_never_serves_another_tenant,
    failover_when_the_cluster_is_down,
    failover_when_the_cluster_is_draining,
    failover_when_the_heartbeat_reports_a_high_error_rate,
    failover_when_the_heartbeat_is_stale,
    failover_when_the_cluster_never_sent_a_heartbeat,
    the_breaker_trips_on_completion_errors_recovers_after_n_heartbeats_then_slow_starts,
    a_breaker_opened_in_another_unit_takes_the_cluster_out_here_until_it_recovers,
    an_unhealthy_heartbeat_restarts_the_recovery_count,
    a_cluster_back_from_a_stale_gap_must_earn_its_way_back,
    deregistration_removes_the_cluster,
    a_lane_without_byoc_is_tail_traffic,
    a_lane_with_clusters_but_no_gate_pass_stays_managed,
    a_demoted_lane_sends_traffic_back_to_managed,
    activation_needs_a_stored_passing_untampered_fresh_gate_report,
    an_active_lane_below_break_even_utilisation_is_demoted_to_managed,
    a_tenant_not_allowed_byoc_goes_managed_on_an_active_lane,
    clusters_outside_the_tenants_regions_are_passed_over,
    a_subscription_serves_first_at_no_marginal_cost,
    byok_serves_at_the_providers_list_price,
    credential_routes_are_skipped_while_their_provider_is_down,
    each_tenant_has_its_own_escalation_order,
    request_allowed_profiles_narrow_the_tenants_and_never_widen_them,
    an_unknown_tenant_gets_the_permissive_default_policy,
    an_unknown_tenant_is_rejected_when_configured,
    a_request_from_outside_the_tenants_regions_is_rejected,
    invalid_requests_are_rejected_with_the_reason_in_detail,
    a_spent_budget_with_overage_pause_rejects_with_quota_exceeded,
    a_spent_budget_with_overage_allow_keeps_serving,
    budget_thresholds_fire_at_50_80_and_100_percent_of_billed_managed_spend,
    a_new_month_resets_the_spend,
    spend_in_other_units_counts_against_the_budget,
    late_spend_from_last_month_does_not_take_the_tenant_back_to_it,
    managed_down_without_openrouter_fallback_is_a_placeholder,
    a_hot_lane_keeps_serving_while_its_managed_provider_is_down_and_overflow_gets_a_placeholder,
    managed_down_falls_back_to_openrouter_only_when_enabled_and_the_boundary_is_project,
];

/// Every mode; the match fails to compile when a mode is added, so this list cannot go stale.
fn all_modes() -> BTreeSet<Mode> {
    let modes = [
        Mode::Live,
        Mode::OpenrouterFallback,
        Mode::Placeholder,
        Mode::Rejected,
    ];
    for m in modes {
        match m {
            Mode::Live | Mode::OpenrouterFallback | Mode::Placeholder | Mode::Rejected => {}
        }
    }
    modes.into()
}

#[test]
fn the_scenarios_reach_every_reason_and_every_mode() {
    let seen = recording(|| SCENARIOS.iter().for_each(|scenario| scenario()));
    let reasons: BTreeSet<Reason> = seen.iter().map(|d| d.reason).collect();
    let missing: Vec<&str> = Reason::ALL
        .iter()
        .filter(|r| !reasons.contains(r))
        .map(|r| r.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "no scenario reaches reasons {missing:?}"
    );
    assert_eq!(reasons, Reason::ALL.into());
    let modes: BTreeSet<Mode> = seen.iter().map(|d| d.mode).collect();
    assert_eq!(modes, all_modes(), "modes reached by the scenarios");
}

// =================================================================================================
// 9. Regressions: bugs found by these scenarios, fixed in the core
// =================================================================================================

#[test]
fn a_cluster_with_max_inflight_one_takes_one_request() {
    let ds = given(hot_lane(GPT4O, vec![cluster("byc_a", GPT4O, 1)]))
        .when(burst("r", 2, ACME, GPT4O, 3_000));
    expect_hot(&ds[0], "byc_a");
    expect_managed(&ds[1], Reason::Overflow);
}

#[test]
/// By design (docs/routing.md): a cluster's capacity is split evenly among its lanes, each lane
/// counting only its own reservations, so lanes on different partitions never need to
/// coordinate. max_inflight 10 × headroom 0.9 over 2 lanes = 4.5 → 5 slots per lane.
fn a_cluster_serving_two_lanes_gives_each_lane_an_even_share() {
    let lanes = vec![GPT4O.into(), "openai/gpt-4o-mini".into()];
    let two_lanes = ClusterRegisteredV1 {
        lanes,
        ..cluster("byc_a", GPT4O, 10)
    };
    let ds = given(hot_lane(GPT4O, vec![two_lanes])).when(burst("r", 6, ACME, GPT4O, 3_000));
    assert_eq!(reasons(&ds), hot_then_overflow(5));
}

#[test]
fn considered_lists_clusters_before_credential_routes() {
    let setup = [
        gpt4o_hot_lane(),
        events![
            with_byok(ACME),
            provider("openai", ProviderStatus::Down, 2_500)
        ],
    ]
    .concat();
    let d = given(setup).decide(request("r1", ACME, GPT4O, 3_000));
    assert_eq!(
        verdicts(&d),
        [
            ("byc_a", Verdict::Chosen),
            ("byok:openai", Verdict::ProviderDown)
        ]
    );
}

#[test]
fn a_lowered_budget_still_reports_the_thresholds_the_spend_now_passes() {
    let mut b = given(events![
        capped(ACME, 100_000, OverageMode::Allow),
        billed("m1", ACME, 60_000, 1_000)
    ]);
    // 60 000 of a new 70 000 budget is 86 %: past the 80 % threshold.
    b.when(events![TenantPolicyV1 {
        ts: at(2_000),
        ..capped(ACME, 70_000, OverageMode::Allow)
    }]);
    b.when(events![billed("m2", ACME, 10, 3_000)]);
    let pcts: Vec<u8> = b
        .budget_crossings(ACME)
        .into_iter()
        .map(|(pct, _)| pct)
        .collect();
    assert_eq!(pcts, [50, 80]);
}

#[test]
fn journal_events_carry_event_time_from_the_inputs() {
    let b = given(events![
        provider("openai", ProviderStatus::Down, 1_000),
        request("r1", ACME, GPT4O, 3_000)
    ]);
    let stamps: Vec<Timestamp> = b
        .lane_events()
        .filter_map(|(_, e)| match e {
            LaneEvent::ProviderHealthChanged { ts, .. } => Some(*ts),
            _ => None,
        })
        .collect();
    assert_eq!(stamps.len(), 1);
    assert!(
        (at(1_000)..=at(3_000)).contains(&stamps[0]),
        "ProviderHealthChanged at {}",
        stamps[0]
    );
}

#[test]
fn expired_reservations_stop_counting_as_busy_at_their_deadline() {
    let report = gate_report(GPT4O, true, 0, 0.5);
    let digest = report.digest.clone();
    let mut b = given(events![
        cluster("byc_a", GPT4O, 10),
        ready("byc_a", 10, 1_000),
        report,
        activate_gated(GPT4O, &digest, 2_000),
    ]);
    let lost = |i: i64| RequestV1 {
        qos: Qos {
            deadline_ms: Some(1_000),
            ..request("-", ACME, GPT4O, 0).qos
        },
        ..request(&format!("lost{i}"), ACME, GPT4O, 3_000 + i)
    };
    let ds = b.when((0..9).map(|i| lost(i).into_event()).collect());
    assert!(ds.iter().all(|d| d.reason == Reason::HotLane));
    // Busy for ~1 s of a one-hour window: far below the 45 % demotion floor.
    b.when(keep_alive("byc_a", 10, 3_100, 2_000 + 3_600_000));
    let d = b.decide(request("r2", ACME, GPT4O, 2_000 + 3_600_000));
    expect_managed(&d, Reason::NotActivated);
}

#[test]
fn a_resent_request_still_in_flight_is_rejected_not_reserved_twice() {
    let mut b = given(hot_lane(GPT4O, vec![cluster("byc_a", GPT4O, 10)]));
    let first = b.decide(request("r1", ACME, GPT4O, 3_000));
    expect_hot(&first, "byc_a");
    let again = b.decide(request("r1", ACME, GPT4O, 3_100));
    assert_eq!(
        (again.mode, again.reason),
        (Mode::Rejected, Reason::InvalidRequest)
    );
    assert!(
        again
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("already in flight"),
        "{again:?}"
    );
    // The resend reserved nothing: the next request sees one slot taken, not two.
    let next = b.decide(request("r2", ACME, GPT4O, 3_200));
    expect_hot(&next, "byc_a");
}

#[test]
fn a_strict_data_boundary_keeps_a_tenant_off_shared_clusters() {
    let setup = [
        hot_lane(
            GPT4O,
            vec![
                cluster("byc_a", GPT4O, 10),
                dedicated(cluster("byc_z", GPT4O, 10), "prj_strict"),
            ],
        ),
        events![
            bounded("prj_strict", DataBoundary::Strict),
            bounded("prj_other_strict", DataBoundary::Strict)
        ],
    ]
    .concat();
    let mut b = given(setup);
    let d = b.decide(request("s1", "prj_strict", GPT4O, 3_000));
    expect_hot(&d, "byc_z");
    assert_eq!(
        verdicts(&d),
        [("byc_a", Verdict::DataBoundary), ("byc_z", Verdict::Chosen)]
    );
    let d = b.decide(request("s2", "prj_other_strict", GPT4O, 3_000));
    expect_managed(&d, Reason::TenantPolicy);
    assert_eq!(
        verdicts(&d),
        [
            ("byc_a", Verdict::DataBoundary),
            ("byc_z", Verdict::DedicatedToOtherTenant)
        ]
    );
}

/// Ready heartbeats every 10 s in `(from, to)`: a healthy cluster that nobody uses.
fn keep_alive(cluster_id: &str, max_inflight: u32, from: i64, to: i64) -> Vec<InputEvent> {
    (1..)
        .map(|i| from + i * 10_000)
        .take_while(|&t| t < to)
        .map(|t| ready(cluster_id, max_inflight, t).into_event())
        .collect()
}
