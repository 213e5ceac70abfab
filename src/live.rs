//! The part of the proxy's state that a configuration reload replaces: the configuration
//! itself, the users clients log in as, the pool registry and the client TLS configuration.
//!
//! They are swapped in together, as one [`Live`] value behind an [`ArcSwap`], so a login that
//! starts during a reload sees one consistent generation (never the new users with the old
//! databases). Readers take a snapshot with one atomic load and no lock; sessions keep their
//! own `Arc<BackendPool>`, so swapping the registry never disturbs a running client.

use std::sync::Arc;

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
pub struct LiveState(ArcSwap<Live>);

impl LiveState {
    /// Starts with the state built at startup.
    pub fn new(live: Live) -> Self {
        LiveState(ArcSwap::from_pointee(live))
    }

    /// A snapshot of the current generation: cheap (no lock, no reference count on the fast
    /// path), for reads that do not outlive the caller's current step.
    pub fn load(&self) -> arc_swap::Guard<Arc<Live>> {
        self.0.load()
    }

    /// A snapshot to keep across awaits (a login holds its generation until it is routed).
    pub fn snapshot(&self) -> Arc<Live> {
        self.0.load_full()
    }

    /// Installs a new generation; sessions see it from their next read.
    pub fn replace(&self, live: Live) {
        self.0.store(Arc::new(live));
    }
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

/// Metrics read the pools of the generation in force at each scrape.
impl crate::metrics::PoolStateSource for crate::session::SessionContext {
    fn pool_states(&self) -> Vec<crate::metrics::PoolState> {
        self.live.load().pools.pool_states()
    }
}
