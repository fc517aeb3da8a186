//! Telemetry: every Prometheus metric name, its labels and help text live here (DESIGN §7), and
//! the `tracing` log setup. Label sets are bounded: profile, reason, mode and health are closed
//! enums; `cluster` is bounded by the registered clusters (deregistered ones are dropped at the
//! next view); `topic`/`partition` by the assigned input partitions.

use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::core::view::{RouterView, HEALTH_NAMES};
use crate::events::{DecisionV1, Name};

pub const DECISIONS_TOTAL: &str = "zumik_decisions_total";
pub const INPUTS_TOTAL: &str = "zumik_inputs_total";
pub const DLQ_TOTAL: &str = "zumik_dlq_total";
pub const ALREADY_APPLIED_TOTAL: &str = "zumik_inputs_already_applied_total";
pub const BATCHES_TOTAL: &str = "zumik_batches_total";
pub const BATCH_SECONDS: &str = "zumik_batch_seconds";
pub const COMMIT_SECONDS: &str = "zumik_commit_seconds";
pub const SNAPSHOT_SECONDS: &str = "zumik_snapshot_seconds";
pub const INPUT_LAG: &str = "zumik_input_lag_messages";
pub const LANES: &str = "zumik_lanes";
pub const CLUSTERS: &str = "zumik_clusters";
pub const CLUSTER_UTILISATION: &str = "zumik_cluster_utilisation";
pub const CLUSTER_INFLIGHT: &str = "zumik_cluster_inflight";
pub const CLUSTER_CAPACITY: &str = "zumik_cluster_capacity";
pub const CLUSTER_HEALTHY: &str = "zumik_cluster_healthy";
pub const CLUSTER_HEARTBEAT_AGE: &str = "zumik_cluster_heartbeat_age_seconds";
pub const READY: &str = "zumik_ready";
pub const RESTARTS_TOTAL: &str = "zumik_broker_restarts_total";
pub const API_REQUESTS_TOTAL: &str = "zumik_api_requests_total";
pub const INTERNED_NAMES: &str = "zumik_interned_names";

/// Every metric name (the dashboard and `docs/operations.md` are checked against this list).
pub const ALL: [&str; 20] = [
    DECISIONS_TOTAL,
    INPUTS_TOTAL,
    DLQ_TOTAL,
    ALREADY_APPLIED_TOTAL,
    BATCHES_TOTAL,
    BATCH_SECONDS,
    COMMIT_SECONDS,
    SNAPSHOT_SECONDS,
    INPUT_LAG,
    LANES,
    CLUSTERS,
    CLUSTER_UTILISATION,
    CLUSTER_INFLIGHT,
    CLUSTER_CAPACITY,
    CLUSTER_HEALTHY,
    CLUSTER_HEARTBEAT_AGE,
    READY,
    RESTARTS_TOTAL,
    API_REQUESTS_TOTAL,
    INTERNED_NAMES,
];

/// Buckets of the batch and commit histograms (seconds).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// The broker's metrics, registered in their own registry (no global state).
pub struct Metrics {
    registry: Registry,
    pub decisions: IntCounterVec,
    pub inputs: IntCounter,
    pub dlq: IntCounter,
    pub already_applied: IntCounter,
    pub batches: IntCounter,
    pub batch_seconds: Histogram,
    pub commit_seconds: Histogram,
    pub snapshot_seconds: Histogram,
    pub input_lag: IntGaugeVec,
    pub lanes: IntGaugeVec,
    pub clusters: IntGaugeVec,
    pub cluster_utilisation: GaugeVec,
    pub cluster_inflight: IntGaugeVec,
    pub cluster_capacity: IntGaugeVec,
    pub cluster_healthy: IntGaugeVec,
    pub cluster_heartbeat_age: GaugeVec,
    pub ready: IntGauge,
    pub restarts: IntCounter,
    pub api_requests: IntCounterVec,
    /// Set from [`Name::interned`] at each scrape.
    pub interned_names: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("metric definition");
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric names are unique");
                m
            }};
        }
        let hist = |name: &str, help: &str| {
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
        };
        Metrics {
            decisions: reg!(IntCounterVec::new(
                Opts::new(DECISIONS_TOTAL, "Committed routing decisions."),
                &["profile", "reason", "mode"]
            )),
            inputs: reg!(IntCounter::new(INPUTS_TOTAL, "Input events applied and committed.")),
            dlq: reg!(IntCounter::new(DLQ_TOTAL, "Input messages sent to the DLQ.")),
            already_applied: reg!(IntCounter::new(
                ALREADY_APPLIED_TOTAL,
                "Input messages consumed again and skipped: their unit had applied them (the \
                 group's committed offsets were gone or behind)."
            )),
            batches: reg!(IntCounter::new(BATCHES_TOTAL, "Committed batches.")),
            batch_seconds: reg!(Histogram::with_opts(hist(
                BATCH_SECONDS,
                "Time from a batch's first input to its commit."
            ))),
            commit_seconds: reg!(Histogram::with_opts(hist(
                COMMIT_SECONDS,
                "Time of the commit (transaction commit, or flush + offset commit)."
            ))),
            snapshot_seconds: reg!(Histogram::with_opts(hist(
                SNAPSHOT_SECONDS,
                "Time to write one RocksDB snapshot."
            ))),
            input_lag: reg!(IntGaugeVec::new(
                Opts::new(INPUT_LAG, "Messages behind the high watermark, per assigned input partition."),
                &["topic", "partition"]
            )),
            lanes: reg!(IntGaugeVec::new(
                Opts::new(LANES, "Lanes by state (active = hot lane)."),
                &["state"]
            )),
            clusters: reg!(IntGaugeVec::new(
                Opts::new(CLUSTERS, "Registered clusters by health."),
                &["health"]
            )),
            cluster_utilisation: reg!(GaugeVec::new(
                Opts::new(CLUSTER_UTILISATION, "Reserved share of a cluster's capacity (0-1)."),
                &["cluster"]
            )),
            cluster_inflight: reg!(IntGaugeVec::new(
                Opts::new(CLUSTER_INFLIGHT, "Requests reserved on a cluster."),
                &["cluster"]
            )),
            cluster_capacity: reg!(IntGaugeVec::new(
                Opts::new(CLUSTER_CAPACITY, "Slots the broker may reserve on a cluster (max_inflight x headroom)."),
                &["cluster"]
            )),
            cluster_healthy: reg!(IntGaugeVec::new(
                Opts::new(CLUSTER_HEALTHY, "1 when the cluster is healthy, else 0."),
                &["cluster"]
            )),
            cluster_heartbeat_age: reg!(GaugeVec::new(
                Opts::new(CLUSTER_HEARTBEAT_AGE, "Event-time age of a cluster's last heartbeat relative to the newest one, seconds."),
                &["cluster"]
            )),
            ready: reg!(IntGauge::new(READY, "1 once recovery is done and the broker consumes.")),
            restarts: reg!(IntCounter::new(
                RESTARTS_TOTAL,
                "Broker loop restarts after a Kafka error."
            )),
            api_requests: reg!(IntCounterVec::new(
                Opts::new(API_REQUESTS_TOTAL, "HTTP API requests by route and status class."),
                &["route", "status"]
            )),
            interned_names: reg!(IntGauge::new(
                INTERNED_NAMES,
                "Distinct lane, cluster, tenant, provider, region and target ids interned by \
                 this process (never freed: grows with every new id seen)."
            )),
            registry,
        }
    }

    /// Counts committed decisions.
    pub fn count_decisions(&self, decisions: &[DecisionV1]) {
        // Consecutive decisions mostly share their labels: look each run up once.
        let mut i = 0;
        while i < decisions.len() {
            let d = &decisions[i];
            let key = (d.profile, d.mode, d.reason);
            let run = decisions[i..]
                .iter()
                .take_while(|e| (e.profile, e.mode, e.reason) == key)
                .count();
            self.decisions
                .with_label_values(&[
                    d.profile.map_or("none", |p| p.as_str()),
                    d.reason.as_str(),
                    d.mode.as_str(),
                ])
                .inc_by(run as u64);
            i += run;
        }
    }

    /// Sets the lane and cluster gauges from a view (clusters no longer registered disappear).
    pub fn observe_view(&self, view: &RouterView) {
        let active = view.lanes.iter().filter(|l| l.state == "active").count();
        self.lanes.with_label_values(&["active"]).set(active as i64);
        self.lanes
            .with_label_values(&["inactive"])
            .set((view.lanes.len() - active) as i64);
        for h in HEALTH_NAMES {
            let n = view.clusters.iter().filter(|c| c.health == h).count();
            self.clusters.with_label_values(&[h]).set(n as i64);
        }
        for g in [&self.cluster_utilisation, &self.cluster_heartbeat_age] {
            g.reset();
        }
        for g in [
            &self.cluster_inflight,
            &self.cluster_capacity,
            &self.cluster_healthy,
        ] {
            g.reset();
        }
        let newest = view
            .clusters
            .iter()
            .filter_map(|c| c.last_heartbeat_ms)
            .max();
        for c in &view.clusters {
            let id = [c.cluster_id.as_str()];
            self.cluster_utilisation
                .with_label_values(&id)
                .set(c.utilisation());
            self.cluster_inflight
                .with_label_values(&id)
                .set(i64::from(c.inflight));
            self.cluster_capacity
                .with_label_values(&id)
                .set(i64::from(c.capacity));
            self.cluster_healthy
                .with_label_values(&id)
                .set(i64::from(c.health == "healthy"));
            if let (Some(last), Some(newest)) = (c.last_heartbeat_ms, newest) {
                self.cluster_heartbeat_age
                    .with_label_values(&id)
                    .set((newest - last) as f64 / 1000.0);
            }
        }
    }

    /// Sets the lag gauges (partitions no longer assigned disappear).
    pub fn observe_lag(&self, lag: &[(String, i32, i64)]) {
        self.input_lag.reset();
        for (topic, partition, n) in lag {
            self.input_lag
                .with_label_values(&[topic.as_str(), &partition.to_string()])
                .set(*n);
        }
    }

    pub fn observe(&self, h: &Histogram, d: Duration) {
        h.observe(d.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.interned_names
            .set(i64::try_from(Name::interned()).unwrap_or(i64::MAX));
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of gathered metrics");
        String::from_utf8(buf).expect("Prometheus text is UTF-8")
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Human,
    /// One JSON object per event.
    Json,
}

/// Installs the `tracing` subscriber for the process: stderr, `format`, level from `ZUMIK_LOG`
/// (default `info`; any `tracing_subscriber::EnvFilter` directive).
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZUMIK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // A second init (tests) keeps the first subscriber.
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if installed.is_ok() {
        // A panic (a bug: in an actor's handler, say) reaches the log too, not only stderr.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            tracing::error!(thread = thread.name().unwrap_or("unnamed"), "panic: {info}");
            previous(info);
        }));
    }
}

/// Resident set size of this process now, MB (from `/proc/self/status`; 0 where there is none).
pub fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Mode, Profile, Reason};

    fn decision(profile: Option<Profile>, reason: Reason, mode: Mode) -> DecisionV1 {
        DecisionV1 {
            request_id: "r".into(),
            tenant_id: "t".into(),
            lane: "a/b".into(),
            profile,
            mode,
            target: None,
            reason,
            considered: vec![],
            estimated_cost_micros: 0,
            decided_at: crate::events::Timestamp(0),
            seq: 1,
            policy_version: 0,
            detail: None,
            source: None,
        }
    }

    #[test]
    fn decisions_are_counted_by_profile_reason_and_mode() {
        let m = Metrics::new();
        let hot = decision(Some(Profile::ByocDynamo), Reason::HotLane, Mode::Live);
        let over = decision(Some(Profile::ManagedProvider), Reason::Overflow, Mode::Live);
        let rej = decision(None, Reason::UnknownTenant, Mode::Rejected);
        m.count_decisions(&[hot.clone(), hot.clone(), over, hot, rej]);
        let text = m.render();
        assert!(
            text.contains(
                r#"zumik_decisions_total{mode="live",profile="byoc_dynamo",reason="hot_lane"} 3"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"zumik_decisions_total{mode="live",profile="managed_provider",reason="overflow"} 1"#
        ));
        assert!(text.contains(
            r#"zumik_decisions_total{mode="rejected",profile="none",reason="unknown_tenant"} 1"#
        ));
    }

    /// `zumik_…` names in `text`, histogram suffixes removed.
    fn names_in(text: &str) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for (i, _) in text.match_indices("zumik_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| ALL.contains(b)))
                .unwrap_or(&name);
            if base != "zumik_" {
                out.insert(base.to_owned()); // a bare `zumik_` is the prefix, not a name
            }
        }
        out
    }

    #[test]
    fn a_scrape_reports_the_interned_names() {
        Name::new("telemetry-test-lane");
        let text = Metrics::new().render();
        let line = text
            .lines()
            .find(|l| l.starts_with("zumik_interned_names "))
            .expect("the gauge is rendered");
        let n: i64 = line["zumik_interned_names ".len()..].parse().unwrap();
        assert!(n >= 1, "{line}");
    }

    #[test]
    fn every_metric_is_registered_documented_and_the_dashboard_uses_no_other() {
        let m = Metrics::new();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let ops = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
        let dash = std::fs::read_to_string(root.join("docs/grafana-dashboard.json")).unwrap();
        for name in ALL {
            assert!(
                ops.contains(&format!("`{name}`")),
                "{name} is not in docs/operations.md"
            );
            // A second metric of the same name is refused only if the name is registered.
            let twin = IntCounter::new(name, "twin").unwrap();
            assert!(
                m.registry.register(Box::new(twin)).is_err(),
                "{name} is not registered"
            );
        }
        let unknown: Vec<_> = names_in(&dash)
            .into_iter()
            .filter(|n| !ALL.contains(&n.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "the dashboard uses undefined metrics {unknown:?}"
        );
        let unknown: Vec<_> = names_in(&ops)
            .into_iter()
            .filter(|n| !ALL.contains(&n.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "docs/operations.md names undefined metrics {unknown:?}"
        );
    }

    #[test]
    fn deregistered_clusters_leave_the_gauges() {
        use crate::core::view::ClusterInfo;
        let m = Metrics::new();
        let cluster = |id: &str, inflight| ClusterInfo {
            cluster_id: id.into(),
            name: id.into(),
            region: "eu".into(),
            stack: crate::events::Stack::Dynamo,
            lanes: vec![],
            gpus: 1,
            gpu_hour_micros: 1,
            dedicated_to: None,
            max_inflight: 10,
            capacity: 8,
            inflight,
            health: "healthy",
            last_heartbeat_ms: Some(1000),
            registered_at_ms: 0,
        };
        let mut view = RouterView {
            clusters: vec![cluster("byc_a", 2), cluster("byc_b", 8)],
            ..RouterView::default()
        };
        m.observe_view(&view);
        let text = m.render();
        assert!(
            text.contains(r#"zumik_cluster_utilisation{cluster="byc_a"} 0.25"#),
            "{text}"
        );
        assert!(text.contains(r#"zumik_cluster_utilisation{cluster="byc_b"} 1"#));
        assert!(text.contains(r#"zumik_clusters{health="healthy"} 2"#));
        view.clusters.remove(0);
        m.observe_view(&view);
        let text = m.render();
        assert!(!text.contains(r#"cluster="byc_a""#), "{text}");
        assert!(text.contains(r#"zumik_clusters{health="healthy"} 1"#));
    }
}
