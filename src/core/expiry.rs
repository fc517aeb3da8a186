//! [`ExpiryQueue`]: a lane's reservation deadlines, earliest first, for the two questions asked
//! on the hot path — "is any deadline due at `now`?" and "which reservations passed their
//! deadline before `t`?" — without a sorted index that must be updated on every completion.
//!
//! It is a binary min-heap on `(deadline, seq)` with lazy deletion: a completion does not touch
//! it; entries whose reservation is gone (or was replaced: other `seq`) are dropped when they
//! come due at the top, and the whole heap is compacted once it holds more than four times the live
//! reservations, so its size stays within `4 × reservations + 256`. Pushing a deadline later than
//! all others (the usual case: same deadline, later request) is O(1).
//!
//! It is derived data, not state: the lane rebuilds it from its reservations after a restore,
//! snapshots leave it out, and its internal order never reaches a decision — callers that list
//! due reservations sort them by `(deadline, seq)`.

use crate::events::InlineId;

/// One reservation's deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: i64,
    pub seq: u64,
    pub id: InlineId,
}

impl Entry {
    fn key(&self) -> (i64, u64) {
        (self.at, self.seq)
    }
}

/// Min-heap of deadlines in the implicit layout: the children of `i` are `2i + 1` and `2i + 2`.
#[derive(Debug, Clone, Default)]
pub struct ExpiryQueue {
    heap: Vec<Entry>,
}

/// Derived data: every queue equals every other (states compare by their reservations).
impl PartialEq for ExpiryQueue {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ExpiryQueue {}

/// Snapshots leave the queue out; the owner rebuilds it after decoding.
impl bincode::Encode for ExpiryQueue {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        _: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        Ok(())
    }
}

impl<C> bincode::Decode<C> for ExpiryQueue {
    fn decode<D: bincode::de::Decoder<Context = C>>(
        _: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        Ok(ExpiryQueue::default())
    }
}

impl<'de, C> bincode::BorrowDecode<'de, C> for ExpiryQueue {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = C>>(
        _: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        Ok(ExpiryQueue::default())
    }
}

/// Whether a reservation `(id, seq)` is still held.
pub trait Live {
    fn live(&self, id: &InlineId, seq: u64) -> bool;
}

impl ExpiryQueue {
    /// Entries, live or not, in heap order.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Every entry (heap order: sort before showing).
    pub fn entries(&self) -> &[Entry] {
        &self.heap
    }

    /// A queue holding exactly these deadlines.
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>) -> Self {
        let mut heap: Vec<Entry> = entries.into_iter().collect();
        // A sorted array is a valid min-heap.
        heap.sort_unstable_by_key(Entry::key);
        ExpiryQueue { heap }
    }

    pub fn push(&mut self, at: i64, seq: u64, id: InlineId) {
        self.heap.push(Entry { at, seq, id });
        let mut i = self.heap.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[parent].key() <= self.heap[i].key() {
                break;
            }
            self.heap.swap(parent, i);
            i = parent;
        }
    }

    /// Whether a live entry's deadline is at or before `now`, dropping the dead entries met on
    /// the way (afterwards the top, if due, is live). Entries not yet due are not looked at:
    /// asked on every request, this costs one comparison until something comes due.
    pub fn due(&mut self, now: i64, live: &impl Live) -> bool {
        while let Some(top) = self.heap.first() {
            if top.at > now {
                return false;
            }
            if live.live(&top.id, top.seq) {
                return true;
            }
            self.pop();
        }
        false
    }

    /// Keeps only live entries once dead ones outnumber them (amortised O(1) per completion).
    pub fn compact_if_sparse(&mut self, live_count: usize, live: &impl Live) {
        if self.heap.len() > 4 * live_count + 256 {
            self.heap.retain(|e| live.live(&e.id, e.seq));
            // Bottom-up heap construction: O(n).
            for i in (0..self.heap.len() / 2).rev() {
                self.sift_down(i);
            }
        }
    }

    /// Deadline at the top (the earliest live one, if [`ExpiryQueue::due`] with `i64::MAX` ran
    /// since the last change).
    pub fn peek(&self) -> Option<i64> {
        self.heap.first().map(|e| e.at)
    }

    /// Calls `f` on every entry with a deadline before `bound` (live or not), visiting only
    /// those and their direct children.
    pub fn for_each_before<'a>(&'a self, bound: i64, mut f: impl FnMut(&'a Entry)) {
        // Usually nothing is due: answer that without allocating.
        if self.heap.first().is_none_or(|top| top.at >= bound) {
            return;
        }
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            let Some(e) = self.heap.get(i) else { continue };
            if e.at >= bound {
                continue;
            }
            f(e);
            stack.push(2 * i + 1);
            stack.push(2 * i + 2);
        }
    }

    fn pop(&mut self) -> Option<Entry> {
        let last = self.heap.len().checked_sub(1)?;
        self.heap.swap(0, last);
        let top = self.heap.pop();
        self.sift_down(0);
        top
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < n && self.heap[l].key() < self.heap[least].key() {
                least = l;
            }
            if r < n && self.heap[r].key() < self.heap[least].key() {
                least = r;
            }
            if least == i {
                break;
            }
            self.heap.swap(i, least);
            i = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Live reservations as `(id, seq)` pairs.
    struct Held(BTreeSet<(String, u64)>);

    impl Live for Held {
        fn live(&self, id: &InlineId, seq: u64) -> bool {
            self.0.contains(&(id.to_string(), seq))
        }
    }

    fn due(q: &ExpiryQueue, held: &Held, bound: i64) -> Vec<(i64, u64)> {
        let mut v = Vec::new();
        q.for_each_before(bound, |e| {
            if held.live(&e.id, e.seq) {
                v.push(e.key());
            }
        });
        v.sort_unstable();
        v
    }

    #[test]
    fn agrees_with_a_sorted_set_under_pushes_removals_and_compaction() {
        // A fixed pseudo-random sequence (xorshift) of pushes, completions and queries.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut q = ExpiryQueue::default();
        let mut held = Held(BTreeSet::new());
        let mut reference: BTreeSet<(i64, u64)> = BTreeSet::new();
        let mut ids: Vec<(i64, u64, String)> = Vec::new();
        for seq in 1..5_000u64 {
            let at = (seq as i64) * 10 + (next() % 400) as i64;
            let id = format!("r{}", next() % 700);
            // A resend of a held id replaces nothing here: ids are unique per seq in the heap.
            q.push(at, seq, InlineId::from(id.as_str()));
            held.0.insert((id.clone(), seq));
            reference.insert((at, seq));
            ids.push((at, seq, id));
            if next() % 3 != 0 {
                let k = (next() as usize) % ids.len();
                let (at, seq, id) = ids.swap_remove(k);
                held.0.remove(&(id, seq));
                reference.remove(&(at, seq));
            }
            q.compact_if_sparse(held.0.len(), &held);
            assert!(q.len() <= 4 * held.0.len() + 257);
            let bound = seq as i64 * 10;
            let want: Vec<_> = reference.range(..(bound, 0)).copied().collect();
            assert_eq!(due(&q, &held, bound), want, "due before {bound}");
            let now = bound + (next() % 500) as i64;
            let want_due = reference.first().is_some_and(|k| k.0 <= now);
            assert_eq!(q.due(now, &held), want_due, "due at {now}");
            q.due(i64::MAX, &held);
            assert_eq!(q.peek(), reference.first().map(|k| k.0));
        }
    }

    #[test]
    fn sorted_input_is_a_heap_and_pushing_later_deadlines_keeps_order() {
        let q = ExpiryQueue::from_entries((0..10).rev().map(|i| Entry {
            at: i,
            seq: i as u64,
            id: InlineId::from("x"),
        }));
        assert_eq!(q.peek(), Some(0));
        let mut seen = Vec::new();
        q.for_each_before(5, |e| seen.push(e.at));
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }
}
