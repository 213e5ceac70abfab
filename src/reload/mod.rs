//! Live reload (SIGHUP, the console's RELOAD): re-read the configuration and apply it without
//! dropping a single client.
//!
//! The new configuration is loaded and validated whole, exactly as at start-up, and everything
//! that can fail is built before anything running is touched: the users' verifiers, the
//! client TLS configuration, the backend TLS of every pool. Only then is the new generation
//! swapped in (see [`crate::live`]); a rejected file leaves the running configuration as it
//! was. Sessions keep their pools across the swap; pools change in place (see
//! `pool::reconcile`). Settings that only a restart can change are kept at their running
//! values and reported.

use std::sync::Arc;

use crate::auth::{AuthConfigError, UserStore};
use crate::config::{Config, ConfigError};
use crate::live::{client_tls, Live};
use crate::pool::{plan_reload, PoolBuildError, PoolChanges};
use crate::session::SessionContext;

mod restart;
pub mod source;

pub use restart::RestartOnly;
pub use source::{ConfigSource, LogFilterHook, Reloader};

/// Why a reload was rejected; the running configuration stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("pgferry was started without a configuration file: there is nothing to reload")]
    NoSource,
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("users: {0}")]
    Users(#[from] AuthConfigError),
    #[error("tls: {0}")]
    ClientTls(String),
    #[error("{0}")]
    Pools(#[from] PoolBuildError),
}

/// What an applied reload changed.
#[derive(Debug, Default)]
pub struct ReloadSummary {
    pub pools: PoolChanges,
    /// Settings that changed in the file but keep their running value until a restart.
    pub restart_needed: Vec<RestartOnly>,
}

/// Re-reads the configuration and applies it; logs and counts the outcome.
pub async fn reload(ctx: &SessionContext) -> Result<ReloadSummary, ReloadError> {
    let _one_at_a_time = ctx.reloader.running.lock().await;
    let result = match &ctx.reloader.source {
        Some(source) => source()
            .map_err(ReloadError::from)
            .and_then(|config| apply(ctx, config)),
        None => Err(ReloadError::NoSource),
    };
    match &result {
        Ok(summary) => {
            ctx.metrics.reload.succeeded();
            log_applied(summary);
        }
        Err(error) => {
            ctx.metrics.reload.failed();
            tracing::error!(
                %error,
                "configuration reload rejected; the running configuration stays in force"
            );
        }
    }
    result
}

/// Applies a validated `config` as the new generation, or changes nothing if any part of it
/// cannot be built.
pub fn apply(ctx: &SessionContext, mut config: Config) -> Result<ReloadSummary, ReloadError> {
    config.validate()?;
    let old = ctx.live.snapshot();
    let restart_needed = restart::keep_running_values(&old.config, &mut config);
    let users = UserStore::from_config(&config.users)?;
    let tls = client_tls(&config).map_err(ReloadError::ClientTls)?;
    let plan = plan_reload(&old.pools, &config, &ctx.metrics)?;
    // Nothing below can fail: the new generation goes in whole.
    let pools = plan.changes();
    let config = Arc::new(config);
    let registry = Arc::new(plan.commit(&config));
    ctx.admission
        .set_limit(config.limits.max_client_connections);
    ctx.statements
        .set_max_entries(config.pooling.max_cached_statements);
    if config.log.level != old.config.log.level {
        set_log_filter(ctx, &config.log.level);
    }
    ctx.live.replace(Live {
        config,
        users,
        pools: registry,
        tls,
    });
    if !pools.removed.is_empty() {
        // Sessions of removed pools that wait outside a transaction learn it now.
        ctx.control.announce_retirements();
    }
    Ok(ReloadSummary {
        pools,
        restart_needed,
    })
}

/// A bad directive cannot reject the reload at this point (the rest is already valid and
/// applied); it is logged and the previous filter stays.
fn set_log_filter(ctx: &SessionContext, level: &str) {
    if let Some(hook) = &ctx.reloader.log_filter {
        match hook(level) {
            Ok(()) => tracing::info!(level, "log filter changed"),
            Err(error) => tracing::error!(level, %error, "log.level not applied"),
        }
    }
}

fn log_applied(summary: &ReloadSummary) {
    let pools = &summary.pools;
    tracing::info!(
        added = ?pools.added,
        removed = ?pools.removed,
        reconnecting = ?pools.reconnecting,
        "configuration reloaded"
    );
    for setting in &summary.restart_needed {
        tracing::warn!(
            key = setting.key,
            running = %setting.running,
            configured = %setting.configured,
            "changed in the configuration but only takes effect after a restart"
        );
    }
}
