//! Settings a reload cannot change: the sockets pgferry listens on, the runtime's threads,
//! the log format (the subscriber is built once), the park clock (`config::keys::RESTART_ONLY`),
//! and whether a running database has a `max_db_connections` cap at all (its pools share the
//! cap from their creation; its value does change live).
//!
//! A reload keeps their running values in the configuration it installs, so what the proxy
//! reports (`SHOW CONFIG`) is what is in force, and lists each one that the file changed.

use crate::config::{format_duration, Config};

/// A setting the file changed that keeps its running value until a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartOnly {
    /// The key as written in pgferry.toml (`databases[i]` by the new file's order).
    pub key: String,
    pub running: String,
    pub configured: String,
}

/// Puts the running values of restart-only settings into `new`; returns those that differed.
pub fn keep_running_values(running: &Config, new: &mut Config) -> Vec<RestartOnly> {
    let mut kept = Vec::new();
    let mut keep = |key: String, running: String, configured: String| {
        if running != configured {
            kept.push(RestartOnly {
                key,
                running,
                configured,
            });
        }
    };
    keep(
        "listen.addr".into(),
        running.listen.addr.to_string(),
        new.listen.addr.to_string(),
    );
    keep(
        "metrics.listen".into(),
        describe_listen(running.metrics.listen),
        describe_listen(new.metrics.listen),
    );
    keep(
        "runtime.worker_threads".into(),
        running.runtime.worker_threads.to_string(),
        new.runtime.worker_threads.to_string(),
    );
    keep(
        "log.format".into(),
        format!("{:?}", running.log.format).to_lowercase(),
        format!("{:?}", new.log.format).to_lowercase(),
    );
    keep(
        "limits.client_park_after".into(),
        format_duration(running.limits.client_park_after),
        format_duration(new.limits.client_park_after),
    );
    new.listen.addr = running.listen.addr;
    new.metrics.listen = running.metrics.listen;
    new.runtime = running.runtime;
    new.log.format = running.log.format;
    new.limits.client_park_after = running.limits.client_park_after;
    keep_cap_presence(running, new, &mut kept);
    kept
}

/// A database that stays keeps having a cap, or not having one, until a restart.
fn keep_cap_presence(running: &Config, new: &mut Config, kept: &mut Vec<RestartOnly>) {
    let describe = |cap: Option<u32>| cap.map_or_else(|| "none".to_string(), |n| n.to_string());
    for (i, db) in new.databases.iter_mut().enumerate() {
        let Some(old) = running.databases.iter().find(|d| d.name == db.name) else {
            continue;
        };
        if old.max_db_connections.is_some() != db.max_db_connections.is_some() {
            kept.push(RestartOnly {
                key: format!("databases[{i}].max_db_connections"),
                running: describe(old.max_db_connections),
                configured: describe(db.max_db_connections),
            });
            db.max_db_connections = old.max_db_connections;
        }
    }
}

fn describe_listen(listen: Option<std::net::SocketAddr>) -> String {
    listen.map_or_else(|| "off".to_string(), |addr| addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::RESTART_ONLY;

    #[test]
    fn restart_only_settings_keep_their_running_values_and_are_reported() {
        let running = Config::minimal();
        let mut new = Config::minimal();
        new.listen.addr = "127.0.0.1:7000".parse().unwrap_or(running.listen.addr);
        new.runtime.worker_threads = 3;
        new.limits.query_wait_timeout = std::time::Duration::from_secs(1);
        let kept = keep_running_values(&running, &mut new);
        let keys: Vec<_> = kept.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["listen.addr", "runtime.worker_threads"]);
        assert_eq!(kept[0].configured, "127.0.0.1:7000");
        assert_eq!(new.listen.addr, running.listen.addr);
        assert_eq!(new.runtime.worker_threads, 0);
        // Reloadable settings are untouched.
        assert_eq!(
            new.limits.query_wait_timeout,
            std::time::Duration::from_secs(1)
        );
        assert!(keys.iter().all(|k| RESTART_ONLY.contains(k)));
    }

    #[test]
    fn every_restart_only_key_is_kept() {
        let running = Config::minimal();
        let mut new = Config::minimal();
        new.listen.addr = "127.0.0.1:7000".parse().unwrap_or(running.listen.addr);
        new.metrics.listen = None;
        new.runtime.worker_threads = 3;
        new.log.format = crate::config::LogFormat::Json;
        new.limits.client_park_after = std::time::Duration::from_secs(1);
        let mut keys: Vec<_> = keep_running_values(&running, &mut new)
            .into_iter()
            .map(|k| k.key)
            .collect();
        keys.sort();
        let mut want: Vec<_> = RESTART_ONLY.iter().map(|k| k.to_string()).collect();
        want.sort();
        assert_eq!(keys, want);
    }

    #[test]
    fn a_cap_cannot_appear_or_vanish_live_but_its_value_changes() {
        let mut running = Config::minimal();
        running
            .databases
            .push(crate::config::DatabaseConfig::new("a", "h", 5432));
        running
            .databases
            .push(crate::config::DatabaseConfig::new("b", "h", 5432));
        running.databases[1].max_db_connections = Some(10);
        let mut new = running.clone();
        new.databases[0].max_db_connections = Some(5);
        new.databases[1].max_db_connections = Some(20);
        let kept = keep_running_values(&running, &mut new);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].key, "databases[0].max_db_connections");
        assert_eq!(
            (kept[0].running.as_str(), kept[0].configured.as_str()),
            ("none", "5")
        );
        assert_eq!(new.databases[0].max_db_connections, None);
        assert_eq!(new.databases[1].max_db_connections, Some(20));
    }
}
