//! The places of one pool and who holds them: idle connections, borrowed ones, openers, and
//! the FIFO queue of clients waiting for one.
//!
//! A pool of `size` has `size` places. A place is held by an idle connection, by a borrowed
//! connection ([`Lent`]), or by a client opening a new connection ([`Slot`] in
//! [`Grant::Open`]). Whenever a place or a connection comes free it goes straight to the
//! longest-waiting client (hand-off), so waiting is FIFO by construction and a returned
//! connection never passes through the idle list while someone waits. Waiting arms no timer:
//! every client waits the same `query_wait_timeout`, so queue order is deadline order, and one
//! task per pool ([`Slots::expire`]) ends the waits that ran out, head first. Nothing here
//! awaits or does I/O: the lock is held only for a few pointer moves, and every guard that could
//! take the lock again in its `Drop` is dropped after the lock is released.
//!
//! The size can change while the pool runs ([`Slots::resize`]), and the pools of one database
//! may share a cap on their connections ([`cap::DbCap`]); both cost the common path nothing
//! but a comparison under the lock it already takes and one relaxed atomic load.

mod cap;
mod resize;

pub use cap::DbCap;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

/// What the pool needs to know about a connection to decide whether it may be reused.
pub trait PoolConn: Send + 'static {
    /// Idle and in sync with the protocol: safe to hand to another client.
    fn is_clean(&self) -> bool;
    /// When the connection was opened (`server_lifetime`).
    fn created(&self) -> Instant;
    /// When it last became idle (`server_idle_timeout`).
    fn last_used(&self) -> Instant;
}

/// A backend connect error, as every client waiting on the pool is told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFailure {
    /// The backend's own refusal code (see `sqlstate::login_refusal`), otherwise 08006.
    pub sqlstate: &'static str,
    pub message: String,
}

/// What a client gets from the pool, at once or after waiting its turn.
pub enum Grant<C: PoolConn> {
    /// An idle connection to use (check it before use: it may have gone stale).
    Conn(Lent<C>),
    /// A free place: the client opens a new connection in it.
    Open(Slot<C>),
    /// Opening a connection failed while this client waited.
    Failed(ConnectFailure),
    /// The client's deadline passed before its turn came.
    Expired,
}

/// The outcome of asking for a connection without waiting.
pub enum Take<C: PoolConn> {
    Now(Grant<C>),
    /// Every place is taken: the grant arrives here when it is this client's turn.
    Queued(oneshot::Receiver<Grant<C>>),
}

/// A borrowed connection together with the place it occupies. Dropping it closes the
/// connection and frees the place; [`Lent::give_back`] returns it for reuse.
pub struct Lent<C: PoolConn> {
    pub conn: C,
    slot: Slot<C>,
}

/// One place of the pool. Dropped while armed, it frees the place for the next waiter.
pub struct Slot<C: PoolConn> {
    slots: Arc<Slots<C>>,
    armed: bool,
}

/// How many connections a pool has (for metrics and the admin view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occupancy {
    /// Connections open or being opened.
    pub open: u32,
    pub idle: u32,
    /// Clients queued for a connection.
    pub waiting: u32,
}

/// The shared state of one pool's places.
pub struct Slots<C: PoolConn> {
    /// `server_lifetime` in ms (a reload may change it); 0 means none.
    max_lifetime_ms: AtomicU64,
    state: Mutex<State<C>>,
    /// Wakes the expiring task when a client queues behind nobody (its deadline is new), and
    /// when the pool is dropped (so the task ends).
    first_waiter: Arc<Notify>,
    /// The cap shared with the other pools of the database, if it has one.
    cap: Option<Arc<DbCap<C>>>,
}

struct Waiter<C: PoolConn> {
    deadline: Instant,
    sender: oneshot::Sender<Grant<C>>,
}

struct State<C: PoolConn> {
    /// Most recently returned last: reuse takes the warmest connection, and the coldest ones
    /// age out under `server_idle_timeout` when the load drops.
    idle: Vec<C>,
    /// Queued clients, each with its deadline; deadlines only grow along the queue.
    waiters: VecDeque<Waiter<C>>,
    /// Places held: idle + borrowed + being opened.
    open: u32,
    /// Places the pool may hold; after a shrink `open` may exceed it until borrowed
    /// connections come back (they are then closed).
    size: u32,
}

impl<C: PoolConn> Slots<C> {
    /// Places for `size` connections; connections older than `max_lifetime` are not reused.
    #[cfg(test)]
    pub fn new(size: u32, max_lifetime: Option<Duration>) -> Arc<Self> {
        Self::capped(size, max_lifetime, None)
    }

    /// [`Slots::new`] for a pool whose database caps its connections: every place is also a
    /// place under `cap`.
    pub fn capped(
        size: u32,
        max_lifetime: Option<Duration>,
        cap: Option<Arc<DbCap<C>>>,
    ) -> Arc<Self> {
        let slots = Arc::new(Slots {
            max_lifetime_ms: AtomicU64::new(lifetime_ms(max_lifetime)),
            state: Mutex::new(State {
                idle: Vec::new(),
                waiters: VecDeque::new(),
                open: 0,
                size,
            }),
            first_waiter: Arc::new(Notify::new()),
            cap,
        });
        if let Some(cap) = &slots.cap {
            cap.join(&slots);
        }
        slots
    }

    /// The places the pool may hold now.
    #[cfg(test)]
    pub fn size(&self) -> u32 {
        self.lock().size
    }

    fn lock(&self) -> MutexGuard<'_, State<C>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection, else a free place, else a place in the queue until `deadline`.
    /// Every wait lasts `query_wait_timeout`, so deadlines grow along the queue; a client that
    /// queues again after a discarded connection keeps its first deadline, which is raised to
    /// the last waiter's so that [`Slots::expire`] can keep looking at the head only.
    pub fn take(self: &Arc<Self>, deadline: Instant) -> Take<C> {
        let mut state = self.lock();
        if let Some(conn) = state.idle.pop() {
            return Take::Now(Grant::Conn(Lent {
                conn,
                slot: self.armed_slot(),
            }));
        }
        let mut hit_cap = false;
        if state.open < state.size {
            match &self.cap {
                Some(cap) if !cap.try_take(true) => hit_cap = true,
                _ => {
                    state.open += 1;
                    return Take::Now(Grant::Open(self.armed_slot()));
                }
            }
        }
        // Waiters that gave up leave their sender behind; drop those at the head first.
        while state.waiters.front().is_some_and(|w| w.sender.is_closed()) {
            state.waiters.pop_front();
        }
        let (sender, receiver) = oneshot::channel();
        let first = state.waiters.is_empty();
        let deadline = state
            .waiters
            .back()
            .map_or(deadline, |w| w.deadline.max(deadline));
        state.waiters.push_back(Waiter { deadline, sender });
        drop(state);
        if first {
            self.first_waiter.notify_one();
        }
        if let Some(cap) = self.cap.as_ref().filter(|_| hit_cap) {
            // The database is at its cap: an idle connection of another pool makes room.
            cap.evict_idle_elsewhere(self);
        }
        Take::Queued(receiver)
    }

    /// Ends the waits whose deadline is past `now` (they get [`Grant::Expired`]); returns the
    /// next deadline to come back at, if anyone still waits.
    pub fn expire(&self, now: Instant) -> Option<Instant> {
        let mut state = self.lock();
        while let Some(waiter) = state.waiters.front() {
            if waiter.deadline > now {
                return Some(waiter.deadline);
            }
            if let Some(waiter) = state.waiters.pop_front() {
                // A waiter that gave up is gone; nothing to tell it.
                let _ = waiter.sender.send(Grant::Expired);
            }
        }
        None
    }

    /// Notified when a client queues behind nobody, and when these places are dropped: the
    /// expiring task waits on it (holding no reference to the places while it waits).
    pub fn queue_started(&self) -> Arc<Notify> {
        Arc::clone(&self.first_waiter)
    }

    /// A free place when the pool has one (for keeping `min_pool_size` connections warm).
    pub fn take_free_place(self: &Arc<Self>) -> Option<Slot<C>> {
        let mut state = self.lock();
        // Warming never takes a unit of a pressed cap: a client of another pool needs it more.
        let room = state.open < state.size
            && self
                .cap
                .as_ref()
                .is_none_or(|c| !c.is_pressed() && c.try_take(false));
        room.then(|| {
            state.open += 1;
            self.armed_slot()
        })
    }

    /// Tells every waiting client that opening a connection failed.
    pub fn fail_waiters(&self, failure: &ConnectFailure) {
        let waiters = std::mem::take(&mut self.lock().waiters);
        for waiter in waiters {
            // A waiter that gave up is gone; nothing to tell it.
            let _ = waiter.sender.send(Grant::Failed(failure.clone()));
        }
    }

    /// Removes the idle connections past `server_lifetime` or idle for `idle_timeout`, keeping
    /// the `keep` warmest ones from the idle timeout; the caller closes the removed ones after
    /// the lock is released.
    pub fn reap(&self, now: Instant, idle_timeout: Option<Duration>, keep: u32) -> Vec<C> {
        let mut state = self.lock();
        let mut kept = Vec::with_capacity(state.idle.len());
        let mut reaped = Vec::new();
        // Newest are at the end: walk from the newest so the kept ones are the warmest.
        for conn in std::mem::take(&mut state.idle).into_iter().rev() {
            let idle_for = now.saturating_duration_since(conn.last_used());
            let idled_out = idle_timeout.is_some_and(|t| idle_for >= t);
            if self.outlived(conn.created(), now) || (idled_out && kept.len() >= keep as usize) {
                reaped.push(conn);
            } else {
                kept.push(conn);
            }
        }
        kept.reverse();
        state.idle = kept;
        // Idle connections exist only while nobody waits, so no waiter needs these places.
        state.open -= reaped.len() as u32;
        drop(state);
        self.return_to_cap(reaped.len() as u32);
        reaped
    }

    /// The database's cap this pool is under, if any.
    pub fn cap(&self) -> Option<&Arc<DbCap<C>>> {
        self.cap.as_ref()
    }

    /// The deadline of the longest-waiting live client, if any (its age for metrics).
    pub fn oldest_deadline(&self) -> Option<Instant> {
        let state = self.lock();
        let head = state.waiters.iter().find(|w| !w.sender.is_closed());
        head.map(|w| w.deadline)
    }

    /// Occupancy right now.
    pub fn occupancy(&self) -> Occupancy {
        let state = self.lock();
        Occupancy {
            open: state.open,
            idle: state.idle.len() as u32,
            waiting: state
                .waiters
                .iter()
                .filter(|w| !w.sender.is_closed())
                .count() as u32,
        }
    }

    /// True once a connection opened at `created` has lived longer than `server_lifetime`.
    pub fn outlived(&self, created: Instant, now: Instant) -> bool {
        self.max_lifetime()
            .is_some_and(|max| now.saturating_duration_since(created) >= max)
    }

    /// `server_lifetime`, if connections have one.
    pub fn max_lifetime(&self) -> Option<Duration> {
        let ms = self.max_lifetime_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// A reload changed `server_lifetime`.
    pub fn set_max_lifetime(&self, max_lifetime: Option<Duration>) {
        self.max_lifetime_ms
            .store(lifetime_ms(max_lifetime), Ordering::Relaxed);
    }

    fn armed_slot(self: &Arc<Self>) -> Slot<C> {
        Slot {
            slots: Arc::clone(self),
            armed: true,
        }
    }

    /// Hands `grant` to the longest-waiting live client; gives it back when nobody waits.
    fn offer(state: &mut State<C>, mut grant: Grant<C>) -> Option<Grant<C>> {
        while let Some(waiter) = state.waiters.pop_front() {
            match waiter.sender.send(grant) {
                Ok(()) => return None,
                Err(returned) => grant = returned,
            }
        }
        Some(grant)
    }
}

impl<C: PoolConn> Grant<C> {
    /// Takes the connection out of a grant nobody took, without its place being freed (the
    /// caller holds the lock and accounts for the place itself).
    fn disarm(self) -> Option<C> {
        match self {
            Grant::Conn(Lent { conn, mut slot }) => {
                slot.armed = false;
                Some(conn)
            }
            Grant::Open(mut slot) => {
                slot.armed = false;
                None
            }
            Grant::Failed(_) | Grant::Expired => None,
        }
    }
}

impl<C: PoolConn> Lent<C> {
    /// The connection alone, its place already accounted for by the caller.
    fn disarmed(self) -> C {
        let Lent { conn, mut slot } = self;
        slot.armed = false;
        conn
    }

    /// Returns the connection for reuse if it is clean and young enough; else closes it and
    /// frees its place. Either way the longest-waiting client is served first.
    pub fn give_back(self) {
        let Lent { conn, slot } = self;
        // A clean connection was stamped `last_used` when it became idle, moments ago: no
        // second clock read per transaction.
        if !conn.is_clean() || slot.slots.outlived(conn.created(), conn.last_used()) {
            drop(conn);
            drop(slot);
            return;
        }
        slot.keep_idle(conn);
    }
}

impl<C: PoolConn> Slot<C> {
    /// The place now holds a fresh connection: lend it to the caller.
    pub fn fill(self, conn: C) -> Lent<C> {
        Lent { conn, slot: self }
    }

    /// Puts `conn` (clean) in this place's care: to the first waiter, else the idle list.
    /// Past the pool's size (after a shrink) it is closed instead, and while the database's
    /// cap is pressed it goes wherever the longest-waiting client of the database is.
    pub fn keep_idle(self, conn: C) {
        if self.slots.cap.as_ref().is_some_and(|cap| cap.is_pressed()) {
            return cap::keep_idle_under_pressure(self, conn);
        }
        self.keep_local(conn);
    }

    /// [`Slot::keep_idle`] within this pool: its first waiter, else its idle list.
    fn keep_local(mut self, conn: C) {
        self.armed = false;
        let slots = Arc::clone(&self.slots);
        let lent = slots.armed_slot().fill(conn);
        let mut state = slots.lock();
        if state.open > state.size {
            state.open -= 1;
            drop(state);
            // The place is gone with the connection; neither may reach a waiter.
            drop(lent.disarmed());
            slots.return_to_cap(1);
            return;
        }
        if let Some(conn) = Slots::offer(&mut state, Grant::Conn(lent)).and_then(Grant::disarm) {
            state.idle.push(conn);
        }
    }

    /// Frees the place; a waiting client gets it to open a connection of its own (unless the
    /// pool shrank below its places, or another pool's client waited longer for the cap).
    fn release(&mut self) {
        self.armed = false;
        let slots = Arc::clone(&self.slots);
        let pressed = slots.cap.as_ref().is_some_and(|cap| cap.is_pressed());
        let mut state = slots.lock();
        if state.waiters.is_empty() || state.open > state.size || pressed {
            state.open -= 1;
            drop(state);
            slots.return_to_cap(1);
            return;
        }
        if let Some(unused) = Slots::offer(&mut state, Grant::Open(slots.armed_slot())) {
            unused.disarm();
            state.open -= 1;
            drop(state);
            slots.return_to_cap(1);
        }
    }
}

impl<C: PoolConn> Drop for Slots<C> {
    fn drop(&mut self) {
        self.first_waiter.notify_one();
    }
}

impl<C: PoolConn> Drop for Slot<C> {
    fn drop(&mut self) {
        if self.armed {
            self.release();
        }
    }
}

/// `server_lifetime` as stored: whole milliseconds, at least 1; 0 for none.
fn lifetime_ms(lifetime: Option<Duration>) -> u64 {
    lifetime.map_or(0, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    })
}

#[cfg(test)]
mod tests;
