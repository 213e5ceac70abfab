//! The console's control commands (everything but SHOW): PAUSE, RESUME, RECONNECT, KILL,
//! KILL_CLIENT, WAIT_CLOSE, RELOAD, SHUTDOWN, SUSPEND, ENABLE, DISABLE.
//!
//! The console session calls [`run`] once per control statement, after checking that the
//! console user is in `admin.users` (stats users get 42501 before this is reached), and
//! writes ReadyForQuery itself after the last statement of the Query. The contract:
//!
//! - `command` is the parsed statement (never `Command::Show`);
//! - `ctx` is the proxy's shared [`SessionContext`] (pools, config, metrics, client registry);
//! - `out` is the console's output buffer: `run` appends either a CommandComplete whose tag is
//!   the command name (PgBouncer sends e.g. `PAUSE`, `RELOAD`) or one ErrorResponse with
//!   severity ERROR; never ReadyForQuery. The console flushes `out` after `run` returns, so a
//!   command that waits (PAUSE, WAIT_CLOSE) simply awaits before returning.
//!
//! The mechanics live in [`crate::control`]; this file only maps commands to them and
//! results to the console's answers.

use std::sync::Arc;

use bytes::BytesMut;

use super::command::Command;
use super::result::command_complete;
use crate::control::{self, ControlError};
use crate::protocol::messages::{self, Severity};
use crate::protocol::sqlstate;
use crate::session::SessionContext;

/// Why the console refuses a command this build does not run here.
#[derive(Debug, thiserror::Error)]
enum Unsupported {
    #[error(
        "{0} is not supported by pgferry (PgBouncer's online restart and per-database \
         DISABLE have no pgferry equivalent)"
    )]
    Command(&'static str),
    #[error("SHOW is not a control command")]
    Show,
}

/// Runs one control command and writes its answer to `out` (see the module documentation).
pub async fn run(command: Command, ctx: &Arc<SessionContext>, out: &mut BytesMut) {
    let tag = command.name();
    let outcome = match command {
        Command::Pause(db) => control::pause(ctx, db.as_deref())
            .await
            .map_err(Refusal::from),
        Command::Resume(db) => control::resume(ctx, db.as_deref()).map_err(Refusal::from),
        Command::Reconnect(db) => control::reconnect(ctx, db.as_deref()).map_err(Refusal::from),
        Command::Kill(db) => control::kill(ctx, db.as_deref()).map_err(Refusal::from),
        Command::KillClient(id) => control::kill_client(ctx, id).map_err(Refusal::from),
        Command::WaitClose(db) => control::wait_close(ctx, db.as_deref())
            .await
            .map_err(Refusal::from),
        Command::Shutdown(mode) => {
            control::request_shutdown(ctx, mode);
            Ok(())
        }
        Command::Reload => crate::reload::reload(ctx)
            .await
            .map(|_| ())
            .map_err(Refusal::Reload),
        Command::Suspend | Command::Enable(_) | Command::Disable(_) => {
            Err(Refusal::Unsupported(Unsupported::Command(tag)))
        }
        Command::Show(_) => Err(Refusal::Unsupported(Unsupported::Show)),
    };
    match outcome {
        Ok(()) => command_complete(out, tag),
        Err(refusal) => {
            let code = refusal.sqlstate();
            ctx.metrics.count_error(code);
            messages::error_response(out, Severity::Error, code, &refusal.to_string());
        }
    }
}

/// A command the console answers with an ErrorResponse.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Unsupported(Unsupported),
    /// The new configuration was rejected whole; the running one stays.
    #[error("configuration not reloaded, the running configuration stays in force: {0}")]
    Reload(crate::reload::ReloadError),
}

impl Refusal {
    fn sqlstate(&self) -> &'static str {
        match self {
            Refusal::Control(error) => error.sqlstate(),
            Refusal::Unsupported(_) => sqlstate::FEATURE_NOT_SUPPORTED,
            Refusal::Reload(_) => sqlstate::CONFIG_FILE_ERROR,
        }
    }
}
