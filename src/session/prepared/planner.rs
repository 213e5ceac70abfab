//! Decides, for one client frame, what the relay sends to the server and what it answers
//! locally, and updates the client map and the server set accordingly.
//!
//! State is updated *optimistically*, in wire order, when a frame is planned: a statement counts
//! as prepared on the server as soon as its Parse is planned, so a Bind pipelined right behind
//! it (before ParseComplete arrives) does not inject a second Parse. Each plan that changed
//! state carries an [`Undo`]; the relay applies it when the server fails or skips the frame
//! (see the module docs of `prepared` for the exact contract).
//!
//! A client Parse of a name is always sent to the server, even when the statement is already
//! prepared there (closed first, then parsed again): PostgreSQL plans a Parse against the
//! current schema, and a copy prepared before a schema change would make the new name fail
//! with `0A000 cached plan must not change result type`. Only Bind/Describe reuse copies.

use std::sync::Arc;

use bytes::Bytes;

use super::cache::{CachedStatement, StatementCache, StatementId};
use super::client_map::{ClientStatements, Named, RegisterError};
use super::messages::{self as msg, MsgError, TargetKind};
use crate::server::ServerPrepared;

/// The state one planning step reads and updates.
pub struct PlanContext<'a> {
    pub cache: &'a StatementCache,
    pub client: &'a mut ClientStatements,
    pub server: &'a mut ServerPrepared,
    /// The backend's last ReadyForQuery said `E` (failed transaction). PostgreSQL then rejects
    /// a Parse with 25P02, so a Parse is never answered locally: it is sent for the server to
    /// answer (and its undo keeps the server copy, which the server already has).
    pub failed_transaction: bool,
    /// The frame's SQL text (Parse) is `DEALLOCATE ALL` / `DISCARD ALL`, as the relay's
    /// lexical scan found: executing it drops every prepared statement of the session.
    pub resets_statements: bool,
}

/// A frame pgferry injects ahead of the client's frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injected {
    /// Close of a server statement (eviction or stale copy): its CloseComplete is swallowed.
    Close(Bytes),
    /// Parse of the statement the client's frame needs: its ParseComplete is swallowed; an
    /// ErrorResponse is forwarded (it stands for the client's frame failing).
    Parse(Bytes),
}

/// What to do with one client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Unnamed statement, portal operation or other message: forward the original bytes.
    PassThrough,
    /// Send `prelude` (in order) then `frame` (the client's frame, rewritten) to the server.
    Forward {
        prelude: Vec<Injected>,
        frame: Bytes,
    },
    /// Send nothing; `reply` is the client's answer, due after every earlier response.
    Synthesize(Bytes),
    /// Send `poison` instead of the client's frame so the server fails at the same point (skips
    /// to Sync, aborts the transaction); replace the server's ErrorResponse to it with `reply`.
    Error { reply: Bytes, poison: Bytes },
}

/// A plan plus how to take its state changes back.
#[derive(Debug)]
pub struct Planned {
    pub plan: Plan,
    /// Apply when the server fails this frame or skips it after an earlier error.
    pub undo: Option<Undo>,
    /// The server statement the frame uses; on `0A000 cached plan must not change result type`
    /// for the Execute that follows a Bind, call `ServerPrepared::invalidate` with it.
    pub statement: Option<StatementId>,
    /// Bind of `DEALLOCATE ALL` / `DISCARD ALL`: the undo of [`reset_statements`], to attach
    /// to the Execute that follows (the statement runs, and can fail, there). Boxed: rare, and
    /// every planned frame carries the field.
    pub undo_at_execute: Option<Box<Undo>>,
}

impl Planned {
    fn pass() -> Self {
        Self::of(Plan::PassThrough)
    }

    fn of(plan: Plan) -> Self {
        Planned {
            plan,
            undo: None,
            statement: None,
            undo_at_execute: None,
        }
    }
}

/// State changes of one planned frame, reversible if the server never executed it.
#[derive(Debug)]
pub enum Undo {
    /// A client name was registered (Parse).
    Register {
        name: Box<[u8]>,
        statement: Arc<CachedStatement>,
    },
    /// A Parse was sent under `id` after closing `closed` (eviction / stale copy).
    Prepare {
        id: StatementId,
        closed: Vec<StatementId>,
    },
    /// Two changes, the second made after the first (e.g. Parse of a statement new to this
    /// server: register, then prepare).
    Both(Box<Undo>, Box<Undo>),
    /// A client name was closed locally.
    /// (`named` boxed: Undo rides in every queued request's action, and this variant is rare.)
    Close { name: Box<[u8]>, named: Box<Named> },
    /// `DEALLOCATE ALL` / `DISCARD ALL` dropped these client names (see [`reset_statements`]);
    /// the server's copies stay marked as possibly gone, which is right whatever happened.
    Reset(Vec<(Box<[u8]>, Named)>),
}

impl Undo {
    /// Reverts the state changes. Undo tokens of one batch must be applied newest first.
    pub fn apply(self, client: &mut ClientStatements, server: &mut ServerPrepared) {
        match self {
            Undo::Register { name, statement } => client.close_if(&name, &statement),
            Undo::Prepare { id, closed } => {
                server.remove(id);
                // A skipped Close leaves the statement on the server; a done one makes the
                // stale marker a harmless extra Close later.
                closed.into_iter().for_each(|c| server.restore_stale(c));
            }
            Undo::Both(first, second) => {
                second.apply(client, server);
                first.apply(client, server);
            }
            Undo::Close { name, named } => {
                let _ = client.register(&name, *named);
            }
            Undo::Reset(names) => client.restore(names),
        }
    }

    /// `self`, then `later`, as one token.
    fn then(self, later: Undo) -> Undo {
        Undo::Both(Box::new(self), Box::new(later))
    }
}

/// The client is about to execute `DEALLOCATE ALL` or `DISCARD ALL` (simple Query, or Bind of
/// such a statement). PostgreSQL drops every prepared statement when it runs — immediately and
/// for good: prepared statements are not transactional, so a later ROLLBACK does not bring
/// them back. Applied when the frame is planned, like every other statement change, so that
/// messages pipelined behind it see its effect: the client's names are dropped (given back by
/// the undo if the statement fails) and every copy on this server is marked as possibly gone
/// (closed before it is ever prepared again), which is right whether it ran or not.
pub fn reset_statements(client: &mut ClientStatements, server: &mut ServerPrepared) -> Undo {
    server.invalidate_all();
    Undo::Reset(client.take_all())
}

/// Plans one complete, isolated client frame. A decoding error means a malformed message: the
/// relay ends the session with 08P01, as PostgreSQL does.
pub fn plan(frame: &[u8], ctx: PlanContext<'_>) -> Result<Planned, MsgError> {
    match frame.first() {
        Some(b'P') => plan_parse(frame, ctx),
        Some(b'B') => plan_bind(frame, ctx),
        Some(b'D') => plan_describe(frame, ctx),
        Some(b'C') => plan_close(frame, ctx),
        _ => Ok(Planned::pass()),
    }
}

fn plan_parse(frame: &[u8], ctx: PlanContext<'_>) -> Result<Planned, MsgError> {
    let parse = msg::parse_parse(frame)?;
    if parse.name.is_empty() {
        ctx.client.set_unnamed_resets(ctx.resets_statements);
        return Ok(Planned::pass());
    }
    if ctx.client.get(parse.name).is_some() {
        return Ok(error(msg::duplicate_statement_error(parse.name)));
    }
    let statement =
        ctx.cache
            .get_or_insert(parse.query, &parse.param_oids, ctx.resets_statements)?;
    let generation = statement.generation();
    let named = Named {
        statement: Arc::clone(&statement),
        generation,
    };
    match ctx.client.register(parse.name, named) {
        Ok(()) => {}
        Err(RegisterError::Duplicate) => {
            return Ok(error(msg::duplicate_statement_error(parse.name)))
        }
        Err(RegisterError::TooMany { limit }) => {
            return Ok(error(msg::too_many_statements_error(limit)))
        }
    }
    let id = statement.id;
    let registered = Undo::Register {
        name: parse.name.into(),
        statement: Arc::clone(&statement),
    };
    if ctx.failed_transaction && ctx.server.touch(id, generation) {
        return Ok(Planned {
            plan: Plan::Forward {
                prelude: Vec::new(),
                frame: statement.parse_frame_for_server.clone(),
            },
            undo: Some(registered),
            statement: Some(id),
            undo_at_execute: None,
        });
    }
    // Parsed again even if this server has a copy: it may predate a schema change.
    let (prelude, prepared) = prepare(&statement, generation, ctx.server, false)?;
    Ok(Planned {
        plan: Plan::Forward {
            prelude,
            frame: statement.parse_frame_for_server.clone(),
        },
        undo: Some(registered.then(prepared)),
        statement: Some(id),
        undo_at_execute: None,
    })
}

fn plan_bind(frame: &[u8], mut ctx: PlanContext<'_>) -> Result<Planned, MsgError> {
    let names = msg::parse_bind(frame)?;
    let (mut planned, named_resets) = plan_use(names.statement, &mut ctx, |name| {
        msg::rewrite_bind(frame, name)
    })?;
    let resets = match names.statement {
        b"" => ctx.client.unnamed_resets(),
        _ => named_resets,
    };
    if resets {
        planned.undo_at_execute = Some(Box::new(reset_statements(ctx.client, ctx.server)));
    }
    Ok(planned)
}

fn plan_describe(frame: &[u8], mut ctx: PlanContext<'_>) -> Result<Planned, MsgError> {
    let target = msg::parse_target(frame, b'D')?;
    if target.kind == TargetKind::Portal {
        return Ok(Planned::pass());
    }
    let (planned, _) = plan_use(target.name, &mut ctx, |name| {
        msg::rewrite_describe(frame, name)
    })?;
    Ok(planned)
}

/// Bind or Describe of a client statement: rename it, preparing it on this server first if
/// needed. Also says whether the statement is `DEALLOCATE ALL` / `DISCARD ALL` (false for the
/// unnamed statement, and for an unknown name, which fails).
fn plan_use(
    name: &[u8],
    ctx: &mut PlanContext<'_>,
    rewrite: impl FnOnce(&[u8]) -> Result<Bytes, MsgError>,
) -> Result<(Planned, bool), MsgError> {
    if name.is_empty() {
        return Ok((Planned::pass(), false));
    }
    let Some(Named {
        statement,
        generation,
    }) = ctx.client.get(name).cloned()
    else {
        return Ok((error(msg::missing_statement_error(name)), false));
    };
    let frame = rewrite(&statement.server_name)?;
    let (prelude, undo) = match ctx.server.touch(statement.id, generation) {
        true => (Vec::new(), None),
        false => {
            let current = statement.generation();
            let (prelude, undo) = prepare(&statement, current, ctx.server, true)?;
            (prelude, Some(undo))
        }
    };
    let planned = Planned {
        plan: Plan::Forward { prelude, frame },
        undo,
        statement: Some(statement.id),
        undo_at_execute: None,
    };
    Ok((planned, statement.resets_statements))
}

fn plan_close(frame: &[u8], ctx: PlanContext<'_>) -> Result<Planned, MsgError> {
    let target = msg::parse_target(frame, b'C')?;
    if target.kind == TargetKind::Portal || target.name.is_empty() {
        return Ok(Planned::pass());
    }
    // The server copy stays prepared for reuse by this or any other client.
    let undo = ctx.client.close(target.name).map(|named| Undo::Close {
        name: target.name.into(),
        named: Box::new(named),
    });
    Ok(Planned {
        plan: Plan::Synthesize(msg::close_complete()),
        undo,
        statement: None,
        undo_at_execute: None,
    })
}

/// Records `statement` as being prepared on this server at `generation`; returns the Close
/// frames to send first (plus the Parse itself when `with_parse`) and the matching undo.
fn prepare(
    statement: &CachedStatement,
    generation: u64,
    server: &mut ServerPrepared,
    with_parse: bool,
) -> Result<(Vec<Injected>, Undo), MsgError> {
    let closed = server.insert(statement.id, generation);
    server.hold(statement.id, &statement.copies);
    let close = |id: &StatementId| match *id == statement.id {
        // Its own copy (a client Parse, a stale plan): the frame is built once per entry.
        true => Ok(statement.close_frame_for_server.clone()),
        false => msg::build_close_statement(id.to_string().as_bytes()),
    };
    let mut prelude = closed
        .iter()
        .map(|id| close(id).map(Injected::Close))
        .collect::<Result<Vec<_>, _>>()?;
    if with_parse {
        prelude.push(Injected::Parse(statement.parse_frame_for_server.clone()));
    }
    let undo = Undo::Prepare {
        id: statement.id,
        closed,
    };
    Ok((prelude, undo))
}

fn error(reply: Bytes) -> Planned {
    Planned::of(Plan::Error {
        reply,
        poison: msg::poison_frame(),
    })
}

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
