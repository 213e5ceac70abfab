//! Metrics of configuration reloads: whether the last one worked, and when one last did.
//!
//! Ops alert on `pgferry_config_reloads_total{result="error"}` growing, and on the last
//! success being older than the deploy that changed the file (as Prometheus's own
//! `prometheus_config_last_reload_success_timestamp_seconds`). The start-up load counts as the
//! first success.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, IntCounter, IntCounterVec, Opts, Registry};

const RELOADS: (&str, &str) = (
    "pgferry_config_reloads_total",
    "Configuration reloads (SIGHUP or RELOAD), by result",
);
const LAST_SUCCESS: (&str, &str) = (
    "pgferry_config_last_reload_success_timestamp_seconds",
    "Unix time of the last configuration load that was applied (start-up or reload)",
);

/// Reload counters, registered in the proxy's registry.
pub struct ReloadMetrics {
    ok: IntCounter,
    error: IntCounter,
    last_success: Gauge,
}

impl ReloadMetrics {
    /// Registers the reload metrics; the start-up load is the first success.
    pub(super) fn new(registry: &Registry) -> Result<ReloadMetrics, prometheus::Error> {
        let reloads = IntCounterVec::new(Opts::new(RELOADS.0, RELOADS.1), &["result"])?;
        let last_success = Gauge::new(LAST_SUCCESS.0, LAST_SUCCESS.1)?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        let metrics = ReloadMetrics {
            ok: reloads.with_label_values(&["ok"]),
            error: reloads.with_label_values(&["error"]),
            last_success,
        };
        metrics.last_success.set(now_seconds());
        Ok(metrics)
    }

    /// A reload was applied.
    pub fn succeeded(&self) {
        self.ok.inc();
        self.last_success.set(now_seconds());
    }

    /// A reload was rejected; the running configuration stays.
    pub fn failed(&self) {
        self.error.inc();
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
