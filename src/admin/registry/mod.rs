//! What the console shows about live connections: a registry of client sessions (server
//! connections are listed per pool, see `server::shown`).
//!
//! Registration happens on rare paths (login, backend connect) and may lock. What changes per
//! transaction (a client's state, which client a server serves, when it last asked) is kept in
//! Relaxed atomics the session writes next to what it already updates, so the hot path gains
//! no allocation, lock or syscall. Times come from a coarse clock (see [`Clock`]) for the same
//! reason: reading it is one atomic load.

mod client;
mod clock;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub use client::{ClientEntry, ClientInfo, ClientSnapshot, NewClient};
pub use clock::{format_time, Clock};

/// Every logged-in client session (pool clients and console clients), by client id.
pub struct Registry {
    clients: Mutex<HashMap<i32, Arc<ClientInfo>>>,
    /// The coarse clock shared by every session of this proxy.
    pub clock: Arc<Clock>,
}

impl Registry {
    /// An empty registry with its clock (the clock ticks once [`Clock::start`] is called).
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry {
            clients: Mutex::new(HashMap::new()),
            clock: Clock::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, Arc<ClientInfo>>> {
        // The map stays consistent across a panic (inserts and removes are single steps).
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a client that just logged in; the entry removes it again when dropped.
    pub fn register(self: &Arc<Self>, new: NewClient) -> ClientEntry {
        let info = Arc::new(ClientInfo::new(new, &self.clock));
        self.lock().insert(info.id, Arc::clone(&info));
        ClientEntry::new(info, Arc::downgrade(self))
    }

    fn remove(&self, id: i32) {
        self.lock().remove(&id);
    }

    /// The registered clients, ordered by id (a copy: the lock is not held while the console
    /// formats them).
    pub fn clients(&self) -> Vec<Arc<ClientInfo>> {
        let mut clients: Vec<_> = self.lock().values().cloned().collect();
        clients.sort_by_key(|c| c.id);
        clients
    }

    /// The client with this id (the process id of its BackendKeyData), if it is still here.
    pub fn client(&self, id: i32) -> Option<Arc<ClientInfo>> {
        self.lock().get(&id).cloned()
    }

    /// How many clients are registered.
    pub fn client_count(&self) -> usize {
        self.lock().len()
    }
}
