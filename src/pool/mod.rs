//! Pool registry: one pool of backend connections per (database, backend user).
//!
//! Pools are created at startup from the configuration (they connect only when asked or to
//! warm `min_pool_size`, in the background, so an unreachable backend never prevents pgferry
//! from starting). Clients are routed to a pool by
//! the database in their startup packet and by the backend user that database maps them to.

mod backend_pool;
mod baseline;
mod control;
mod gate;
mod generation;
mod health;
mod reconcile;
mod settings;
mod slots;
mod user_clients;

use std::collections::HashMap;
use std::sync::Arc;

pub use backend_pool::{
    BackendPool, Checkout, CheckoutError, DatabaseCap, HEALTH_CHECK_AFTER_IDLE,
};
pub use baseline::Baseline;
pub use gate::Hold;
pub use health::{spawn_health_checker, RegistrySource};
pub use reconcile::{plan_reload, PoolChanges, ReloadPlan};
pub use user_clients::{UserAdmission, UserClients, UserLimitError};

use crate::config::{Config, DatabaseConfig, PoolMode};
use crate::metrics::{Metrics, PoolState, PoolStateSource};

/// Why a client's startup cannot be mapped to a pool.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("database \"{0}\" does not exist")]
    UnknownDatabase(String),
    #[error("role \"{user}\" cannot connect to database \"{database}\" through pgferry")]
    NoPoolForUser { database: String, user: String },
}

/// Building pools failed (bad backend TLS settings).
#[derive(Debug, thiserror::Error)]
#[error("database \"{database}\": {reason}")]
pub struct PoolBuildError {
    pub database: String,
    pub reason: String,
}

/// All pools, keyed by (database name as clients know it, backend user).
pub struct PoolRegistry {
    pools: HashMap<(String, String), Arc<BackendPool>>,
    databases: HashMap<String, DatabaseConfig>,
    /// `max_db_connections` of each database that has one.
    caps: HashMap<String, Arc<DatabaseCap>>,
    /// `users[].max_client_connections`.
    user_clients: UserClients,
}

impl PoolRegistry {
    /// Creates every pool the configuration implies; no backend connection is opened here.
    pub fn build(config: &Config, metrics: &Arc<Metrics>) -> Result<PoolRegistry, PoolBuildError> {
        let plan = reconcile::plan(None, config, metrics)?;
        Ok(plan.commit(config))
    }

    /// A registry without pools (what the health probe sees once the proxy is gone).
    pub fn empty() -> PoolRegistry {
        PoolRegistry {
            pools: HashMap::new(),
            databases: HashMap::new(),
            caps: HashMap::new(),
            user_clients: UserClients::from_config(&Config::minimal()),
        }
    }

    /// The pool serving `user` on `database`.
    pub fn route(&self, database: &str, user: &str) -> Result<Arc<BackendPool>, RouteError> {
        let db = self
            .databases
            .get(database)
            .ok_or_else(|| RouteError::UnknownDatabase(database.to_string()))?;
        let backend_user = db.backend_user.as_deref().unwrap_or(user);
        self.pools
            .get(&(database.to_string(), backend_user.to_string()))
            .cloned()
            .ok_or_else(|| RouteError::NoPoolForUser {
                database: database.into(),
                user: user.into(),
            })
    }

    /// Counts a logged-in client session against its user's `max_client_connections`.
    pub fn admit_client(&self, user: &str) -> Result<UserAdmission, UserLimitError> {
        self.user_clients.admit(user)
    }

    /// Client sessions per user (their counts, and live limit changes on reload).
    pub fn user_clients(&self) -> &UserClients {
        &self.user_clients
    }

    /// The `max_db_connections` cap of `database`, if it has one (`set_limit` changes it live).
    pub fn database_cap(&self, database: &str) -> Option<&Arc<DatabaseCap>> {
        self.caps.get(database)
    }

    /// True if `database` is configured (checked before authentication, like PgBouncer).
    pub fn has_database(&self, database: &str) -> bool {
        self.databases.contains_key(database)
    }

    /// Pool mode of a configured database (a pool's own mode, which its user may override, is
    /// [`BackendPool::mode`]).
    pub fn pool_mode(&self, database: &str) -> Option<PoolMode> {
        self.databases.get(database).map(|d| d.pool_mode)
    }

    /// The pools of `database`, by user name (the health probe logs in as the first).
    pub fn pools_for(&self, database: &str) -> Vec<Arc<BackendPool>> {
        let mut pools: Vec<_> = self
            .pools
            .iter()
            .filter(|((db, _), _)| db == database)
            .map(|((_, user), pool)| (user, pool))
            .collect();
        pools.sort_by(|a, b| a.0.cmp(b.0));
        pools
            .into_iter()
            .map(|(_, pool)| Arc::clone(pool))
            .collect()
    }

    /// Every pool, for health checks and shutdown.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<BackendPool>> {
        self.pools.values()
    }

    /// The configured databases, for the health probe.
    pub fn databases(&self) -> impl Iterator<Item = &DatabaseConfig> {
        self.databases.values()
    }
}

/// The backend logins a database needs: its forced backend user, or every configured user that
/// has a plaintext password (validated at config load).
pub(super) fn backend_logins(
    config: &Config,
    db: &DatabaseConfig,
) -> Vec<(String, Option<String>)> {
    if let Some(user) = &db.backend_user {
        return vec![(user.clone(), db.backend_password.clone())];
    }
    config
        .users
        .iter()
        .filter_map(|u| match &u.credential {
            crate::config::Credential::Plain(p) => Some((u.name.clone(), Some(p.clone()))),
            crate::config::Credential::ScramSecret(_) => None,
        })
        .collect()
}

impl PoolStateSource for PoolRegistry {
    fn pool_states(&self) -> Vec<PoolState> {
        self.pools.values().map(|p| p.state()).collect()
    }
}
