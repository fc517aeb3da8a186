//! JSON Schemas of the public events, generated from the Rust types with schemars.
//!
//! `schemas/*.json` in the repository are these, checked in; `tests/schemas.rs` fails when they
//! drift (`ZUMIK_BLESS=1 cargo test --test schemas` rewrites them, `zumik schema --out DIR` too).

use schemars::{JsonSchema, Schema};
use serde_json::Value;

use super::decision::DecisionV1;
use super::input::*;
use super::report::GateReportV1;

fn tagged<T: JsonSchema>(name: &str, title: &str) -> Schema {
    let mut schema = schemars::schema_for!(T);
    let obj = schema.as_object_mut().expect("struct schemas are objects");
    obj.insert(
        "$id".into(),
        Value::String(format!("https://zumik.dev/schemas/{name}.json")),
    );
    obj.insert("title".into(), Value::String(title.into()));
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        let mut with_tag = serde_json::Map::new();
        with_tag.insert(
            "schema".into(),
            serde_json::json!({ "const": name, "description": "Type and version of this payload." }),
        );
        with_tag.extend(std::mem::take(props));
        *props = with_tag;
    }
    if let Some(Value::Array(required)) = obj.get_mut("required") {
        required.insert(0, Value::String("schema".into()));
    }
    schema
}

/// Every public schema as `(schema name, JSON Schema)`, in a stable order.
pub fn all() -> Vec<(&'static str, Schema)> {
    vec![
        (
            "zumik.request.v1",
            tagged::<RequestV1>("zumik.request.v1", "Request"),
        ),
        (
            "zumik.completion.v1",
            tagged::<CompletionV1>("zumik.completion.v1", "Completion"),
        ),
        (
            "zumik.cluster_registered.v1",
            tagged::<ClusterRegisteredV1>("zumik.cluster_registered.v1", "ClusterRegistered"),
        ),
        (
            "zumik.cluster_deregistered.v1",
            tagged::<ClusterDeregisteredV1>("zumik.cluster_deregistered.v1", "ClusterDeregistered"),
        ),
        (
            "zumik.cluster_heartbeat.v1",
            tagged::<ClusterHeartbeatV1>("zumik.cluster_heartbeat.v1", "ClusterHeartbeat"),
        ),
        (
            "zumik.provider_health.v1",
            tagged::<ProviderHealthV1>("zumik.provider_health.v1", "ProviderHealth"),
        ),
        (
            "zumik.tenant_policy.v1",
            tagged::<TenantPolicyV1>("zumik.tenant_policy.v1", "TenantPolicy"),
        ),
        (
            "zumik.lane_activated.v1",
            tagged::<LaneActivatedV1>("zumik.lane_activated.v1", "LaneActivated"),
        ),
        (
            "zumik.lane_deactivated.v1",
            tagged::<LaneDeactivatedV1>("zumik.lane_deactivated.v1", "LaneDeactivated"),
        ),
        (
            "zumik.lane_activate.v1",
            tagged::<LaneActivateV1>("zumik.lane_activate.v1", "LaneActivate"),
        ),
        (
            "zumik.gate_report.v1",
            tagged::<GateReportV1>("zumik.gate_report.v1", "GateReport"),
        ),
        (
            "zumik.decision.v1",
            tagged::<DecisionV1>("zumik.decision.v1", "Decision"),
        ),
        (
            "zumik.usage.v1",
            tagged::<UsageV1>("zumik.usage.v1", "Usage"),
        ),
        (
            "zumik.breaker_tripped.v1",
            tagged::<BreakerTrippedV1>("zumik.breaker_tripped.v1", "BreakerTripped"),
        ),
    ]
}

/// The file text for a schema: pretty JSON with a trailing newline.
pub fn render(schema: &Schema) -> String {
    let mut s = serde_json::to_string_pretty(schema).expect("schemas serialize");
    s.push('\n');
    s
}
