//! The gate in front of a pool's checkouts: open, or held by PAUSE or KILL until RESUME.
//!
//! While the gate is held, clients that need a backend wait here (in arrival order) without
//! touching the pool's places, so a paused pool opens no connection and hands none out; RESUME
//! lets the waiters through first come, first served. An open gate costs a checkout one
//! Relaxed atomic load (see [`Gate::is_held`]); the lock is taken only while the gate is held.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

/// Why the gate is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// PAUSE: running transactions finish, new ones wait.
    Paused,
    /// KILL: clients and backends were dropped; new work waits like for PAUSE.
    Killed,
}

/// Why a client waiting at the gate was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// Its deadline (`query_wait_timeout` from the start of the checkout) passed first.
    #[error("the wait ran out while the pool was held")]
    Expired,
    /// KILL dropped the waiting clients of the database.
    #[error("the database was killed")]
    Killed,
}

type Waiter = oneshot::Sender<Result<(), GateError>>;

#[derive(Default)]
struct State {
    hold: Option<Hold>,
    waiters: VecDeque<Waiter>,
}

/// Open or held; see the module documentation.
#[derive(Default)]
pub struct Gate {
    /// Mirrors `state.hold.is_some()` for the lock-free check on every checkout.
    held: AtomicBool,
    state: Mutex<State>,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True while PAUSE or KILL holds the gate. Relaxed is enough: a checkout that misses a
    /// hold set concurrently looks again after it got its connection (the pool's mutex orders
    /// the two), and PAUSE counts that connection as in use until it is given back.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    /// What holds the gate, if anything.
    pub fn hold(&self) -> Option<Hold> {
        self.lock().hold
    }

    /// Holds the gate; a KILL replaces a PAUSE (not the other way round). Returns the previous hold.
    pub fn close(&self, hold: Hold) -> Option<Hold> {
        let mut state = self.lock();
        let previous = state.hold;
        if previous != Some(Hold::Killed) {
            state.hold = Some(hold);
        }
        self.held.store(true, Ordering::Relaxed);
        previous
    }

    /// Tells every client waiting at the gate now that it was killed (KILL).
    pub fn kill_waiters(&self) {
        let waiters = std::mem::take(&mut self.lock().waiters);
        for waiter in waiters {
            // A waiter that gave up is gone; nothing to tell it.
            let _ = waiter.send(Err(GateError::Killed));
        }
    }

    /// Opens the gate and lets the waiting clients through in arrival order; returns what
    /// held it (`None`: it was open, nothing changed).
    pub fn open(&self) -> Option<Hold> {
        let (previous, waiters) = {
            let mut state = self.lock();
            self.held.store(false, Ordering::Relaxed);
            (state.hold.take(), std::mem::take(&mut state.waiters))
        };
        for waiter in waiters {
            let _ = waiter.send(Ok(()));
        }
        previous
    }

    /// Waits until the gate is open, at most until `deadline`. Returns at once when open.
    pub async fn pass(&self, deadline: Instant) -> Result<(), GateError> {
        let receiver = {
            let mut state = self.lock();
            if state.hold.is_none() {
                return Ok(());
            }
            state.waiters.retain(|w| !w.is_closed());
            let (sender, receiver) = oneshot::channel();
            state.waiters.push_back(sender);
            receiver
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, receiver).await {
            Ok(Ok(outcome)) => outcome,
            // The gate is gone with its pool: nothing holds this client any more.
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(GateError::Expired),
        }
    }

    /// Clients waiting at the gate now (for the pool's `waiting` count).
    pub fn waiting(&self) -> u32 {
        let state = self.lock();
        state.waiters.iter().filter(|w| !w.is_closed()).count() as u32
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test]
    async fn an_open_gate_lets_clients_through_at_once() {
        let gate = Gate::default();
        assert!(!gate.is_held());
        assert_eq!(gate.pass(later()).await, Ok(()));
        assert_eq!(gate.open(), None, "opening an open gate changes nothing");
    }

    #[tokio::test]
    async fn a_held_gate_releases_its_waiters_in_arrival_order() {
        let gate = Arc::new(Gate::default());
        assert_eq!(gate.close(Hold::Paused), None);
        assert!(gate.is_held());
        let (order_tx, mut order_rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..3 {
            let waiter = Arc::clone(&gate);
            let order = order_tx.clone();
            tokio::spawn(async move {
                let passed = waiter.pass(later()).await;
                let _ = order.send((i, passed));
            });
            while gate.waiting() <= i {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(gate.open(), Some(Hold::Paused));
        for i in 0..3 {
            assert_eq!(order_rx.recv().await, Some((i, Ok(()))));
        }
    }

    #[tokio::test]
    async fn a_wait_ends_at_its_deadline_and_kill_ends_every_wait() {
        let gate = Arc::new(Gate::default());
        gate.close(Hold::Paused);
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(gate.pass(soon).await, Err(GateError::Expired));
        let waiting = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move { gate.pass(later()).await })
        };
        while gate.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.close(Hold::Killed), Some(Hold::Paused));
        gate.kill_waiters();
        assert_eq!(waiting.await.ok(), Some(Err(GateError::Killed)));
        assert_eq!(gate.close(Hold::Paused), Some(Hold::Killed));
        assert_eq!(
            gate.hold(),
            Some(Hold::Killed),
            "PAUSE does not soften a KILL"
        );
    }
}
