//! Per-user limits (`[[users]]` `pool_size`, `pool_mode`, `max_client_connections`) and how
//! they combine with a database's settings.
//!
//! A pool is keyed by the user it logs in to the backend as, as in PgBouncer: without
//! `backend_user` that is the client's user, so a user's `pool_size` and `pool_mode` shape its
//! own pools; with `backend_user` every client shares the backend user's pool, so the backend
//! user's entry (if it has one) shapes it and the client users' pool settings do not apply
//! there. `max_client_connections` always counts the client's own sessions, whatever pool they
//! use.

use super::bounds;
use super::error::ConfigError;
use super::{Config, DatabaseConfig, PoolMode};

/// One user's own limits; `None` falls back to the database's setting (or no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserLimits {
    /// Max backend connections of each pool that logs in as this user.
    pub pool_size: Option<u32>,
    /// Pool mode of each pool that logs in as this user.
    pub pool_mode: Option<PoolMode>,
    /// Client sessions of this user, across all databases; more are refused with 53300.
    pub max_client_connections: Option<u32>,
}

/// The size and mode of one pool once its user's limits are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    pub pool_size: u32,
    pub pool_mode: PoolMode,
}

impl Config {
    /// Limits of user `name` (none if it is not configured, e.g. a forced backend user with
    /// no `[[users]]` entry).
    pub fn user_limits(&self, name: &str) -> UserLimits {
        self.users
            .iter()
            .find(|u| u.name == name)
            .map(|u| u.limits)
            .unwrap_or_default()
    }

    /// Size and mode of the pool of `db` that logs in as `pool_user` (the database's
    /// `backend_user` if it has one, else the client's user).
    pub fn pool_settings(&self, db: &DatabaseConfig, pool_user: &str) -> PoolSettings {
        let limits = self.user_limits(pool_user);
        PoolSettings {
            pool_size: limits.pool_size.unwrap_or(db.pool_size),
            pool_mode: limits.pool_mode.unwrap_or(db.pool_mode),
        }
    }
}

/// Checks the per-user and per-database limits against each other; errors name the key.
pub(super) fn check(config: &Config, file: &str) -> Result<(), ConfigError> {
    let fail = |key: String, reason: String| Err(ConfigError::invalid(file, key, reason));
    for (i, db) in config.databases.iter().enumerate() {
        let key = |field: &str| format!("databases[{i}].{field}");
        let Some(cap) = db.max_db_connections else {
            continue;
        };
        if let Some(reason) = bounds::MAX_DB_CONNECTIONS.reason(cap.into()) {
            return fail(key("max_db_connections"), reason);
        }
        if db.min_pool_size > cap {
            let reason = format!(
                "must not exceed max_db_connections ({cap}), got {}",
                db.min_pool_size
            );
            return fail(key("min_pool_size"), reason);
        }
    }
    for (i, user) in config.users.iter().enumerate() {
        let key = |field: &str| format!("users[{i}].{field}");
        let limits = user.limits;
        if let Some(n) = limits.max_client_connections {
            if let Some(reason) = bounds::MAX_CLIENT_CONNECTIONS.reason(n.into()) {
                return fail(key("max_client_connections"), reason);
            }
        }
        let field = match (limits.pool_size, limits.pool_mode) {
            (Some(_), _) => "pool_size",
            (None, Some(_)) => "pool_mode",
            (None, None) => continue,
        };
        if let Some(size) = limits.pool_size {
            if let Some(reason) = bounds::POOL_SIZE.reason(size.into()) {
                return fail(key("pool_size"), reason);
            }
        }
        let mut pooled = config
            .databases
            .iter()
            .filter(|db| db.backend_user.as_deref().unwrap_or(&user.name) == user.name)
            .peekable();
        if pooled.peek().is_none() {
            let reason = format!(
                "has no effect: every database sets a backend_user other than {:?}, and a pool \
                 takes its size and mode from the user it logs in as; set it on that \
                 backend user's [[users]] entry or on the database",
                user.name
            );
            return fail(key(field), reason);
        }
        let size = limits.pool_size.unwrap_or(u32::MAX);
        if let Some(db) = pooled.find(|db| db.min_pool_size > size) {
            let reason = format!(
                "must not be below min_pool_size ({}) of database {:?}, which pools \
                 connections as this user, got {size}",
                db.min_pool_size, db.name
            );
            return fail(key("pool_size"), reason);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Credential, UserConfig};

    #[test]
    fn a_pool_takes_its_users_limits_else_the_databases() {
        let mut c = Config::minimal();
        let mut svc = UserConfig::new("svc", Credential::Plain("p".into()));
        svc.limits.pool_size = Some(3);
        svc.limits.pool_mode = Some(PoolMode::Session);
        c.users.push(svc);
        c.users
            .push(UserConfig::new("other", Credential::Plain("p".into())));
        let db = DatabaseConfig::new("app", "localhost", 5432);
        let own = c.pool_settings(&db, "svc");
        assert_eq!((own.pool_size, own.pool_mode), (3, PoolMode::Session));
        let other = c.pool_settings(&db, "other");
        assert_eq!(
            (other.pool_size, other.pool_mode),
            (20, PoolMode::Transaction)
        );
        let unknown = c.pool_settings(&db, "forced");
        assert_eq!(unknown.pool_size, 20);
    }
}
