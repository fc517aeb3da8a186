//! Audit, activation and what-if, as an auditor and a platform engineer use them:
//! journal round trips with zero mismatches, tampering detected, gated activation refused for
//! missing / failed / tampered / stale reports, demotion, and what-if replays.

use std::io::Cursor;
use std::sync::Arc;

use serde_json::json;
use zumik::core::audit::Auditor;
use zumik::core::lane::LaneEvent;
use zumik::core::router::JournalEntry;
use zumik::core::whatif::compare;
use zumik::core::{Output, PriceTable, Router, RoutingConfig};
use zumik::events::codec::decode_input;
use zumik::events::*;
use zumik::journal::{Format, Header, JournalReader, JournalWriter};

const LANE: &str = "fireworks/qwen3-coder-480b-a35b-instruct";
const T0: i64 = 1_795_514_400_000; // 2026-11-24T10:00:00Z

fn prices() -> Arc<PriceTable> {
    Arc::new(PriceTable::embedded())
}

fn example_inputs(name: &str) -> Vec<InputEvent> {
    let text = std::fs::read_to_string(format!(
        "{}/examples/{name}.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    text.lines()
        .map(|l| decode_input(l.as_bytes()).unwrap())
        .collect()
}

fn run(
    cfg: RoutingConfig,
    inputs: Vec<InputEvent>,
) -> (Vec<DecisionV1>, Vec<JournalEntry>, Vec<String>) {
    let mut router = Router::new(Arc::new(cfg), prices());
    let mut out = Output::with_journal();
    let mut warnings = vec![];
    for e in inputs {
        router.apply(e, &mut out);
        warnings.extend(
            out.warnings
                .drain(..)
                .map(|w| format!("{}: {}", w.code, w.message)),
        );
    }
    (out.decisions, out.journal, warnings)
}

fn audit(cfg: RoutingConfig, journal: &[JournalEntry]) -> Auditor {
    let mut a = Auditor::new(Arc::new(cfg));
    for e in journal {
        a.apply(e);
    }
    a
}

fn roundtrip(journal: &[JournalEntry], format: Format) -> Vec<JournalEntry> {
    let mut w = JournalWriter::new(
        Vec::new(),
        format,
        &Header::new("test", RoutingConfig::default()),
    )
    .unwrap();
    for e in journal {
        w.write(e).unwrap();
    }
    JournalReader::new(Cursor::new(w.finish().unwrap()))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn exported_journals_replay_with_zero_mismatches() {
    for example in ["scenario", "tenants"] {
        let (decisions, journal, _) = run(RoutingConfig::default(), example_inputs(example));
        for format in [Format::Jsonl, Format::Bincode] {
            let a = audit(RoutingConfig::default(), &roundtrip(&journal, format));
            assert_eq!(
                a.stats.mismatches, 0,
                "{example} {format:?}: {:?}",
                a.mismatches
            );
            assert_eq!(a.stats.decisions, decisions.len() as u64);
        }
    }
}

#[test]
fn a_tampered_decision_is_reported_with_both_versions() {
    let (_, mut journal, _) = run(RoutingConfig::default(), example_inputs("scenario"));
    let (idx, target) = journal
        .iter_mut()
        .enumerate()
        .find_map(|(i, e)| match e {
            JournalEntry::Lane { events, .. } => events.iter_mut().find_map(|ev| match ev {
                LaneEvent::Decided { decision, .. } if decision.reason == Reason::Overflow => {
                    decision.reason = Reason::HotLane;
                    Some((i, decision.request_id.clone()))
                }
                _ => None,
            }),
            _ => None,
        })
        .expect("the scenario has an overflow decision");
    let a = audit(RoutingConfig::default(), &journal);
    assert_eq!(a.stats.mismatches, 1, "{:?}", a.mismatches);
    let m = &a.mismatches[0];
    assert_eq!(m.index, idx as u64);
    assert!(
        m.recorded.to_string().contains("hot_lane")
            && m.recomputed.to_string().contains("overflow")
    );
    assert!(m.command.to_string().contains(&*target));
}

#[test]
fn a_tampered_heartbeat_in_a_lane_command_is_reported() {
    let (_, mut journal, _) = run(RoutingConfig::default(), example_inputs("scenario"));
    // Make the lane believe the cluster was down when it decided: the recorded hot_lane
    // decisions after it no longer follow from the commands.
    let tampered = journal.iter_mut().find_map(|e| match e {
        JournalEntry::Lane {
            command: zumik::core::lane::LaneCommand::ClusterUpdated { view: v, .. },
            ..
        } if v.last_heartbeat.is_some() => {
            v.health = zumik::core::cluster::Health::Down;
            Some(())
        }
        _ => None,
    });
    assert!(tampered.is_some());
    let a = audit(RoutingConfig::default(), &journal);
    assert!(a.stats.mismatches >= 1);
}

fn report(passed: bool, window_end: i64, break_even: f64) -> GateReportV1 {
    let mut r = GateReportV1 {
        lane: LANE.into(),
        passed,
        window: Window {
            start: Timestamp(window_end - 3_600_000),
            end: Timestamp(window_end),
        },
        inputs: json!({"requests": 8819}),
        config: json!({"replicas": 2}),
        results: json!({"break_even_utilisation": break_even}),
        series: json!({}),
        digest: String::new(),
    };
    r.seal();
    r
}

/// A registered cluster on the lane whose first heartbeat arrives at `heartbeat_at`.
fn lane_setup(heartbeat_at: i64) -> Vec<InputEvent> {
    let text = r#"{"schema":"zumik.cluster_registered.v1","cluster_id":"byc_a","name":"a","region":"eu-west-1","stack":"epp","lanes":["fireworks/qwen3-coder-480b-a35b-instruct"],"max_inflight":10,"gpus":8,"gpu_hour_micros":2500000,"ts":"2026-11-24T10:00:00Z"}"#;
    let mut v = vec![decode_input(text.as_bytes()).unwrap()];
    v.push(heartbeat(heartbeat_at));
    v
}

fn activate(digest: &str, ts: i64) -> InputEvent {
    InputEvent::LaneActivate(LaneActivateV1 {
        lane: LANE.into(),
        report_digest: digest.into(),
        ts: Timestamp(ts),
    })
}

fn request(id: &str, ts: i64) -> InputEvent {
    InputEvent::Request(RequestV1 {
        request_id: id.into(),
        tenant_id: "prj_a".into(),
        model: LANE.into(),
        alias: None,
        input_tokens: 1000,
        cached_input_tokens: 0,
        max_output_tokens: 100,
        qos: Qos {
            class: "interactive".into(),
            target_ttft_ms: None,
            deadline_ms: Some(30_000),
            priority: None,
        },
        region: None,
        allowed_profiles: None,
        ts: Timestamp(ts),
    })
}

fn heartbeat(ts: i64) -> InputEvent {
    InputEvent::ClusterHeartbeat(ClusterHeartbeatV1::new(
        "byc_a",
        ClusterStatus::Ready,
        10,
        Timestamp(ts),
    ))
}

/// Activation with the given stored report, then one request: the refusal warning (if any) and
/// the request's reason.
fn try_activation(stored: Option<GateReportV1>, named: &str, at: i64) -> (Vec<String>, Reason) {
    let mut inputs = lane_setup(at);
    if let Some(r) = stored {
        inputs.push(InputEvent::GateReport(Box::new(r)));
    }
    inputs.push(activate(named, at));
    inputs.push(request("r1", at + 1));
    let (decisions, journal, warnings) = run(RoutingConfig::default(), inputs);
    assert_eq!(
        audit(RoutingConfig::default(), &journal).stats.mismatches,
        0
    );
    (warnings, decisions[0].reason)
}

#[test]
fn activation_needs_a_stored_passing_untampered_fresh_report() {
    let good = report(true, T0, 0.3);
    let (w, reason) = try_activation(Some(good.clone()), &good.digest, T0 + 60_000);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(reason, Reason::HotLane);

    let (w, reason) = try_activation(None, &good.digest, T0 + 60_000);
    assert!(
        w[0].contains("activation_refused") && w[0].contains("no gate report"),
        "{w:?}"
    );
    assert_eq!(reason, Reason::NotActivated);

    let failed = report(false, T0, 0.3);
    let (w, reason) = try_activation(Some(failed.clone()), &failed.digest, T0 + 60_000);
    assert!(w[0].contains("did not pass"), "{w:?}");
    assert_eq!(reason, Reason::NotActivated);

    let mut tampered = good.clone();
    tampered.passed = true;
    tampered.results = json!({"break_even_utilisation": 0.01});
    let (w, reason) = try_activation(Some(tampered), &good.digest, T0 + 60_000);
    assert!(w[0].contains("does not match its digest"), "{w:?}");
    assert_eq!(reason, Reason::NotActivated);

    let eight_days = 8 * 24 * 3_600_000;
    let (w, reason) = try_activation(Some(good.clone()), &good.digest, T0 + eight_days);
    assert!(w[0].contains("stale"), "{w:?}");
    assert_eq!(reason, Reason::NotActivated);
}

#[test]
fn an_idle_hot_lane_is_demoted_after_its_window_and_journaled() {
    let good = report(true, T0, 0.3);
    let mut inputs = lane_setup(T0);
    inputs.push(InputEvent::GateReport(Box::new(good.clone())));
    inputs.push(activate(&good.digest, T0));
    // A healthy cluster (heartbeat every 10 s) but one request every 10 minutes: utilisation
    // far below the 30 % break-even of the report.
    for s in 1..=360 {
        let ts = T0 + s * 10_000;
        inputs.push(heartbeat(ts));
        if s % 60 == 0 {
            inputs.push(request(&format!("r{s}"), ts + 1));
        }
    }
    let (decisions, journal, warnings) = run(RoutingConfig::default(), inputs);
    assert_eq!(decisions[0].reason, Reason::HotLane);
    assert!(
        decisions[..5].iter().all(|d| d.reason == Reason::HotLane),
        "{decisions:?}"
    );
    let last = decisions.last().unwrap();
    assert_eq!(last.reason, Reason::NotActivated, "{decisions:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("lane_demoted") && w.contains("break-even")),
        "{warnings:?}"
    );
    let demoted = journal.iter().any(|e| {
        matches!(e, JournalEntry::Lane { events, .. } if events.iter().any(|ev| matches!(ev, LaneEvent::Deactivated { demoted: true, .. })))
    });
    assert!(demoted);
    assert_eq!(
        audit(RoutingConfig::default(), &journal).stats.mismatches,
        0
    );
}

#[test]
fn what_if_reports_changes_by_reason_with_cost() {
    let inputs = example_inputs("scenario");
    let base = Router::new(Arc::new(RoutingConfig::default()), prices());
    // Same config: nothing changes.
    let same = compare(
        inputs.clone(),
        base,
        Router::new(Arc::new(RoutingConfig::default()), prices()),
        |e| vec![e],
    );
    assert_eq!(same.changed, 0);
    assert_eq!(same.decisions, 12);
    // Half the headroom: fewer BYOC slots, more overflow to managed, higher cost.
    let tight = RoutingConfig {
        headroom: 0.5,
        ..RoutingConfig::default()
    };
    let base = Router::new(Arc::new(RoutingConfig::default()), prices());
    let r = compare(inputs, base, Router::new(Arc::new(tight), prices()), |e| {
        vec![e]
    });
    assert!(r.changed > 0);
    assert!(
        r.transitions
            .keys()
            .any(|k| k.starts_with("byoc_dynamo/hot_lane -> managed_provider/overflow")),
        "{r:?}"
    );
    assert!(r.cost_delta_micros > 0);
}

#[test]
fn the_replay_command_verifies_explains_and_flags_tampering() {
    let dir = std::env::temp_dir().join(format!("zumik-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal.jsonl");
    let bin = dir.join("journal.bin");
    let zumik = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_zumik"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let out = zumik(&[
        "decide",
        "-q",
        "--events",
        "examples/scenario.jsonl",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    for path in [&journal, &bin] {
        if path == &bin {
            assert!(zumik(&[
                "replay",
                "--journal",
                journal.to_str().unwrap(),
                "--export",
                bin.to_str().unwrap()
            ])
            .status
            .success());
        }
        let out = zumik(&["replay", "--journal", path.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success()
                && text.contains("12 decisions")
                && text.contains(": 0 mismatches"),
            "{text}"
        );
    }
    let out = zumik(&[
        "replay",
        "--journal",
        bin.to_str().unwrap(),
        "--explain",
        "req_005",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("reason    overflow") && text.contains("saturated"),
        "{text}"
    );

    let original = std::fs::read_to_string(&journal).unwrap();
    let tampered = original.replacen(r#""reason":"overflow""#, r#""reason":"hot_lane""#, 1);
    assert_ne!(tampered, original);
    std::fs::write(&journal, tampered).unwrap();
    let out = zumik(&["replay", "--journal", journal.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("MISMATCH") && text.contains(": 1 mismatches"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn one_lane_or_a_prefix_of_the_journal_audits_and_exports_on_its_own() {
    let dir = std::env::temp_dir().join(format!("zumik-range-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (journal, lane_file) = (dir.join("journal.bin"), dir.join("lane.jsonl"));
    let zumik = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zumik"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let j = journal.to_str().unwrap();
    zumik(&[
        "decide",
        "-q",
        "--events",
        "examples/scenario.jsonl",
        "--journal",
        j,
    ]);
    let entries: Vec<JournalEntry> = JournalReader::new(std::io::BufReader::new(
        std::fs::File::open(&journal).unwrap(),
    ))
    .unwrap()
    .map(Result::unwrap)
    .collect();
    let lane = "fireworks/qwen3-coder-480b-a35b-instruct";
    let lane_commands = entries
        .iter()
        .filter(|e| matches!(e, JournalEntry::Lane { lane: l, .. } if **l == *lane))
        .count();
    assert!(lane_commands > 5);

    // One lane alone: exactly its commands, zero mismatches; exported, it audits again.
    let json = zumik(&["replay", "--journal", j, "--lane", lane, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["stats"]["commands"], lane_commands);
    assert_eq!(v["stats"]["mismatches"], 0);
    zumik(&[
        "replay",
        "--journal",
        j,
        "--lane",
        lane,
        "--export",
        lane_file.to_str().unwrap(),
    ]);
    let text = zumik(&["replay", "--journal", lane_file.to_str().unwrap()]);
    assert!(text.contains(": 0 mismatches"), "{text}");

    // A prefix: everything before the first lane command after TIME.
    let all: serde_json::Value =
        serde_json::from_str(&zumik(&["replay", "--journal", j, "--json"])).unwrap();
    let cut = entries
        .iter()
        .filter_map(|e| match e {
            JournalEntry::Lane { command, .. } => zumik::core::audit::command_ts(command),
            _ => None,
        })
        .nth(lane_commands / 2)
        .unwrap();
    let until = zumik::events::Timestamp(cut.millis() - 1).to_string();
    let part: serde_json::Value = serde_json::from_str(&zumik(&[
        "replay",
        "--journal",
        j,
        "--until",
        &until,
        "--json",
    ]))
    .unwrap();
    let (n_all, n_part) = (
        all["stats"]["commands"].as_u64().unwrap(),
        part["stats"]["commands"].as_u64().unwrap(),
    );
    assert!(n_part > 0 && n_part < n_all, "{n_part} of {n_all}");
    assert_eq!(part["stats"]["mismatches"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}
