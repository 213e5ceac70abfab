//! Protocol-level named prepared statements in transaction mode (pure logic, no I/O).
//!
//! A client's statement names must keep working while its transactions hop between backend
//! connections. Three structures make that possible:
//! - [`StatementCache`] (process-wide): exact (query text, parameter type OIDs) → one
//!   server-side name `pgf_<n>`, shared by all clients;
//! - [`ClientStatements`] (per client): the client's names → cache entries;
//! - [`ServerPrepared`] (per backend connection): bounded LRU of the `pgf_<n>` prepared there.
//!
//! [`plan`] turns each client Parse/Bind/Describe/Close frame into a [`Plan`]. The unnamed
//! statement (empty name) and portal operations are never cached or rewritten: they pass
//! through untouched, since they cannot outlive the transaction that uses them.
//!
//! # Contract with the relay
//! 1. **Wire order.** Frames are planned in the order the client sent them, each as one isolated
//!    frame; every `prelude` frame and the rewritten frame are written to the server in plan
//!    order. A planning error ([`MsgError`]) is a malformed message: the relay forwards the
//!    frame unplanned and PostgreSQL answers it with its own ERROR 08P01 (the decoders accept
//!    everything PostgreSQL accepts, so such a frame never creates a statement on the server).
//! 2. **Reply order.** A `Synthesize` reply (ParseComplete, CloseComplete) and an `Error` reply
//!    must reach the client exactly after the server's responses to every earlier frame and
//!    before those to later frames — so the expected-response queue needs one entry per
//!    extended-protocol message, not only per ReadyForQuery. The server answers a Parse with
//!    `1`, Bind `2`, Close `3`, Describe of a statement `t` then `T`/`n`, Describe of a portal
//!    `T`/`n`, Execute rows then `C`/`I`/`s` (or COPY), Flush nothing, Sync `Z`. A Flush must
//!    also release synthesized replies that are due (nothing is outstanding before them).
//! 3. **Injected frames.** `Injected::Close` → swallow its CloseComplete. `Injected::Parse` →
//!    swallow its ParseComplete; if it fails, forward the ErrorResponse (in PostgreSQL the
//!    client's Bind/Describe would have failed there) and apply the plan's undo.
//! 4. **Errors and skipping.** After an ErrorResponse the server skips everything up to the next
//!    Sync, and so would PostgreSQL. For the failed frame and every later frame of that batch
//!    the relay must (a) drop their synthesized replies (`Synthesize`/`Error` queued behind the
//!    error are never sent) and (b) apply their [`Undo`] tokens, newest first. A `Plan::Error`
//!    sends `poison` to the server so that this happens naturally — the server fails at the same
//!    point, skips to Sync and aborts an open transaction exactly as PostgreSQL would have; the
//!    relay replaces the server's ErrorResponse to the poison with `reply`.
//! 5. **Stale plans.** `0A000 cached plan must not change result type` during an Execute → call
//!    `ServerPrepared::invalidate` with the `statement` of the Bind that created the portal; the
//!    next use closes and re-prepares it on that server.
//! 6. **Resets.** `DEALLOCATE ALL` / `DISCARD ALL` sent by the client clear both its
//!    [`ClientStatements`] and the [`ServerPrepared`] of the backend it ran on; any server
//!    reset that deallocates (DISCARD ALL, `DEALLOCATE ALL`, a reconnect) clears the server set.
//!
//! 7. **Failed transactions.** Set `PlanContext::failed_transaction` from the last
//!    ReadyForQuery status (`E`): a Parse is then sent to the server (which answers 25P02 like
//!    PostgreSQL) instead of being answered locally.
//!
//! Known limits: SQL-level `DEALLOCATE name` of a protocol-level name is not translated;
//! evicting a statement that an open portal of the current transaction came from would close
//! that portal (only when one transaction uses more statements than `max_per_server`); a Parse
//! reusing a live name gets 42P05 even if its query text is also invalid (PostgreSQL reports the
//! syntax error first); a pipelined Parse planned before an `E` ReadyForQuery arrives is still
//! answered locally.

mod cache;
mod client_map;
mod messages;
mod planner;

pub use crate::server::ServerPrepared;
pub use cache::{CachedStatement, StatementCache, StatementId};
pub use client_map::{ClientStatements, RegisterError};
pub use messages::{
    build_close_statement, build_parse, close_complete, duplicate_statement_error,
    missing_statement_error, parse_bind, parse_complete, parse_parse, parse_target, poison_frame,
    rewrite_bind, rewrite_describe, too_many_statements_error, BindNames, MsgError, ParseMsg,
    Target, TargetKind, CONFIGURATION_LIMIT_EXCEEDED, DUPLICATE_PREPARED_STATEMENT,
    INVALID_SQL_STATEMENT_NAME,
};
pub use planner::{plan, Injected, Plan, PlanContext, Planned, Undo};

/// Bounds on prepared-statement memory (the lead maps them to configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreparedLimits {
    /// Global cache size beyond which entries no client uses are dropped.
    pub max_cached: usize,
    /// Live statement names per client; more → 53400 error.
    pub max_per_client: usize,
    /// Statements kept prepared on one backend connection (LRU).
    pub max_per_server: usize,
}

impl Default for PreparedLimits {
    fn default() -> Self {
        PreparedLimits {
            max_cached: 10_000,
            max_per_client: 1_000,
            max_per_server: 500,
        }
    }
}
