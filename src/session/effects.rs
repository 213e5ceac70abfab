//! Session effects of a client's successful statements, as the lexical scanner classified
//! them: the client's desired settings follow its `SET`/`RESET`, its prepared statements follow
//! `DEALLOCATE ALL`/`DISCARD ALL`, and pins are dropped once their state is provably gone.
//!
//! Effects of a statement apply only when it succeeded; inside a transaction they wait for the
//! transaction to commit (a rolled-back `SET` never happened).

use super::held::Action;
use super::params::ClientParams;
use super::relay::Relay;
use super::sql_scan::{PinReason, SessionEffect};
use crate::server::ServerConn;

impl Relay {
    /// A simple Query completed with its ReadyForQuery. `before` and `after` are the
    /// transaction status around it. The effects are walked in statement order, following any
    /// BEGIN / COMMIT / ROLLBACK inside the same query string: effects inside a transaction
    /// wait for its commit (and are dropped on rollback); those outside apply now.
    pub(super) fn on_query_done(&mut self, action: Action, before: u8, after: u8) {
        if action.failed {
            // Prepared statements the Query was planned to drop are given back.
            if let (Some(undo), Some(held)) = (action.undo, self.held.as_mut()) {
                undo.apply(&mut self.statements, &mut held.conn().prepared);
            }
            return;
        }
        if action.effects.is_empty() {
            return;
        }
        let mut in_transaction = before != b'I';
        let (mut now, mut deferred) = (Vec::new(), Vec::new());
        for effect in action.effects {
            match effect {
                SessionEffect::TransactionStart => in_transaction = true,
                SessionEffect::TransactionEnd { commit } => {
                    let earlier = self
                        .held
                        .as_mut()
                        .map(|h| std::mem::take(&mut h.transaction_effects));
                    if commit && in_transaction {
                        now.extend(earlier.unwrap_or_default());
                        now.append(&mut deferred);
                    }
                    deferred.clear();
                    in_transaction = false;
                }
                // Prepared statements are not transactional: a ROLLBACK keeps them dropped.
                SessionEffect::DeallocateAll => now.push(SessionEffect::DeallocateAll),
                other if in_transaction => deferred.push(other),
                other => now.push(other),
            }
        }
        self.apply_effects(now);
        if after != b'I' {
            if let Some(held) = self.held.as_mut() {
                held.transaction_effects.extend(deferred);
            }
        }
    }

    /// A transaction ended (ReadyForQuery `I` after `T`/`E`): its deferred effects apply if it
    /// committed.
    pub(super) fn on_transaction_end(&mut self) {
        let Some(held) = self.held.as_mut() else {
            return;
        };
        let effects = std::mem::take(&mut held.transaction_effects);
        if held.last_was_commit {
            self.apply_effects(effects);
        }
    }

    fn apply_effects(&mut self, effects: Vec<SessionEffect>) {
        for effect in effects {
            self.apply_effect(effect);
        }
    }

    fn apply_effect(&mut self, effect: SessionEffect) {
        let Some(held) = self.held.as_mut() else {
            return;
        };
        let conn = held.conn();
        match effect {
            SessionEffect::Set { name, value } if value.eq_ignore_ascii_case("default") => {
                self.params.reset(&name);
                record_reset(&self.params, conn, &name);
            }
            SessionEffect::Set { name, value } => {
                if !self.params.is_reported(&name) {
                    self.params.set(&name, &value);
                    if let Some(statement) = self.params.statement_for(&name) {
                        conn.applied
                            .insert(name.to_ascii_lowercase(), statement.to_string());
                    }
                }
            }
            SessionEffect::Reset { name } => {
                self.params.reset(&name);
                record_reset(&self.params, conn, &name);
            }
            SessionEffect::ResetAll => {
                self.params.reset_all();
                record_reset_all(&self.params, conn);
            }
            // Prepared statements were dropped as the statement was planned (see
            // `prepared::reset_statements`).
            SessionEffect::DiscardAll => {
                self.params.reset_all();
                record_reset_all(&self.params, conn);
                for reason in self.pins.clone() {
                    if reason != PinReason::Load {
                        self.unpin(reason);
                    }
                }
            }
            SessionEffect::DeallocateAll => self.unpin(PinReason::SqlPrepare),
            SessionEffect::DiscardTemp => self.unpin(PinReason::TempTable),
            SessionEffect::UnlistenAll => self.unpin(PinReason::Listen),
            SessionEffect::CloseAll => self.unpin(PinReason::CursorWithHold),
            SessionEffect::AdvisoryUnlockAll => self.unpin(PinReason::AdvisoryLock),
            // Translated (protocol-level names) or forwarded when the Query is planned.
            SessionEffect::Pin(_)
            | SessionEffect::Deallocate { .. }
            | SessionEffect::TransactionStart
            | SessionEffect::TransactionEnd { .. } => {}
        }
    }
}

/// The backend's record after the client's `RESET name` and pgferry's restore behind it (see
/// `params::restore`): the client's startup setting if it had one, else nothing of pgferry's.
fn record_reset(params: &ClientParams, conn: &mut ServerConn, name: &str) {
    let name = name.to_ascii_lowercase();
    match params.statement_for(&name) {
        Some(statement) => conn.applied.insert(name, statement.to_string()),
        None => conn.applied.remove(&name),
    };
}

/// The backend's record after `RESET ALL` / `DISCARD ALL` and the restore: exactly the
/// client's non-reported startup settings.
fn record_reset_all(params: &ClientParams, conn: &mut ServerConn) {
    conn.applied.clear();
    for (name, statement) in params.startup_statements() {
        conn.applied.insert(name.clone(), statement.clone());
    }
}
