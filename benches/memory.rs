//! Memory of the routing state at DESIGN §9's scale (≤ 300 MB RSS at 10 k lanes, 100 k tenants,
//! 1 k clusters), for one engine per run: the inline `core::Router`, or the actix actors
//! (`zumik::actors::ActorEngine`, one actor per lane, cluster and tenant).
//!
//! A synthetic workload with 250 hot lanes × 4 clusters, 9 750 tail lanes and 100 000 tenants
//! (each with a policy) is applied — its setup and enough traffic that every lane has been
//! seen — and the process RSS is printed with the counts reached, then the time one snapshot
//! takes (the actors gather every actor's state by message). The events are generated and
//! dropped in a stream, so what stays is the state (and the allocator's retained memory).
//!
//! Run: `cargo bench --bench memory -- inline` and `cargo bench --bench memory -- actors`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use zumik::actors::Engine;
use zumik::core::router::RouterState;
use zumik::core::{Output, PriceTable, RoutingConfig};
use zumik::kafka::EngineKind;
use zumik::telemetry::rss_mb;
use zumik::workload::{Workload, WorkloadSpec};

fn main() {
    let kind = if std::env::args().skip(1).any(|a| a == "actors") {
        EngineKind::Actors
    } else {
        EngineKind::Inline
    };
    let name = format!("{kind:?}").to_lowercase();
    let spec = WorkloadSpec {
        hot_lanes: 250,
        clusters_per_hot_lane: 4,
        tail_lanes: 9_750,
        tenants: 100_000,
        requests: 400_000,
        rate_per_sec: 20_000,
        hot_share_permille: 300,
        ..WorkloadSpec::default()
    };
    let w = Workload::new(spec).expect("memory workload spec is valid");
    let (cfg, prices) = (
        Arc::new(RoutingConfig::default()),
        Arc::new(PriceTable::embedded()),
    );
    let before = rss_mb();
    let mut engine = Engine::new(kind, cfg, prices);
    let mut out = Output::default();
    for e in w.setup_events().into_iter().chain(w.events()) {
        engine.apply(e, &mut out).expect("actors answer");
        out.clear();
    }
    println!(
        "{name}: RSS {:.1} MB (before state: {before:.1} MB)",
        rss_mb()
    );
    let t = std::time::Instant::now();
    let snapshot = engine.snapshot().expect("actors answer");
    println!(
        "{name}: snapshot {} bytes in {:?}; RSS after it {:.1} MB",
        snapshot.len(),
        t.elapsed(),
        rss_mb()
    );
    let s = RouterState::decode(&snapshot).expect("own snapshot decodes");
    println!(
        "{name}: {} lanes, {} clusters, {} tenants",
        s.lanes.len(),
        s.clusters.len(),
        s.tenants.len()
    );
}
