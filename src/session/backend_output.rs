//! Backend → client: the hot path for results.
//!
//! The read buffer is walked header by header. Runs of forwarded bytes are written to the client
//! straight from the read buffer (no copy) in as few writes as possible; only ReadyForQuery,
//! ParameterStatus and ErrorResponse frames are decoded.

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;

use super::expect::Route;
use super::held::Held;
use super::relay::{
    error_fields, max_backend_message, parameter_status, ready_status, Exit, Relay,
};
use crate::protocol::frame::{FrameHeader, Scan};

fn wants_body(tag: u8) -> bool {
    matches!(tag, b'Z' | b'S' | b'E')
}

/// Output of one backend read, positioned over the read buffer.
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
        let scan = scan.map_err(|e| relay_error(&relay.pool, e))?;
        match scan {
            Scan::NeedMore => break,
            Scan::Pass { len, header } => {
                let Some(held) = relay.held.as_mut() else {
                    return Ok(());
                };
                if let Some(header) = header {
                    held.frame_route = Relay::route_of(held, header.tag);
                    if header.tag == b'G' {
                        held.copy_in = true;
                    }
                }
                let route = held.frame_route;
                advance(relay, &mut cursor, len, route).await?;
            }
            Scan::Frame(header) => {
                let (route, due) = on_frame(relay, &cursor, header)?;
                advance(relay, &mut cursor, header.total_len, route).await?;
                for reply in due {
                    flush(relay, &mut cursor).await?;
                    write_client(relay, &reply).await?;
                }
            }
        }
    }
    flush(relay, &mut cursor).await?;
    if let Some(held) = relay.held.as_mut() {
        held.conn().read_buf.advance(cursor.pos);
    }
    Ok(())
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

/// Decodes a frame the proxy must understand; returns its route and any synthesized replies
/// that become due after it.
fn on_frame(
    relay: &mut Relay,
    cursor: &Cursor,
    header: FrameHeader,
) -> Result<(Route, Vec<Bytes>), Exit> {
    let Relay {
        held,
        params,
        pool,
        ctx,
        ..
    } = relay;
    let Some(held) = held.as_mut() else {
        return Ok((Route::Forward, Vec::new()));
    };
    let route = Relay::route_of(held, header.tag);
    let range = cursor.pos..cursor.pos + header.total_len;
    match header.tag {
        b'Z' => {
            let status =
                ready_status(&held.conn().read_buf[range]).map_err(|e| relay_error(pool, e))?;
            held.status = status;
            held.copy_in = false;
            let completed = held.queue.complete();
            let route = completed.map_or(Route::Forward, |c| c.route);
            if let Some(done) = completed.filter(|c| c.route == Route::Forward) {
                pool.metrics.query_finished(done.since.elapsed());
                if status == b'I' {
                    if let Some(started) = held.transaction_started.take() {
                        pool.metrics.transaction_finished(started.elapsed());
                    }
                }
            }
            Ok((route, held.queue.take_due()))
        }
        b'S' => {
            let conn = held.conn();
            let (name, value) =
                parameter_status(&conn.read_buf[range]).map_err(|e| relay_error(pool, e))?;
            let (name, value) = (name.to_string(), value.to_string());
            if route == Route::Forward {
                params.observe(&name, &value);
            }
            conn.params.insert(name, value);
            Ok((route, Vec::new()))
        }
        _ => {
            let fields =
                error_fields(&held.conn().read_buf[range]).map_err(|e| relay_error(pool, e))?;
            if route == Route::Forward {
                ctx.metrics.count_error(&fields.sqlstate);
            } else {
                tracing::warn!(sqlstate = %fields.sqlstate, message = %fields.message, "statement injected by pgferry failed");
            }
            Ok((route, Vec::new()))
        }
    }
}

fn relay_error(pool: &crate::pool::BackendPool, e: impl std::fmt::Display) -> Exit {
    pool.mark_backend_lost();
    Exit::BackendLost(format!(
        "invalid message from backend \"{}\": {e}",
        pool.database
    ))
}
