//! Pure decision throughput and latency of `zumik::core::Router::apply` (DESIGN §9: ≥ 2 M
//! decisions/s on one core, p99 < 2 µs), on realistic mixes from `zumik::workload`.
//!
//! Events are generated before timing. Every timed batch starts from the same router state — the
//! setup events plus a warm-up stretch of traffic applied, then snapshotted — so lanes, clusters,
//! tenants and in-flight reservations are in steady state rather than empty. The router takes
//! events by value, so each batch gets its own clone of the event vector, made outside the timing.
//!
//! Groups (throughput in requests = decisions per second):
//! - `decide/full_mix` — requests, their completions, heartbeats and provider health, as they
//!   arrive (default spec: 4 hot lanes take 80 %, 200 tail lanes, 200 tenants);
//! - `decide_actors/full_mix` — the same events on the actix actors (`zumik::actors`), one actor
//!   per lane, cluster and tenant: the broker's default engine, messages included, applied in
//!   one run of the actor system (`Engine::apply_each`) as the broker applies a run of one
//!   unit's consecutive inputs;
//! - `decide/hot_lane_requests` — only requests, all on one active hot lane with two clusters
//!   (the BYOC path: eligibility, least-utilised pick, reservation);
//! - `decide/tail_lane_requests` — only requests on 200 managed-only tail lanes;
//! - `decide_latency/request` — each request of the full mix timed on its own with `Instant`;
//!   the other events are applied untimed in between. Prints p50/p90/p99/p99.9/max at the end.
//!
//! Run: `cargo bench --bench decide -- --warm-up-time 1 --measurement-time 3`.

/// The same allocator as the `zumik` binary, so the bench measures what production runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use zumik::actors::{ActorEngine, Engine};
use zumik::core::{Output, PriceTable, Router, RoutingConfig};
use zumik::events::InputEvent;
use zumik::workload::{Events, Workload, WorkloadSpec};

/// The routing config and the embedded price table, parsed once (every batch's setup restores a
/// router with them; parsing the table each time only made runs longer).
fn config() -> (Arc<RoutingConfig>, Arc<PriceTable>) {
    static PARTS: std::sync::OnceLock<(Arc<RoutingConfig>, Arc<PriceTable>)> =
        std::sync::OnceLock::new();
    PARTS
        .get_or_init(|| {
            (
                Arc::new(RoutingConfig::default()),
                Arc::new(PriceTable::embedded()),
            )
        })
        .clone()
}

/// A router after the workload's setup and `warmup_ms` of its traffic, plus the traffic after.
struct Prepared {
    snapshot: Vec<u8>,
    events: Vec<InputEvent>,
    requests: u64,
}

impl Prepared {
    fn new(spec: WorkloadSpec, warmup_ms: i64, keep: impl Fn(&InputEvent) -> bool) -> Self {
        let w = Workload::new(spec).expect("bench workload spec is valid");
        let (cfg, prices) = config();
        let mut router = Router::new(cfg, prices);
        let mut out = Output::default();
        for e in w.setup_events() {
            router.apply(e, &mut out);
        }
        let warm_until = w.traffic_start().millis() + warmup_ms;
        let mut events = Vec::new();
        for e in w.events() {
            if e.ts().millis() < warm_until {
                router.apply(e, &mut out);
                out.clear();
            } else if keep(&e) {
                events.push(e);
            }
        }
        let requests = events
            .iter()
            .filter(|e| matches!(e, InputEvent::Request(_)))
            .count() as u64;
        Prepared {
            snapshot: router.snapshot(),
            events,
            requests,
        }
    }

    fn router(&self) -> Router {
        let (cfg, prices) = config();
        Router::restore(cfg, prices, &self.snapshot).expect("own snapshot restores")
    }
}

/// Applies every event; the decisions are dropped as they come (a runtime encodes and drops them
/// too). Drains rather than consumes the vector and hands it back with the router, so that freeing
/// the buffer and the router state is not timed.
fn run(mut router: Router, mut events: Vec<InputEvent>) -> (Router, Vec<InputEvent>) {
    let mut out = Output::default();
    for e in events.drain(..) {
        router.apply(e, &mut out);
        black_box(&out.decisions);
        out.clear();
    }
    (router, events)
}

fn bench_prepared(c: &mut Criterion, name: &str, p: &Prepared) {
    let mut g = c.benchmark_group("decide");
    g.sample_size(10);
    g.throughput(Throughput::Elements(p.requests));
    g.bench_function(name, |b| {
        b.iter_batched(
            || (p.router(), p.events.clone()),
            |(r, ev)| run(r, ev),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn full_mix(c: &mut Criterion) {
    // ~10 s of warm-up, then ~50 s of traffic: 50 k requests, ~50 k completions, ~90 heartbeats.
    let spec = WorkloadSpec {
        requests: 60_000,
        ..WorkloadSpec::default()
    };
    let p = Prepared::new(spec, 10_000, |_| true);
    bench_prepared(c, "full_mix", &p);
}

/// The same full mix on the actix actors (`zumik::actors::ActorEngine`, the broker's default
/// engine): against `decide/full_mix`, what the messages cost per input.
fn full_mix_actors(c: &mut Criterion) {
    let spec = WorkloadSpec {
        requests: 60_000,
        ..WorkloadSpec::default()
    };
    let p = Prepared::new(spec, 10_000, |_| true);
    let mut g = c.benchmark_group("decide_actors");
    g.sample_size(10);
    g.throughput(Throughput::Elements(p.requests));
    g.bench_function("full_mix", |b| {
        b.iter_batched(
            || {
                let (cfg, prices) = config();
                let actors = Engine::Actors(
                    ActorEngine::restore(cfg, prices, &p.snapshot).expect("restores"),
                );
                (actors, p.events.clone())
            },
            |(mut actors, mut events)| {
                let mut out = Output::default();
                let inputs = events.drain(..).map(|e| (e, ()));
                actors
                    .apply_each(inputs, &mut out, |out, ()| {
                        black_box(&out.decisions);
                        out.clear();
                        Ok::<_, zumik::actors::ActorGone>(())
                    })
                    .expect("actors run");
                (actors, events)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn hot_lane_requests(c: &mut Criterion) {
    // 20 k requests/s on one hot lane: 0.5 s of full traffic warms it up, then 100 k requests
    // (5 s of event time, so heartbeats stay fresh without completions releasing capacity;
    // clusters get twice the expected concurrency so the BYOC path is the one measured).
    let spec = WorkloadSpec {
        hot_lanes: 1,
        tail_lanes: 0,
        requests: 110_000,
        rate_per_sec: 20_000,
        capacity_permille: 2_000,
        ..WorkloadSpec::default()
    };
    let p = Prepared::new(spec, 500, |e| {
        matches!(e, InputEvent::Request(_) | InputEvent::ClusterHeartbeat(_))
    });
    bench_prepared(c, "hot_lane_requests", &p);
}

fn tail_lane_requests(c: &mut Criterion) {
    let spec = WorkloadSpec {
        hot_lanes: 0,
        tail_lanes: 200,
        requests: 60_000,
        ..WorkloadSpec::default()
    };
    let p = Prepared::new(spec, 10_000, |e| matches!(e, InputEvent::Request(_)));
    bench_prepared(c, "tail_lane_requests", &p);
}

/// Times each request's `apply` on its own over the full mix, generating events lazily (untimed).
struct LatencyProbe {
    workload: Workload,
    state: Option<(Router, Events)>,
    out: Output,
    /// Nanoseconds per timed request.
    samples: Vec<u32>,
}

impl LatencyProbe {
    fn new() -> Self {
        let spec = WorkloadSpec {
            requests: 2_000_000,
            ..WorkloadSpec::default()
        };
        let workload = Workload::new(spec).expect("bench workload spec is valid");
        LatencyProbe {
            workload,
            state: None,
            out: Output::default(),
            samples: Vec::new(),
        }
    }

    /// A router after the setup and 10 s of traffic, and the traffic after that.
    fn fresh(&mut self) -> (Router, Events) {
        let (cfg, prices) = config();
        let mut router = Router::new(cfg, prices);
        for e in self.workload.setup_events() {
            router.apply(e, &mut self.out);
        }
        let mut events = self.workload.events();
        let warm_until = self.workload.traffic_start().millis() + 10_000;
        for e in events.by_ref() {
            let done = e.ts().millis() >= warm_until;
            router.apply(e, &mut self.out);
            self.out.clear();
            if done {
                break;
            }
        }
        (router, events)
    }

    /// Applies events until `iters` requests were timed; returns their summed time.
    fn measure(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut timed = 0;
        while timed < iters {
            let (mut router, mut events) = match self.state.take() {
                Some(s) => s,
                None => self.fresh(),
            };
            let Some(e) = events.next() else {
                continue; // exhausted: start over from a fresh router
            };
            if matches!(e, InputEvent::Request(_)) {
                let t0 = Instant::now();
                router.apply(e, &mut self.out);
                let dt = t0.elapsed();
                total += dt;
                timed += 1;
                self.samples
                    .push(dt.as_nanos().min(u32::MAX as u128) as u32);
            } else {
                router.apply(e, &mut self.out);
            }
            black_box(&self.out.decisions);
            self.out.clear();
            self.state = Some((router, events));
        }
        total
    }

    fn report(&mut self) {
        // `cargo bench -- --test` runs one iteration: no distribution worth printing.
        if self.samples.len() < 1_000 {
            return;
        }
        // What `Instant::now` + `elapsed` cost on their own: included in every sample above.
        let mut overhead: Vec<u32> = (0..100_000)
            .map(|_| {
                let t0 = Instant::now();
                t0.elapsed().as_nanos() as u32
            })
            .collect();
        overhead.sort_unstable();
        self.samples.sort_unstable();
        let s = &self.samples;
        let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
        println!(
            "decide_latency/request: {} requests timed one by one: p50 {} ns, p90 {} ns, p99 {} ns, \
             p99.9 {} ns, max {} ns (timer overhead p50 {} ns, included)",
            s.len(),
            q(0.50),
            q(0.90),
            q(0.99),
            q(0.999),
            s[s.len() - 1],
            overhead[overhead.len() / 2],
        );
    }
}

fn request_latency(c: &mut Criterion) {
    let mut probe = LatencyProbe::new();
    let mut g = c.benchmark_group("decide_latency");
    g.throughput(Throughput::Elements(1));
    g.bench_function("request", |b| b.iter_custom(|iters| probe.measure(iters)));
    g.finish();
    probe.report();
}

criterion_group!(
    benches,
    full_mix,
    full_mix_actors,
    hot_lane_requests,
    tail_lane_requests,
    request_latency
);
criterion_main!(benches);
