//! One client session as the console sees it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use super::{Clock, Registry};
use crate::metrics::{ClientState, ClientStateGuard};
use crate::pool::BackendPool;

/// What the session knows at login, to register it.
pub struct NewClient {
    /// The process id of the BackendKeyData pgferry gave the client (`client` in the logs).
    pub id: i32,
    /// The user it logged in as (not the pool's backend user), shared with the user store.
    pub user: Arc<str>,
    /// The pool serving it, whose name is the database the client asked for; `None` for
    /// console sessions.
    pub pool: Option<Arc<BackendPool>>,
    /// For console sessions, the console name asked for (`pgferry` or `pgbouncer`).
    pub console: Option<&'static str>,
    /// The client's address (None if the socket could not tell).
    pub peer: Option<SocketAddr>,
    /// pgferry's address of the connection.
    pub local: Option<SocketAddr>,
    /// Whether the session is encrypted.
    pub tls: bool,
    /// From the startup packet (later `SET application_name` is not followed).
    pub application_name: String,
}

/// A registered client: the facts of [`NewClient`] (boxed strings: every idle client carries
/// one of these), plus a few atomics the session updates.
pub struct ClientInfo {
    /// See [`NewClient`] for these fields.
    pub id: i32,
    pub user: Arc<str>,
    pub pool: Option<Arc<BackendPool>>,
    console: Option<&'static str>,
    pub peer: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub tls: bool,
    pub application_name: Box<str>,
    /// When the login completed.
    pub connected_at: SystemTime,
    /// `ClientState as u8`.
    state: AtomicU8,
    /// Coarse-clock ms of the last request (when the client last asked for a backend).
    request_ms: AtomicU64,
    /// Named prepared statements the client holds, as of its last transaction.
    prepared: AtomicU32,
    /// Why the session is pinned, and since when; empty when it is not (rare changes).
    pins: Mutex<Vec<(&'static str, SystemTime)>>,
}

/// A consistent-enough copy of a client's changing fields, read by the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSnapshot {
    pub state: ClientState,
    pub request_ms: u64,
    pub prepared: u32,
}

impl ClientInfo {
    /// The database the client asked for: its pool's name (shared with the pool, so every
    /// idle client does not carry a copy), or the console name.
    pub fn database(&self) -> &str {
        match &self.pool {
            Some(pool) => &pool.database,
            None => self.console.unwrap_or(crate::config::RESERVED_DATABASE),
        }
    }

    pub(super) fn new(new: NewClient, clock: &Clock) -> Self {
        ClientInfo {
            id: new.id,
            user: new.user,
            pool: new.pool,
            console: new.console,
            peer: new.peer,
            local: new.local,
            tls: new.tls,
            application_name: new.application_name.into(),
            connected_at: SystemTime::now(),
            state: AtomicU8::new(ClientState::Idle as u8),
            request_ms: AtomicU64::new(clock.now_ms()),
            prepared: AtomicU32::new(0),
            pins: Mutex::new(Vec::new()),
        }
    }

    /// The changing fields, now.
    pub fn snapshot(&self) -> ClientSnapshot {
        let state = match self.state.load(Ordering::Relaxed) {
            s if s == ClientState::Active as u8 => ClientState::Active,
            s if s == ClientState::Waiting as u8 => ClientState::Waiting,
            _ => ClientState::Idle,
        };
        ClientSnapshot {
            state,
            request_ms: self.request_ms.load(Ordering::Relaxed),
            prepared: self.prepared.load(Ordering::Relaxed),
        }
    }

    /// The pin reasons and when each began (empty when not pinned).
    pub fn pins(&self) -> Vec<(&'static str, SystemTime)> {
        self.pins.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// The session's handle on its registration, which also counts it in
/// `pgferry_client_connections` (it wraps the [`ClientStateGuard`], so one call updates both).
/// Dropping it unregisters the client.
pub struct ClientEntry {
    info: Arc<ClientInfo>,
    registry: Weak<Registry>,
    gauge: Option<ClientStateGuard>,
}

impl ClientEntry {
    pub(super) fn new(info: Arc<ClientInfo>, registry: Weak<Registry>) -> Self {
        ClientEntry {
            info,
            registry,
            gauge: None,
        }
    }

    /// Adds the metrics guard, so state changes reach `pgferry_client_connections` too.
    pub fn with_gauge(mut self, gauge: ClientStateGuard) -> Self {
        self.gauge = Some(gauge);
        self
    }

    /// The registered facts.
    pub fn info(&self) -> &Arc<ClientInfo> {
        &self.info
    }

    /// Moves the session to `state`: the gauge, plus one Relaxed store (and, when the client
    /// starts waiting for a backend, one load of the coarse clock and one store).
    pub fn set(&mut self, state: ClientState, clock: &Clock) {
        if let Some(gauge) = self.gauge.as_mut() {
            gauge.set(state);
        }
        self.info.state.store(state as u8, Ordering::Relaxed);
        if state == ClientState::Waiting {
            self.info
                .request_ms
                .store(clock.now_ms(), Ordering::Relaxed);
        }
    }

    /// The state last set.
    pub fn state(&self) -> ClientState {
        self.info.snapshot().state
    }

    /// Records how many named prepared statements the client holds.
    pub fn set_prepared(&self, count: usize) {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        self.info.prepared.store(count, Ordering::Relaxed);
    }

    /// The session was pinned for `reason` (rare: locks).
    pub fn pinned(&self, reason: &'static str) {
        if let Ok(mut pins) = self.info.pins.lock() {
            pins.push((reason, SystemTime::now()));
        }
    }

    /// The pin for `reason` was lifted (rare: locks).
    pub fn unpinned(&self, reason: &'static str) {
        if let Ok(mut pins) = self.info.pins.lock() {
            pins.retain(|(r, _)| *r != reason);
        }
    }
}

impl Drop for ClientEntry {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self.info.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle client carries one: growth here is memory per client (see benches).
    #[test]
    fn a_client_record_stays_small() {
        let size = std::mem::size_of::<ClientInfo>();
        assert!(size <= 192, "ClientInfo is {size} bytes");
    }

    #[test]
    fn entries_unregister_when_dropped_and_mirror_state() {
        let registry = Registry::new();
        let new = |id| NewClient {
            id,
            user: "app".into(),
            pool: None,
            console: Some("pgferry"),
            peer: None,
            local: None,
            tls: false,
            application_name: String::new(),
        };
        let mut a = registry.register(new(1));
        let b = registry.register(new(2));
        a.set(ClientState::Waiting, &registry.clock);
        a.pinned("listen");
        let found = registry
            .client(1)
            .map(|c| (c.snapshot().state, c.pins().len()));
        assert_eq!(found, Some((ClientState::Waiting, 1)));
        drop(b);
        let ids: Vec<i32> = registry.clients().iter().map(|c| c.id).collect();
        assert_eq!(ids, [1]);
        drop(a);
        assert_eq!(registry.client_count(), 0);
    }
}
