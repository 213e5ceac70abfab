//! The part of the proxy's state that a configuration reload replaces: the configuration
//! itself, the users clients log in as, the pool registry and the client TLS configuration.
//!
//! They are swapped in together, as one [`Live`] value behind an [`ArcSwap`], so a login that
//! starts during a reload sees one consistent generation (never the new users with the old
//! databases). Readers take a snapshot with one atomic load and no lock; sessions keep their
//! own `Arc<BackendPool>`, so swapping the registry never disturbs a running client.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::auth::UserStore;
use crate::config::{ClientTlsMode, Config};
use crate::pool::PoolRegistry;

/// One generation of the reloadable state.
pub struct Live {
    pub config: Arc<Config>,
    pub users: UserStore,
    pub pools: Arc<PoolRegistry>,
    /// The client listener's TLS configuration; none when client TLS is disabled.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Live {
    /// The TLS configuration new handshakes use, if client TLS is on.
    pub fn tls_config(&self) -> Option<&Arc<rustls::ServerConfig>> {
        self.tls
            .as_ref()
            .filter(|_| self.config.tls.mode != ClientTlsMode::Disable)
    }
}

/// The current [`Live`] generation, replaced whole by a reload.
pub struct LiveState {
    current: ArcSwap<Live>,
    relay: RelaySettings,
}

impl LiveState {
    /// Starts with the state built at startup.
    pub fn new(live: Live) -> Self {
        let relay = RelaySettings::default();
        relay.update(&live.config);
        LiveState {
            current: ArcSwap::from_pointee(live),
            relay,
        }
    }

    /// A snapshot of the current generation, for reads that do not outlive the caller's
    /// current step. No lock, but a few atomic operations: the relay's per-event reads use
    /// [`LiveState::relay`] instead.
    pub fn load(&self) -> arc_swap::Guard<Arc<Live>> {
        self.current.load()
    }

    /// A snapshot to keep across awaits (a login holds its generation until it is routed).
    pub fn snapshot(&self) -> Arc<Live> {
        self.current.load_full()
    }

    /// The settings a session reads per event, as plain atomics.
    pub fn relay(&self) -> &RelaySettings {
        &self.relay
    }

    /// Installs a new generation; sessions see it from their next read.
    pub fn replace(&self, live: Live) {
        self.relay.update(&live.config);
        self.current.store(Arc::new(live));
    }
}

/// The limits a session reads on every read or wait, mirrored in atomics: a Relaxed load
/// costs what reading a field of a fixed configuration did, where a generation snapshot
/// costs several atomic operations (measured: ~480 instructions per simple transaction).
#[derive(Default)]
pub struct RelaySettings {
    max_message_size: AtomicUsize,
    client_idle_timeout_ms: AtomicU64,
    idle_transaction_timeout_ms: AtomicU64,
}

impl RelaySettings {
    fn update(&self, config: &Config) {
        let limits = &config.limits;
        self.max_message_size
            .store(limits.max_message_size, Ordering::Relaxed);
        store_ms(&self.client_idle_timeout_ms, limits.client_idle_timeout);
        store_ms(
            &self.idle_transaction_timeout_ms,
            limits.idle_transaction_timeout,
        );
    }

    /// `limits.max_message_size`.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size.load(Ordering::Relaxed)
    }

    /// `limits.client_idle_timeout` (zero: none).
    pub fn client_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.client_idle_timeout_ms.load(Ordering::Relaxed))
    }

    /// `limits.idle_transaction_timeout` (zero: none).
    pub fn idle_transaction_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_transaction_timeout_ms.load(Ordering::Relaxed))
    }
}

fn store_ms(cell: &AtomicU64, duration: Duration) {
    cell.store(
        u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// The client listener's TLS configuration `config` asks for: none when client TLS is off.
/// Loading the certificate and key is what can fail, with the file and reason.
pub fn client_tls(config: &Config) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let tls = &config.tls;
    match (tls.mode, &tls.cert_file, &tls.key_file) {
        (ClientTlsMode::Disable, _, _) => Ok(None),
        (_, Some(cert), Some(key)) => crate::tls::server_config(cert, key)
            .map(Some)
            .map_err(|e| e.to_string()),
        _ => Err("tls: cert_file and key_file are required".into()),
    }
}
