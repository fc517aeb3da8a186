//! [`Name`]: an interned identifier — a lane, cluster, tenant, provider, region or decision
//! target — that copies as a pointer and compares equal by address.
//!
//! Every decision names its tenant, lane and target and lists the clusters it considered; every
//! reservation names its cluster and tenant. As shared strings (`Arc<str>`) each of those copies
//! was an atomic reference-count update and each drop another, a dozen or more per request.
//! Names are interned once per distinct string for the life of the process, so a copy is a plain
//! copy and equality is one pointer comparison.
//!
//! Interned strings are never freed: a process keeps one copy of each distinct lane, cluster,
//! tenant, provider, region and target it has interned, including ids its state no longer (or
//! never) holds: a tenant seen only in requests, a deregistered cluster, the regions and
//! providers of a replaced policy, every id a `zumik tail` has read. Each costs its bytes and a
//! set entry (`zumik_interned_names` counts them). Request ids are unbounded and stay out of
//! here ([`crate::events::InlineId`]).
//!
//! A name hashes, orders, serializes (serde, JSON Schema) and encodes (bincode) exactly as its
//! string, so outputs, snapshots and journal records are the bytes they were with strings.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::{OnceLock, RwLock};

/// An interned string (see the module docs). `Copy`: pass it by value.
///
/// One pointer wide: it points at the interned string's (pointer, length), so a decision,
/// reservation or considered cluster holding names is half the size it would be with a
/// `&'static str` in place (a reservation 32 bytes instead of 48).
#[derive(Clone, Copy)]
pub struct Name(&'static &'static str);

/// The process's interned strings, each with its name (fixed-seed hash: no randomness in the
/// process).
type Interned = HashMap<&'static str, Name, foldhash::fast::FixedState>;

fn names() -> &'static RwLock<Interned> {
    static NAMES: OnceLock<RwLock<Interned>> = OnceLock::new();
    NAMES.get_or_init(Default::default)
}

impl Name {
    /// The name of `s`, interning it on first sight.
    pub fn new(s: &str) -> Name {
        // A poisoned lock still holds a consistent set: inserts happen after the leak.
        if let Some(&n) = names().read().unwrap_or_else(|e| e.into_inner()).get(s) {
            return n;
        }
        let mut set = names().write().unwrap_or_else(|e| e.into_inner());
        if let Some(&n) = set.get(s) {
            return n;
        }
        let leaked: &'static str = Box::leak(Box::from(s));
        let name = Name(Box::leak(Box::new(leaked)));
        set.insert(leaked, name);
        name
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }

    /// How many distinct names this process has interned (the `zumik_interned_names` gauge).
    pub fn interned() -> usize {
        names().read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name::new(s)
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        Name::new(s)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name::new(&s)
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Lookups by `&str` in maps keyed by names: hashing and equality agree with `str`'s.
impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// Equal strings are one interned copy: the addresses decide.
impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The order of the strings (byte order, as `str` orders).
impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self == other {
            std::cmp::Ordering::Equal
        } else {
            self.as_str().cmp(other.as_str())
        }
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// `Display`, `Debug`, serde, bincode and JSON Schema for an id type that is its string in every
/// encoding: `$t::as_str` reads it, `$new(&str)` makes one. Deserializing and borrow-decoding hand
/// `$new` the string where the input holds it, without an owned copy first. Used by [`Name`] and
/// [`crate::events::InlineId`], so their bytes and schemas stay those of a string.
macro_rules! string_encoded {
    ($t:ty, $new:expr) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $t;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a string")
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$t, E> {
                        Ok($new(s))
                    }
                }
                d.deserialize_str(Visitor)
            }
        }

        impl bincode::Encode for $t {
            fn encode<E: bincode::enc::Encoder>(
                &self,
                encoder: &mut E,
            ) -> Result<(), bincode::error::EncodeError> {
                self.as_str().encode(encoder)
            }
        }

        impl<C> bincode::Decode<C> for $t {
            fn decode<D: bincode::de::Decoder<Context = C>>(
                decoder: &mut D,
            ) -> Result<Self, bincode::error::DecodeError> {
                String::decode(decoder).map(|s| $new(s.as_str()))
            }
        }

        impl<'de, C> bincode::BorrowDecode<'de, C> for $t {
            fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = C>>(
                decoder: &mut D,
            ) -> Result<Self, bincode::error::DecodeError> {
                <&'de str as bincode::BorrowDecode<'de, C>>::borrow_decode(decoder).map($new)
            }
        }

        impl schemars::JsonSchema for $t {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                <str as schemars::JsonSchema>::schema_name()
            }

            fn schema_id() -> std::borrow::Cow<'static, str> {
                <str as schemars::JsonSchema>::schema_id()
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                <str as schemars::JsonSchema>::json_schema(generator)
            }
        }
    };
}
pub(crate) use string_encoded;

string_encoded!(Name, Name::new);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_name_is_interned_once_and_compares_by_address() {
        let a = Name::new("byc_01");
        let b = Name::from(String::from("byc_01"));
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_ne!(a, Name::new("byc_02"));
        assert_eq!(a, "byc_01");
        // Other tests intern concurrently: the count only grows, and a known name adds nothing
        // (it is at least the two names above).
        let before = Name::interned();
        assert!(before >= 2);
        Name::new("byc_01");
        assert!(Name::interned() >= before);
    }

    #[test]
    fn a_name_is_one_pointer_wide() {
        assert_eq!(std::mem::size_of::<Name>(), 8);
        assert_eq!(std::mem::size_of::<Option<Name>>(), 8);
    }

    #[test]
    fn names_encode_hash_and_order_like_strings() {
        let strs = ["", "a", "a-b", "byc_01", "openai/gpt-4o@ft-h0001", "é"];
        let cfg = bincode::config::standard();
        for s in strs {
            let n = Name::new(s);
            let arc: Arc<str> = Arc::from(s);
            assert_eq!(
                bincode::encode_to_vec(n, cfg).unwrap(),
                bincode::encode_to_vec(&arc, cfg).unwrap()
            );
            let bytes = bincode::encode_to_vec(n, cfg).unwrap();
            let (back, _): (Name, _) = bincode::decode_from_slice(&bytes, cfg).unwrap();
            assert_eq!(back, n);
            let (borrowed, _): (Name, _) = bincode::borrow_decode_from_slice(&bytes, cfg).unwrap();
            assert_eq!(borrowed, n);
            let json = serde_json::to_string(&n).unwrap();
            assert_eq!(json, serde_json::to_string(s).unwrap());
            assert_eq!(serde_json::from_str::<Name>(&json).unwrap(), n);
            let hash = |x: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                x(&mut h);
                h.finish()
            };
            assert_eq!(hash(&|h| n.hash(h)), hash(&|h| s.hash(h)));
            for t in strs {
                assert_eq!(n.cmp(&Name::new(t)), s.cmp(t), "{s} vs {t}");
            }
        }
        assert_eq!(
            serde_json::to_value(schemars::schema_for!(Name)).unwrap(),
            serde_json::to_value(schemars::schema_for!(String)).unwrap()
        );
    }
}
