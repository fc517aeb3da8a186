//! Synthetic workload generator: a deterministic stream of input events that looks like an LLM
//! platform's traffic, for `zumik demo`, `zumik produce` (DESIGN §7) and the benches (§9).
//!
//! Owns the *shape* of synthetic traffic: which lanes, tenants and clusters exist, how requests
//! spread over them (a few hot lanes take most of it, Zipf-like, plus a long tail of lanes and
//! tenants), their token counts, the completions that follow them, periodic cluster heartbeats,
//! occasional provider-health changes, scripted bursts and outages.
//!
//! It must not do I/O, read a clock or use ambient randomness: everything follows from the
//! [`WorkloadSpec`] and its `seed`, through an integer-only PRNG (`rng`), so the same spec gives
//! the same events, bit for bit, on every machine. It does not run the router either: it cannot
//! know where a request was served, so completions carry no `profile`/`target` (the broker infers
//! them from its own reservations), and a few completions may refer to requests the broker
//! answered without serving them for reasons only it knows (a paused tenant, a provider down).
//!
//! - [`spec`] — the knobs, their defaults and checks;
//! - `plan` — lanes, tenants with policies, clusters sized to their lane's load;
//! - [`stream`] — the traffic iterator in event-time order;
//! - `rng` — SplitMix64 and the distributions (Zipf, Poisson arrivals, skewed lengths).
//!
//! ```
//! use zumik::workload::{Workload, WorkloadSpec};
//! let w = Workload::new(WorkloadSpec { requests: 100, ..WorkloadSpec::default() }).unwrap();
//! let events: Vec<_> = w.setup_events().into_iter().chain(w.events()).collect();
//! assert!(events.iter().all(|e| e.validate().is_ok()));
//! ```

mod plan;
mod rng;
pub mod spec;
pub mod stream;

use std::sync::Arc;

use crate::events::{
    ClusterHeartbeatV1, ClusterRegisteredV1, ClusterStatus, InputEvent, LaneActivatedV1, Timestamp,
};

use plan::Plan;
pub use spec::{Burst, Outage, SpecInvalid, WorkloadSpec};
pub use stream::{Events, MEAN_SERVICE_MS};

/// Event-time gap between the setup events and the first traffic event.
const SETUP_SPAN_MS: i64 = 1_000;

/// A checked spec with its plan (lanes, tenants, clusters); cheap to ask for events repeatedly.
#[derive(Debug, Clone)]
pub struct Workload {
    spec: Arc<WorkloadSpec>,
    plan: Arc<Plan>,
}

impl Workload {
    pub fn new(spec: WorkloadSpec) -> Result<Self, SpecInvalid> {
        spec.validate()?;
        let plan = Plan::new(&spec);
        Ok(Workload {
            spec: Arc::new(spec),
            plan: Arc::new(plan),
        })
    }

    pub fn spec(&self) -> &WorkloadSpec {
        &self.spec
    }

    /// Hot lanes, most traffic first.
    pub fn hot_lanes(&self) -> &[String] {
        &self.plan.hot
    }

    /// Tail lanes, most traffic first.
    pub fn tail_lanes(&self) -> &[String] {
        &self.plan.tail
    }

    /// Tenant ids, most traffic first.
    pub fn tenant_ids(&self) -> impl Iterator<Item = &str> {
        self.plan
            .tenants
            .iter()
            .map(|t| t.policy.tenant_id.as_str())
    }

    /// Cluster registrations: hot lane 0's clusters first, then lane 1's, … ([`Outage::cluster`]).
    pub fn clusters(&self) -> &[ClusterRegisteredV1] {
        &self.plan.clusters
    }

    /// Event time of the first traffic event.
    pub fn traffic_start(&self) -> Timestamp {
        Timestamp(self.spec.start.millis() + SETUP_SPAN_MS)
    }

    /// The control-plane prelude, in event-time order: tenant policies (at `start`), cluster
    /// registrations (+1 ms), a first `ready` heartbeat per cluster (+2 ms) and, if configured,
    /// the hot lanes' activations (+3 ms).
    pub fn setup_events(&self) -> Vec<InputEvent> {
        let start = self.spec.start.millis();
        let plan = &self.plan;
        let mut out =
            Vec::with_capacity(plan.tenants.len() + 2 * plan.clusters.len() + plan.hot.len());
        out.extend(
            plan.tenants
                .iter()
                .map(|t| InputEvent::TenantPolicy(t.policy.clone())),
        );
        out.extend(
            plan.clusters
                .iter()
                .map(|c| InputEvent::ClusterRegistered(c.clone())),
        );
        out.extend(plan.clusters.iter().map(|c| {
            InputEvent::ClusterHeartbeat(ClusterHeartbeatV1 {
                cluster_id: c.cluster_id.clone(),
                status: ClusterStatus::Ready,
                replicas: Some((c.gpus / 8).max(1)),
                max_inflight: c.max_inflight,
                inflight: 0,
                queue_depth: Some(0),
                ttft_p95_ms: None,
                kv_cache_usage: Some(0.0),
                error_rate: Some(0.0),
                ts: Timestamp(start + 2),
            })
        }));
        if self.spec.activate_hot_lanes {
            out.extend(plan.hot.iter().zip(&plan.digests).map(|(lane, digest)| {
                InputEvent::LaneActivated(LaneActivatedV1 {
                    lane: lane.clone(),
                    report_digest: digest.clone(),
                    ts: Timestamp(start + 3),
                })
            }));
        }
        out
    }

    /// The traffic after the setup, in event-time order (requests, completions, heartbeats,
    /// provider health). Ends once every request and its completion are out; heartbeats and
    /// provider-health events stop with the last request.
    pub fn events(&self) -> Events {
        Events::new(self.spec.clone(), self.plan.clone(), self.traffic_start())
    }
}

/// [`Workload::setup_events`] of a spec.
pub fn setup_events(spec: &WorkloadSpec) -> Result<Vec<InputEvent>, SpecInvalid> {
    Ok(Workload::new(spec.clone())?.setup_events())
}

/// [`Workload::events`] of a spec.
pub fn events(spec: &WorkloadSpec) -> Result<Events, SpecInvalid> {
    Ok(Workload::new(spec.clone())?.events())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::core::{Output, PriceTable, Router, RoutingConfig};
    use crate::events::Reason;

    fn small() -> WorkloadSpec {
        WorkloadSpec {
            requests: 20_000,
            rate_per_sec: 500,
            ..WorkloadSpec::default()
        }
    }

    fn all(spec: &WorkloadSpec) -> Vec<InputEvent> {
        let w = Workload::new(spec.clone()).unwrap();
        w.setup_events().into_iter().chain(w.events()).collect()
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let spec = WorkloadSpec {
            requests: 5_000,
            ..WorkloadSpec::default()
        };
        let a = all(&spec);
        assert_eq!(a, all(&spec));
        let b = all(&WorkloadSpec { seed: 7, ..spec });
        assert_ne!(a, b);
    }

    #[test]
    fn every_event_validates_and_time_never_goes_back() {
        let spec = WorkloadSpec {
            provider_health_interval_ms: 1_000,
            cluster_outage_permille: 50,
            ..small()
        };
        let events = all(&spec);
        let mut last = Timestamp(0);
        for e in &events {
            e.validate().unwrap_or_else(|err| panic!("{err}: {e:?}"));
            assert!(e.ts() >= last, "time went back at {e:?}");
            last = e.ts();
            // The JSON form is valid too (what `zumik produce` writes).
            let bytes = crate::events::codec::encode_input(e);
            assert_eq!(&crate::events::codec::decode_input(&bytes).unwrap(), e);
        }
        let kinds: BTreeSet<&str> = events.iter().map(|e| e.schema_name()).collect();
        for k in [
            "zumik.tenant_policy.v1",
            "zumik.cluster_registered.v1",
            "zumik.cluster_heartbeat.v1",
            "zumik.lane_activated.v1",
            "zumik.request.v1",
            "zumik.completion.v1",
            "zumik.provider_health.v1",
        ] {
            assert!(kinds.contains(k), "no {k}");
        }
    }

    #[test]
    fn the_mix_exercises_the_main_routing_paths() {
        let spec = WorkloadSpec {
            dedicated_permille: 1000,
            ..small()
        };
        let w = Workload::new(spec).unwrap();
        let mut router = Router::new(
            Arc::new(RoutingConfig::default()),
            Arc::new(PriceTable::embedded()),
        );
        let mut out = Output::default();
        for e in w.setup_events().into_iter().chain(w.events()) {
            router.apply(e, &mut out);
        }
        assert!(
            out.warnings.is_empty(),
            "{:?}",
            &out.warnings[..out.warnings.len().min(3)]
        );
        let hot: BTreeSet<&str> = w.hot_lanes().iter().map(String::as_str).collect();
        let mut reasons: BTreeMap<Reason, u64> = BTreeMap::new();
        let (mut on_hot, mut served_hot) = (0u64, 0u64);
        for d in &out.decisions {
            *reasons.entry(d.reason).or_default() += 1;
            if hot.contains(&*d.lane) {
                on_hot += 1;
                served_hot += (d.reason == Reason::HotLane) as u64;
            } else {
                assert_ne!(d.reason, Reason::HotLane);
            }
        }
        assert_eq!(out.decisions.len(), 20_000);
        assert!(
            served_hot * 2 > on_hot,
            "{served_hot} of {on_hot} hot-lane requests on BYOC; {reasons:?}"
        );
        use Reason::*;
        for r in [
            HotLane,
            Tail,
            Subscription,
            Byok,
            TenantPolicy,
            InvalidRequest,
        ] {
            assert!(reasons.contains_key(&r), "no {r:?} in {reasons:?}");
        }
    }

    #[test]
    fn only_tail_or_only_hot_lanes_work() {
        for s in [
            WorkloadSpec {
                hot_lanes: 0,
                requests: 100,
                ..WorkloadSpec::default()
            },
            WorkloadSpec {
                tail_lanes: 0,
                requests: 100,
                ..WorkloadSpec::default()
            },
        ] {
            let n = events(&s)
                .unwrap()
                .filter(|e| matches!(e, InputEvent::Request(_)))
                .count();
            assert_eq!(n, 100);
        }
        let bad = WorkloadSpec {
            rate_per_sec: 0,
            ..WorkloadSpec::default()
        };
        assert_eq!(setup_events(&bad).unwrap_err().field, "rate_per_sec");
    }
}
