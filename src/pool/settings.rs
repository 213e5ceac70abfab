//! The settings of one pool that a reload may change while clients use it.
//!
//! Sessions keep their `Arc<BackendPool>` for their whole life, so a reload changes a pool in
//! place rather than replacing it. The values read per transaction (pool mode, wait timeout)
//! are plain atomics: a Relaxed load costs what reading a field did before, and a reload
//! that changes them is seen from the next transaction on. The backend target (where and as
//! whom to log in) is swapped whole, so a new connection never mixes two generations.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{DatabaseConfig, Limits, PoolMode};
use crate::server::BackendTarget;

/// Live, per-pool settings.
pub struct LiveSettings {
    mode: AtomicU8,
    query_wait_timeout_ms: AtomicU64,
    /// `server_idle_timeout` in ms; 0 keeps idle connections forever.
    idle_timeout_ms: AtomicU64,
    min_idle: AtomicU32,
    target: ArcSwap<BackendTarget>,
}

impl LiveSettings {
    /// The settings `db` and `limits` give a pool in `mode` (the database's, or its user's
    /// override) logging in as `target`.
    pub fn new(
        db: &DatabaseConfig,
        limits: &Limits,
        mode: PoolMode,
        target: Arc<BackendTarget>,
    ) -> Self {
        let settings = LiveSettings {
            mode: AtomicU8::new(0),
            query_wait_timeout_ms: AtomicU64::new(0),
            idle_timeout_ms: AtomicU64::new(0),
            min_idle: AtomicU32::new(0),
            target: ArcSwap::new(target),
        };
        settings.update(db, limits, mode);
        settings
    }

    /// Takes the reloadable values of `db`, `limits` and the pool's `mode` (not the target:
    /// see [`LiveSettings::replace_target`]).
    pub fn update(&self, db: &DatabaseConfig, limits: &Limits, mode: PoolMode) {
        let mode = match mode {
            PoolMode::Transaction => 0,
            PoolMode::Session => 1,
        };
        self.mode.store(mode, Ordering::Relaxed);
        store_duration(&self.query_wait_timeout_ms, limits.query_wait_timeout);
        store_duration(&self.idle_timeout_ms, db.server_idle_timeout);
        self.min_idle.store(db.min_pool_size, Ordering::Relaxed);
    }

    /// Transaction or session pooling, as configured now.
    pub fn mode(&self) -> PoolMode {
        match self.mode.load(Ordering::Relaxed) {
            0 => PoolMode::Transaction,
            _ => PoolMode::Session,
        }
    }

    /// How long a client waits for a connection before 53300.
    pub fn query_wait_timeout(&self) -> Duration {
        Duration::from_millis(self.query_wait_timeout_ms.load(Ordering::Relaxed))
    }

    /// `server_idle_timeout`, if idle connections are closed at all.
    pub fn idle_timeout(&self) -> Option<Duration> {
        let ms = self.idle_timeout_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// `min_pool_size`: idle connections kept warm.
    pub fn min_idle(&self) -> u32 {
        self.min_idle.load(Ordering::Relaxed)
    }

    /// Where and as whom new connections log in.
    pub fn target(&self) -> Arc<BackendTarget> {
        self.target.load_full()
    }

    /// Installs a new target; connections opened from now on use it.
    pub fn replace_target(&self, target: Arc<BackendTarget>) {
        self.target.store(target);
    }
}

/// Stores `duration` in whole milliseconds (config durations are validated far below
/// `u64::MAX` ms).
fn store_duration(cell: &AtomicU64, duration: Duration) {
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    cell.store(ms, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Arc<BackendTarget> {
        Arc::new(BackendTarget::for_unit_tests())
    }

    #[test]
    fn update_takes_the_reloadable_values() {
        let mut db = DatabaseConfig::new("db", "127.0.0.1", 5432);
        let mut limits = Limits::default();
        let settings = LiveSettings::new(&db, &limits, db.pool_mode, target());
        assert_eq!(settings.mode(), PoolMode::Transaction);
        assert_eq!(settings.idle_timeout(), Some(Duration::from_secs(600)));
        db.pool_mode = PoolMode::Session;
        db.server_idle_timeout = Duration::ZERO;
        db.min_pool_size = 3;
        limits.query_wait_timeout = Duration::from_millis(250);
        settings.update(&db, &limits, db.pool_mode);
        assert_eq!(settings.mode(), PoolMode::Session);
        assert_eq!(settings.idle_timeout(), None);
        assert_eq!(settings.min_idle(), 3);
        assert_eq!(settings.query_wait_timeout(), Duration::from_millis(250));
    }
}
