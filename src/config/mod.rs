//! Configuration: the TOML schema, defaults, validation and overrides.
//!
//! One `pgferry.toml` describes listeners, TLS, users and the databases (pools) that clients may
//! reach. Everything else in the proxy reads the validated [`Config`]; nothing re-parses text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod bounds;
pub mod cli;
mod describe;
mod error;
mod file;
pub mod keys;
mod names;
mod overrides;
mod quick;
mod raw;
mod units;
mod validate;

#[cfg(test)]
mod tests;

pub use error::ConfigError;
pub use file::{MetricsListen, DEFAULT_LISTEN, DEFAULT_METRICS_LISTEN};
pub use names::UnknownName;
pub use overrides::{PoolSettings, UserLimits};
pub use quick::QuickOptions;
pub use units::{format_duration, parse_duration, parse_size};
pub use validate::{RESERVED_DATABASE, RESERVED_DATABASE_ALIAS};

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: ListenConfig,
    pub limits: Limits,
    pub metrics: MetricsConfig,
    pub tls: ClientTls,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub pooling: PoolingConfig,
    pub runtime: RuntimeConfig,
    pub admin: AdminConfig,
    pub users: Vec<UserConfig>,
    pub databases: Vec<DatabaseConfig>,
}

/// Shape of the async runtime. One worker per core is best for throughput under many clients;
/// on hosts with one or two cores shared with other busy processes a single worker adds less
/// latency per query, because a wakeup never has to hop to another thread (measured in
/// benches/RESULTS.md), so operators get to choose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Worker threads; 0 means one per CPU core.
    pub worker_threads: usize,
}

/// Who may use the admin console (the virtual databases `pgferry` and `pgbouncer`). Console
/// users log in with their ordinary `[[users]]` credentials, so there is one way to
/// authenticate; being named here is what grants the console.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// Full control: every SHOW and the control commands (PAUSE, RELOAD, KILL, ...).
    pub users: Vec<String>,
    /// Read-only: SHOW commands only, for monitoring agents and exporters.
    pub stats_users: Vec<String>,
}

/// What transaction mode does with statements whose effects outlive a transaction (session
/// advisory locks, LISTEN, temporary tables, WITH HOLD cursors, SQL PREPARE, LOAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinningMode {
    /// Keep the client on its backend for the rest of the session (correct, costs a connection).
    Pin,
    /// Do nothing special, as PgBouncer does (the state may leak to other clients or vanish).
    Ignore,
    /// Refuse such statements with 0A000 naming the feature, for teams that forbid them.
    Error,
}

/// Transaction-pooling behaviour: pinning and prepared-statement memory bounds.
#[derive(Debug, Clone)]
pub struct PoolingConfig {
    /// Default: pin.
    pub pinning: PinningMode,
    /// Named prepared statements one client may hold (default 1000); more → 53400.
    pub max_prepared_statements_per_client: usize,
    /// Statements kept prepared on one backend connection, LRU (default 500).
    pub max_prepared_statements_per_server: usize,
    /// Distinct statements in the process-wide cache before unused ones are dropped
    /// (default 10000).
    pub max_cached_statements: usize,
}

impl Default for PoolingConfig {
    fn default() -> Self {
        PoolingConfig {
            pinning: PinningMode::Pin,
            max_prepared_statements_per_client: 1000,
            max_prepared_statements_per_server: 500,
            max_cached_statements: 10_000,
        }
    }
}

/// Where clients connect.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Client listener address (default 0.0.0.0:6432).
    pub addr: SocketAddr,
}

/// Bounds that protect the proxy from misbehaving or abandoned clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Clients beyond this get 53300 at startup (default 10000).
    pub max_client_connections: usize,
    /// Largest client message accepted, in bytes (default 64 MiB); larger → 08P01 and disconnect.
    pub max_message_size: usize,
    /// Largest startup packet (default 10000 bytes, as in PostgreSQL).
    pub max_startup_packet_size: usize,
    /// Most startup parameters accepted (default 64).
    pub max_startup_parameters: usize,
    /// TLS negotiation + startup + authentication must finish within this (default 15 s).
    pub login_timeout: Duration,
    /// How long a client waits for a backend connection before 53300 (default 5 s).
    pub query_wait_timeout: Duration,
    /// Disconnect clients idle (no backend held) this long; zero disables (default 0).
    pub client_idle_timeout: Duration,
    /// Disconnect clients that hold a backend inside a transaction and stay silent this long;
    /// zero disables (default 0).
    pub idle_transaction_timeout: Duration,
    /// Clients idle (no backend held) between this long and twice this long are parked: their
    /// session leaves the async runtime and waits in the parking lot with no task, timer or
    /// reactor registration, so frozen serverless clients cost a few hundred bytes each. Zero
    /// never parks (default 10 s).
    pub client_park_after: Duration,
    /// Bound on the ROLLBACK / DISCARD ALL done before a used connection is returned (default 5 s).
    pub server_reset_timeout: Duration,
    /// Grace period for client sessions at shutdown (default 10 s).
    pub shutdown_timeout: Duration,
}

/// The side HTTP port for Prometheus and health probes.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// `None` disables the HTTP endpoint (default 0.0.0.0:9930).
    pub listen: Option<SocketAddr>,
}

/// Client-facing TLS policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTlsMode {
    /// Never TLS: SSLRequest is answered `N`.
    Disable,
    /// TLS if the client asks and a certificate is configured; plaintext also accepted.
    Allow,
    /// Only TLS sessions may log in; plaintext startup gets 28000.
    Require,
}

/// Client-facing TLS settings.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub mode: ClientTlsMode,
    /// PEM certificate chain; required unless mode is Disable.
    pub cert_file: Option<PathBuf>,
    /// PEM private key; required unless mode is Disable.
    pub key_file: Option<PathBuf>,
}

/// Which client authentication methods are acceptable.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// md5 is weak: off by default; when on, users with a plaintext password or md5 hash may use it.
    pub allow_md5: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Logging settings (RUST_LOG overrides `level`).
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// tracing-subscriber EnvFilter directive, default "info".
    pub level: String,
}

/// A user that may log in to pgferry.
#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    /// The credential clients prove knowledge of.
    pub credential: Credential,
    /// This user's own limits (one role per microservice: a noisy service must not starve the
    /// others); unset fields fall back to the database's settings.
    pub limits: UserLimits,
}

impl UserConfig {
    /// A user with no limits of its own (for programmatic configuration: tests, quick mode).
    pub fn new(name: &str, credential: Credential) -> Self {
        UserConfig {
            name: name.to_string(),
            credential,
            limits: UserLimits::default(),
        }
    }
}

/// How a user's password is stored in config.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Plaintext: usable for SCRAM, md5 and for logging in to the backend as this user.
    Plain(String),
    /// `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` as printed by `pgferry hash-password`
    /// or stored in pg_authid. Cannot be used to log in to the backend.
    ScramSecret(String),
}

/// Transaction or session pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Transaction,
    Session,
}

/// Backend TLS policy (libpq's sslmode names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendTlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A database clients may connect to, and the backend that serves it.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Name clients use in their startup packet.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Backend database name (default: same as `name`).
    pub dbname: String,
    /// If set, every client user is mapped to this backend user (one pool per database).
    pub backend_user: Option<String>,
    /// Password for `backend_user`.
    pub backend_password: Option<String>,
    pub pool_mode: PoolMode,
    /// Max backend connections per (database, user) pool (default 20).
    pub pool_size: u32,
    /// Idle backend connections kept warm per pool (default 0).
    pub min_pool_size: u32,
    /// TCP connect + TLS + backend login bound (default 5 s).
    pub connect_timeout: Duration,
    /// Close backend connections idle this long (default 600 s).
    pub server_idle_timeout: Duration,
    /// Close backend connections older than this (default 3600 s).
    pub server_lifetime: Duration,
    pub tls_mode: BackendTlsMode,
    /// CA bundle (PEM) for verify-ca / verify-full, e.g. RDS global-bundle.pem.
    pub tls_ca_file: Option<PathBuf>,
    /// Cap on the backend connections of all pools of this database together (none by
    /// default); when reached, clients of every pool are served in arrival order.
    pub max_db_connections: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_client_connections: 10_000,
            max_message_size: 64 * 1024 * 1024,
            max_startup_packet_size: 10_000,
            max_startup_parameters: 64,
            login_timeout: Duration::from_secs(15),
            query_wait_timeout: Duration::from_secs(5),
            client_idle_timeout: Duration::ZERO,
            idle_transaction_timeout: Duration::ZERO,
            client_park_after: Duration::from_secs(10),
            server_reset_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl DatabaseConfig {
    /// A database entry with production defaults, for programmatic configuration (tests, quick mode).
    pub fn new(name: &str, host: &str, port: u16) -> Self {
        DatabaseConfig {
            name: name.to_string(),
            host: host.to_string(),
            port,
            dbname: name.to_string(),
            backend_user: None,
            backend_password: None,
            pool_mode: PoolMode::Transaction,
            pool_size: 20,
            min_pool_size: 0,
            connect_timeout: Duration::from_secs(5),
            server_idle_timeout: Duration::from_secs(600),
            server_lifetime: Duration::from_secs(3600),
            tls_mode: BackendTlsMode::Prefer,
            tls_ca_file: None,
            max_db_connections: None,
        }
    }
}

impl Config {
    /// A minimal configuration with defaults everywhere: listeners on ephemeral loopback ports,
    /// TLS disabled, no users or databases. Callers add those.
    pub fn minimal() -> Self {
        Config {
            listen: ListenConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            limits: Limits::default(),
            metrics: MetricsConfig {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            },
            tls: ClientTls {
                mode: ClientTlsMode::Disable,
                cert_file: None,
                key_file: None,
            },
            auth: AuthConfig { allow_md5: false },
            log: LogConfig {
                format: LogFormat::Human,
                level: "info".to_string(),
            },
            users: Vec::new(),
            pooling: PoolingConfig::default(),
            runtime: RuntimeConfig::default(),
            admin: AdminConfig::default(),
            databases: Vec::new(),
        }
    }
}
