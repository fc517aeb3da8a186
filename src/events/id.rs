//! [`InlineId`]: a request or tenant id stored in place — ids of up to 22 bytes inside the value
//! itself, longer ones behind a shared pointer.
//!
//! A lane finds a reservation by request id on every completion, long after the request came
//! in. With the id behind a pointer (`Arc<str>`) each lookup followed it to an allocation that
//! had long left the cache, and each copy of the id was an atomic reference-count update. An
//! inline id is compared, hashed and copied from the hash table slot alone.
//!
//! Requests, completions and decisions carry their request id as one too, and requests and
//! completions their tenant id: decoding a short id allocates nothing, and a decision copies its
//! request's id without a reference count (the atomic increment and two decrements per request
//! that an `Arc<str>` cost).
//!
//! It compares, orders and hashes as its bytes, and encodes (bincode and serde) and describes
//! itself (JSON Schema) exactly like a string, so events, snapshots and journal records holding
//! one are the bytes they were with a string.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// Longest id kept inline (the value is 24 bytes either way).
const INLINE: usize = 22;

/// A short string id, inline when it fits (see the module docs).
#[derive(Clone)]
pub struct InlineId(Repr);

#[derive(Clone)]
enum Repr {
    /// `bytes[..len]` are the UTF-8 bytes of a `str`; the rest are zero.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// Longer than [`INLINE`] bytes (never shorter: equal ids have equal representations).
    Shared(Arc<str>),
}

impl InlineId {
    /// The id as bytes (no UTF-8 check: what lookups and comparisons use).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Shared(s) => s.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: `From<&str>` is the only constructor of `Repr::Inline` (decoding goes
            // through it too) and copies a whole `str`'s bytes, so they are valid UTF-8. A checked
            // conversion here cost 1.5 % of the routing loop (each completion's budget
            // follow-up names its tenant with one).
            Repr::Inline { .. } => unsafe { std::str::from_utf8_unchecked(self.as_bytes()) },
            Repr::Shared(s) => s,
        }
    }
}

impl From<&str> for InlineId {
    fn from(s: &str) -> Self {
        if s.len() > INLINE {
            return InlineId(Repr::Shared(Arc::from(s)));
        }
        let mut bytes = [0u8; INLINE];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        InlineId(Repr::Inline {
            len: s.len() as u8,
            bytes,
        })
    }
}

impl From<String> for InlineId {
    fn from(s: String) -> Self {
        InlineId::from(s.as_str())
    }
}

impl Deref for InlineId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Lookups by `&[u8]` (`HashMap::get(id.as_bytes())`): hashing agrees with `[u8]`'s.
impl Borrow<[u8]> for InlineId {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Hash for InlineId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for InlineId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for InlineId {}

/// The order of the strings (byte order, as `str` orders).
impl Ord for InlineId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for InlineId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

super::name::string_encoded!(InlineId, InlineId::from);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_takes_24_bytes() {
        assert_eq!(std::mem::size_of::<InlineId>(), 24);
    }

    #[test]
    fn short_and_long_ids_encode_compare_and_order_like_strings() {
        let ids = [
            "",
            "r",
            "req_s42_0000000001",
            &"x".repeat(22),
            &"y".repeat(23),
        ];
        for a in ids {
            let id = InlineId::from(a);
            assert_eq!(&*id, a);
            assert_eq!(id, InlineId::from(a.to_owned()));
            let cfg = bincode::config::standard();
            assert_eq!(
                bincode::encode_to_vec(&id, cfg).unwrap(),
                bincode::encode_to_vec(a, cfg).unwrap()
            );
            let (back, _): (InlineId, _) =
                bincode::decode_from_slice(&bincode::encode_to_vec(&id, cfg).unwrap(), cfg)
                    .unwrap();
            assert_eq!(back, id);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(json, serde_json::to_string(a).unwrap());
            assert_eq!(serde_json::from_str::<InlineId>(&json).unwrap(), id);
            for b in ids {
                assert_eq!(id.cmp(&InlineId::from(b)), a.cmp(b), "{a} vs {b}");
            }
        }
    }
}
