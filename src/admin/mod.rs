//! The admin console: the virtual databases `pgferry` and `pgbouncer` on the client port,
//! speaking PgBouncer's console dialect (SHOW ..., PAUSE, RELOAD, ...) so its exporters and
//! agents work unchanged.
//!
//! Console clients log in like everyone else ([`crate::session`] does the authentication);
//! then, instead of a pool, they get a [`session`] loop of their own, off the relay's path.

pub mod command;
pub mod control;
pub mod registry;
pub mod result;
mod session;
pub mod show;

pub use session::serve;

use crate::config::{AdminConfig, RESERVED_DATABASE, RESERVED_DATABASE_ALIAS};

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `admin.users`: SHOW and the control commands.
    Admin,
    /// `admin.stats_users`: SHOW only.
    Stats,
}

/// True for the database names that lead to the console rather than a pool.
pub fn is_console_database(database: &str) -> bool {
    database == RESERVED_DATABASE || database == RESERVED_DATABASE_ALIAS
}

/// The console rights of `user`, `None` when it is in neither list.
pub fn access_for(admin: &AdminConfig, user: &str) -> Option<Access> {
    if admin.users.iter().any(|u| u == user) {
        Some(Access::Admin)
    } else if admin.stats_users.iter().any(|u| u == user) {
        Some(Access::Stats)
    } else {
        None
    }
}
