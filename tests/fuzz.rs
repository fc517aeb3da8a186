//! Fuzzing the event decoder and the routing core (proptest-driven: `cargo fuzz` needs a nightly
//! toolchain, which this project does not require).
//!
//! Three generators, all starting from the example scenarios and a synthetic workload:
//! - arbitrary bytes into `decode_input`;
//! - byte-level mutations of valid events (flip, insert, delete, splice);
//! - JSON-level mutations: one field of a valid event replaced by a hostile value (huge and
//!   negative numbers, integral and fractional floats, unicode and control characters, deep
//!   nesting, timestamps at and beyond the accepted range, nulls, empty arrays).
//!
//! Properties: the decoder never panics; it gives what serde's tagged enum gives (the event, or
//! the same error) whichever path it takes; an accepted event re-encodes and decodes to itself;
//! the router applies every accepted event without panicking (overflow checks are on in test
//! builds); and the journal of the whole hostile run re-folds with zero mismatches.
//!
//! `scripts/test` runs a short round (`ZUMIK_FUZZ_SECONDS`, default 5 s); `scripts/fuzz SECONDS`
//! runs a long one in release mode. Each run prints its executions and the seed; a failure prints
//! the input; a crash found becomes a regression test beside the code it hits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;

use zumik::core::audit::Auditor;
use zumik::core::{Output, PriceTable, Router, RoutingConfig};
use zumik::events::codec::{decode_input, encode_input};
use zumik::events::InputEvent;
use zumik::workload::{Workload, WorkloadSpec};

fn corpus() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut lines: Vec<String> = ["examples/scenario.jsonl", "examples/tenants.jsonl"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(root.join(f))
                .unwrap()
                .lines()
                .filter(|l| l.starts_with('{'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let w = Workload::new(WorkloadSpec {
        requests: 300,
        ..WorkloadSpec::default()
    })
    .unwrap();
    lines.extend(
        w.setup_events()
            .into_iter()
            .chain(w.events())
            .map(|e| String::from_utf8(encode_input(&e)).unwrap()),
    );
    // The internal events in their JSON form (exported journals): other units' usage and trips.
    lines.extend([
        r#"{"schema":"zumik.usage.v1","tenant_id":"prj_acme","unit":2,"requests":3,"cost_micros":41250,"ts":"2026-11-24T10:00:09.000Z"}"#.to_owned(),
        r#"{"schema":"zumik.breaker_tripped.v1","cluster_id":"byc_01JDZQ4F8R6W0M2N5X7Y9A3B4C","unit":0,"failures":6,"samples":10,"ts":"2026-11-24T10:00:09.000Z"}"#.to_owned(),
    ]);
    lines
}

fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(Value::from(u64::MAX)),
        Just(Value::from(u32::MAX)),
        Just(Value::from(u32::MAX as u64 + 1)),
        Just(Value::from(i64::MIN)),
        Just(Value::from(-1)),
        Just(Value::from(0)),
        Just(Value::from(1e308)),
        Just(Value::from(2.5)),
        Just(Value::from(3.0)),
        Just(Value::from("")),
        Just(Value::from("\u{0}\u{7f}\u{200b}🦀 é")),
        Just(Value::from("x".repeat(10_000))),
        Just(Value::from("1999-12-31T23:59:59Z")),
        Just(Value::from("2000-01-01T00:00:00Z")),
        Just(Value::from("2099-12-31T23:59:59.999Z")),
        Just(Value::from("2100-01-01T00:00:00Z")),
        Just(Value::from("9999-12-31T23:59:59Z")),
        Just(Value::from("2026-11-24T10:00:00+14:00")),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(
            serde_json::from_str::<Value>(&format!("{}1{}", "[".repeat(100), "]".repeat(100)))
                .unwrap()
        ),
        any::<i64>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,40}".prop_map(Value::from),
    ]
}

/// A mutation of one corpus line.
#[derive(Debug, Clone)]
enum Mutation {
    Bytes(Vec<u8>),
    ByteOps(usize, Vec<(u8, usize, u8)>),
    Field(usize, usize, Value),
}

fn mutation(n: usize) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..512).prop_map(Mutation::Bytes),
        2 => (0..n, proptest::collection::vec((0u8..4, any::<usize>(), any::<u8>()), 1..8))
            .prop_map(|(i, ops)| Mutation::ByteOps(i, ops)),
        4 => (0..n, any::<usize>(), hostile_value()).prop_map(|(i, f, v)| Mutation::Field(i, f, v)),
    ]
}

fn apply_mutation(corpus: &[String], m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::Bytes(b) => b.clone(),
        Mutation::ByteOps(i, ops) => {
            let mut b = corpus[*i].as_bytes().to_vec();
            for (op, at, byte) in ops {
                let at = if b.is_empty() { 0 } else { at % b.len() };
                match op {
                    0 if !b.is_empty() => b[at] ^= byte | 1,
                    1 => b.insert(at, *byte),
                    2 if !b.is_empty() => {
                        b.remove(at);
                    }
                    _ => {
                        // splice: a piece of another line
                        let other = corpus[(*i + *byte as usize) % corpus.len()].as_bytes();
                        let from = at % other.len();
                        b.splice(
                            at..at,
                            other[from..(from + 16).min(other.len())].iter().copied(),
                        );
                    }
                }
            }
            b
        }
        Mutation::Field(i, f, v) => {
            let mut e: Value = serde_json::from_str(&corpus[*i]).unwrap();
            let obj = e.as_object_mut().unwrap();
            let keys: Vec<String> = obj.keys().filter(|k| *k != "schema").cloned().collect();
            let key = &keys[f % keys.len()];
            // Hit nested fields (qos.*) too.
            match obj.get_mut(key) {
                Some(Value::Object(inner)) if !inner.is_empty() => {
                    let k = inner
                        .keys()
                        .nth(f / keys.len() % inner.len())
                        .unwrap()
                        .clone();
                    inner.insert(k, v.clone());
                }
                _ => {
                    obj.insert(key.clone(), v.clone());
                }
            }
            serde_json::to_vec(&e).unwrap()
        }
    }
}

/// Runs the generators for `budget`; returns (executions, accepted events, journal records).
fn fuzz(budget: Duration, seed: u64) -> (u64, u64, u64) {
    let corpus = corpus();
    let cfg = Arc::new(RoutingConfig::default());
    let mut router = Router::new(cfg.clone(), Arc::new(PriceTable::embedded()));
    let mut out = Output::with_journal();
    let mut journal = Vec::new();
    for line in &corpus {
        router.apply(decode_input(line.as_bytes()).unwrap(), &mut out);
        journal.append(&mut out.journal);
        out.clear();
    }
    let router = std::cell::RefCell::new(router);
    let journal = std::cell::RefCell::new(journal);
    let (executions, accepted) = (std::cell::Cell::new(0u64), std::cell::Cell::new(0u64));
    let deadline = Instant::now() + budget;
    let mut round = 0u64;
    while Instant::now() < deadline {
        let mut bytes = seed.to_le_bytes().to_vec();
        bytes.extend(round.to_le_bytes());
        bytes.resize(32, 0);
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: 512,
                failure_persistence: None,
                ..Config::default()
            },
            rng,
        );
        let result = runner.run(&mutation(corpus.len()), |m| {
            let input = apply_mutation(&corpus, &m);
            executions.set(executions.get() + 1);
            let decoded = decode_input(&input);
            // The decoder's one-pass path (taken when `schema` comes first) agrees with serde's
            // tagged enum, the reference: same event, or the same error.
            match (&decoded, serde_json::from_slice::<InputEvent>(&input)) {
                (Ok(event), Ok(reference)) => prop_assert_eq!(event, &reference),
                (Ok(_), Err(reference)) => {
                    prop_assert!(false, "accepted what the tagged enum refuses: {reference}")
                }
                (Err(ours), Ok(_)) => prop_assert_eq!(ours.code(), "invalid"),
                (Err(ours), Err(reference)) => {
                    prop_assert_eq!(ours.to_string(), format!("not a valid event: {reference}"))
                }
            }
            if let Ok(event) = decoded {
                accepted.set(accepted.get() + 1);
                let again = decode_input(&encode_input(&event)).expect("re-encoded event decodes");
                prop_assert_eq!(&again, &event);
                let mut out = Output::with_journal();
                router.borrow_mut().apply(event, &mut out);
                journal.borrow_mut().append(&mut out.journal);
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("fuzz failure (seed {seed}, round {round}): {e}");
        }
        round += 1;
    }
    let journal = journal.into_inner();
    let mut auditor = Auditor::new(cfg);
    journal.iter().for_each(|e| auditor.apply(e));
    assert_eq!(
        auditor.stats.mismatches, 0,
        "the hostile run's journal re-folds to the same decisions"
    );
    (executions.get(), accepted.get(), journal.len() as u64)
}

#[test]
fn decoder_and_core_survive_hostile_input() {
    let secs: u64 = std::env::var("ZUMIK_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("ZUMIK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261124);
    let (executions, accepted, records) = fuzz(Duration::from_secs(secs), seed);
    println!(
        "fuzz: {executions} executions in {secs} s (seed {seed}): {accepted} accepted events applied, {records} journal records re-folded with 0 mismatches"
    );
    assert!(
        executions > 1000,
        "the fuzzer ran ({executions} executions)"
    );
    assert!(
        accepted > 100,
        "mutations kept some events valid ({accepted})"
    );
}
