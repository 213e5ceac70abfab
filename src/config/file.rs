//! Loading `pgferry.toml`: text → raw structs → public types, then validation.

use super::bounds::{self, Bounds};
use super::raw::{Human, RawConfig, RawDatabase, RawLimits, RawPooling, RawUser};
use super::units::{parse_duration, parse_size};
use super::*;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::str::FromStr;

/// Default client listener of a file or quick-mode configuration.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 6432);
/// Default metrics/health listener of a file or quick-mode configuration.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9930);

impl Config {
    /// Reads, parses and validates a config file. Relative `cert_file`, `key_file` and
    /// `tls_ca_file` paths are resolved against the file's directory, so a config directory can
    /// be moved as a whole. Errors name the file as given.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let (config, origin) = Config::load_file_unvalidated(path)?;
        config.validate_in(&origin)?;
        Ok(config)
    }

    /// Parses and validates TOML text; `origin` names it in errors (usually the file name).
    /// Relative paths are kept as written (relative to the working directory).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config = Config::parse_unvalidated(text, origin)?;
        config.validate_in(origin)?;
        Ok(config)
    }

    /// Loads a file without validating it, so command-line overrides can be applied first.
    /// Returns the origin string used in error messages.
    pub(crate) fn load_file_unvalidated(path: &Path) -> Result<(Config, String), ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: origin.clone(),
            source,
        })?;
        let mut config = Config::parse_unvalidated(&text, &origin)?;
        if let Some(dir) = path.parent() {
            config.resolve_relative_paths(dir);
        }
        Ok((config, origin))
    }

    fn parse_unvalidated(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(origin, text, &e))?;
        Conv { file: origin }.config(raw)
    }

    fn resolve_relative_paths(&mut self, dir: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p.as_mut().filter(|p| p.is_relative()) {
                *path = dir.join(&*path);
            }
        };
        fix(&mut self.tls.cert_file);
        fix(&mut self.tls.key_file);
        for db in &mut self.databases {
            fix(&mut db.tls_ca_file);
        }
    }
}

/// Conversion context: knows the origin so every error names file and key.
struct Conv<'a> {
    file: &'a str,
}

impl Conv<'_> {
    fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.file, key, reason)
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let base = Config::minimal();
        let addr = self.addr_or("listen.addr", raw.listen.addr, DEFAULT_LISTEN)?;
        let metrics = match raw.metrics.listen {
            None => MetricsListen::Addr(DEFAULT_METRICS_LISTEN),
            Some(text) => text.parse().map_err(|r| self.err("metrics.listen", r))?,
        };
        let users = raw
            .users
            .into_iter()
            .enumerate()
            .map(|(i, u)| self.user(i, u));
        let databases = raw
            .databases
            .into_iter()
            .enumerate()
            .map(|(i, d)| self.database(i, d));
        Ok(Config {
            listen: ListenConfig { addr },
            limits: self.limits(raw.limits)?,
            metrics: metrics.into(),
            tls: ClientTls {
                mode: self.name_or("tls.mode", raw.tls.mode, base.tls.mode)?,
                cert_file: raw.tls.cert_file,
                key_file: raw.tls.key_file,
            },
            auth: AuthConfig {
                allow_md5: raw.auth.allow_md5.unwrap_or(base.auth.allow_md5),
            },
            pooling: self.pooling(raw.pooling)?,
            runtime: RuntimeConfig {
                worker_threads: self.int_or(
                    "runtime.worker_threads",
                    raw.runtime.worker_threads,
                    0,
                    bounds::WORKER_THREADS,
                )?,
            },
            log: LogConfig {
                format: self.name_or("log.format", raw.log.format, base.log.format)?,
                level: raw.log.level.unwrap_or(base.log.level),
            },
            admin: AdminConfig {
                users: raw.admin.users.unwrap_or_default(),
                stats_users: raw.admin.stats_users.unwrap_or_default(),
            },
            users: users.collect::<Result<_, _>>()?,
            databases: databases.collect::<Result<_, _>>()?,
        })
    }

    fn limits(&self, raw: RawLimits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let k = |name: &str| format!("limits.{name}");
        Ok(Limits {
            max_client_connections: self.int_or(
                &k("max_client_connections"),
                raw.max_client_connections,
                d.max_client_connections,
                bounds::MAX_CLIENT_CONNECTIONS,
            )?,
            max_message_size: self.size_or(
                &k("max_message_size"),
                raw.max_message_size,
                d.max_message_size,
                bounds::MAX_MESSAGE_SIZE,
            )?,
            max_startup_packet_size: self.size_or(
                &k("max_startup_packet_size"),
                raw.max_startup_packet_size,
                d.max_startup_packet_size,
                bounds::MAX_STARTUP_PACKET_SIZE,
            )?,
            max_startup_parameters: self.int_or(
                &k("max_startup_parameters"),
                raw.max_startup_parameters,
                d.max_startup_parameters,
                bounds::MAX_STARTUP_PARAMETERS,
            )?,
            login_timeout: self.dur_or(&k("login_timeout"), raw.login_timeout, d.login_timeout)?,
            query_wait_timeout: self.dur_or(
                &k("query_wait_timeout"),
                raw.query_wait_timeout,
                d.query_wait_timeout,
            )?,
            client_idle_timeout: self.dur_or(
                &k("client_idle_timeout"),
                raw.client_idle_timeout,
                d.client_idle_timeout,
            )?,
            idle_transaction_timeout: self.dur_or(
                &k("idle_transaction_timeout"),
                raw.idle_transaction_timeout,
                d.idle_transaction_timeout,
            )?,
            client_park_after: self.dur_or(
                &k("client_park_after"),
                raw.client_park_after,
                d.client_park_after,
            )?,
            server_reset_timeout: self.dur_or(
                &k("server_reset_timeout"),
                raw.server_reset_timeout,
                d.server_reset_timeout,
            )?,
            shutdown_timeout: self.dur_or(
                &k("shutdown_timeout"),
                raw.shutdown_timeout,
                d.shutdown_timeout,
            )?,
        })
    }

    fn pooling(&self, raw: RawPooling) -> Result<PoolingConfig, ConfigError> {
        let d = PoolingConfig::default();
        let k = |name: &str| format!("pooling.{name}");
        Ok(PoolingConfig {
            pinning: self.name_or(&k("pinning"), raw.pinning, d.pinning)?,
            max_prepared_statements_per_client: self.int_or(
                &k("max_prepared_statements_per_client"),
                raw.max_prepared_statements_per_client,
                d.max_prepared_statements_per_client,
                bounds::MAX_PREPARED_STATEMENTS,
            )?,
            max_prepared_statements_per_server: self.int_or(
                &k("max_prepared_statements_per_server"),
                raw.max_prepared_statements_per_server,
                d.max_prepared_statements_per_server,
                bounds::MAX_PREPARED_STATEMENTS,
            )?,
            max_cached_statements: self.int_or(
                &k("max_cached_statements"),
                raw.max_cached_statements,
                d.max_cached_statements,
                bounds::MAX_CACHED_STATEMENTS,
            )?,
        })
    }

    fn user(&self, i: usize, raw: RawUser) -> Result<UserConfig, ConfigError> {
        let key = format!("users[{i}]");
        let limits = self.user_limits(&key, &raw)?;
        let name = raw
            .name
            .ok_or_else(|| self.err(format!("{key}.name"), "is required"))?;
        let credential = match (raw.password, raw.scram_secret) {
            (Some(p), None) => Credential::Plain(p),
            (None, Some(s)) => Credential::ScramSecret(s),
            (Some(_), Some(_)) => {
                return Err(self.err(
                    key,
                    format!("user {name:?} sets both password and scram_secret; keep exactly one"),
                ))
            }
            (None, None) => {
                return Err(self.err(
                    key,
                    format!("user {name:?} needs a password or a scram_secret"),
                ))
            }
        };
        Ok(UserConfig {
            name,
            credential,
            limits,
        })
    }

    fn user_limits(&self, key: &str, raw: &RawUser) -> Result<UserLimits, ConfigError> {
        let k = |field: &str| format!("{key}.{field}");
        let int = |field: &str, v: Option<i64>, b: Bounds| {
            v.map(|v| self.in_bounds(&k(field), v, b)).transpose()
        };
        Ok(UserLimits {
            pool_size: int("pool_size", raw.pool_size, bounds::POOL_SIZE)?,
            pool_mode: raw
                .pool_mode
                .clone()
                .map(|m| self.name_or(&k("pool_mode"), Some(m), PoolMode::Transaction))
                .transpose()?,
            max_client_connections: int(
                "max_client_connections",
                raw.max_client_connections,
                bounds::MAX_CLIENT_CONNECTIONS,
            )?,
        })
    }

    fn database(&self, i: usize, raw: RawDatabase) -> Result<DatabaseConfig, ConfigError> {
        let k = |field: &str| format!("databases[{i}].{field}");
        let name = raw.name.ok_or_else(|| self.err(k("name"), "is required"))?;
        let host = raw.host.ok_or_else(|| self.err(k("host"), "is required"))?;
        let d = DatabaseConfig::new(&name, &host, 5432);
        Ok(DatabaseConfig {
            port: self.int_or(&k("port"), raw.port, d.port, bounds::PORT)?,
            dbname: raw.dbname.unwrap_or(d.dbname),
            backend_user: raw.backend_user,
            backend_password: raw.backend_password,
            pool_mode: self.name_or(&k("pool_mode"), raw.pool_mode, d.pool_mode)?,
            pool_size: self.int_or(
                &k("pool_size"),
                raw.pool_size,
                d.pool_size,
                bounds::POOL_SIZE,
            )?,
            min_pool_size: self.int_or(
                &k("min_pool_size"),
                raw.min_pool_size,
                d.min_pool_size,
                bounds::MIN_POOL_SIZE,
            )?,
            connect_timeout: self.dur_or(
                &k("connect_timeout"),
                raw.connect_timeout,
                d.connect_timeout,
            )?,
            server_idle_timeout: self.dur_or(
                &k("server_idle_timeout"),
                raw.server_idle_timeout,
                d.server_idle_timeout,
            )?,
            server_lifetime: self.dur_or(
                &k("server_lifetime"),
                raw.server_lifetime,
                d.server_lifetime,
            )?,
            tls_mode: self.name_or(&k("tls_mode"), raw.tls_mode, d.tls_mode)?,
            tls_ca_file: raw.tls_ca_file,
            max_db_connections: raw
                .max_db_connections
                .map(|v| self.in_bounds(&k("max_db_connections"), v, bounds::MAX_DB_CONNECTIONS))
                .transpose()?,
            name,
            host,
        })
    }

    fn addr_or(
        &self,
        key: &str,
        raw: Option<String>,
        default: SocketAddr,
    ) -> Result<SocketAddr, ConfigError> {
        raw.map_or(Ok(default), |text| {
            parse_addr(&text).map_err(|r| self.err(key, r))
        })
    }

    fn name_or<T: FromStr>(
        &self,
        key: &str,
        raw: Option<String>,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        raw.map_or(Ok(default), |text| {
            text.parse()
                .map_err(|e: T::Err| self.err(key, e.to_string()))
        })
    }

    fn int_or<T: TryFrom<i64>>(
        &self,
        key: &str,
        raw: Option<i64>,
        default: T,
        b: Bounds,
    ) -> Result<T, ConfigError> {
        raw.map_or(Ok(default), |v| self.in_bounds(key, v, b))
    }

    fn size_or(
        &self,
        key: &str,
        raw: Option<Human>,
        default: usize,
        b: Bounds,
    ) -> Result<usize, ConfigError> {
        let bytes = match raw {
            None => return Ok(default),
            Some(Human::Int(v)) => v,
            Some(Human::Text(t)) => {
                let v = parse_size(&t).map_err(|r| self.err(key, r))?;
                i64::try_from(v).unwrap_or(i64::MAX)
            }
        };
        self.in_bounds(key, bytes, b)
    }

    fn dur_or(
        &self,
        key: &str,
        raw: Option<Human>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match raw {
            None => Ok(default),
            Some(Human::Int(v)) => u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| self.err(key, format!("must not be negative, got {v}"))),
            Some(Human::Text(t)) => parse_duration(&t).map_err(|r| self.err(key, r)),
        }
    }

    fn in_bounds<T: TryFrom<i64>>(&self, key: &str, v: i64, b: Bounds) -> Result<T, ConfigError> {
        if let Some(reason) = b.reason(v) {
            return Err(self.err(key, reason));
        }
        // Bounds always fit the target type; this only guards against a mismatched constant.
        T::try_from(v).map_err(|_| self.err(key, format!("out of range, got {v}")))
    }
}

/// The metrics listener as written in the file or on the command line: an address or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    /// No HTTP side port (no /metrics, /healthz, /readyz).
    Off,
    /// Serve metrics and health probes on this address.
    Addr(SocketAddr),
}

impl FromStr for MetricsListen {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "off" => Ok(MetricsListen::Off),
            _ => parse_addr(text)
                .map(MetricsListen::Addr)
                .map_err(|r| format!("{r} (or \"off\" to disable)")),
        }
    }
}

impl From<MetricsListen> for MetricsConfig {
    fn from(m: MetricsListen) -> Self {
        match m {
            MetricsListen::Off => MetricsConfig { listen: None },
            MetricsListen::Addr(a) => MetricsConfig { listen: Some(a) },
        }
    }
}

/// Parses `IP:PORT` (IPv6 as `[::1]:6432`); hostnames are not resolved for listeners.
pub(crate) fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("expected IP:PORT such as \"0.0.0.0:6432\" or \"[::]:6432\", got {text:?}")
    })
}
