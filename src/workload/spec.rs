//! The workload spec: what [`super::Workload`] generates, with documented defaults, and its checks.
//!
//! Plain data (serde, so a demo or `zumik produce` can load it from a file); no generation here.

use serde::{Deserialize, Serialize};

use crate::events::time::{MAX_EVENT_MS, MIN_EVENT_MS};
use crate::events::Timestamp;

/// A window of higher (or lower) request rate, relative to the start of the traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    pub start_ms: u64,
    pub duration_ms: u64,
    /// Rate during the burst relative to `rate_per_sec`, permille (3000 = three times).
    pub rate_permille: u32,
}

/// A window in which one cluster's heartbeats report `down`, relative to the start of the traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// Index into [`super::Workload::clusters`] (clusters of hot lane 0 first, then lane 1, …).
    pub cluster: usize,
    pub start_ms: u64,
    pub duration_ms: u64,
}

/// What to generate. Shares and probabilities are integer permille so nothing depends on float
/// rounding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadSpec {
    /// Seeds every random choice. Default 42.
    pub seed: u64,
    /// Event time of the first setup event. Default 2026-11-24T10:00:00Z.
    pub start: Timestamp,
    /// Lanes with BYOC clusters (real model names first, `@ft-…` revisions beyond eight). Default 4.
    pub hot_lanes: usize,
    /// Managed-only lanes of the long tail. Default 200.
    pub tail_lanes: usize,
    /// Tenants, `prj_00001`…; their traffic is Zipf-distributed too. Default 200.
    pub tenants: usize,
    /// BYOC clusters per hot lane (the first is always shared). Default 2.
    pub clusters_per_hot_lane: usize,
    /// Requests to generate (the stream ends when their completions are out). Default 100 000.
    pub requests: u64,
    /// Mean request rate (Poisson arrivals), event time. Default 1 000.
    pub rate_per_sec: u32,
    /// Share of requests on hot lanes; ignored when there are no hot or no tail lanes. Default 800.
    pub hot_share_permille: u32,
    /// Chance that a cluster after a lane's first is dedicated to one tenant. Default 250.
    pub dedicated_permille: u32,
    /// Cluster capacity relative to the lane's expected concurrency. With the broker's default
    /// 0.9 headroom, 1000 leaves some overflow at peaks. Default 1000.
    pub capacity_permille: u32,
    /// Heartbeat period of each cluster (keep it under the broker's `stale_after`). Default 5 000.
    pub heartbeat_interval_ms: u32,
    /// Period of provider-health events; 0 = none. Default 30 000.
    pub provider_health_interval_ms: u32,
    /// Chance that a provider-health event reports `down` (it is `ok` again at the next one). Default 20.
    pub provider_down_permille: u32,
    /// Completions that report `failed`. Default 20.
    pub failed_permille: u32,
    /// Completions that report `cancelled`. Default 10.
    pub cancelled_permille: u32,
    /// Requests whose completion never arrives (the broker's deadline expiry reclaims them). Default 5.
    pub lost_permille: u32,
    /// Requests with more cached than input tokens (`rejected/invalid_request`). Default 1.
    pub invalid_permille: u32,
    /// Chance per heartbeat that a cluster goes down for 2–5 heartbeats. Default 2.
    pub cluster_outage_permille: u32,
    /// Activate every hot lane in the setup (otherwise they stay `not_activated`). Default true.
    pub activate_hot_lanes: bool,
    /// Scripted rate changes. Default none.
    pub bursts: Vec<Burst>,
    /// Scripted cluster outages. Default none.
    pub outages: Vec<Outage>,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            seed: 42,
            start: Timestamp(1_795_514_400_000),
            hot_lanes: 4,
            tail_lanes: 200,
            tenants: 200,
            clusters_per_hot_lane: 2,
            requests: 100_000,
            rate_per_sec: 1_000,
            hot_share_permille: 800,
            dedicated_permille: 250,
            capacity_permille: 1_000,
            heartbeat_interval_ms: 5_000,
            provider_health_interval_ms: 30_000,
            provider_down_permille: 20,
            failed_permille: 20,
            cancelled_permille: 10,
            lost_permille: 5,
            invalid_permille: 1,
            cluster_outage_permille: 2,
            activate_hot_lanes: true,
            bursts: vec![],
            outages: vec![],
        }
    }
}

/// A spec value out of range, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("workload field `{field}`: {reason}")]
pub struct SpecInvalid {
    pub field: &'static str,
    pub reason: &'static str,
}

fn bad(field: &'static str, reason: &'static str) -> SpecInvalid {
    SpecInvalid { field, reason }
}

impl WorkloadSpec {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), SpecInvalid> {
        if !(MIN_EVENT_MS..MAX_EVENT_MS).contains(&self.start.millis()) {
            return Err(bad("start", "must be between 2000 and 2100"));
        }
        if self.hot_lanes + self.tail_lanes == 0 {
            return Err(bad(
                "hot_lanes",
                "there must be at least one hot or tail lane",
            ));
        }
        if self.hot_lanes > 256 {
            return Err(bad("hot_lanes", "at most 256"));
        }
        if self.tail_lanes > 100_000 {
            return Err(bad("tail_lanes", "at most 100 000"));
        }
        if !(1..=1_000_000).contains(&self.tenants) {
            return Err(bad("tenants", "must be 1–1 000 000"));
        }
        if self.hot_lanes > 0 && !(1..=16).contains(&self.clusters_per_hot_lane) {
            return Err(bad(
                "clusters_per_hot_lane",
                "must be 1–16 when there are hot lanes",
            ));
        }
        if self.rate_per_sec == 0 {
            return Err(bad("rate_per_sec", "must be at least 1"));
        }
        for (field, v) in [
            ("hot_share_permille", self.hot_share_permille),
            ("dedicated_permille", self.dedicated_permille),
            ("provider_down_permille", self.provider_down_permille),
            ("invalid_permille", self.invalid_permille),
            ("cluster_outage_permille", self.cluster_outage_permille),
        ] {
            if v > 1000 {
                return Err(bad(field, "must be at most 1000"));
            }
        }
        if self.failed_permille + self.cancelled_permille + self.lost_permille > 1000 {
            return Err(bad(
                "failed_permille",
                "failed + cancelled + lost must be at most 1000",
            ));
        }
        if self.capacity_permille == 0 {
            return Err(bad("capacity_permille", "must be at least 1"));
        }
        if self.heartbeat_interval_ms < 100 {
            return Err(bad("heartbeat_interval_ms", "must be at least 100"));
        }
        if self.provider_health_interval_ms != 0 && self.provider_health_interval_ms < 100 {
            return Err(bad(
                "provider_health_interval_ms",
                "must be 0 or at least 100",
            ));
        }
        if self
            .bursts
            .iter()
            .any(|b| b.rate_permille == 0 || b.duration_ms == 0)
        {
            return Err(bad(
                "bursts",
                "each burst needs a positive duration and rate",
            ));
        }
        let clusters = self.hot_lanes * self.clusters_per_hot_lane;
        if self
            .outages
            .iter()
            .any(|o| o.cluster >= clusters || o.duration_ms == 0)
        {
            return Err(bad(
                "outages",
                "each outage needs an existing cluster index and a positive duration",
            ));
        }
        Ok(())
    }

    /// Share of requests on hot lanes after the edge cases (no hot / no tail lanes).
    pub(super) fn effective_hot_share(&self) -> u64 {
        match (self.hot_lanes, self.tail_lanes) {
            (0, _) => 0,
            (_, 0) => 1000,
            _ => self.hot_share_permille as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        WorkloadSpec::default().validate().unwrap();
    }

    #[test]
    fn bad_specs_name_their_field() {
        let err = |s: WorkloadSpec| s.validate().unwrap_err().field;
        assert_eq!(
            err(WorkloadSpec {
                rate_per_sec: 0,
                ..Default::default()
            }),
            "rate_per_sec"
        );
        assert_eq!(
            err(WorkloadSpec {
                hot_lanes: 0,
                tail_lanes: 0,
                ..Default::default()
            }),
            "hot_lanes"
        );
        assert_eq!(
            err(WorkloadSpec {
                failed_permille: 995,
                ..Default::default()
            }),
            "failed_permille"
        );
        assert_eq!(
            err(WorkloadSpec {
                clusters_per_hot_lane: 0,
                ..Default::default()
            }),
            "clusters_per_hot_lane"
        );
        let outage = Outage {
            cluster: 99,
            start_ms: 0,
            duration_ms: 1,
        };
        assert_eq!(
            err(WorkloadSpec {
                outages: vec![outage],
                ..Default::default()
            }),
            "outages"
        );
        // No hot lanes needs no clusters.
        WorkloadSpec {
            hot_lanes: 0,
            clusters_per_hot_lane: 0,
            ..Default::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn spec_files_reject_unknown_fields() {
        let s: WorkloadSpec = serde_json::from_str(r#"{"seed": 7, "requests": 10}"#).unwrap();
        assert_eq!((s.seed, s.requests, s.hot_lanes), (7, 10, 4));
        assert!(serde_json::from_str::<WorkloadSpec>(r#"{"sead": 7}"#).is_err());
    }
}
