//! Request history for the gate: Azure trace CSVs and JSONL exports of Zumik events, merged into
//! one list of request records in arrival order.
//!
//! Takes bytes and a display name per file (the CLI reads the files); never touches the file
//! system or the clock. A bad row is an error naming the file and line: evidence for a gate must
//! not silently drop history.
//!
//! Formats:
//! - **Azure CSV** (`TIMESTAMP,ContextTokens,GeneratedTokens`, the Azure LLM inference traces):
//!   timestamps like `2023-11-16 18:17:03.9799600` are read as UTC and truncated to the
//!   millisecond; every row belongs to the lane named for the file.
//! - **JSONL** (one Zumik event per line): `zumik.request.v1` events are requests of their
//!   `model` lane; a `zumik.completion.v1` with the same `request_id` supplies the actual token
//!   counts, and every completion's outcome counts towards the observed reliability of the side
//!   that served it. Other event types are counted and ignored.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;
use sha2::{Digest, Sha256};

use crate::events::codec::decode_input;
use crate::events::time::{MAX_EVENT_MS, MIN_EVENT_MS};
use crate::events::validate::check_model_path;
use crate::events::{InlineId, InputEvent, Outcome, Profile, Timestamp};

/// One request of the history, in the units the gate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRecord {
    /// Arrival, event time (UTC ms).
    pub ts_ms: i64,
    /// Index into [`Trace::lanes`].
    pub lane: u32,
    pub input_tokens: u32,
    pub cached_input_tokens: u32,
    /// Actual output tokens (CSV, or the matching completion); else the request's
    /// `max_output_tokens` (an upper bound).
    pub output_tokens: u32,
    /// Index into [`Trace::sources`] and 1-based line, for error messages and tie-breaks.
    pub source: u32,
    pub line: u32,
}

/// How a trace file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceFormat {
    AzureCsv,
    Jsonl,
}

/// One input file as the report records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    /// File name as given (the CLI passes the last path component, so reports do not depend on
    /// where the checkout lives).
    pub name: String,
    pub format: TraceFormat,
    /// The lane a CSV's rows belong to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    pub bytes: u64,
    /// `sha256:<hex>` of the file's bytes.
    pub sha256: String,
    pub requests: u64,
    pub completions: u64,
    /// JSONL events that are neither requests nor completions (ignored).
    pub other_events: u64,
}

/// Outcomes of completions seen for one lane, by the side that served them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Observed {
    pub managed_ok: u64,
    pub managed_failed: u64,
    pub byoc_ok: u64,
    pub byoc_failed: u64,
    /// `ttft_ms` of completed managed requests, as reported.
    #[serde(skip)]
    pub managed_ttft_ms: Vec<u64>,
}

/// The merged history.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Lane names, in order of first appearance.
    pub lanes: Vec<String>,
    /// Sorted by `(ts_ms, source, line)`: arrival order, file order on ties.
    pub requests: Vec<RequestRecord>,
    /// Per lane, same index as `lanes`.
    pub observed: Vec<Observed>,
    pub sources: Vec<Source>,
    /// JSONL requests whose output tokens came from a completion / from `max_output_tokens`.
    pub output_from_completions: u64,
    pub output_from_max: u64,
}

impl Trace {
    /// Index of a lane by name.
    pub fn lane_index(&self, lane: &str) -> Option<u32> {
        self.lanes.iter().position(|l| l == lane).map(|i| i as u32)
    }

    /// The requests of one lane, in arrival order.
    pub fn lane_requests(&self, lane: u32) -> impl Iterator<Item = &RequestRecord> + '_ {
        self.requests.iter().filter(move |r| r.lane == lane)
    }

    /// First and last arrival over all requests.
    pub fn span(&self) -> Option<(i64, i64)> {
        Some((self.requests.first()?.ts_ms, self.requests.last()?.ts_ms))
    }
}

/// Why history could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{file}:{line}: {message}")]
    Row {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("no requests in the given traces")]
    Empty,
}

fn row_err(file: &str, line: usize, message: impl Into<String>) -> TraceError {
    TraceError::Row {
        file: file.to_owned(),
        line,
        message: message.into(),
    }
}

/// A completion waiting to be matched with its request.
struct PendingCompletion {
    request_id: InlineId,
    lane: u32,
    outcome: Outcome,
    byoc: bool,
    input_tokens: u32,
    cached_input_tokens: u32,
    output_tokens: u32,
    ttft_ms: Option<u32>,
}

/// Collects files, then [`TraceBuilder::finish`] merges them.
#[derive(Default)]
pub struct TraceBuilder {
    trace: Trace,
    lane_ids: BTreeMap<String, u32>,
    /// JSONL request id → index in `trace.requests` (before sorting), and where it was seen.
    request_ids: HashMap<String, (usize, String, usize)>,
    completions: Vec<PendingCompletion>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Parses an Azure trace timestamp (`2023-11-16 18:17:03.9799600`, UTC) or an RFC 3339 time
/// into event-time milliseconds (sub-millisecond digits are truncated).
pub fn parse_trace_time(s: &str) -> Result<i64, String> {
    let ms = match NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        Ok(t) => t.and_utc().timestamp_millis(),
        Err(_) => {
            Timestamp::parse(s)
                .map_err(|_| {
                    format!("bad timestamp {s:?} (expected e.g. 2023-11-16 18:17:03.9799600)")
                })?
                .0
        }
    };
    if !(MIN_EVENT_MS..MAX_EVENT_MS).contains(&ms) {
        return Err(format!("timestamp {s:?} is outside 2000..2100"));
    }
    Ok(ms)
}

/// The format of a file: by extension (`.csv` / `.jsonl`, `.ndjson`, `.json`) or, failing that,
/// by its first non-blank character (`{` = JSONL).
pub fn is_jsonl(name: &str, bytes: &[u8]) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".csv") {
        false
    } else if [".jsonl", ".ndjson", ".json"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        true
    } else {
        bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
    }
}

impl TraceBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn lane_id(&mut self, lane: &str) -> u32 {
        if let Some(&id) = self.lane_ids.get(lane) {
            return id;
        }
        let id = self.trace.lanes.len() as u32;
        self.trace.lanes.push(lane.to_owned());
        self.trace.observed.push(Observed::default());
        self.lane_ids.insert(lane.to_owned(), id);
        id
    }

    fn add_source(
        &mut self,
        name: &str,
        format: TraceFormat,
        lane: Option<&str>,
        bytes: &[u8],
    ) -> u32 {
        self.trace.sources.push(Source {
            name: name.to_owned(),
            format,
            lane: lane.map(str::to_owned),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
            requests: 0,
            completions: 0,
            other_events: 0,
        });
        (self.trace.sources.len() - 1) as u32
    }

    /// Adds a file in the format [`is_jsonl`] picks. CSV files need a lane.
    pub fn add_file(
        &mut self,
        name: &str,
        bytes: &[u8],
        lane: Option<&str>,
    ) -> Result<(), TraceError> {
        if is_jsonl(name, bytes) {
            self.add_jsonl(name, bytes)
        } else {
            let lane = lane.ok_or_else(|| TraceError::File {
                file: name.to_owned(),
                message: "a CSV trace needs a lane name (--lane provider/model)".to_owned(),
            })?;
            self.add_azure_csv(name, bytes, lane)
        }
    }

    /// Adds an Azure LLM inference trace CSV whose rows all belong to `lane`.
    pub fn add_azure_csv(
        &mut self,
        name: &str,
        bytes: &[u8],
        lane: &str,
    ) -> Result<(), TraceError> {
        check_model_path("lane", lane).map_err(|e| TraceError::File {
            file: name.to_owned(),
            message: format!("lane {lane:?}: {}", e.reason),
        })?;
        let text = std::str::from_utf8(bytes).map_err(|e| TraceError::File {
            file: name.to_owned(),
            message: format!("not UTF-8 text: {e}"),
        })?;
        let source = self.add_source(name, TraceFormat::AzureCsv, Some(lane), bytes);
        let lane_id = self.lane_id(lane);
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return Err(TraceError::File {
                file: name.to_owned(),
                message: "empty file (no header)".to_owned(),
            });
        };
        let cols: Vec<String> = header
            .split(',')
            .map(|c| c.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
            .collect();
        let col = |want: &str| cols.iter().position(|c| c == want);
        let (Some(c_ts), Some(c_in), Some(c_out)) = (
            col("timestamp"),
            col("contexttokens"),
            col("generatedtokens"),
        ) else {
            return Err(row_err(
                name,
                1,
                format!("header {header:?} lacks TIMESTAMP, ContextTokens, GeneratedTokens"),
            ));
        };
        let mut count = 0u64;
        for (idx, line) in lines {
            let line_no = idx + 1;
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != cols.len() {
                return Err(row_err(
                    name,
                    line_no,
                    format!("{} fields, the header has {}", fields.len(), cols.len()),
                ));
            }
            let ts_ms = parse_trace_time(fields[c_ts]).map_err(|m| row_err(name, line_no, m))?;
            let tokens = |i: usize, what: &str| {
                fields[i].parse::<u32>().map_err(|_| {
                    row_err(
                        name,
                        line_no,
                        format!("{what} {:?} is not a token count", fields[i]),
                    )
                })
            };
            let input_tokens = tokens(c_in, "ContextTokens")?;
            let output_tokens = tokens(c_out, "GeneratedTokens")?;
            self.trace.requests.push(RequestRecord {
                ts_ms,
                lane: lane_id,
                input_tokens,
                cached_input_tokens: 0,
                output_tokens,
                source,
                line: line_no as u32,
            });
            count += 1;
        }
        self.trace.sources[source as usize].requests = count;
        Ok(())
    }

    /// Adds a JSONL file of Zumik events (requests and completions; others are ignored).
    pub fn add_jsonl(&mut self, name: &str, bytes: &[u8]) -> Result<(), TraceError> {
        let source = self.add_source(name, TraceFormat::Jsonl, None, bytes);
        let (mut requests, mut completions, mut other) = (0u64, 0u64, 0u64);
        for (idx, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let line_no = idx + 1;
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let event = decode_input(text).map_err(|e| row_err(name, line_no, e.to_string()))?;
            match event {
                InputEvent::Request(r) => {
                    let lane = self.lane_id(&r.model);
                    let at = self.trace.requests.len();
                    if let Some((_, file, line)) = self
                        .request_ids
                        .insert(r.request_id.to_string(), (at, name.to_owned(), line_no))
                    {
                        return Err(row_err(
                            name,
                            line_no,
                            format!(
                                "duplicate request_id {:?} (first at {file}:{line})",
                                r.request_id
                            ),
                        ));
                    }
                    self.trace.requests.push(RequestRecord {
                        ts_ms: r.ts.millis(),
                        lane,
                        input_tokens: r.input_tokens,
                        cached_input_tokens: r.cached_input_tokens.min(r.input_tokens),
                        output_tokens: r.max_output_tokens,
                        source,
                        line: line_no as u32,
                    });
                    requests += 1;
                }
                InputEvent::Completion(c) => {
                    let lane = self.lane_id(&c.model);
                    let byoc = matches!(c.profile, Some(Profile::ByocDynamo | Profile::ByocEpp));
                    self.completions.push(PendingCompletion {
                        request_id: c.request_id,
                        lane,
                        outcome: c.outcome,
                        byoc,
                        input_tokens: c.input_tokens,
                        cached_input_tokens: c.cached_input_tokens.min(c.input_tokens),
                        output_tokens: c.output_tokens,
                        ttft_ms: c.ttft_ms,
                    });
                    completions += 1;
                }
                _ => other += 1,
            }
        }
        let s = &mut self.trace.sources[source as usize];
        s.requests = requests;
        s.completions = completions;
        s.other_events = other;
        Ok(())
    }

    /// Matches completions to requests and sorts everything into arrival order.
    pub fn finish(mut self) -> Result<Trace, TraceError> {
        let mut matched = vec![false; self.trace.requests.len()];
        for c in std::mem::take(&mut self.completions) {
            let obs = &mut self.trace.observed[c.lane as usize];
            // Cancelled requests say nothing about the server: the caller gave up.
            let failed = match c.outcome {
                Outcome::Completed => false,
                Outcome::Failed | Outcome::Expired => true,
                Outcome::Cancelled => continue,
            };
            match (c.byoc, failed) {
                (true, false) => obs.byoc_ok += 1,
                (true, true) => obs.byoc_failed += 1,
                (false, false) => obs.managed_ok += 1,
                (false, true) => obs.managed_failed += 1,
            }
            if !c.byoc && !failed {
                if let Some(t) = c.ttft_ms {
                    obs.managed_ttft_ms.push(t as u64);
                }
            }
            if let (Some(&(at, _, _)), false) =
                (self.request_ids.get(c.request_id.as_str()), failed)
            {
                let r = &mut self.trace.requests[at];
                r.input_tokens = c.input_tokens;
                r.cached_input_tokens = c.cached_input_tokens;
                r.output_tokens = c.output_tokens;
                matched[at] = true;
            }
        }
        let jsonl =
            |r: &RequestRecord| self.trace.sources[r.source as usize].format == TraceFormat::Jsonl;
        for (r, m) in self.trace.requests.iter().zip(&matched) {
            if jsonl(r) {
                if *m {
                    self.trace.output_from_completions += 1;
                } else {
                    self.trace.output_from_max += 1;
                }
            }
        }
        if self.trace.requests.is_empty() {
            return Err(TraceError::Empty);
        }
        self.trace
            .requests
            .sort_by_key(|r| (r.ts_ms, r.source, r.line));
        for o in &mut self.trace.observed {
            o.managed_ttft_ms.sort_unstable();
        }
        Ok(self.trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
        2023-11-16 18:17:03.9799600,4808,10\n\
        2023-11-16 18:17:03.0000000,100,2\n";

    #[test]
    fn azure_csv_rows_become_utc_millisecond_records_in_arrival_order() {
        let mut b = TraceBuilder::new();
        b.add_file("a.csv", CSV.as_bytes(), Some("anthropic/claude-sonnet-4-5"))
            .unwrap();
        let t = b.finish().unwrap();
        assert_eq!(t.lanes, vec!["anthropic/claude-sonnet-4-5"]);
        assert_eq!(t.requests.len(), 2);
        // 2023-11-16T18:17:03Z = 1700158623 s; the 0.9799600 s fraction is truncated to 979 ms.
        assert_eq!(t.requests[0].ts_ms, 1_700_158_623_000);
        assert_eq!(t.requests[1].ts_ms, 1_700_158_623_979);
        assert_eq!(
            (
                t.requests[1].input_tokens,
                t.requests[1].output_tokens,
                t.requests[1].line
            ),
            (4808, 10, 2)
        );
        assert_eq!(t.sources[0].requests, 2);
        assert!(t.sources[0].sha256.starts_with("sha256:"));
    }

    #[test]
    fn several_csvs_mix_as_several_lanes() {
        let mut b = TraceBuilder::new();
        b.add_azure_csv("a.csv", CSV.as_bytes(), "x/a").unwrap();
        b.add_azure_csv(
            "b.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.5,1,1\n".as_bytes(),
            "y/b",
        )
        .unwrap();
        let t = b.finish().unwrap();
        let lanes: Vec<u32> = t.requests.iter().map(|r| r.lane).collect();
        assert_eq!(lanes, vec![0, 1, 0]);
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let bad = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,1,1\n\n2023-11-16 18:17:04,x,1\n";
        let e = TraceBuilder::new()
            .add_azure_csv("t.csv", bad.as_bytes(), "x/a")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.csv:4: ContextTokens \"x\" is not a token count"
        );
        let e = TraceBuilder::new()
            .add_azure_csv(
                "t.csv",
                b"TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n",
                "x/a",
            )
            .unwrap_err();
        assert!(e.to_string().starts_with("t.csv:2: bad timestamp"), "{e}");
        let e = TraceBuilder::new()
            .add_azure_csv("t.csv", b"a,b\n", "x/a")
            .unwrap_err();
        assert!(e.to_string().starts_with("t.csv:1: header"), "{e}");
        let e = TraceBuilder::new()
            .add_file("t.csv", CSV.as_bytes(), None)
            .unwrap_err();
        assert!(e.to_string().contains("needs a lane"), "{e}");
        let e = TraceBuilder::new()
            .add_jsonl("e.jsonl", b"{\"schema\":\"zumik.request.v1\"}\n")
            .unwrap_err();
        assert!(e.to_string().starts_with("e.jsonl:1: "), "{e}");
    }

    fn req(id: &str, ts: &str, input: u32, cached: u32, max_out: u32) -> String {
        format!(
            r#"{{"schema":"zumik.request.v1","request_id":"{id}","tenant_id":"prj_a","model":"openai/gpt-4o","input_tokens":{input},"cached_input_tokens":{cached},"max_output_tokens":{max_out},"qos":{{"class":"interactive"}},"ts":"{ts}"}}"#
        )
    }

    fn done(id: &str, outcome: &str, profile: &str, out: u32) -> String {
        format!(
            r#"{{"schema":"zumik.completion.v1","request_id":"{id}","tenant_id":"prj_a","model":"openai/gpt-4o","outcome":"{outcome}","input_tokens":1000,"cached_input_tokens":500,"output_tokens":{out},"ttft_ms":300,"profile":"{profile}","ts":"2026-01-01T00:00:09Z"}}"#
        )
    }

    #[test]
    fn jsonl_requests_take_actual_tokens_from_completions_and_outcomes_count() {
        let lines = [
            req("r1", "2026-01-01T00:00:01Z", 1000, 500, 800),
            req("r2", "2026-01-01T00:00:02Z", 2000, 0, 900),
            r#"{"schema":"zumik.provider_health.v1","provider":"openai","status":"ok","ts":"2026-01-01T00:00:02Z"}"#
                .to_owned(),
            done("r1", "completed", "managed_provider", 120),
            done("r9", "failed", "managed_provider", 0),
            done("r8", "completed", "byoc_dynamo", 5),
            done("r7", "cancelled", "managed_provider", 0),
        ];
        let mut b = TraceBuilder::new();
        b.add_file("h.jsonl", lines.join("\n").as_bytes(), None)
            .unwrap();
        let t = b.finish().unwrap();
        assert_eq!(t.requests[0].output_tokens, 120);
        assert_eq!(t.requests[0].cached_input_tokens, 500);
        assert_eq!(t.requests[1].output_tokens, 900);
        assert_eq!((t.output_from_completions, t.output_from_max), (1, 1));
        let o = &t.observed[0];
        assert_eq!(
            (o.managed_ok, o.managed_failed, o.byoc_ok, o.byoc_failed),
            (1, 1, 1, 0)
        );
        assert_eq!(o.managed_ttft_ms, vec![300]);
        assert_eq!(
            (
                t.sources[0].requests,
                t.sources[0].completions,
                t.sources[0].other_events
            ),
            (2, 4, 1)
        );
    }

    #[test]
    fn duplicate_request_ids_are_an_error() {
        let lines = [
            req("r1", "2026-01-01T00:00:01Z", 1, 0, 1),
            req("r1", "2026-01-01T00:00:02Z", 1, 0, 1),
        ];
        let e = TraceBuilder::new()
            .add_jsonl("h.jsonl", lines.join("\n").as_bytes())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "h.jsonl:2: duplicate request_id \"r1\" (first at h.jsonl:1)"
        );
    }

    #[test]
    fn empty_history_is_an_error() {
        let mut b = TraceBuilder::new();
        b.add_azure_csv("a.csv", b"TIMESTAMP,ContextTokens,GeneratedTokens\n", "x/a")
            .unwrap();
        assert!(matches!(b.finish(), Err(TraceError::Empty)));
    }
}
