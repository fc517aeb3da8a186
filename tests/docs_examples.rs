//! The JSON examples in `docs/events.md` are real events: every ```json block decodes through the
//! same code the broker uses (`decode_input` for inputs, `OutputEvent` for decisions) and
//! validates against the checked-in JSON Schema its `schema` tag names. Every public schema has
//! at least one example, so the documentation cannot drift from the contract.
//!
//! Counter-examples (events that must be refused) live in ```text blocks and are not checked here.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;
use zumik::events::codec::decode_input;
use zumik::events::{schema, OutputEvent};

const DOC: &str = "docs/events.md";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One fenced ```json block: the line its opening fence is on (1-based) and its text.
struct Block {
    line: usize,
    text: String,
}

/// Every ```json block of `doc`. Panics on a block that is never closed, so a broken fence
/// cannot silently swallow the rest of the document.
fn json_blocks(doc: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    let mut other_fence = false;
    for (idx, line) in doc.lines().enumerate() {
        let fence = line.trim_start();
        match &mut open {
            Some(block) => {
                if fence.trim_end() == "```" {
                    blocks.push(open.take().expect("a block is open"));
                } else {
                    block.text.push_str(line);
                    block.text.push('\n');
                }
            }
            // Only a bare ``` closes a block; "```json" inside a text block is text.
            None if other_fence => other_fence = fence.trim_end() != "```",
            None => {
                if let Some(info) = fence.strip_prefix("```") {
                    if info.trim() == "json" {
                        open = Some(Block {
                            line: idx + 1,
                            text: String::new(),
                        });
                    } else {
                        other_fence = true;
                    }
                }
            }
        }
    }
    if let Some(block) = open {
        panic!("{DOC}:{}: ```json block is never closed", block.line);
    }
    assert!(!other_fence, "{DOC}: a ``` block is never closed");
    blocks
}

fn validator(name: &str) -> jsonschema::Validator {
    let path = root().join("schemas").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Checks one block; returns its `schema` tag or a description of what is wrong.
fn check(block: &Block) -> Result<String, String> {
    let value: Value = serde_json::from_str(&block.text).map_err(|e| format!("not JSON: {e}"))?;
    let tag = value
        .get("schema")
        .and_then(Value::as_str)
        .ok_or("no string `schema` field")?
        .to_owned();
    if tag.starts_with("zumik.decision.") {
        serde_json::from_str::<OutputEvent>(&block.text)
            .map_err(|e| format!("not a decision: {e}"))?;
    } else {
        decode_input(block.text.as_bytes()).map_err(|e| format!("refused by decode_input: {e}"))?;
    }
    let errors: Vec<String> = validator(&tag)
        .iter_errors(&value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    if !errors.is_empty() {
        return Err(format!("does not match schemas/{tag}.json: {errors:?}"));
    }
    Ok(tag)
}

#[test]
fn every_json_example_in_the_event_docs_is_a_valid_event() {
    let doc = std::fs::read_to_string(root().join(DOC)).unwrap_or_else(|e| panic!("{DOC}: {e}"));
    let blocks = json_blocks(&doc);
    assert!(
        blocks.len() >= 10,
        "{DOC} has {} ```json blocks, expected at least 10",
        blocks.len()
    );

    let mut seen = BTreeSet::new();
    let mut failures = Vec::new();
    for block in &blocks {
        match check(block) {
            Ok(tag) => {
                seen.insert(tag);
            }
            Err(why) => failures.push(format!("{DOC}:{}: {why}", block.line)),
        }
    }
    assert!(
        failures.is_empty(),
        "broken examples:\n{}",
        failures.join("\n")
    );

    let missing: Vec<&str> = schema::all()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| !seen.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "{DOC} has no ```json example of {missing:?}"
    );
}

#[test]
fn the_block_extractor_finds_blocks_and_refuses_broken_ones() {
    let doc =
        "text\n```json\n{\"a\":1}\n```\n```text\n```json inside text\n```\n  ```json\n[]\n  ```\n";
    let blocks = json_blocks(doc);
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        (blocks[0].line, blocks[0].text.as_str()),
        (2, "{\"a\":1}\n")
    );
    assert_eq!(blocks[1].text, "[]\n");
    assert!(check(&blocks[0]).unwrap_err().contains("schema"));

    let broken = Block {
        line: 1,
        text: r#"{"schema":"zumik.cluster_deregistered.v1","cluster_id":"byc a","ts":"2026-11-24T10:00:00Z"}"#.into(),
    };
    assert!(check(&broken).unwrap_err().contains("cluster_id"));
    let unknown_field = Block {
        line: 1,
        text: r#"{"schema":"zumik.cluster_deregistered.v1","cluster_id":"byc_a","ts":"2026-11-24T10:00:00Z","x":1}"#
            .into(),
    };
    assert!(check(&unknown_field).is_err());

    let unclosed = std::panic::catch_unwind(|| json_blocks("```json\n{}\n"));
    assert!(unclosed.is_err(), "an unclosed block must fail the test");
}
