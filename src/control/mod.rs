//! The admin console's control commands as Rust calls: PAUSE, RESUME, RECONNECT, KILL,
//! KILL_CLIENT, WAIT_CLOSE and SHUTDOWN, applied to the pools of one database or of all.
//!
//! The pool half of each command is in `pool::control` (gate, generations); this module picks
//! the pools, ends killed sessions through the cancel registry and the session signals, and
//! waits where a command waits. Waits poll the pools' counts every [`POLL_EVERY`]: the
//! per-transaction give-back then stays free of any notification only an admin command needs.

use std::sync::Arc;
use std::time::Duration;

pub mod signals;

pub use crate::admin::command::ShutdownMode;
use crate::cancel::KillClientError;
use crate::pool::BackendPool;
use crate::protocol::sqlstate;
use crate::session::SessionContext;
pub use signals::Controls;

/// How often PAUSE, WAIT_CLOSE and SHUTDOWN WAIT_FOR_SERVERS look at the pools again.
pub const POLL_EVERY: Duration = Duration::from_millis(10);

/// Why a control command was refused; each maps to the SQLSTATE the console answers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("no such database: {0}")]
    NoSuchDatabase(String),
    #[error("database {0} is already paused")]
    AlreadyPaused(String),
    #[error("pgferry is already paused")]
    AllAlreadyPaused,
    #[error("database {0} is not paused")]
    NotPaused(String),
    #[error("pgferry is not paused")]
    NothingPaused,
    #[error("PAUSE ended by RESUME before every server connection was released")]
    PauseCancelled,
    #[error(transparent)]
    KillClient(#[from] KillClientError),
}

impl ControlError {
    /// The SQLSTATE of the console's ErrorResponse.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ControlError::NoSuchDatabase(_) => sqlstate::INVALID_CATALOG_NAME,
            ControlError::KillClient(_) => sqlstate::UNDEFINED_OBJECT,
            _ => sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
        }
    }
}

/// The pools a command names: every pool of `database`, or every pool at all.
fn pools_of(
    ctx: &SessionContext,
    database: Option<&str>,
) -> Result<Vec<Arc<BackendPool>>, ControlError> {
    let live = ctx.live.load();
    let pools = &live.pools;
    match database {
        Some(db) if !pools.has_database(db) => Err(ControlError::NoSuchDatabase(db.into())),
        Some(db) => Ok(pools.pools_for(db)),
        None => Ok(pools.pools().cloned().collect()),
    }
}

/// PAUSE [db]: holds new checkouts, then waits until every server connection of the pools
/// is released. Session-mode and pinned clients hold theirs until they disconnect, so the
/// wait lasts until then (as in PgBouncer); a RESUME meanwhile ends it with an error.
pub async fn pause(ctx: &SessionContext, database: Option<&str>) -> Result<(), ControlError> {
    let pools = pools_of(ctx, database)?;
    if !pools.is_empty() && pools.iter().all(|p| p.hold().is_some()) {
        return Err(match database {
            Some(db) => ControlError::AlreadyPaused(db.into()),
            None => ControlError::AllAlreadyPaused,
        });
    }
    for pool in &pools {
        pool.pause();
    }
    tracing::info!(
        database = database.unwrap_or("*"),
        "PAUSE: holding new work"
    );
    let mut poll = tokio::time::interval(POLL_EVERY);
    loop {
        if pools.iter().all(|p| p.in_use() == 0) {
            tracing::info!(database = database.unwrap_or("*"), "PAUSE: complete");
            return Ok(());
        }
        if pools.iter().any(|p| p.hold().is_none()) {
            return Err(ControlError::PauseCancelled);
        }
        poll.tick().await;
    }
}

/// RESUME [db]: lets the held clients through in arrival order (undoes PAUSE and KILL).
pub fn resume(ctx: &SessionContext, database: Option<&str>) -> Result<(), ControlError> {
    let pools = pools_of(ctx, database)?;
    let resumed = pools.iter().filter(|p| p.resume().is_some()).count();
    if resumed == 0 {
        return Err(match database {
            Some(db) => ControlError::NotPaused(db.into()),
            None => ControlError::NothingPaused,
        });
    }
    tracing::info!(database = database.unwrap_or("*"), "RESUME");
    Ok(())
}

/// RECONNECT [db]: every server connection open now closes when next released.
pub fn reconnect(ctx: &SessionContext, database: Option<&str>) -> Result<(), ControlError> {
    for pool in pools_of(ctx, database)? {
        pool.reconnect();
    }
    tracing::info!(database = database.unwrap_or("*"), "RECONNECT");
    Ok(())
}

/// KILL [db]: ends the clients of the database(s) now with 57P01, closes the server
/// connections (borrowed ones as their killed clients drop them), and holds new work until
/// RESUME, as PgBouncer does.
pub fn kill(ctx: &SessionContext, database: Option<&str>) -> Result<(), ControlError> {
    let pools = pools_of(ctx, database)?;
    let mut databases: Vec<&str> = pools.iter().map(|p| p.database.as_str()).collect();
    databases.sort_unstable();
    databases.dedup();
    for pool in &pools {
        pool.kill();
    }
    let mut clients = 0;
    for db in databases {
        let message = format!(
            "terminating connection: database \"{db}\" was killed by an administrator (pgferry KILL)"
        );
        // The database's clients as the console registry knows them (registered at login).
        for client in ctx.registry.clients() {
            let of_db = client.pool.as_ref().is_some_and(|p| p.database == db);
            if of_db && ctx.cancel.kill_client(client.id, &message).is_ok() {
                clients += 1;
            }
        }
    }
    ctx.control.wake_sessions();
    tracing::info!(database = database.unwrap_or("*"), clients, "KILL");
    Ok(())
}

/// KILL_CLIENT id: ends the pool client whose BackendKeyData process id is `id` (57P01).
pub fn kill_client(ctx: &SessionContext, id: i32) -> Result<(), ControlError> {
    let message = "terminating connection: killed by an administrator (pgferry KILL_CLIENT)";
    ctx.cancel.kill_client(id, message)?;
    ctx.control.wake_sessions();
    tracing::info!(client = id, "KILL_CLIENT");
    Ok(())
}

/// WAIT_CLOSE [db]: waits until no server connection is still marked close-needed (by
/// RECONNECT, KILL or a reload). Connections held by session-mode or pinned clients close
/// only when those clients leave.
pub async fn wait_close(ctx: &SessionContext, database: Option<&str>) -> Result<(), ControlError> {
    let pools = pools_of(ctx, database)?;
    let mut poll = tokio::time::interval(POLL_EVERY);
    while pools.iter().any(|p| p.close_needed() > 0) {
        poll.tick().await;
    }
    Ok(())
}

/// SHUTDOWN [mode]: asks the proxy to stop (the first request wins; the binary, or a test
/// holding the `ProxyHandle`, carries it out).
pub fn request_shutdown(ctx: &SessionContext, mode: ShutdownMode) {
    let requested = ctx.control.shutdown.send_if_modified(|current| {
        let first = current.is_none();
        if first {
            *current = Some(mode);
        }
        first
    });
    tracing::info!(
        ?mode,
        requested,
        "SHUTDOWN requested from the admin console"
    );
}

/// Waits until no pool has a server connection borrowed (SHUTDOWN WAIT_FOR_SERVERS, after
/// pausing every pool).
pub async fn servers_released(ctx: &SessionContext) {
    let mut poll = tokio::time::interval(POLL_EVERY);
    while ctx.live.load().pools.pools().any(|p| p.in_use() > 0) {
        poll.tick().await;
    }
}

/// True while PAUSE or KILL holds any pool of `database` (SHOW DATABASES' `paused`).
pub fn is_held(ctx: &SessionContext, database: &str) -> bool {
    ctx.live
        .load()
        .pools
        .pools_for(database)
        .iter()
        .any(|p| p.hold().is_some())
}
