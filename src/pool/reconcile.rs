//! Building the pool registry from a configuration, and rebuilding it on reload.
//!
//! A reload must not disturb a single client, so it works in two steps. [`plan`] does
//! everything that can fail (backend TLS files) and touches nothing that runs: it only decides
//! which pools are kept, which are new and which are gone. [`ReloadPlan::commit`] then cannot
//! fail: kept pools take their new settings in place (sessions hold them by `Arc`), a pool
//! whose destination or login changed closes each connection when it is next released, new
//! pools start, and removed pools are retired (their clients are told at their next
//! checkout, after the transaction they are in).

use std::collections::HashMap;
use std::sync::Arc;

use super::backend_pool::Reconfigure;
use super::{backend_logins, BackendPool, DatabaseCap, PoolBuildError, PoolRegistry, UserClients};
use crate::config::{Config, DatabaseConfig, PoolSettings};
use crate::metrics::Metrics;
use crate::server::BackendTarget;

/// What a reload will do to the pools; nothing has happened yet.
pub struct ReloadPlan {
    /// Every pool of the new configuration, kept or new.
    pools: HashMap<(String, String), Arc<BackendPool>>,
    kept: Vec<Kept>,
    new: Vec<Arc<BackendPool>>,
    removed: Vec<Arc<BackendPool>>,
    /// `max_db_connections` per database: kept caps take their new limit at commit.
    caps: HashMap<String, Arc<DatabaseCap>>,
    cap_limits: Vec<(Arc<DatabaseCap>, u32)>,
    user_clients: UserClients,
}

/// A pool that stays, with what it takes from the new configuration.
struct Kept {
    pool: Arc<BackendPool>,
    db: DatabaseConfig,
    settings: PoolSettings,
    target: Arc<BackendTarget>,
    /// Destination or login changed: connections open now must not be reused.
    reconnect: bool,
}

/// What a reload changed, as `database/user` names, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PoolChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Pools whose backend destination or login changed.
    pub reconnecting: Vec<String>,
}

/// Plans moving from the pools of `old` to what `config` describes.
pub fn plan_reload(
    old: &PoolRegistry,
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<ReloadPlan, PoolBuildError> {
    plan(Some(old), config, metrics)
}

/// Plans the pools of `config`, reusing those of `old` (if any) with the same database and
/// backend user.
pub(super) fn plan(
    old: Option<&PoolRegistry>,
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<ReloadPlan, PoolBuildError> {
    let mut plan = ReloadPlan {
        pools: HashMap::new(),
        kept: Vec::new(),
        new: Vec::new(),
        removed: Vec::new(),
        caps: HashMap::new(),
        cap_limits: Vec::new(),
        user_clients: match old {
            Some(old) => old.user_clients.reconfigured(config),
            None => UserClients::from_config(config),
        },
    };
    for db in &config.databases {
        let cap = plan.cap_for(old, db);
        let tls =
            crate::tls::client_config(db.tls_mode, db.tls_ca_file.as_deref()).map_err(|e| {
                PoolBuildError {
                    database: db.name.clone(),
                    reason: e.to_string(),
                }
            })?;
        for (user, password) in backend_logins(config, db) {
            let target = Arc::new(BackendTarget {
                database: db.name.clone(),
                host: db.host.clone(),
                port: db.port,
                dbname: db.dbname.clone(),
                user: user.clone(),
                password,
                tls_mode: db.tls_mode,
                tls: tls.clone(),
                connect_timeout: db.connect_timeout,
                // Nothing of pgferry's own: a backend's defaults must be what a client
                // connecting directly would get (application_name included).
                startup_params: Vec::new(),
                max_prepared_statements: config.pooling.max_prepared_statements_per_server,
            });
            let settings = config.pool_settings(db, &user);
            let key = (db.name.clone(), user);
            let pool = match old.and_then(|o| Some((o, o.pools.get(&key)?))) {
                Some((old, pool)) => {
                    let reconnect =
                        login_changed(old.databases.get(&db.name), db, &pool.target(), &target);
                    plan.kept.push(Kept {
                        pool: Arc::clone(pool),
                        db: db.clone(),
                        settings,
                        target,
                        reconnect,
                    });
                    Arc::clone(pool)
                }
                None => {
                    let metrics = metrics.pool(&db.name, &key.1);
                    let pool = BackendPool::with_settings(
                        db,
                        settings,
                        cap.clone(),
                        target,
                        &config.limits,
                        metrics,
                    );
                    let pool = Arc::new(pool);
                    plan.new.push(Arc::clone(&pool));
                    pool
                }
            };
            plan.pools.insert(key, pool);
        }
    }
    if let Some(old) = old {
        plan.removed = old
            .pools
            .iter()
            .filter(|(key, _)| !plan.pools.contains_key(*key))
            .map(|(_, pool)| Arc::clone(pool))
            .collect();
    }
    Ok(plan)
}

/// True if connections made for `old_target` must not serve after the change to
/// `new_target`: another server, database, user, password or TLS policy.
fn login_changed(
    old_db: Option<&DatabaseConfig>,
    new_db: &DatabaseConfig,
    old_target: &BackendTarget,
    new_target: &BackendTarget,
) -> bool {
    let tls_changed = old_db.is_none_or(|old| old.tls_ca_file != new_db.tls_ca_file);
    tls_changed
        || old_target.host != new_target.host
        || old_target.port != new_target.port
        || old_target.dbname != new_target.dbname
        || old_target.user != new_target.user
        || old_target.password != new_target.password
        || old_target.tls_mode != new_target.tls_mode
}

impl ReloadPlan {
    /// The cap of `db` (if it has `max_db_connections`): a kept database keeps its cap object,
    /// whose pools share it, and takes the new limit at commit. Adding or removing a cap on a
    /// running database needs a restart (the reload keeps the running state, see
    /// `reload::restart`), so a kept database has a cap here exactly when it had one.
    fn cap_for(
        &mut self,
        old: Option<&PoolRegistry>,
        db: &DatabaseConfig,
    ) -> Option<Arc<DatabaseCap>> {
        let limit = db.max_db_connections?;
        let cap = match old.and_then(|o| o.caps.get(&db.name)) {
            Some(cap) => {
                self.cap_limits.push((Arc::clone(cap), limit));
                Arc::clone(cap)
            }
            None => DatabaseCap::new(limit),
        };
        self.caps.insert(db.name.clone(), Arc::clone(&cap));
        Some(cap)
    }

    /// What committing this plan changes (for the reload's log line).
    pub fn changes(&self) -> PoolChanges {
        let name = |p: &Arc<BackendPool>| format!("{}/{}", p.database, p.user);
        let mut changes = PoolChanges {
            added: self.new.iter().map(name).collect(),
            removed: self.removed.iter().map(name).collect(),
            reconnecting: self
                .kept
                .iter()
                .filter(|k| k.reconnect)
                .map(|k| name(&k.pool))
                .collect(),
        };
        changes.added.sort();
        changes.removed.sort();
        changes.reconnecting.sort();
        changes
    }

    /// Applies the plan; cannot fail. Returns the registry to install.
    pub fn commit(self, config: &Config) -> PoolRegistry {
        for (cap, limit) in &self.cap_limits {
            if cap.limit() != *limit {
                cap.set_limit(*limit);
            }
        }
        for kept in self.kept {
            kept.pool.reconfigure(Reconfigure {
                db: &kept.db,
                limits: &config.limits,
                settings: kept.settings,
                target: kept.target,
                reconnect: kept.reconnect,
            });
        }
        for pool in &self.new {
            pool.start_upkeep();
        }
        for pool in &self.removed {
            pool.retire();
        }
        let databases = config
            .databases
            .iter()
            .map(|d| (d.name.clone(), d.clone()))
            .collect();
        PoolRegistry {
            pools: self.pools,
            databases,
            caps: self.caps,
            user_clients: self.user_clients,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(db: &DatabaseConfig, user: &str, password: &str) -> BackendTarget {
        BackendTarget {
            database: db.name.clone(),
            host: db.host.clone(),
            port: db.port,
            dbname: db.dbname.clone(),
            user: user.into(),
            password: Some(password.into()),
            tls_mode: db.tls_mode,
            tls: None,
            connect_timeout: db.connect_timeout,
            startup_params: Vec::new(),
            max_prepared_statements: 10,
        }
    }

    #[test]
    fn only_destination_login_and_tls_policy_changes_need_new_connections() {
        let old_db = DatabaseConfig::new("app", "db1", 5432);
        let old = target(&old_db, "u", "p");
        let same =
            |db: &DatabaseConfig, t: &BackendTarget| !login_changed(Some(&old_db), db, &old, t);
        let mut db = old_db.clone();
        db.pool_size = 99;
        db.connect_timeout = std::time::Duration::from_secs(1);
        assert!(
            same(&db, &target(&db, "u", "p")),
            "sizes and timeouts apply in place"
        );
        assert!(!same(&db, &target(&db, "u", "rotated")), "a new password");
        assert!(!same(&db, &target(&db, "v", "p")), "another backend user");
        let mut moved = old_db.clone();
        moved.host = "db2".into();
        assert!(!same(&moved, &target(&moved, "u", "p")), "another host");
        let mut renamed = old_db.clone();
        renamed.dbname = "other".into();
        assert!(
            !same(&renamed, &target(&renamed, "u", "p")),
            "another database"
        );
        let mut ca = old_db.clone();
        ca.tls_ca_file = Some("/etc/new-bundle.pem".into());
        assert!(!same(&ca, &target(&ca, "u", "p")), "another CA bundle");
    }
}
