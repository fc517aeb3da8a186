//! The candidate cluster model: what a BYOC cluster of a given size costs, how many sequences it
//! serves at once, and how long it takes to serve one request.
//!
//! Deliberately simple and integer-exact, so the gate's numbers can be recomputed by hand:
//!
//! - capacity = `replicas × seqs_per_replica` concurrent sequences (the cluster's
//!   `max_inflight`); the broker fills at most `max_inflight × headroom` of it;
//! - service time of a request = `input / prefill + output / decode` seconds, with the per-sequence
//!   prefill and decode token rates (rounded up to the millisecond, at least 1 ms);
//! - cost = `replicas × gpus_per_replica × gpu_hour_price × hours`, paid whether busy or idle.
//!
//! **Break-even utilisation** (see [`break_even_utilisation`]): the share of its usable slots a
//! cluster must keep busy for the managed spend it displaces to equal its own cost:
//!
//! ```text
//!            cluster cost per second
//! u* = ------------------------------------------------
//!      usable slots × managed cost per busy slot-second
//!
//! managed cost per busy slot-second = Σ managed cost of the lane's requests
//!                                     / Σ service time of those requests on this cluster
//! ```

use serde::Serialize;

use crate::core::cluster::ClusterState;
use crate::core::RoutingConfig;
use crate::events::{ClusterRegisteredV1, Stack, Timestamp};

/// A candidate cluster. Rates are per sequence (one request being served).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClusterSpec {
    pub replicas: u32,
    pub gpus_per_replica: u32,
    /// Price of one GPU-hour, micros.
    pub gpu_hour_micros: u64,
    /// Concurrent sequences one replica serves.
    pub seqs_per_replica: u32,
    /// Prompt tokens per second per sequence.
    pub prefill_tokens_per_s: u32,
    /// Generated tokens per second per sequence.
    pub decode_tokens_per_s: u32,
}

/// A spec that cannot describe a cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cluster spec: {field} {reason}")]
pub struct SpecError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl ClusterSpec {
    /// Every count and rate must be positive (a price of 0 is allowed: owned hardware).
    pub fn validate(&self) -> Result<(), SpecError> {
        let positive = [
            ("replicas", self.replicas),
            ("gpus_per_replica", self.gpus_per_replica),
            ("seqs_per_replica", self.seqs_per_replica),
            ("prefill_tokens_per_s", self.prefill_tokens_per_s),
            ("decode_tokens_per_s", self.decode_tokens_per_s),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(SpecError {
                    field,
                    reason: "must be at least 1",
                });
            }
        }
        if self.replicas.checked_mul(self.seqs_per_replica).is_none()
            || self.replicas.checked_mul(self.gpus_per_replica).is_none()
        {
            return Err(SpecError {
                field: "replicas",
                reason: "is too large",
            });
        }
        Ok(())
    }

    /// The same replicas, another count of them.
    pub fn with_replicas(self, replicas: u32) -> Self {
        ClusterSpec { replicas, ..self }
    }

    pub fn gpus(&self) -> u32 {
        self.replicas * self.gpus_per_replica
    }

    /// Concurrent sequences of the whole cluster: its registered `max_inflight`.
    pub fn max_inflight(&self) -> u32 {
        self.replicas * self.seqs_per_replica
    }

    /// Slots the broker may fill on this cluster when it serves one lane (`max_inflight ×
    /// headroom`, as the core rounds it): asked of the core's own cluster view, so the
    /// diagnostic and the replay can never disagree with production on capacity.
    pub fn usable_slots(&self, cfg: &RoutingConfig) -> u32 {
        let reg = ClusterRegisteredV1 {
            cluster_id: "byc_spec".to_owned(),
            name: "spec".to_owned(),
            region: "spec".to_owned(),
            stack: Stack::Dynamo,
            lanes: vec!["spec/lane".to_owned()],
            max_inflight: self.max_inflight(),
            gpus: self.gpus(),
            gpu_hour_micros: self.gpu_hour_micros,
            dedicated_to: None,
            ts: Timestamp(0),
        };
        ClusterState::registered(&reg)
            .view("spec/lane", cfg)
            .lane_limit
    }

    /// Cluster cost per hour, micros.
    pub fn cost_per_hour_micros(&self) -> u64 {
        self.gpus() as u64 * self.gpu_hour_micros
    }

    /// Cluster cost of a window of `window_ms`, micros, rounded half up.
    pub fn cost_micros(&self, window_ms: u64) -> u64 {
        let num = self.cost_per_hour_micros() as u128 * window_ms as u128;
        ((num + 1_800_000) / 3_600_000) as u64
    }

    /// Time to first token of a request on an idle slot: its prefill, ms, rounded up.
    pub fn prefill_ms(&self, input_tokens: u32) -> u64 {
        (input_tokens as u64 * 1000).div_ceil(self.prefill_tokens_per_s as u64)
    }

    /// Service time of a request: `input / prefill + output / decode`, ms, rounded up, ≥ 1 ms.
    pub fn service_ms(&self, input_tokens: u32, output_tokens: u32) -> u64 {
        let (p, d) = (
            self.prefill_tokens_per_s as u128,
            self.decode_tokens_per_s as u128,
        );
        let num = input_tokens as u128 * 1000 * d + output_tokens as u128 * 1000 * p;
        (num.div_ceil(p * d) as u64).max(1)
    }
}

/// Break-even utilisation `u*` (module docs): `cost_per_hour × busy_ms / (3.6e6 × slots × managed)`.
///
/// `managed_micros` and `busy_ms` are the managed cost and the service time of the same
/// requests. `None` when it is undefined (no usable slots, no managed cost). Values above 1 mean
/// the cluster cannot pay for itself even fully busy.
pub fn break_even_utilisation(
    cost_per_hour_micros: u64,
    slots: u32,
    managed_micros: u64,
    busy_ms: u64,
) -> Option<f64> {
    if slots == 0 || managed_micros == 0 {
        return None;
    }
    let num = cost_per_hour_micros as f64 * busy_ms as f64;
    let den = 3_600_000.0 * slots as f64 * managed_micros as f64;
    Some(num / den)
}

/// Parses a dollar amount (`2.5`, `$2.50`, `0.000001`) into micros, exactly (no floats).
pub fn parse_usd_micros(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_start_matches('$');
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !(digits(whole) || whole.is_empty() && digits(frac)) || !(frac.is_empty() || digits(frac)) {
        return Err(format!("{s:?} is not a dollar amount like 2.50"));
    }
    if frac.len() > 6 {
        return Err(format!(
            "{s:?} has more than 6 decimals (1 micro = $0.000001)"
        ));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| format!("{s:?} is too large"))?
    };
    let frac_micros: u64 = format!("{frac:0<6}").parse().unwrap_or(0);
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac_micros))
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Formats micros as dollars with cents, rounded half up: `$1,234.57`.
pub fn usd(micros: u64) -> String {
    let cents = (micros + 5_000) / 10_000;
    let whole = (cents / 100).to_string();
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("${grouped}.{:02}", cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClusterSpec {
        ClusterSpec {
            replicas: 2,
            gpus_per_replica: 8,
            gpu_hour_micros: 2_500_000,
            seqs_per_replica: 16,
            prefill_tokens_per_s: 2000,
            decode_tokens_per_s: 40,
        }
    }

    #[test]
    fn capacity_cost_and_service_time() {
        let s = spec();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!((s.gpus(), s.max_inflight()), (16, 32));
        // 32 × 0.9 = 28.8: the core rounds a lane's share of the headroom up.
        assert_eq!(s.usable_slots(&RoutingConfig::default()), 29);
        assert_eq!(s.cost_per_hour_micros(), 40_000_000);
        // Half an hour of 16 GPUs at $2.50.
        assert_eq!(s.cost_micros(1_800_000), 20_000_000);
        // 1 ms of $40/h = 11.1 micros.
        assert_eq!(s.cost_micros(1), 11);
        // 3000 prompt tokens at 2000/s + 20 output tokens at 40/s = 1.5 s + 0.5 s.
        assert_eq!(s.service_ms(3000, 20), 2000);
        // 1 prompt token = 0.5 ms, rounded up; never 0.
        assert_eq!(s.service_ms(1, 0), 1);
        assert_eq!(s.service_ms(0, 0), 1);
        assert_eq!(s.prefill_ms(4808), 2404);
        assert_eq!(s.prefill_ms(4809), 2405);
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let e = ClusterSpec {
            decode_tokens_per_s: 0,
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cluster spec: decode_tokens_per_s must be at least 1"
        );
        assert!(ClusterSpec {
            replicas: u32::MAX,
            ..spec()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn break_even_is_cost_rate_over_displaced_managed_spend() {
        // $36/h cluster with 10 slots; the lane's traffic costs $1 per 100 busy slot-seconds
        // ($0.01/slot-s): fully busy it displaces $0.10/s = $360/h, so u* = 36/360 = 0.1.
        let u = break_even_utilisation(36_000_000, 10, 1_000_000, 100_000).unwrap();
        assert!((u - 0.1).abs() < 1e-12, "{u}");
        assert_eq!(break_even_utilisation(1, 0, 1, 1), None);
        assert_eq!(break_even_utilisation(1, 1, 0, 1), None);
    }

    #[test]
    fn dollars_parse_exactly_and_print_with_cents() {
        assert_eq!(parse_usd_micros("2.5"), Ok(2_500_000));
        assert_eq!(parse_usd_micros("$2.50"), Ok(2_500_000));
        assert_eq!(parse_usd_micros("0.000001"), Ok(1));
        assert_eq!(parse_usd_micros(".5"), Ok(500_000));
        assert_eq!(parse_usd_micros("3"), Ok(3_000_000));
        for bad in ["", "abc", "1.2.3", "0.0000001", "-1", "1e3"] {
            assert!(parse_usd_micros(bad).is_err(), "{bad}");
        }
        assert_eq!(usd(57_868_362), "$57.87");
        assert_eq!(usd(1_234_567_890), "$1,234.57");
        assert_eq!(usd(0), "$0.00");
    }
}
