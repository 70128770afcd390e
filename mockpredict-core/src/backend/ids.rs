//! [`IdIndex`]: the in-memory backend's map from prediction ID to record, laid out so
//! that a queue's IDs are stored, found and removed in memory order.
//!
//! A queue's IDs end in its admission counter ([`PredictionId::sequence`]). The
//! index is [`SHARDS`] shards picked by the counter's low bits, each a table
//! direct-mapped by the rest of it: consecutive admissions take consecutive slots of
//! each shard. Inserting at submit, looking up at poll and removing at eviction
//! (completion order, close to admission order) then walk memory in order, where a
//! hash of a random ID made each one a cache miss anywhere in a table larger than
//! the L2 cache; a lookup reads one slot and the record it points to.
//!
//! A record whose slot is taken goes to a small hash table beside the slots. That
//! happens when the slot's record outlived a whole lap of the slots (a prediction still
//! running, or retained, while a table's worth of newer ones were admitted), or when
//! IDs were not made by a queue. The slots double when that table holds at least an
//! eighth as many records as there are slots and at least half the slots are in use,
//! so a table too small for the records it holds grows to fit them, and IDs that
//! collide whatever the table's size (say, many that share their last 32 bits) stay in
//! the hash table instead of growing the slots.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;

use crate::PredictionId;
use crate::sync::lock;

/// Number of shards: a power of two, picked by the low bits of the ID's sequence.
pub(super) const SHARDS: usize = 32;

/// Bits of the sequence that pick the shard.
const SHARD_BITS: u32 = SHARDS.trailing_zeros();

/// Fewest slots a shard starts with.
const MIN_SLOTS: usize = 16;

/// Most slots a shard starts with (it grows beyond, as needed).
const PRESIZE_MAX: usize = 4096;

/// A record the index can hold: it knows its own ID.
pub(super) trait Keyed {
    /// The record's ID.
    fn id(&self) -> &PredictionId;
}

/// The map from ID to record, in [`SHARDS`] shards under locks of their own.
pub(super) struct IdIndex<T> {
    /// Each on cache lines of its own: a submit inserting into one shard and a worker
    /// removing from another do not contend for a line.
    shards: [CachePadded<Mutex<Shard<T>>>; SHARDS],
    /// Slots each shard starts with, at its first insert.
    presize: usize,
    /// Retired records each shard keeps (at most [`RETIRED_MAX`]).
    retired_max: usize,
    /// Set when a record is retired, cleared by [`free_retired`](Self::free_retired):
    /// with no evictions (results expire before `max_retained` is reached), a purge
    /// then takes no shard lock.
    any_retired: CachePadded<AtomicBool>,
}

/// One shard: slots direct-mapped by sequence, and the records that did not fit.
struct Shard<T> {
    /// A power of two long once used (empty until the first insert: a builder may make
    /// a backend and replace it before use). `Option<Arc<_>>` is one pointer.
    slots: Vec<Option<Arc<T>>>,
    /// Slots in use.
    occupied: usize,
    /// Records whose slot was taken, by the hash of their ID.
    overflow: HashTable<Arc<T>>,
    /// Records removed by [`IdIndex::retire`] and not yet freed (both handles, so
    /// that the removing thread writes nothing to the record): the shard's next
    /// inserts free them, two each, or [`IdIndex::free_retired`] all of them. Its
    /// buffer is allocated once, at the shard's first retire.
    retired: Vec<(Arc<T>, Arc<T>)>,
}

/// Most retired records a shard keeps: at most 128 wait to be freed in all.
const RETIRED_MAX: usize = 4;

fn shard_of(id: &PredictionId) -> usize {
    shard_of_sequence(id.sequence())
}

/// The shard of the ID whose [`PredictionId::sequence`] this is.
fn shard_of_sequence(sequence: u32) -> usize {
    sequence as usize & (SHARDS - 1)
}

/// The hash of an ID in the overflow table: its random bits folded. Only a queue
/// makes the IDs inserted, so clients cannot choose colliding keys.
fn id_hash(id: &PredictionId) -> u64 {
    let (hi, lo) = id.as_uuid().as_u64_pair();
    hi ^ lo
}

impl<T: Keyed> IdIndex<T> {
    /// An empty index sized for about `expected` records (the backend passes its
    /// `max_retained`; predictions in flight come on top). Each shard's slots start at
    /// most [`PRESIZE_MAX`] long and grow as needed. Retired records kept for later
    /// inserts to free number at most an eighth of `expected` (and 128).
    pub(super) fn new(expected: usize) -> Self {
        let share = (expected / SHARDS).clamp(MIN_SLOTS, PRESIZE_MAX);
        Self {
            shards: std::array::from_fn(|_| {
                CachePadded::new(Mutex::new(Shard {
                    slots: Vec::new(),
                    occupied: 0,
                    overflow: HashTable::new(),
                    retired: Vec::new(),
                }))
            }),
            presize: share.next_power_of_two(),
            retired_max: (expected / (8 * SHARDS)).min(RETIRED_MAX),
            any_retired: CachePadded::new(AtomicBool::new(false)),
        }
    }

    /// Adds a record; its ID must not be in the index already. Frees, after the
    /// lock, up to two records retired from the shard: the thread that allocates
    /// records frees them, so that its allocator reuses memory in its own cache.
    pub(super) fn insert(&self, record: Arc<T>) {
        let retired = {
            let mut shard = lock(&self.shards[shard_of(record.id())]);
            if shard.slots.is_empty() {
                shard.slots.resize(self.presize, None);
            }
            shard.insert(record);
            (shard.retired.pop(), shard.retired.pop())
        };
        drop(retired);
    }

    /// Removes `record` as [`remove`](Self::remove) does, but leaves it to the
    /// shard's next inserts to free, unless the shard keeps its share of retired
    /// records already; then it is freed here, after the lock.
    ///
    /// Used for evictions, which run where a prediction finishes (a worker, or a
    /// cancelling task). Freed there, a record's memory would go to that thread's
    /// allocator cache, and the submitting thread's next allocation would pull it
    /// from the other core's cache.
    ///
    /// `sequence` is the record's ID's [`PredictionId::sequence`], passed so that
    /// the record's memory, long out of cache by the time it is evicted, is not read
    /// here (only if it sits in the overflow table, which is rare).
    pub(super) fn retire(&self, sequence: u32, record: Arc<T>) {
        debug_assert_eq!(sequence, record.id().sequence());
        let mut shard = lock(&self.shards[shard_of_sequence(sequence)]);
        let Some(removed) = shard.take(sequence, &record) else {
            drop(shard);
            return;
        };
        if shard.retired.len() < self.retired_max {
            if shard.retired.capacity() == 0 {
                shard.retired.reserve_exact(self.retired_max);
            }
            shard.retired.push((removed, record));
            // Under the shard's lock, after the push; loaded first so that the line
            // stays shared while the flag is set. Relaxed is enough: once this is
            // done, the flag is `true` in its modification order (the value read, or
            // this store) until a `free_retired` swaps it out, and that call sweeps
            // this shard after the push. Had its sweep come before, the mutex would
            // make its swap happen before this load, which then could not read a
            // value older than the swap.
            if !self.any_retired.load(Ordering::Relaxed) {
                self.any_retired.store(true, Ordering::Relaxed);
            }
            return;
        }
        drop(shard);
        drop((removed, record));
    }

    /// Frees every retired record, so that none waits long once submits stop (the
    /// backend calls this from its purge). Each shard keeps its buffer.
    pub(super) fn free_retired(&self) {
        if !self.any_retired.swap(false, Ordering::Relaxed) {
            return;
        }
        for shard in &self.shards {
            let mut taken: [Option<(Arc<T>, Arc<T>)>; RETIRED_MAX] = Default::default();
            {
                let mut shard = lock(shard);
                for slot in &mut taken {
                    *slot = shard.retired.pop();
                }
            }
            drop(taken);
        }
    }

    /// The record with this ID.
    pub(super) fn find(&self, id: &PredictionId) -> Option<Arc<T>> {
        let shard = lock(&self.shards[shard_of(id)]);
        if let Some(slot) = shard.slot(id)
            && let Some(record) = &shard.slots[slot]
            && record.id() == id
        {
            return Some(Arc::clone(record));
        }
        if shard.overflow.is_empty() {
            return None;
        }
        shard.overflow.find(id_hash(id), |r| r.id() == id).cloned()
    }

    /// Takes `record` out (found by pointer), returning the index's handle on it so
    /// that the caller frees it after the lock is released.
    pub(super) fn remove(&self, record: &Arc<T>) -> Option<Arc<T>> {
        let sequence = record.id().sequence();
        let mut shard = lock(&self.shards[shard_of_sequence(sequence)]);
        shard.take(sequence, record)
    }

    /// Most retired records each shard keeps (for tests).
    #[cfg(test)]
    pub(super) fn retired_max(&self) -> usize {
        self.retired_max
    }

    /// Records held, and slots allocated (for tests).
    #[cfg(test)]
    fn sizes(&self) -> (usize, usize, usize) {
        let mut held = 0;
        let mut slots = 0;
        let mut overflow = 0;
        for shard in &self.shards {
            let shard = lock(shard);
            held += shard.slots.iter().flatten().count() + shard.overflow.len();
            slots += shard.slots.len();
            overflow += shard.overflow.len();
        }
        (held, slots, overflow)
    }
}

impl<T: Keyed> Shard<T> {
    /// Takes `record`, whose ID's sequence is `sequence`, out (found by pointer).
    /// Reads the record only if it is not in its slot.
    fn take(&mut self, sequence: u32, record: &Arc<T>) -> Option<Arc<T>> {
        if let Some(slot) = self.slot_of(sequence)
            && self.slots[slot]
                .as_ref()
                .is_some_and(|r| Arc::ptr_eq(r, record))
        {
            self.occupied -= 1;
            return self.slots[slot].take();
        }
        if self.overflow.is_empty() {
            return None;
        }
        match self
            .overflow
            .find_entry(id_hash(record.id()), |r| Arc::ptr_eq(r, record))
        {
            Ok(found) => Some(found.remove().0),
            Err(_) => None,
        }
    }

    /// The ID's slot, if the shard has slots.
    fn slot(&self, id: &PredictionId) -> Option<usize> {
        self.slot_of(id.sequence())
    }

    /// The slot of the ID whose [`PredictionId::sequence`] this is, if the shard has
    /// slots.
    fn slot_of(&self, sequence: u32) -> Option<usize> {
        let len = self.slots.len();
        (len > 0).then(|| (sequence >> SHARD_BITS) as usize & (len - 1))
    }

    fn insert(&mut self, record: Arc<T>) {
        let len = self.slots.len();
        let slot = self.slot(record.id()).expect("slots allocated");
        if self.slots[slot].is_some() && self.overflow.len() >= len / 8 && self.occupied >= len / 2
        {
            // Too many records for the slots: double them and place everything again.
            // Amortized over the inserts that filled them; a shard never shrinks.
            let old = std::mem::replace(&mut self.slots, vec![None; len * 2]);
            let spilled = std::mem::take(&mut self.overflow);
            self.occupied = 0;
            for r in old.into_iter().flatten().chain(spilled) {
                self.place(r);
            }
        }
        self.place(record);
    }

    /// Puts a record in its slot, or in the overflow table if the slot is taken.
    fn place(&mut self, record: Arc<T>) {
        let slot = self.slot(record.id()).expect("slots allocated");
        if self.slots[slot].is_none() {
            self.slots[slot] = Some(record);
            self.occupied += 1;
        } else {
            self.overflow
                .insert_unique(id_hash(record.id()), record, |r| id_hash(r.id()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rec(PredictionId);

    impl Keyed for Rec {
        fn id(&self) -> &PredictionId {
            &self.0
        }
    }

    fn rec(sequence: u32) -> Arc<Rec> {
        Arc::new(Rec(PredictionId::sequenced(sequence)))
    }

    /// Consecutive IDs fill the slots without spilling, and every one is found.
    #[test]
    fn consecutive_ids_take_slots_of_their_own() {
        let index = IdIndex::new(SHARDS * 64);
        let records: Vec<_> = (1_000..1_000 + 64 * SHARDS as u32).map(rec).collect();
        for r in &records {
            index.insert(Arc::clone(r));
        }
        assert_eq!(index.sizes(), (records.len(), records.len(), 0));
        for r in &records {
            let found = index.find(r.id()).expect("found");
            assert!(Arc::ptr_eq(&found, r));
        }
    }

    /// A record that outlives a lap of the slots keeps its slot; the newer record that
    /// finds the slot taken spills. Both are found and removed, each unaffected by the
    /// other.
    #[test]
    fn a_record_older_than_a_lap_keeps_its_slot_and_the_newer_one_spills() {
        let index = IdIndex::new(SHARDS * MIN_SLOTS);
        let lap = (SHARDS * MIN_SLOTS) as u32;
        let old = rec(7);
        let new = rec(7 + lap);
        index.insert(Arc::clone(&old));
        index.insert(Arc::clone(&new));
        assert_eq!(index.sizes().2, 1, "one spilled");
        assert!(Arc::ptr_eq(&index.find(old.id()).expect("old"), &old));
        assert!(Arc::ptr_eq(&index.find(new.id()).expect("new"), &new));
        assert!(Arc::ptr_eq(&index.remove(&old).expect("removed"), &old));
        assert!(index.find(old.id()).is_none());
        assert!(Arc::ptr_eq(&index.find(new.id()).expect("new"), &new));
        assert!(Arc::ptr_eq(&index.remove(&new).expect("removed"), &new));
        assert_eq!(index.sizes().0, 0);
    }

    /// Removal is by pointer: another record with the same ID is not removed.
    #[test]
    fn removal_is_by_pointer() {
        let index = IdIndex::new(0);
        let kept = rec(3);
        index.insert(Arc::clone(&kept));
        let twin = Arc::new(Rec(*kept.id()));
        assert!(index.remove(&twin).is_none());
        assert!(index.find(kept.id()).is_some());
    }

    /// IDs from elsewhere (random, so random slots) and more records than slots: the
    /// slots grow, few records spill, and all are found.
    #[test]
    fn random_ids_grow_the_slots_and_are_all_found() {
        let index = IdIndex::new(0);
        let records: Vec<_> = (0..20_000)
            .map(|_| Arc::new(Rec(PredictionId::new_v4())))
            .collect();
        for r in &records {
            index.insert(Arc::clone(r));
        }
        let (held, slots, overflow) = index.sizes();
        assert_eq!(held, records.len());
        assert!(slots >= records.len() / 2, "{slots} slots");
        assert!(overflow <= slots / 4, "{overflow} spilled of {slots}");
        for r in &records {
            assert!(Arc::ptr_eq(&index.find(r.id()).expect("found"), r));
        }
        for r in &records {
            assert!(index.remove(r).is_some());
        }
        assert_eq!(index.sizes().0, 0);
        assert!(index.find(records[0].id()).is_none());
    }

    /// A retired record leaves the index at once. Its shard keeps up to
    /// `RETIRED_MAX` of them, freed two by each later insert into that shard (and
    /// none by inserts into others); one more is freed at once.
    #[test]
    fn a_retired_record_is_freed_by_later_inserts_into_its_shard() {
        let index = IdIndex::new(SHARDS * 64);
        let step = SHARDS as u32;
        let old: Vec<_> = (0..=RETIRED_MAX as u32)
            .map(|i| rec(3 + i * step))
            .collect();
        for r in &old {
            index.insert(Arc::clone(r));
        }
        for r in &old {
            index.retire(r.id().sequence(), Arc::clone(r));
            assert!(index.find(r.id()).is_none(), "removed at once");
        }
        // The test's handle and the two the shard keeps, for those kept.
        let kept = &old[..RETIRED_MAX];
        assert!(kept.iter().all(|r| Arc::strong_count(r) == 3));
        assert_eq!(
            Arc::strong_count(&old[RETIRED_MAX]),
            1,
            "over the cap: freed"
        );
        index.insert(rec(4));
        assert!(
            kept.iter().all(|r| Arc::strong_count(r) == 3),
            "other shard"
        );
        index.insert(rec(3 + 100 * step));
        let freed = kept.iter().filter(|r| Arc::strong_count(r) == 1).count();
        assert_eq!(freed, 2, "two per insert");
        index.insert(rec(3 + 101 * step));
        assert!(kept.iter().all(|r| Arc::strong_count(r) == 1), "all freed");
        // A record not in the index: nothing kept.
        let stranger = rec(3 + 200 * step);
        index.retire(stranger.id().sequence(), Arc::clone(&stranger));
        assert_eq!(Arc::strong_count(&stranger), 1);
    }

    /// A record in the overflow table is retired too, and the one in the slot stays
    /// found; retiring a twin (same ID, another record) changes nothing.
    #[test]
    fn a_spilled_record_is_retired_and_its_slot_neighbour_kept() {
        // 256 slots a shard, and 4 retired kept.
        let index = IdIndex::new(SHARDS * 256);
        let lap = (SHARDS * 256) as u32;
        let in_slot = rec(7);
        let spilled = rec(7 + lap);
        index.insert(Arc::clone(&in_slot));
        index.insert(Arc::clone(&spilled));
        assert_eq!(index.sizes().2, 1, "one spilled");
        index.retire(spilled.id().sequence(), Arc::clone(&spilled));
        assert!(index.find(spilled.id()).is_none());
        assert_eq!(Arc::strong_count(&spilled), 3, "kept for a later insert");
        assert!(Arc::ptr_eq(
            &index.find(in_slot.id()).expect("kept"),
            &in_slot
        ));
        assert_eq!(index.sizes().0, 1);
        let twin = Arc::new(Rec(*in_slot.id()));
        index.retire(twin.id().sequence(), Arc::clone(&twin));
        assert_eq!(Arc::strong_count(&twin), 1);
        assert!(Arc::ptr_eq(
            &index.find(in_slot.id()).expect("kept"),
            &in_slot
        ));
    }

    /// `free_retired` frees every shard's retired records, with no insert.
    #[test]
    fn free_retired_frees_them_all() {
        let index = IdIndex::new(SHARDS * 64);
        let records: Vec<_> = (0..SHARDS as u32 * 2).map(rec).collect();
        for r in &records {
            index.insert(Arc::clone(r));
        }
        for r in &records {
            index.retire(r.id().sequence(), Arc::clone(r));
        }
        assert!(records.iter().all(|r| Arc::strong_count(r) == 3));
        index.free_retired();
        assert!(records.iter().all(|r| Arc::strong_count(r) == 1));
        assert_eq!(index.sizes().0, 0);
    }

    /// An index for few records keeps at most an eighth of them retired: none at
    /// all below `8 * SHARDS`.
    #[test]
    fn a_small_index_keeps_few_retired_records() {
        assert_eq!(IdIndex::<Rec>::new(8 * SHARDS - 1).retired_max, 0);
        assert_eq!(IdIndex::<Rec>::new(16 * SHARDS).retired_max, 2);
        assert_eq!(IdIndex::<Rec>::new(1_000_000).retired_max, RETIRED_MAX);
        let index = IdIndex::new(10);
        let r = rec(5);
        index.insert(Arc::clone(&r));
        index.retire(r.id().sequence(), Arc::clone(&r));
        assert_eq!(Arc::strong_count(&r), 1, "freed at once");
    }

    /// An unknown ID is not found, in empty and in filled shards.
    #[test]
    fn an_unknown_id_is_not_found() {
        let index = IdIndex::<Rec>::new(100);
        assert!(index.find(&PredictionId::new_v4()).is_none());
        index.insert(rec(5));
        assert!(index.find(&PredictionId::sequenced(5)).is_none());
    }

    /// Against a `HashMap`: queue-made IDs (their counter wrapping past `u32::MAX`, and
    /// some counters repeated), random IDs, removals in and out of order, lookups of
    /// present and absent IDs. (Written by the reviewer of this index.)
    #[test]
    fn agrees_with_a_hash_map_under_mixed_operations() {
        use std::collections::HashMap;
        for seed in 0..20u64 {
            // xorshift64: a reproducible sequence per seed.
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let index = IdIndex::new((next() % 5000) as usize);
            let mut model: HashMap<PredictionId, Arc<Rec>> = HashMap::new();
            let mut live: Vec<Arc<Rec>> = Vec::new();
            let mut seq = u32::MAX - 3000;
            for _ in 0..60_000 {
                match next() % 10 {
                    0..=4 => {
                        let r = match next() % 8 {
                            0 => Arc::new(Rec(PredictionId::new_v4())),
                            1 => rec((next() % 64) as u32),
                            _ => {
                                seq = seq.wrapping_add(1);
                                rec(seq)
                            }
                        };
                        index.insert(Arc::clone(&r));
                        model.insert(*r.id(), Arc::clone(&r));
                        live.push(r);
                    }
                    5..=7 if !live.is_empty() => {
                        // Mostly the oldest (as evictions are), sometimes any.
                        let i = if next() % 4 == 0 {
                            (next() as usize) % live.len()
                        } else {
                            0
                        };
                        let r = live.swap_remove(i);
                        assert!(Arc::ptr_eq(&index.remove(&r).expect("present"), &r));
                        assert!(index.remove(&r).is_none(), "removed twice");
                        model.remove(r.id());
                    }
                    _ => {
                        if let Some(r) = live.get((next() as usize) % live.len().max(1)) {
                            assert!(Arc::ptr_eq(&index.find(r.id()).expect("found"), r));
                        }
                        let probe = PredictionId::sequenced(seq);
                        assert_eq!(index.find(&probe).is_some(), model.contains_key(&probe));
                    }
                }
            }
            for r in &live {
                assert!(Arc::ptr_eq(
                    &index.find(r.id()).expect("found at the end"),
                    r
                ));
            }
            assert_eq!(index.sizes().0, model.len());
        }
    }

    /// IDs that collide whatever the slots' length (not made by a queue: all end in
    /// the same 32 bits) stay in the hash table: the slots do not grow for them.
    #[test]
    fn ids_that_always_collide_do_not_grow_the_slots() {
        let index = IdIndex::new(0);
        let records: Vec<_> = (0..20_000)
            .map(|_| {
                let mut b = *uuid::Uuid::new_v4().as_bytes();
                b[12..].copy_from_slice(&[0, 0, 0, 0]);
                Arc::new(Rec(PredictionId::from(uuid::Uuid::from_bytes(b))))
            })
            .collect();
        for r in &records {
            index.insert(Arc::clone(r));
        }
        let (held, slots, overflow) = index.sizes();
        assert_eq!((held, overflow), (records.len(), records.len() - 1));
        // All in one shard, which keeps its first slots.
        assert_eq!(slots, MIN_SLOTS, "the slots grew");
        for r in &records {
            assert!(Arc::ptr_eq(&index.find(r.id()).expect("found"), r));
            assert!(index.remove(r).is_some());
        }
        assert_eq!(index.sizes().0, 0);
    }

    /// The queue's pattern: a sliding window of consecutive IDs, a million in all,
    /// wider than the presized slots: the slots grow once or twice to hold the
    /// window, and no record stays spilled.
    #[test]
    fn a_sliding_window_of_consecutive_ids_fits_the_slots() {
        let index = IdIndex::new(100);
        let window = 50_000;
        let mut live = std::collections::VecDeque::new();
        for s in 0..1_000_000u32 {
            let r = rec(s.wrapping_add(0xFFF0_0000));
            index.insert(Arc::clone(&r));
            live.push_back(r);
            if live.len() > window {
                let old = live.pop_front().expect("some");
                assert!(index.remove(&old).is_some());
            }
        }
        let (held, slots, overflow) = index.sizes();
        assert_eq!(held, window);
        assert!(slots <= 4 * window, "{slots} slots for {window}");
        assert_eq!(overflow, 0);
    }
}
