//! `max_db_connections`: a cap on the connections of all pools of one database, handed out
//! in arrival order across the pools.
//!
//! Every place of a capped pool also holds one unit of the cap. While the cap is not reached
//! the pools behave exactly as uncapped ones (one extra lock only when a connection is
//! opened). When a client finds its pool with room but the database at its cap, the cap is
//! *pressed*: an idle connection of another pool is closed to make room (as PgBouncer does, so
//! a quiet pool's idle connections cannot starve a busy one), and until nobody waits for the
//! cap any more, every connection that is closed, and every one returned to a pool nobody of
//! which waits, goes to the longest-waiting client of the whole database. Waits in all pools
//! of a database share `query_wait_timeout`, so the client with the earliest deadline is the
//! one that arrived first.
//!
//! A connection returned to a pool whose own clients wait goes to the database's
//! longest-waiting client only if that client's pool holds no connection, or at least two
//! fewer than this one: handing it over means closing this backend and logging in a new one,
//! and between pools that are already even that would cost a backend login per transaction
//! (measured: 161 logins for 418 transactions of two saturated users under a cap of 3, against
//! 9 for 314 with this rule) while each pool's own returns serve its clients soon anyway.
//!
//! Locks: a pool's lock may be held while taking the cap's (in [`Slots::take`]), never the
//! reverse; scans over the pools take one pool lock at a time and hold nothing else.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Instant;

use super::{Grant, PoolConn, Slot, Slots};

/// The cap shared by the pools of one database.
pub struct DbCap<C: PoolConn> {
    state: Mutex<CapState>,
    /// The pools under this cap (pools are never added on the checkout path).
    members: RwLock<Vec<Weak<Slots<C>>>>,
    /// Someone waits for a unit, or the cap is exceeded after a shrink: returned connections
    /// then take the slow, fair path. Written under the state lock, read relaxed on checkin.
    pressed: AtomicBool,
}

struct CapState {
    limit: u32,
    /// Units held by the member pools' places.
    open: u32,
    /// Counts clients that found the cap reached: a hand-out that found nobody waiting gives
    /// its unit back only if no client hit the cap meanwhile (else that client could be left
    /// waiting beside a free unit).
    epoch: u64,
}

impl<C: PoolConn> DbCap<C> {
    /// A cap of `limit` connections, with no member pool yet.
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(DbCap {
            state: Mutex::new(CapState {
                limit,
                open: 0,
                epoch: 0,
            }),
            members: RwLock::new(Vec::new()),
            pressed: AtomicBool::new(false),
        })
    }

    /// The configured cap.
    pub fn limit(&self) -> u32 {
        self.lock().limit
    }

    /// Connections of all member pools together (open, idle or being opened).
    pub fn open(&self) -> u32 {
        self.lock().open
    }

    /// Changes the cap live. Growing hands the new units to waiting clients at once;
    /// shrinking closes idle connections of the member pools until within the cap, and
    /// borrowed ones as they come back.
    pub fn set_limit(&self, limit: u32) {
        {
            let mut state = self.lock();
            state.limit = limit;
            if state.open > limit {
                self.pressed.store(true, Ordering::Relaxed);
            }
        }
        while self.over_limit() {
            let Some(conn) = self.members().find_map(|m| m.evict_one_idle()) else {
                break;
            };
            drop(conn);
            self.lock().open -= 1;
        }
        loop {
            {
                let mut state = self.lock();
                if state.open >= state.limit {
                    return;
                }
                state.open += 1;
            }
            if !self.hand_out() {
                return;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, CapState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live member pools. Collected (one small allocation) so that no lock is held while
    /// each pool's lock is taken; called only while the cap is pressed or on connection close.
    fn members(&self) -> impl Iterator<Item = Arc<Slots<C>>> {
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        members
            .iter()
            .filter_map(Weak::upgrade)
            .collect::<Vec<_>>()
            .into_iter()
    }

    pub(super) fn join(&self, slots: &Arc<Slots<C>>) {
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        members.retain(|m| m.strong_count() > 0);
        members.push(Arc::downgrade(slots));
    }

    pub(super) fn is_pressed(&self) -> bool {
        self.pressed.load(Ordering::Relaxed)
    }

    fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Clears `pressed` if no client hit the cap since `epoch` was read and the cap is not
    /// exceeded: the caller has just seen that nobody waits.
    fn unpress_if_quiet(&self, epoch: u64) {
        let state = self.lock();
        if state.epoch == epoch && state.open <= state.limit {
            self.pressed.store(false, Ordering::Relaxed);
        }
    }

    fn over_limit(&self) -> bool {
        let state = self.lock();
        state.open > state.limit
    }

    /// Takes a unit if the cap allows; else, when the caller is about to queue for one
    /// (`queueing`), marks the cap pressed.
    pub(super) fn try_take(&self, queueing: bool) -> bool {
        let mut state = self.lock();
        if state.open < state.limit {
            state.open += 1;
            return true;
        }
        if queueing {
            state.epoch += 1;
            self.pressed.store(true, Ordering::Relaxed);
        }
        false
    }

    /// A unit is no longer held by any place: back to the cap, or to a waiting client.
    pub(super) fn give_back_unit(&self) {
        {
            let mut state = self.lock();
            if !self.is_pressed() {
                state.open -= 1;
                return;
            }
        }
        self.hand_out();
    }

    /// Hands a unit the caller holds to the longest-waiting client of the database whose pool
    /// has room, else gives it back (and unpresses the cap if nobody hit it meanwhile).
    /// True if a client got it.
    fn hand_out(&self) -> bool {
        loop {
            let epoch = {
                let mut state = self.lock();
                if state.open > state.limit {
                    state.open -= 1;
                    return false;
                }
                state.epoch
            };
            match self.earliest_waiting(None) {
                Some((_, pool)) => {
                    if pool.grant_cap_place() {
                        return true;
                    }
                }
                None => {
                    let mut state = self.lock();
                    if state.epoch == epoch {
                        state.open -= 1;
                        self.pressed.store(false, Ordering::Relaxed);
                        return false;
                    }
                }
            }
        }
    }

    /// The member pool (other than `except`) with room whose head client waits longest.
    fn earliest_waiting(&self, except: Option<&Slots<C>>) -> Option<(Instant, Arc<Slots<C>>)> {
        self.members()
            .filter(|m| except.is_none_or(|e| !std::ptr::eq(e, Arc::as_ptr(m))))
            .filter_map(|m| m.head_if_room().map(|deadline| (deadline, m)))
            .min_by_key(|(deadline, _)| *deadline)
    }

    /// A client of `except` hit the cap: close one idle connection of another pool to make
    /// room (its unit goes to the longest-waiting client).
    pub(super) fn evict_idle_elsewhere(&self, except: &Slots<C>) {
        let evicted = self
            .members()
            .filter(|m| !std::ptr::eq(except, Arc::as_ptr(m)))
            .find_map(|m| m.evict_one_idle());
        if let Some(conn) = evicted {
            drop(conn);
            self.give_back_unit();
        }
    }
}

/// A clean connection comes back while the cap is pressed. It is closed and its unit goes to
/// the longest-waiting client of another pool when nobody of its own pool waits, or when that
/// client waits longer than this pool's head and this pool [outnumbers](Slots::outnumbers) its
/// pool; it is also closed when the cap was lowered below the connections open. Otherwise it
/// stays in its pool (its head client, else the idle list).
pub(super) fn keep_idle_under_pressure<C: PoolConn>(slot: Slot<C>, conn: C) {
    let slots = Arc::clone(&slot.slots);
    let Some(cap) = slots.cap.clone() else {
        return slot.keep_local(conn);
    };
    let epoch = cap.epoch();
    let own = slots.oldest_deadline();
    let other = cap.earliest_waiting(Some(&slots));
    if own.is_none() && other.is_none() {
        // Nobody waits any more: back to the fast path (unless a client hit the cap meanwhile).
        cap.unpress_if_quiet(epoch);
    }
    let serve_other = match (&other, own) {
        (Some((theirs, pool)), Some(ours)) => *theirs < ours && slots.outnumbers(pool),
        (Some(_), None) => true,
        (None, _) => false,
    };
    if !serve_other && !cap.over_limit() {
        return slot.keep_local(conn);
    }
    slot.forget(conn);
    match other.filter(|_| serve_other) {
        Some((_, pool)) if pool.grant_cap_place() => {}
        _ => {
            cap.hand_out();
        }
    }
}

impl<C: PoolConn> Slots<C> {
    /// True if this pool holds more than one connection more than `other`, or `other` holds
    /// none: then giving up a connection for `other`'s client evens the pools out. Between
    /// pools that are already even, each serves its own queue, since a swap costs a backend
    /// close and a new login per transaction.
    fn outnumbers(&self, other: &Slots<C>) -> bool {
        let theirs = other.lock().open;
        theirs == 0 || theirs + 1 < self.lock().open
    }

    /// Deadline of the head client, if it waits and the pool has room for a new connection.
    fn head_if_room(&self) -> Option<Instant> {
        let state = self.lock();
        if state.open >= state.size {
            return None;
        }
        let head = state.waiters.iter().find(|w| !w.sender.is_closed());
        head.map(|w| w.deadline)
    }

    /// Gives the head client a new place, backed by a unit the caller holds. False (unit
    /// still the caller's) if the pool has no room or nobody waits any more.
    fn grant_cap_place(self: &Arc<Self>) -> bool {
        let mut state = self.lock();
        if state.open >= state.size || state.waiters.is_empty() {
            return false;
        }
        state.open += 1;
        match Slots::offer(&mut state, Grant::Open(self.armed_slot())) {
            None => true,
            Some(unused) => {
                unused.disarm();
                state.open -= 1;
                false
            }
        }
    }

    /// Takes the coldest idle connection out of the pool, freeing its place; its unit is
    /// the caller's to give back.
    fn evict_one_idle(&self) -> Option<C> {
        let mut state = self.lock();
        if state.idle.is_empty() {
            return None;
        }
        state.open -= 1;
        Some(state.idle.remove(0))
    }

    /// Returns the units of `places` places this pool no longer holds.
    pub(super) fn return_to_cap(&self, places: u32) {
        if let Some(cap) = &self.cap {
            for _ in 0..places {
                cap.give_back_unit();
            }
        }
    }
}

impl<C: PoolConn> Slot<C> {
    /// Closes `conn` and gives up this place without handing it to anyone; the caller owns
    /// the freed unit of the cap.
    fn forget(mut self, conn: C) {
        self.armed = false;
        self.slots.lock().open -= 1;
        drop(conn);
    }
}
