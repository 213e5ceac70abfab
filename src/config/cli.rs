//! Command-line interface types (clap derive), parsed by `main.rs`.
//!
//! Running needs either `--config FILE` or `--backend URL` (quick mode). With a file, the
//! listener/metrics/TLS/log/pool flags override the file's values; every flag also has an
//! environment variable so containers can be configured without a shell.

use super::file::MetricsListen;
use super::quick::COMMAND_LINE;
use super::{ClientTlsMode, Config, ConfigError, LogFormat, PinningMode, PoolMode, QuickOptions};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// pgferry: PostgreSQL connection-pooling proxy for serverless workloads.
///
/// Run with a config file (`--config pgferry.toml`) or in quick mode with one backend URL
/// (`--backend postgres://USER:PASSWORD@HOST:5432/DBNAME`).
#[derive(Debug, Clone, Parser)]
#[command(name = "pgferry", version)]
pub struct Cli {
    /// Something other than running the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Configuration file to run with. Cannot be combined with --backend. The flags below,
    /// when given, override the file's values.
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        env = "PGFERRY_CONFIG",
        conflicts_with = "backend"
    )]
    pub config: Option<PathBuf>,

    /// Quick mode without a file: postgres://USER:PASSWORD@HOST[:PORT]/DBNAME[?sslmode=MODE&sslrootcert=FILE].
    /// Clients log in as USER with PASSWORD; pgferry logs in to the backend the same way.
    #[arg(
        long,
        value_name = "URL",
        env = "PGFERRY_BACKEND",
        hide_env_values = true
    )]
    pub backend: Option<String>,

    /// Client listener address [default: 0.0.0.0:6432]. Overrides listen.addr of --config.
    #[arg(long, value_name = "ADDR", env = "PGFERRY_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Pool mode [default: transaction]. With --config, applies to every database.
    #[arg(long, value_enum, value_name = "MODE", env = "PGFERRY_POOL_MODE")]
    pub pool_mode: Option<PoolMode>,

    /// Backend connections per (database, user) pool, 1-10000 [default: 20]. With --config,
    /// applies to every database.
    #[arg(long, value_name = "N", env = "PGFERRY_POOL_SIZE", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pool_size: Option<u32>,

    /// What transaction pooling does with statements whose effects outlive a transaction
    /// (session advisory locks, LISTEN, temp tables, WITH HOLD cursors, SQL PREPARE, LOAD):
    /// "pin" keeps the client on its backend for the rest of the session, "ignore" does
    /// nothing (like PgBouncer), "error" refuses them with 0A000 [default: pin]. Overrides
    /// pooling.pinning of --config.
    #[arg(long, value_enum, value_name = "MODE", env = "PGFERRY_PINNING")]
    pub pinning: Option<PinningMode>,

    /// Client-facing TLS certificate chain (PEM). Overrides tls.cert_file of --config.
    #[arg(long, value_name = "FILE", env = "PGFERRY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// Client-facing TLS private key (PEM). Overrides tls.key_file of --config.
    #[arg(long, value_name = "FILE", env = "PGFERRY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Client TLS policy. Overrides tls.mode of --config. Quick-mode default: require when
    /// --tls-cert and --tls-key are given, else disable.
    #[arg(long, value_enum, value_name = "MODE", env = "PGFERRY_TLS_MODE")]
    pub tls_mode: Option<ClientTlsMode>,

    /// Metrics and health HTTP address, or "off" [default: 0.0.0.0:9930]. Overrides
    /// metrics.listen of --config.
    #[arg(long, value_name = "ADDR|off", env = "PGFERRY_METRICS_LISTEN")]
    pub metrics_listen: Option<MetricsListen>,

    /// Log format [default: human]. Overrides log.format of --config.
    #[arg(long, value_enum, value_name = "FORMAT", env = "PGFERRY_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log filter such as "info" or "pgferry=debug,info" [default: info]. Overrides log.level
    /// of --config; RUST_LOG, when set, wins over both.
    #[arg(long, value_name = "FILTER", env = "PGFERRY_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Async runtime worker threads, 0 = one per CPU core [default: 0]. 1 gives the lowest
    /// added latency on hosts with one or two busy cores. Overrides runtime.worker_threads of
    /// --config.
    #[arg(long, value_name = "N", env = "PGFERRY_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// Park clients idle this long (to twice this long), e.g. "10s"; "0" never parks
    /// [default: 10s]. Overrides limits.client_park_after of --config.
    #[arg(long, value_name = "DURATION", env = "PGFERRY_CLIENT_PARK_AFTER", value_parser = super::units::parse_duration)]
    pub client_park_after: Option<std::time::Duration>,
}

/// Subcommands; without one, pgferry runs the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Validate a configuration file (including certificate and CA files) and print the pools
    /// it defines; exits non-zero with a precise error otherwise.
    CheckConfig {
        /// The configuration file to check.
        file: PathBuf,
    },
    /// Print a SCRAM-SHA-256 secret for users[].scram_secret, from a password read on stdin.
    HashPassword {
        /// Read the password as one line from stdin without prompting (for scripts).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Compute pool_size per pool and per replica from an RDS instance class's default
    /// max_connections, and print a config snippet.
    Sizing(crate::sizing::SizingArgs),
    /// Print an RDS IAM database authentication token (as `aws rds generate-db-auth-token`
    /// does) from the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN variables.
    RdsToken(crate::aws::command::RdsTokenArgs),
}

impl Cli {
    /// The configuration to run with: the file with flag overrides applied, or quick mode from
    /// `--backend`; always validated. Errors if neither or both of `--config`/`--backend` are set.
    pub fn resolve_config(&self) -> Result<Config, ConfigError> {
        match (&self.config, &self.backend) {
            (Some(path), None) => {
                let (mut config, origin) = Config::load_file_unvalidated(path)?;
                self.apply_overrides(&mut config);
                config.validate_in(&origin)?;
                Ok(config)
            }
            (None, Some(url)) => {
                let mut config = Config::quick_unvalidated(&self.quick_options(url))?;
                self.apply_overrides(&mut config);
                config.validate_in(COMMAND_LINE)?;
                Ok(config)
            }
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                COMMAND_LINE,
                "--config",
                "cannot be combined with --backend; use one of them",
            )),
            (None, None) => Err(ConfigError::invalid(
                COMMAND_LINE,
                "--config/--backend",
                "one of them is required to run the proxy (see --help)",
            )),
        }
    }

    fn quick_options(&self, url: &str) -> QuickOptions {
        QuickOptions {
            backend_url: url.to_string(),
            listen: self.listen,
            pool_mode: self.pool_mode,
            pool_size: self.pool_size,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_mode: self.tls_mode,
            metrics_listen: self.metrics_listen,
        }
    }

    /// Applies every flag that was given; idempotent on a quick-mode config built from them.
    fn apply_overrides(&self, config: &mut Config) {
        if let Some(addr) = self.listen {
            config.listen.addr = addr;
        }
        if let Some(metrics) = self.metrics_listen {
            config.metrics = metrics.into();
        }
        config.tls.mode = self.tls_mode.unwrap_or(config.tls.mode);
        if let Some(cert) = &self.tls_cert {
            config.tls.cert_file = Some(cert.clone());
        }
        if let Some(key) = &self.tls_key {
            config.tls.key_file = Some(key.clone());
        }
        config.log.format = self.log_format.unwrap_or(config.log.format);
        config.pooling.pinning = self.pinning.unwrap_or(config.pooling.pinning);
        config.runtime.worker_threads =
            self.worker_threads.unwrap_or(config.runtime.worker_threads);
        config.limits.client_park_after = self
            .client_park_after
            .unwrap_or(config.limits.client_park_after);
        if let Some(level) = &self.log_level {
            config.log.level = level.clone();
        }
        for db in &mut config.databases {
            db.pool_mode = self.pool_mode.unwrap_or(db.pool_mode);
            db.pool_size = self.pool_size.unwrap_or(db.pool_size);
        }
    }
}
