//! Deterministic replay of one lane's requests through the production [`Router`] with a
//! simulated cluster of one size.
//!
//! The router sees exactly what it would see in production, in event time:
//!
//! 1. a tenant policy for one synthetic tenant (BYOC first, then managed), a
//!    `zumik.cluster_registered.v1` for the candidate (`max_inflight = replicas × seqs`), a
//!    first ready heartbeat and a `zumik.lane_activated.v1`, just before the first request;
//! 2. the requests in arrival order (`max_output_tokens` = the actual output, so the reservation
//!    and the cost are exact; `qos.deadline_ms` = service time + 1 s, so the completion — not the
//!    expiry — frees the slot);
//! 3. before each request, every event due by its time, oldest first: completions of requests
//!    the router sent to the cluster (at arrival + service time) and ready heartbeats every
//!    `stale_after_ms / 3` (so the cluster never goes stale).
//!
//! Requests the router sends to managed are the overflow. Completions are all successful: the
//! gate judges reliability from observed or configured rates, not by injecting failures.
//! Demotion is switched off for the replay: the gate measures the candidate as if it stayed
//! active. Nothing here reads a clock or does I/O; progress is reported through a callback.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use crate::core::{Output, PriceTable, Router, RoutingConfig};
use crate::events::{
    ClusterHeartbeatV1, ClusterRegisteredV1, ClusterStatus, CompletionV1, InputEvent,
    LaneActivatedV1, Mode, Outcome, Profile, ProfileClass, Qos, Reason, RequestV1, Stack,
    TenantPolicyV1, Timestamp,
};

use super::model::ClusterSpec;
use super::stats::Buckets;

/// The synthetic tenant all replayed traffic belongs to.
pub const REPLAY_TENANT: &str = "prj_gate_replay";
/// The simulated cluster's id.
pub const REPLAY_CLUSTER: &str = "byc_gate_candidate";

/// One request of the lane, with what the replay needs precomputed (service time depends only
/// on the per-sequence rates, so it is shared by every cluster size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneRequest {
    pub ts_ms: i64,
    pub input_tokens: u32,
    pub cached_input_tokens: u32,
    pub output_tokens: u32,
    pub service_ms: u64,
    pub prefill_ms: u64,
    /// Cost at the managed price, micros.
    pub managed_micros: u64,
}

/// What one replay produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayResult {
    /// The lane's slot limit on the cluster as the router computed it (`max_inflight × headroom`).
    pub slots: u32,
    pub byoc: u64,
    pub overflow: u64,
    /// Managed decisions for another reason than overflow, and rejections/placeholders.
    pub other: u64,
    /// Decisions by reason code.
    pub by_reason: BTreeMap<&'static str, u64>,
    /// Managed cost of every request not served by the cluster, micros.
    pub managed_micros: u64,
    /// Managed cost of rejected requests (billed by no one), micros.
    pub rejected_micros: u64,
    pub rejected: u64,
    /// Busy slot-ms of the cluster inside the window.
    pub busy_ms: u64,
    /// Prefill times of the requests the cluster served, ascending.
    pub ttft_ms: Vec<u64>,
    /// Per bucket: arrivals, requests served by the cluster, overflowed requests, busy slot-ms,
    /// peak concurrent sequences.
    pub arrivals: Vec<u64>,
    pub served: Vec<u64>,
    pub overflowed: Vec<u64>,
    pub busy_slot_ms: Vec<u64>,
    pub peak_busy: Vec<u64>,
    /// Router warnings (code: message), deduplicated by code with a count.
    pub warnings: BTreeMap<&'static str, (u64, String)>,
}

/// The routing config a replay runs under: the production one without demotion.
pub fn replay_config(cfg: &RoutingConfig) -> Arc<RoutingConfig> {
    let mut c = cfg.clone();
    c.gate.demotion = false;
    Arc::new(c)
}

/// The setup events (tenant, cluster, first heartbeat, activation) at `t0 − 2 ms … t0 − 1 ms`.
fn setup_events(lane: &str, spec: &ClusterSpec, t0: i64) -> Vec<InputEvent> {
    let before = Timestamp(t0 - 2);
    let just_before = Timestamp(t0 - 1);
    vec![
        InputEvent::TenantPolicy(TenantPolicyV1 {
            tenant_id: REPLAY_TENANT.to_owned(),
            allowed_regions: None,
            allowed_profiles: Some(vec![ProfileClass::Byoc, ProfileClass::ManagedProvider]),
            data_boundary: None,
            subscriptions: vec![],
            byok: vec![],
            monthly_budget_micros: None,
            overage_mode: None,
            escalation: Some(vec![ProfileClass::Byoc, ProfileClass::ManagedProvider]),
            ts: before,
        }),
        InputEvent::ClusterRegistered(ClusterRegisteredV1 {
            cluster_id: REPLAY_CLUSTER.to_owned(),
            name: "gate-candidate".to_owned(),
            region: "gate-sim".to_owned(),
            stack: Stack::Dynamo,
            lanes: vec![lane.to_owned()],
            max_inflight: spec.max_inflight(),
            gpus: spec.gpus(),
            gpu_hour_micros: spec.gpu_hour_micros,
            dedicated_to: None,
            ts: before,
        }),
        heartbeat(spec, just_before.0),
        InputEvent::LaneActivated(LaneActivatedV1 {
            lane: lane.to_owned(),
            report_digest: "sha256:gate-replay".to_owned(),
            ts: just_before,
        }),
    ]
}

fn heartbeat(spec: &ClusterSpec, ts: i64) -> InputEvent {
    InputEvent::ClusterHeartbeat(ClusterHeartbeatV1 {
        replicas: Some(spec.replicas),
        ..ClusterHeartbeatV1::new(
            REPLAY_CLUSTER,
            ClusterStatus::Ready,
            spec.max_inflight(),
            Timestamp(ts),
        )
    })
}

/// Replays `requests` (one lane, arrival order) against a cluster of `spec`.
/// `window` is `(start, end)` event time; `buckets` the series resolution.
/// `progress` is called with the number of requests done since the last call.
#[allow(clippy::too_many_arguments)]
pub fn replay(
    cfg: &Arc<RoutingConfig>,
    prices: &Arc<PriceTable>,
    lane: &str,
    requests: &[LaneRequest],
    spec: &ClusterSpec,
    window: (i64, i64),
    buckets: &Buckets,
    progress: &mut dyn FnMut(u64),
) -> ReplayResult {
    let mut router = Router::new(cfg.clone(), prices.clone());
    let mut out = Output::default();
    let t0 = requests.first().map_or(window.0, |r| r.ts_ms);
    for e in setup_events(lane, spec, t0) {
        router.apply(e, &mut out);
    }
    let slots = router
        .state()
        .lanes
        .get(lane)
        .and_then(|l| l.clusters.get(REPLAY_CLUSTER))
        .map_or(0, |c| c.view.lane_limit);
    let hb_every = (cfg.stale_after_ms / 3).max(1);
    let mut next_hb = t0 - 1 + hb_every;
    let mut res = ReplayResult {
        slots,
        byoc: 0,
        overflow: 0,
        other: 0,
        by_reason: BTreeMap::new(),
        managed_micros: 0,
        rejected_micros: 0,
        rejected: 0,
        busy_ms: 0,
        ttft_ms: Vec::new(),
        arrivals: vec![0; buckets.count],
        served: vec![0; buckets.count],
        overflowed: vec![0; buckets.count],
        busy_slot_ms: vec![0; buckets.count],
        peak_busy: vec![0; buckets.count],
        warnings: BTreeMap::new(),
    };
    // (completion time, request index): min-heap, ties in request order.
    let mut due: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    let mut inflight = 0u64;
    let tenant = REPLAY_TENANT.to_owned();
    let lane_s = lane.to_owned();
    let mut since_progress = 0u64;
    for (i, r) in requests.iter().enumerate() {
        // Everything due by this arrival, in event-time order (completions first on ties: the
        // slot is free at the instant the sequence ends).
        loop {
            let next_done = due.peek().map(|Reverse((t, _))| *t);
            if next_done.is_some_and(|t| t <= r.ts_ms && t <= next_hb) {
                let Some(Reverse((t_done, k))) = due.pop() else {
                    break;
                };
                router.apply(
                    InputEvent::Completion(completion(k, &tenant, &lane_s, &requests[k], t_done)),
                    &mut out,
                );
                inflight -= 1;
            } else if next_hb <= r.ts_ms {
                router.apply(heartbeat(spec, next_hb), &mut out);
                next_hb += hb_every;
            } else {
                break;
            }
        }
        router.apply(
            InputEvent::Request(request(i, &tenant, &lane_s, r)),
            &mut out,
        );
        let b = buckets.index(r.ts_ms);
        res.arrivals[b] += 1;
        // One request, one decision (the router never drops one).
        for d in out.decisions.drain(..) {
            *res.by_reason.entry(Reason::as_str(d.reason)).or_insert(0) += 1;
            match (d.profile, d.mode) {
                (Some(Profile::ByocDynamo | Profile::ByocEpp), _) => {
                    res.byoc += 1;
                    res.served[b] += 1;
                    let done = r.ts_ms + r.service_ms as i64;
                    due.push(Reverse((done, i)));
                    inflight += 1;
                    res.peak_busy[b] = res.peak_busy[b].max(inflight);
                    buckets.spread(r.ts_ms, done, &mut res.busy_slot_ms);
                    res.busy_ms += (done.min(window.1) - r.ts_ms.max(window.0)).max(0) as u64;
                    res.ttft_ms.push(r.prefill_ms);
                }
                (_, Mode::Rejected) => {
                    res.rejected += 1;
                    res.rejected_micros += r.managed_micros;
                }
                (_, _) => {
                    if d.reason == Reason::Overflow {
                        res.overflow += 1;
                        res.overflowed[b] += 1;
                    } else {
                        res.other += 1;
                    }
                    res.managed_micros += r.managed_micros;
                }
            }
        }
        for w in out.warnings.drain(..) {
            res.warnings.entry(w.code).or_insert((0, w.message)).0 += 1;
        }
        out.clear();
        since_progress += 1;
        if since_progress == 1024 {
            progress(since_progress);
            since_progress = 0;
        }
    }
    progress(since_progress);
    res.ttft_ms.sort_unstable();
    res
}

fn request(i: usize, tenant: &str, lane: &str, r: &LaneRequest) -> RequestV1 {
    RequestV1 {
        request_id: format!("g{i}").into(),
        tenant_id: tenant.into(),
        model: lane.to_owned(),
        alias: None,
        input_tokens: r.input_tokens,
        cached_input_tokens: r.cached_input_tokens,
        max_output_tokens: r.output_tokens,
        qos: Qos {
            class: "replay".to_owned(),
            target_ttft_ms: None,
            deadline_ms: Some((r.service_ms + 1000).min(u32::MAX as u64) as u32),
            priority: None,
        },
        region: None,
        allowed_profiles: None,
        ts: Timestamp(r.ts_ms),
    }
}

fn completion(i: usize, tenant: &str, lane: &str, r: &LaneRequest, ts: i64) -> CompletionV1 {
    CompletionV1 {
        request_id: format!("g{i}").into(),
        tenant_id: tenant.into(),
        model: lane.to_owned(),
        outcome: Outcome::Completed,
        input_tokens: r.input_tokens,
        cached_input_tokens: r.cached_input_tokens,
        output_tokens: r.output_tokens,
        ttft_ms: Some(r.prefill_ms.min(u32::MAX as u64) as u32),
        latency_ms: Some(r.service_ms.min(u32::MAX as u64) as u32),
        error_class: None,
        profile: Some(Profile::ByocDynamo),
        target: Some(REPLAY_CLUSTER.to_owned()),
        ts: Timestamp(ts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(replicas: u32) -> ClusterSpec {
        ClusterSpec {
            replicas,
            gpus_per_replica: 1,
            gpu_hour_micros: 1_000_000,
            seqs_per_replica: 1,
            prefill_tokens_per_s: 1000,
            decode_tokens_per_s: 100,
        }
    }

    /// `n` requests 100 ms apart, each 1 000 in + 100 out tokens (2 s of service).
    fn requests(n: usize) -> Vec<LaneRequest> {
        (0..n)
            .map(|i| LaneRequest {
                ts_ms: 1_700_000_000_000 + 100 * i as i64,
                input_tokens: 1000,
                cached_input_tokens: 0,
                output_tokens: 100,
                service_ms: 2000,
                prefill_ms: 1000,
                managed_micros: 3_500,
            })
            .collect()
    }

    fn run(replicas: u32, reqs: &[LaneRequest], cfg: RoutingConfig) -> ReplayResult {
        let start = reqs[0].ts_ms;
        let end = reqs.last().unwrap().ts_ms;
        let b = Buckets::covering(start, end, 60_000);
        replay(
            &replay_config(&cfg),
            &Arc::new(PriceTable::embedded()),
            "openai/gpt-4o",
            reqs,
            &spec(replicas),
            (start, end),
            &b,
            &mut |_| {},
        )
    }

    #[test]
    fn the_router_fills_the_slots_and_overflows_the_rest() {
        // 10 replicas × 1 seq × headroom 0.9 = 9 slots; 2 s service and 100 ms spacing means 20
        // would be needed, so after the first 9 only every completion frees one slot.
        let r = run(10, &requests(100), RoutingConfig::default());
        assert_eq!(r.slots, 9);
        assert_eq!(r.byoc + r.overflow, 100);
        assert_eq!(r.other + r.rejected, 0);
        // Slots free at 2000 ms after each start: requests at t = 0..800 ms fill them, then each
        // freed slot is taken by the arrival at the same instant (completion first).
        // Served: t = 0..800 (9), then 2000..2800 (9), 4000..4800, … ; 100 arrivals over 9.9 s.
        let served: u64 = (0..100u64).filter(|i| (i * 100) % 2000 < 900).count() as u64;
        assert_eq!(r.byoc, served);
        assert_eq!(r.managed_micros, r.overflow * 3_500);
        assert_eq!(r.by_reason["hot_lane"], r.byoc);
        assert_eq!(r.by_reason["overflow"], r.overflow);
        assert_eq!(r.peak_busy.iter().max(), Some(&9));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn heartbeats_keep_the_cluster_fresh_over_long_gaps() {
        // Two requests an hour apart: without heartbeats the cluster would be stale.
        let mut reqs = requests(2);
        reqs[1].ts_ms = reqs[0].ts_ms + 3_600_000;
        let r = run(
            1,
            &reqs,
            RoutingConfig {
                headroom: 1.0,
                ..RoutingConfig::default()
            },
        );
        assert_eq!((r.slots, r.byoc, r.overflow), (1, 2, 0));
    }

    #[test]
    fn the_slot_count_is_the_cores_lane_limit() {
        // One sequence × headroom 0.9 still leaves the one slot (the core rounds up).
        let r = run(1, &requests(5), RoutingConfig::default());
        assert_eq!(r.slots, spec(1).usable_slots(&RoutingConfig::default()));
        assert_eq!((r.slots, r.byoc, r.overflow), (1, 1, 4));
    }
}
