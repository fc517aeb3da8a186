//! JSON codecs for the public topics: bytes → validated [`InputEvent`], [`DecisionV1`] → bytes;
//! and the broker's internal records on `zumik.usage` and `zumik.status` (bincode behind a
//! format-version byte).
//!
//! Decoding never panics on hostile bytes; every failure says which rule broke, so the runtime
//! can put it on the DLQ with that reason and `zumik decide` can print it with the line number.

use thiserror::Error;

use super::decision::DecisionV1;
use super::input::InputEvent;
use super::validate::Invalid;

/// Largest event accepted, in bytes. Bigger payloads are hostile or broken.
/// Gate reports (with their chart series) are the largest legitimate events.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// Why bytes are not a valid input event.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("event is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("not a valid event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid {schema} event: {invalid}")]
    Invalid {
        schema: &'static str,
        invalid: Invalid,
    },
    #[error("not a valid internal record: {0}")]
    Binary(String),
}

impl DecodeError {
    /// Short stable code for metrics and DLQ headers.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Json(_) | DecodeError::Binary(_) => "malformed",
            DecodeError::Invalid { .. } => "invalid",
        }
    }
}

/// Parses and validates one JSON input event.
pub fn decode_input(bytes: &[u8]) -> Result<InputEvent, DecodeError> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            max: MAX_EVENT_BYTES,
        });
    }
    // Producers that serialize the enum (ours, serde's) write `schema` first: those events parse
    // in one pass. Anything else, and any error, takes serde's tagged path, whose result and
    // error messages are the reference.
    let event = match schema_first::decode(bytes) {
        Some(event) => event,
        None => serde_json::from_slice(bytes)?,
    };
    event.validate().map_err(|invalid| DecodeError::Invalid {
        schema: event.schema_name(),
        invalid,
    })?;
    Ok(event)
}

/// The one-pass decoding of an event whose first field is `schema`.
///
/// serde parses an internally tagged enum (`#[serde(tag = "schema")]`) by buffering the whole
/// object into an intermediate tree, then deserializing the variant from that tree: a second
/// pass and an allocation per field. With the tag first, the variant's struct can read the rest
/// of the object straight from the parser instead. Every variant struct denies unknown fields,
/// so an object the tagged path would refuse (a second `schema`, say) fails here too and is
/// parsed again there, for its error message.
mod schema_first {
    use serde::de::value::MapAccessDeserializer;
    use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

    use crate::events::input::InputEvent;

    /// The event, if `bytes` is one JSON object whose first field is a known `schema` and the
    /// rest parses as that event; `None` otherwise (the caller falls back).
    pub(super) fn decode(bytes: &[u8]) -> Option<InputEvent> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let event = de.deserialize_map(EventVisitor).ok()?;
        de.end().ok()?;
        Some(event)
    }

    /// The `schema` values, as the enum's renames spell them ([`Tag::of`] keeps the two lists
    /// in step: a new event kind does not compile until it has its tag).
    #[derive(Debug, PartialEq, Eq, serde::Deserialize)]
    pub(super) enum Tag {
        #[serde(rename = "zumik.request.v1")]
        Request,
        #[serde(rename = "zumik.completion.v1")]
        Completion,
        #[serde(rename = "zumik.cluster_registered.v1")]
        ClusterRegistered,
        #[serde(rename = "zumik.cluster_deregistered.v1")]
        ClusterDeregistered,
        #[serde(rename = "zumik.cluster_heartbeat.v1")]
        ClusterHeartbeat,
        #[serde(rename = "zumik.provider_health.v1")]
        ProviderHealth,
        #[serde(rename = "zumik.tenant_policy.v1")]
        TenantPolicy,
        #[serde(rename = "zumik.lane_activated.v1")]
        LaneActivated,
        #[serde(rename = "zumik.lane_deactivated.v1")]
        LaneDeactivated,
        #[serde(rename = "zumik.lane_activate.v1")]
        LaneActivate,
        #[serde(rename = "zumik.gate_report.v1")]
        GateReport,
        #[serde(rename = "zumik.usage.v1")]
        Usage,
        #[serde(rename = "zumik.breaker_tripped.v1")]
        BreakerTripped,
    }

    /// Compiled with the tests, which check each tag against its event's schema name.
    #[cfg(test)]
    impl Tag {
        /// The tag of an event's kind.
        pub(super) fn of(event: &InputEvent) -> Tag {
            match event {
                InputEvent::Request(_) => Tag::Request,
                InputEvent::Completion(_) => Tag::Completion,
                InputEvent::ClusterRegistered(_) => Tag::ClusterRegistered,
                InputEvent::ClusterDeregistered(_) => Tag::ClusterDeregistered,
                InputEvent::ClusterHeartbeat(_) => Tag::ClusterHeartbeat,
                InputEvent::ProviderHealth(_) => Tag::ProviderHealth,
                InputEvent::TenantPolicy(_) => Tag::TenantPolicy,
                InputEvent::LaneActivated(_) => Tag::LaneActivated,
                InputEvent::LaneDeactivated(_) => Tag::LaneDeactivated,
                InputEvent::LaneActivate(_) => Tag::LaneActivate,
                InputEvent::GateReport(_) => Tag::GateReport,
                InputEvent::Usage(_) => Tag::Usage,
                InputEvent::BreakerTripped(_) => Tag::BreakerTripped,
            }
        }
    }

    /// Whether a key is `schema`.
    struct IsSchema(bool);

    impl<'de> Deserialize<'de> for IsSchema {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct KeyVisitor;
            impl Visitor<'_> for KeyVisitor {
                type Value = IsSchema;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a field name")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<IsSchema, E> {
                    Ok(IsSchema(v == "schema"))
                }
            }
            d.deserialize_str(KeyVisitor)
        }
    }

    struct EventVisitor;

    impl<'de> Visitor<'de> for EventVisitor {
        type Value = InputEvent;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an event object with `schema` first")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InputEvent, A::Error> {
            match map.next_key::<IsSchema>()? {
                Some(IsSchema(true)) => {}
                _ => return Err(de::Error::custom("`schema` is not the first field")),
            }
            let tag: Tag = map.next_value()?;
            // The variant's struct reads the remaining fields from the parser.
            let rest = MapAccessDeserializer::new(map);
            Ok(match tag {
                Tag::Request => InputEvent::Request(Deserialize::deserialize(rest)?),
                Tag::Completion => InputEvent::Completion(Deserialize::deserialize(rest)?),
                Tag::ClusterRegistered => {
                    InputEvent::ClusterRegistered(Deserialize::deserialize(rest)?)
                }
                Tag::ClusterDeregistered => {
                    InputEvent::ClusterDeregistered(Deserialize::deserialize(rest)?)
                }
                Tag::ClusterHeartbeat => {
                    InputEvent::ClusterHeartbeat(Deserialize::deserialize(rest)?)
                }
                Tag::ProviderHealth => InputEvent::ProviderHealth(Deserialize::deserialize(rest)?),
                Tag::TenantPolicy => InputEvent::TenantPolicy(Deserialize::deserialize(rest)?),
                Tag::LaneActivated => InputEvent::LaneActivated(Deserialize::deserialize(rest)?),
                Tag::LaneDeactivated => {
                    InputEvent::LaneDeactivated(Deserialize::deserialize(rest)?)
                }
                Tag::LaneActivate => InputEvent::LaneActivate(Deserialize::deserialize(rest)?),
                Tag::GateReport => InputEvent::GateReport(Deserialize::deserialize(rest)?),
                Tag::Usage => InputEvent::Usage(Deserialize::deserialize(rest)?),
                Tag::BreakerTripped => InputEvent::BreakerTripped(Deserialize::deserialize(rest)?),
            })
        }
    }
}

/// Format version of the broker's internal records on `zumik.usage` and `zumik.status`
/// (their first byte). Version 1 had usage without `unit_spent_micros`; it is not read: the
/// build that changed it changed the journal format too, so it starts on a new topic prefix
/// and never meets version 1 records.
pub const INTERNAL_VERSION: u8 = 2;

/// One internal record (`zumik.usage.v1`, `zumik.breaker_tripped.v1`): the version byte, then
/// the bincode of the event.
pub fn encode_internal(event: &InputEvent) -> Vec<u8> {
    debug_assert!(event.is_internal(), "{} is public", event.schema_name());
    let mut out = vec![INTERNAL_VERSION];
    // Writing plain data into a Vec cannot fail.
    bincode::encode_into_std_write(event, &mut out, bincode::config::standard())
        .expect("internal records encode");
    out
}

/// Largest internal record accepted, in bytes (they hold an id and a few integers). Also the
/// decoder's allocation limit, so a hostile length prefix cannot make it allocate more.
pub const MAX_INTERNAL_BYTES: usize = 1024;

/// Parses and validates one internal record; a public event there is refused.
pub fn decode_internal(bytes: &[u8]) -> Result<InputEvent, DecodeError> {
    if bytes.len() > MAX_INTERNAL_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            max: MAX_INTERNAL_BYTES,
        });
    }
    let Some((&version, body)) = bytes.split_first() else {
        return Err(DecodeError::Binary("empty record".into()));
    };
    if version != INTERNAL_VERSION {
        return Err(DecodeError::Binary(format!(
            "record format {version}, this build reads {INTERNAL_VERSION}"
        )));
    }
    let limited = bincode::config::standard().with_limit::<MAX_INTERNAL_BYTES>();
    let (event, used): (InputEvent, usize) = bincode::decode_from_slice(body, limited)
        .map_err(|e| DecodeError::Binary(e.to_string()))?;
    if used != body.len() {
        return Err(DecodeError::Binary(format!(
            "{} bytes after the record",
            body.len() - used
        )));
    }
    if !event.is_internal() {
        return Err(DecodeError::Binary(format!(
            "{} is a public event, not an internal record",
            event.schema_name()
        )));
    }
    event.validate().map_err(|invalid| DecodeError::Invalid {
        schema: event.schema_name(),
        invalid,
    })?;
    Ok(event)
}

/// Serializes one input event as a JSON object with its `schema` tag.
pub fn encode_input(event: &InputEvent) -> Vec<u8> {
    // Serializing plain data with string keys cannot fail.
    serde_json::to_vec(event).expect("input events serialize")
}

/// Serializes a decision as `{"schema":"zumik.decision.v1",…}` without cloning it.
/// Field order is the struct's, so equal decisions give equal bytes.
pub fn encode_decision(decision: &DecisionV1) -> Vec<u8> {
    let mut out = Vec::with_capacity(384);
    encode_decision_into(decision, &mut out);
    out
}

/// Like [`encode_decision`], appending to `out`.
pub fn encode_decision_into(decision: &DecisionV1, out: &mut Vec<u8>) {
    const HEAD: &[u8] = br#"{"schema":"zumik.decision.v1","#;
    let start = out.len();
    // A struct of strings, integers and enums always serializes.
    serde_json::to_writer(&mut *out, decision).expect("decisions serialize");
    // `to_writer` wrote `{"request_id":…}`: replace its `{` with the tagged head.
    out.splice(start..start + 1, HEAD.iter().copied());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_survive_a_json_round_trip_exactly() {
        // Found by tests/fuzz.rs: without serde_json's `float_roundtrip` this error rate came
        // back one ulp off after encode → decode.
        let line = r#"{"schema":"zumik.cluster_heartbeat.v1","cluster_id":"byc_x","status":"ready","max_inflight":1,"inflight":0,"error_rate":2.4141821376854447e-119,"ts":"2026-01-01T00:00:00Z"}"#;
        let e = decode_input(line.as_bytes()).unwrap();
        assert_eq!(decode_input(&encode_input(&e)).unwrap(), e);
    }
    use crate::events::decision::OutputEvent;
    use crate::events::{Mode, Reason, Timestamp};

    proptest::proptest! {
        /// Hostile bytes on the internal topics: never a panic nor a large allocation; what is
        /// accepted re-encodes to itself.
        #[test]
        fn internal_decoding_survives_any_mutation(
            flips in proptest::collection::vec((0usize..64, proptest::num::u8::ANY), 0..6),
            cut in 0usize..80,
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..8),
            trip in proptest::bool::ANY,
        ) {
            use crate::events::{BreakerTrippedV1, UsageV1};
            let event = if trip {
                InputEvent::BreakerTripped(BreakerTrippedV1 {
                    cluster_id: "byc_a".into(),
                    unit: 1,
                    failures: 6,
                    samples: 10,
                    ts: Timestamp(1_700_000_000_000),
                })
            } else {
                InputEvent::Usage(UsageV1 {
                    tenant_id: "prj_a".into(),
                    unit: 3,
                    requests: 2,
                    cost_micros: 1_500,
                    unit_spent_micros: Some(4_000),
                    ts: Timestamp(1_700_000_000_000),
                })
            };
            let mut bytes = encode_internal(&event);
            for (at, b) in flips {
                let n = bytes.len();
                bytes[at % n] = b;
            }
            bytes.truncate(cut.max(1));
            bytes.extend(tail);
            if let Ok(e) = decode_internal(&bytes) {
                proptest::prop_assert_eq!(decode_internal(&encode_internal(&e)).unwrap(), e);
            }
        }
    }

    #[test]
    fn internal_records_round_trip_and_bad_ones_say_why() {
        use crate::events::{BreakerTrippedV1, UsageV1};
        let u = UsageV1 {
            tenant_id: "prj_a".into(),
            unit: 3,
            requests: 2,
            cost_micros: 1_500,
            unit_spent_micros: Some(4_000),
            ts: Timestamp(1_700_000_000_000),
        };
        let trip = InputEvent::BreakerTripped(BreakerTrippedV1 {
            cluster_id: "byc_a".into(),
            unit: 1,
            failures: 6,
            samples: 10,
            ts: Timestamp(1_700_000_000_000),
        });
        for event in [InputEvent::Usage(u.clone()), trip] {
            let bytes = encode_internal(&event);
            assert_eq!(bytes[0], INTERNAL_VERSION);
            assert_eq!(decode_internal(&bytes).unwrap(), event);
            // The JSON form (exported journals) reads back the same.
            assert_eq!(decode_input(&encode_input(&event)).unwrap(), event);
        }

        let bytes = encode_internal(&InputEvent::Usage(u.clone()));
        // Version 1 (usage without its month total) is another format, as is any unknown one.
        for version in [1u8, 9] {
            let mut other = bytes.clone();
            other[0] = version;
            let err = decode_internal(&other).unwrap_err().to_string();
            assert!(err.contains(&format!("format {version}")), "{err}");
        }
        assert!(decode_internal(&[]).is_err());
        assert!(decode_internal(&bytes[..bytes.len() - 1]).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_internal(&trailing)
            .unwrap_err()
            .to_string()
            .contains("after"));
        let free = encode_internal(&InputEvent::Usage(UsageV1 {
            cost_micros: 0,
            ..u.clone()
        }));
        let e = decode_internal(&free).unwrap_err();
        assert_eq!(e.code(), "invalid");
        assert!(e.to_string().contains("cost_micros"), "{e}");
        // A month total below the record's own spend cannot include it.
        let short = encode_internal(&InputEvent::Usage(UsageV1 {
            unit_spent_micros: Some(1_000),
            ..u.clone()
        }));
        let e = decode_internal(&short).unwrap_err();
        assert!(e.to_string().contains("unit_spent_micros"), "{e}");
        // Without a total (a month the unit has left), the record still reads.
        let late = InputEvent::Usage(UsageV1 {
            unit_spent_micros: None,
            ..u.clone()
        });
        assert_eq!(decode_internal(&encode_internal(&late)).unwrap(), late);
        assert_eq!(decode_input(&encode_input(&late)).unwrap(), late);
        // A length prefix far beyond the record: refused, nothing allocated.
        let mut hostile = vec![INTERNAL_VERSION, 11]; // `Usage`, then its tenant id's length:
        hostile.extend([0xFC, 0xFF, 0xFF, 0xFF, 0x7F]); // u32 varint ≈ 2 GiB
        assert!(decode_internal(&hostile).is_err());
        assert_eq!(
            decode_internal(&vec![INTERNAL_VERSION; MAX_INTERNAL_BYTES + 1])
                .unwrap_err()
                .code(),
            "too_large"
        );
        // A public event smuggled into an internal topic.
        let mut public = vec![INTERNAL_VERSION];
        let hb = decode_input(br#"{"schema":"zumik.cluster_deregistered.v1","cluster_id":"byc_x","ts":"2026-01-01T00:00:00Z"}"#).unwrap();
        bincode::encode_into_std_write(&hb, &mut public, bincode::config::standard()).unwrap();
        assert!(decode_internal(&public)
            .unwrap_err()
            .to_string()
            .contains("public"));
    }

    /// Every kind of event but gate reports: a workload's, and the other kinds written out.
    /// (`tests/fuzz.rs` checks the same agreement on mutated inputs, through `decode_input`.)
    fn every_kind_of_event() -> Vec<InputEvent> {
        use crate::workload::{Workload, WorkloadSpec};
        let w = Workload::new(WorkloadSpec {
            requests: 200,
            ..WorkloadSpec::default()
        })
        .unwrap();
        let mut events = w.setup_events();
        events.extend(w.events());
        for line in [
            r#"{"schema":"zumik.cluster_deregistered.v1","cluster_id":"byc_x","ts":"2026-01-01T00:00:00Z"}"#,
            r#"{"schema":"zumik.provider_health.v1","provider":"openai","status":"down","ts":"2026-01-01T00:00:00Z"}"#,
            r#"{"schema":"zumik.lane_deactivated.v1","lane":"openai/gpt-4o","reason":"ops","ts":"2026-01-01T00:00:00Z"}"#,
            r#"{"schema":"zumik.lane_activate.v1","lane":"openai/gpt-4o","report_digest":"abc","ts":"2026-01-01T00:00:00Z"}"#,
            r#"{"schema":"zumik.usage.v1","tenant_id":"prj_a","unit":3,"requests":2,"cost_micros":1500,"ts":"2026-01-01T00:00:00Z"}"#,
            r#"{"schema":"zumik.breaker_tripped.v1","cluster_id":"byc_a","unit":1,"failures":6,"samples":10,"ts":"2026-01-01T00:00:00Z"}"#,
        ] {
            events.push(decode_input(line.as_bytes()).expect("valid"));
        }
        events
    }

    #[test]
    fn the_one_pass_decoding_gives_what_the_tagged_enum_gives() {
        let events = every_kind_of_event();
        let mut kinds: Vec<&str> = events.iter().map(|e| e.schema_name()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert!(kinds.len() >= 12, "kinds covered: {kinds:?}");
        for e in &events {
            // Each kind's tag reads its own schema name.
            let tag: schema_first::Tag =
                serde_json::from_value(serde_json::json!(e.schema_name())).unwrap();
            assert_eq!(tag, schema_first::Tag::of(e));
            let bytes = encode_input(e);
            let tagged: InputEvent = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(schema_first::decode(&bytes).as_ref(), Some(&tagged));
            assert_eq!(&tagged, e);
            // `schema` last: the tagged path reads it, with the same result.
            let mut object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&bytes).unwrap();
            let schema = object.remove("schema").unwrap();
            object.insert("schema".into(), schema);
            let moved = serde_json::to_vec(&object).unwrap();
            assert!(schema_first::decode(&moved).is_none());
            assert_eq!(&decode_input(&moved).unwrap(), e);
        }
    }

    #[test]
    fn objects_the_one_pass_decoding_refuses_get_the_tagged_enums_error() {
        let cases: [&[u8]; 6] = [
            br#"{"schema":"zumik.cluster_deregistered.v1","cluster_id":"byc_x","ts":"2026-01-01T00:00:00Z","schema":"zumik.cluster_deregistered.v1"}"#,
            br#"{"schema":"zumik.cluster_deregistered.v1","cluster_id":"byc_x","ts":"2026-01-01T00:00:00Z","extra":1}"#,
            br#"{"schema":"zumik.cluster_deregistered.v1","cluster_id":"byc_x"}"#,
            br#"{"schema":"zumik.cluster_deregistered.v1","cluster_id":"byc_x","ts":"2026-01-01T00:00:00Z"} trailing"#,
            br#"{"schema":"zumik.unknown.v1","cluster_id":"byc_x","ts":"2026-01-01T00:00:00Z"}"#,
            br#"{"schema":7,"cluster_id":"byc_x","ts":"2026-01-01T00:00:00Z"}"#,
        ];
        for bytes in cases {
            assert!(schema_first::decode(bytes).is_none());
            let tagged = serde_json::from_slice::<InputEvent>(bytes).unwrap_err();
            let ours = decode_input(bytes).unwrap_err();
            assert_eq!(ours.to_string(), format!("not a valid event: {tagged}"));
        }
    }

    #[test]
    fn decision_encoding_matches_the_tagged_enum() {
        let d = DecisionV1 {
            request_id: "r1".into(),
            tenant_id: "prj_a".into(),
            lane: "openai/gpt-4o".into(),
            profile: None,
            mode: Mode::Rejected,
            target: None,
            reason: Reason::UnknownTenant,
            considered: vec![],
            estimated_cost_micros: 0,
            decided_at: Timestamp(1_700_000_000_000),
            seq: 1,
            policy_version: 0,
            detail: None,
            source: None,
        };
        let ours = encode_decision(&d);
        let via_enum = serde_json::to_vec(&OutputEvent::Decision(d.clone())).unwrap();
        assert_eq!(
            String::from_utf8(ours.clone()).unwrap(),
            String::from_utf8(via_enum).unwrap()
        );
        let back: OutputEvent = serde_json::from_slice(&ours).unwrap();
        assert_eq!(back, OutputEvent::Decision(d));
    }

    #[test]
    fn decode_reports_the_broken_rule() {
        let e = decode_input(b"{not json").unwrap_err();
        assert_eq!(e.code(), "malformed");
        let e = decode_input(br#"{"schema":"zumik.nope.v1"}"#).unwrap_err();
        assert!(e.to_string().contains("zumik.nope.v1"), "{e}");
        let e = decode_input(
            br#"{"schema":"zumik.cluster_deregistered.v1","cluster_id":"","ts":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code(), "invalid");
        assert!(e.to_string().contains("cluster_id"), "{e}");
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        assert_eq!(decode_input(&big).unwrap_err().code(), "too_large");
    }

    #[test]
    fn negative_tokens_and_unknown_fields_are_refused() {
        let base = r#"{"schema":"zumik.request.v1","request_id":"r","tenant_id":"t","model":"openai/gpt-4o","input_tokens":IN,"cached_input_tokens":0,"max_output_tokens":5,"qos":{"class":"interactive"},"ts":"2026-01-01T00:00:00Z"EXTRA}"#;
        assert!(decode_input(base.replace("IN", "10").replace("EXTRA", "").as_bytes()).is_ok());
        assert!(decode_input(base.replace("IN", "-1").replace("EXTRA", "").as_bytes()).is_err());
        let e = decode_input(
            base.replace("IN", "1")
                .replace("EXTRA", r#","colour":1"#)
                .as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
