//! The gate on real history: the one-hour Azure coding trace (`data/azure-llm-code-2023.csv`)
//! as one lane priced as `anthropic/claude-sonnet-4-5` from the embedded LiteLLM table.
//!
//! Candidate replica: 2 GPUs at $2.00/GPU-h serving 2 sequences, prefill 4 000 and decode 20
//! tokens/s per sequence. One replica is too small (it overflows most of the bursty traffic and
//! saves less than the 10 % margin), seven are right-sized, sixteen are oversized (idle GPUs).
//! Every number checked here is recomputed independently from the CSV and the price JSON, with
//! a slot simulation written for the test. Also: byte-identical reruns, the core accepting the
//! report for activation, the diagnostic on a hand-made trace, and the HTML page rendered by
//! headless Chromium.

mod common;

use common::run_chromium;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use serde_json::Value;
use zumik::core::{Output as RouterOutput, PriceTable, Router, RoutingConfig};
use zumik::events::codec::decode_input;
use zumik::events::{GateReportV1, InputEvent, LaneActivateV1, Timestamp};
use zumik::gate::{ClusterSpec, GateOptions, GatePlan, Trace, TraceBuilder};

const LANE: &str = "anthropic/claude-sonnet-4-5";
const GPUS: u32 = 2;
const GPU_HOUR_MICROS: u64 = 2_000_000;
const SEQS: u32 = 2;
const PREFILL: u64 = 4000;
const DECODE: u64 = 20;
const SMALL: u32 = 1;
const RIGHT: u32 = 7;
const OVERSIZED: u32 = 16;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn trace_path() -> PathBuf {
    root().join("data/azure-llm-code-2023.csv")
}

/// A fresh directory for one test's outputs.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zumik-gate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn zumik(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zumik"));
    cmd.args(args)
        .current_dir(root())
        .env_remove("ZUMIK_CONFIG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn spec_args() -> Vec<String> {
    [
        "--gpus-per-replica",
        &GPUS.to_string(),
        "--gpu-hour-usd",
        "2.00",
        "--seqs-per-replica",
        &SEQS.to_string(),
        "--prefill-tps",
        &PREFILL.to_string(),
        "--decode-tps",
        &DECODE.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn spec(replicas: u32) -> ClusterSpec {
    ClusterSpec {
        replicas,
        gpus_per_replica: GPUS,
        gpu_hour_micros: GPU_HOUR_MICROS,
        seqs_per_replica: SEQS,
        prefill_tokens_per_s: PREFILL as u32,
        decode_tokens_per_s: DECODE as u32,
    }
}

fn real_trace() -> Trace {
    let bytes = std::fs::read(trace_path()).unwrap();
    let mut b = TraceBuilder::new();
    b.add_azure_csv("azure-llm-code-2023.csv", &bytes, LANE)
        .unwrap();
    b.finish().unwrap()
}

fn gate(trace: &Trace, replicas: u32, sweep: u32) -> GateReportV1 {
    gate_with(trace, Some(replicas), sweep)
}

/// `replicas: None` lets the sweep choose, as `zumik gate` without `--replicas` does.
fn gate_with(trace: &Trace, replicas: Option<u32>, sweep: u32) -> GateReportV1 {
    let opts = GateOptions {
        candidate_replicas: replicas,
        sweep,
        ..GateOptions::new(LANE, spec(1))
    };
    let plan = GatePlan::new(
        trace,
        &RoutingConfig::default(),
        Arc::new(PriceTable::embedded()),
        opts,
    )
    .unwrap();
    plan.run(&mut |_| {})
}

// ---------------------------------------------------------------------------------------------
// The independent calculation: written from the formulas in docs/gate.md, sharing no code with
// the gate beyond reading the timestamp with chrono.

struct Row {
    ts_ms: i64,
    input: u64,
    output: u64,
}

fn rows_from_csv() -> Vec<Row> {
    let text = std::fs::read_to_string(trace_path()).unwrap();
    let mut rows: Vec<Row> = text
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let t = chrono::NaiveDateTime::parse_from_str(f[0], "%Y-%m-%d %H:%M:%S%.f").unwrap();
            Row {
                ts_ms: t.and_utc().timestamp_micros().div_euclid(1000),
                input: f[1].parse().unwrap(),
                output: f[2].parse().unwrap(),
            }
        })
        .collect();
    rows.sort_by_key(|r| r.ts_ms);
    rows
}

/// Sonnet 4.5 prices from the price JSON, pico-dollars per token.
fn sonnet_prices() -> (u128, u128) {
    let table: Value =
        serde_json::from_slice(&std::fs::read(root().join("data/model-prices.json")).unwrap())
            .unwrap();
    let m = &table["claude-sonnet-4-5"];
    let pd = |k: &str| (m[k].as_f64().unwrap() * 1e12).round() as u128;
    (pd("input_cost_per_token"), pd("output_cost_per_token"))
}

fn cost_micros(r: &Row) -> u64 {
    let (pi, po) = sonnet_prices_cached();
    ((r.input as u128 * pi + r.output as u128 * po + 500_000) / 1_000_000) as u64
}

fn sonnet_prices_cached() -> (u128, u128) {
    static P: std::sync::OnceLock<(u128, u128)> = std::sync::OnceLock::new();
    *P.get_or_init(sonnet_prices)
}

struct Expected {
    baseline: u64,
    threshold: u64,
    cluster: u64,
    overflow: u64,
    overflow_cost: u64,
    blended: u64,
    ttft_p95: u64,
    passed: bool,
}

/// A loss system of `slots` servers: a request takes a free slot for its service time or
/// overflows; a slot that frees at the instant a request arrives is free for it.
fn expected(rows: &[Row], replicas: u32) -> Expected {
    let baseline: u64 = rows.iter().map(cost_micros).sum();
    let threshold = baseline * 9 / 10;
    let window_ms = (rows.last().unwrap().ts_ms - rows[0].ts_ms) as u128;
    let per_hour = (replicas * GPUS) as u128 * GPU_HOUR_MICROS as u128;
    let cluster = ((per_hour * window_ms + 1_800_000) / 3_600_000) as u64;
    // Headroom 0.9 of replicas × seqs, rounded up (the broker's lane limit).
    let slots = ((replicas * SEQS) as usize * 9).div_ceil(10);
    let mut busy: BinaryHeap<Reverse<i64>> = BinaryHeap::new();
    let (mut overflow, mut overflow_cost, mut ttft) = (0u64, 0u64, Vec::new());
    for r in rows {
        while busy.peek().is_some_and(|Reverse(t)| *t <= r.ts_ms) {
            busy.pop();
        }
        if busy.len() < slots {
            let service = ((r.input * 1000 * DECODE + r.output * 1000 * PREFILL)
                .div_ceil(PREFILL * DECODE))
            .max(1);
            busy.push(Reverse(r.ts_ms + service as i64));
            ttft.push((r.input * 1000).div_ceil(PREFILL));
        } else {
            overflow += 1;
            overflow_cost += cost_micros(r);
        }
    }
    ttft.sort_unstable();
    let ttft_p95 = ttft[(ttft.len() * 95).div_ceil(100) - 1];
    let blended = cluster + overflow_cost;
    Expected {
        baseline,
        threshold,
        cluster,
        overflow,
        overflow_cost,
        blended,
        ttft_p95,
        passed: blended <= threshold,
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

fn check_against_independent(r: &GateReportV1, e: &Expected) {
    let res = &r.results;
    assert_eq!(u(&res["baseline_cost_micros"]), e.baseline, "baseline");
    assert_eq!(u(&res["threshold_cost_micros"]), e.threshold, "threshold");
    assert_eq!(u(&res["cluster_cost_micros"]), e.cluster, "cluster cost");
    assert_eq!(
        u(&res["requests"]["overflow"]),
        e.overflow,
        "overflowed requests"
    );
    assert_eq!(
        u(&res["overflow_cost_micros"]),
        e.overflow_cost,
        "overflow cost"
    );
    assert_eq!(u(&res["blended_cost_micros"]), e.blended, "blended cost");
    assert_eq!(u(&res["ttft_ms"]["byoc_p95"]), e.ttft_p95, "TTFT p95");
    assert_eq!(r.passed, e.passed, "verdict");
}

#[test]
fn real_trace_small_fails_right_sized_passes_oversized_fails() {
    let trace = real_trace();
    let rows = rows_from_csv();
    assert_eq!(rows.len(), 8819);
    let mut verdicts = Vec::new();
    for replicas in [SMALL, RIGHT, OVERSIZED] {
        let r = gate(&trace, replicas, 0);
        let e = expected(&rows, replicas);
        check_against_independent(&r, &e);
        assert!(r.digest_verifies());
        assert_eq!(u(&r.results["requests"]["admitted"]), 8819);
        assert_eq!(u(&r.results["requests"]["rejected"]), 0);
        verdicts.push((replicas, r.passed, e.blended, e.threshold, e.overflow));
    }
    // Small: cheap cluster, but it overflows most requests and saves less than the margin.
    let (_, small_pass, small_blended, threshold, small_overflow) = verdicts[0];
    assert!(
        !small_pass && small_blended > threshold && small_overflow > 8819 / 2,
        "{verdicts:?}"
    );
    // Right-sized: clears the 10 % margin.
    assert!(verdicts[1].1, "{verdicts:?}");
    // Oversized: almost no overflow, but idle GPUs cost more than the managed traffic.
    let (_, big_pass, big_blended, _, big_overflow) = verdicts[2];
    assert!(
        !big_pass && big_blended > threshold && big_overflow < 8819 / 5,
        "{verdicts:?}"
    );
}

#[test]
fn the_sweep_matches_the_independent_simulation_and_names_the_cheapest_passing_size() {
    let trace = real_trace();
    let rows = rows_from_csv();
    let r = gate(&trace, RIGHT, 20);
    let sweep = r.results["sweep"].as_array().unwrap();
    assert_eq!(sweep.len(), 20);
    let mut best: Option<(u64, u32)> = None;
    for (i, s) in sweep.iter().enumerate() {
        let n = i as u32 + 1;
        let e = expected(&rows, n);
        assert_eq!(u(&s["replicas"]), n as u64);
        assert_eq!(
            u(&s["cluster_cost_micros"]),
            e.cluster,
            "{n} replicas: cluster"
        );
        assert_eq!(
            u(&s["managed_cost_micros"]),
            e.overflow_cost,
            "{n} replicas: overflow cost"
        );
        assert_eq!(
            u(&s["blended_cost_micros"]),
            e.blended,
            "{n} replicas: blended"
        );
        assert_eq!(
            s["passed"].as_bool(),
            Some(e.passed),
            "{n} replicas: verdict"
        );
        if e.passed && best.is_none_or(|(b, _)| e.blended < b) {
            best = Some((e.blended, n));
        }
    }
    let (best_blended, best_n) = best.expect("some size passes");
    assert_eq!(u(&r.results["cheapest_passing"]["replicas"]), best_n as u64);
    assert_eq!(
        u(&r.results["cheapest_passing"]["blended_cost_micros"]),
        best_blended
    );
    // Break-even utilisation: cluster cost per second over the managed spend one busy slot
    // displaces per second, for the candidate's usable slots.
    let busy_ms: u64 = rows
        .iter()
        .map(|r| {
            ((r.input * 1000 * DECODE + r.output * 1000 * PREFILL).div_ceil(PREFILL * DECODE))
                .max(1)
        })
        .sum();
    let baseline: u64 = rows.iter().map(cost_micros).sum();
    let slots = u(&r.results["capacity"]["usable_slots"]) as f64;
    let per_hour = (RIGHT * GPUS) as f64 * GPU_HOUR_MICROS as f64;
    let be = (per_hour / 3600.0) / (slots * baseline as f64 / (busy_ms as f64 / 1000.0));
    let got = r.results["break_even_utilisation"].as_f64().unwrap();
    assert!((got - be).abs() < 1e-6, "break-even {got} vs {be}");
    // The candidate is above break-even and passes; the crossing of blended and baseline lies
    // between the last size below and the first size above the baseline.
    assert!(r.results["utilisation"].as_f64().unwrap() > got);
}

#[test]
fn same_inputs_twice_give_identical_report_bytes_and_digest() {
    let dir = scratch("twice");
    let mut outs = Vec::new();
    for run in ["a", "b"] {
        let json = dir.join(format!("{run}.json"));
        let html = dir.join(format!("{run}.html"));
        let mut args: Vec<String> = [
            "gate",
            "--trace",
            trace_path().to_str().unwrap(),
            "--lane",
            LANE,
            "--sweep",
            "20",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(spec_args());
        args.extend([
            "--out".into(),
            json.display().to_string(),
            "--html".into(),
            html.display().to_string(),
        ]);
        let out = zumik(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        outs.push((
            std::fs::read(&json).unwrap(),
            std::fs::read(&html).unwrap(),
            out.stdout,
        ));
    }
    assert!(outs[0].0 == outs[1].0, "report JSON differs between runs");
    assert!(outs[0].1 == outs[1].1, "report HTML differs between runs");
    // Stdout too, but for the output paths it names.
    let summary = |o: &[u8]| {
        String::from_utf8_lossy(o)
            .lines()
            .filter(|l| !l.starts_with("wrote "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(summary(&outs[0].2), summary(&outs[1].2));
    // The file is a valid zumik.gate_report.v1 event whose digest verifies, and the library
    // gives the same digest.
    let InputEvent::GateReport(report) = decode_input(&outs[0].0).unwrap() else {
        panic!("not a gate report")
    };
    assert!(report.digest_verifies());
    let stdout = String::from_utf8_lossy(&outs[0].2);
    assert!(
        stdout.contains(&format!("digest {}", report.digest)),
        "{stdout}"
    );
    assert_eq!(
        u(&report.results["candidate_replicas"]),
        RIGHT as u64,
        "the sweep picks the cheapest passing size"
    );
    // The library run with the same inputs and config seals the same digest.
    assert_eq!(report.digest, gate_with(&real_trace(), None, 20).digest);
    let _ = std::fs::remove_dir_all(&dir);
}

fn activate(report: &GateReportV1) -> (bool, Vec<String>) {
    let mut router = Router::new(
        Arc::new(RoutingConfig::default()),
        Arc::new(PriceTable::embedded()),
    );
    let mut out = RouterOutput::default();
    router.apply(InputEvent::GateReport(Box::new(report.clone())), &mut out);
    let ts = Timestamp(report.window.end.millis() + 3_600_000);
    router.apply(
        InputEvent::LaneActivate(LaneActivateV1 {
            lane: report.lane.clone(),
            report_digest: report.digest.clone(),
            ts,
        }),
        &mut out,
    );
    let warnings = out
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.code, w.message))
        .collect();
    (router.state().lanes[report.lane.as_str()].active, warnings)
}

#[test]
fn the_core_activates_a_lane_on_a_passing_report_and_refuses_a_failing_one() {
    let trace = real_trace();
    let (active, warnings) = activate(&gate(&trace, RIGHT, 0));
    assert!(active, "{warnings:?}");
    let (active, warnings) = activate(&gate(&trace, SMALL, 0));
    assert!(!active);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("activation_refused") && w.contains("did not pass")),
        "{warnings:?}"
    );
}

#[test]
fn gate_exit_status_says_pass_or_fail() {
    let mut args: Vec<String> = [
        "gate",
        "-t",
        trace_path().to_str().unwrap(),
        "-l",
        LANE,
        "--sweep",
        "0",
        "-q",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(spec_args());
    let run = |replicas: u32| {
        let mut a = args.clone();
        a.extend(["--replicas".to_owned(), replicas.to_string()]);
        zumik(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };
    let pass = run(RIGHT);
    assert_eq!(
        pass.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pass.stderr)
    );
    assert!(String::from_utf8_lossy(&pass.stdout).starts_with("PASS: 7 replicas"));
    let fail = run(OVERSIZED);
    assert_eq!(fail.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&fail.stdout).starts_with("FAIL: 16 replicas"));
}

#[test]
fn bad_history_is_an_error_naming_file_and_line() {
    let dir = scratch("bad");
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.1,10,1\n2023-11-16 18:17:04.1,ten,1\n",
    )
    .unwrap();
    let out = zumik(&["gate", "-t", bad.to_str().unwrap(), "-l", LANE], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv:3: ContextTokens \"ten\" is not a token count"),
        "{err}"
    );
    let out = zumik(
        &[
            "gate",
            "-t",
            bad.to_str().unwrap(),
            "-l",
            "acme/unpriced-model",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn jsonl_history_with_completions_gives_observed_reliability() {
    let dir = scratch("jsonl");
    let mut lines = Vec::new();
    for i in 0..300u32 {
        let ts = format!("2026-01-01T00:{:02}:{:02}.000Z", i / 60, i % 60);
        lines.push(format!(
            r#"{{"schema":"zumik.request.v1","request_id":"r{i}","tenant_id":"prj_a","model":"openai/gpt-4o","input_tokens":2000,"cached_input_tokens":1000,"max_output_tokens":500,"qos":{{"class":"interactive"}},"ts":"{ts}"}}"#
        ));
        // 200 managed completions, 2 of them failed; actual output 100 tokens.
        if i < 200 {
            let outcome = if i < 2 { "failed" } else { "completed" };
            lines.push(format!(
                r#"{{"schema":"zumik.completion.v1","request_id":"r{i}","tenant_id":"prj_a","model":"openai/gpt-4o","outcome":"{outcome}","input_tokens":2000,"cached_input_tokens":1000,"output_tokens":100,"ttft_ms":400,"profile":"managed_provider","ts":"{ts}"}}"#
            ));
        }
    }
    let path = dir.join("history.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let json = dir.join("r.json");
    let out = zumik(
        &[
            "gate",
            "-t",
            path.to_str().unwrap(),
            "-l",
            "openai/gpt-4o",
            "--replicas",
            "1",
            "--sweep",
            "3",
            "--out",
            json.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rel = &r["results"]["reliability"];
    assert_eq!(rel["managed"]["source"], "observed");
    assert_eq!(rel["managed"]["ppm"], 990_000);
    assert_eq!(rel["cluster"]["source"], "configured");
    assert_eq!(rel["baseline_ppm"], 990_000);
    // 198 requests took their actual output from a completion, 102 kept max_output_tokens.
    assert_eq!(r["inputs"]["output_tokens_from"]["completions"], 198);
    assert_eq!(r["inputs"]["output_tokens_from"]["max_output_tokens"], 102);
    // gpt-4o: 1000 × $2.50/M + 1000 cached × $1.25/M + output × $10/M.
    assert_eq!(
        r["results"]["baseline_cost_micros"],
        198 * (2500 + 1250 + 1000) + 102 * (2500 + 1250 + 5000)
    );
    assert_eq!(r["results"]["ttft_ms"]["managed_observed_p50"], 400);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diagnose_reports_shares_rates_burstiness_and_flags_on_a_hand_made_trace() {
    let dir = scratch("diagnose");
    let steady = dir.join("steady.csv");
    let bursty = dir.join("bursty.csv");
    std::fs::write(
        &steady,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 12:00:00,1000,100\n2024-01-01 12:01:00,1000,100\n\
         2024-01-01 12:02:00,1000,100\n2024-01-01 12:03:00,1000,100\n",
    )
    .unwrap();
    std::fs::write(
        &bursty,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 12:03:30,4000,400\n2024-01-01 12:03:40,4000,400\n",
    )
    .unwrap();
    let args = [
        "diagnose",
        "-t",
        steady.to_str().unwrap(),
        "-l",
        "openai/gpt-4o",
        "-t",
        bursty.to_str().unwrap(),
        "-l",
        "fireworks/qwen3-coder-480b-a35b-instruct",
        "--gpus-per-replica",
        "1",
        "--gpu-hour-usd",
        "0.10",
        "--seqs-per-replica",
        "10",
        "--prefill-tps",
        "1000",
        "--decode-tps",
        "100",
    ];
    let env = [("ZUMIK_ROUTING__HEADROOM", "1.0")];
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let out = zumik(&with_json, &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Window 12:00:00–12:03:40: 4 minutes, 6 requests, 4 400 + 8 800 tokens.
    assert_eq!(
        (u(&d["minutes"]), u(&d["requests"]), u(&d["tokens"])),
        (4, 6, 13_200)
    );
    assert_eq!(u(&d["usable_slots"]), 10);
    let lane = |name: &str| {
        d["lanes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["lane"] == name)
            .unwrap()
            .clone()
    };
    let s = lane("openai/gpt-4o");
    let b = lane("fireworks/qwen3-coder-480b-a35b-instruct");
    // Largest token share first.
    assert_eq!(
        d["lanes"][0]["lane"],
        "fireworks/qwen3-coder-480b-a35b-instruct"
    );
    assert_eq!(
        (s["request_share"].as_f64(), s["token_share"].as_f64()),
        (Some(0.666667), Some(0.333333))
    );
    // Steady: 1 100 tokens every minute.
    assert_eq!(
        (
            u(&s["tokens_per_min_p50"]),
            u(&s["tokens_per_min_p95"]),
            u(&s["tokens_per_min_peak"])
        ),
        (1100, 1100, 1100)
    );
    assert_eq!(
        (s["peak_to_mean"].as_f64(), s["cv"].as_f64()),
        (Some(1.0), Some(0.0))
    );
    // Bursty: minutes [0, 0, 0, 8 800]: p50 0, p95 8 800, peak/mean 4, cv √3.
    assert_eq!(
        (u(&b["tokens_per_min_p50"]), u(&b["tokens_per_min_p95"])),
        (0, 8800)
    );
    assert_eq!(
        (b["peak_to_mean"].as_f64(), b["cv"].as_f64()),
        (Some(4.0), Some(1.7321))
    );
    // Steady lane, gpt-4o: 4 × (1000 × $2.50/M + 100 × $10/M) = 14 000 micros; 4 × 2 s busy over
    // 220 s: utilisation 8/220/10 = 0.36 %; break-even = $0.10/h × 8 s / (3600 s × 10 × $0.014)
    // = 0.16 %: flagged.
    assert_eq!(u(&s["managed_cost_micros"]), 14_000);
    assert_eq!(u(&s["busy_ms"]), 8_000);
    assert_eq!(s["utilisation"].as_f64(), Some(0.0036));
    assert_eq!(s["break_even_utilisation"].as_f64(), Some(0.0016));
    assert_eq!(s["flagged"], true);
    // Bursty lane, qwen3-coder on Fireworks ($0.45/M in, $1.80/M out): 2 × 2 520 micros; 2 × 8 s
    // busy: utilisation 0.73 % below break-even 0.88 %: not flagged.
    assert_eq!(u(&b["managed_cost_micros"]), 5_040);
    assert_eq!(b["utilisation"].as_f64(), Some(0.0073));
    assert_eq!(b["break_even_utilisation"].as_f64(), Some(0.0088));
    assert_eq!(b["flagged"], false);
    // The human table says the same.
    let out = zumik(&args, &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 lane(s) flagged"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("openai/gpt-4o") && l.ends_with("GATE CANDIDATE")),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// The report page in a real browser.

#[test]
fn the_html_report_renders_its_charts_in_headless_chromium() {
    let dir = scratch("chromium");
    let html = dir.join("report.html");
    let mut args: Vec<String> = [
        "gate",
        "-t",
        trace_path().to_str().unwrap(),
        "-l",
        LANE,
        "-q",
        "--html",
        html.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(spec_args());
    let out = zumik(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing to fetch. (The SVG namespace URI is an identifier, not a fetch.)
    let stripped = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for forbidden in ["http://", "https://", "<link", " src=", "url("] {
        assert!(
            !stripped.contains(forbidden),
            "the page references something external: {forbidden}"
        );
    }

    let dom = run_chromium(
        &dir.join("profile-dom"),
        &["--dump-dom"],
        &format!("file://{}", html.display()),
    );
    let start = dom
        .find("data-rendered=\"")
        .expect("the page's measuring script ran")
        + "data-rendered=\"".len();
    let end = start + dom[start..].find('"').unwrap();
    let rendered: Value = serde_json::from_str(&dom[start..end].replace("&quot;", "\"")).unwrap();
    let charts = rendered.as_array().unwrap();
    let ids: Vec<&str> = charts.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["chart-load", "chart-traffic", "chart-cost"]);
    for c in charts {
        assert!(
            u(&c["width"]) >= 1000 && u(&c["height"]) >= 200,
            "chart not laid out: {c}"
        );
    }
    // Load: area + mean + peak lines + capacity; the polylines span the hour (> 1 000 px drawn).
    assert!(
        u(&charts[0]["paths"]) >= 4 && u(&charts[0]["length"]) > 1000,
        "{}",
        charts[0]
    );
    assert!(u(&charts[1]["bars"]) > 50, "{}", charts[1]);
    // Cost: cluster, managed, blended lines + baseline + threshold.
    assert!(
        u(&charts[2]["paths"]) >= 5 && u(&charts[2]["length"]) > 1000,
        "{}",
        charts[2]
    );
    assert!(
        dom.contains("break-even ≈"),
        "the cost chart marks the break-even point"
    );
    assert!(dom.contains("sha256:"), "the page shows the digest");

    let shot = dir.join("shot.png");
    run_chromium(
        &dir.join("profile-shot"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,1600",
        ],
        &format!("file://{}", html.display()),
    );
    let png = std::fs::read(&shot).expect("chromium wrote a screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
