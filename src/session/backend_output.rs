//! Backend → client: the hot path for results.
//!
//! The read buffer is walked header by header. Each message is classified by the expected
//! response queue (forward or swallow, which requests it completes); runs of forwarded bytes are
//! written to the client straight from the read buffer (no copy) in as few writes as possible.
//! Only ReadyForQuery, ParameterStatus and ErrorResponse bodies are decoded.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::buffers::MAX_BACKEND_MESSAGE;
use super::expect::{Outcome, Route};
use super::held::{Action, Held};
use super::relay::{Exit, Relay};
use super::reports::{self, Reports};
use crate::pool::BackendPool;
use crate::protocol::decode::{error_fields, parameter_status, ready_status};
use crate::protocol::frame::{FrameHeader, Scan};
use crate::protocol::messages;

/// Frames whose body is decoded; CommandComplete only while a transaction's session effects
/// wait to learn whether it committed.
fn wants_body(tag: u8, track_commit: bool) -> bool {
    matches!(tag, b'Z' | b'S' | b'E') || (track_commit && tag == b'C')
}

/// Position in the read buffer: `pos` is processed up to here, `forward_from..pos` is the
/// pending run of bytes to forward.
struct Cursor {
    pos: usize,
    forward_from: usize,
}

/// What one backend message means for the relay.
struct Step {
    len: usize,
    route: Route,
    /// Sent to the client instead of the (swallowed) message.
    replacement: Option<Bytes>,
}

impl Relay {
    /// Processes backend output: forwards, swallows, and tracks state.
    pub(super) async fn on_server_data(&mut self) -> Result<(), Exit> {
        process(self).await
    }
}

/// Processes everything complete in the held backend's read buffer, then drops what was
/// processed from it — also when the client vanished on the way: the frame scanner has moved
/// past those bytes, and the reset that follows must read on from the same place (otherwise it
/// reads mid-stream, e.g. inside a COPY's data, as if it were a message header).
async fn process(relay: &mut Relay) -> Result<(), Exit> {
    let mut cursor = Cursor {
        pos: 0,
        forward_from: 0,
    };
    let result = process_from(relay, &mut cursor).await;
    if let Some(held) = relay.held.as_mut() {
        held.conn().read_buf.advance(cursor.pos);
    }
    result
}

async fn process_from(relay: &mut Relay, cursor: &mut Cursor) -> Result<(), Exit> {
    loop {
        let Some(held) = relay.held.as_mut() else {
            return Ok(());
        };
        let track_commit = !held.transaction_effects.is_empty();
        let Held { scan, checkout, .. } = &mut **held;
        let scan = scan.next(
            &checkout.conn.read_buf[cursor.pos..],
            MAX_BACKEND_MESSAGE,
            |t| wants_body(t, track_commit),
        );
        let step = match scan.map_err(|e| relay_error(&relay.pool, e))? {
            Scan::NeedMore => break,
            Scan::Pass { len, header } => Step {
                len,
                route: on_header(relay, header),
                replacement: None,
            },
            Scan::Frame(header) => on_frame(relay, cursor, header)?,
        };
        advance(relay, cursor, step.len, step.route).await?;
        if let Some(reply) = step.replacement {
            flush(relay, cursor).await?;
            write_client(relay, &reply).await?;
        }
        emit_due(relay, cursor).await?;
    }
    flush(relay, cursor).await
}

/// A pass-through frame starts (or continues, when `header` is `None`).
fn on_header(relay: &mut Relay, header: Option<FrameHeader>) -> Route {
    let Some(header) = header else {
        return relay
            .held
            .as_ref()
            .map_or(Route::Forward, |h| h.frame_route);
    };
    let Some(held) = relay.held.as_mut() else {
        return Route::Forward;
    };
    if header.tag == b'G' {
        held.enter_copy_in();
    }
    let outcome = held.queue.on_backend_message(header.tag);
    held.frame_route = outcome.route;
    let status = held.status;
    settle(relay, outcome, status);
    relay
        .held
        .as_ref()
        .map_or(Route::Forward, |h| h.frame_route)
}

/// Decodes a frame the proxy must understand.
fn on_frame(relay: &mut Relay, cursor: &Cursor, header: FrameHeader) -> Result<Step, Exit> {
    let Relay {
        held,
        params,
        pool,
        ctx,
        cancel,
        statements,
        ..
    } = relay;
    let Some(held) = held.as_mut() else {
        return Ok(Step {
            len: header.total_len,
            route: Route::Forward,
            replacement: None,
        });
    };
    let previous_status = held.status;
    let frame = &held.checkout.conn.read_buf[cursor.pos..cursor.pos + header.total_len];
    let mut replacement = None;
    let mut swallow = false;
    match header.tag {
        b'Z' => {
            held.status = ready_status(frame).map_err(|e| relay_error(pool, e))?;
            held.copy_in = false;
            let ready = (held.folding > 0).then(|| Bytes::copy_from_slice(frame));
            let mode = reports::current(held);
            if let (Some(ready), true) = (ready, mode != Reports::Direct) {
                replacement = reports::on_ready(held, params, mode, &ready);
                swallow = true;
            }
        }
        b'S' => {
            let (name, value) = parameter_status(frame).map_err(|e| relay_error(pool, e))?;
            if reports::current(held) != Reports::Direct {
                reports::hold(held, name, value);
                swallow = true;
            } else {
                // Whatever changed it (the client's SET, or pgferry aligning the backend with
                // this client), the backend's spelling of the value is now what the client has.
                params.observe(&name, &value);
                held.conn().params.insert(name, value);
            }
        }
        b'C' => held.last_was_commit = command_tag(frame) == b"COMMIT",
        _ => {
            let fields = error_fields(frame).map_err(|e| relay_error(pool, e))?;
            if fields.sqlstate == "0A000"
                && fields
                    .message
                    .contains("cached plan must not change result type")
            {
                if let Some(id) = held.last_bound {
                    held.conn().prepared.invalidate(id);
                    // Every backend's copy so far may be stale: names parsed from now on
                    // get theirs prepared again.
                    if let Some(statement) = statements.statement_by_id(id) {
                        statement.schema_changed();
                    }
                }
            }
            let quiet = reports::current(held) == Reports::Folded;
            if let Some(action) = held.queue.front_action_mut() {
                action.failed = true;
                replacement = action.replace_error.take();
            }
            // A FATAL ends the connection whoever's request it interrupts: the client gets
            // the backend's own error, as on a direct connection, and nothing after it.
            let ends_session = matches!(fields.severity.as_str(), "FATAL" | "PANIC");
            if ends_session {
                held.ended_by_backend = true;
                replacement = None;
            }
            let visible = ends_session || held.queue.route_of_next(b'E') == Route::Forward;
            match (&replacement, visible) {
                // pgferry's restore behind a client statement that failed in a transaction
                // block fails the same way, changing nothing: the client already knows.
                (None, false) if quiet => {}
                (Some(_), _) => ctx
                    .metrics
                    .count_error(crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED),
                (None, true) => ctx.metrics.count_error(&fields.sqlstate),
                (None, false) => {
                    // pgferry's own statement (aligning session settings) failed: the client
                    // is told, and the backend's record no longer claims the settings.
                    tracing::warn!(
                        client = cancel.key().process_id,
                        backend_user = %pool.user,
                        database = %pool.database,
                        sqlstate = %fields.sqlstate,
                        message = %fields.message,
                        "statement injected by pgferry failed"
                    );
                    held.conn().applied.clear();
                    let mut notice = BytesMut::new();
                    let text = format!(
                        "pgferry could not apply this session's settings: {}",
                        fields.message
                    );
                    messages::warning(&mut notice, &text);
                    replacement = Some(notice.freeze());
                }
            }
        }
    }
    let forwarded = held.ended_by_backend || held.queue.route_of_next(b'E') == Route::Forward;
    if header.tag == b'E' && replacement.is_none() && forwarded {
        // The backend names pgferry's `pgf_<n>`; the client must see its own names (only in
        // errors it is shown: a rewrite is written to the client whatever the error's route).
        let frame = &held.checkout.conn.read_buf[cursor.pos..cursor.pos + header.total_len];
        replacement = crate::session::prepared::name_client_statements(frame, statements);
    }
    let outcome = held.queue.on_backend_message(header.tag);
    let route = if replacement.is_some() || swallow {
        Route::Swallow
    } else if held.ended_by_backend {
        Route::Forward
    } else {
        outcome.route
    };
    settle(relay, outcome, previous_status);
    Ok(Step {
        len: header.total_len,
        route,
        replacement,
    })
}

/// The command tag of a CommandComplete frame (`COMMIT`, `ROLLBACK`, `INSERT 0 1`, ...).
fn command_tag(frame: &[u8]) -> &[u8] {
    let body = frame.get(5..).unwrap_or_default();
    body.split(|b| *b == 0).next().unwrap_or_default()
}

/// Applies what completing (or failing) requests means: undo of prepared-statement
/// bookkeeping on failure, session effects and transaction ends on success, metrics.
fn settle(relay: &mut Relay, outcome: Outcome<Action>, previous_status: u8) {
    let Some(held) = relay.held.as_mut() else {
        return;
    };
    let status = held.status;
    record_completions(&relay.pool, held, &outcome);
    // Skipped requests send no ReadyForQuery: a held-back Query pair among them folds nothing.
    let unfolded = outcome
        .skipped
        .iter()
        .filter(|a| a.reports != Reports::Direct)
        .count();
    held.folding = held.folding.saturating_sub(unfolded as u32);
    if outcome.failed {
        let failed = outcome.completed.map(|p| p.action);
        for undo in outcome
            .skipped
            .into_iter()
            .rev()
            .chain(failed)
            .filter_map(|a| a.undo)
        {
            undo.apply(&mut relay.statements, &mut held.conn().prepared);
        }
        return;
    }
    let Some(done) = outcome.completed else {
        return;
    };
    if done.request.ends_with_ready() && status == b'I' && previous_status != b'I' {
        relay.on_transaction_end();
    }
    if done.request == super::expect::Request::Query {
        relay.on_query_done(done.action, previous_status, status);
    }
}

/// Latency and transaction metrics for completed requests.
fn record_completions(pool: &BackendPool, held: &mut Held, outcome: &Outcome<Action>) {
    let Some(done) = &outcome.completed else {
        return;
    };
    if done.route != Route::Forward || !done.request.ends_with_ready() {
        return;
    }
    pool.metrics.query_finished(done.since.elapsed());
    if held.status == b'I' {
        if let Some(started) = held.transaction_started.take() {
            pool.metrics.transaction_finished(started.elapsed());
        }
        // Requests the client pipelined behind this transaction already began the next one.
        held.transaction_started = held.queue.oldest_forwarded_since();
    }
}

/// Moves past `len` bytes that go `route`: forwarded bytes extend the pending run; swallowed
/// bytes end it.
async fn advance(
    relay: &mut Relay,
    cursor: &mut Cursor,
    len: usize,
    route: Route,
) -> Result<(), Exit> {
    if route == Route::Swallow {
        flush(relay, cursor).await?;
        cursor.pos += len;
        cursor.forward_from = cursor.pos;
    } else {
        cursor.pos += len;
    }
    Ok(())
}

/// Writes synthesized replies that became due, once the current frame has fully passed.
async fn emit_due(relay: &mut Relay, cursor: &mut Cursor) -> Result<(), Exit> {
    let due: Vec<Bytes> = match relay.held.as_mut() {
        Some(held) if held.scan.at_boundary() => held.queue.take_due(),
        _ => return Ok(()),
    };
    if due.is_empty() {
        return Ok(());
    }
    flush(relay, cursor).await?;
    for reply in due {
        write_client(relay, &reply).await?;
    }
    Ok(())
}

/// Writes the pending run of forwarded bytes to the client.
async fn flush(relay: &mut Relay, cursor: &mut Cursor) -> Result<(), Exit> {
    if cursor.forward_from == cursor.pos {
        return Ok(());
    }
    let Relay {
        client,
        held,
        bytes_out,
        ..
    } = relay;
    if let Some(held) = held.as_mut() {
        let run = &held.conn().read_buf[cursor.forward_from..cursor.pos];
        client.write_all(run).await.map_err(|_| Exit::ClientGone)?;
        *bytes_out += run.len() as u64;
    }
    cursor.forward_from = cursor.pos;
    Ok(())
}

async fn write_client(relay: &mut Relay, bytes: &[u8]) -> Result<(), Exit> {
    relay
        .client
        .write_all(bytes)
        .await
        .map_err(|_| Exit::ClientGone)?;
    relay.bytes_out += bytes.len() as u64;
    Ok(())
}

fn relay_error(pool: &BackendPool, e: impl std::fmt::Display) -> Exit {
    Exit::BackendLost(format!(
        "invalid message from backend \"{}\": {e}",
        pool.database
    ))
}
