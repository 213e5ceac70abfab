//! Settings a reload cannot change: the sockets pgferry listens on, the runtime's threads,
//! the log format (the subscriber is built once) and the park clock.
//!
//! A reload keeps their running values in the configuration it installs, so what the proxy
//! reports (`SHOW CONFIG`) is what is in force, and lists each one that the file changed.

use crate::config::{format_duration, Config};

/// A setting the file changed that keeps its running value until a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartOnly {
    /// The key as written in pgferry.toml.
    pub key: &'static str,
    pub running: String,
    pub configured: String,
}

/// The keys only a restart applies, as written in pgferry.toml.
pub const RESTART_ONLY_KEYS: [&str; 5] = [
    "listen.addr",
    "metrics.listen",
    "runtime.worker_threads",
    "log.format",
    "limits.client_park_after",
];

/// Puts the running values of restart-only settings into `new`; returns those that differed.
pub fn keep_running_values(running: &Config, new: &mut Config) -> Vec<RestartOnly> {
    let mut kept = Vec::new();
    let mut keep = |key: &'static str, running: String, configured: String| {
        if running != configured {
            kept.push(RestartOnly {
                key,
                running,
                configured,
            });
        }
    };
    keep(
        "listen.addr",
        running.listen.addr.to_string(),
        new.listen.addr.to_string(),
    );
    keep(
        "metrics.listen",
        describe_listen(running.metrics.listen),
        describe_listen(new.metrics.listen),
    );
    keep(
        "runtime.worker_threads",
        running.runtime.worker_threads.to_string(),
        new.runtime.worker_threads.to_string(),
    );
    keep(
        "log.format",
        format!("{:?}", running.log.format).to_lowercase(),
        format!("{:?}", new.log.format).to_lowercase(),
    );
    keep(
        "limits.client_park_after",
        format_duration(running.limits.client_park_after),
        format_duration(new.limits.client_park_after),
    );
    new.listen.addr = running.listen.addr;
    new.metrics.listen = running.metrics.listen;
    new.runtime = running.runtime;
    new.log.format = running.log.format;
    new.limits.client_park_after = running.limits.client_park_after;
    kept
}

fn describe_listen(listen: Option<std::net::SocketAddr>) -> String {
    listen.map_or_else(|| "off".to_string(), |addr| addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_keep_their_running_values_and_are_reported() {
        let running = Config::minimal();
        let mut new = Config::minimal();
        new.listen.addr = "127.0.0.1:7000".parse().unwrap_or(running.listen.addr);
        new.runtime.worker_threads = 3;
        new.limits.query_wait_timeout = std::time::Duration::from_secs(1);
        let kept = keep_running_values(&running, &mut new);
        let keys: Vec<_> = kept.iter().map(|k| k.key).collect();
        assert_eq!(keys, ["listen.addr", "runtime.worker_threads"]);
        assert_eq!(kept[0].configured, "127.0.0.1:7000");
        assert_eq!(new.listen.addr, running.listen.addr);
        assert_eq!(new.runtime.worker_threads, 0);
        // Reloadable settings are untouched.
        assert_eq!(
            new.limits.query_wait_timeout,
            std::time::Duration::from_secs(1)
        );
        assert!(keys.iter().all(|k| RESTART_ONLY_KEYS.contains(k)));
    }
}
