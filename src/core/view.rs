//! Read models of the router state: what the HTTP API, the status page and `/metrics` show of
//! lanes and clusters. Pure functions of [`RouterState`] (sorted, so the same state always gives
//! the same view); the runtime builds them after committed batches, never from uncommitted state.

use serde::Serialize;

use super::cluster::{ClusterState, Health};
use super::lane::LaneState;
use super::router::RouterState;
use super::RoutingConfig;
use crate::events::Stack;

/// One lane as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaneView {
    pub lane: String,
    /// `active` (hot lane, BYOC first) or `inactive` (managed only).
    pub state: &'static str,
    /// Digest of the gate report that activated the lane.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_digest: Option<String>,
    /// Gate reports the lane keeps, newest window last.
    pub reports: Vec<ReportView>,
    pub provider_down: bool,
    /// Clusters serving the lane, in id order.
    pub clusters: Vec<LaneClusterView>,
    /// BYOC requests in flight on this lane.
    pub inflight: u32,
    /// This lane's share of its clusters' capacity (`max_inflight × headroom`).
    pub capacity: u32,
    /// Decisions made on this lane.
    pub decisions: u64,
}

/// A stored gate report of a lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportView {
    pub digest: String,
    pub passed: bool,
    pub digest_ok: bool,
    /// End of the replayed window (ms since the epoch).
    pub window_end_ms: i64,
}

/// A cluster as one lane uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaneClusterView {
    pub cluster_id: String,
    pub health: &'static str,
    pub reserved: u32,
    pub limit: u32,
}

/// One registered cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterInfo {
    pub cluster_id: String,
    pub name: String,
    pub region: String,
    pub stack: Stack,
    pub lanes: Vec<String>,
    pub gpus: u32,
    pub gpu_hour_micros: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedicated_to: Option<String>,
    pub max_inflight: u32,
    /// Slots the broker may reserve (`max_inflight × headroom`).
    pub capacity: u32,
    /// Reserved by all lanes of this router.
    pub inflight: u32,
    pub health: &'static str,
    /// Event time of the last heartbeat (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_ms: Option<i64>,
    pub registered_at_ms: i64,
}

impl ClusterInfo {
    /// Reserved share of capacity, 0–1 (0 for a cluster without capacity).
    pub fn utilisation(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            f64::from(self.inflight) / f64::from(self.capacity)
        }
    }
}

/// Lanes and clusters of one router, in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouterView {
    pub lanes: Vec<LaneView>,
    pub clusters: Vec<ClusterInfo>,
    /// Input events applied.
    pub applied: u64,
}

/// Snake-case name of a health state (API field and metric label).
pub fn health_name(h: Health) -> &'static str {
    match h {
        Health::NoHeartbeat => "no_heartbeat",
        Health::Healthy => "healthy",
        Health::Down => "down",
        Health::Draining => "draining",
        Health::Unhealthy => "unhealthy",
        Health::BreakerOpen => "breaker_open",
        Health::Recovering => "recovering",
    }
}

/// Every health name, for metric label sets that must list all of them.
pub const HEALTH_NAMES: [&str; 7] = [
    "no_heartbeat",
    "healthy",
    "down",
    "draining",
    "unhealthy",
    "breaker_open",
    "recovering",
];

impl RouterView {
    /// The view of `state`.
    pub fn of(state: &RouterState, cfg: &RoutingConfig) -> Self {
        let lanes = state.lanes.values().map(LaneView::of).collect();
        RouterView::from_parts(lanes, state.clusters.values(), state.applied, cfg)
    }

    /// The view of lanes (already viewed, in any order) and clusters (in id order): what the
    /// actor engine gathers, each lane actor viewing its own state.
    pub fn from_parts<'a>(
        mut lanes: Vec<LaneView>,
        clusters: impl Iterator<Item = &'a ClusterState>,
        applied: u64,
        cfg: &RoutingConfig,
    ) -> Self {
        lanes.sort_unstable_by(|a, b| a.lane.cmp(&b.lane));
        let clusters = clusters.map(|c| cluster_info(c, &lanes, cfg)).collect();
        RouterView {
            lanes,
            clusters,
            applied,
        }
    }

    /// One view of several routers that split the lanes' traffic (the broker's per-partition
    /// units): every unit knows every lane and cluster, but a lane's requests are decided in
    /// one unit only. Reservations, in-flight counts, decisions and applied inputs add up; a
    /// lane's activation and reports are those of the unit that decided most on it; a
    /// cluster's registration and health those of the first unit (all apply the same telemetry
    /// and control).
    pub fn merge(views: Vec<RouterView>) -> RouterView {
        let mut views = views.into_iter();
        let Some(mut all) = views.next() else {
            return RouterView::default();
        };
        for v in views {
            all.applied += v.applied;
            let mut lanes = Vec::with_capacity(all.lanes.len().max(v.lanes.len()));
            let (mut a, mut b) = (
                std::mem::take(&mut all.lanes).into_iter().peekable(),
                v.lanes.into_iter().peekable(),
            );
            loop {
                let next = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) if x.lane == y.lane => {
                        let (x, y) = (a.next().expect("peeked"), b.next().expect("peeked"));
                        LaneView::merged(x, y)
                    }
                    (Some(x), Some(y)) if x.lane < y.lane => a.next().expect("peeked"),
                    (Some(_), Some(_)) | (None, Some(_)) => b.next().expect("peeked"),
                    (Some(_), None) => a.next().expect("peeked"),
                    (None, None) => break,
                };
                lanes.push(next);
            }
            all.lanes = lanes;
            for c in v.clusters {
                match all
                    .clusters
                    .binary_search_by(|x| x.cluster_id.cmp(&c.cluster_id))
                {
                    Ok(i) => all.clusters[i].inflight += c.inflight,
                    Err(i) => all.clusters.insert(i, c),
                }
            }
        }
        all
    }

    pub fn cluster(&self, id: &str) -> Option<&ClusterInfo> {
        self.clusters
            .binary_search_by(|c| c.cluster_id.as_str().cmp(id))
            .ok()
            .map(|i| &self.clusters[i])
    }

    pub fn lane(&self, lane: &str) -> Option<&LaneView> {
        self.lanes
            .binary_search_by(|l| l.lane.as_str().cmp(lane))
            .ok()
            .map(|i| &self.lanes[i])
    }
}

impl LaneView {
    /// One lane as two units see it (see [`RouterView::merge`]).
    fn merged(a: LaneView, b: LaneView) -> LaneView {
        let (mut keep, other) = if b.decisions > a.decisions {
            (b, a)
        } else {
            (a, b)
        };
        keep.decisions += other.decisions;
        keep.inflight += other.inflight;
        for oc in other.clusters {
            match keep
                .clusters
                .iter_mut()
                .find(|c| c.cluster_id == oc.cluster_id)
            {
                Some(c) => c.reserved += oc.reserved,
                None => keep.clusters.push(oc),
            }
        }
        keep.clusters
            .sort_by(|x, y| x.cluster_id.cmp(&y.cluster_id));
        keep
    }

    /// What operators see of one lane.
    pub fn of(l: &LaneState) -> LaneView {
        let clusters: Vec<LaneClusterView> = l
            .clusters
            .iter()
            .map(|(id, c)| LaneClusterView {
                cluster_id: id.to_string(),
                health: health_name(c.view.health),
                reserved: c.reserved,
                limit: c.view.lane_limit,
            })
            .collect();
        let mut reports: Vec<ReportView> = l
            .reports
            .values()
            .map(|r| ReportView {
                digest: r.digest.clone(),
                passed: r.passed,
                digest_ok: r.digest_ok,
                window_end_ms: r.window_end,
            })
            .collect();
        reports.sort_by(|a, b| (a.window_end_ms, &a.digest).cmp(&(b.window_end_ms, &b.digest)));
        LaneView {
            lane: l.lane.to_string(),
            state: if l.active { "active" } else { "inactive" },
            report_digest: l.report_digest.clone(),
            reports,
            provider_down: l.provider_down,
            inflight: clusters.iter().map(|c| c.reserved).sum(),
            capacity: clusters.iter().map(|c| c.limit).sum(),
            clusters,
            decisions: l.seq,
        }
    }
}

fn cluster_info(c: &ClusterState, lanes: &[LaneView], cfg: &RoutingConfig) -> ClusterInfo {
    let inflight = c
        .lanes
        .iter()
        .filter_map(|lane| {
            let i = lanes.binary_search_by(|l| l.lane.as_str().cmp(lane)).ok()?;
            lanes[i]
                .clusters
                .iter()
                .find(|lc| *lc.cluster_id == *c.cluster_id)
                .map(|lc| lc.reserved)
        })
        .sum();
    ClusterInfo {
        cluster_id: c.cluster_id.to_string(),
        name: c.name.clone(),
        region: c.region.to_string(),
        stack: c.stack,
        lanes: c.lanes.iter().map(|l| l.to_string()).collect(),
        gpus: c.gpus,
        gpu_hour_micros: c.gpu_hour_micros,
        dedicated_to: c.dedicated_to.as_deref().map(str::to_owned),
        max_inflight: c.max_inflight,
        capacity: c.slots(cfg),
        inflight,
        health: health_name(c.health),
        last_heartbeat_ms: c.last_heartbeat,
        registered_at_ms: c.registered_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Output, PriceTable, Router};
    use crate::events::codec::decode_input;
    use std::sync::Arc;

    fn apply(router: &mut Router, lines: &[&str]) {
        let mut out = Output::default();
        for l in lines {
            router.apply(decode_input(l.as_bytes()).unwrap(), &mut out);
        }
    }

    /// Two routers that saw the same clusters but each decided one lane's requests merge into
    /// the view of one router that decided both.
    #[test]
    fn views_of_units_that_split_the_lanes_add_up_to_one_router() {
        let cfg = Arc::new(RoutingConfig::default());
        let setup = [
            r#"{"schema":"zumik.cluster_registered.v1","cluster_id":"byc_a","name":"a","region":"eu","stack":"epp","lanes":["acme/m","acme/n"],"max_inflight":8,"gpus":2,"gpu_hour_micros":2000000,"ts":"2026-01-01T00:00:00Z"}"#,
            r#"{"schema":"zumik.cluster_heartbeat.v1","cluster_id":"byc_a","status":"ready","max_inflight":8,"inflight":0,"ts":"2026-01-01T00:00:01Z"}"#,
            r#"{"schema":"zumik.lane_activated.v1","lane":"acme/m","report_digest":"sha256:x","ts":"2026-01-01T00:00:01Z"}"#,
            r#"{"schema":"zumik.lane_activated.v1","lane":"acme/n","report_digest":"sha256:y","ts":"2026-01-01T00:00:01Z"}"#,
        ];
        let req = |id: &str, lane: &str| {
            format!(
                r#"{{"schema":"zumik.request.v1","request_id":"{id}","tenant_id":"t","model":"{lane}","input_tokens":10,"cached_input_tokens":0,"max_output_tokens":10,"qos":{{"class":"interactive"}},"ts":"2026-01-01T00:00:02Z"}}"#
            )
        };
        let (m1, m2, n1) = (
            req("r1", "acme/m"),
            req("r2", "acme/m"),
            req("r3", "acme/n"),
        );
        let router = |reqs: &[&str]| {
            let mut r = Router::new(cfg.clone(), Arc::new(PriceTable::embedded()));
            apply(&mut r, &setup);
            apply(&mut r, reqs);
            r
        };
        let one = router(&[&m1, &m2, &n1]);
        let (u0, u1) = (router(&[&m1, &m2]), router(&[&n1]));
        let merged = RouterView::merge(vec![
            RouterView::of(u0.state(), &cfg),
            RouterView::of(u1.state(), &cfg),
        ]);
        let whole = RouterView::of(one.state(), &cfg);
        assert_eq!(merged.lanes, whole.lanes);
        assert_eq!(merged.clusters, whole.clusters);
        assert_eq!(merged.clusters[0].inflight, 3);
        assert_eq!(merged.applied, u0.state().applied + u1.state().applied);
        assert_eq!(RouterView::merge(Vec::new()), RouterView::default());
    }

    #[test]
    fn the_view_shows_clusters_reservations_and_health_in_id_order() {
        let cfg = Arc::new(RoutingConfig::default());
        let mut router = Router::new(cfg.clone(), Arc::new(PriceTable::embedded()));
        apply(
            &mut router,
            &[
                r#"{"schema":"zumik.cluster_registered.v1","cluster_id":"byc_b","name":"b","region":"eu","stack":"dynamo","lanes":["acme/m"],"max_inflight":10,"gpus":8,"gpu_hour_micros":2000000,"ts":"2026-01-01T00:00:00Z"}"#,
                r#"{"schema":"zumik.cluster_registered.v1","cluster_id":"byc_a","name":"a","region":"eu","stack":"epp","lanes":["acme/m","acme/n"],"max_inflight":4,"gpus":2,"gpu_hour_micros":2000000,"ts":"2026-01-01T00:00:00Z"}"#,
                r#"{"schema":"zumik.cluster_heartbeat.v1","cluster_id":"byc_b","status":"ready","max_inflight":10,"inflight":0,"ts":"2026-01-01T00:00:01Z"}"#,
                r#"{"schema":"zumik.lane_activated.v1","lane":"acme/m","report_digest":"sha256:x","ts":"2026-01-01T00:00:01Z"}"#,
                r#"{"schema":"zumik.request.v1","request_id":"r1","tenant_id":"t","model":"acme/m","input_tokens":10,"cached_input_tokens":0,"max_output_tokens":10,"qos":{"class":"interactive"},"ts":"2026-01-01T00:00:02Z"}"#,
            ],
        );
        let view = RouterView::of(router.state(), &cfg);
        let ids: Vec<_> = view
            .clusters
            .iter()
            .map(|c| c.cluster_id.as_str())
            .collect();
        assert_eq!(ids, ["byc_a", "byc_b"]);
        let b = view.cluster("byc_b").unwrap();
        assert_eq!((b.health, b.capacity), ("healthy", 9));
        assert_eq!(view.cluster("byc_a").unwrap().health, "no_heartbeat");
        let m = view.lane("acme/m").unwrap();
        assert_eq!((m.state, m.decisions, m.clusters.len()), ("active", 1, 2));
        // The only healthy cluster took the request.
        assert_eq!((m.inflight, b.inflight), (1, 1));
        assert_eq!(view.cluster("byc_a").unwrap().inflight, 0);
        // Registration creates the lanes a cluster serves; acme/n is not activated.
        let n = view.lane("acme/n").unwrap();
        assert_eq!((n.state, n.decisions, n.capacity), ("inactive", 0, 2));
        assert_eq!(view.applied, 5);
        assert_eq!(view, RouterView::of(router.state(), &cfg));
    }
}
