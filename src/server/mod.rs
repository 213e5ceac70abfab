//! Backend connections: reaching PostgreSQL (TCP + TLS) and logging in.
//!
//! A [`ServerConn`] is one authenticated backend connection; the session relay borrows it
//! from the pool (`crate::pool`) and must return it clean (idle, in sync) or mark it dirty
//! so the pool closes it.

mod conn;
mod error;
mod login;
mod prepared_set;
mod settings;
pub mod shown;
mod stream;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use crate::config::BackendTlsMode;

pub use conn::{send_cancel, ServerConn};
pub use error::ServerError;
pub use prepared_set::{ServerPrepared, StatementId};
pub use settings::{Alignment, VersionedMap};
pub use shown::{ServerInfo, ServerList, ServerSnapshot};
pub use stream::ServerStream;

/// Everything needed to open (and cancel on) connections to one backend as one user; built
/// once per pool by the pool layer and shared by every connection of that pool.
#[derive(Debug, Clone)]
pub struct BackendTarget {
    /// pgferry database name (for logs and client-facing messages).
    pub database: String,
    pub host: String,
    pub port: u16,
    /// Database name sent to the backend.
    pub dbname: String,
    /// Backend user to log in as.
    pub user: String,
    /// Password for cleartext / md5 / SCRAM; `None` only works with trust auth.
    pub password: Option<String>,
    pub tls_mode: BackendTlsMode,
    /// Built by `tls::client_config`; required unless mode is Disable (Prefer without it
    /// stays plaintext).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Bound on TCP connect + TLS + login, on cancel requests and on health checks.
    pub connect_timeout: Duration,
    /// Extra StartupMessage parameters, e.g. `application_name=pgferry`.
    pub startup_params: Vec<(String, String)>,
    /// Bound of the per-connection set of prepared `pgf_<n>` statements (LRU).
    pub max_prepared_statements: usize,
}

impl BackendTarget {
    /// A plaintext target on 127.0.0.1:5432 as user `u`, database `db`: for unit tests that
    /// need a target but never connect.
    #[cfg(test)]
    pub(crate) fn for_unit_tests() -> Self {
        BackendTarget {
            database: "db".into(),
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "db".into(),
            user: "u".into(),
            password: None,
            tls_mode: BackendTlsMode::Disable,
            tls: None,
            connect_timeout: Duration::from_secs(1),
            startup_params: Vec::new(),
            max_prepared_statements: 10,
        }
    }

    /// `host:port`, as shown in errors and logs.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A backend session's cancel key (from BackendKeyData); a CancelRequest carrying it stops
/// that session's running query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct BackendKey {
    pub process_id: i32,
    pub secret_key: i32,
}
