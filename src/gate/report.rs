//! The replay gate (DESIGN §5): replays one lane's history against a sweep of cluster sizes,
//! prices both sides and seals the verdict into a `zumik.gate_report.v1`.
//!
//! For each size the replay ([`super::simulate`]) says which requests the cluster served and
//! which overflowed; this module turns that into money and a verdict:
//!
//! - **baseline** = Σ managed cost of every admitted request (price table; cached input at the
//!   cache-read price; actual output tokens);
//! - **blended** = cluster cost for the window (`GPUs × GPU-hour price × window hours`) + managed
//!   cost of the requests the cluster did not serve;
//! - **reliability**: per side, observed from completions when there are at least
//!   `min_observed_samples` of them, else the configured rate; the candidate's is the
//!   request-weighted blend of the cluster's (served) and managed (overflow) rates, the
//!   baseline's is the managed rate;
//! - **pass** ⇔ blended ≤ baseline × (1 − margin) and candidate reliability ≥ baseline.
//!
//! Requests the router rejects (e.g. more tokens than the model accepts) count on neither side.
//! Everything is integer micros and parts-per-million; the report has no wall-clock time in it
//! (its time reference is the window end), so the same inputs give the same bytes and digest.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::core::{PriceTable, RoutingConfig};
use crate::events::{GateReportV1, Timestamp, Window};

use super::model::{break_even_utilisation, usd, ClusterSpec, SpecError};
use super::simulate::{
    replay, replay_config, LaneRequest, ReplayResult, REPLAY_CLUSTER, REPLAY_TENANT,
};
use super::stats::{percentile, round_to, Buckets};
use super::trace::Trace;

/// Default margin: the blended cost must be at least 10 % below the baseline.
pub const DEFAULT_MARGIN: f64 = 0.10;
/// Default success rate of managed providers when no completions say otherwise.
pub const DEFAULT_MANAGED_RELIABILITY: f64 = 0.999;
/// Default success rate of a BYOC cluster when no completions say otherwise.
pub const DEFAULT_CLUSTER_RELIABILITY: f64 = 0.999;
/// Completions needed on a side before its observed rate replaces the configured one.
pub const DEFAULT_MIN_OBSERVED: u64 = 100;
/// How reports name the price table embedded in the binary.
pub const EMBEDDED_PRICES: &str = "<embedded> litellm 1.109.1";
/// Most points a load series gets (keeps reports well under the event size limit).
pub const MAX_SERIES_POINTS: i64 = 720;

/// What to gate and how.
#[derive(Debug, Clone, PartialEq)]
pub struct GateOptions {
    pub lane: String,
    /// The replica shape; `replicas` is ignored unless `candidate_replicas` is set.
    pub spec: ClusterSpec,
    /// The size the verdict is about; `None` = the cheapest passing size of the sweep (or, if
    /// none passes, the cheapest one).
    pub candidate_replicas: Option<u32>,
    /// Sweep replicas `1..=sweep` (0 = no sweep).
    pub sweep: u32,
    pub margin: f64,
    pub managed_reliability: f64,
    pub cluster_reliability: f64,
    pub min_observed_samples: u64,
    /// Where prices came from ([`EMBEDDED_PRICES`] or a file name), for the record.
    pub price_source: String,
}

impl GateOptions {
    /// Options with the documented defaults for everything but the lane and the replica shape.
    pub fn new(lane: impl Into<String>, spec: ClusterSpec) -> Self {
        GateOptions {
            lane: lane.into(),
            spec,
            candidate_replicas: None,
            sweep: 20,
            margin: DEFAULT_MARGIN,
            managed_reliability: DEFAULT_MANAGED_RELIABILITY,
            cluster_reliability: DEFAULT_CLUSTER_RELIABILITY,
            min_observed_samples: DEFAULT_MIN_OBSERVED,
            price_source: EMBEDDED_PRICES.to_owned(),
        }
    }
}

/// Why a gate cannot run.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("lane {lane} has no requests in the history (lanes present: {known})")]
    UnknownLane { lane: String, known: String },
    #[error("lane {lane} has no price in the price table ({table}); map it under [pricing.models] in the config")]
    NoPrice { lane: String, table: String },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{0}")]
    Options(String),
}

/// One cluster size, priced.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeResult {
    pub replicas: u32,
    pub spec: ClusterSpec,
    pub replay: ReplayResult,
    pub cluster_micros: u64,
    /// Managed cost of everything the cluster did not serve.
    pub managed_micros: u64,
    pub blended_micros: u64,
    pub utilisation: f64,
    pub break_even: Option<f64>,
    /// Candidate reliability, ppm (floor).
    pub reliability_ppm: u64,
    pub cost_ok: bool,
    pub reliability_ok: bool,
}

impl SizeResult {
    pub fn passed(&self) -> bool {
        self.cost_ok && self.reliability_ok
    }
}

/// A side's success rate and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rate {
    ppm: u64,
    observed: bool,
    samples: u64,
}

fn rate(ok: u64, failed: u64, configured: f64, min_samples: u64) -> Rate {
    let samples = ok + failed;
    if samples > 0 && samples >= min_samples {
        Rate {
            ppm: ok * 1_000_000 / samples,
            observed: true,
            samples,
        }
    } else {
        Rate {
            ppm: (configured * 1e6).round() as u64,
            observed: false,
            samples,
        }
    }
}

fn fraction_ok(name: &str, v: f64, allow_zero: bool) -> Result<(), GateError> {
    let lower_ok = if allow_zero { v >= 0.0 } else { v > 0.0 };
    if v.is_finite() && lower_ok && v <= 1.0 {
        Ok(())
    } else {
        Err(GateError::Options(format!(
            "{name} must be a fraction in {}0, 1]",
            if allow_zero { "[" } else { "(" }
        )))
    }
}

/// A gate ready to run: inputs checked, the lane's requests extracted.
pub struct GatePlan<'a> {
    trace: &'a Trace,
    cfg: Arc<RoutingConfig>,
    prices: Arc<PriceTable>,
    opts: GateOptions,
    lane_idx: u32,
    price_key: String,
    price: crate::core::price::ModelPrice,
    requests: Vec<LaneRequest>,
    sizes: Vec<u32>,
}

impl<'a> GatePlan<'a> {
    pub fn new(
        trace: &'a Trace,
        cfg: &RoutingConfig,
        prices: Arc<PriceTable>,
        opts: GateOptions,
    ) -> Result<Self, GateError> {
        opts.spec
            .with_replicas(opts.candidate_replicas.unwrap_or(1).max(1))
            .validate()?;
        opts.spec.with_replicas(opts.sweep.max(1)).validate()?;
        if opts.candidate_replicas == Some(0) {
            return Err(GateError::Options(
                "--replicas must be at least 1".to_owned(),
            ));
        }
        if opts.sweep == 0 && opts.candidate_replicas.is_none() {
            return Err(GateError::Options(
                "nothing to simulate: give --replicas or a --sweep of at least 1".to_owned(),
            ));
        }
        fraction_ok("margin", opts.margin, true)?;
        fraction_ok("managed reliability", opts.managed_reliability, false)?;
        fraction_ok("cluster reliability", opts.cluster_reliability, false)?;
        let lane_idx = trace
            .lane_index(&opts.lane)
            .ok_or_else(|| GateError::UnknownLane {
                lane: opts.lane.clone(),
                known: trace.lanes.join(", "),
            })?;
        let m = prices
            .resolve(&opts.lane)
            .ok_or_else(|| GateError::NoPrice {
                lane: opts.lane.clone(),
                table: opts.price_source.clone(),
            })?;
        let spec = opts.spec;
        let requests: Vec<LaneRequest> = trace
            .lane_requests(lane_idx)
            .map(|r| LaneRequest {
                ts_ms: r.ts_ms,
                input_tokens: r.input_tokens,
                cached_input_tokens: r.cached_input_tokens,
                output_tokens: r.output_tokens,
                service_ms: spec.service_ms(r.input_tokens, r.output_tokens),
                prefill_ms: spec.prefill_ms(r.input_tokens),
                managed_micros: m.price.cost_micros(
                    r.input_tokens,
                    r.cached_input_tokens,
                    r.output_tokens,
                ),
            })
            .collect();
        if requests.is_empty() {
            // The lane is known only from completions: nothing to replay.
            return Err(GateError::UnknownLane {
                lane: opts.lane.clone(),
                known: trace.lanes.join(", "),
            });
        }
        let mut sizes: Vec<u32> = (1..=opts.sweep).collect();
        if let Some(n) = opts.candidate_replicas {
            if !sizes.contains(&n) {
                sizes.push(n);
            }
        }
        Ok(GatePlan {
            trace,
            cfg: replay_config(cfg),
            prices,
            opts,
            lane_idx,
            price_key: m.key,
            price: m.price,
            requests,
            sizes,
        })
    }

    /// Requests the run will replay in total (for a progress bar).
    pub fn total_work(&self) -> u64 {
        self.requests.len() as u64 * self.sizes.len() as u64
    }

    fn window(&self) -> (i64, i64) {
        (
            self.requests[0].ts_ms,
            self.requests[self.requests.len() - 1].ts_ms,
        )
    }

    fn buckets(&self) -> Buckets {
        let (start, end) = self.window();
        let span = (end - start).max(1) as u64;
        // Per minute, or whole minutes wide enough to keep at most MAX_SERIES_POINTS points.
        let minutes = span.div_ceil(MAX_SERIES_POINTS as u64).div_ceil(60_000) as i64;
        Buckets::covering(start, end, minutes.max(1) * 60_000)
    }

    fn rates(&self) -> (Rate, Rate) {
        let o = &self.trace.observed[self.lane_idx as usize];
        let min = self.opts.min_observed_samples;
        (
            rate(
                o.managed_ok,
                o.managed_failed,
                self.opts.managed_reliability,
                min,
            ),
            rate(o.byoc_ok, o.byoc_failed, self.opts.cluster_reliability, min),
        )
    }

    fn margin_ppm(&self) -> u64 {
        (self.opts.margin * 1e6).round() as u64
    }

    /// Baseline (all-managed) cost and its pass threshold, given the rejected requests' cost.
    fn baseline(&self, rejected_micros: u64) -> (u64, u64) {
        let total: u64 = self.requests.iter().map(|r| r.managed_micros).sum();
        let baseline = total - rejected_micros;
        let threshold =
            (baseline as u128 * (1_000_000 - self.margin_ppm()) as u128 / 1_000_000) as u64;
        (baseline, threshold)
    }

    fn price_size(&self, replicas: u32, r: ReplayResult) -> SizeResult {
        let spec = self.opts.spec.with_replicas(replicas);
        let (start, end) = self.window();
        let window_ms = (end - start) as u64;
        let cluster_micros = spec.cost_micros(window_ms);
        let blended_micros = cluster_micros + r.managed_micros;
        let (_, threshold) = self.baseline(r.rejected_micros);
        let (managed, cluster) = self.rates();
        let admitted = r.byoc + r.overflow + r.other;
        let weighted = r.byoc as u128 * cluster.ppm as u128
            + (r.overflow + r.other) as u128 * managed.ppm as u128;
        let reliability_ok = weighted >= admitted as u128 * managed.ppm as u128;
        let reliability_ppm = if admitted == 0 {
            managed.ppm
        } else {
            (weighted / admitted as u128) as u64
        };
        let utilisation = if r.slots == 0 || window_ms == 0 {
            0.0
        } else {
            r.busy_ms as f64 / (r.slots as f64 * window_ms as f64)
        };
        let (admitted_micros, admitted_busy) = self.admitted_totals(r.rejected_micros);
        let break_even = break_even_utilisation(
            spec.cost_per_hour_micros(),
            r.slots,
            admitted_micros,
            admitted_busy,
        );
        SizeResult {
            replicas,
            spec,
            cluster_micros,
            managed_micros: r.managed_micros,
            blended_micros,
            utilisation,
            break_even,
            reliability_ppm,
            cost_ok: blended_micros <= threshold,
            reliability_ok,
            replay: r,
        }
    }

    /// Managed cost and service time of the admitted requests (break-even inputs).
    fn admitted_totals(&self, rejected_micros: u64) -> (u64, u64) {
        let busy: u64 = self.requests.iter().map(|r| r.service_ms).sum();
        // Rejections are rare (oversized requests); their service time is left in, which only
        // makes the break-even slightly conservative when there are any.
        (self.baseline(rejected_micros).0, busy)
    }

    /// Replays every size and writes the sealed report.
    pub fn run(&self, progress: &mut dyn FnMut(u64)) -> GateReportV1 {
        let buckets = self.buckets();
        let window = self.window();
        let mut results: BTreeMap<u32, SizeResult> = BTreeMap::new();
        for &n in &self.sizes {
            let spec = self.opts.spec.with_replicas(n);
            let r = replay(
                &self.cfg,
                &self.prices,
                &self.opts.lane,
                &self.requests,
                &spec,
                window,
                &buckets,
                progress,
            );
            results.insert(n, self.price_size(n, r));
        }
        let sweep: Vec<&SizeResult> = (1..=self.opts.sweep).map(|n| &results[&n]).collect();
        let cheapest = |only_passing: bool| {
            sweep
                .iter()
                .filter(|s| !only_passing || s.passed())
                .min_by_key(|s| (s.blended_micros, s.replicas))
                .map(|s| s.replicas)
        };
        let cheapest_passing = cheapest(true);
        let candidate = self
            .opts
            .candidate_replicas
            .or(cheapest_passing)
            .or_else(|| cheapest(false))
            .expect("sizes is non-empty: checked in GatePlan::new");
        self.report(&results, candidate, cheapest_passing, &buckets)
    }

    fn report(
        &self,
        results: &BTreeMap<u32, SizeResult>,
        candidate: u32,
        cheapest_passing: Option<u32>,
        buckets: &Buckets,
    ) -> GateReportV1 {
        let c = &results[&candidate];
        let (start, end) = self.window();
        let (baseline, threshold) = self.baseline(c.replay.rejected_micros);
        let (managed, cluster) = self.rates();
        let r = &c.replay;
        let admitted = r.byoc + r.overflow + r.other;
        let share = |n: u64| {
            if admitted == 0 {
                0.0
            } else {
                round_to(n as f64 / admitted as f64, 6)
            }
        };
        let pct = |ppm: u64| format!("{:.4}%", ppm as f64 / 10_000.0);
        let margin_pct = round_to(self.opts.margin * 100.0, 4);
        let mut reasons = vec![
            format!(
                "blended cost {} {} baseline {} × (1 − {margin_pct}%) = {}",
                usd(c.blended_micros),
                if c.cost_ok { "≤" } else { ">" },
                usd(baseline),
                usd(threshold)
            ),
            format!(
                "candidate reliability {} {} baseline {}",
                pct(c.reliability_ppm),
                if c.reliability_ok { "≥" } else { "<" },
                pct(managed.ppm)
            ),
        ];
        reasons.push(match cheapest_passing {
            Some(n) => {
                format!(
                    "cheapest passing size of the sweep: {n} replicas ({})",
                    usd(results[&n].blended_micros)
                )
            }
            None if self.opts.sweep > 0 => format!(
                "no size in the sweep 1..={} replicas passes",
                self.opts.sweep
            ),
            None => "no sweep was run".to_owned(),
        });
        let side = |x: &Rate| {
            json!({
                "rate": round_to(x.ppm as f64 / 1e6, 6),
                "ppm": x.ppm,
                "source": if x.observed { "observed" } else { "configured" },
                "samples": x.samples,
            })
        };
        let obs = &self.trace.observed[self.lane_idx as usize];
        let size_json = |s: &SizeResult| {
            json!({
                "replicas": s.replicas,
                "gpus": s.spec.gpus(),
                "max_inflight": s.spec.max_inflight(),
                "usable_slots": s.replay.slots,
                "cluster_cost_micros": s.cluster_micros,
                "managed_cost_micros": s.managed_micros,
                "blended_cost_micros": s.blended_micros,
                "overflow_share": share_of(s.replay.overflow, s.replay.byoc + s.replay.overflow + s.replay.other),
                "utilisation": round_to(s.utilisation, 6),
                "break_even_utilisation": s.break_even.map(|x| round_to(x, 6)),
                "reliability_ppm": s.reliability_ppm,
                "passed": s.passed(),
            })
        };
        let sweep: Vec<Value> = (1..=self.opts.sweep)
            .map(|n| size_json(&results[&n]))
            .collect();
        let warnings: BTreeMap<&str, Value> = r
            .warnings
            .iter()
            .map(|(k, (n, msg))| (*k, json!({"count": n, "example": msg})))
            .collect();
        let results_json = json!({
            "passed": c.passed(),
            "verdict": { "passed": c.passed(), "reasons": reasons },
            "candidate_replicas": candidate,
            "baseline_cost_micros": baseline,
            "threshold_cost_micros": threshold,
            "cluster_cost_micros": c.cluster_micros,
            "overflow_cost_micros": c.managed_micros,
            "blended_cost_micros": c.blended_micros,
            "savings_micros": baseline as i64 - c.blended_micros as i64,
            "savings_share": if baseline == 0 { 0.0 } else { round_to((baseline as f64 - c.blended_micros as f64) / baseline as f64, 6) },
            "requests": {
                "admitted": admitted,
                "byoc": r.byoc,
                "overflow": r.overflow,
                "other_managed": r.other,
                "rejected": r.rejected,
            },
            "overflow_share": share(r.overflow),
            "decisions_by_reason": r.by_reason,
            "capacity": {
                "gpus": c.spec.gpus(),
                "max_inflight": c.spec.max_inflight(),
                "usable_slots": r.slots,
                "cost_per_hour_micros": c.spec.cost_per_hour_micros(),
            },
            "utilisation": round_to(c.utilisation, 6),
            "break_even_utilisation": c.break_even.map(|x| round_to(x, 6)),
            "reliability": {
                "managed": side(&managed),
                "cluster": side(&cluster),
                "baseline_ppm": managed.ppm,
                "candidate_ppm": c.reliability_ppm,
            },
            "ttft_ms": {
                "byoc_p50": percentile(&r.ttft_ms, 50),
                "byoc_p95": percentile(&r.ttft_ms, 95),
                "managed_observed_p50": (!obs.managed_ttft_ms.is_empty()).then(|| percentile(&obs.managed_ttft_ms, 50)),
                "managed_observed_p95": (!obs.managed_ttft_ms.is_empty()).then(|| percentile(&obs.managed_ttft_ms, 95)),
            },
            "sweep": sweep,
            "cheapest_passing": cheapest_passing.map(|n| size_json(&results[&n])),
            "warnings": warnings,
        });
        let lane_requests = self.requests.len() as u64;
        let inputs = json!({
            "lane": self.opts.lane,
            "sources": self.trace.sources,
            "requests": lane_requests,
            "requests_all_lanes": self.trace.requests.len(),
            "input_tokens": self.requests.iter().map(|r| r.input_tokens as u64).sum::<u64>(),
            "cached_input_tokens": self.requests.iter().map(|r| r.cached_input_tokens as u64).sum::<u64>(),
            "output_tokens": self.requests.iter().map(|r| r.output_tokens as u64).sum::<u64>(),
            "output_tokens_from": {
                "completions": self.trace.output_from_completions,
                "max_output_tokens": self.trace.output_from_max,
            },
            "observed_completions": obs,
            "window": { "start": Timestamp(start), "end": Timestamp(end), "duration_ms": end - start },
            "price": {
                "table": self.opts.price_source,
                "key": self.price_key,
                "input_micros_per_mtok": self.price.input_pd,
                "cache_read_micros_per_mtok": self.price.cache_read_pd,
                "output_micros_per_mtok": self.price.output_pd,
            },
        });
        let s = &self.opts.spec;
        let config = json!({
            "cluster": {
                "replicas": candidate,
                "replicas_chosen_by": if self.opts.candidate_replicas.is_some() { "operator" } else { "sweep" },
                "gpus_per_replica": s.gpus_per_replica,
                "gpu_hour_micros": s.gpu_hour_micros,
                "seqs_per_replica": s.seqs_per_replica,
                "prefill_tokens_per_s": s.prefill_tokens_per_s,
                "decode_tokens_per_s": s.decode_tokens_per_s,
            },
            "sweep": { "from": 1, "to": self.opts.sweep },
            "margin": self.opts.margin,
            "reliability": {
                "managed_default": self.opts.managed_reliability,
                "cluster_default": self.opts.cluster_reliability,
                "min_observed_samples": self.opts.min_observed_samples,
            },
            "routing": {
                "headroom": self.cfg.headroom,
                "stale_after_ms": self.cfg.stale_after_ms,
                "heartbeat_every_ms": (self.cfg.stale_after_ms / 3).max(1),
            },
            "replay": { "tenant": REPLAY_TENANT, "cluster_id": REPLAY_CLUSTER },
        });
        let column = |f: &dyn Fn(&SizeResult) -> Value| -> Vec<Value> {
            (1..=self.opts.sweep).map(|n| f(&results[&n])).collect()
        };
        let series = json!({
            "bucket_ms": buckets.width,
            "start": Timestamp(buckets.start),
            "arrivals": r.arrivals,
            "served": r.served,
            "overflowed": r.overflowed,
            "busy_slot_ms": r.busy_slot_ms,
            "peak_busy": r.peak_busy,
            "usable_slots": r.slots,
            "max_inflight": c.spec.max_inflight(),
            "cost_by_size": {
                "replicas": column(&|s| json!(s.replicas)),
                "cluster_micros": column(&|s| json!(s.cluster_micros)),
                "managed_micros": column(&|s| json!(s.managed_micros)),
                "blended_micros": column(&|s| json!(s.blended_micros)),
                "passed": column(&|s| json!(s.passed())),
            },
            "baseline_micros": baseline,
            "threshold_micros": threshold,
        });
        let mut report = GateReportV1 {
            lane: self.opts.lane.clone(),
            passed: c.passed(),
            window: Window {
                start: Timestamp(start),
                end: Timestamp(end),
            },
            inputs,
            config,
            results: results_json,
            series,
            digest: String::new(),
        };
        report.seal();
        report
    }
}

fn share_of(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        round_to(n as f64 / of as f64, 6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::trace::TraceBuilder;

    /// 600 requests, one every 500 ms (5 minutes), each 3 000 in + 20 out tokens.
    fn trace() -> Trace {
        let mut csv = String::from("TIMESTAMP,ContextTokens,GeneratedTokens\n");
        for i in 0..600 {
            let ms = i * 500;
            csv.push_str(&format!(
                "2024-01-01 12:{:02}:{:02}.{:03},3000,20\n",
                ms / 60_000,
                ms / 1000 % 60,
                ms % 1000
            ));
        }
        let mut b = TraceBuilder::new();
        b.add_azure_csv("t.csv", csv.as_bytes(), "anthropic/claude-sonnet-4-5")
            .unwrap();
        b.finish().unwrap()
    }

    /// 2 s of service per request (1.5 s prefill + 0.5 s decode): 4 sequences busy on average.
    fn spec() -> ClusterSpec {
        ClusterSpec {
            replicas: 1,
            gpus_per_replica: 1,
            gpu_hour_micros: 2_000_000,
            seqs_per_replica: 2,
            prefill_tokens_per_s: 2000,
            decode_tokens_per_s: 40,
        }
    }

    fn gate(opts: GateOptions) -> GateReportV1 {
        let t = trace();
        let plan = GatePlan::new(
            &t,
            &RoutingConfig {
                headroom: 1.0,
                ..RoutingConfig::default()
            },
            Arc::new(PriceTable::embedded()),
            opts,
        )
        .unwrap();
        let mut done = 0;
        let r = plan.run(&mut |n| done += n);
        assert_eq!(done, plan.total_work());
        r
    }

    #[test]
    fn costs_follow_the_formulas() {
        let r = gate(GateOptions {
            candidate_replicas: Some(2),
            sweep: 4,
            ..GateOptions::new("anthropic/claude-sonnet-4-5", spec())
        });
        let res = &r.results;
        // Sonnet 4.5: $3/M in, $15/M out → 9 000 + 300 micros per request.
        assert_eq!(res["baseline_cost_micros"], 600 * 9_300);
        // Window 299.5 s; 2 replicas × 1 GPU × $2/h.
        assert_eq!(res["cluster_cost_micros"], 332_778);
        // 4 slots, a request every 500 ms lasting 2 s: exactly full, nothing overflows.
        assert_eq!(res["requests"]["byoc"], 600);
        assert_eq!(res["overflow_share"], 0.0);
        assert_eq!(res["blended_cost_micros"], 332_778);
        assert_eq!(res["ttft_ms"]["byoc_p95"], 1500);
        assert!(r.passed);
        assert!(r.digest_verifies());
        // One replica holds 2 of the 4 needed slots: every other request overflows.
        let one = &res["sweep"][0];
        assert_eq!(one["overflow_share"], 0.5);
        assert_eq!(one["blended_cost_micros"], 166_389 + 300 * 9_300);
        assert_eq!(r.config["cluster"]["replicas_chosen_by"], "operator");
    }

    #[test]
    fn without_a_candidate_the_cheapest_passing_size_is_chosen() {
        let r = gate(GateOptions {
            sweep: 6,
            ..GateOptions::new("anthropic/claude-sonnet-4-5", spec())
        });
        assert_eq!(r.results["candidate_replicas"], 2);
        assert_eq!(r.results["cheapest_passing"]["replicas"], 2);
        assert_eq!(r.config["cluster"]["replicas_chosen_by"], "sweep");
        assert_eq!(
            r.series["cost_by_size"]["replicas"]
                .as_array()
                .unwrap()
                .len(),
            6
        );
    }

    #[test]
    fn observed_reliability_below_baseline_fails_the_gate() {
        let t = {
            let mut t = trace();
            let o = &mut t.observed[0];
            (o.managed_ok, o.managed_failed, o.byoc_ok, o.byoc_failed) = (1000, 0, 95, 5);
            t
        };
        let mut opts = GateOptions::new("anthropic/claude-sonnet-4-5", spec());
        (
            opts.candidate_replicas,
            opts.sweep,
            opts.min_observed_samples,
        ) = (Some(2), 0, 100);
        let plan = GatePlan::new(
            &t,
            &RoutingConfig::default(),
            Arc::new(PriceTable::embedded()),
            opts,
        )
        .unwrap();
        let r = plan.run(&mut |_| {});
        assert!(!r.passed);
        assert_eq!(r.results["reliability"]["managed"]["source"], "observed");
        assert_eq!(r.results["reliability"]["cluster"]["ppm"], 950_000);
        let reasons = r.results["verdict"]["reasons"].to_string();
        assert!(
            reasons.contains("candidate reliability") && reasons.contains(" < baseline 100.0000%"),
            "{reasons}"
        );
    }

    #[test]
    fn bad_options_are_refused_clearly() {
        let t = trace();
        let cfg = RoutingConfig::default();
        let p = Arc::new(PriceTable::embedded());
        let e = |o: GateOptions| {
            GatePlan::new(&t, &cfg, p.clone(), o)
                .err()
                .unwrap()
                .to_string()
        };
        assert!(e(GateOptions::new("openai/gpt-4o", spec())).contains("no requests"));
        let mut o = GateOptions::new("anthropic/claude-sonnet-4-5", spec());
        o.sweep = 0;
        assert!(e(o.clone()).contains("nothing to simulate"));
        o.sweep = 3;
        o.margin = 1.5;
        assert!(e(o).contains("margin"));
    }
}
