//! The workload diagnostic (DESIGN §5): which lanes are concentrated and steady enough that a
//! BYOC cluster of a given size would keep busy above its break-even utilisation.
//!
//! Pure: a [`Trace`], the price table and a cluster spec in, a [`Diagnosis`] out. Per lane:
//! concentration (share of requests and tokens), sustained token rate (p50/p95 of tokens per
//! minute), burstiness (peak/mean and coefficient of variation of tokens per minute), and the
//! utilisation the candidate cluster would reach if it served all of the lane's traffic
//! (offered busy slot-time / usable slot-time, capped at 1) against its break-even utilisation.
//! Minutes are counted from the first request of the whole history, empty minutes included,
//! so lanes are compared over the same window.

use serde::Serialize;

use crate::core::{PriceTable, RoutingConfig};
use crate::events::Timestamp;

use super::model::{break_even_utilisation, ClusterSpec};
use super::stats::{burstiness, percentile, round_to, Buckets};
use super::trace::Trace;

/// Width of the rate buckets.
pub const MINUTE_MS: i64 = 60_000;

/// The diagnostic of one lane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaneDiagnosis {
    pub lane: String,
    pub requests: u64,
    pub request_share: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input + output tokens.
    pub tokens: u64,
    pub token_share: f64,
    /// Tokens per minute: nearest-rank p50 and p95 over the window's minutes, mean and peak.
    pub tokens_per_min_p50: u64,
    pub tokens_per_min_p95: u64,
    pub tokens_per_min_mean: f64,
    pub tokens_per_min_peak: u64,
    /// Peak minute / mean minute.
    pub peak_to_mean: f64,
    /// Coefficient of variation of tokens per minute (σ / mean).
    pub cv: f64,
    /// Price-table key the lane resolved to; `None` = unpriced (no break-even, never flagged).
    pub price_key: Option<String>,
    /// All-managed cost of the lane's traffic in the window, micros.
    pub managed_cost_micros: u64,
    /// Σ service time of the lane's requests on the candidate cluster, ms.
    pub busy_ms: u64,
    /// Mean sequences in service if the cluster took all the traffic (busy_ms / window).
    pub offered_slots: f64,
    /// `offered_slots / usable slots`, capped at 1.
    pub utilisation: f64,
    pub break_even_utilisation: Option<f64>,
    /// Utilisation clears break-even: worth a replay gate.
    pub flagged: bool,
}

/// The diagnostic of a whole history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    pub minutes: usize,
    pub requests: u64,
    pub tokens: u64,
    pub cluster: ClusterSpec,
    pub headroom: f64,
    /// Usable slots of the candidate cluster (`max_inflight × headroom`, as the core rounds it).
    pub usable_slots: u32,
    pub cluster_cost_per_hour_micros: u64,
    /// Lanes by token share, largest first (ties by name).
    pub lanes: Vec<LaneDiagnosis>,
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round_to(part as f64 / whole as f64, 6)
    }
}

/// Runs the diagnostic; `cfg` supplies the headroom.
pub fn diagnose(
    trace: &Trace,
    prices: &PriceTable,
    spec: &ClusterSpec,
    cfg: &RoutingConfig,
) -> Diagnosis {
    let (start, end) = trace.span().unwrap_or((0, 0));
    let buckets = Buckets::covering(start, end, MINUTE_MS);
    let window_ms = (end - start).max(1) as u64;
    let slots = spec.usable_slots(cfg);
    let n = trace.lanes.len();
    let mut per_min = vec![vec![0u64; buckets.count]; n];
    let mut requests = vec![0u64; n];
    let mut input = vec![0u64; n];
    let mut output = vec![0u64; n];
    let mut busy = vec![0u64; n];
    let mut cost = vec![0u64; n];
    let lane_prices: Vec<_> = trace.lanes.iter().map(|l| prices.resolve(l)).collect();
    for r in &trace.requests {
        let l = r.lane as usize;
        requests[l] += 1;
        input[l] += r.input_tokens as u64;
        output[l] += r.output_tokens as u64;
        per_min[l][buckets.index(r.ts_ms)] += r.input_tokens as u64 + r.output_tokens as u64;
        busy[l] += spec.service_ms(r.input_tokens, r.output_tokens);
        if let Some(p) = &lane_prices[l] {
            cost[l] += p
                .price
                .cost_micros(r.input_tokens, r.cached_input_tokens, r.output_tokens);
        }
    }
    let total_requests: u64 = requests.iter().sum();
    let total_tokens: u64 = input.iter().zip(&output).map(|(i, o)| i + o).sum();
    let mut lanes: Vec<LaneDiagnosis> = (0..n)
        .map(|l| {
            let tokens = input[l] + output[l];
            let b = burstiness(&per_min[l]);
            let mut sorted = per_min[l].clone();
            sorted.sort_unstable();
            let offered = busy[l] as f64 / window_ms as f64;
            let utilisation = if slots == 0 {
                1.0
            } else {
                (offered / slots as f64).min(1.0)
            };
            let be = lane_prices[l].as_ref().and_then(|_| {
                break_even_utilisation(spec.cost_per_hour_micros(), slots, cost[l], busy[l])
            });
            LaneDiagnosis {
                lane: trace.lanes[l].clone(),
                requests: requests[l],
                request_share: share(requests[l], total_requests),
                input_tokens: input[l],
                output_tokens: output[l],
                tokens,
                token_share: share(tokens, total_tokens),
                tokens_per_min_p50: percentile(&sorted, 50),
                tokens_per_min_p95: percentile(&sorted, 95),
                tokens_per_min_mean: round_to(b.mean, 3),
                tokens_per_min_peak: b.peak,
                peak_to_mean: round_to(b.peak_to_mean, 4),
                cv: round_to(b.cv, 4),
                price_key: lane_prices[l].as_ref().map(|p| p.key.clone()),
                managed_cost_micros: cost[l],
                busy_ms: busy[l],
                offered_slots: round_to(offered, 4),
                utilisation: round_to(utilisation, 4),
                break_even_utilisation: be.map(|x| round_to(x, 4)),
                flagged: be.is_some_and(|be| utilisation > be),
            }
        })
        .collect();
    lanes.sort_by(|a, b| b.tokens.cmp(&a.tokens).then_with(|| a.lane.cmp(&b.lane)));
    Diagnosis {
        window_start: Timestamp(start),
        window_end: Timestamp(end),
        minutes: buckets.count,
        requests: total_requests,
        tokens: total_tokens,
        cluster: *spec,
        headroom: cfg.headroom,
        usable_slots: slots,
        cluster_cost_per_hour_micros: spec.cost_per_hour_micros(),
        lanes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::trace::TraceBuilder;

    /// Two lanes over three minutes from 12:00:00: a steady priced lane (1 000 tokens every
    /// minute) and a bursty unpriced one (all 3 000 tokens in minute 2).
    fn trace() -> Trace {
        let steady = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
            2024-01-01 12:00:00,900,100\n\
            2024-01-01 12:01:00,900,100\n\
            2024-01-01 12:02:00,900,100\n";
        let bursty = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
            2024-01-01 12:02:10,1000,0\n\
            2024-01-01 12:02:20,1000,0\n\
            2024-01-01 12:02:30,1000,0\n";
        let mut b = TraceBuilder::new();
        b.add_azure_csv("steady.csv", steady.as_bytes(), "openai/gpt-4o")
            .unwrap();
        b.add_azure_csv("bursty.csv", bursty.as_bytes(), "acme/house-model")
            .unwrap();
        b.finish().unwrap()
    }

    fn full() -> RoutingConfig {
        RoutingConfig {
            headroom: 1.0,
            ..RoutingConfig::default()
        }
    }

    fn spec() -> ClusterSpec {
        ClusterSpec {
            replicas: 1,
            gpus_per_replica: 1,
            gpu_hour_micros: 1_000_000,
            seqs_per_replica: 10,
            prefill_tokens_per_s: 900,
            decode_tokens_per_s: 100,
        }
    }

    #[test]
    fn shares_rates_and_burstiness_per_lane() {
        let d = diagnose(&trace(), &PriceTable::embedded(), &spec(), &full());
        assert_eq!((d.minutes, d.requests, d.tokens), (3, 6, 6000));
        let bursty = &d
            .lanes
            .iter()
            .find(|l| l.lane == "acme/house-model")
            .unwrap();
        let steady = &d.lanes.iter().find(|l| l.lane == "openai/gpt-4o").unwrap();
        assert_eq!((steady.request_share, steady.token_share), (0.5, 0.5));
        assert_eq!(
            (
                steady.tokens_per_min_p50,
                steady.tokens_per_min_p95,
                steady.tokens_per_min_peak
            ),
            (1000, 1000, 1000)
        );
        assert_eq!((steady.peak_to_mean, steady.cv), (1.0, 0.0));
        // Minutes [0, 0, 3000]: p50 = 0, p95 = 3000, mean 1000, peak/mean 3, cv = sqrt(2).
        assert_eq!(
            (bursty.tokens_per_min_p50, bursty.tokens_per_min_p95),
            (0, 3000)
        );
        assert_eq!(bursty.peak_to_mean, 3.0);
        assert_eq!(bursty.cv, round_to(2f64.sqrt(), 4));
        assert_eq!(bursty.price_key, None);
        assert!(!bursty.flagged && bursty.break_even_utilisation.is_none());
    }

    #[test]
    fn utilisation_and_break_even_of_the_candidate() {
        let d = diagnose(&trace(), &PriceTable::embedded(), &spec(), &full());
        let steady = &d.lanes.iter().find(|l| l.lane == "openai/gpt-4o").unwrap();
        // gpt-4o: 900 in × $2.50/M + 100 out × $10/M = 2250 + 1000 micros per request.
        assert_eq!(steady.managed_cost_micros, 3 * 3250);
        // Each request: 900/900 s + 100/100 s = 2 s of service; window 02:30 = 150 s.
        assert_eq!(steady.busy_ms, 6000);
        assert_eq!(steady.offered_slots, 0.04);
        assert_eq!(steady.utilisation, 0.004);
        // u* = $1/h × 6 s / (3600 s × 10 slots × $0.00975) = 6 / 351 = 0.0171.
        assert_eq!(steady.break_even_utilisation, Some(0.0171));
        assert!(!steady.flagged);
        // A free cluster clears any break-even above 0.
        let free = diagnose(
            &trace(),
            &PriceTable::embedded(),
            &ClusterSpec {
                gpu_hour_micros: 0,
                ..spec()
            },
            &full(),
        );
        assert!(
            free.lanes
                .iter()
                .find(|l| l.lane == "openai/gpt-4o")
                .unwrap()
                .flagged
        );
    }
}
