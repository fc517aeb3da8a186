//! The traffic of a workload: an iterator of requests, their completions, cluster heartbeats and
//! provider-health events in event-time order.
//!
//! Owns arrivals (Poisson, with scripted bursts), request shapes (tokens, QoS, regions), the
//! latency and outcome model of completions, and heartbeat / provider-health content. It reads the
//! plan and never changes it.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::events::{
    ClusterHeartbeatV1, ClusterStatus, CompletionV1, InputEvent, ModelPath, Outcome, ProfileClass,
    ProviderHealthV1, ProviderStatus, Qos, RequestV1, Timestamp,
};

use super::plan::Plan;
use super::rng::Rng;
use super::spec::WorkloadSpec;

/// Mean request service time (ms) of the latency model below: ~320 ms TTFT plus ~250 output
/// tokens at ~20 ms each. The plan sizes clusters with it; a test keeps it honest.
pub const MEAN_SERVICE_MS: u64 = 5_200;
const STREAM_SALT: u64 = 0x7374_7265_616d_5a6b;
const ERROR_CLASSES: [&str; 4] = ["upstream_5xx", "timeout", "rate_limited", "overloaded"];
/// `max_output_tokens` callers ask for, with weights in permille.
const MAX_OUTPUT: [(u32, u64); 5] = [
    (256, 150),
    (512, 250),
    (1024, 300),
    (2048, 200),
    (4096, 100),
];

/// What happens at a future instant: a request's end, or the next tick of a periodic source.
#[derive(Debug)]
enum Scheduled {
    Completion(Box<CompletionV1>),
    Heartbeat(usize),
    ProviderHealth,
}

/// A future event; the heap is a min-heap on `(at_ns, seq)`, `seq` breaking ties in the order
/// things were scheduled so the output never depends on heap internals.
#[derive(Debug)]
struct Item {
    at_ns: u64,
    seq: u64,
    what: Scheduled,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ns, self.seq) == (other.at_ns, other.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_ns, other.seq).cmp(&(self.at_ns, self.seq))
    }
}

/// Iterator over the traffic of a [`super::Workload`]. Time runs in nanoseconds since the traffic start
/// internally (arrivals can be denser than 1 ms) and is truncated to milliseconds on the events,
/// so `ts` never decreases.
#[derive(Debug)]
pub struct Events {
    spec: Arc<WorkloadSpec>,
    plan: Arc<Plan>,
    rng: Rng,
    traffic_start_ms: i64,
    next_request_ns: u64,
    emitted: u64,
    last_request_ns: u64,
    seq: u64,
    queue: BinaryHeap<Item>,
    /// Heartbeats each cluster still reports `down` for (random outages).
    down_for: Vec<u32>,
    /// Provider currently reported down (back to `ok` at the next provider-health event).
    provider_down: Option<usize>,
}

impl Iterator for Events {
    type Item = InputEvent;

    fn next(&mut self) -> Option<InputEvent> {
        loop {
            let request_due = (self.emitted < self.spec.requests).then_some(self.next_request_ns);
            let from_queue = match (self.queue.peek(), request_due) {
                (Some(item), Some(r)) => item.at_ns <= r,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return None,
            };
            if !from_queue {
                return Some(self.request());
            }
            let item = self.queue.pop()?;
            let periodic_over =
                self.emitted >= self.spec.requests && item.at_ns > self.last_request_ns;
            match item.what {
                Scheduled::Completion(c) => return Some(InputEvent::Completion(*c)),
                Scheduled::Heartbeat(_) | Scheduled::ProviderHealth if periodic_over => continue,
                Scheduled::Heartbeat(i) => return Some(self.heartbeat(i, item.at_ns)),
                Scheduled::ProviderHealth => return Some(self.provider_health(item.at_ns)),
            }
        }
    }
}

impl Events {
    pub(super) fn new(spec: Arc<WorkloadSpec>, plan: Arc<Plan>, traffic_start: Timestamp) -> Self {
        let mut ev = Events {
            rng: Rng::new(spec.seed, STREAM_SALT),
            traffic_start_ms: traffic_start.millis(),
            next_request_ns: 0,
            emitted: 0,
            last_request_ns: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            down_for: vec![0; plan.clusters.len()],
            provider_down: None,
            spec,
            plan,
        };
        for i in 0..ev.plan.clusters.len() {
            // Spread heartbeats over the period so they do not all land on the same millisecond.
            let phase_ms = ev.rng.below(ev.spec.heartbeat_interval_ms as u64);
            ev.schedule(phase_ms * 1_000_000, Scheduled::Heartbeat(i));
        }
        if ev.spec.provider_health_interval_ms > 0 {
            ev.schedule(
                ev.spec.provider_health_interval_ms as u64 * 1_000_000,
                Scheduled::ProviderHealth,
            );
        }
        ev.next_request_ns = ev.interarrival_ns(0);
        ev
    }

    /// Requests emitted so far.
    pub fn requests_emitted(&self) -> u64 {
        self.emitted
    }

    fn schedule(&mut self, at_ns: u64, what: Scheduled) {
        self.seq += 1;
        self.queue.push(Item {
            at_ns,
            seq: self.seq,
            what,
        });
    }

    fn ts(&self, at_ns: u64) -> Timestamp {
        Timestamp(self.traffic_start_ms + (at_ns / 1_000_000) as i64)
    }

    /// Gap to the next arrival (Poisson process; bursts scale the rate).
    fn interarrival_ns(&mut self, at_ns: u64) -> u64 {
        let at_ms = at_ns / 1_000_000;
        let mut mean_ns = 1_000_000_000u128 / self.spec.rate_per_sec as u128;
        if let Some(b) = self
            .spec
            .bursts
            .iter()
            .find(|b| (b.start_ms..b.start_ms + b.duration_ms).contains(&at_ms))
        {
            mean_ns = mean_ns * 1000 / b.rate_permille as u128;
        }
        ((mean_ns * self.rng.exp_fixed() as u128) >> 32) as u64
    }

    fn request(&mut self) -> InputEvent {
        let at = self.next_request_ns;
        let n = self.emitted;
        self.emitted += 1;
        self.last_request_ns = at;
        self.next_request_ns = at + self.interarrival_ns(at);

        let plan = self.plan.clone();
        let spec = self.spec.clone();
        let rng = &mut self.rng;
        let hot = rng.below(1000) < spec.effective_hot_share();
        let lane = if hot {
            &plan.hot[rng.pick_cdf(&plan.hot_cdf)]
        } else {
            &plan.tail[rng.pick_cdf(&plan.tail_cdf)]
        };
        let tenant = &plan.tenants[rng.pick_cdf(&plan.tenant_cdf)];

        let input_tokens = rng.skewed(100, 8_000);
        let mut cached_input_tokens = if rng.chance(600) {
            (input_tokens as u64 * rng.below(901) / 1000) as u32
        } else {
            0
        };
        // A broken client now and then: the broker answers `rejected/invalid_request`.
        let invalid = rng.chance(spec.invalid_permille);
        if invalid {
            cached_input_tokens = input_tokens + 1 + rng.below(100) as u32;
        }
        let max_output_tokens = rng.pick_weighted(&MAX_OUTPUT);
        // Residency-restricted tenants occasionally call from outside their regions (rejected).
        let foreign = tenant.restricted && rng.chance(10);
        let region = if foreign {
            Some("us-east-1".to_owned())
        } else {
            rng.chance(900).then(|| tenant.home_region.to_owned())
        };
        let interactive = rng.chance(800);
        let qos = if interactive {
            Qos {
                class: "interactive".into(),
                target_ttft_ms: Some(800),
                deadline_ms: Some(60_000),
                priority: Some(5),
            }
        } else {
            Qos {
                class: "batch".into(),
                target_ttft_ms: None,
                deadline_ms: None,
                priority: Some(1),
            }
        };
        let allowed_profiles = rng.chance(20).then(|| vec![ProfileClass::ManagedProvider]);
        let alias = rng.chance(200).then(|| {
            let model = ModelPath::parse(lane).map_or(lane.as_str(), |p| p.model);
            model.rsplit('/').next().unwrap_or(model).to_owned()
        });
        let request = RequestV1 {
            request_id: format!("req_s{}_{:010}", spec.seed, n + 1).into(),
            tenant_id: tenant.policy.tenant_id.as_str().into(),
            model: lane.clone(),
            alias,
            input_tokens,
            cached_input_tokens,
            max_output_tokens,
            qos,
            region,
            allowed_profiles,
            ts: self.ts(at),
        };
        if !invalid && !foreign {
            self.schedule_completion(at, &request);
        }
        InputEvent::Request(request)
    }

    /// The outcome of a request as the data plane would report it, scheduled at its end.
    fn schedule_completion(&mut self, at: u64, r: &RequestV1) {
        let spec = &self.spec;
        let rng = &mut self.rng;
        let roll = rng.below(1000) as u32;
        let (lost, failed, cancelled) = (
            spec.lost_permille,
            spec.failed_permille,
            spec.cancelled_permille,
        );
        let outcome = if roll < lost {
            return;
        } else if roll < lost + failed {
            Outcome::Failed
        } else if roll < lost + failed + cancelled {
            Outcome::Cancelled
        } else {
            Outcome::Completed
        };
        // Latency model: prefill grows with the uncached prompt, decode at 10–30 ms per token.
        let ttft = 120
            + (r.input_tokens - r.cached_input_tokens.min(r.input_tokens)) / 20
            + rng.below(201) as u32;
        let per_token = rng.between(10, 30) as u32;
        let full_output = rng.skewed(10, 1_000).min(r.max_output_tokens);
        let (ttft_ms, output_tokens, latency_ms, error_class) = match outcome {
            Outcome::Completed => (
                Some(ttft),
                full_output,
                ttft + full_output * per_token,
                None,
            ),
            Outcome::Failed if rng.chance(500) => {
                // Failed before the first token.
                let err = ERROR_CLASSES[rng.below(ERROR_CLASSES.len() as u64) as usize];
                (
                    None,
                    0,
                    rng.between(50, 2 * ttft as u64) as u32,
                    Some(err.to_owned()),
                )
            }
            Outcome::Failed => {
                let err = ERROR_CLASSES[rng.below(ERROR_CLASSES.len() as u64) as usize];
                let partial = full_output * rng.below(100) as u32 / 100;
                (
                    Some(ttft),
                    partial,
                    ttft + partial * per_token + 1,
                    Some(err.to_owned()),
                )
            }
            _ => {
                let partial = full_output * rng.below(100) as u32 / 100;
                (Some(ttft), partial, ttft + partial * per_token + 1, None)
            }
        };
        let end = at + latency_ms as u64 * 1_000_000;
        let completion = CompletionV1 {
            request_id: r.request_id.clone(),
            tenant_id: r.tenant_id.clone(),
            model: r.model.clone(),
            outcome,
            input_tokens: r.input_tokens,
            cached_input_tokens: r.cached_input_tokens,
            output_tokens,
            ttft_ms,
            latency_ms: Some(latency_ms),
            error_class,
            profile: None,
            target: None,
            ts: self.ts(end),
        };
        self.schedule(end, Scheduled::Completion(Box::new(completion)));
    }

    fn heartbeat(&mut self, i: usize, at: u64) -> InputEvent {
        self.schedule(
            at + self.spec.heartbeat_interval_ms as u64 * 1_000_000,
            Scheduled::Heartbeat(i),
        );
        let at_ms = at / 1_000_000;
        let scripted =
            self.spec.outages.iter().any(|o| {
                o.cluster == i && (o.start_ms..o.start_ms + o.duration_ms).contains(&at_ms)
            });
        let c = &self.plan.clusters[i];
        let rng = &mut self.rng;
        let down = if scripted {
            true
        } else if self.down_for[i] > 0 {
            self.down_for[i] -= 1;
            true
        } else if rng.chance(self.spec.cluster_outage_permille) {
            self.down_for[i] = rng.between(1, 4) as u32;
            true
        } else {
            false
        };
        let status = match (down, rng.chance(20)) {
            (true, _) => ClusterStatus::Down,
            (false, true) => ClusterStatus::Degraded,
            (false, false) => ClusterStatus::Ready,
        };
        let hb = if down {
            ClusterHeartbeatV1 {
                cluster_id: c.cluster_id.clone(),
                status,
                replicas: Some(0),
                max_inflight: c.max_inflight,
                inflight: 0,
                queue_depth: None,
                ttft_p95_ms: None,
                kv_cache_usage: None,
                error_rate: None,
                ts: self.ts(at),
            }
        } else {
            ClusterHeartbeatV1 {
                cluster_id: c.cluster_id.clone(),
                status,
                replicas: Some((c.gpus / 8).max(1)),
                max_inflight: c.max_inflight,
                inflight: rng.below(c.max_inflight as u64 + 1) as u32,
                queue_depth: Some(rng.below(8) as u32),
                ttft_p95_ms: Some(rng.between(300, 900) as u32),
                kv_cache_usage: Some(rng.between(200, 900) as f64 / 1000.0),
                error_rate: Some(rng.below(20) as f64 / 1000.0),
                ts: self.ts(at),
            }
        };
        InputEvent::ClusterHeartbeat(hb)
    }

    fn provider_health(&mut self, at: u64) -> InputEvent {
        self.schedule(
            at + self.spec.provider_health_interval_ms as u64 * 1_000_000,
            Scheduled::ProviderHealth,
        );
        let rng = &mut self.rng;
        let (idx, status, error_rate) = match self.provider_down.take() {
            Some(p) => (p, ProviderStatus::Ok, 0),
            None => {
                let p = rng.below(self.plan.providers.len() as u64) as usize;
                let roll = rng.below(1000);
                let down = self.spec.provider_down_permille as u64;
                if roll < down {
                    self.provider_down = Some(p);
                    (p, ProviderStatus::Down, 1000)
                } else if roll < down + 80 {
                    (p, ProviderStatus::Degraded, rng.between(50, 200))
                } else {
                    (p, ProviderStatus::Ok, rng.below(10))
                }
            }
        };
        InputEvent::ProviderHealth(ProviderHealthV1 {
            provider: self.plan.providers[idx].clone(),
            status,
            error_rate: Some(error_rate as f64 / 1000.0),
            ts: self.ts(at),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::workload::{Burst, Outage, Workload, SETUP_SPAN_MS};

    fn small() -> WorkloadSpec {
        WorkloadSpec {
            requests: 20_000,
            rate_per_sec: 500,
            ..WorkloadSpec::default()
        }
    }

    #[test]
    fn hot_lanes_take_most_requests() {
        let spec = small();
        let w = Workload::new(spec.clone()).unwrap();
        let mut per_lane: HashMap<String, u64> = HashMap::new();
        for e in w.events() {
            if let InputEvent::Request(r) = e {
                *per_lane.entry(r.model).or_default() += 1;
            }
        }
        let count = |l: &String| per_lane.get(l).copied().unwrap_or(0);
        let hot: u64 = w.hot_lanes().iter().map(count).sum();
        let share = hot * 1000 / spec.requests;
        assert!((770..=830).contains(&share), "hot share {share}‰");
        let min_hot = w.hot_lanes().iter().map(count).min().unwrap();
        let max_tail = w.tail_lanes().iter().map(count).max().unwrap();
        assert!(
            min_hot > 2 * max_tail,
            "coldest hot lane {min_hot}, busiest tail lane {max_tail}"
        );
        // Zipf within the hot lanes: rank 1 about twice rank 2.
        let (h0, h1) = (count(&w.hot_lanes()[0]), count(&w.hot_lanes()[1]));
        assert!(h0 * 10 > h1 * 17 && h0 * 10 < h1 * 23, "{h0} vs {h1}");
        // The long tail is actually used.
        assert!(w.tail_lanes().iter().filter(|l| count(l) > 0).count() > 150);
    }

    #[test]
    fn completions_follow_their_requests_with_realistic_shapes() {
        let spec = small();
        let mut requested: HashMap<String, (Timestamp, u32)> = HashMap::new();
        let (mut completed, mut failed, mut latency_sum) = (0u64, 0u64, 0u64);
        let mut input_sum = 0u64;
        for e in Workload::new(spec.clone()).unwrap().events() {
            match e {
                InputEvent::Request(r) => {
                    assert!((100..=8_000).contains(&r.input_tokens));
                    input_sum += r.input_tokens as u64;
                    requested.insert(r.request_id.to_string(), (r.ts, r.max_output_tokens));
                }
                InputEvent::Completion(c) => {
                    let (ts, max_out) = requested
                        .remove(c.request_id.as_str())
                        .expect("completion of an unknown request");
                    assert!(c.ts > ts);
                    assert!(c.output_tokens <= max_out.min(1_000));
                    match c.outcome {
                        Outcome::Completed => {
                            completed += 1;
                            latency_sum += c.latency_ms.unwrap() as u64;
                            assert!(c.output_tokens >= 10);
                        }
                        Outcome::Failed => failed += 1,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        let n = spec.requests;
        assert!(completed * 1000 / n >= 950, "{completed} completed of {n}");
        assert!(
            (10..=30).contains(&(failed * 1000 / n)),
            "{failed} failed of {n}"
        );
        let never = requested.len() as u64;
        assert!(never > 0 && never * 1000 / n < 15, "{never} never complete");
        let mean_latency = latency_sum / completed;
        assert!(
            mean_latency.abs_diff(MEAN_SERVICE_MS) * 100 < MEAN_SERVICE_MS * 15,
            "mean latency {mean_latency} ms"
        );
        let mean_input = input_sum / n;
        assert!(
            (1_800..=2_400).contains(&mean_input),
            "mean input {mean_input}"
        );
    }

    #[test]
    fn arrivals_follow_the_configured_rate() {
        let spec = WorkloadSpec {
            requests: 50_000,
            rate_per_sec: 2_000,
            ..WorkloadSpec::default()
        };
        let w = Workload::new(spec.clone()).unwrap();
        let times: Vec<i64> = w
            .events()
            .filter_map(|e| matches!(e, InputEvent::Request(_)).then(|| e.ts().millis()))
            .collect();
        let span_ms = times.last().unwrap() - times.first().unwrap();
        // 50 000 requests at 2 000/s take ~25 s.
        assert!((24_000..=26_000).contains(&span_ms), "{span_ms} ms");
    }

    #[test]
    fn bursts_and_outages_follow_the_script() {
        let spec = WorkloadSpec {
            // ~5 s at 1 000/s, 5 s at 4 000/s, then ~20 s more at 1 000/s.
            requests: 45_000,
            cluster_outage_permille: 0,
            bursts: vec![Burst {
                start_ms: 5_000,
                duration_ms: 5_000,
                rate_permille: 4_000,
            }],
            outages: vec![Outage {
                cluster: 1,
                start_ms: 12_000,
                duration_ms: 10_000,
            }],
            ..WorkloadSpec::default()
        };
        let w = Workload::new(spec).unwrap();
        let t0 = w.traffic_start().millis();
        let mut per_second: BTreeMap<i64, u64> = BTreeMap::new();
        let mut down = vec![];
        for e in w.events() {
            match &e {
                InputEvent::Request(r) => {
                    *per_second.entry((r.ts.millis() - t0) / 1000).or_default() += 1
                }
                InputEvent::ClusterHeartbeat(h) if h.status == ClusterStatus::Down => {
                    assert_eq!(h.cluster_id, w.clusters()[1].cluster_id);
                    down.push(h.ts.millis() - t0);
                }
                _ => {}
            }
        }
        assert!(
            per_second[&2] < 1_200 && per_second[&7] > 3_000,
            "{per_second:?}"
        );
        assert_eq!(down.len(), 2, "{down:?}");
        assert!(down.iter().all(|t| (12_000..22_000).contains(t)));
    }

    #[test]
    fn heartbeats_keep_every_cluster_fresh() {
        let w = Workload::new(small()).unwrap();
        let mut last: HashMap<String, i64> = w
            .clusters()
            .iter()
            .map(|c| (c.cluster_id.clone(), c.ts.millis() + 1))
            .collect();
        let interval = w.spec().heartbeat_interval_ms as i64;
        for e in w.events() {
            if let InputEvent::ClusterHeartbeat(h) = e {
                let prev = last
                    .insert(h.cluster_id.clone(), h.ts.millis())
                    .expect("known cluster");
                assert!(
                    h.ts.millis() - prev <= interval + SETUP_SPAN_MS,
                    "{} gap",
                    h.cluster_id
                );
            }
        }
    }
}
