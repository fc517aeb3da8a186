//! `zumik.gate_report.v1`: the evidence a lane activation names, and its SHA-256 digest.
//!
//! A gate report is a public document (JSON) produced by `zumik gate`. Its `digest` is
//! `sha256:<hex>` over the canonical JSON of the report without the `digest` field: object keys
//! sorted, no whitespace, numbers as serde_json prints them. Anyone can recompute it; the core
//! does so before it accepts an activation that names the report.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::time::Timestamp;

/// The time window of history a report replayed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// `zumik.gate_report.v1` — the verdict of a replay gate for one lane and one candidate cluster.
/// Storing it (topic `zumik.control`, key = lane) lets a later `zumik.lane_activate.v1` name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateReportV1 {
    /// The lane the report is about.
    #[schemars(length(min = 3, max = 256))]
    pub lane: String,
    /// Blended cost ≤ baseline × (1 − margin) and candidate reliability ≥ baseline.
    pub passed: bool,
    /// History replayed; `window.end` is the report's age reference for staleness.
    pub window: Window,
    /// What was replayed (source, counts, input digest).
    pub inputs: Value,
    /// The candidate cluster and gate settings.
    pub config: Value,
    /// Costs, overflow share, reliability, TTFT, sweep, break-even.
    pub results: Value,
    /// Time series for the charts.
    #[serde(default)]
    pub series: Value,
    /// `sha256:<hex>` over the canonical JSON of everything else.
    #[schemars(length(min = 1, max = 128))]
    pub digest: String,
}

// In binary (journal, snapshots) a report travels as its JSON text: its free-form fields are
// JSON values, which a non-self-describing format cannot carry.
impl bincode::Encode for GateReportV1 {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        let text = serde_json::to_string(self)
            .map_err(|e| bincode::error::EncodeError::OtherString(e.to_string()))?;
        text.encode(encoder)
    }
}

impl<C> bincode::Decode<C> for GateReportV1 {
    fn decode<D: bincode::de::Decoder<Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let text = String::decode(decoder)?;
        serde_json::from_str(&text)
            .map_err(|e| bincode::error::DecodeError::OtherString(e.to_string()))
    }
}

bincode::impl_borrow_decode!(GateReportV1);

/// `sha256:<hex>` of the canonical JSON of `report` without its `digest` field.
pub fn report_digest(report: &Value) -> String {
    let mut v = report.clone();
    if let Value::Object(map) = &mut v {
        map.remove("digest");
    }
    // serde_json's Map is ordered by key (no `preserve_order` feature), so this is canonical.
    let bytes = serde_json::to_vec(&v).expect("JSON values serialize");
    let hash = Sha256::digest(&bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl GateReportV1 {
    /// The report as the tagged JSON document it is published as.
    pub fn to_value(&self) -> Value {
        let mut v = serde_json::to_value(self).expect("reports serialize");
        if let Value::Object(map) = &mut v {
            map.insert(
                "schema".into(),
                Value::String("zumik.gate_report.v1".into()),
            );
        }
        v
    }

    /// Recomputes the digest of this report's content.
    pub fn computed_digest(&self) -> String {
        report_digest(&self.to_value())
    }

    /// Sets `digest` to the digest of the current content.
    pub fn seal(&mut self) {
        self.digest = self.computed_digest();
    }

    /// True when `digest` matches the content (the report was not altered after sealing).
    pub fn digest_verifies(&self) -> bool {
        self.digest == self.computed_digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> GateReportV1 {
        GateReportV1 {
            lane: "openai/gpt-4o".into(),
            passed: true,
            window: Window {
                start: Timestamp(1_700_000_000_000),
                end: Timestamp(1_700_003_600_000),
            },
            inputs: json!({"requests": 10}),
            config: json!({"gpus": 8}),
            results: json!({"baseline_micros": 100, "blended_micros": 80}),
            series: json!({}),
            digest: String::new(),
        }
    }

    #[test]
    fn sealed_reports_verify_and_tampering_is_detected() {
        let mut r = report();
        r.seal();
        assert!(r.digest.starts_with("sha256:") && r.digest.len() == 71);
        assert!(r.digest_verifies());
        let mut t = r.clone();
        t.results = json!({"baseline_micros": 100, "blended_micros": 79});
        assert!(!t.digest_verifies());
    }

    #[test]
    fn digest_is_independent_of_key_order_in_the_input_text() {
        let mut r = report();
        r.seal();
        let text = serde_json::to_string(&r.to_value()).unwrap();
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(report_digest(&reparsed), r.digest);
    }
}
