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
//! 2. **Reply order.** A `Synthesize` reply (CloseComplete) and an `Error` reply
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
//! 5. **Stale plans.** `0A000 cached plan must not change result type` at a Bind → call
//!    `ServerPrepared::invalidate` with the `statement` of that Bind (the next use closes and
//!    re-prepares it on that server) and `CachedStatement::schema_changed` on its cache entry
//!    (names the clients parse from then on get older copies on other backends re-prepared).
//!    A client Parse is always sent to the server (see `planner`), so a new name for an old
//!    text is planned against the current schema, as in PostgreSQL.
//! 6. **Resets.** `DEALLOCATE ALL` / `DISCARD ALL` run by the client (simple Query: plan
//!    [`reset_statements`] with the Query and apply its undo if the Query fails; extended
//!    protocol: the planner does it at the Bind) drop its [`ClientStatements`] and mark the
//!    [`ServerPrepared`] of its backend as possibly gone — at once, not at commit: prepared
//!    statements are not transactional. Any server reset that deallocates (DISCARD ALL in
//!    session mode, cleanup of a pinned session, a reconnect) clears the server set.
//! 7. **Error texts.** An ErrorResponse naming `pgf_<n>` reaches the client with the client's
//!    own name instead ([`name_client_statements`], error path only).
//!
//! 8. **Failed transactions.** Set `PlanContext::failed_transaction` from the last
//!    ReadyForQuery status (`E`): a Parse is then sent to the server (which answers 25P02 like
//!    PostgreSQL) instead of being answered locally.
//!
//! Known limits: SQL-level `EXECUTE name` of a protocol-level name is not translated, nor is
//! `DEALLOCATE name` of one unless it is the whole Query (see `session::deallocate`); when `DEALLOCATE ALL` ran in a multi-statement Query that failed later, the
//! client keeps its names (the server copies are re-prepared on use); once a client re-parses a
//! text after a schema change, other clients' older names for that text get the new result type
//! on that backend instead of 0A000;
//! evicting a statement that an open portal of the current transaction came from would close
//! that portal (only when one transaction uses more statements than `max_per_server`); a Parse
//! reusing a live name gets 42P05 even if its query text is also invalid (PostgreSQL reports the
//! syntax error first); a pipelined Parse planned before an `E` ReadyForQuery arrives is still
//! answered locally.

mod cache;
mod client_map;
mod messages;
mod planner;
mod server_names;

pub use crate::server::ServerPrepared;
pub use cache::{CachedStatement, StatementCache, StatementId};
pub use client_map::{ClientStatements, Named, RegisterError};
pub use messages::{
    build_close_statement, build_parse, close_complete, deallocate_complete,
    duplicate_statement_error, missing_statement_error, parse_bind, parse_parse, parse_target,
    poison_frame, rewrite_bind, rewrite_describe, too_many_statements_error, BindNames, MsgError,
    ParseMsg, Target, TargetKind, CONFIGURATION_LIMIT_EXCEEDED, DUPLICATE_PREPARED_STATEMENT,
    INVALID_SQL_STATEMENT_NAME,
};
pub use planner::{plan, reset_statements, Injected, Plan, PlanContext, Planned, Undo};
pub use server_names::name_client_statements;

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
