//! Property tests of the routing core ([`zumik::core::Router`]) over random, well-formed event
//! sequences (DESIGN §4, §6).
//!
//! The generator builds small, realistic worlds: four lanes (`openai/gpt-4o`,
//! `fireworks/qwen3-coder-480b-a35b-instruct`, a revisioned `openai/gpt-4o-mini`, and the
//! unpriced `acme/house-model`); 1–4 BYOC clusters (shared or dedicated, in different regions,
//! `max_inflight` 1–6) that heartbeat periodically, change status (every status, error rates,
//! autoscaled `max_inflight`), fall silent, re-register with other lanes or owners, deregister;
//! tenant policies (profiles, regions, subscriptions, BYOK, budgets with `pause`/`allow`, data
//! boundaries, escalation orders); lanes activated by trusted facts or by the gated command
//! naming stored gate reports (passed or failed, fresh or stale, some altered after sealing),
//! deactivated by command or demoted by the lane itself; provider health; requests and
//! bursts (with and without deadline, region and `allowed_profiles`, a few with more cached than
//! input tokens); completions of earlier served requests with every outcome. Event time is
//! mostly non-decreasing, with late events and long gaps. The routing config varies too
//! (headroom, staleness, deadlines, breaker, slow start, unknown tenants, OpenRouter fallback,
//! report age and demotion).
//!
//! Properties, one test each:
//! 1. **determinism** — the same events give byte-identical encoded decisions (and identical
//!    journals), whether or not the journal is recorded;
//! 2. **snapshot/restore** — cutting a run at random points, `snapshot()`ing and restoring a new
//!    router from the bytes changes neither the decisions (byte for byte) nor the final state;
//!    and (separate test) snapshot bytes are a function of the state alone: a restored snapshot
//!    snapshots to the same bytes, and an interrupted run ends with the uninterrupted run's bytes;
//! 3. **never drop** — every request yields exactly one decision, in order, carrying its
//!    request id; other events yield none; per-lane `seq` goes up by exactly 1;
//! 4. **isolation** — a decision served by a cluster dedicated to tenant T belongs to T;
//! 5. **capacity** — after every event, each lane's reserved count on each cluster equals its
//!    reservations there, the lane's view of the cluster is current, and routing never pushes the
//!    count above the lane's share of `max_inflight × headroom` (nor a BYOC decision above the
//!    slow-start limit); the lanes' shares add up to the cluster's slots. A heartbeat or
//!    re-registration may shrink a share under requests already in flight; that is not a
//!    violation, adding to them is;
//! 6. **no leak** — after the sequence, one request per lane beyond every deadline leaves no
//!    reservation but the probe's own;
//! 7. **audit replay** — the journal alone re-derives every decision: the auditor replays it
//!    with zero mismatches and rebuilds the router's lane, cluster and tenant states.
//!
//! 8. **actors** — the actix actors (`zumik::actors::ActorEngine`, one actor per lane, cluster
//!    and tenant) give, event by event, the inline router's decision bytes, journal records and
//!    warnings, and the same snapshot bytes at random cuts; restarting the actors from the inline
//!    router's snapshot there changes nothing;
//! 9. **one-step path** — a request or completion on an existing lane, routed or completed and
//!    applied in one step (`lane_hot_step`, the per-request path), gives exactly what the general
//!    `lane_step` gives the same command after the same expiry: decisions, journal record,
//!    warnings, follow-ups and lane state, deadlines included.
//!
//! `redelivered_requests_keep_capacity_exact` runs 3, 5 and 6 with some requests delivered twice
//! (at-least-once producers). `generator_reaches_the_paths_the_properties_are_about` checks that
//! the sequences really hit hot lanes, overflow, failover, expiry, the breaker, slow start,
//! refused activations, demotions and every reason code and verdict, so no property holds
//! vacuously.
//!
//! A failing property prints its shrunk case, up to the failing event, as a `zumik.toml` plus
//! JSONL events, ready for `zumik decide --config … --events …`. `PROPTEST_CASES=N` overrides the
//! number of cases (default 256 per property).

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, LazyLock};

use proptest::prelude::*;
use proptest::sample::{select, subsequence, Index};
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use zumik::actors::ActorEngine;
use zumik::core::audit::Auditor;
use zumik::core::cluster::{ClusterEvent, Health};
use zumik::core::config::{BreakerConfig, GateConfig, UnknownTenant};
use zumik::core::lane::{effective_limit, LaneCommand, LaneEvent, LaneState};
use zumik::core::router::{
    default_tenant_view, lane_hot_step, lane_step, JournalEntry, RouterState,
};
use zumik::core::tenant::{TenantEvent, TenantPolicy};
use zumik::core::{Output, PriceTable, Router, RoutingConfig};
use zumik::events::codec::{decode_input, encode_decision, encode_input};
use zumik::events::Name;
use zumik::events::{
    ClusterDeregisteredV1, ClusterHeartbeatV1, ClusterRegisteredV1, ClusterStatus, CompletionV1,
    DataBoundary, DecisionV1, GateReportV1, InputEvent, LaneActivateV1, LaneActivatedV1,
    LaneDeactivatedV1, Mode, Outcome, OverageMode, Profile, ProfileClass, ProviderHealthV1,
    ProviderStatus, Qos, Reason, RequestV1, Stack, TenantPolicyV1, Timestamp, Verdict, Window,
};

// ---------------------------------------------------------------------------------------------
// The world the generator draws from.

/// Priced (`openai/gpt-4o`, the Fireworks coder, the revisioned mini) and unpriced lanes.
const LANES: [&str; 4] = [
    "openai/gpt-4o",
    "fireworks/qwen3-coder-480b-a35b-instruct",
    "acme/house-model",
    "openai/gpt-4o-mini@2024-07-18",
];
const PROVIDERS: [&str; 3] = ["openai", "fireworks", "acme"];
/// `prj_d` never gets a policy: it always runs under the default.
const TENANTS: [&str; 4] = ["prj_a", "prj_b", "prj_c", "prj_d"];
const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "ap-south-1"];
const PROFILE_CLASSES: [ProfileClass; 4] = [
    ProfileClass::Subscription,
    ProfileClass::Byok,
    ProfileClass::Byoc,
    ProfileClass::ManagedProvider,
];
/// First event times: mid-month, and one minute before a month (and budget) boundary.
const STARTS: [&str; 2] = ["2026-11-24T10:00:00Z", "2026-11-30T23:59:00Z"];

static PRICES: LazyLock<Arc<PriceTable>> = LazyLock::new(|| Arc::new(PriceTable::embedded()));

fn prices() -> Arc<PriceTable> {
    PRICES.clone()
}

fn cluster_id(i: usize) -> String {
    format!("byc_{i}")
}

// ---------------------------------------------------------------------------------------------
// Generated plan: abstract operations (indices, not ids) so shrinking stays well-formed.

#[derive(Debug, Clone)]
struct ClusterSpec {
    region: usize,
    stack: Stack,
    lanes: Vec<usize>,
    max_inflight: u32,
    dedicated_to: Option<usize>,
    /// Heartbeat period, event-time ms.
    period_ms: i64,
}

#[derive(Debug, Clone)]
struct PolicySpec {
    regions: Option<Vec<usize>>,
    profiles: Option<Vec<ProfileClass>>,
    boundary: Option<DataBoundary>,
    subscriptions: Option<Vec<usize>>,
    byok: Option<Vec<usize>>,
    budget_micros: Option<u64>,
    overage: Option<OverageMode>,
    escalation: Option<Vec<ProfileClass>>,
}

#[derive(Debug, Clone)]
enum Cached {
    /// `input × quarters / 4` cached tokens.
    Quarters(u32),
    /// More cached than input tokens (the core must reject it, not crash).
    Over(u32),
}

#[derive(Debug, Clone)]
struct RequestSpec {
    lane: usize,
    tenant: usize,
    input: u32,
    cached: Cached,
    max_output: u32,
    deadline_ms: Option<u32>,
    region: Option<usize>,
    allowed: Option<Vec<ProfileClass>>,
    interactive: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Request(RequestSpec),
    /// `n` copies of a request (fresh ids) within a few milliseconds: a traffic burst.
    Burst {
        request: RequestSpec,
        n: u32,
    },
    /// Completes an earlier served request (`again`: possibly one already completed); on the
    /// case's flaky cluster, `flaky` turns the outcome into a failure.
    Complete {
        pick: Index,
        again: bool,
        outcome: Outcome,
        flaky: bool,
        report_profile: bool,
        output_pct: u32,
    },
    /// The cluster reports a new status (and keeps reporting it on its periodic heartbeats).
    Heartbeat {
        cluster: usize,
        status: ClusterStatus,
        max_inflight: Option<u32>,
        error_rate: Option<f64>,
    },
    /// The cluster stops heartbeating for a while (it goes stale).
    Silence {
        cluster: usize,
        ms: i64,
    },
    /// (Re-)registration, optionally changing lanes, capacity or dedication.
    Register {
        cluster: usize,
        lanes: Option<Vec<usize>>,
        max_inflight: Option<u32>,
        dedicated_to: Option<Option<usize>>,
    },
    Deregister {
        cluster: usize,
    },
    Provider {
        provider: usize,
        status: ProviderStatus,
        error_rate: Option<f64>,
    },
    Policy {
        tenant: usize,
        policy: PolicySpec,
    },
    Activate {
        lane: usize,
    },
    /// `zumik gate` stores a report for the lane: passed or not, possibly altered after sealing,
    /// its window ending `age_ms` ago, with or without a break-even utilisation.
    Report {
        lane: usize,
        passed: bool,
        tampered: bool,
        age_ms: i64,
        break_even: Option<f64>,
    },
    /// The gated activation command, naming one of the lane's stored reports (or an unknown one).
    GatedActivate {
        lane: usize,
        pick: Index,
        unknown: bool,
    },
    Deactivate {
        lane: usize,
    },
    /// Another unit's spend for the tenant (`zumik.usage.v1`), sometimes of the month before;
    /// with that unit's month total (`cost_micros` + `beyond`) or without.
    UnitUsage {
        tenant: usize,
        cost_micros: u64,
        beyond: Option<u64>,
        last_month: bool,
    },
    /// The cluster's breaker opened in another unit (`zumik.breaker_tripped.v1`).
    TrippedElsewhere {
        cluster: usize,
    },
    /// Sends an earlier request again (at-least-once producer); only in the redelivery test.
    Redeliver {
        pick: Index,
    },
}

#[derive(Debug, Clone)]
struct Step {
    /// How far event time moves on (≥ 0).
    advance_ms: i64,
    /// ≤ 0: the event is stamped a little before "now" (a late event).
    jitter_ms: i64,
    op: Op,
}

#[derive(Debug, Clone)]
struct Case {
    cfg: RoutingConfig,
    start: &'static str,
    clusters: Vec<ClusterSpec>,
    policies: Vec<(usize, PolicySpec)>,
    activate: Vec<usize>,
    /// Per lane: activated in the setup through a stored passing report and the gated command
    /// (with this break-even utilisation), rather than by a trusted activation fact.
    gated: Vec<Option<f64>>,
    /// A cluster whose served requests mostly fail (to open its breaker).
    flaky: Option<usize>,
    body: Vec<Step>,
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn routing_config() -> impl Strategy<Value = RoutingConfig> {
    (
        select(vec![0.5, 0.9, 1.0]),
        select(vec![15_000i64, 60_000]),
        select(vec![30_000u32, 120_000]),
        prop::bool::weighted(0.2),
        any::<bool>(),
        4u32..=20,
        2u32..=4,
        1u32..=3,
        select(vec![0i64, 30_000, 60_000]),
        select(vec![0.1, 0.5]),
        gate_config(),
    )
        .prop_map(
            |(
                headroom,
                stale,
                deadline,
                reject,
                openrouter,
                window,
                min_samples,
                recovery,
                ramp,
                initial,
                gate,
            )| {
                RoutingConfig {
                    headroom,
                    stale_after_ms: stale,
                    default_deadline_ms: deadline,
                    unknown_tenant: if reject {
                        UnknownTenant::Reject
                    } else {
                        UnknownTenant::Allow
                    },
                    openrouter_fallback: openrouter,
                    breaker: BreakerConfig {
                        window,
                        min_samples,
                        recovery_heartbeats: recovery,
                        slow_start_ms: ramp,
                        slow_start_initial: initial,
                        ..BreakerConfig::default()
                    },
                    gate,
                    ..RoutingConfig::default()
                }
            },
        )
}

/// Demotion windows short enough to close within a sequence, or the default hour.
fn gate_config() -> impl Strategy<Value = GateConfig> {
    (
        select(vec![60_000i64, 7 * 24 * 3_600_000]),
        prop::bool::weighted(0.8),
        select(vec![20_000i64, 60_000, 3_600_000]),
        select(vec![0.5, 0.99]),
        select(vec![3u32, 100]),
    )
        .prop_map(
            |(
                max_report_age_ms,
                demotion,
                demotion_window_ms,
                min_reliability,
                min_reliability_samples,
            )| {
                GateConfig {
                    max_report_age_ms,
                    demotion,
                    demotion_window_ms,
                    min_reliability,
                    min_reliability_samples,
                    ..GateConfig::default()
                }
            },
        )
}

fn lane_set() -> impl Strategy<Value = Vec<usize>> {
    subsequence((0..LANES.len()).collect::<Vec<_>>(), 1..=3)
}

fn cluster_spec() -> impl Strategy<Value = ClusterSpec> {
    (
        0..REGIONS.len(),
        prop_oneof![Just(Stack::Dynamo), Just(Stack::Epp)],
        lane_set(),
        1u32..=6,
        prop::option::weighted(0.35, 0..TENANTS.len()),
        3_000i64..7_000,
    )
        .prop_map(
            |(region, stack, lanes, max_inflight, dedicated_to, period_ms)| ClusterSpec {
                region,
                stack,
                lanes,
                max_inflight,
                dedicated_to,
                period_ms,
            },
        )
}

fn provider_subset() -> impl Strategy<Value = Vec<usize>> {
    subsequence((0..PROVIDERS.len()).collect::<Vec<_>>(), 1..=2)
}

fn policy_spec() -> impl Strategy<Value = PolicySpec> {
    (
        prop::option::weighted(
            0.4,
            subsequence((0..REGIONS.len()).collect::<Vec<_>>(), 0..=3),
        ),
        prop::option::weighted(0.3, subsequence(PROFILE_CLASSES.to_vec(), 1..=4)),
        prop::option::of(select(vec![
            DataBoundary::Project,
            DataBoundary::Strict,
            DataBoundary::NoOpenrouter,
        ])),
        prop::option::weighted(0.25, provider_subset()),
        prop::option::weighted(0.2, provider_subset()),
        prop::option::weighted(0.4, select(vec![0u64, 3_000, 30_000, 5_000_000])),
        prop::option::of(select(vec![OverageMode::Pause, OverageMode::Allow])),
        prop::option::weighted(
            0.2,
            (Just(PROFILE_CLASSES.to_vec()).prop_shuffle(), 1..=4usize)
                .prop_map(|(v, n)| v[..n].to_vec()),
        ),
    )
        .prop_map(
            |(
                regions,
                profiles,
                boundary,
                subscriptions,
                byok,
                budget_micros,
                overage,
                escalation,
            )| {
                PolicySpec {
                    regions,
                    profiles,
                    boundary,
                    subscriptions,
                    byok,
                    budget_micros,
                    overage,
                    escalation,
                }
            },
        )
}

fn request_spec() -> impl Strategy<Value = RequestSpec> {
    (
        0..LANES.len(),
        0..TENANTS.len(),
        0u32..6_000,
        prop_oneof![19 => (0u32..=4).prop_map(Cached::Quarters), 1 => (1u32..500).prop_map(Cached::Over)],
        1u32..2_000,
        prop::option::weighted(0.6, select(vec![500u32, 2_000, 10_000, 45_000, 90_000])),
        prop::option::weighted(0.5, 0..REGIONS.len()),
        prop::option::weighted(0.15, subsequence(PROFILE_CLASSES.to_vec(), 0..=4)),
        any::<bool>(),
    )
        .prop_map(|(lane, tenant, input, cached, max_output, deadline_ms, region, allowed, interactive)| {
            RequestSpec { lane, tenant, input, cached, max_output, deadline_ms, region, allowed, interactive }
        })
}

/// Error rates as short decimals: they survive a JSON round trip exactly.
fn error_rate() -> impl Strategy<Value = Option<f64>> {
    prop::option::weighted(
        0.7,
        prop_oneof![9 => select(vec![0.0, 0.01, 0.05, 0.2, 0.4]), 1 => select(vec![0.5, 0.75, 1.0])],
    )
}

fn op() -> impl Strategy<Value = Op> {
    let complete = (
        any::<Index>(),
        prop::bool::weighted(0.05),
        prop_oneof![
            70 => Just(Outcome::Completed),
            15 => Just(Outcome::Failed),
            8 => Just(Outcome::Cancelled),
            7 => Just(Outcome::Expired),
        ],
        prop::bool::weighted(0.7),
        prop::bool::weighted(0.85),
        0u32..=100,
    )
        .prop_map(
            |(pick, again, outcome, flaky, report_profile, output_pct)| Op::Complete {
                pick,
                again,
                outcome,
                flaky,
                report_profile,
                output_pct,
            },
        );
    let heartbeat = (
        0..4usize,
        prop_oneof![
            70 => Just(ClusterStatus::Ready),
            10 => Just(ClusterStatus::Degraded),
            8 => Just(ClusterStatus::Draining),
            12 => Just(ClusterStatus::Down),
        ],
        prop::option::weighted(0.25, 0u32..=6),
        error_rate(),
    )
        .prop_map(
            |(cluster, status, max_inflight, error_rate)| Op::Heartbeat {
                cluster,
                status,
                max_inflight,
                error_rate,
            },
        );
    let register = (
        0..4usize,
        prop::option::weighted(0.5, lane_set()),
        prop::option::weighted(0.5, 1u32..=6),
        prop::option::weighted(0.3, prop::option::weighted(0.5, 0..TENANTS.len())),
    )
        .prop_map(
            |(cluster, lanes, max_inflight, dedicated_to)| Op::Register {
                cluster,
                lanes,
                max_inflight,
                dedicated_to,
            },
        );
    let provider = (
        0..PROVIDERS.len(),
        prop_oneof![
            3 => Just(ProviderStatus::Ok),
            1 => Just(ProviderStatus::Degraded),
            2 => Just(ProviderStatus::Down),
        ],
        error_rate(),
    )
        .prop_map(|(provider, status, error_rate)| Op::Provider {
            provider,
            status,
            error_rate,
        });
    prop_oneof![
        40 => request_spec().prop_map(Op::Request),
        4 => (request_spec(), 2u32..=8).prop_map(|(request, n)| Op::Burst { request, n }),
        18 => complete,
        8 => heartbeat,
        2 => (0..4usize, 10_000i64..60_000).prop_map(|(cluster, ms)| Op::Silence { cluster, ms }),
        3 => provider,
        3 => (0..3usize, policy_spec()).prop_map(|(tenant, policy)| Op::Policy { tenant, policy }),
        2 => (0..LANES.len()).prop_map(|lane| Op::Activate { lane }),
        2 => (
            0..LANES.len(),
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.15),
            prop_oneof![4 => 0i64..3_600_000, 1 => 3_600_000i64..30 * 24 * 3_600_000],
            prop::option::weighted(0.7, select(vec![0.05, 0.3, 0.6, 0.95])),
        )
            .prop_map(|(lane, passed, tampered, age_ms, break_even)| Op::Report {
                lane,
                passed,
                tampered,
                age_ms,
                break_even
            }),
        2 => (0..LANES.len(), any::<Index>(), prop::bool::weighted(0.15))
            .prop_map(|(lane, pick, unknown)| Op::GatedActivate { lane, pick, unknown }),
        2 => (0..LANES.len()).prop_map(|lane| Op::Deactivate { lane }),
        2 => register,
        1 => (0..4usize).prop_map(|cluster| Op::Deregister { cluster }),
        1 => (0..4usize).prop_map(|cluster| Op::TrippedElsewhere { cluster }),
        2 => (
            0..TENANTS.len(),
            1u64..200_000,
            prop::option::of(0u64..400_000),
            prop::bool::weighted(0.1)
        )
            .prop_map(|(tenant, cost_micros, beyond, last_month)| Op::UnitUsage {
                tenant,
                cost_micros,
                beyond,
                last_month
            }),
    ]
}

fn step(op: impl Strategy<Value = Op>) -> impl Strategy<Value = Step> {
    (
        prop_oneof![88 => 0i64..1_500, 10 => 1_500i64..10_000, 2 => 15_000i64..150_000],
        prop_oneof![85 => Just(0i64), 15 => -800i64..0],
        op,
    )
        .prop_map(|(advance_ms, jitter_ms, op)| Step {
            advance_ms,
            jitter_ms,
            op,
        })
}

/// A whole case; `redeliver` mixes in requests sent a second time.
fn case(redeliver: bool) -> impl Strategy<Value = Case> {
    let ops = if redeliver {
        prop_oneof![9 => op(), 1 => any::<Index>().prop_map(|pick| Op::Redeliver { pick })].boxed()
    } else {
        op().boxed()
    };
    (
        routing_config(),
        select(STARTS.to_vec()),
        prop::collection::vec(cluster_spec(), 1..=4),
        prop::collection::vec((0..3usize, policy_spec()), 0..=4),
        (
            subsequence((0..LANES.len()).collect::<Vec<_>>(), 1..=4),
            prop::collection::vec(
                prop::option::weighted(0.4, select(vec![0.3, 0.6])),
                LANES.len(),
            ),
        ),
        prop::option::weighted(0.3, 0..4usize),
        prop::collection::vec(step(ops), 1..120),
    )
        .prop_map(
            |(cfg, start, clusters, policies, (activate, gated), flaky, body)| Case {
                cfg,
                start,
                clusters,
                policies,
                activate,
                gated,
                flaky,
                body,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// From plan to events.

/// A generated case as concrete events.
struct Scenario {
    cfg: Arc<RoutingConfig>,
    events: Vec<InputEvent>,
}

/// Applies one event; a panic becomes an error (the router must never panic on valid input).
fn apply(router: &mut Router, event: &InputEvent, out: &mut Output) -> Result<(), String> {
    std::panic::catch_unwind(AssertUnwindSafe(|| router.apply(event.clone(), out))).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        format!(
            "router panicked on {}: {msg}",
            String::from_utf8_lossy(&encode_input(event))
        )
    })
}

struct Sent {
    request: RequestV1,
    decision: Option<DecisionV1>,
}

/// What a cluster keeps reporting on its periodic heartbeats.
struct Beat {
    registered: bool,
    status: ClusterStatus,
    error_rate: Option<f64>,
    /// Autoscaled capacity; `None` = the registered `max_inflight`.
    max_inflight: Option<u32>,
    next_at: i64,
    silent_until: i64,
}

/// Turns a plan into events. Registered clusters heartbeat periodically with their current
/// status (unless silenced). It runs a router alongside so completions name what really served
/// each request, as a data plane would; if that router fails, it stops there and the property
/// run hits (and reports) the same failure.
struct Builder {
    clusters: Vec<ClusterSpec>,
    beats: Vec<Beat>,
    flaky: Option<String>,
    now: i64,
    events: Vec<InputEvent>,
    router: Router,
    out: Output,
    broken: bool,
    sent: Vec<Sent>,
    /// Requests with a fresh id so far.
    requests: usize,
    /// Digests of the gate reports stored per lane.
    reports: BTreeMap<usize, Vec<String>>,
    completed: BTreeSet<usize>,
}

impl Builder {
    fn push(&mut self, event: InputEvent) {
        self.events.push(event.clone());
        if apply(&mut self.router, &event, &mut self.out).is_err() {
            self.broken = true;
            return;
        }
        if let InputEvent::Request(r) = event {
            self.sent.push(Sent {
                request: r,
                decision: self.out.decisions.last().cloned(),
            });
        }
        self.out.clear();
    }

    fn registration(&self, i: usize, ts: i64) -> InputEvent {
        let c = &self.clusters[i];
        InputEvent::ClusterRegistered(ClusterRegisteredV1 {
            cluster_id: cluster_id(i),
            name: format!("cluster-{i}"),
            region: REGIONS[c.region].into(),
            stack: c.stack,
            lanes: c.lanes.iter().map(|&l| LANES[l].to_owned()).collect(),
            max_inflight: c.max_inflight,
            gpus: 8,
            gpu_hour_micros: 2_500_000,
            dedicated_to: c.dedicated_to.map(|t| TENANTS[t].to_owned()),
            ts: Timestamp(ts),
        })
    }

    /// A heartbeat of cluster `i` with what it currently reports; schedules the next one.
    fn heartbeat(&mut self, i: usize, ts: i64) -> InputEvent {
        let b = &mut self.beats[i];
        b.next_at = ts + self.clusters[i].period_ms;
        InputEvent::ClusterHeartbeat(ClusterHeartbeatV1 {
            cluster_id: cluster_id(i),
            status: b.status,
            replicas: Some(2),
            max_inflight: b.max_inflight.unwrap_or(self.clusters[i].max_inflight),
            inflight: 0,
            queue_depth: Some(0),
            ttft_p95_ms: Some(420),
            kv_cache_usage: Some(0.4),
            error_rate: b.error_rate,
            ts: Timestamp(ts),
        })
    }

    /// Periodic heartbeats due up to `now`, in time order.
    fn heartbeats_until(&mut self, now: i64) {
        loop {
            let due = (0..self.beats.len())
                .filter(|&i| self.beats[i].registered && self.beats[i].next_at <= now)
                .min_by_key(|&i| (self.beats[i].next_at, i));
            let Some(i) = due else { return };
            let at = self.beats[i].next_at;
            if at < self.beats[i].silent_until {
                self.beats[i].next_at = at + self.clusters[i].period_ms;
                continue;
            }
            let e = self.heartbeat(i, at);
            self.push(e);
            if self.broken {
                return;
            }
        }
    }

    fn request(&self, r: &RequestSpec, id: String, ts: i64) -> InputEvent {
        let cached = match r.cached {
            Cached::Quarters(q) => r.input / 4 * q,
            Cached::Over(n) => r.input + n,
        };
        InputEvent::Request(RequestV1 {
            request_id: id.into(),
            tenant_id: TENANTS[r.tenant].into(),
            model: LANES[r.lane].into(),
            alias: None,
            input_tokens: r.input,
            cached_input_tokens: cached,
            max_output_tokens: r.max_output,
            qos: Qos {
                class: if r.interactive {
                    "interactive"
                } else {
                    "batch"
                }
                .into(),
                target_ttft_ms: r.interactive.then_some(800),
                deadline_ms: r.deadline_ms,
                priority: Some(1),
            },
            region: r.region.map(|g| REGIONS[g].to_owned()),
            allowed_profiles: r.allowed.clone(),
            ts: Timestamp(ts),
        })
    }

    /// A sealed gate report for `lane` whose window ends at `end`; `tampered` alters it after
    /// sealing. The lane remembers its digest for later activation commands.
    fn report(
        &mut self,
        lane: usize,
        passed: bool,
        tampered: bool,
        end: i64,
        break_even: Option<f64>,
    ) -> InputEvent {
        let mut report = GateReportV1 {
            lane: LANES[lane].into(),
            passed,
            window: Window {
                start: Timestamp(end - 3_600_000),
                end: Timestamp(end),
            },
            inputs: serde_json::json!({"source": "proptest", "requests": self.requests}),
            config: serde_json::json!({"gpus": 8, "gpu_hour_micros": 2_500_000}),
            results: match break_even {
                Some(b) => {
                    serde_json::json!({"baseline_micros": 1000, "break_even_utilisation": b})
                }
                None => serde_json::json!({"baseline_micros": 1000}),
            },
            series: serde_json::json!({}),
            digest: String::new(),
        };
        report.seal();
        if tampered {
            report.passed = !report.passed;
        }
        self.reports
            .entry(lane)
            .or_default()
            .push(report.digest.clone());
        InputEvent::GateReport(Box::new(report))
    }

    fn fresh_request(&mut self, r: &RequestSpec, ts: i64) -> InputEvent {
        self.requests += 1;
        self.request(r, format!("req_{:04}", self.requests), ts)
    }

    fn completion(
        &self,
        i: usize,
        outcome: Outcome,
        flaky: bool,
        report_profile: bool,
        output_pct: u32,
        ts: i64,
    ) -> InputEvent {
        let Sent {
            request: r,
            decision,
        } = &self.sent[i];
        let on_flaky = decision
            .as_ref()
            .and_then(|d| d.target.as_deref())
            .is_some_and(|t| Some(t) == self.flaky.as_deref());
        let outcome = if flaky && on_flaky {
            Outcome::Failed
        } else {
            outcome
        };
        let d = decision.as_ref().filter(|_| report_profile);
        InputEvent::Completion(CompletionV1 {
            request_id: r.request_id.clone(),
            tenant_id: r.tenant_id.clone(),
            model: r.model.clone(),
            outcome,
            input_tokens: r.input_tokens,
            cached_input_tokens: r.cached_input_tokens.min(r.input_tokens),
            output_tokens: r.max_output_tokens / 100 * output_pct,
            ttft_ms: Some(350),
            latency_ms: Some(4_000),
            error_class: matches!(outcome, Outcome::Failed).then(|| "upstream_5xx".to_owned()),
            profile: d.and_then(|d| d.profile),
            target: d.and_then(|d| d.target.as_deref().map(str::to_owned)),
            ts: Timestamp(ts),
        })
    }

    fn step(&mut self, step: &Step) {
        self.now += step.advance_ms;
        self.heartbeats_until(self.now);
        if self.broken {
            return;
        }
        let ts = self.now + step.jitter_ms;
        let n = self.clusters.len();
        let event = match &step.op {
            Op::Request(r) => self.fresh_request(r, ts),
            Op::Burst { request, n } => {
                for k in 0..*n {
                    let e = self.fresh_request(request, ts + k as i64);
                    self.push(e);
                }
                return;
            }
            Op::Redeliver { pick } => {
                if self.sent.is_empty() {
                    return;
                }
                let mut r = self.sent[pick.index(self.sent.len())].request.clone();
                r.ts = Timestamp(ts);
                InputEvent::Request(r)
            }
            Op::Complete {
                pick,
                again,
                outcome,
                flaky,
                report_profile,
                output_pct,
            } => {
                // Only served requests complete; rejections and placeholders never ran.
                let pool: Vec<usize> = (0..self.sent.len())
                    .filter(|i| {
                        self.sent[*i].decision.as_ref().is_some_and(|d| {
                            matches!(d.mode, Mode::Live | Mode::OpenrouterFallback)
                        })
                    })
                    .filter(|i| *again || !self.completed.contains(i))
                    .collect();
                if pool.is_empty() {
                    return;
                }
                let i = pool[pick.index(pool.len())];
                self.completed.insert(i);
                self.completion(i, *outcome, *flaky, *report_profile, *output_pct, ts)
            }
            Op::Heartbeat {
                cluster,
                status,
                max_inflight,
                error_rate,
            } => {
                let b = &mut self.beats[cluster % n];
                b.status = *status;
                b.error_rate = *error_rate;
                if max_inflight.is_some() {
                    b.max_inflight = *max_inflight;
                }
                self.heartbeat(cluster % n, ts)
            }
            Op::Silence { cluster, ms } => {
                self.beats[cluster % n].silent_until = self.now + ms;
                return;
            }
            Op::Register {
                cluster,
                lanes,
                max_inflight,
                dedicated_to,
            } => {
                let c = &mut self.clusters[cluster % n];
                if let Some(l) = lanes {
                    c.lanes = l.clone();
                }
                if let Some(m) = max_inflight {
                    c.max_inflight = *m;
                    self.beats[cluster % n].max_inflight = None;
                }
                if let Some(d) = dedicated_to {
                    c.dedicated_to = *d;
                }
                let b = &mut self.beats[cluster % n];
                if !b.registered {
                    b.registered = true;
                    b.next_at = self.now + self.clusters[cluster % n].period_ms;
                }
                self.registration(cluster % n, ts)
            }
            Op::Deregister { cluster } => {
                self.beats[cluster % n].registered = false;
                InputEvent::ClusterDeregistered(ClusterDeregisteredV1 {
                    cluster_id: cluster_id(cluster % n),
                    ts: Timestamp(ts),
                })
            }
            Op::Provider {
                provider,
                status,
                error_rate,
            } => InputEvent::ProviderHealth(ProviderHealthV1 {
                provider: PROVIDERS[*provider].into(),
                status: *status,
                error_rate: *error_rate,
                ts: Timestamp(ts),
            }),
            Op::Policy { tenant, policy } => policy_event(*tenant, policy, ts),
            Op::Activate { lane } => activation(*lane, ts),
            Op::Report {
                lane,
                passed,
                tampered,
                age_ms,
                break_even,
            } => self.report(*lane, *passed, *tampered, ts - age_ms, *break_even),
            Op::GatedActivate {
                lane,
                pick,
                unknown,
            } => {
                let stored = self
                    .reports
                    .get(lane)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let report_digest = match stored {
                    [] => format!("sha256:{:064x}", 0xdead),
                    _ if *unknown => format!("sha256:{:064x}", 0xdead),
                    _ => stored[pick.index(stored.len())].clone(),
                };
                InputEvent::LaneActivate(LaneActivateV1 {
                    lane: LANES[*lane].into(),
                    report_digest,
                    ts: Timestamp(ts),
                })
            }
            Op::Deactivate { lane } => InputEvent::LaneDeactivated(LaneDeactivatedV1 {
                lane: LANES[*lane].into(),
                reason: "demoted: utilisation below break-even".into(),
                ts: Timestamp(ts),
            }),
            Op::TrippedElsewhere { cluster } => {
                InputEvent::BreakerTripped(zumik::events::BreakerTrippedV1 {
                    cluster_id: cluster_id(cluster % n),
                    unit: 7,
                    failures: 5,
                    samples: 10,
                    ts: Timestamp(ts),
                })
            }
            Op::UnitUsage {
                tenant,
                cost_micros,
                beyond,
                last_month,
            } => InputEvent::Usage(zumik::events::UsageV1 {
                tenant_id: TENANTS[*tenant].into(),
                unit: 7,
                requests: 1 + (*cost_micros % 5) as u32,
                cost_micros: *cost_micros,
                unit_spent_micros: beyond.map(|b| cost_micros + b),
                ts: Timestamp(if *last_month {
                    ts - 31 * 24 * 3_600_000
                } else {
                    ts
                }),
            }),
        };
        self.push(event);
    }
}

fn activation(lane: usize, ts: i64) -> InputEvent {
    InputEvent::LaneActivated(LaneActivatedV1 {
        lane: LANES[lane].into(),
        report_digest: format!("sha256:{:064x}", lane + 1),
        ts: Timestamp(ts),
    })
}

fn policy_event(tenant: usize, p: &PolicySpec, ts: i64) -> InputEvent {
    let names = |v: &Option<Vec<usize>>, from: &[&str]| -> Vec<String> {
        v.iter().flatten().map(|&i| from[i].to_owned()).collect()
    };
    InputEvent::TenantPolicy(TenantPolicyV1 {
        tenant_id: TENANTS[tenant].into(),
        allowed_regions: p
            .regions
            .as_ref()
            .map(|r| r.iter().map(|&i| REGIONS[i].to_owned()).collect()),
        allowed_profiles: p.profiles.clone(),
        data_boundary: p.boundary,
        subscriptions: names(&p.subscriptions, &PROVIDERS),
        byok: names(&p.byok, &PROVIDERS),
        monthly_budget_micros: p.budget_micros,
        overage_mode: p.overage,
        escalation: p.escalation.clone(),
        ts: Timestamp(ts),
    })
}

fn scenario(case: &Case) -> Scenario {
    case.cfg
        .validate()
        .expect("generated routing config validates");
    let cfg = Arc::new(case.cfg.clone());
    let start = Timestamp::parse(case.start)
        .expect("start time parses")
        .millis();
    let n = case.clusters.len();
    let mut b = Builder {
        clusters: case.clusters.clone(),
        beats: (0..n)
            .map(|_| Beat {
                registered: true,
                status: ClusterStatus::Ready,
                error_rate: Some(0.0),
                max_inflight: None,
                next_at: start + 200,
                silent_until: 0,
            })
            .collect(),
        flaky: case.flaky.map(|i| cluster_id(i % n)),
        now: start,
        events: Vec::new(),
        router: Router::new(cfg.clone(), prices()),
        out: Output::default(),
        broken: false,
        sent: Vec::new(),
        requests: 0,
        reports: BTreeMap::new(),
        completed: BTreeSet::new(),
    };
    // Setup: clusters join, policies are set, first heartbeats arrive, some lanes pass the gate.
    for i in 0..b.clusters.len() {
        let e = b.registration(i, start);
        b.push(e);
    }
    for (tenant, p) in &case.policies {
        b.push(policy_event(*tenant, p, start + 100));
    }
    b.heartbeats_until(start + 200);
    for &lane in &case.activate {
        match case.gated[lane] {
            Some(break_even) => {
                let e = b.report(lane, true, false, start, Some(break_even));
                b.push(e);
                let report_digest = b.reports[&lane].last().cloned().unwrap_or_default();
                let lane = LANES[lane].into();
                b.push(InputEvent::LaneActivate(LaneActivateV1 {
                    lane,
                    report_digest,
                    ts: Timestamp(start + 300),
                }));
            }
            None => b.push(activation(lane, start + 300)),
        }
    }
    b.now = start + 300;
    for s in &case.body {
        if b.broken {
            break;
        }
        b.step(s);
    }
    Scenario {
        cfg,
        events: b.events,
    }
}

// ---------------------------------------------------------------------------------------------
// Running and reporting.

/// A broken property: what broke, and after which event (the repro is cut there).
#[derive(Debug)]
struct Failure {
    at: Option<usize>,
    msg: String,
}

impl From<String> for Failure {
    fn from(msg: String) -> Self {
        Failure { at: None, msg }
    }
}

/// Feeds `events` to `router`, calling `each(index, event, router, output)` after every event;
/// decisions and warnings are cleared after each call, the journal (if recorded) accumulates.
fn drive(
    router: &mut Router,
    events: &[InputEvent],
    out: &mut Output,
    mut each: impl FnMut(usize, &InputEvent, &Router, &Output) -> Result<(), String>,
) -> Result<(), Failure> {
    for (i, e) in events.iter().enumerate() {
        apply(router, e, out)
            .and_then(|()| each(i, e, router, out))
            .map_err(|m| Failure {
                at: Some(i),
                msg: format!("at event #{i}: {m}"),
            })?;
        out.decisions.clear();
        out.warnings.clear();
    }
    Ok(())
}

/// What a full run gives: the encoded decisions of every event, the journal, the final router.
type EncodedRun = (Vec<Vec<Vec<u8>>>, Vec<JournalEntry>, Router);

/// Encoded decisions of every event of a full run, the journal, and the final router.
fn run_encoded(s: &Scenario, journal: bool) -> Result<EncodedRun, Failure> {
    let mut router = Router::new(s.cfg.clone(), prices());
    let mut out = if journal {
        Output::with_journal()
    } else {
        Output::default()
    };
    let mut decisions = Vec::with_capacity(s.events.len());
    drive(&mut router, &s.events, &mut out, |_, _, _, o| {
        decisions.push(o.decisions.iter().map(encode_decision).collect());
        Ok(())
    })?;
    Ok((decisions, std::mem::take(&mut out.journal), router))
}

/// The first difference between two per-event decision lists, as a failure at that event.
fn first_difference(what: &str, a: &[Vec<Vec<u8>>], b: &[Vec<Vec<u8>>]) -> Result<(), Failure> {
    let show = |d: &Vec<Vec<u8>>| {
        d.iter()
            .map(|x| String::from_utf8_lossy(x).into_owned())
            .collect::<Vec<_>>()
    };
    if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
        let msg = format!(
            "{what} at event #{i}:\n{:?}\n   vs:\n{:?}",
            show(&a[i]),
            show(&b[i])
        );
        return Err(Failure { at: Some(i), msg });
    }
    if a.len() != b.len() {
        return Err(format!("{what}: {} vs {} events", a.len(), b.len()).into());
    }
    Ok(())
}

/// A failure with the case (up to the failing event) as a `zumik.toml` and JSONL events, ready
/// for `zumik decide`.
fn fail(s: &Scenario, f: Failure) -> TestCaseError {
    #[derive(serde::Serialize)]
    struct Root<'a> {
        routing: &'a RoutingConfig,
    }
    let toml = toml::to_string(&Root { routing: &s.cfg }).unwrap_or_else(|e| format!("# {e}"));
    let mut text = format!(
        "{}\n--- zumik.toml ---\n{toml}--- events.jsonl ---\n",
        f.msg
    );
    let upto = f.at.map_or(s.events.len(), |i| i + 1);
    for e in &s.events[..upto] {
        text.push_str(&String::from_utf8_lossy(&encode_input(e)));
        text.push('\n');
    }
    TestCaseError::fail(text)
}

fn check(
    case: &Case,
    property: impl FnOnce(&Scenario) -> Result<(), Failure>,
) -> Result<(), TestCaseError> {
    let s = scenario(case);
    property(&s).map_err(|m| fail(&s, m))
}

fn proptest_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn is_byoc(d: &DecisionV1) -> bool {
    matches!(d.profile, Some(Profile::ByocDynamo | Profile::ByocEpp))
}

// ---------------------------------------------------------------------------------------------
// The properties.

/// 1. Same events, same bytes: twice with the journal, once without.
fn determinism(s: &Scenario) -> Result<(), Failure> {
    // The events are well-formed (they pass the contract checks) and the printed JSONL of a
    // failure reproduces them exactly.
    for (i, e) in s.events.iter().enumerate() {
        let back = decode_input(&encode_input(e)).map_err(|err| Failure {
            at: Some(i),
            msg: format!("event #{i} is not well-formed: {err}"),
        })?;
        if back != *e {
            return Err(Failure {
                at: Some(i),
                msg: format!("event #{i} changes through JSON: {e:?} vs {back:?}"),
            });
        }
    }
    let (a, journal_a, _) = run_encoded(s, true)?;
    let (b, journal_b, _) = run_encoded(s, true)?;
    let (c, _, _) = run_encoded(s, false)?;
    first_difference("two runs decided differently", &a, &b)?;
    if journal_a != journal_b {
        let i = journal_a
            .iter()
            .zip(&journal_b)
            .position(|(x, y)| x != y)
            .unwrap_or(journal_a.len().min(journal_b.len()));
        return Err(format!(
            "journals differ at entry {i}: {:?} vs {:?}",
            journal_a.get(i),
            journal_b.get(i)
        )
        .into());
    }
    first_difference("recording the journal changed the decisions", &a, &c)
}

/// 2. Snapshot at the cuts, restore into a new router, continue: nothing changes.
fn snapshot_restore(s: &Scenario, cuts: &[Index]) -> Result<(), Failure> {
    let (full, _, full_router) = run_encoded(s, false)?;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(s.events.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut router = Router::new(s.cfg.clone(), prices());
    let mut out = Output::default();
    let mut got: Vec<Vec<Vec<u8>>> = Vec::with_capacity(s.events.len());
    let mut from = 0;
    for &cut in cuts.iter().chain([s.events.len()].iter()) {
        drive(&mut router, &s.events[from..cut], &mut out, |_, _, _, o| {
            got.push(o.decisions.iter().map(encode_decision).collect());
            Ok(())
        })
        .map_err(|f| Failure {
            at: f.at.map(|i| i + from),
            msg: format!("(restored run, offset {from}) {}", f.msg),
        })?;
        if cut == s.events.len() {
            break;
        }
        router = Router::restore(s.cfg.clone(), prices(), &router.snapshot())
            .map_err(|e| format!("restoring the snapshot taken after {cut} events: {e}"))?;
        from = cut;
    }
    first_difference(
        &format!("snapshot/restore after {cuts:?} events changed the decisions"),
        &full,
        &got,
    )?;
    if router.state() != full_router.state() {
        return Err(
            format!("snapshot/restore after {cuts:?} events: final state differs from the uninterrupted run").into()
        );
    }
    Ok(())
}

/// 2b. Snapshot bytes are a function of the state alone (they are published and compared across
/// instances): a restored snapshot snapshots to the same bytes, and a run interrupted by restores
/// ends with the same bytes as the uninterrupted run.
fn snapshot_canonical(s: &Scenario, cuts: &[Index]) -> Result<(), Failure> {
    let (_, _, full_router) = run_encoded(s, false)?;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(s.events.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut router = Router::new(s.cfg.clone(), prices());
    let mut out = Output::default();
    let mut from = 0;
    for &cut in &cuts {
        drive(&mut router, &s.events[from..cut], &mut out, |_, _, _, _| {
            Ok(())
        })
        .map_err(|f| Failure {
            at: f.at.map(|i| i + from),
            msg: f.msg,
        })?;
        let bytes = router.snapshot();
        let restored = Router::restore(s.cfg.clone(), prices(), &bytes)
            .map_err(|e| format!("restoring the snapshot taken after {cut} events: {e}"))?;
        let again = restored.snapshot();
        if again != bytes {
            let at = bytes
                .iter()
                .zip(&again)
                .position(|(a, b)| a != b)
                .unwrap_or(bytes.len().min(again.len()));
            return Err(Failure {
                at: cut.checked_sub(1),
                msg: format!(
                    "the snapshot after {cut} events ({} bytes) gives other bytes once restored and taken again \
                     ({} bytes, first difference at byte {at}); restored state equal to the original: {}",
                    bytes.len(),
                    again.len(),
                    restored.state() == router.state()
                ),
            });
        }
        router = restored;
        from = cut;
    }
    drive(
        &mut router,
        &s.events[from..],
        &mut out,
        |_, _, _, _| Ok(()),
    )
    .map_err(|f| Failure {
        at: f.at.map(|i| i + from),
        msg: f.msg,
    })?;
    if router.snapshot() != full_router.snapshot() {
        return Err(format!(
            "after restores at {cuts:?}, the final snapshot differs from the uninterrupted run's (states equal: {})",
            router.state() == full_router.state()
        )
        .into());
    }
    Ok(())
}

/// 3. One decision per request, in order, for that request; per-lane `seq` + 1.
fn never_drop(s: &Scenario) -> Result<(), Failure> {
    let mut router = Router::new(s.cfg.clone(), prices());
    let mut out = Output::default();
    let mut seq: BTreeMap<String, u64> = BTreeMap::new();
    let mut requests = 0usize;
    let mut decisions = 0usize;
    drive(&mut router, &s.events, &mut out, |_, e, _, o| {
        decisions += o.decisions.len();
        let InputEvent::Request(r) = e else {
            return match o.decisions.as_slice() {
                [] => Ok(()),
                ds => Err(format!(
                    "a {} event produced {} decisions",
                    e.schema_name(),
                    ds.len()
                )),
            };
        };
        requests += 1;
        let [d] = o.decisions.as_slice() else {
            return Err(format!(
                "request {} produced {} decisions",
                r.request_id,
                o.decisions.len()
            ));
        };
        if d.request_id != r.request_id || *d.tenant_id != *r.tenant_id || *d.lane != *r.model {
            return Err(format!(
                "request {}/{}/{} got the decision of {}/{}/{}",
                r.request_id, r.tenant_id, r.model, d.request_id, d.tenant_id, d.lane
            ));
        }
        if d.decided_at != r.ts {
            return Err(format!(
                "request {} at {} decided at {}",
                r.request_id, r.ts, d.decided_at
            ));
        }
        let last = seq.entry(r.model.clone()).or_insert(0);
        if d.seq != *last + 1 {
            return Err(format!("lane {}: seq {} after {}", r.model, d.seq, last));
        }
        *last = d.seq;
        Ok(())
    })?;
    if decisions != requests {
        return Err(format!("{requests} requests, {decisions} decisions").into());
    }
    for (lane, n) in &seq {
        let state_seq = router.state().lanes.get(lane.as_str()).map_or(0, |l| l.seq);
        if state_seq != *n {
            return Err(
                format!("lane {lane}: state seq {state_seq}, last decision seq {n}").into(),
            );
        }
    }
    Ok(())
}

/// 4. A dedicated cluster only ever serves its tenant.
fn isolation(s: &Scenario) -> Result<(), Failure> {
    let mut router = Router::new(s.cfg.clone(), prices());
    let mut out = Output::default();
    drive(&mut router, &s.events, &mut out, |_, _, r, o| {
        for d in o.decisions.iter().filter(|d| is_byoc(d)) {
            let Some(target) = d.target.as_deref() else {
                return Err(format!("BYOC decision {} has no target", d.request_id));
            };
            let Some(cluster) = r.state().clusters.get(target) else {
                return Err(format!(
                    "request {} routed to unregistered cluster {target}",
                    d.request_id
                ));
            };
            if let Some(owner) = &cluster.dedicated_to {
                if *owner != d.tenant_id {
                    return Err(format!(
                        "request {} of {} routed to {target}, dedicated to {owner}",
                        d.request_id, d.tenant_id
                    ));
                }
            }
            // The lane decided on its own view of the cluster: it must say the same.
            let view_owner = r
                .state()
                .lanes
                .get(&d.lane)
                .and_then(|l| l.clusters.get(target))
                .map(|c| c.view.dedicated_to);
            if view_owner != Some(cluster.dedicated_to) {
                return Err(format!(
                    "lane {} sees {target} dedicated to {view_owner:?}, cluster says {:?}",
                    d.lane, cluster.dedicated_to
                ));
            }
        }
        Ok(())
    })
}

type Reserved = BTreeMap<(Name, Name), u32>;

/// The capacity invariants of one router state; `before` is the reserved count of every
/// (lane, cluster) before the event, `decisions` what the event decided.
fn capacity_holds(
    router: &Router,
    cfg: &RoutingConfig,
    before: &Reserved,
    decisions: &[DecisionV1],
) -> Result<Reserved, String> {
    let st = router.state();
    let mut now = Reserved::new();
    for (lane, l) in &st.lanes {
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for (id, res) in &l.reservations {
            if !l.clusters.contains_key(&res.cluster) {
                return Err(format!(
                    "lane {lane}: reservation {id} is on {} which the lane no longer has",
                    res.cluster
                ));
            }
            *counts.entry(&res.cluster).or_default() += 1;
        }
        // The expiry queue may keep dead entries (bounded), but must hold every reservation's
        // deadline, or a reservation could outlive it.
        for (id, r) in &l.reservations {
            let held = l
                .expiry
                .entries()
                .iter()
                .any(|e| e.id == *id && e.seq == r.seq && e.at == r.expires_at);
            if !held {
                return Err(format!(
                    "lane {lane}: reservation {id} (deadline {}) is missing from the expiry queue",
                    r.expires_at
                ));
            }
        }
        if l.expiry.len() > 4 * l.reservations.len() + 256 {
            return Err(format!(
                "lane {lane}: expiry queue holds {} entries for {} reservations",
                l.expiry.len(),
                l.reservations.len()
            ));
        }
        for (cid, lc) in &l.clusters {
            let Some(c) = st.clusters.get(cid) else {
                return Err(format!(
                    "lane {lane} still holds unregistered cluster {cid}"
                ));
            };
            if !c.lanes.contains(lane) {
                return Err(format!(
                    "lane {lane} still holds cluster {cid}, which no longer serves it"
                ));
            }
            let view = c.view(lane, cfg);
            if lc.view != view {
                return Err(format!(
                    "lane {lane} has a stale view of {cid}: {:?} vs {view:?}",
                    lc.view
                ));
            }
            let n = counts.get(&**cid).copied().unwrap_or(0);
            if lc.reserved != n {
                return Err(format!(
                    "lane {lane}: reserved {} on {cid}, but {n} reservations there",
                    lc.reserved
                ));
            }
            // A heartbeat or re-registration may shrink the limit under requests in flight; only
            // routing adds reservations, and it must never go past the limit.
            let was = before.get(&(*lane, *cid)).copied().unwrap_or(0);
            if lc.reserved > view.lane_limit && lc.reserved > was {
                return Err(format!(
                    "lane {lane}: reserved on {cid} rose {was} -> {} past the lane limit {} (max_inflight {})",
                    lc.reserved, view.lane_limit, c.max_inflight
                ));
            }
            now.insert((*lane, *cid), lc.reserved);
        }
    }
    for (cid, c) in &st.clusters {
        for lane in &c.lanes {
            if !st
                .lanes
                .get(lane)
                .is_some_and(|l| l.clusters.contains_key(cid))
            {
                return Err(format!(
                    "cluster {cid} serves {lane}, but the lane does not know it"
                ));
            }
        }
        // The lanes' shares add up to the cluster's ceil(max_inflight × headroom) slots, so lanes
        // that each respect their share never over-commit the cluster together. (Right after a
        // shrink a lane may still hold more than its new share while the others fill theirs:
        // lanes do not coordinate, by design, so that transient excess is not checked here.)
        let shares: u32 = c.lanes.iter().map(|l| c.lane_limit(l, cfg)).sum();
        if shares != c.slots(cfg) {
            return Err(format!(
                "cluster {cid}: lane shares add up to {shares}, but it has {} slots (max_inflight {}, {} lanes)",
                c.slots(cfg),
                c.max_inflight,
                c.lanes.len()
            ));
        }
    }
    for d in decisions.iter().filter(|d| is_byoc(d)) {
        let target = d.target.as_deref().unwrap_or_default();
        let l = &st.lanes[&d.lane];
        let Some(lc) = l.clusters.get(target) else {
            return Err(format!(
                "BYOC decision {} on {target}, unknown to lane {}",
                d.request_id, d.lane
            ));
        };
        if l.reservations
            .get(&d.request_id)
            .is_none_or(|r| *r.cluster != *target)
        {
            return Err(format!(
                "BYOC decision {} on {target} holds no reservation there",
                d.request_id
            ));
        }
        let limit = effective_limit(&lc.view, d.decided_at.millis(), cfg);
        if lc.reserved > limit {
            return Err(format!(
                "BYOC decision {} took {target} to {} reserved, over its limit {limit} (lane share {})",
                d.request_id, lc.reserved, lc.view.lane_limit
            ));
        }
    }
    Ok(now)
}

/// 5. Capacity accounting after every event.
fn capacity(s: &Scenario) -> Result<(), Failure> {
    let mut router = Router::new(s.cfg.clone(), prices());
    let mut out = Output::default();
    let mut reserved = Reserved::new();
    drive(&mut router, &s.events, &mut out, |_, _, r, o| {
        reserved = capacity_holds(r, &s.cfg, &reserved, &o.decisions)?;
        Ok(())
    })
}

/// 6. Past every deadline, a request on each lane leaves only its own reservation.
fn no_leak(s: &Scenario) -> Result<(), Failure> {
    let mut router = Router::new(s.cfg.clone(), prices());
    let mut out = Output::default();
    drive(&mut router, &s.events, &mut out, |_, _, _, _| Ok(()))?;
    let last = s.events.iter().map(|e| e.ts().millis()).max().unwrap_or(0);
    let longest = s
        .events
        .iter()
        .filter_map(|e| match e {
            InputEvent::Request(r) => r.qos.deadline_ms,
            _ => None,
        })
        .chain([s.cfg.default_deadline_ms])
        .max()
        .unwrap_or(0);
    let probe_ts = last + longest as i64 + 1;
    for (i, lane) in LANES.iter().enumerate() {
        let id = format!("probe_{i}");
        let probe = InputEvent::Request(RequestV1 {
            request_id: id.as_str().into(),
            tenant_id: "prj_probe".into(),
            model: (*lane).into(),
            alias: None,
            input_tokens: 100,
            cached_input_tokens: 0,
            max_output_tokens: 10,
            qos: Qos {
                class: "interactive".into(),
                target_ttft_ms: None,
                deadline_ms: None,
                priority: None,
            },
            region: None,
            allowed_profiles: None,
            ts: Timestamp(probe_ts + i as i64),
        });
        let probe_json = String::from_utf8_lossy(&encode_input(&probe)).into_owned();
        apply(&mut router, &probe, &mut out)?;
        out.clear();
        let l = &router.state().lanes[*lane];
        let leak = |what: String| Failure {
            at: None,
            msg: format!("after the probe {probe_json}\n{what}"),
        };
        if let Some((rid, r)) = l.reservations.iter().find(|(rid, _)| ***rid != *id) {
            return Err(leak(format!(
                "lane {lane}: reservation {rid} on {} (expires {}) survived past every deadline",
                r.cluster, r.expires_at
            )));
        }
        let own = l.reservations.get(id.as_str()).map(|r| r.cluster);
        for (cid, c) in &l.clusters {
            let expected = u32::from(own.as_deref() == Some(&**cid));
            if c.reserved != expected {
                return Err(leak(format!(
                    "lane {lane}: {} reserved on {cid}, expected {expected}",
                    c.reserved
                )));
            }
        }
    }
    Ok(())
}

/// Property 7. The journal alone re-derives everything (DESIGN §6): the auditor replays it with
/// zero mismatches, finds one decision per request, and rebuilds the router's lanes, clusters
/// and tenants exactly.
fn journal_replays(s: &Scenario) -> Result<(), Failure> {
    let mut router = Router::new(s.cfg.clone(), prices());
    let mut out = Output::with_journal();
    drive(&mut router, &s.events, &mut out, |_, _, _, _| Ok(()))?;
    let requests = s
        .events
        .iter()
        .filter(|e| matches!(e, InputEvent::Request(_)))
        .count() as u64;
    let mut auditor = Auditor::new(s.cfg.clone());
    for entry in &out.journal {
        auditor.apply(entry);
    }
    if let Some(m) = auditor.mismatches.first() {
        // The input event the mismatching record belongs to: the last `Input` record before it.
        let inputs_before = out.journal[..=m.index as usize]
            .iter()
            .filter(|j| matches!(j, JournalEntry::Input(_)))
            .count();
        return Err(Failure {
            at: inputs_before.checked_sub(1),
            msg: format!(
                "{} journal records do not replay; first: record {} ({})\ncommand: {}\nrecorded: {}\nrecomputed: {}",
                auditor.stats.mismatches, m.index, m.actor, m.command, m.recorded, m.recomputed
            ),
        });
    }
    if auditor.stats.decisions != requests {
        return Err(format!(
            "{requests} requests, but the journal replays {} decisions",
            auditor.stats.decisions
        )
        .into());
    }
    let st = router.state();
    if let Some(lane) = st
        .lanes
        .keys()
        .chain(auditor.lanes.keys())
        .find(|k| st.lanes.get(*k) != auditor.lanes.get(*k))
    {
        return Err(format!("replayed lane {lane} differs from the router's").into());
    }
    if let Some(id) = st
        .clusters
        .keys()
        .chain(auditor.clusters.keys())
        .find(|k| st.clusters.get(*k) != auditor.clusters.get(*k))
    {
        return Err(format!("replayed cluster {id} differs from the router's").into());
    }
    if let Some(id) = st
        .tenants
        .keys()
        .chain(auditor.tenants.keys())
        .find(|k| st.tenants.get(*k) != auditor.tenants.get(*k))
    {
        return Err(format!("replayed tenant {id} differs from the router's").into());
    }
    Ok(())
}

/// Property 8: the actor engine and the inline router side by side give the same outputs after
/// every event, and the same snapshot bytes at the cuts (where the actors restart from the
/// router's snapshot) and at the end.
fn actors_match(s: &Scenario, cuts: &[Index]) -> Result<(), Failure> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(s.events.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut router = Router::new(s.cfg.clone(), prices());
    let mut actors = ActorEngine::new(s.cfg.clone(), prices(), RouterState::default());
    let (mut a, mut b) = (Output::with_journal(), Output::with_journal());
    let same_snapshot =
        |router: &Router, actors: &ActorEngine, at: usize| -> Result<Vec<u8>, Failure> {
            let bytes = router.snapshot();
            let theirs = actors.snapshot().map_err(|e| e.to_string())?;
            if theirs != bytes {
                let msg =
                    format!("after {at} events the actors' snapshot differs from the router's");
                return Err(Failure {
                    at: Some(at.saturating_sub(1)),
                    msg,
                });
            }
            Ok(bytes)
        };
    for (i, e) in s.events.iter().enumerate() {
        if cuts.contains(&i) {
            let bytes = same_snapshot(&router, &actors, i)?;
            actors = ActorEngine::restore(s.cfg.clone(), prices(), &bytes)
                .map_err(|e| format!("actors restoring the snapshot after {i} events: {e}"))?;
        }
        apply(&mut router, e, &mut a).map_err(|m| Failure {
            at: Some(i),
            msg: m,
        })?;
        actors.apply(e.clone(), &mut b).map_err(|e| e.to_string())?;
        let enc = |o: &Output| o.decisions.iter().map(encode_decision).collect::<Vec<_>>();
        if enc(&a) != enc(&b) || a.journal != b.journal || a.warnings != b.warnings {
            let msg = format!(
                "at event #{i} the actors differ from the router:\n decisions {:?}\n vs {:?}\n journal {:?}\n vs {:?}\n warnings {:?} vs {:?}",
                enc(&a).iter().map(|d| String::from_utf8_lossy(d).into_owned()).collect::<Vec<_>>(),
                enc(&b).iter().map(|d| String::from_utf8_lossy(d).into_owned()).collect::<Vec<_>>(),
                a.journal, b.journal, a.warnings, b.warnings
            );
            return Err(Failure { at: Some(i), msg });
        }
        a.clear();
        b.clear();
    }
    same_snapshot(&router, &actors, s.events.len()).map(|_| ())
}

/// Property 9: a request or completion on a lane that exists takes the one-step path
/// (`lane_hot_step`: routed or completed and applied without the event buffer). It gives exactly
/// what the general `lane_step` gives the same command after the same expiry: the same
/// decisions, journal, warnings and follow-ups, and the same lane state (deadlines included).
fn hot_path_matches_lane_step(s: &Scenario) -> Result<(), Failure> {
    let mut router = Router::new(s.cfg.clone(), prices());
    let mut out = Output::default();
    let default = Arc::new(TenantPolicy::permissive());
    let mut events = Vec::new();
    for (i, e) in s.events.iter().enumerate() {
        let cmd = match e {
            InputEvent::Request(r) => {
                let tenant = match router.state().tenants.get(r.tenant_id.as_str()) {
                    Some(t) => t.view(r.ts, &default),
                    None => default_tenant_view(&r.tenant_id, &default),
                };
                Some((
                    r.model.as_str(),
                    LaneCommand::Route {
                        request: r.clone(),
                        tenant,
                    },
                ))
            }
            InputEvent::Completion(c) => Some((c.model.as_str(), LaneCommand::Complete(c.clone()))),
            _ => None,
        };
        let on_lane = cmd.and_then(|(id, cmd)| Some((router.state().lanes.get(id)?, cmd)));
        if let Some((lane, cmd)) = on_lane {
            let (mut fast, mut general) = (lane.clone(), lane.clone());
            let (mut a, mut b) = (Output::with_journal(), Output::with_journal());
            let fast_follow = lane_hot_step(&mut fast, &s.cfg, &mut events, cmd.clone(), &mut a);
            if let LaneCommand::Route { request, .. } = &cmd {
                if general.expiry_due(request.ts.millis()) {
                    let expire = LaneCommand::Expire { now: request.ts };
                    lane_step(&mut general, &s.cfg, &mut events, expire, &mut b);
                }
            }
            let general_follow = lane_step(&mut general, &s.cfg, &mut events, cmd, &mut b);
            let deadlines = |l: &LaneState| {
                let mut d: Vec<_> = l.expiry.entries().iter().map(|e| (e.at, e.seq)).collect();
                d.sort_unstable();
                d
            };
            if a.decisions != b.decisions
                || a.journal != b.journal
                || a.warnings != b.warnings
                || fast_follow != general_follow
                || fast != general
                || deadlines(&fast) != deadlines(&general)
            {
                let msg = format!(
                    "at event #{i} the one-step path differs from lane_step:\n decisions {:?}\n vs {:?}\n journal {:?}\n vs {:?}\n follow-ups {:?}\n vs {:?}",
                    a.decisions, b.decisions, a.journal, b.journal, fast_follow, general_follow
                );
                return Err(Failure { at: Some(i), msg });
            }
        }
        apply(&mut router, e, &mut out).map_err(|m| Failure {
            at: Some(i),
            msg: m,
        })?;
        out.clear();
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn actors_decide_and_journal_exactly_as_the_inline_router(
        case in case(false),
        cuts in prop::collection::vec(any::<Index>(), 1..=3),
    ) {
        check(&case, |s| actors_match(s, &cuts))?;
    }

    #[test]
    fn requests_and_completions_take_a_one_step_path_equal_to_lane_step(case in case(false)) {
        check(&case, hot_path_matches_lane_step)?;
    }

    #[test]
    fn same_events_give_byte_identical_decisions(case in case(false)) {
        check(&case, determinism)?;
    }

    #[test]
    fn snapshot_and_restore_at_any_point_change_nothing(
        case in case(false),
        cuts in prop::collection::vec(any::<Index>(), 1..=3),
    ) {
        check(&case, |s| snapshot_restore(s, &cuts))?;
    }

    #[test]
    fn snapshot_bytes_depend_only_on_the_state(
        case in case(false),
        cuts in prop::collection::vec(any::<Index>(), 1..=3),
    ) {
        check(&case, |s| snapshot_canonical(s, &cuts))?;
    }

    #[test]
    fn every_request_gets_exactly_one_decision_in_order(case in case(false)) {
        check(&case, never_drop)?;
    }

    #[test]
    fn dedicated_clusters_serve_only_their_tenant(case in case(false)) {
        check(&case, isolation)?;
    }

    #[test]
    fn reservations_match_and_stay_within_capacity(case in case(false)) {
        check(&case, capacity)?;
    }

    #[test]
    fn every_reservation_ends_by_completion_or_expiry(case in case(false)) {
        check(&case, no_leak)?;
    }

    #[test]
    fn the_journal_alone_replays_every_decision(case in case(false)) {
        check(&case, journal_replays)?;
    }

    /// At-least-once producers send a request twice now and then: whatever the broker answers
    /// the second time, it must answer, and its capacity accounting must stay exact.
    #[test]
    fn redelivered_requests_keep_capacity_exact(case in case(true)) {
        check(&case, |s| {
            never_drop(s)?;
            capacity(s)?;
            no_leak(s)
        })?;
    }
}

// ---------------------------------------------------------------------------------------------
// The generator itself.

#[test]
fn lanes_are_priced_as_the_generator_assumes() {
    let p = prices();
    for lane in [LANES[0], LANES[1], LANES[3]] {
        assert!(p.resolve(lane).is_some(), "{lane} should be priced");
    }
    assert!(
        p.resolve(LANES[2]).is_none(),
        "{} should be unpriced",
        LANES[2]
    );
}

/// The properties only mean something if the sequences reach the states they are about.
#[test]
fn generator_reaches_the_paths_the_properties_are_about() {
    let mut runner = TestRunner::deterministic();
    let strategy = case(false);
    let (mut reasons, mut modes, mut verdicts) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..512 {
        let case = strategy
            .new_tree(&mut runner)
            .expect("case generates")
            .current();
        let s = scenario(&case);
        let mut router = Router::new(s.cfg.clone(), prices());
        let mut out = Output::with_journal();
        drive(&mut router, &s.events, &mut out, |_, _, r, o| {
            for d in &o.decisions {
                reasons.insert(d.reason);
                modes.insert(d.mode);
                verdicts.extend(d.considered.iter().map(|c| c.verdict));
                if is_byoc(d) {
                    let lc =
                        &r.state().lanes[&d.lane].clusters[d.target.as_deref().unwrap_or_default()];
                    if lc.reserved == lc.view.lane_limit && lc.reserved > 1 {
                        *count
                            .entry("byoc decision filling a cluster of >1 slots")
                            .or_default() += 1;
                    }
                }
            }
            Ok(())
        })
        .expect("generated case runs");
        for j in &out.journal {
            let seen: Vec<&str> = match j {
                JournalEntry::Lane { events, .. } => events
                    .iter()
                    .filter_map(|e| match e {
                        LaneEvent::Expired { .. } => Some("reservation expired"),
                        LaneEvent::Completed {
                            cluster: Some(_), ..
                        } => Some("completion released a reservation"),
                        LaneEvent::ClusterRemoved { .. } => Some("cluster removed from a lane"),
                        LaneEvent::Activated { .. } => Some("lane activated"),
                        LaneEvent::ActivationRefused { .. } => Some("activation refused"),
                        LaneEvent::WindowClosed { .. } => Some("demotion window closed"),
                        LaneEvent::Deactivated { demoted: true, .. } => Some("lane demoted"),
                        _ => None,
                    })
                    .collect(),
                JournalEntry::Cluster { events, .. } => events
                    .iter()
                    .filter_map(|e| match e {
                        ClusterEvent::HealthChanged {
                            to: Health::BreakerOpen,
                            ..
                        } => Some("breaker opened"),
                        ClusterEvent::HealthChanged {
                            slow_start: true, ..
                        } => Some("slow start began"),
                        _ => None,
                    })
                    .collect(),
                JournalEntry::Tenant { events, .. } => events
                    .iter()
                    .filter_map(|e| match e {
                        TenantEvent::MonthStarted { .. } => Some("budget month started"),
                        TenantEvent::BudgetThresholdCrossed { .. } => {
                            Some("budget threshold crossed")
                        }
                        _ => None,
                    })
                    .collect(),
                _ => continue,
            };
            for what in seen {
                *count.entry(what).or_default() += 1;
            }
        }
    }
    let missing_reasons: Vec<_> = Reason::ALL
        .iter()
        .filter(|r| !reasons.contains(*r))
        .collect();
    assert!(
        missing_reasons.is_empty(),
        "never decided with {missing_reasons:?}"
    );
    for m in [
        Mode::Live,
        Mode::OpenrouterFallback,
        Mode::Placeholder,
        Mode::Rejected,
    ] {
        assert!(modes.contains(&m), "never decided with mode {m:?}");
    }
    let all_verdicts = [
        Verdict::Chosen,
        Verdict::NotChosen,
        Verdict::Saturated,
        Verdict::SlowStart,
        Verdict::Down,
        Verdict::Draining,
        Verdict::Unhealthy,
        Verdict::BreakerOpen,
        Verdict::Recovering,
        Verdict::Stale,
        Verdict::NoHeartbeat,
        Verdict::RegionNotAllowed,
        Verdict::DedicatedToOtherTenant,
        Verdict::ProviderDown,
    ];
    let missing_verdicts: Vec<_> = all_verdicts
        .iter()
        .filter(|v| !verdicts.contains(*v))
        .collect();
    assert!(
        missing_verdicts.is_empty(),
        "never considered a cluster {missing_verdicts:?}"
    );
    for what in [
        "reservation expired",
        "completion released a reservation",
        "cluster removed from a lane",
        "breaker opened",
        "slow start began",
        "budget month started",
        "budget threshold crossed",
        "byoc decision filling a cluster of >1 slots",
        "lane activated",
        "activation refused",
        "demotion window closed",
        "lane demoted",
    ] {
        assert!(
            count.get(what).copied().unwrap_or(0) > 0,
            "no generated case had: {what} ({count:?})"
        );
    }
}
