//! Cancel-key registry.
//!
//! Clients only ever see proxy-issued BackendKeyData: the backend behind a client changes with
//! every transaction, and backend keys must not leak to clients. A CancelRequest (which arrives
//! on a fresh connection, on any listener) is looked up here in O(1) and forwarded to the backend
//! that is serving that client at that moment, over a new connection to that backend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::server::{send_cancel, BackendKey, BackendTarget};

/// The key pgferry hands a client in BackendKeyData.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelKey {
    pub process_id: i32,
    pub secret_key: i32,
}

/// Where a client's running query lives right now.
type BackendRef = (Arc<BackendTarget>, BackendKey);

struct Entry {
    secret_key: i32,
    /// A pool client (KILL_CLIENT may end it); false for admin console sessions.
    pool_client: bool,
    backend: Option<BackendRef>,
    /// Cancel requests for this client still on their way to the backend (shared with the
    /// session's slot).
    in_flight: Arc<InFlightCount>,
}

/// Cancel requests of one client on their way to its backend, and a wake-up when none is;
/// also the client's kill order (KILL, KILL_CLIENT), shared the same way between the registry
/// and the session.
#[derive(Default)]
struct InFlightCount {
    count: AtomicUsize,
    settled: Notify,
    /// Why an administrator ended this session; the session acts on it when the session
    /// signals change (see `SessionSignal::kills`).
    killed: OnceLock<Box<str>>,
}

/// Why a KILL_CLIENT found no client to kill.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KillClientError {
    #[error("no such client: {0}")]
    NoSuchClient(i32),
    #[error("client {0} is an admin console session; KILL_CLIENT ends pool clients only")]
    ConsoleSession(i32),
}

/// Counts one cancel request as in flight for as long as it lives.
struct InFlight(Arc<InFlightCount>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.settled.notify_waiters();
        }
    }
}

/// All live client sessions' cancel keys.
#[derive(Default)]
pub struct CancelRegistry {
    next_process_id: AtomicU32,
    entries: Mutex<HashMap<i32, Entry>>,
}

impl CancelRegistry {
    /// An empty registry shared by every listener.
    pub fn new() -> Arc<Self> {
        Arc::new(CancelRegistry::default())
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<i32, Entry>> {
        // A poisoned lock only means another thread panicked mid-update of a plain map.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Issues a fresh key for an admin console session; dropping the slot retires the key.
    pub fn register(self: &Arc<Self>) -> CancelSlot {
        self.register_in(false)
    }

    /// Issues a fresh key for a pool client (which KILL and KILL_CLIENT may end).
    pub fn register_client(self: &Arc<Self>) -> CancelSlot {
        self.register_in(true)
    }

    fn register_in(self: &Arc<Self>, pool_client: bool) -> CancelSlot {
        let secret_key = rand::random::<i32>();
        let mut entries = self.entries();
        let process_id = loop {
            // Positive, non-zero ids that do not collide with a live session.
            let id = (self.next_process_id.fetch_add(1, Ordering::Relaxed) % (i32::MAX as u32))
                as i32
                + 1;
            if !entries.contains_key(&id) {
                break id;
            }
        };
        let in_flight = Arc::new(InFlightCount::default());
        entries.insert(
            process_id,
            Entry {
                secret_key,
                pool_client,
                backend: None,
                in_flight: Arc::clone(&in_flight),
            },
        );
        CancelSlot {
            registry: Arc::clone(self),
            key: CancelKey {
                process_id,
                secret_key,
            },
            in_flight,
        }
    }

    /// The backend currently serving the client with this key, if the key is valid.
    pub fn lookup(&self, key: CancelKey) -> Option<BackendRef> {
        self.lookup_for_send(key).map(|(backend, _)| backend)
    }

    /// Like [`lookup`](Self::lookup), and marks a cancel as in flight for that client, under
    /// the same lock: the session cannot hand its backend on between the two.
    fn lookup_for_send(&self, key: CancelKey) -> Option<(BackendRef, InFlight)> {
        let entries = self.entries();
        let entry = entries.get(&key.process_id)?;
        let secret_ok: bool = entry
            .secret_key
            .to_be_bytes()
            .ct_eq(&key.secret_key.to_be_bytes())
            .into();
        if !secret_ok {
            return None;
        }
        let backend = entry.backend.clone()?;
        entry.in_flight.count.fetch_add(1, Ordering::AcqRel);
        Some((backend, InFlight(Arc::clone(&entry.in_flight))))
    }

    /// Handles a CancelRequest: forwards it if the key matches a client holding a backend.
    /// Like PostgreSQL, the requester learns nothing either way.
    ///
    /// While it travels (a new connection to the backend), the client keeps its backend (see
    /// [`CancelSlot::try_detach`]): a late cancel then reaches either an idle backend,
    /// which PostgreSQL ignores, or this client's own next statement, as it would without a
    /// pooler — never another client's statement.
    pub async fn cancel(&self, key: CancelKey) {
        let Some(((target, backend_key), _in_flight)) = self.lookup_for_send(key) else {
            tracing::debug!(
                process_id = key.process_id,
                "cancel request for no running query"
            );
            return;
        };
        if let Err(error) = send_cancel(&target, backend_key).await {
            tracing::warn!(database = %target.database, %error, "forwarding cancel request failed");
        }
    }

    fn set(&self, process_id: i32, backend: Option<BackendRef>) {
        if let Some(entry) = self.entries().get_mut(&process_id) {
            entry.backend = backend;
        }
    }

    /// Orders the pool client with this id (its BackendKeyData process id) to end with
    /// `message`; the caller then wakes the sessions (see `SessionSignal::kills`).
    pub fn kill_client(&self, process_id: i32, message: &str) -> Result<(), KillClientError> {
        let entries = self.entries();
        let entry = entries
            .get(&process_id)
            .ok_or(KillClientError::NoSuchClient(process_id))?;
        if !entry.pool_client {
            return Err(KillClientError::ConsoleSession(process_id));
        }
        let _ = entry.in_flight.killed.set(message.into());
        Ok(())
    }

    /// Number of registered sessions (for tests and introspection).
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// True when no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session's registration; it records which backend serves the client while one is held.
pub struct CancelSlot {
    registry: Arc<CancelRegistry>,
    key: CancelKey,
    in_flight: Arc<InFlightCount>,
}

impl CancelSlot {
    /// The key to send to the client.
    pub fn key(&self) -> CancelKey {
        self.key
    }

    /// The client now runs on this backend connection.
    pub fn attach(&self, target: Arc<BackendTarget>, backend_key: BackendKey) {
        self.registry
            .set(self.key.process_id, Some((target, backend_key)));
    }

    /// Detaches the backend unless a cancel request for this client is on its way to it
    /// (then the client must keep it); one locked step, so no cancel can slip in between.
    pub fn try_detach(&self) -> bool {
        let mut entries = self.registry.entries();
        if self.in_flight.count.load(Ordering::Acquire) > 0 {
            return false;
        }
        if let Some(entry) = entries.get_mut(&self.key.process_id) {
            entry.backend = None;
        }
        true
    }

    /// Resolves once no cancel request for this client is in flight (at once if none is), so a
    /// session that kept its backend for one can release it without waiting for the client.
    pub async fn cancels_settled(&self) {
        let settled = self.in_flight.settled.notified();
        tokio::pin!(settled);
        settled.as_mut().enable();
        if self.in_flight.count.load(Ordering::Acquire) > 0 {
            settled.await;
        }
    }

    /// Why an administrator ended this session (KILL, KILL_CLIENT), if one did.
    pub fn killed(&self) -> Option<&str> {
        self.in_flight.killed.get().map(|m| &**m)
    }

    /// The client no longer holds a backend: cancels have nothing to cancel.
    pub fn detach(&self) {
        self.registry.set(self.key.process_id, None);
    }
}

impl Drop for CancelSlot {
    fn drop(&mut self) {
        self.registry.entries().remove(&self.key.process_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Arc<BackendTarget> {
        Arc::new(BackendTarget::for_unit_tests())
    }

    #[test]
    fn keys_route_only_with_the_right_secret_and_only_while_attached() {
        let registry = CancelRegistry::new();
        let slot = registry.register();
        let other = registry.register();
        assert_ne!(slot.key().process_id, other.key().process_id);
        assert!(registry.lookup(slot.key()).is_none(), "no backend held yet");
        let backend = BackendKey {
            process_id: 42,
            secret_key: 7,
        };
        slot.attach(target(), backend);
        assert_eq!(registry.lookup(slot.key()).map(|(_, k)| k), Some(backend));
        let wrong = CancelKey {
            secret_key: slot.key().secret_key.wrapping_add(1),
            ..slot.key()
        };
        assert!(registry.lookup(wrong).is_none());
        let in_flight = registry.lookup_for_send(slot.key()).map(|(_, guard)| guard);
        assert!(in_flight.is_some());
        assert!(
            !slot.try_detach(),
            "a cancel on its way keeps the backend attached"
        );
        assert!(registry.lookup(slot.key()).is_some());
        drop(in_flight);
        assert!(slot.try_detach());
        assert!(registry.lookup(slot.key()).is_none());
        drop(slot);
        assert_eq!(registry.len(), 1, "a dropped session's key is retired");
        drop(other);
        assert!(registry.is_empty());
    }

    #[test]
    fn kills_reach_the_named_pool_client_only() {
        let registry = CancelRegistry::new();
        let a = registry.register_client();
        let b = registry.register_client();
        let console = registry.register();
        assert_eq!(registry.kill_client(b.key().process_id, "you"), Ok(()));
        assert_eq!(a.killed(), None);
        assert_eq!(b.killed(), Some("you"));
        let id = console.key().process_id;
        assert_eq!(
            registry.kill_client(id, "x"),
            Err(KillClientError::ConsoleSession(id))
        );
        assert_eq!(console.killed(), None);
        assert_eq!(
            registry.kill_client(-5, "x"),
            Err(KillClientError::NoSuchClient(-5))
        );
    }
}
