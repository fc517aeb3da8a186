//! The snapshot store (DESIGN §6): RocksDB keeps the broker's router state together with the
//! input position it reflects, so that recovery restores the state and replays only the journal
//! after it instead of the whole history.
//!
//! One snapshot per key (a consumer group, topic prefix and input partition: one per unit): the state bytes
//! (`Router::snapshot()`, which carries its own format version) and a [`SnapshotPosition`] are
//! written in **one atomic write batch**, synced to disk, so a crash leaves either the previous
//! snapshot or the new one, never a state paired with another state's position.
//!
//! This module is the RocksDB shell only: it knows nothing of Kafka or of the router.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rocksdb::{Options, WriteBatch, WriteOptions, DB};
use serde::Serialize;

/// Format version of the position record (first byte).
pub const POSITION_VERSION: u8 = 2;

/// Where a snapshot stands in the input history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, bincode::Encode, bincode::Decode)]
pub struct SnapshotPosition {
    /// Inputs applied to the state: the journal's `input_seq` of the last input it reflects.
    pub input_seq: u64,
    /// For each journal partition, the offset of the first journal record written after the
    /// snapshot: the tail that recovery replays starts there.
    pub journal_offsets: BTreeMap<i32, i64>,
    /// For each partition of the broadcast topics (telemetry, control) as `(topic, partition)`,
    /// the offset of the first record the state has not applied.
    pub broadcast: BTreeMap<(String, i32), i64>,
}

impl SnapshotPosition {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![POSITION_VERSION];
        // Plain data: encoding into a Vec cannot fail.
        bincode::encode_into_std_write(self, &mut out, bincode::config::standard())
            .expect("snapshot positions encode");
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        match bytes.split_first() {
            Some((&POSITION_VERSION, body)) => {
                let (p, used) = bincode::decode_from_slice(body, bincode::config::standard())
                    .map_err(|e| e.to_string())?;
                if used != body.len() {
                    return Err(format!("{} bytes after the position", body.len() - used));
                }
                Ok(p)
            }
            Some((v, _)) => Err(format!(
                "position format version {v}, this build reads {POSITION_VERSION}"
            )),
            None => Err("empty position record".to_owned()),
        }
    }
}

/// A stored snapshot: router state bytes and the position they reflect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub position: SnapshotPosition,
    pub state: Vec<u8>,
}

/// Format version of a snapshot published on the snapshots topic (first byte).
pub const SNAPSHOT_MESSAGE_VERSION: u8 = 1;

impl Snapshot {
    /// One message for the compacted snapshots topic: version byte, position length (u32 LE),
    /// position record, state bytes.
    pub fn to_message(&self) -> Vec<u8> {
        let position = self.position.encode();
        let mut out = Vec::with_capacity(5 + position.len() + self.state.len());
        out.push(SNAPSHOT_MESSAGE_VERSION);
        out.extend_from_slice(&(position.len() as u32).to_le_bytes());
        out.extend_from_slice(&position);
        out.extend_from_slice(&self.state);
        out
    }

    /// Reads [`Snapshot::to_message`] bytes back.
    pub fn from_message(bytes: &[u8]) -> Result<Self, String> {
        let (&version, rest) = bytes.split_first().ok_or("empty snapshot message")?;
        if version != SNAPSHOT_MESSAGE_VERSION {
            return Err(format!(
                "snapshot message version {version}, this build reads {SNAPSHOT_MESSAGE_VERSION}"
            ));
        }
        let len = rest
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or("snapshot message too short")?;
        let position = rest.get(4..4 + len).ok_or("snapshot message too short")?;
        Ok(Snapshot {
            position: SnapshotPosition::decode(position)?,
            state: rest[4 + len..].to_vec(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the snapshot store at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("writing snapshot {key}: {source}")]
    Write { key: String, source: rocksdb::Error },
    #[error("reading snapshot {key}: {source}")]
    Read { key: String, source: rocksdb::Error },
    #[error("snapshot {key} is unusable: {reason}")]
    Corrupt { key: String, reason: String },
}

/// RocksDB-backed snapshots, one per key.
pub struct SnapshotStore {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore")
            .field("path", &self.path)
            .finish()
    }
}

fn state_key(key: &str) -> Vec<u8> {
    [key.as_bytes(), b"\0state"].concat()
}

fn position_key(key: &str) -> Vec<u8> {
    [key.as_bytes(), b"\0position"].concat()
}

impl SnapshotStore {
    /// Opens (creating if missing) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Snapshots are few and large: small write buffers, LZ4 on disk.
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_keep_log_file_num(4);
        let db = DB::open(&opts, dir).map_err(|source| StoreError::Open {
            path: dir.to_owned(),
            source,
        })?;
        Ok(SnapshotStore {
            db,
            path: dir.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the snapshot of `key`: state and position in one synced write batch.
    pub fn save(&self, key: &str, snapshot: &Snapshot) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put(state_key(key), &snapshot.state);
        batch.put(position_key(key), snapshot.position.encode());
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db
            .write_opt(batch, &opts)
            .map_err(|source| StoreError::Write {
                key: key.to_owned(),
                source,
            })
    }

    /// The snapshot of `key`, if one was saved. Both halves are read from one consistent view.
    pub fn load(&self, key: &str) -> Result<Option<Snapshot>, StoreError> {
        let view = self.db.snapshot();
        let read = |k: Vec<u8>| {
            view.get(k).map_err(|source| StoreError::Read {
                key: key.to_owned(),
                source,
            })
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_owned(),
            reason,
        };
        match (read(state_key(key))?, read(position_key(key))?) {
            (None, None) => Ok(None),
            (Some(state), Some(position)) => Ok(Some(Snapshot {
                position: SnapshotPosition::decode(&position).map_err(corrupt)?,
                state,
            })),
            (Some(_), None) => Err(corrupt("state without a position".to_owned())),
            (None, Some(_)) => Err(corrupt("position without a state".to_owned())),
        }
    }

    /// Removes the snapshot of `key` (both halves in one batch).
    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete(state_key(key));
        batch.delete(position_key(key));
        self.db.write(batch).map_err(|source| StoreError::Write {
            key: key.to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("zumik-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn snap(seq: u64, fill: u8) -> Snapshot {
        Snapshot {
            position: SnapshotPosition {
                input_seq: seq,
                journal_offsets: BTreeMap::from([(0, seq as i64 * 3), (2, 7)]),
                broadcast: BTreeMap::from([(("t.control".to_owned(), 1), seq as i64)]),
            },
            state: vec![fill; 100_000],
        }
    }

    #[test]
    fn saves_loads_and_survives_reopening() {
        let d = dir("reopen");
        {
            let s = SnapshotStore::open(&d).unwrap();
            assert_eq!(s.load("g/0-3").unwrap(), None);
            s.save("g/0-3", &snap(10, 1)).unwrap();
            s.save("g/0-3", &snap(20, 2)).unwrap();
            s.save("other", &snap(5, 9)).unwrap();
        }
        let s = SnapshotStore::open(&d).unwrap();
        assert_eq!(s.load("g/0-3").unwrap(), Some(snap(20, 2)));
        assert_eq!(s.load("other").unwrap(), Some(snap(5, 9)));
        s.delete("other").unwrap();
        assert_eq!(s.load("other").unwrap(), None);
        drop(s);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_half_written_or_foreign_snapshot_is_an_error_not_a_state() {
        let d = dir("corrupt");
        let s = SnapshotStore::open(&d).unwrap();
        s.db.put(state_key("k"), b"state").unwrap();
        let e = s.load("k").unwrap_err().to_string();
        assert!(e.contains("state without a position"), "{e}");
        s.db.put(position_key("k"), [9u8, 1, 2]).unwrap();
        let e = s.load("k").unwrap_err().to_string();
        assert!(e.contains("position format version 9"), "{e}");
        drop(s);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused_with_its_path() {
        let d = dir("lock");
        let _s = SnapshotStore::open(&d).unwrap();
        let e = SnapshotStore::open(&d).unwrap_err().to_string();
        assert!(e.contains(&d.display().to_string()), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_snapshot_survives_its_topic_message_form() {
        let snap = Snapshot {
            position: SnapshotPosition {
                input_seq: 42,
                journal_offsets: BTreeMap::from([(0, 7), (2, 9)]),
                broadcast: BTreeMap::from([(("t.telemetry".to_owned(), 0), 11)]),
            },
            state: vec![1, 2, 3, 255],
        };
        let msg = snap.to_message();
        assert_eq!(Snapshot::from_message(&msg).unwrap(), snap);
        assert!(Snapshot::from_message(&msg[..3]).is_err());
        let mut other = msg.clone();
        other[0] = 9;
        assert!(Snapshot::from_message(&other)
            .unwrap_err()
            .contains("version 9"));
    }
}
