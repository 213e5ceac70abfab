//! What a configuration reload changes in a running pool, in place: sessions hold their pool
//! by `Arc` for their whole life, so the pool itself must take the new settings.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{BackendPool, CheckoutError};
use crate::config::{DatabaseConfig, Limits, PoolMode, PoolSettings};
use crate::pool::slots::ConnectFailure;
use crate::protocol::sqlstate;
use crate::server::BackendTarget;

/// A kept pool's share of a reloaded configuration.
pub struct Reconfigure<'a> {
    pub db: &'a DatabaseConfig,
    pub limits: &'a Limits,
    /// Size and mode for this pool's user (`users[]` overrides, else the database's).
    pub settings: PoolSettings,
    pub target: Arc<BackendTarget>,
    /// The destination or login changed: connections open now must not be reused.
    pub reconnect: bool,
}

impl BackendPool {
    /// Transaction or session pooling, as configured now (a reload may change it).
    pub fn mode(&self) -> PoolMode {
        self.settings.mode()
    }

    /// Where and as whom this pool's connections log in now.
    pub fn target(&self) -> Arc<BackendTarget> {
        self.settings.target()
    }

    /// Takes a reloaded configuration's size, mode, timeouts and target (connect timeout,
    /// backend TLS). With `reconnect` (the destination or login changed), every connection
    /// open now is closed when next released, never in the middle of a transaction.
    pub fn reconfigure(&self, change: Reconfigure<'_>) {
        let Reconfigure {
            db,
            limits,
            settings,
            target,
            reconnect,
        } = change;
        self.settings.update(db, limits, settings.pool_mode);
        if settings.pool_size != self.size() {
            self.resize(settings.pool_size);
        }
        let lifetime = (!db.server_lifetime.is_zero()).then_some(db.server_lifetime);
        self.slots.set_max_lifetime(lifetime);
        self.settings.replace_target(target);
        if reconnect {
            self.reconnect();
        }
    }

    /// The configuration no longer has this pool: clients are refused at their next
    /// checkout (57P01), connections close as they come back.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        self.reconnect();
        self.slots.fail_waiters(&ConnectFailure {
            sqlstate: sqlstate::ADMIN_SHUTDOWN,
            message: self.retired_error().to_string(),
        });
    }

    /// True once a reload removed this pool.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    pub(super) fn retired_error(&self) -> CheckoutError {
        CheckoutError::Retired {
            database: self.database.clone(),
        }
    }
}
