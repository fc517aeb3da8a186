//! Maps of the routing state whose encodings are sorted by key, so snapshots and JSON views of
//! equal states are equal bytes whatever the insertion history:
//! - [`HashIndex`]: a fixed-seed hash map for hot lookups among many keys;
//! - [`SmallMap`]: a sorted vector for the clusters of a lane, walked on every request (the
//!   routing loop, the utilisation integral) where a `BTreeMap` spent more time navigating its
//!   nodes than the loop spent on its entries, and for the router's clusters, found by `Name`.

use std::borrow::Borrow;
use std::hash::Hash;
use std::ops::{Deref, DerefMut};

use bincode::de::{BorrowDecoder, Decoder};
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A hash map (lookups on every event) that never lets its iteration order out: encoding and
/// serialization go in key order. Code that iterates it for an output must sort too.
#[derive(Debug, Clone)]
pub struct HashIndex<K, V>(pub HashMap<K, V>);

/// The map behind [`HashIndex`]: foldhash with its fixed seed (same layout every run; ids that
/// differ in a few trailing characters still spread over all hash bits).
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

impl<K: Hash + Eq, V: PartialEq> PartialEq for HashIndex<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<K: Hash + Eq, V: Eq> Eq for HashIndex<K, V> {}

impl<K, V> Default for HashIndex<K, V> {
    fn default() -> Self {
        HashIndex(HashMap::default())
    }
}

impl<K, V> Deref for HashIndex<K, V> {
    type Target = HashMap<K, V>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<K, V> DerefMut for HashIndex<K, V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<'a, K, V> IntoIterator for &'a HashIndex<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::collections::hash_map::Iter<'a, K, V>;
    /// Hash order: sort before it reaches an output.
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<K: Ord, V> HashIndex<K, V> {
    /// Entries in key order.
    pub fn sorted(&self) -> Vec<(&K, &V)> {
        let mut v: Vec<(&K, &V)> = self.0.iter().collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }
}

impl<K: Ord + bincode::Encode, V: bincode::Encode> bincode::Encode for HashIndex<K, V> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        (self.0.len() as u64).encode(encoder)?;
        for (k, v) in self.sorted() {
            k.encode(encoder)?;
            v.encode(encoder)?;
        }
        Ok(())
    }
}

impl<C, K: bincode::Decode<C> + Hash + Eq, V: bincode::Decode<C>> bincode::Decode<C>
    for HashIndex<K, V>
{
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let len = u64::decode(decoder)? as usize;
        decoder.claim_container_read::<(K, V)>(len)?;
        let mut map = HashMap::with_capacity_and_hasher(len, Default::default());
        for _ in 0..len {
            decoder.unclaim_bytes_read(std::mem::size_of::<(K, V)>());
            let k = K::decode(decoder)?;
            let v = V::decode(decoder)?;
            map.insert(k, v);
        }
        Ok(HashIndex(map))
    }
}

impl<'de, C, K: bincode::Decode<C> + Hash + Eq, V: bincode::Decode<C>> bincode::BorrowDecode<'de, C>
    for HashIndex<K, V>
{
    fn borrow_decode<D: BorrowDecoder<'de, Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        <Self as bincode::Decode<C>>::decode(decoder)
    }
}

impl<K: Ord + Serialize, V: Serialize> Serialize for HashIndex<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.sorted())
    }
}

impl<'de, K: Deserialize<'de> + Hash + Eq, V: Deserialize<'de>> Deserialize<'de>
    for HashIndex<K, V>
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        HashMap::deserialize(d).map(HashIndex)
    }
}

/// A map kept as a vector sorted by key: iteration is a slice walk, and a lookup compares keys
/// for equality one by one (an interned [`crate::events::Name`] compares by address), which for
/// a handful of entries beats a tree or a hash. Inserting is O(n): for small maps only. Encodes
/// (bincode, serde) exactly as a `BTreeMap` of the same entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    pub fn new() -> Self {
        SmallMap(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position<Q: Eq + ?Sized>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
    {
        self.0.iter().position(|(k, _)| k.borrow() == key)
    }

    pub fn get<Q: Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.position(key).map(|i| &self.0[i].1)
    }

    pub fn get_mut<Q: Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.position(key).map(|i| &mut self.0[i].1)
    }

    pub fn contains_key<Q: Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.position(key).is_some()
    }

    /// Inserts or replaces, keeping key order; the replaced value, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove<Q: Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.position(key).map(|i| self.0.remove(i).1)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl<K: Ord + Borrow<Q>, V, Q: Eq + ?Sized> std::ops::Index<&Q> for SmallMap<K, V> {
    type Output = V;
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("key in SmallMap")
    }
}

impl<'a, K: Ord, V> IntoIterator for &'a SmallMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;
    /// Key order.
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<K, V> IntoIterator for SmallMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;
    /// Key order.
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SmallMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let sorted: std::collections::BTreeMap<K, V> = iter.into_iter().collect();
        SmallMap(sorted.into_iter().collect())
    }
}

/// A `BTreeMap`'s encoding (the length, then keys and values in key order) is that of the
/// sorted vector of pairs.
impl<K: bincode::Encode, V: bincode::Encode> bincode::Encode for SmallMap<K, V> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.0.encode(encoder)
    }
}

/// Decoded through a `BTreeMap`, so entries come out sorted and unique whatever the bytes say.
impl<C, K: bincode::Decode<C> + Ord, V: bincode::Decode<C>> bincode::Decode<C> for SmallMap<K, V> {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        std::collections::BTreeMap::<K, V>::decode(decoder)
            .map(|m| SmallMap(m.into_iter().collect()))
    }
}

impl<'de, C, K: bincode::Decode<C> + Ord, V: bincode::Decode<C>> bincode::BorrowDecode<'de, C>
    for SmallMap<K, V>
{
    fn borrow_decode<D: BorrowDecoder<'de, Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        <Self as bincode::Decode<C>>::decode(decoder)
    }
}

impl<K: Serialize, V: Serialize> Serialize for SmallMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for SmallMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        std::collections::BTreeMap::deserialize(d).map(|m| SmallMap(m.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_map_encodes_and_behaves_like_a_btree_map() {
        use std::collections::BTreeMap;
        let mut small = SmallMap::new();
        let mut tree = BTreeMap::new();
        // Inserts out of order, replacements and removals.
        for (i, k) in [5u32, 1, 9, 3, 1, 7, 9, 0].into_iter().enumerate() {
            assert_eq!(small.insert(k, i), tree.insert(k, i));
        }
        assert_eq!(small.remove(&3), tree.remove(&3));
        assert_eq!(small.remove(&4), tree.remove(&4));
        assert_eq!(small.len(), tree.len());
        assert!(small.iter().eq(tree.iter()));
        assert_eq!(small.get(&7), tree.get(&7));
        assert!(small.contains_key(&0) && !small.contains_key(&3));
        *small.get_mut(&0).unwrap() += 10;
        *tree.get_mut(&0).unwrap() += 10;
        assert_eq!(small[&0], 17);
        let cfg = bincode::config::standard();
        let bytes = bincode::encode_to_vec(&small, cfg).unwrap();
        assert_eq!(bytes, bincode::encode_to_vec(&tree, cfg).unwrap());
        let (back, _): (SmallMap<u32, usize>, _) = bincode::decode_from_slice(&bytes, cfg).unwrap();
        assert_eq!(back, small);
        let json = serde_json::to_string(&small).unwrap();
        assert_eq!(json, serde_json::to_string(&tree).unwrap());
        assert_eq!(
            serde_json::from_str::<SmallMap<u32, usize>>(&json).unwrap(),
            small
        );
        assert_eq!(tree.into_iter().collect::<SmallMap<_, _>>(), small);
    }

    #[test]
    fn encodings_do_not_depend_on_insertion_order() {
        let (mut a, mut b) = (HashIndex::default(), HashIndex::default());
        for i in 0..100u32 {
            a.insert(i, i * 2);
            b.insert(99 - i, (99 - i) * 2);
        }
        let enc = |m: &HashIndex<u32, u32>| {
            bincode::encode_to_vec(m, bincode::config::standard()).unwrap()
        };
        assert_eq!(enc(&a), enc(&b));
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        let (back, _): (HashIndex<u32, u32>, _) =
            bincode::decode_from_slice(&enc(&a), bincode::config::standard()).unwrap();
        assert_eq!(back, a);
    }
}
