//! Server connections as the admin console sees them. Each `ServerConn` carries an
//! `Arc<ServerInfo>`; its pool keeps a list of weak references, so a connection that closes
//! (whatever path drops it) leaves the list by itself. It lives with the connections that
//! carry it; the console's registry of client sessions is `admin::registry`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::SystemTime;

/// A backend connection's facts, fixed at login, plus who is using it now.
#[derive(Debug)]
pub struct ServerInfo {
    /// `ServerConn::id`.
    pub id: u64,
    /// The backend's address.
    pub peer: Option<SocketAddr>,
    /// pgferry's address of the connection.
    pub local: Option<SocketAddr>,
    /// Whether the connection is encrypted.
    pub tls: bool,
    /// The backend's process id (from its BackendKeyData).
    pub remote_pid: i32,
    pub connected_at: SystemTime,
    /// The client id it is lent to; 0 while it sits in the pool.
    client: AtomicI32,
    /// Coarse-clock ms when it was last lent.
    request_ms: AtomicU64,
    /// The close-needed flag of the pool generation it was opened in (set by its pool).
    /// Weak: the pool counts close-needed connections by the flag's strong references, which
    /// the connections themselves hold.
    generation: OnceLock<Weak<AtomicBool>>,
}

/// What changes about a server connection, read by the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSnapshot {
    /// The client using it, if any.
    pub client: Option<i32>,
    pub request_ms: u64,
}

impl ServerInfo {
    /// Facts of a connection that just logged in.
    pub fn new(
        id: u64,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
        tls: bool,
        remote_pid: i32,
    ) -> Self {
        ServerInfo {
            id,
            peer,
            local,
            tls,
            remote_pid,
            connected_at: SystemTime::now(),
            client: AtomicI32::new(0),
            request_ms: AtomicU64::new(0),
            generation: OnceLock::new(),
        }
    }

    /// Shares the connection's generation flag, so SHOW SERVERS can tell `close_needed`.
    pub fn set_generation(&self, generation: &Arc<AtomicBool>) {
        let _ = self.generation.set(Arc::downgrade(generation));
    }

    /// A RECONNECT, KILL or reload marked the connection to close when released.
    pub fn close_needed(&self) -> bool {
        self.generation
            .get()
            .and_then(Weak::upgrade)
            .is_some_and(|g| g.load(Ordering::Relaxed))
    }

    /// The connection was lent to `client` (two Relaxed stores, at checkout).
    pub fn lent_to(&self, client: i32, now_ms: u64) {
        self.client.store(client, Ordering::Relaxed);
        self.request_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The connection is idle and in sync again (one Relaxed store, at checkin).
    pub fn returned(&self) {
        self.client.store(0, Ordering::Relaxed);
    }

    /// The changing fields, now.
    pub fn snapshot(&self) -> ServerSnapshot {
        let client = self.client.load(Ordering::Relaxed);
        ServerSnapshot {
            client: (client != 0).then_some(client),
            request_ms: self.request_ms.load(Ordering::Relaxed),
        }
    }
}

/// The open connections of one pool.
#[derive(Debug, Default)]
pub struct ServerList {
    servers: Mutex<Vec<Weak<ServerInfo>>>,
}

impl ServerList {
    /// Adds a connection that just opened (rare path). Entries of closed connections are
    /// dropped here, so the list stays as long as the pool is large.
    pub fn add(&self, server: &Arc<ServerInfo>) {
        if let Ok(mut servers) = self.servers.lock() {
            servers.retain(|s| s.strong_count() > 0);
            servers.push(Arc::downgrade(server));
        }
    }

    /// The connections still open, oldest first.
    pub fn live(&self) -> Vec<Arc<ServerInfo>> {
        self.servers
            .lock()
            .map(|s| s.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_connections_leave_the_list() {
        let list = ServerList::default();
        let a = Arc::new(ServerInfo::new(1, None, None, false, 10));
        let b = Arc::new(ServerInfo::new(2, None, None, false, 11));
        list.add(&a);
        list.add(&b);
        drop(a);
        let live: Vec<u64> = list.live().iter().map(|s| s.id).collect();
        assert_eq!(live, [2]);
        b.lent_to(7, 5);
        assert_eq!(
            b.snapshot(),
            ServerSnapshot {
                client: Some(7),
                request_ms: 5
            }
        );
        b.returned();
        assert_eq!(b.snapshot().client, None);
    }
}
