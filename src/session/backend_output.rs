//! Backend → client: the hot path for results.
//!
//! The read buffer is walked header by header. Each message is classified by the expected
//! response queue (forward or swallow, which requests it completes); runs of forwarded bytes are
//! written to the client straight from the read buffer (no copy) in as few writes as possible.
//! Only ReadyForQuery, ParameterStatus and ErrorResponse bodies are decoded.

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;

use super::expect::{Outcome, Route};
use super::held::{Action, Held};
use super::relay::{
    error_fields, max_backend_message, parameter_status, ready_status, Exit, Relay,
};
use crate::pool::BackendPool;
use crate::protocol::frame::{FrameHeader, Scan};

fn wants_body(tag: u8) -> bool {
    matches!(tag, b'Z' | b'S' | b'E')
}

/// Position in the read buffer: `pos` is processed up to here, `forward_from..pos` is the
/// pending run of bytes to forward.
struct Cursor {
    pos: usize,
    forward_from: usize,
}

/// Processes everything complete in the held backend's read buffer.
pub async fn process(relay: &mut Relay) -> Result<(), Exit> {
    let mut cursor = Cursor {
        pos: 0,
        forward_from: 0,
    };
    loop {
        let Some(held) = relay.held.as_mut() else {
            return Ok(());
        };
        let Held { scan, checkout, .. } = held;
        let scan = scan.next(
            &checkout.conn.read_buf[cursor.pos..],
            max_backend_message(),
            wants_body,
        );
        let (len, route) = match scan.map_err(|e| relay_error(&relay.pool, e))? {
            Scan::NeedMore => break,
            Scan::Pass { len, header } => (len, on_header(relay, header)),
            Scan::Frame(header) => (header.total_len, on_frame(relay, &cursor, header)?),
        };
        advance(relay, &mut cursor, len, route).await?;
        emit_due(relay, &mut cursor).await?;
    }
    flush(relay, &mut cursor).await?;
    if let Some(held) = relay.held.as_mut() {
        held.conn().read_buf.advance(cursor.pos);
    }
    Ok(())
}

/// A pass-through frame starts (or continues, when `header` is `None`).
fn on_header(relay: &mut Relay, header: Option<FrameHeader>) -> Route {
    let Some(held) = relay.held.as_mut() else {
        return Route::Forward;
    };
    if let Some(header) = header {
        if header.tag == b'G' {
            held.enter_copy_in();
        }
        let outcome = held.queue.on_backend_message(header.tag);
        held.frame_route = outcome.route;
        record_completions(&relay.pool, held, &outcome);
    }
    held.frame_route
}

/// Decodes a frame the proxy must understand and returns its route.
fn on_frame(relay: &mut Relay, cursor: &Cursor, header: FrameHeader) -> Result<Route, Exit> {
    let Relay {
        held,
        params,
        pool,
        ctx,
        ..
    } = relay;
    let Some(held) = held.as_mut() else {
        return Ok(Route::Forward);
    };
    let frame = &held.checkout.conn.read_buf[cursor.pos..cursor.pos + header.total_len];
    match header.tag {
        b'Z' => {
            let status = ready_status(frame).map_err(|e| relay_error(pool, e))?;
            held.status = status;
            held.copy_in = false;
        }
        b'S' => {
            let (name, value) = parameter_status(frame).map_err(|e| relay_error(pool, e))?;
            if held.queue.route_of_next(b'S') == Route::Forward {
                params.observe(&name, &value);
            }
            held.conn().params.insert(name, value);
        }
        _ => {
            let fields = error_fields(frame).map_err(|e| relay_error(pool, e))?;
            if held.queue.route_of_next(b'E') == Route::Forward {
                ctx.metrics.count_error(&fields.sqlstate);
            } else {
                tracing::warn!(sqlstate = %fields.sqlstate, message = %fields.message, "statement injected by pgferry failed");
            }
        }
    }
    let outcome = held.queue.on_backend_message(header.tag);
    record_completions(pool, held, &outcome);
    Ok(outcome.route)
}

/// Per-request bookkeeping when replies complete: latency and transaction metrics.
fn record_completions(pool: &BackendPool, held: &mut Held, outcome: &Outcome<Action>) {
    for done in &outcome.completed {
        if done.route != Route::Forward || !done.request.ends_with_ready() {
            continue;
        }
        pool.metrics.query_finished(done.since.elapsed());
        if held.status == b'I' {
            if let Some(started) = held.transaction_started.take() {
                pool.metrics.transaction_finished(started.elapsed());
            }
        }
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
    pool.mark_backend_lost();
    Exit::BackendLost(format!(
        "invalid message from backend \"{}\": {e}",
        pool.database
    ))
}
