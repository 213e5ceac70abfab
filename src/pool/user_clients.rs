//! `users[].max_client_connections`: how many client sessions each user has, across all
//! databases, against its own limit (one role per microservice: a flooding service is
//! refused before it can crowd out the others' sessions).
//!
//! Counted once per login and once per session end (two relaxed atomic operations); nothing
//! per transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::config::Config;

/// A user already has as many client sessions as its limit allows.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error(
    "too many connections for role \"{user}\" (pgferry users[].max_client_connections = {limit})"
)]
pub struct UserLimitError {
    pub user: String,
    pub limit: u32,
}

/// Client sessions per configured user.
pub struct UserClients {
    users: HashMap<String, Arc<UserCount>>,
}

struct UserCount {
    /// 0: no limit.
    limit: AtomicU32,
    current: AtomicU32,
}

/// One client session counted against its user; dropping it (session end) uncounts it.
#[must_use]
pub struct UserAdmission(Option<Arc<UserCount>>);

impl UserClients {
    /// A count for every configured user, with its `max_client_connections`.
    pub fn from_config(config: &Config) -> Self {
        let users = config
            .users
            .iter()
            .map(|u| {
                let limit = u.limits.max_client_connections.unwrap_or(0);
                let count = UserCount {
                    limit: AtomicU32::new(limit),
                    current: AtomicU32::new(0),
                };
                (u.name.clone(), Arc::new(count))
            })
            .collect();
        UserClients { users }
    }

    /// The counts for a reloaded configuration: a user that stays keeps its counter (its live
    /// sessions stay counted) with the new limit; a new user starts at zero; a removed user's
    /// sessions release a counter nobody reads any more.
    pub fn reconfigured(&self, config: &Config) -> UserClients {
        let mut next = UserClients::from_config(config);
        for (name, count) in &mut next.users {
            if let Some(kept) = self.users.get(name) {
                let limit = count.limit.load(Ordering::Relaxed);
                kept.limit.store(limit, Ordering::Relaxed);
                *count = Arc::clone(kept);
            }
        }
        next
    }

    /// Counts a new session of `user`, or refuses it if the user is at its limit. Users
    /// unknown here (none after authentication) are not counted.
    pub fn admit(&self, user: &str) -> Result<UserAdmission, UserLimitError> {
        let Some(count) = self.users.get(user) else {
            return Ok(UserAdmission(None));
        };
        let before = count.current.fetch_add(1, Ordering::Relaxed);
        let limit = count.limit.load(Ordering::Relaxed);
        if limit != 0 && before >= limit {
            count.current.fetch_sub(1, Ordering::Relaxed);
            return Err(UserLimitError {
                user: user.to_string(),
                limit,
            });
        }
        Ok(UserAdmission(Some(Arc::clone(count))))
    }

    /// Changes a user's limit live (`None`: no limit); sessions over a lowered limit stay,
    /// new ones are refused until the count is below it. False if the user is unknown.
    pub fn set_limit(&self, user: &str, limit: Option<u32>) -> bool {
        self.users
            .get(user)
            .map(|c| c.limit.store(limit.unwrap_or(0), Ordering::Relaxed))
            .is_some()
    }

    /// Client sessions `user` has now (for the admin console).
    pub fn current(&self, user: &str) -> u32 {
        self.users
            .get(user)
            .map_or(0, |c| c.current.load(Ordering::Relaxed))
    }
}

impl Drop for UserAdmission {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.current.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Credential, UserConfig};

    fn clients(limit: Option<u32>) -> UserClients {
        let mut config = Config::minimal();
        let mut svc = UserConfig::new("svc", Credential::Plain("p".into()));
        svc.limits.max_client_connections = limit;
        config.users.push(svc);
        UserClients::from_config(&config)
    }

    #[test]
    fn the_limit_refuses_only_the_next_session_and_frees_on_drop() {
        let users = clients(Some(2));
        let a = users.admit("svc").unwrap();
        let _b = users.admit("svc").unwrap();
        let err = users.admit("svc").err().unwrap();
        assert_eq!(
            err.to_string(),
            "too many connections for role \"svc\" (pgferry users[].max_client_connections = 2)"
        );
        assert_eq!(users.current("svc"), 2);
        drop(a);
        assert_eq!(users.current("svc"), 1);
        let _c = users.admit("svc").unwrap();
        assert!(users.admit("nobody").is_ok());
    }

    #[test]
    fn no_limit_counts_without_refusing_and_a_limit_can_be_set_live() {
        let users = clients(None);
        let held: Vec<_> = (0..50).map(|_| users.admit("svc").unwrap()).collect();
        assert_eq!(users.current("svc"), 50);
        assert!(users.set_limit("svc", Some(50)));
        assert!(users.admit("svc").is_err());
        assert!(!users.set_limit("nobody", Some(1)));
        drop(held);
        assert_eq!(users.current("svc"), 0);
    }

    #[test]
    fn a_reload_keeps_the_live_counts_of_users_that_stay() {
        let users = clients(Some(2));
        let held = users.admit("svc").unwrap();
        let mut config = Config::minimal();
        let mut svc = UserConfig::new("svc", Credential::Plain("p".into()));
        svc.limits.max_client_connections = Some(1);
        config.users.push(svc);
        config
            .users
            .push(UserConfig::new("new", Credential::Plain("p".into())));
        let reloaded = users.reconfigured(&config);
        assert_eq!(reloaded.current("svc"), 1);
        assert!(
            reloaded.admit("svc").is_err(),
            "the new limit of 1 is reached"
        );
        drop(held);
        let _again = reloaded.admit("svc").unwrap();
        assert!(reloaded.admit("new").is_ok());
    }
}
