//! Client → backend: scanning client messages, applying the transaction-pooling rules to the
//! few that need it, and assembling one write for the backend.
//!
//! Most bytes pass untouched (and, when nothing in a batch is rewritten, are written straight
//! from the client's read buffer). In transaction mode Parse/Bind/Describe/Close of named
//! statements go through the prepared-statement planner, and the SQL of Query and Parse
//! messages is classified by the lexical scanner (pins, SET/RESET tracking).
//!
//! Faithful to PostgreSQL where a client can tell: a message of an unknown type is refused as
//! soon as its type byte arrives, after the valid requests before it were forwarded and
//! answered; a malformed Parse/Bind/Describe/Close is forwarded unplanned so PostgreSQL answers
//! it with its own ERROR; and while the backend skips to the next Sync nothing is planned.

use bytes::{Bytes, BytesMut};

use super::expect::{Request, Route};
use super::held::{is_frontend_tag, Action, Held};
use super::prepared::{self, parse_parse, ClientStatements, Plan, PlanContext};
use super::relay::{fatal, Exit, Relay};
use super::reports::Reports;
use super::sql_scan::{self, PinReason, SessionEffect};
use crate::config::{PinningMode, PoolMode};
use crate::protocol::frame::{Scan, HEADER_LEN};
use crate::protocol::messages::{self, Severity};
use crate::protocol::sqlstate;

/// The client bytes consumed by one scan and what to send for them.
pub(super) struct Batch {
    /// Bytes of the client buffer this batch covers.
    pub consumed: usize,
    /// Set once any frame was rewritten: the whole batch, assembled.
    pub rewritten: Option<BytesMut>,
    /// A Terminate follows the batch.
    pub terminate: bool,
    /// A message of this invalid type follows the batch: the session ends over it (see
    /// [`Relay::refuse_invalid_type`]) once the batch's replies reached the client.
    pub refused: Option<u8>,
}

/// What one client frame becomes.
enum Step {
    /// Forward the client's bytes unchanged.
    Original(Action),
    /// Send these frames instead.
    Replace(Vec<Part>),
    /// Send nothing; the reply is produced locally when it is due.
    Local(Bytes, Action),
}

/// A frame sent to the backend in place of (or ahead of) the client's.
struct Part {
    bytes: Bytes,
    request: Request,
    route: Route,
    action: Action,
}

/// Frames whose body the relay reads: Describe (statement or portal?) always; in transaction
/// mode also Parse, Bind, Close and Query; in session mode Query when the client has startup
/// settings (a RESET must return to them).
fn wants_body(tag: u8, transaction_mode: bool, session_queries: bool) -> bool {
    tag == b'D'
        || (transaction_mode && matches!(tag, b'P' | b'B' | b'C' | b'Q'))
        || (session_queries && tag == b'Q')
}

impl Relay {
    /// Walks the complete client messages in the buffer and plans what to send.
    pub(super) fn scan_client(&mut self) -> Result<Batch, Exit> {
        let max = self.ctx.live.relay().max_message_size();
        let transaction_mode = self.mode == PoolMode::Transaction;
        let session_queries = !transaction_mode && self.params.has_startup_settings();
        let mut batch = Batch {
            consumed: 0,
            rewritten: None,
            terminate: false,
            refused: None,
        };
        loop {
            let rest = &self.client_buf[batch.consumed..];
            // PostgreSQL judges the type byte before it reads the length (or waits for a body).
            match rest.first() {
                Some(&tag) if self.client_scan.at_boundary() && !is_frontend_tag(tag) => {
                    batch.refused = Some(tag);
                    return Ok(batch);
                }
                _ => {}
            }
            let scan = self.client_scan.next(rest, max, |tag| {
                wants_body(tag, transaction_mode, session_queries)
            });
            match scan.map_err(|e| fatal(sqlstate::PROTOCOL_VIOLATION, &e.to_string()))? {
                Scan::NeedMore => return Ok(batch),
                Scan::Pass { len, header } => {
                    if let Some(header) = header {
                        if header.tag == b'X' {
                            batch.terminate = true;
                            return Ok(batch);
                        }
                        self.apply_step(&mut batch, header.tag, Step::Original(Action::default()));
                    }
                    self.copy_if_rewriting(&mut batch, len);
                    batch.consumed += len;
                }
                Scan::Frame(header) => {
                    let step = self.plan_frame(batch.consumed, header.total_len, header.tag);
                    if let Step::Original(_) = step {
                        self.copy_if_rewriting(&mut batch, header.total_len);
                    }
                    self.apply_step(&mut batch, header.tag, step);
                    batch.consumed += header.total_len;
                }
            }
        }
    }

    fn copy_if_rewriting(&self, batch: &mut Batch, len: usize) {
        if let Some(out) = batch.rewritten.as_mut() {
            out.extend_from_slice(&self.client_buf[batch.consumed..batch.consumed + len]);
        }
    }

    /// Records the step's expectations and output. `batch.consumed` is the frame's start.
    fn apply_step(&mut self, batch: &mut Batch, tag: u8, step: Step) {
        let Relay {
            held,
            statements,
            client_buf,
            ..
        } = self;
        let describe_kind = client_buf.get(batch.consumed + HEADER_LEN).copied();
        let Some(held) = held.as_mut() else {
            return;
        };
        match step {
            Step::Original(action) => {
                let skipped = held.note_client_request(tag, describe_kind, action);
                undo_skipped(statements, held, skipped);
            }
            Step::Replace(parts) => {
                let out = batch
                    .rewritten
                    .get_or_insert_with(|| BytesMut::from(&client_buf[..batch.consumed]));
                for part in parts {
                    out.extend_from_slice(&part.bytes);
                    let skipped = held.note_request(part.request, part.route, part.action);
                    undo_skipped(statements, held, skipped);
                }
            }
            Step::Local(reply, action) => {
                batch
                    .rewritten
                    .get_or_insert_with(|| BytesMut::from(&client_buf[..batch.consumed]));
                let skipped = held.queue.push_synthesized(reply, action);
                undo_skipped(statements, held, skipped);
            }
        }
    }

    /// Decides what a frame the relay reads becomes.
    fn plan_frame(&mut self, start: usize, len: usize, tag: u8) -> Step {
        // While the backend skips to the next Sync it discards the frame unread, as PostgreSQL
        // would: nothing to plan, pin or track.
        if self.held.as_ref().is_some_and(|h| h.queue.is_skipping()) {
            return Step::Original(Action::default());
        }
        // The frame is read in place in the client buffer: nothing is copied.
        let range = start..start + len;
        if self.mode != PoolMode::Transaction {
            return self.plan_session_query(range, tag);
        }
        let effects = classify_sql(&self.client_buf[range.clone()], tag);
        if tag == b'Q' {
            return self.plan_query(range, effects);
        }
        if let Some(poison) = self.apply_pins(&effects) {
            return Step::Replace(vec![poison_describe(poison)]);
        }
        self.plan_statement_frame(range, tag, resets_statements(&effects))
    }

    /// Parse/Bind/Describe/Close of named statements, through the prepared-statement planner.
    /// A frame the planner cannot decode is forwarded as it is: PostgreSQL answers it with the
    /// ERROR (08P01, then skipping to Sync) it would give a direct client, and the session goes
    /// on. The planner accepts everything PostgreSQL accepts, so such a frame never creates a
    /// statement under the client's own name on the backend.
    fn plan_statement_frame(
        &mut self,
        range: std::ops::Range<usize>,
        tag: u8,
        resets_statements: bool,
    ) -> Step {
        let Relay {
            ctx,
            statements,
            held,
            client_buf,
            ..
        } = self;
        let frame = &client_buf[range];
        let Some(held) = held.as_mut() else {
            return Step::Original(Action::default());
        };
        let failed_transaction = held.status == b'E';
        let planned = prepared::plan(
            frame,
            PlanContext {
                cache: &ctx.statements,
                client: statements,
                server: &mut held.conn().prepared,
                failed_transaction,
                resets_statements,
            },
        );
        let Ok(planned) = planned else {
            return Step::Original(Action::default());
        };
        if tag == b'B' {
            held.last_bound = planned.statement;
            held.reset_at_execute = planned.undo_at_execute;
        }
        let action = Action {
            undo: planned.undo,
            ..Action::default()
        };
        let describe_kind = frame.get(HEADER_LEN).copied();
        let client_request =
            Request::of_client_message(tag, describe_kind).unwrap_or(Request::Sync);
        match planned.plan {
            Plan::PassThrough => Step::Original(action),
            Plan::Synthesize(reply) => Step::Local(reply, action),
            Plan::Error { reply, poison } => Step::Replace(vec![Part {
                bytes: poison,
                request: Request::DescribeStatement,
                route: Route::Forward,
                action: Action {
                    replace_error: Some(reply),
                    ..action
                },
            }]),
            Plan::Forward { prelude, frame } => {
                let mut parts: Vec<Part> = prelude.into_iter().map(injected_part).collect();
                parts.push(Part {
                    bytes: frame,
                    request: client_request,
                    route: Route::Forward,
                    action,
                });
                Step::Replace(parts)
            }
        }
    }

    /// Session mode: only a Query returning settings to the backend's defaults is touched,
    /// to restore the client's startup values behind it.
    fn plan_session_query(&self, range: std::ops::Range<usize>, tag: u8) -> Step {
        let effects = match tag {
            b'Q' => classify_sql(&self.client_buf[range.clone()], tag),
            _ => Vec::new(),
        };
        match self.params.restore_sql(&effects) {
            Some(sql) => self.with_restore(range, &sql, Action::default()),
            None => Step::Original(Action::default()),
        }
    }

    /// The client's Query (with `action`) followed by pgferry's restore `sql` of its startup
    /// settings, which the Query returns to the backend's defaults (see `params::restore`).
    fn with_restore(&self, range: std::ops::Range<usize>, sql: &str, action: Action) -> Step {
        let mut restore = BytesMut::new();
        messages::query(&mut restore, sql);
        let query = Part {
            bytes: Bytes::copy_from_slice(&self.client_buf[range]),
            request: Request::Query,
            route: Route::Forward,
            action: Action {
                reports: Reports::Held,
                ..action
            },
        };
        Step::Replace(vec![
            query,
            Part {
                bytes: restore.freeze(),
                request: Request::Query,
                route: Route::Swallow,
                action: Action {
                    reports: Reports::Folded,
                    ..Action::default()
                },
            },
        ])
    }

    /// A simple Query: pins now, session effects when it succeeds.
    fn plan_query(&mut self, range: std::ops::Range<usize>, effects: Vec<SessionEffect>) -> Step {
        if effects.is_empty() {
            return Step::Original(Action::default());
        }
        if let Some(reply) = self.apply_pins(&effects) {
            let mut poison = BytesMut::new();
            messages::query(&mut poison, "pgferry refused this statement");
            return Step::Replace(vec![Part {
                bytes: poison.freeze(),
                request: Request::Query,
                route: Route::Forward,
                action: Action {
                    replace_error: Some(reply),
                    ..Action::default()
                },
            }]);
        }
        if let [SessionEffect::Deallocate { name }] = effects.as_slice() {
            // Only a Query of that one statement: any other statement in it must still run.
            let text = query_text(&self.client_buf[range.clone()]);
            if is_single_statement(text) {
                if let Some(reply) = self.deallocate_locally(name) {
                    return Step::Local(reply, Action::default());
                }
            }
        }
        // Prepared statements are dropped as the Query is planned (see `reset_statements`).
        let undo = match (resets_statements(&effects), self.held.as_mut()) {
            (true, Some(held)) => Some(prepared::reset_statements(
                &mut self.statements,
                &mut held.conn().prepared,
            )),
            _ => None,
        };
        let effects: Vec<SessionEffect> = effects
            .into_iter()
            .filter(|e| !matches!(e, SessionEffect::Pin(_)))
            .collect();
        let restore = self.params.restore_sql(&effects);
        let action = Action {
            effects,
            undo,
            ..Action::default()
        };
        match restore {
            Some(sql) => self.with_restore(range, &sql, action),
            None => Step::Original(action),
        }
    }

    /// Applies the pinning policy to the pins among `effects`; in `error` mode returns the
    /// ErrorResponse that replaces the statement.
    fn apply_pins(&mut self, effects: &[SessionEffect]) -> Option<Bytes> {
        for effect in effects {
            let SessionEffect::Pin(reason) = effect else {
                continue;
            };
            match self.ctx.live.load().config.pooling.pinning {
                PinningMode::Pin => self.pin(*reason),
                PinningMode::Ignore => {}
                PinningMode::Error => return Some(refusal(*reason)),
            }
        }
        None
    }

    /// Keeps the current backend for the rest of the session (until provably clean).
    pub(super) fn pin(&mut self, reason: PinReason) {
        if self.pins.contains(&reason) {
            return;
        }
        if self.pins.is_empty() {
            self.pool.pinned_sessions_changed(1);
        }
        self.pins.push(reason);
        self.entry.pinned(reason.as_str());
        self.pool.metrics.pinned(reason.as_str());
        self.ctx.metrics.pinned_session(reason.as_str(), 1);
        tracing::info!(
            client = self.cancel.key().process_id,
            backend_user = %self.pool.user,
            database = %self.pool.database,
            reason = reason.as_str(),
            "session pinned to its backend connection"
        );
    }

    /// Drops a pin whose state was provably cleared.
    pub(super) fn unpin(&mut self, reason: PinReason) {
        let before = self.pins.len();
        self.pins.retain(|r| *r != reason);
        if self.pins.len() < before {
            self.entry.unpinned(reason.as_str());
            self.ctx.metrics.pinned_session(reason.as_str(), -1);
            if self.pins.is_empty() {
                self.pool.pinned_sessions_changed(-1);
            }
        }
    }
}

/// The SQL runs `DEALLOCATE ALL` or `DISCARD ALL`, which drop every prepared statement.
fn resets_statements(effects: &[SessionEffect]) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, SessionEffect::DeallocateAll | SessionEffect::DiscardAll))
}

/// The SQL of a Query frame (without its NUL).
fn query_text(frame: &[u8]) -> &[u8] {
    frame
        .get(HEADER_LEN..frame.len().saturating_sub(1))
        .unwrap_or_default()
}

/// True if `sql` holds no `;` but at most a trailing one: certainly a single statement. (A `;`
/// inside a literal or comment makes this false, which only means the backend answers.)
fn is_single_statement(sql: &[u8]) -> bool {
    let sql = sql.trim_ascii_end();
    let sql = sql.strip_suffix(b";").unwrap_or(sql);
    !sql.contains(&b';')
}

/// Session effects of the SQL in a Query or Parse frame (empty, without allocating, for
/// ordinary statements, other frames and malformed Parse frames, which PostgreSQL rejects).
fn classify_sql(frame: &[u8], tag: u8) -> Vec<SessionEffect> {
    let text = match tag {
        b'Q' => query_text(frame),
        b'P' => match parse_parse(frame) {
            Ok(parse) => parse.query,
            Err(_) => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    sql_scan::scan(text)
}

/// Reverts the prepared-statement bookkeeping of a request the backend skips (it arrived
/// while the backend was discarding messages up to the next Sync).
fn undo_skipped(statements: &mut ClientStatements, held: &mut Held, skipped: Option<Action>) {
    if let Some(undo) = skipped.and_then(|action| action.undo) {
        undo.apply(statements, &mut held.conn().prepared);
    }
}

fn injected_part(injected: prepared::Injected) -> Part {
    let (bytes, request) = match injected {
        prepared::Injected::Close(bytes) => (bytes, Request::Close),
        prepared::Injected::Parse(bytes) => (bytes, Request::Parse),
    };
    Part {
        bytes,
        request,
        route: Route::Swallow,
        action: Action::default(),
    }
}

/// A Describe of a statement that cannot exist, whose error is replaced by `reply`.
fn poison_describe(reply: Bytes) -> Part {
    Part {
        bytes: prepared::poison_frame(),
        request: Request::DescribeStatement,
        route: Route::Forward,
        action: Action {
            replace_error: Some(reply),
            ..Action::default()
        },
    }
}

/// The 0A000 error for a statement refused by `pooling.pinning = "error"`.
fn refusal(reason: PinReason) -> Bytes {
    let feature = match reason {
        PinReason::AdvisoryLock => "session-level advisory locks",
        PinReason::Listen => "LISTEN",
        PinReason::TempTable => "temporary tables without ON COMMIT DROP",
        PinReason::CursorWithHold => "cursors WITH HOLD",
        PinReason::SqlPrepare => "SQL-level PREPARE",
        PinReason::Load => "LOAD",
        PinReason::SetRole => "SET ROLE / SET SESSION AUTHORIZATION",
    };
    let message = format!("{feature} cannot be used through pgferry in transaction pooling mode (pooling.pinning = \"error\")");
    let mut buf = BytesMut::new();
    messages::error_response(
        &mut buf,
        Severity::Error,
        sqlstate::FEATURE_NOT_SUPPORTED,
        &message,
    );
    buf.freeze()
}
