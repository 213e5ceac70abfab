//! Every configuration key as text: its current value, its default and whether a running
//! proxy can take a new value without a restart.
//!
//! One table serves the admin console's SHOW CONFIG; its list of restart-only keys is also
//! what a reload keeps at the running values. Secrets (passwords, SCRAM secrets, backend passwords) are never
//! shown, only whether they are set.

use std::path::Path;
use std::time::Duration;

use super::units::format_duration;
use super::{Config, DatabaseConfig, DEFAULT_LISTEN, DEFAULT_METRICS_LISTEN};

/// Keys whose new value only takes effect after a restart: sockets bound at start, the
/// runtime's threads, the log formatter installed at start, and the park clock's period.
/// A reload keeps their running values and logs the ones the file changed
/// (`reload::restart`).
pub const RESTART_ONLY: &[&str] = &[
    "listen.addr",
    "metrics.listen",
    "runtime.worker_threads",
    "log.format",
    "limits.client_park_after",
];

/// One row of SHOW CONFIG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Dotted name as in pgferry.toml (`limits.login_timeout`, `databases[0].pool_size`), or a
    /// PgBouncer name (`max_client_conn`) for the rows exporters read.
    pub key: String,
    pub value: String,
    pub default: String,
    /// False for [`RESTART_ONLY`] keys (and PgBouncer's names of them).
    pub changeable: bool,
}

/// Every setting of `config`, pgferry's keys first, then PgBouncer's names.
pub fn settings(config: &Config) -> Vec<Setting> {
    let mut rows = Rows::default();
    global(&mut rows, config);
    for (i, db) in config.databases.iter().enumerate() {
        database(&mut rows, i, db);
    }
    for (i, user) in config.users.iter().enumerate() {
        rows.add(&format!("users[{i}].name"), &user.name, "");
    }
    pgbouncer_names(&mut rows, config);
    rows.0
}

#[derive(Default)]
struct Rows(Vec<Setting>);

impl Rows {
    fn add(&mut self, key: &str, value: impl ToString, default: impl ToString) {
        let changeable = !RESTART_ONLY.contains(&key) && !PGBOUNCER_RESTART_ONLY.contains(&key);
        self.0.push(Setting {
            key: key.to_string(),
            value: value.to_string(),
            default: default.to_string(),
            changeable,
        });
    }
}

fn duration(d: Duration) -> String {
    format_duration(d)
}

fn path(p: &Option<impl AsRef<Path>>) -> String {
    p.as_ref()
        .map(|p| p.as_ref().display().to_string())
        .unwrap_or_default()
}

fn list(names: &[String]) -> String {
    names.join(",")
}

fn global(rows: &mut Rows, c: &Config) {
    let d = Config::minimal();
    let metrics = c
        .metrics
        .listen
        .map_or("off".to_string(), |a| a.to_string());
    rows.add("listen.addr", c.listen.addr, DEFAULT_LISTEN);
    let (l, dl) = (&c.limits, &d.limits);
    rows.add(
        "limits.max_client_connections",
        l.max_client_connections,
        dl.max_client_connections,
    );
    rows.add(
        "limits.max_message_size",
        l.max_message_size,
        dl.max_message_size,
    );
    rows.add(
        "limits.max_startup_packet_size",
        l.max_startup_packet_size,
        dl.max_startup_packet_size,
    );
    rows.add(
        "limits.max_startup_parameters",
        l.max_startup_parameters,
        dl.max_startup_parameters,
    );
    let durations = [
        ("limits.login_timeout", l.login_timeout, dl.login_timeout),
        (
            "limits.query_wait_timeout",
            l.query_wait_timeout,
            dl.query_wait_timeout,
        ),
        (
            "limits.client_idle_timeout",
            l.client_idle_timeout,
            dl.client_idle_timeout,
        ),
        (
            "limits.idle_transaction_timeout",
            l.idle_transaction_timeout,
            dl.idle_transaction_timeout,
        ),
        (
            "limits.client_park_after",
            l.client_park_after,
            dl.client_park_after,
        ),
        (
            "limits.server_reset_timeout",
            l.server_reset_timeout,
            dl.server_reset_timeout,
        ),
        (
            "limits.shutdown_timeout",
            l.shutdown_timeout,
            dl.shutdown_timeout,
        ),
    ];
    for (key, value, default) in durations {
        rows.add(key, duration(value), duration(default));
    }
    rows.add("metrics.listen", metrics, DEFAULT_METRICS_LISTEN);
    rows.add("tls.mode", c.tls.mode, d.tls.mode);
    rows.add("tls.cert_file", path(&c.tls.cert_file), "");
    rows.add("tls.key_file", path(&c.tls.key_file), "");
    rows.add("auth.allow_md5", c.auth.allow_md5, d.auth.allow_md5);
    rows.add("log.format", c.log.format, d.log.format);
    rows.add("log.level", &c.log.level, &d.log.level);
    let (p, dp) = (&c.pooling, &d.pooling);
    rows.add("pooling.pinning", p.pinning, dp.pinning);
    rows.add(
        "pooling.max_prepared_statements_per_client",
        p.max_prepared_statements_per_client,
        dp.max_prepared_statements_per_client,
    );
    rows.add(
        "pooling.max_prepared_statements_per_server",
        p.max_prepared_statements_per_server,
        dp.max_prepared_statements_per_server,
    );
    rows.add(
        "pooling.max_cached_statements",
        p.max_cached_statements,
        dp.max_cached_statements,
    );
    rows.add("runtime.worker_threads", c.runtime.worker_threads, 0);
    rows.add("admin.users", list(&c.admin.users), "");
    rows.add("admin.stats_users", list(&c.admin.stats_users), "");
}

fn database(rows: &mut Rows, i: usize, db: &DatabaseConfig) {
    let d = DatabaseConfig::new(&db.name, &db.host, db.port);
    let k = |field: &str| format!("databases[{i}].{field}");
    rows.add(&k("name"), &db.name, "");
    rows.add(&k("host"), &db.host, "");
    rows.add(&k("port"), db.port, 5432);
    rows.add(&k("dbname"), &db.dbname, &db.name);
    rows.add(
        &k("backend_user"),
        db.backend_user.as_deref().unwrap_or(""),
        "",
    );
    let password = if db.backend_password.is_some() {
        "(set)"
    } else {
        ""
    };
    rows.add(&k("backend_password"), password, "");
    rows.add(&k("pool_mode"), db.pool_mode, d.pool_mode);
    rows.add(&k("pool_size"), db.pool_size, d.pool_size);
    rows.add(&k("min_pool_size"), db.min_pool_size, d.min_pool_size);
    rows.add(
        &k("connect_timeout"),
        duration(db.connect_timeout),
        duration(d.connect_timeout),
    );
    let idle = (db.server_idle_timeout, d.server_idle_timeout);
    rows.add(
        &k("server_idle_timeout"),
        duration(idle.0),
        duration(idle.1),
    );
    let lifetime = (db.server_lifetime, d.server_lifetime);
    rows.add(
        &k("server_lifetime"),
        duration(lifetime.0),
        duration(lifetime.1),
    );
    rows.add(&k("tls_mode"), db.tls_mode, d.tls_mode);
    rows.add(&k("tls_ca_file"), path(&db.tls_ca_file), "");
}

/// PgBouncer names whose pgferry equivalent needs a restart.
const PGBOUNCER_RESTART_ONLY: &[&str] = &["listen_addr", "listen_port"];

/// Rows under PgBouncer's names, mapped from pgferry's settings, for tools that read them
/// (the Go exporter reads max_client_conn and max_user_connections). Per-database settings
/// come from the first `[[databases]]` entry, PgBouncer's "default" for its pools.
fn pgbouncer_names(rows: &mut Rows, c: &Config) {
    let d = Config::minimal();
    let first = c.databases.first().cloned();
    let db_default = DatabaseConfig::new("", "", 5432);
    let db = first.unwrap_or_else(|| db_default.clone());
    let secs = |d: Duration| d.as_secs();
    rows.add("listen_addr", c.listen.addr.ip(), DEFAULT_LISTEN.ip());
    rows.add("listen_port", c.listen.addr.port(), DEFAULT_LISTEN.port());
    let max_clients = (
        c.limits.max_client_connections,
        d.limits.max_client_connections,
    );
    rows.add("max_client_conn", max_clients.0, max_clients.1);
    rows.add("max_user_connections", 0, 0);
    rows.add("max_db_connections", 0, 0);
    rows.add("default_pool_size", db.pool_size, db_default.pool_size);
    rows.add("min_pool_size", db.min_pool_size, db_default.min_pool_size);
    rows.add("reserve_pool_size", 0, 0);
    rows.add("pool_mode", db.pool_mode, db_default.pool_mode);
    let auth = if c.auth.allow_md5 {
        "md5"
    } else {
        "scram-sha-256"
    };
    rows.add("auth_type", auth, "scram-sha-256");
    rows.add("admin_users", list(&c.admin.users), "");
    rows.add("stats_users", list(&c.admin.stats_users), "");
    rows.add("client_tls_sslmode", c.tls.mode, d.tls.mode);
    let lifetime = (db.server_lifetime, db_default.server_lifetime);
    rows.add("server_lifetime", secs(lifetime.0), secs(lifetime.1));
    let idle = (db.server_idle_timeout, db_default.server_idle_timeout);
    rows.add("server_idle_timeout", secs(idle.0), secs(idle.1));
    let connect = (db.connect_timeout, db_default.connect_timeout);
    rows.add("server_connect_timeout", secs(connect.0), secs(connect.1));
    let (l, dl) = (&c.limits, &d.limits);
    rows.add(
        "query_wait_timeout",
        secs(l.query_wait_timeout),
        secs(dl.query_wait_timeout),
    );
    rows.add(
        "client_idle_timeout",
        secs(l.client_idle_timeout),
        secs(dl.client_idle_timeout),
    );
    let idle_tx = (l.idle_transaction_timeout, dl.idle_transaction_timeout);
    rows.add("idle_transaction_timeout", secs(idle_tx.0), secs(idle_tx.1));
    rows.add(
        "client_login_timeout",
        secs(l.login_timeout),
        secs(dl.login_timeout),
    );
    rows.add("pkt_buf", 4096, 4096);
    rows.add("max_packet_size", l.max_message_size, dl.max_message_size);
    let prepared = c.pooling.max_prepared_statements_per_client;
    rows.add(
        "max_prepared_statements",
        prepared,
        d.pooling.max_prepared_statements_per_client,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Credential, UserConfig};

    fn sample() -> Config {
        let mut c = Config::minimal();
        c.users.push(UserConfig::new(
            "app",
            Credential::Plain("secret-pw".into()),
        ));
        let mut db = DatabaseConfig::new("appdb", "db.internal", 5432);
        db.backend_user = Some("svc".into());
        db.backend_password = Some("backend-pw".into());
        c.databases.push(db);
        c
    }

    #[test]
    fn every_key_appears_once_and_secrets_never() {
        let rows = settings(&sample());
        let mut keys: Vec<&str> = rows.iter().map(|s| s.key.as_str()).collect();
        let total = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), total, "duplicate keys");
        for row in &rows {
            assert!(!row.value.contains("pw"), "{row:?} leaks a secret");
        }
        let get = |k: &str| {
            rows.iter()
                .find(|s| s.key == k)
                .unwrap_or_else(|| panic!("{k}"))
        };
        assert_eq!(get("databases[0].backend_password").value, "(set)");
        assert_eq!(get("limits.query_wait_timeout").value, "5s");
        assert_eq!(get("max_client_conn").value, "10000");
        assert_eq!(get("default_pool_size").value, "20");
        assert_eq!(get("pool_mode").value, "transaction");
    }

    #[test]
    fn only_sockets_threads_log_format_and_the_park_clock_need_a_restart() {
        let rows = settings(&sample());
        let mut fixed: Vec<&str> = rows
            .iter()
            .filter(|s| !s.changeable)
            .map(|s| s.key.as_str())
            .collect();
        let mut want = RESTART_ONLY.to_vec();
        want.extend(PGBOUNCER_RESTART_ONLY);
        fixed.sort();
        want.sort();
        assert_eq!(fixed, want);
    }
}
