//! Event time: UTC milliseconds since the Unix epoch, carried on the wire as RFC 3339.
//!
//! Owns parsing and canonical formatting of `ts` / `decided_at`. It must never read the wall
//! clock: every instant in Zumik comes from an event (DESIGN §6).

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Earliest accepted event time: 2000-01-01T00:00:00Z. Older stamps are almost certainly bugs
/// (seconds sent as milliseconds, zeroed fields) and would poison event-time windows.
pub const MIN_EVENT_MS: i64 = 946_684_800_000;
/// Latest accepted event time: 2100-01-01T00:00:00Z.
pub const MAX_EVENT_MS: i64 = 4_102_444_800_000;

/// An instant in event time (UTC, ms). Serialized as RFC 3339 with millisecond precision and a
/// `Z` suffix, so the same instant always prints the same bytes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    bincode::Encode,
    bincode::Decode,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Parses RFC 3339 (any offset; normalised to UTC).
    pub fn parse(s: &str) -> Result<Self, String> {
        let dt =
            DateTime::parse_from_rfc3339(s).map_err(|e| format!("not an RFC 3339 time ({e})"))?;
        let ms = dt.timestamp_millis();
        if !(MIN_EVENT_MS..MAX_EVENT_MS).contains(&ms) {
            return Err("time outside 2000-01-01..2100-01-01".to_owned());
        }
        Ok(Timestamp(ms))
    }

    /// Canonical RFC 3339 form, e.g. `2026-11-24T10:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Millis, true),
            // Unreachable for parsed values (range-checked); kept total for hand-built ones.
            None => format!("@{}ms", self.0),
        }
    }

    /// The calendar month of this instant as `yyyymm` (UTC), used for monthly budgets.
    pub fn year_month(self) -> u32 {
        use chrono::Datelike;
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(dt) => dt.year() as u32 * 100 + dt.month(),
            None => 0,
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_rfc3339())
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = Cow::<'de, str>::deserialize(d)?;
            Timestamp::parse(&s).map_err(de::Error::custom)
        } else {
            Ok(Timestamp(i64::deserialize(d)?))
        }
    }
}

impl JsonSchema for Timestamp {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 UTC instant (event time), between 2000 and 2100."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_prints_canonical_utc() {
        let t = Timestamp::parse("2026-11-24T12:00:00.5+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-24T11:00:00.500Z");
        assert_eq!(t.year_month(), 202611);
    }

    #[test]
    fn rejects_garbage_and_out_of_range() {
        assert!(Timestamp::parse("yesterday").is_err());
        assert!(Timestamp::parse("1970-01-01T00:00:01Z").is_err());
        assert!(Timestamp::parse("2200-01-01T00:00:00Z").is_err());
    }
}
