//! Validation of a [`Config`], however it was built (file, quick mode, code).
//!
//! The proxy trusts a validated config completely: every cross-field rule and every referenced
//! file is checked here, once, with a message that names the offending key.

use super::bounds::{self, Bounds};
use super::*;
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

/// Longest accepted duration: keeps `Instant + timeout` arithmetic far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// The database name clients use to reach the admin console.
pub const RESERVED_DATABASE: &str = "pgferry";

/// PgBouncer's name for its console, kept so its exporters and agents work unchanged.
pub const RESERVED_DATABASE_ALIAS: &str = "pgbouncer";

impl Config {
    /// Checks every rule the proxy relies on, including that referenced certificate, key and CA
    /// files exist and are readable. Errors name the origin as `config`; loaders that know the
    /// file name report it instead.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_in("config")
    }

    /// [`Config::validate`] with `origin` as the file part of error messages.
    pub(crate) fn validate_in(&self, origin: &str) -> Result<(), ConfigError> {
        let c = Check { file: origin };
        c.limits(&self.limits)?;
        c.tls(&self.tls)?;
        c.log(&self.log)?;
        c.pooling(&self.pooling)?;
        c.int(
            "runtime.worker_threads",
            self.runtime.worker_threads,
            bounds::WORKER_THREADS,
        )?;
        c.users(&self.users)?;
        c.admin(&self.admin, &self.users)?;
        c.databases(&self.databases)?;
        c.backend_logins(self)?;
        super::overrides::check(self, origin)
    }
}

/// Validation context: the origin used in every error.
struct Check<'a> {
    file: &'a str,
}

impl Check<'_> {
    fn fail<T>(&self, key: impl Into<String>, reason: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError::invalid(self.file, key, reason))
    }

    fn int(&self, key: &str, v: impl TryInto<i64>, b: Bounds) -> Result<(), ConfigError> {
        match b.reason(v.try_into().unwrap_or(i64::MAX)) {
            Some(reason) => self.fail(key, reason),
            None => Ok(()),
        }
    }

    /// Durations: at most [`MAX_DURATION`]; `nonzero` for timeouts where zero would mean "hang".
    fn dur(&self, key: &str, d: Duration, nonzero: bool) -> Result<(), ConfigError> {
        if nonzero && d.is_zero() {
            return self.fail(key, "must be greater than zero");
        }
        if d > MAX_DURATION {
            return self.fail(key, "must be at most 365d");
        }
        Ok(())
    }

    fn non_empty(&self, key: &str, s: &str) -> Result<(), ConfigError> {
        if s.trim().is_empty() {
            return self.fail(key, "must not be empty");
        }
        Ok(())
    }

    fn readable(&self, key: &str, path: &Path) -> Result<(), ConfigError> {
        let shown = path.display();
        let meta = File::open(path).and_then(|f| f.metadata());
        match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => self.fail(key, format!("{shown} is not a regular file")),
            Err(e) => self.fail(key, format!("cannot read {shown}: {e}")),
        }
    }

    fn limits(&self, l: &Limits) -> Result<(), ConfigError> {
        let k = |name: &str| format!("limits.{name}");
        self.int(
            &k("max_client_connections"),
            l.max_client_connections,
            bounds::MAX_CLIENT_CONNECTIONS,
        )?;
        self.int(
            &k("max_message_size"),
            l.max_message_size,
            bounds::MAX_MESSAGE_SIZE,
        )?;
        self.int(
            &k("max_startup_packet_size"),
            l.max_startup_packet_size,
            bounds::MAX_STARTUP_PACKET_SIZE,
        )?;
        self.int(
            &k("max_startup_parameters"),
            l.max_startup_parameters,
            bounds::MAX_STARTUP_PARAMETERS,
        )?;
        self.dur(&k("login_timeout"), l.login_timeout, true)?;
        self.dur(&k("query_wait_timeout"), l.query_wait_timeout, true)?;
        self.dur(&k("client_idle_timeout"), l.client_idle_timeout, false)?;
        self.dur(
            &k("idle_transaction_timeout"),
            l.idle_transaction_timeout,
            false,
        )?;
        self.dur(&k("client_park_after"), l.client_park_after, false)?;
        self.dur(&k("server_reset_timeout"), l.server_reset_timeout, true)?;
        self.dur(&k("shutdown_timeout"), l.shutdown_timeout, false)
    }

    fn pooling(&self, p: &PoolingConfig) -> Result<(), ConfigError> {
        let k = |name: &str| format!("pooling.{name}");
        self.int(
            &k("max_prepared_statements_per_client"),
            p.max_prepared_statements_per_client,
            bounds::MAX_PREPARED_STATEMENTS,
        )?;
        self.int(
            &k("max_prepared_statements_per_server"),
            p.max_prepared_statements_per_server,
            bounds::MAX_PREPARED_STATEMENTS,
        )?;
        self.int(
            &k("max_cached_statements"),
            p.max_cached_statements,
            bounds::MAX_CACHED_STATEMENTS,
        )
    }

    fn tls(&self, t: &ClientTls) -> Result<(), ConfigError> {
        if t.mode != ClientTlsMode::Disable {
            let files = [
                ("tls.cert_file", &t.cert_file),
                ("tls.key_file", &t.key_file),
            ];
            for (key, file) in files {
                match file {
                    Some(path) => self.readable(key, path)?,
                    None => {
                        return self.fail(key, format!("required when tls.mode is \"{}\"", t.mode))
                    }
                }
            }
        }
        Ok(())
    }

    fn log(&self, l: &LogConfig) -> Result<(), ConfigError> {
        self.non_empty("log.level", &l.level)?;
        match tracing_subscriber::EnvFilter::try_new(&l.level) {
            Ok(_) => Ok(()),
            Err(e) => self.fail("log.level", format!("invalid filter {:?}: {e}", l.level)),
        }
    }

    fn users(&self, users: &[UserConfig]) -> Result<(), ConfigError> {
        if users.is_empty() {
            return self.fail("users", "at least one [[users]] entry is required");
        }
        let mut seen = HashMap::new();
        for (i, u) in users.iter().enumerate() {
            let key = |field: &str| format!("users[{i}].{field}");
            self.non_empty(&key("name"), &u.name)?;
            if let Some(first) = seen.insert(u.name.as_str(), i) {
                return self.fail(
                    key("name"),
                    format!("duplicate user {:?} (also users[{first}])", u.name),
                );
            }
            match &u.credential {
                Credential::Plain(p) => self.non_empty(&key("password"), p)?,
                Credential::ScramSecret(s) if !s.starts_with("SCRAM-SHA-256$") => {
                    return self.fail(
                        key("scram_secret"),
                        "must start with \"SCRAM-SHA-256$\" (generate one with `pgferry hash-password`)",
                    )
                }
                Credential::ScramSecret(_) => {}
            }
        }
        Ok(())
    }

    /// Every console user must be a configured user: the console has no passwords of its own.
    fn admin(&self, admin: &AdminConfig, users: &[UserConfig]) -> Result<(), ConfigError> {
        let lists = [
            ("admin.users", &admin.users),
            ("admin.stats_users", &admin.stats_users),
        ];
        for (key, names) in lists {
            for name in names.iter() {
                if !users.iter().any(|u| &u.name == name) {
                    let reason = format!("user {name:?} is not a configured [[users]] entry");
                    return self.fail(key, reason);
                }
            }
        }
        Ok(())
    }

    fn databases(&self, dbs: &[DatabaseConfig]) -> Result<(), ConfigError> {
        if dbs.is_empty() {
            return self.fail("databases", "at least one [[databases]] entry is required");
        }
        let mut seen = HashMap::new();
        for (i, db) in dbs.iter().enumerate() {
            let key = format!("databases[{i}].name");
            if let Some(first) = seen.insert(db.name.as_str(), i) {
                return self.fail(
                    key,
                    format!("duplicate database {:?} (also databases[{first}])", db.name),
                );
            }
            self.database(i, db)?;
        }
        Ok(())
    }

    fn database(&self, i: usize, db: &DatabaseConfig) -> Result<(), ConfigError> {
        let k = |field: &str| format!("databases[{i}].{field}");
        self.non_empty(&k("name"), &db.name)?;
        if db.name == RESERVED_DATABASE || db.name == RESERVED_DATABASE_ALIAS {
            return self.fail(
                k("name"),
                format!("{:?} is reserved for the admin console", db.name),
            );
        }
        self.non_empty(&k("host"), &db.host)?;
        self.int(&k("port"), db.port, bounds::PORT)?;
        self.non_empty(&k("dbname"), &db.dbname)?;
        match (&db.backend_user, &db.backend_password) {
            (Some(user), _) => self.non_empty(&k("backend_user"), user)?,
            (None, Some(_)) => return self.fail(k("backend_password"), "requires backend_user"),
            (None, None) => {}
        }
        self.int(&k("pool_size"), db.pool_size, bounds::POOL_SIZE)?;
        self.int(&k("min_pool_size"), db.min_pool_size, bounds::MIN_POOL_SIZE)?;
        if db.min_pool_size > db.pool_size {
            let reason = format!(
                "must not exceed pool_size ({}), got {}",
                db.pool_size, db.min_pool_size
            );
            return self.fail(k("min_pool_size"), reason);
        }
        self.dur(&k("connect_timeout"), db.connect_timeout, true)?;
        self.dur(&k("server_idle_timeout"), db.server_idle_timeout, false)?;
        self.dur(&k("server_lifetime"), db.server_lifetime, false)?;
        self.backend_tls(i, db)
    }

    fn backend_tls(&self, i: usize, db: &DatabaseConfig) -> Result<(), ConfigError> {
        let key = format!("databases[{i}].tls_ca_file");
        let verifies = matches!(
            db.tls_mode,
            BackendTlsMode::VerifyCa | BackendTlsMode::VerifyFull
        );
        match &db.tls_ca_file {
            Some(path) => self.readable(&key, path),
            None if verifies => self.fail(
                key,
                format!("required when tls_mode is \"{}\"", db.tls_mode),
            ),
            None => Ok(()),
        }
    }

    /// Without `backend_user`, pgferry logs in to the backend as the client's user, which needs
    /// that user's plaintext password; a SCRAM secret cannot be replayed to the backend.
    fn backend_logins(&self, config: &Config) -> Result<(), ConfigError> {
        let scram_only = config
            .users
            .iter()
            .find(|u| matches!(u.credential, Credential::ScramSecret(_)));
        let Some(user) = scram_only else {
            return Ok(());
        };
        for (i, db) in config.databases.iter().enumerate() {
            if db.backend_user.is_none() {
                let reason = format!(
                    "database {:?} has no backend_user, so pgferry logs in to the backend as the \
                     client's user, but user {:?} has only a scram_secret; give {:?} a plaintext \
                     password, or set backend_user and backend_password",
                    db.name, user.name, user.name
                );
                return self.fail(format!("databases[{i}].backend_user"), reason);
            }
        }
        Ok(())
    }
}
