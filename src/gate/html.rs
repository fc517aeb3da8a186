//! The gate report as a self-contained HTML page: the verdict with its numbers, load vs capacity
//! over time, requests served vs overflowed, cost vs cluster size with the baseline and the
//! break-even point, the sweep table, the inputs and the evidence digest.
//!
//! Rendered from the sealed [`GateReportV1`] alone (so any stored report can be re-rendered), as
//! inline SVG: no network, no external CSS or JS. The only script is a few lines that record what
//! the browser actually drew (chart sizes, path lengths) in `body[data-rendered]`, which the
//! headless-browser test reads back.

use std::fmt::Write;

use serde_json::Value;

use crate::events::GateReportV1;

use super::model::usd;
use super::svg::{esc, nice_max, Chart};

const BLUE: &str = "#2563eb";
const ORANGE: &str = "#ea580c";
const GREEN: &str = "#16a34a";
const RED: &str = "#dc2626";
const GREY: &str = "#6b7280";
const BLACK: &str = "#111827";

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().map(f).collect())
        .unwrap_or_default()
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn dollars_axis(micros: f64) -> String {
    let d = micros / 1e6;
    if d.fract() == 0.0 {
        format!("${d:.0}")
    } else {
        format!("${d:.2}")
    }
}

/// Where the blended cost line crosses the baseline (linear interpolation between sweep points).
pub fn break_even_crossings(replicas: &[f64], blended: &[f64], baseline: f64) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 1..replicas.len().min(blended.len()) {
        let (a, b) = (blended[i - 1] - baseline, blended[i] - baseline);
        if (a <= 0.0) != (b <= 0.0) && a != b {
            out.push(replicas[i - 1] + (replicas[i] - replicas[i - 1]) * a / (a - b));
        }
    }
    out
}

fn load_chart(r: &GateReportV1) -> String {
    let s = &r.series;
    let bucket_ms = f(&s["bucket_ms"]).max(1.0);
    let minutes = bucket_ms / 60_000.0;
    let busy: Vec<f64> = nums(&s["busy_slot_ms"])
        .iter()
        .map(|b| b / bucket_ms)
        .collect();
    let peak = nums(&s["peak_busy"]);
    let slots = f(&s["usable_slots"]);
    let max_inflight = f(&s["max_inflight"]);
    let n = busy.len().max(1) as f64;
    let ymax = nice_max(peak.iter().copied().fold(max_inflight.max(slots), f64::max));
    let mut c = Chart::new(
        "chart-load",
        "Load vs capacity over time",
        1080.0,
        320.0,
        (0.0, n * minutes),
        (0.0, ymax),
    );
    // Each bucket's value is drawn at its middle.
    let at = |i: usize| (i as f64 + 0.5) * minutes;
    let mean_pts: Vec<(f64, f64)> = busy.iter().enumerate().map(|(i, &v)| (at(i), v)).collect();
    let peak_pts: Vec<(f64, f64)> = peak.iter().enumerate().map(|(i, &v)| (at(i), v)).collect();
    c.area(&mean_pts, BLUE, 0.25);
    c.line(&mean_pts, BLUE, 2.0, None);
    c.line(&peak_pts, ORANGE, 1.5, None);
    c.hline(slots, RED, "6 4", &format!("usable slots {slots:.0}"));
    if max_inflight > slots {
        c.hline(
            max_inflight,
            GREY,
            "2 3",
            &format!("max_inflight {max_inflight:.0}"),
        );
    }
    c.legend("mean busy sequences", BLUE, false);
    c.legend("peak busy sequences", ORANGE, false);
    c.legend("usable slots (max_inflight × headroom)", RED, true);
    c.finish(
        "minutes since window start",
        "concurrent sequences",
        &|x| format!("{x:.0}"),
        &|y| format!("{y:.0}"),
    )
}

fn traffic_chart(r: &GateReportV1) -> String {
    let s = &r.series;
    let minutes = f(&s["bucket_ms"]).max(1.0) / 60_000.0;
    let arrivals = nums(&s["arrivals"]);
    let served = nums(&s["served"]);
    let over = nums(&s["overflowed"]);
    let n = arrivals.len().max(1) as f64;
    let ymax = nice_max(arrivals.iter().copied().fold(0.0, f64::max));
    let mut c = Chart::new(
        "chart-traffic",
        "Requests per bucket: served by the cluster vs overflowed to managed",
        1080.0,
        260.0,
        (0.0, n * minutes),
        (0.0, ymax),
    );
    for (i, (&b, &o)) in served.iter().zip(&over).enumerate() {
        let x = (i as f64 + 0.5) * minutes;
        c.bar(x, minutes * 0.8, 0.0, b, BLUE);
        c.bar(x, minutes * 0.8, b, b + o, ORANGE);
    }
    c.legend("served by the cluster", BLUE, false);
    c.legend("overflow to managed", ORANGE, false);
    c.finish(
        "minutes since window start",
        "requests",
        &|x| format!("{x:.0}"),
        &|y| format!("{y:.0}"),
    )
}

fn cost_chart(r: &GateReportV1) -> String {
    let s = &r.series["cost_by_size"];
    let replicas = nums(&s["replicas"]);
    if replicas.is_empty() {
        return "<p class=\"note\">No sweep was run.</p>".to_owned();
    }
    let cluster = nums(&s["cluster_micros"]);
    let managed = nums(&s["managed_micros"]);
    let blended = nums(&s["blended_micros"]);
    let passed: Vec<bool> = s["passed"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_bool() == Some(true)).collect())
        .unwrap_or_default();
    let baseline = f(&r.series["baseline_micros"]);
    let threshold = f(&r.series["threshold_micros"]);
    let xmax = replicas.iter().copied().fold(1.0, f64::max);
    let ymax = nice_max(blended.iter().copied().fold(baseline, f64::max));
    let mut c = Chart::new(
        "chart-cost",
        "Cost vs cluster size (window)",
        1080.0,
        380.0,
        (0.0, xmax + 0.5),
        (0.0, ymax),
    );
    let pts = |ys: &[f64]| -> Vec<(f64, f64)> {
        replicas.iter().copied().zip(ys.iter().copied()).collect()
    };
    c.line(&pts(&cluster), GREY, 1.5, Some("5 3"));
    c.line(&pts(&managed), ORANGE, 1.5, Some("5 3"));
    c.line(&pts(&blended), BLUE, 2.5, None);
    c.hline(
        baseline,
        BLACK,
        "8 4",
        &format!("baseline all-managed {}", usd(baseline as u64)),
    );
    c.hline(
        threshold,
        GREEN,
        "3 3",
        &format!("pass threshold {}", usd(threshold as u64)),
    );
    for (i, (&x, &y)) in replicas.iter().zip(&blended).enumerate() {
        c.marker(
            x,
            y,
            if passed.get(i) == Some(&true) {
                GREEN
            } else {
                RED
            },
            4.0,
            None,
        );
    }
    for x in break_even_crossings(&replicas, &blended, baseline) {
        c.vline(x, baseline, BLACK, &format!("break-even ≈ {x:.1} replicas"));
        c.marker(x, baseline, BLACK, 5.0, None);
    }
    let cand = f(&r.results["candidate_replicas"]);
    if let Some(i) = replicas.iter().position(|&x| x == cand) {
        c.marker(
            cand,
            blended[i],
            if r.passed { GREEN } else { RED },
            7.0,
            Some("candidate"),
        );
    }
    c.legend("blended (cluster + overflow)", BLUE, false);
    c.legend("cluster", GREY, true);
    c.legend("managed overflow", ORANGE, true);
    c.legend("passes", GREEN, false);
    c.legend("fails", RED, false);
    c.finish(
        "replicas",
        "cost over the window",
        &|x| format!("{x:.0}"),
        &dollars_axis,
    )
}

fn row(out: &mut String, k: &str, v: &str) {
    let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
}

fn numbers_table(r: &GateReportV1) -> String {
    let res = &r.results;
    let cfg = &r.config["cluster"];
    let mut t = String::from("<table class=\"kv\">\n");
    row(
        &mut t,
        "baseline (all managed)",
        &usd(u(&res["baseline_cost_micros"])),
    );
    row(&mut t, "cluster cost", &usd(u(&res["cluster_cost_micros"])));
    row(
        &mut t,
        "managed overflow cost",
        &usd(u(&res["overflow_cost_micros"])),
    );
    row(&mut t, "blended cost", &usd(u(&res["blended_cost_micros"])));
    row(
        &mut t,
        "pass threshold",
        &format!(
            "{} (margin {})",
            usd(u(&res["threshold_cost_micros"])),
            pct(f(&r.config["margin"]))
        ),
    );
    let savings = res["savings_micros"].as_i64().unwrap_or(0);
    let sign = if savings < 0 { "−" } else { "" };
    row(
        &mut t,
        "savings",
        &format!(
            "{sign}{} ({})",
            usd(savings.unsigned_abs()),
            pct(f(&res["savings_share"]))
        ),
    );
    let q = &res["requests"];
    row(
        &mut t,
        "requests",
        &format!(
            "{} admitted: {} BYOC, {} overflow ({}), {} rejected",
            u(&q["admitted"]),
            u(&q["byoc"]),
            u(&q["overflow"]),
            pct(f(&res["overflow_share"])),
            u(&q["rejected"])
        ),
    );
    let be = res["break_even_utilisation"]
        .as_f64()
        .map_or("n/a".to_owned(), pct);
    row(
        &mut t,
        "utilisation vs break-even",
        &format!("{} vs {be}", pct(f(&res["utilisation"]))),
    );
    let rel = &res["reliability"];
    row(
        &mut t,
        "reliability candidate vs baseline",
        &format!(
            "{:.4}% vs {:.4}% (cluster {:.4}% {}, managed {:.4}% {})",
            f(&rel["candidate_ppm"]) / 1e4,
            f(&rel["baseline_ppm"]) / 1e4,
            f(&rel["cluster"]["ppm"]) / 1e4,
            rel["cluster"]["source"].as_str().unwrap_or(""),
            f(&rel["managed"]["ppm"]) / 1e4,
            rel["managed"]["source"].as_str().unwrap_or("")
        ),
    );
    row(
        &mut t,
        "estimated BYOC TTFT p50 / p95",
        &format!(
            "{} ms / {} ms",
            u(&res["ttft_ms"]["byoc_p50"]),
            u(&res["ttft_ms"]["byoc_p95"])
        ),
    );
    let cap = &res["capacity"];
    row(
        &mut t,
        "candidate cluster",
        &format!(
            "{} replicas × {} GPUs at {}/GPU-h = {}/h; {} sequences ({} usable); prefill {} tok/s, decode {} tok/s per sequence",
            u(&cfg["replicas"]),
            u(&cfg["gpus_per_replica"]),
            usd(u(&cfg["gpu_hour_micros"])),
            usd(u(&cap["cost_per_hour_micros"])),
            u(&cap["max_inflight"]),
            u(&cap["usable_slots"]),
            u(&cfg["prefill_tokens_per_s"]),
            u(&cfg["decode_tokens_per_s"])
        ),
    );
    t.push_str("</table>\n");
    t
}

fn sweep_table(r: &GateReportV1) -> String {
    let Some(rows) = r.results["sweep"].as_array().filter(|a| !a.is_empty()) else {
        return String::new();
    };
    let mut t = String::from(
        "<table class=\"grid\"><tr><th>replicas</th><th>GPUs</th><th>usable slots</th><th>cluster</th><th>overflow</th>\
         <th>blended</th><th>overflow share</th><th>utilisation</th><th>break-even</th><th>verdict</th></tr>\n",
    );
    for s in rows {
        let ok = s["passed"].as_bool() == Some(true);
        let _ = writeln!(
            t,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if ok { "pass" } else { "fail" },
            u(&s["replicas"]),
            u(&s["gpus"]),
            u(&s["usable_slots"]),
            usd(u(&s["cluster_cost_micros"])),
            usd(u(&s["managed_cost_micros"])),
            usd(u(&s["blended_cost_micros"])),
            pct(f(&s["overflow_share"])),
            pct(f(&s["utilisation"])),
            s["break_even_utilisation"].as_f64().map_or("n/a".to_owned(), pct),
            if ok { "pass" } else { "fail" }
        );
    }
    t.push_str("</table>\n");
    t
}

fn sources_table(r: &GateReportV1) -> String {
    let mut t = String::from("<table class=\"grid\"><tr><th>file</th><th>format</th><th>lane</th><th>requests</th><th>bytes</th><th>sha256</th></tr>\n");
    for s in r.inputs["sources"].as_array().into_iter().flatten() {
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
            esc(s["name"].as_str().unwrap_or("")),
            esc(s["format"].as_str().unwrap_or("")),
            esc(s["lane"].as_str().unwrap_or("(per event)")),
            u(&s["requests"]),
            u(&s["bytes"]),
            esc(s["sha256"].as_str().unwrap_or(""))
        );
    }
    t.push_str("</table>\n");
    t
}

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#111827;margin:24px auto;max-width:1120px;padding:0 16px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}.sub{color:#4b5563}\
.verdict{display:inline-block;padding:6px 14px;border-radius:6px;font-weight:700;font-size:18px;color:#fff;margin:12px 0}\
.verdict.pass{background:#16a34a}.verdict.fail{background:#dc2626}\
ul.reasons{margin:4px 0 12px}table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 10px;text-align:left;vertical-align:top}\
table.kv th{color:#374151;font-weight:600;white-space:nowrap}table.grid th{background:#f3f4f6}table.grid td,table.grid th{border:1px solid #e5e7eb;text-align:right}\
table.grid td:first-child,table.grid th:first-child{text-align:left}tr.pass td:last-child{color:#16a34a;font-weight:600}tr.fail td:last-child{color:#dc2626}\
svg.chart{display:block;margin:8px 0;background:#fff;border:1px solid #e5e7eb;border-radius:6px}\
svg .title{font-size:15px;font-weight:600}svg .tick{font-size:11px;fill:#374151}svg .label{font-size:12px;fill:#374151}svg .ref{font-size:11px}\
svg .grid{stroke:#e5e7eb;stroke-width:1}svg .axis{stroke:#9ca3af;stroke-width:1;fill:none}\
.mono,.digest{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:12px;word-break:break-all}.digest{font-size:14px;padding:8px;background:#f3f4f6;border-radius:6px}\
.note{color:#4b5563}";

/// Records what the browser drew, for the headless test (no effect on the page).
const MEASURE: &str = "(function(){var out=[];document.querySelectorAll('svg.chart').forEach(function(s){\
var b=s.getBoundingClientRect(),len=0,ps=s.querySelectorAll('path.data');ps.forEach(function(p){len+=p.getTotalLength();});\
out.push({id:s.id,width:Math.round(b.width),height:Math.round(b.height),paths:ps.length,bars:s.querySelectorAll('rect.bar').length,length:Math.round(len)});});\
document.body.setAttribute('data-rendered',JSON.stringify(out));})();";

/// The report page. Deterministic: the same report gives the same bytes.
pub fn render(r: &GateReportV1) -> String {
    let res = &r.results;
    let mut h = String::with_capacity(64 * 1024);
    let verdict = if r.passed { "pass" } else { "fail" };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Zumik gate report: {lane} ({verdict})</title><style>{STYLE}</style></head>\n<body>\n\
         <h1>Gate report: {lane}</h1>\n<div class=\"sub\">window {start} – {end} · {reqs} requests · price {key} ({table})</div>\n\
         <div class=\"verdict {verdict}\">{VERDICT}</div> <span class=\"mono\">evidence digest {digest}</span>\n\
         <ul class=\"reasons\">\n",
        lane = esc(&r.lane),
        start = r.window.start,
        end = r.window.end,
        reqs = u(&r.inputs["requests"]),
        key = esc(r.inputs["price"]["key"].as_str().unwrap_or("")),
        table = esc(r.inputs["price"]["table"].as_str().unwrap_or("")),
        VERDICT = if r.passed { "PASS" } else { "FAIL" },
        digest = esc(&r.digest),
    );
    for reason in res["verdict"]["reasons"].as_array().into_iter().flatten() {
        let _ = writeln!(h, "<li>{}</li>", esc(reason.as_str().unwrap_or("")));
    }
    h.push_str("</ul>\n");
    h.push_str(&numbers_table(r));
    h.push_str("<h2>Load vs capacity</h2>\n");
    h.push_str(&load_chart(r));
    h.push_str(&traffic_chart(r));
    h.push_str("<h2>Cost vs cluster size</h2>\n");
    h.push_str(&cost_chart(r));
    let be = res["break_even_utilisation"]
        .as_f64()
        .map_or("n/a".to_owned(), pct);
    let _ = writeln!(
        h,
        "<p class=\"note\">Break-even utilisation of the candidate: {be} of its usable slots must be busy for the managed \
         spend it displaces to pay for it (it reached {}). Where the blended line crosses the baseline, the cluster is exactly at break-even.</p>",
        pct(f(&res["utilisation"]))
    );
    h.push_str(&sweep_table(r));
    h.push_str("<h2>Inputs</h2>\n");
    h.push_str(&sources_table(r));
    let _ = writeln!(
        h,
        "<h2>Evidence digest</h2>\n<div class=\"digest\" id=\"digest\">{}</div>\n\
         <p class=\"note\">SHA-256 over the canonical JSON of the report without its digest (sorted keys, no whitespace). \
         The report JSON is embedded below; <code>zumik.lane_activate.v1</code> names this digest.</p>",
        esc(&r.digest)
    );
    // `</` must not appear inside a script element; JSON allows escaping the slash.
    let json = serde_json::to_string(&r.to_value())
        .unwrap_or_default()
        .replace("</", "<\\/");
    let _ = write!(
        h,
        "<script type=\"application/json\" id=\"report\">{json}</script>\n<script>{MEASURE}</script>\n</body></html>\n"
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossings_interpolate_between_sweep_points() {
        let x = [1.0, 2.0, 3.0, 4.0];
        // Below baseline 100 from 1.5 to 3.5.
        let y = [110.0, 90.0, 90.0, 110.0];
        assert_eq!(break_even_crossings(&x, &y, 100.0), vec![1.5, 3.5]);
        assert!(break_even_crossings(&x, &[1.0, 2.0, 3.0, 4.0], 100.0).is_empty());
    }
}
