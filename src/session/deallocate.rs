//! SQL-level `DEALLOCATE name` of a protocol-level statement name (transaction mode).
//!
//! PostgreSQL keeps protocol-level (Parse) and SQL-level (PREPARE) statements in one namespace,
//! so a client may drop a statement it parsed with `DEALLOCATE name`; pgx does exactly that
//! (`Conn.Deallocate`, its statement cache's eviction). Behind pgferry the backend only knows
//! `pgf_<n>`, and would answer `26000 prepared statement "name" does not exist`. pgferry drops
//! the client's name itself (the backend copy stays for reuse, like a protocol Close) and
//! answers as PostgreSQL would: `CommandComplete DEALLOCATE` + ReadyForQuery.

use bytes::Bytes;

use super::prepared;
use super::relay::Relay;

impl Relay {
    /// The reply to `DEALLOCATE name` (a Query of that one statement) when `name` is one of the
    /// client's protocol-level names and pgferry can answer it; `None` to send the Query on
    /// (SQL-level names, unknown names: the backend answers).
    ///
    /// Answered only when the transaction status it reports is certain: nothing the client sent
    /// is still outstanding and no extended-protocol batch is open. In a failed transaction the
    /// backend answers (25P02, as PostgreSQL; the name stays).
    pub(super) fn deallocate_locally(&mut self, name: &str) -> Option<Bytes> {
        let held = self.held.as_ref()?;
        let settled = held.queue.oldest_forwarded_since().is_none() && !held.unsynced;
        if !settled || held.status == b'E' {
            return None;
        }
        let status = held.status;
        self.statements.close(name.as_bytes())?;
        Some(prepared::deallocate_complete(status))
    }
}
