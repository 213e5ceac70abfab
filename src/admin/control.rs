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
//! This first version answers every control command with 0A000 "not available yet".

use std::sync::Arc;

use bytes::BytesMut;

use super::command::Command;
use crate::protocol::messages::{self, Severity};
use crate::protocol::sqlstate;
use crate::session::SessionContext;

/// Runs one control command and writes its answer to `out` (see the module documentation).
pub async fn run(command: Command, ctx: &Arc<SessionContext>, out: &mut BytesMut) {
    let message = format!(
        "{} is not available yet in this pgferry build",
        command.name()
    );
    ctx.metrics.count_error(sqlstate::FEATURE_NOT_SUPPORTED);
    messages::error_response(
        out,
        Severity::Error,
        sqlstate::FEATURE_NOT_SUPPORTED,
        &message,
    );
}
