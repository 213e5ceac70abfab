//! What the admin console's control commands do to one pool: PAUSE / RESUME / KILL hold or
//! open its gate, RECONNECT starts a new generation. The console applies them to every pool
//! of a database (see [`crate::control`]); a reload calls [`BackendPool::reconnect`] too.

use std::time::{Duration, Instant};

use super::gate::{GateError, Hold};
use super::slots::ConnectFailure;
use super::{BackendPool, CheckoutError};
use crate::protocol::sqlstate;

impl BackendPool {
    /// Waits while PAUSE or KILL holds the pool, within the checkout's `query_wait_timeout`
    /// (57P03 when it runs out, 57P01 when KILL ends the wait).
    pub(super) async fn pass_gate(&self, started: Instant) -> Result<(), CheckoutError> {
        let waited = self.settings.query_wait_timeout();
        let database = self.database.clone();
        match self.gate.pass(started + waited).await {
            Ok(()) => Ok(()),
            Err(GateError::Expired) => Err(CheckoutError::Paused { database, waited }),
            Err(GateError::Killed) => Err(CheckoutError::Killed { database }),
        }
    }

    /// PAUSE: new checkouts wait (no error) until [`BackendPool::resume`]; running
    /// transactions go on. Returns the previous hold. The pause is complete once
    /// [`BackendPool::in_use`] is 0.
    pub fn pause(&self) -> Option<Hold> {
        self.gate.close(Hold::Paused)
    }

    /// RESUME: lets the waiting clients through in arrival order; returns what held the pool
    /// (`None`: it was not held).
    pub fn resume(&self) -> Option<Hold> {
        self.gate.open()
    }

    /// What holds the pool's checkouts (PAUSE or KILL), if anything.
    pub fn hold(&self) -> Option<Hold> {
        self.gate.hold()
    }

    /// Backend connections borrowed by clients or being opened: what a PAUSE waits for.
    pub fn in_use(&self) -> u32 {
        let occupancy = self.slots.occupancy();
        occupancy.open.saturating_sub(occupancy.idle)
    }

    /// RECONNECT: every connection open now closes when it is next released (idle ones
    /// now); new ones are opened as clients need them. Also what a reload calls when the
    /// pool's target or login changed.
    pub fn reconnect(&self) {
        self.generations.bump();
        // Every idle connection counts as idled out: the gap to the bump is lock-protected,
        // and a connection given back after it is closed by its flag.
        for _ in self.slots.reap(Instant::now(), Some(Duration::ZERO), 0) {
            self.metrics.discarded("reconnect");
        }
    }

    /// Connections still open that a RECONNECT (or KILL) marked to close: WAIT_CLOSE waits
    /// for 0, SHOW SERVERS reports it as `close_needed`.
    pub fn close_needed(&self) -> u32 {
        self.generations.close_needed()
    }

    /// KILL: holds the pool like PAUSE, ends every wait for a connection with 57P01, and
    /// closes the connections (idle ones now, borrowed ones as their killed clients drop
    /// them). Ending the sessions themselves is the session layer's part.
    pub fn kill(&self) {
        self.gate.close(Hold::Killed);
        self.gate.kill_waiters();
        let killed = CheckoutError::Killed {
            database: self.database.clone(),
        };
        self.slots.fail_waiters(&ConnectFailure {
            sqlstate: sqlstate::ADMIN_SHUTDOWN,
            message: killed.to_string(),
        });
        self.reconnect();
    }
}
