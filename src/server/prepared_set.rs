//! What one backend connection has prepared: a bounded LRU of `pgf_<n>` statements.
//!
//! Lives with the backend connection (not the client) and survives checkouts: that is what lets
//! a Parse be answered locally when any earlier client prepared the same statement there. The
//! bound caps server memory; the least recently used statement is closed to make room.
//!
//! A statement whose plan the server refuses (`0A000 cached plan must not change result type`)
//! is still prepared on the server under its name but unusable: it stays in the set as *stale*
//! ("maybe on the server, not usable"), so the next use closes it before preparing it again (a
//! plain re-Parse would fail with 42P05; closing a missing statement is harmless). The same
//! state records statements whose Close was skipped after an error, and every statement after
//! the client ran `DEALLOCATE ALL` / `DISCARD ALL` (which may or may not have taken effect when
//! the set is updated). Restored stale entries can push the set briefly over its bound; the next
//! insert evicts back down to it.
//!
//! Each copy also remembers the *generation* of the statement it was prepared at (see
//! `CachedStatement::generation`): after a `0A000` on any backend, copies prepared before it
//! may all hold a plan of the old result type, so a client name parsed since then is prepared
//! again on every backend whose copy is older than the name.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use std::fmt;

/// The number in a server-side statement name `pgf_<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatementId(pub u64);

impl fmt::Display for StatementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pgf_{}", self.0)
    }
}

#[derive(Debug)]
struct Slot {
    tick: u64,
    stale: bool,
    /// Generation of the statement when this copy was prepared.
    generation: u64,
    /// A clone of the statement's copy counter (see [`ServerPrepared::hold`]); dropped with
    /// the slot, so the counter follows evictions, clears and closed connections by itself.
    copy: Option<Arc<()>>,
}

/// Statements prepared on one backend connection, least recently used first.
#[derive(Debug)]
pub struct ServerPrepared {
    slots: HashMap<StatementId, Slot>,
    order: BTreeMap<u64, StatementId>,
    tick: u64,
    max: usize,
}

impl ServerPrepared {
    /// An empty set holding at most `max` statements (at least one).
    pub fn new(max: usize) -> Self {
        ServerPrepared {
            slots: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            max: max.max(1),
        }
    }

    /// The statement is prepared and usable on this server for a client name parsed at
    /// `generation` (a copy prepared at an older generation may have a stale plan).
    pub fn contains(&self, id: StatementId, generation: u64) -> bool {
        self.slots
            .get(&id)
            .is_some_and(|slot| !slot.stale && slot.generation >= generation)
    }

    /// Marks a usable statement as just used; false if it must be (re)prepared first.
    pub fn touch(&mut self, id: StatementId, generation: u64) -> bool {
        let Some(slot) = self.slots.get(&id) else {
            return false;
        };
        if slot.stale || slot.generation < generation {
            return false;
        }
        let generation = slot.generation;
        self.refresh(id, false, generation);
        true
    }

    /// Records that a Parse for `id` at `generation` is being sent. Returns the statements the
    /// caller must Close on the server *before* that Parse (replies swallowed): evicted least
    /// recently used ones, or the copy of `id` itself when one may be on the server (a Parse of
    /// an existing name fails with 42P05; closing a missing statement is harmless).
    pub fn insert(&mut self, id: StatementId, generation: u64) -> Vec<StatementId> {
        if self.slots.contains_key(&id) {
            self.refresh(id, false, generation);
            return vec![id];
        }
        let mut close = Vec::new();
        while self.slots.len() >= self.max {
            match self.pop_oldest() {
                Some(evicted) => close.push(evicted),
                None => break,
            }
        }
        self.refresh(id, false, generation);
        close
    }

    /// Ties `id`'s slot to the statement's copy counter (an `Arc` whose strong count, less
    /// the statement's own, is how many backend connections hold it: SHOW PREPARED). Called
    /// after [`ServerPrepared::insert`], on the rare path of preparing a statement on a
    /// backend; a slot that has its clone keeps it.
    pub fn hold(&mut self, id: StatementId, copies: &Arc<()>) {
        if let Some(slot) = self.slots.get_mut(&id) {
            if slot.copy.is_none() {
                slot.copy = Some(Arc::clone(copies));
            }
        }
    }

    /// Records a statement that may or may not be on the server (a Close for it was skipped
    /// after an error): it will be closed before it is ever prepared again.
    pub fn restore_stale(&mut self, id: StatementId) {
        self.refresh(id, true, 0);
    }

    /// Every statement may be gone from the server, or still there (the client sent
    /// `DEALLOCATE ALL` / `DISCARD ALL`, whose outcome is not known yet): each is closed before
    /// it is prepared again, which is right either way.
    pub fn invalidate_all(&mut self) {
        self.slots.values_mut().for_each(|slot| slot.stale = true);
    }

    /// Forgets a statement the server does not have (its Parse failed or was skipped).
    pub fn remove(&mut self, id: StatementId) {
        if let Some(slot) = self.slots.remove(&id) {
            self.order.remove(&slot.tick);
        }
    }

    /// Marks a statement whose plan the server refused (0A000) for close-and-reprepare.
    pub fn invalidate(&mut self, id: StatementId) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.stale = true;
        }
    }

    /// Forgets everything: `DISCARD ALL`, `DEALLOCATE ALL`, or a connection reset.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.order.clear();
    }

    /// Number of statements on the server (including stale ones).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Nothing prepared.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn refresh(&mut self, id: StatementId, stale: bool, generation: u64) {
        self.tick += 1;
        let tick = self.tick;
        match self.slots.get_mut(&id) {
            Some(slot) => {
                self.order.remove(&slot.tick);
                slot.tick = tick;
                slot.stale = stale;
                slot.generation = generation;
            }
            None => {
                let slot = Slot {
                    tick,
                    stale,
                    generation,
                    copy: None,
                };
                self.slots.insert(id, slot);
            }
        }
        self.order.insert(tick, id);
    }

    fn pop_oldest(&mut self) -> Option<StatementId> {
        let (_, id) = self.order.pop_first()?;
        self.slots.remove(&id);
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: StatementId = StatementId(1);
    const B: StatementId = StatementId(2);
    const C: StatementId = StatementId(3);

    #[test]
    fn evicts_least_recently_used() {
        let mut set = ServerPrepared::new(2);
        assert_eq!(set.insert(A, 0), vec![]);
        assert_eq!(set.insert(B, 0), vec![]);
        assert!(set.touch(A, 0));
        assert_eq!(set.insert(C, 0), vec![B]);
        assert!(set.contains(A, 0) && set.contains(C, 0) && !set.contains(B, 0));
        assert_eq!(set.insert(B, 0), vec![A]);
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn remove_and_clear() {
        let mut set = ServerPrepared::new(3);
        set.insert(A, 0);
        set.insert(B, 0);
        set.remove(A);
        assert!(!set.touch(A, 0));
        assert_eq!(set.len(), 1);
        set.clear();
        assert!(set.is_empty());
        assert_eq!(set.insert(C, 0), vec![]);
    }

    #[test]
    fn stale_statement_is_closed_before_reprepare() {
        let mut set = ServerPrepared::new(2);
        set.insert(A, 0);
        set.invalidate(A);
        assert!(!set.contains(A, 0));
        assert!(!set.touch(A, 0));
        assert_eq!(set.insert(A, 0), vec![A]);
        assert!(set.contains(A, 0));
    }

    #[test]
    fn a_copy_older_than_the_name_is_reprepared() {
        let mut set = ServerPrepared::new(2);
        set.insert(A, 1);
        assert!(set.touch(A, 0) && set.touch(A, 1));
        assert!(!set.touch(A, 2), "the name was parsed after a newer 0A000");
        assert_eq!(set.insert(A, 2), vec![A], "closed before the new Parse");
        assert!(set.touch(A, 2));
    }

    #[test]
    fn invalidate_all_closes_everything_before_reuse() {
        let mut set = ServerPrepared::new(3);
        set.insert(A, 0);
        set.insert(B, 0);
        set.invalidate_all();
        assert!(!set.touch(A, 0) && !set.touch(B, 0));
        assert_eq!(set.insert(A, 0), vec![A]);
        assert_eq!(set.insert(C, 0), vec![]);
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn restored_entries_over_the_bound_are_evicted_by_the_next_insert() {
        let mut set = ServerPrepared::new(1);
        set.insert(A, 0);
        set.restore_stale(B);
        assert_eq!(set.len(), 2);
        assert!(!set.contains(B, 0));
        assert_eq!(set.insert(C, 0), vec![A, B]);
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn held_copies_are_counted_until_evicted() {
        let copies = std::sync::Arc::new(());
        let mut set = ServerPrepared::new(1);
        set.insert(A, 0);
        set.hold(A, &copies);
        set.hold(A, &copies);
        assert!(set.touch(A, 0));
        assert_eq!(
            std::sync::Arc::strong_count(&copies),
            2,
            "one copy, held once"
        );
        assert_eq!(set.insert(B, 0), vec![A]);
        assert_eq!(
            std::sync::Arc::strong_count(&copies),
            1,
            "evicted copies are not counted"
        );
    }
}
