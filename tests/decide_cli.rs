//! `zumik decide` as a user runs it: golden outputs for the example scenarios, byte-identical
//! reruns, stdin input, and bad lines reported with their line number without stopping the run.
//!
//! `ZUMIK_BLESS=1 cargo test --test decide_cli` rewrites `tests/golden/` after an intended change.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn zumik(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zumik"))
        .args(args)
        .current_dir(root())
        .env_remove("ZUMIK_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn golden(example: &str) {
    let events = Path::new("examples").join(format!("{example}.jsonl"));
    let out = zumik(&["decide", "--events", events.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = root()
        .join("tests/golden")
        .join(format!("{example}.decisions.jsonl"));
    if std::env::var_os("ZUMIK_BLESS").is_some() {
        std::fs::write(&path, &out.stdout).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    let got = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        got,
        want,
        "decisions for {example} differ from {} (ZUMIK_BLESS=1 to rewrite)",
        path.display()
    );
    let again = zumik(&["decide", "--events", events.to_str().unwrap()], None);
    assert_eq!(
        again.stdout, out.stdout,
        "second run of {example} gave different bytes"
    );
}

#[test]
fn scenario_matches_golden() {
    golden("scenario");
}

#[test]
fn tenants_matches_golden() {
    golden("tenants");
}

#[test]
fn the_scenario_shows_hot_lane_overflow_failover_and_recovery() {
    let text =
        std::fs::read_to_string(root().join("tests/golden/scenario.decisions.jsonl")).unwrap();
    let reasons: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let first = |r: &str| {
        reasons
            .iter()
            .position(|x| x == r)
            .unwrap_or_else(|| panic!("no {r} in {reasons:?}"))
    };
    assert!(first("hot_lane") < first("overflow"));
    assert!(first("overflow") < first("failover"));
    let recovered = reasons.iter().rposition(|x| x == "hot_lane").unwrap();
    assert!(
        recovered > first("failover"),
        "no hot_lane after the failover: {reasons:?}"
    );
}

#[test]
fn bad_lines_are_reported_with_line_numbers_and_skipped() {
    let good = std::fs::read_to_string(root().join("examples/scenario.jsonl")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(3, "{not json");
    lines.insert(
        5,
        r#"{"schema":"zumik.request.v1","request_id":"r","tenant_id":"t"}"#,
    );
    lines.insert(7, r#"{"schema":"zumik.cluster_heartbeat.v1","cluster_id":"byc_x","status":"ready","max_inflight":4,"inflight":0,"error_rate":7,"ts":"2026-11-24T10:00:02Z"}"#);
    let input = lines.join("\n");
    let out = zumik(&["decide", "--events", "-"], Some(input.as_bytes()));
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    for n in [4, 6, 8] {
        assert!(
            stderr.contains(&format!("line {n}: skipped")),
            "line {n} not reported:\n{stderr}"
        );
    }
    assert!(stderr.contains("error_rate"), "{stderr}");
    let clean = zumik(&["decide", "--events", "examples/scenario.jsonl"], None);
    assert_eq!(
        out.stdout, clean.stdout,
        "skipping bad lines changed the decisions"
    );
    let strict = zumik(
        &["decide", "--strict", "--events", "-"],
        Some(input.as_bytes()),
    );
    assert_eq!(strict.status.code(), Some(1));
}

#[test]
fn a_bad_config_fails_at_start_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("zumik-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[routing]\nheadroom = 1.7\n").unwrap();
    let out = zumik(
        &[
            "decide",
            "--config",
            cfg.to_str().unwrap(),
            "--events",
            "examples/scenario.jsonl",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("routing.headroom"));
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_demo_runs_on_the_embedded_kafka_and_decides_every_request_once() {
    let out = zumik(&["demo", "--duration", "6", "--rate", "200"], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("embedded Kafka"), "{stdout}");
    // Not a terminal: one plain line per second, no redraw codes.
    assert!(
        stdout.lines().filter(|l| l.starts_with("t=")).count() >= 3,
        "{stdout}"
    );
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert!(stdout.contains("exactly one each"), "{stdout}");
    assert!(stdout.contains("hot_lane"), "{stdout}");
    // The scripted outage shows even in a 6-s run: heartbeats come often enough.
    assert!(stdout.contains("failover"), "{stdout}");
}
