//! The checked-in JSON Schemas (`schemas/`) are the ones generated from the Rust types, and the
//! example events and the decisions `zumik decide` writes validate against them.
//!
//! `ZUMIK_BLESS=1 cargo test --test schemas` rewrites the files after an intended change.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use zumik::core::{PriceTable, Router, RoutingConfig};
use zumik::events::schema;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator(name: &str) -> jsonschema::Validator {
    let text =
        std::fs::read_to_string(root().join("schemas").join(format!("{name}.json"))).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn checked_in_schemas_match_the_rust_types() {
    let bless = std::env::var_os("ZUMIK_BLESS").is_some();
    let mut drift = vec![];
    for (name, s) in schema::all() {
        let path = root().join("schemas").join(format!("{name}.json"));
        let want = schema::render(&s);
        if bless {
            std::fs::write(&path, &want).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
            drift.push(path.display().to_string());
        }
    }
    assert!(
        drift.is_empty(),
        "schemas drifted from the Rust types (ZUMIK_BLESS=1 to rewrite): {drift:?}"
    );
    let files = std::fs::read_dir(root().join("schemas")).unwrap().count();
    assert_eq!(
        files,
        schema::all().len(),
        "schemas/ holds files no type generates"
    );
}

fn example_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

#[test]
fn example_events_and_their_decisions_validate() {
    let decision = validator("zumik.decision.v1");
    for file in example_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let v: Value = serde_json::from_str(line).unwrap();
            let name = v["schema"].as_str().unwrap();
            let errs = errors(&validator(name), &v);
            assert!(errs.is_empty(), "{}:{}: {errs:?}", file.display(), i + 1);
        }
        let mut router = Router::new(
            Arc::new(RoutingConfig::default()),
            Arc::new(PriceTable::embedded()),
        );
        let mut out = Vec::new();
        zumik::cli::decide::decide_stream(
            text.as_bytes(),
            &mut router,
            &mut out,
            &mut std::io::sink(),
        )
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!out.is_empty());
        for line in out.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let errs = errors(&decision, &v);
            assert!(
                errs.is_empty(),
                "{}: decision {line}: {errs:?}",
                file.display()
            );
        }
    }
}

/// Bad payloads are refused by the schema and by the decoder alike.
#[test]
fn schema_and_decoder_agree_on_bad_requests() {
    let request = validator("zumik.request.v1");
    let good = r#"{"schema":"zumik.request.v1","request_id":"r1","tenant_id":"prj_a","model":"openai/gpt-4o","input_tokens":10,"cached_input_tokens":0,"max_output_tokens":5,"qos":{"class":"interactive"},"ts":"2026-11-24T10:00:00Z"}"#;
    let ok: Value = serde_json::from_str(good).unwrap();
    assert!(errors(&request, &ok).is_empty());
    assert!(zumik::events::codec::decode_input(good.as_bytes()).is_ok());
    let mutations: [(&str, Value); 5] = [
        ("input_tokens", Value::from(-1)),
        ("colour", Value::from("red")),
        ("request_id", Value::from("")),
        ("max_output_tokens", Value::from("5")),
        ("schema", Value::from("zumik.request.v2")),
    ];
    for (field, value) in mutations {
        let mut bad = ok.clone();
        bad[field] = value;
        let text = serde_json::to_string(&bad).unwrap();
        assert!(
            !errors(&request, &bad).is_empty(),
            "schema accepted {field}: {text}"
        );
        assert!(
            zumik::events::codec::decode_input(text.as_bytes()).is_err(),
            "decoder accepted {field}: {text}"
        );
    }
}
