//! [`HashIndex`]: a fixed-seed hash map for hot lookups whose encodings are sorted by key, so
//! snapshots and JSON views of equal states are equal bytes whatever the insertion history.

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

#[cfg(test)]
mod tests {
    use super::*;

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
