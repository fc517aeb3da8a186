//! Journal files: the exported, offline form of `zumik.journal` that auditors replay.
//!
//! Two encodings of the same records: JSONL (readable; first line is the header) and bincode
//! (fast; `ZJNL`, a format-version byte, a length-prefixed JSON header, then length-prefixed
//! bincode records). The header carries the routing config the journal was produced under, so a
//! journal file replays on its own.

use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::router::JournalEntry;
use crate::core::RoutingConfig;

pub const MAGIC: &[u8; 4] = b"ZJNL";
/// Version of the bincode record encoding.
pub const FORMAT_VERSION: u8 = 3;
/// Largest record accepted when reading (a guard against corrupt length prefixes).
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// First record of every journal file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always `zumik.journal.v1`.
    pub schema: String,
    /// Where the records came from (`zumik decide <file>`, a Kafka range, …).
    pub source: String,
    /// The routing config the records were produced under.
    pub routing: RoutingConfig,
}

impl Header {
    pub fn new(source: impl Into<String>, routing: RoutingConfig) -> Self {
        Header {
            schema: "zumik.journal.v1".into(),
            source: source.into(),
            routing,
        }
    }
}

/// Encoding of a journal file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Bincode,
}

impl Format {
    /// `.bin` / `.zjnl` files are bincode, anything else JSONL.
    pub fn from_path(p: &Path) -> Format {
        match p.extension().and_then(|e| e.to_str()) {
            Some("bin" | "zjnl") => Format::Bincode,
            _ => Format::Jsonl,
        }
    }
}

/// Why a journal file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O: {0}")]
    Io(#[from] io::Error),
    #[error("journal record {index}: {message}")]
    Record { index: u64, message: String },
    #[error("not a journal file: {0}")]
    Header(String),
}

/// Writes journal records.
pub struct JournalWriter<W: Write> {
    out: W,
    format: Format,
    buf: Vec<u8>,
    pub written: u64,
}

impl<W: Write> JournalWriter<W> {
    pub fn new(mut out: W, format: Format, header: &Header) -> Result<Self, JournalError> {
        let head = serde_json::to_vec(header).map_err(|e| JournalError::Header(e.to_string()))?;
        match format {
            Format::Jsonl => {
                out.write_all(&head)?;
                out.write_all(b"\n")?;
            }
            Format::Bincode => {
                out.write_all(MAGIC)?;
                out.write_all(&[FORMAT_VERSION])?;
                out.write_all(&(head.len() as u32).to_le_bytes())?;
                out.write_all(&head)?;
            }
        }
        Ok(JournalWriter {
            out,
            format,
            buf: Vec::with_capacity(1024),
            written: 0,
        })
    }

    pub fn write(&mut self, entry: &JournalEntry) -> Result<(), JournalError> {
        let index = self.written;
        self.buf.clear();
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut self.buf, entry).map_err(|e| JournalError::Record {
                    index,
                    message: e.to_string(),
                })?;
                self.buf.push(b'\n');
                self.out.write_all(&self.buf)?;
            }
            Format::Bincode => {
                bincode::encode_into_std_write(entry, &mut self.buf, bincode::config::standard())
                    .map_err(|e| JournalError::Record {
                    index,
                    message: e.to_string(),
                })?;
                self.out.write_all(&(self.buf.len() as u32).to_le_bytes())?;
                self.out.write_all(&self.buf)?;
            }
        }
        self.written += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<W, JournalError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// First byte of a bincode-encoded `JournalEntry::Input` (its variant index as a varint).
const INPUT_VARIANT: u8 = 0;

/// Reads journal records (either encoding, detected from the first bytes).
pub struct JournalReader<R: BufRead> {
    input: R,
    format: Format,
    pub header: Header,
    buf: Vec<u8>,
    index: u64,
    skip_inputs: bool,
    skipped_inputs: u64,
}

impl<R: BufRead> JournalReader<R> {
    /// Audits only: `Input` records of a bincode journal are stepped over without being decoded
    /// (an audit re-folds the actors' commands; the inputs are for what-if replays) and counted
    /// in [`JournalReader::skipped_inputs`]. JSONL journals are read in full.
    pub fn skipping_inputs(mut self) -> Self {
        self.skip_inputs = true;
        self
    }

    /// `Input` records stepped over so far (see [`JournalReader::skipping_inputs`]).
    pub fn skipped_inputs(&self) -> u64 {
        self.skipped_inputs
    }

    pub fn new(mut input: R) -> Result<Self, JournalError> {
        let is_bin = input.fill_buf()?.starts_with(MAGIC);
        let (format, head) = if is_bin {
            let mut fixed = [0u8; 9];
            input.read_exact(&mut fixed)?;
            if fixed[4] != FORMAT_VERSION {
                return Err(JournalError::Header(format!(
                    "bincode journal format version {}, this build reads {FORMAT_VERSION}",
                    fixed[4]
                )));
            }
            let len = u32::from_le_bytes([fixed[5], fixed[6], fixed[7], fixed[8]]) as usize;
            if len > MAX_RECORD_BYTES {
                return Err(JournalError::Header("header length is implausible".into()));
            }
            let mut head = vec![0; len];
            input.read_exact(&mut head)?;
            (Format::Bincode, head)
        } else {
            let mut line = Vec::new();
            input.read_until(b'\n', &mut line)?;
            (Format::Jsonl, line)
        };
        let header: Header =
            serde_json::from_slice(&head).map_err(|e| JournalError::Header(e.to_string()))?;
        if header.schema != "zumik.journal.v1" {
            return Err(JournalError::Header(format!(
                "unknown journal schema {}",
                header.schema
            )));
        }
        Ok(JournalReader {
            input,
            format,
            header,
            buf: Vec::with_capacity(1024),
            index: 0,
            skip_inputs: false,
            skipped_inputs: 0,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    fn read_next(&mut self) -> Result<Option<JournalEntry>, JournalError> {
        let bad = |index: u64, message: String| JournalError::Record { index, message };
        match self.format {
            Format::Jsonl => loop {
                self.buf.clear();
                if self.input.read_until(b'\n', &mut self.buf)? == 0 {
                    return Ok(None);
                }
                let line = self.buf.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let index = self.index;
                self.index += 1;
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|e| bad(index, e.to_string()));
            },
            Format::Bincode => loop {
                let mut len = [0u8; 4];
                match self.input.read_exact(&mut len) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
                let len = u32::from_le_bytes(len) as usize;
                if len > MAX_RECORD_BYTES {
                    return Err(bad(
                        self.index,
                        format!("record length {len} is implausible"),
                    ));
                }
                self.buf.resize(len, 0);
                self.input.read_exact(&mut self.buf)?;
                let index = self.index;
                self.index += 1;
                // The variant index comes first: `Input` is variant 0, one byte.
                if self.skip_inputs && self.buf.first() == Some(&INPUT_VARIANT) {
                    self.skipped_inputs += 1;
                    continue;
                }
                return bincode::decode_from_slice(&self.buf, bincode::config::standard())
                    .map(|(e, _)| Some(e))
                    .map_err(|e| bad(index, e.to_string()));
            },
        }
    }
}

impl<R: BufRead> Iterator for JournalReader<R> {
    type Item = Result<JournalEntry, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read_next().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Output, PriceTable, Router};
    use std::sync::Arc;

    fn journal_of_example() -> Vec<JournalEntry> {
        let text = include_str!("../examples/scenario.jsonl");
        let mut router = Router::new(
            Arc::new(RoutingConfig::default()),
            Arc::new(PriceTable::embedded()),
        );
        let mut out = Output::with_journal();
        for line in text.lines() {
            router.apply(
                crate::events::codec::decode_input(line.as_bytes()).unwrap(),
                &mut out,
            );
        }
        out.journal
    }

    #[test]
    fn both_encodings_round_trip() {
        let entries = journal_of_example();
        assert!(entries.len() > 50);
        for format in [Format::Jsonl, Format::Bincode] {
            let header = Header::new("test", RoutingConfig::default());
            let mut w = JournalWriter::new(Vec::new(), format, &header).unwrap();
            for e in &entries {
                w.write(e).unwrap();
            }
            let bytes = w.finish().unwrap();
            let r = JournalReader::new(io::Cursor::new(bytes)).unwrap();
            assert_eq!(r.format(), format);
            assert_eq!(r.header, header);
            let back: Vec<JournalEntry> = r.map(Result::unwrap).collect();
            assert_eq!(back, entries, "{format:?}");
        }
    }

    #[test]
    fn an_audit_reader_steps_over_inputs_and_keeps_everything_else() {
        let entries = journal_of_example();
        let header = Header::new("test", RoutingConfig::default());
        for format in [Format::Jsonl, Format::Bincode] {
            let mut w = JournalWriter::new(Vec::new(), format, &header).unwrap();
            for e in &entries {
                w.write(e).unwrap();
            }
            let bytes = w.finish().unwrap();
            let mut r = JournalReader::new(io::Cursor::new(bytes))
                .unwrap()
                .skipping_inputs();
            let back: Vec<JournalEntry> = r.by_ref().map(Result::unwrap).collect();
            let inputs = entries
                .iter()
                .filter(|e| matches!(e, JournalEntry::Input(_)))
                .count() as u64;
            assert!(inputs > 10);
            if format == Format::Bincode {
                let rest: Vec<JournalEntry> = entries
                    .iter()
                    .filter(|e| !matches!(e, JournalEntry::Input(_)))
                    .cloned()
                    .collect();
                assert_eq!(back, rest);
                assert_eq!(r.skipped_inputs(), inputs);
            } else {
                assert_eq!(back, entries);
                assert_eq!(r.skipped_inputs(), 0);
            }
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(JournalReader::new(io::Cursor::new(b"hello\n".to_vec())).is_err());
        let mut bytes = MAGIC.to_vec();
        bytes.extend([FORMAT_VERSION, 255, 255, 255, 255]);
        assert!(JournalReader::new(io::Cursor::new(bytes)).is_err());
    }
}
