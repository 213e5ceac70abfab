//! Returning a backend after its client left: clean, or not at all.
//!
//! If the client vanished mid-query or mid-transaction: cancel what runs, abort any COPY, close
//! an open extended-protocol batch, ROLLBACK, and wait (bounded) for ReadyForQuery `I`. Session
//! mode also runs DISCARD ALL. Only a connection proven idle is returned; anything else is
//! marked broken so the pool closes it.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::expect::{Request, Route};
use super::held::{Action, Held};
use super::sql_scan::PinReason;
use crate::config::PoolMode;
use crate::pool::BackendPool;
use crate::protocol::decode::{parameter_status, ready_status};
use crate::protocol::frame::Scan;
use crate::protocol::messages;
use crate::server::send_cancel;

#[derive(Debug, thiserror::Error)]
enum ResetError {
    #[error("backend I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("backend closed the connection")]
    Closed,
    #[error("invalid backend output: {0}")]
    Protocol(String),
}

/// Restores `held` to a clean idle state within `limit`, then gives it back (the pool keeps it
/// if clean and closes it otherwise).
pub async fn salvage(
    mut held: Held,
    pool: &BackendPool,
    mode: PoolMode,
    limit: Duration,
    broken: bool,
    pins: &[PinReason],
) {
    // LOAD cannot be undone: such a connection is never reused.
    let outcome = if broken || pins.contains(&PinReason::Load) {
        Ok(Ok(false))
    } else {
        tokio::time::timeout(limit, restore(&mut held, mode, pins)).await
    };
    match outcome {
        Ok(Ok(true)) => held.conn().mark_clean(),
        Ok(Ok(false)) => discard(&mut held, pool, "broken"),
        Ok(Err(error)) => {
            tracing::info!(database = %pool.database, %error, "backend connection could not be reset");
            discard(&mut held, pool, "reset_failed");
        }
        Err(_) => discard(&mut held, pool, "reset_timeout"),
    }
    held.give_back();
}

fn discard(held: &mut Held, pool: &BackendPool, reason: &'static str) {
    held.conn().mark_dirty();
    pool.metrics.discarded(reason);
}

async fn restore(held: &mut Held, mode: PoolMode, pins: &[PinReason]) -> Result<bool, ResetError> {
    if held.is_idle() && mode == PoolMode::Transaction && pins.is_empty() {
        return Ok(true);
    }
    if held.queue.forget_synthesized() > 0 {
        let conn = held.conn();
        let (target, key) = (std::sync::Arc::clone(&conn.target), conn.key);
        if let Err(error) = send_cancel(&target, key).await {
            tracing::debug!(%error, "cancel during reset failed");
        }
    }
    let mut out = BytesMut::new();
    if held.copy_in {
        messages::copy_fail(&mut out, "client disconnected");
    }
    if held.unsynced {
        messages::sync(&mut out);
        held.note_request(Request::Sync, Route::Swallow, Action::default());
    }
    send(held, &out).await?;
    drain(held).await?;
    if held.status != b'I' {
        run(held, "ROLLBACK").await?;
    }
    if mode == PoolMode::Session {
        run(held, "DISCARD ALL").await?;
        forget_session_state(held);
    } else if let Some(cleanup) = pin_cleanup(pins) {
        run(held, &cleanup).await?;
        if pins.contains(&PinReason::SqlPrepare) {
            held.conn().prepared.clear();
        }
    }
    Ok(held.status == b'I' && held.scan.at_boundary() && held.conn().read_buf.is_empty())
}

/// After DISCARD ALL nothing pgferry set or prepared on the backend remains.
fn forget_session_state(held: &mut Held) {
    let conn = held.conn();
    conn.applied.clear();
    conn.prepared.clear();
}

/// Undoes exactly what a pinned session left behind (each statement is harmless if nothing
/// of its kind exists), so the backend can serve the next client.
fn pin_cleanup(pins: &[PinReason]) -> Option<String> {
    let statements: Vec<&str> = pins
        .iter()
        .map(|reason| match reason {
            PinReason::AdvisoryLock => "SELECT pg_catalog.pg_advisory_unlock_all()",
            PinReason::Listen => "UNLISTEN *",
            PinReason::TempTable => "DISCARD TEMP",
            PinReason::CursorWithHold => "CLOSE ALL",
            PinReason::SqlPrepare => "DEALLOCATE ALL",
            PinReason::SetRole => "RESET SESSION AUTHORIZATION; RESET ROLE",
            PinReason::Load => "",
        })
        .filter(|sql| !sql.is_empty())
        .collect();
    (!statements.is_empty()).then(|| statements.join("; "))
}

async fn send(held: &mut Held, bytes: &[u8]) -> Result<(), ResetError> {
    if !bytes.is_empty() {
        held.conn().stream.write_all(bytes).await?;
    }
    Ok(())
}

async fn run(held: &mut Held, sql: &str) -> Result<(), ResetError> {
    let mut out = BytesMut::new();
    messages::query(&mut out, sql);
    send(held, &out).await?;
    held.note_request(Request::Query, Route::Swallow, Action::default());
    drain(held).await
}

/// Reads and discards backend output until every outstanding request has its ReadyForQuery.
async fn drain(held: &mut Held) -> Result<(), ResetError> {
    while !held.queue.is_empty() || !held.scan.at_boundary() {
        consume_buffered(held)?;
        if held.queue.is_empty() && held.scan.at_boundary() {
            break;
        }
        let conn = held.conn();
        super::buffers::reserve(&mut conn.read_buf);
        if conn.stream.read_buf(&mut conn.read_buf).await? == 0 {
            return Err(ResetError::Closed);
        }
    }
    Ok(())
}

fn consume_buffered(held: &mut Held) -> Result<(), ResetError> {
    let protocol = |e: &dyn std::fmt::Display| ResetError::Protocol(e.to_string());
    loop {
        let Held {
            checkout,
            scan,
            queue,
            status,
            ..
        } = &mut *held;
        let conn = &mut *checkout.conn;
        let buf = &mut conn.read_buf;
        match scan
            .next(buf, usize::MAX, |t| matches!(t, b'Z' | b'S'))
            .map_err(|e| protocol(&e))?
        {
            Scan::NeedMore => return Ok(()),
            Scan::Pass { len, header } => {
                if let Some(header) = header {
                    queue.on_backend_message(header.tag);
                }
                buf.advance(len);
            }
            Scan::Frame(header) => {
                let frame = &buf[..header.total_len];
                if header.tag == b'Z' {
                    *status = ready_status(frame).map_err(|e| protocol(&e))?;
                } else {
                    // ROLLBACK and DISCARD ALL change reported parameters: keep the record
                    // of the backend's state true for the next client's alignment.
                    let (name, value) = parameter_status(frame).map_err(|e| protocol(&e))?;
                    conn.params.insert(name, value);
                }
                queue.on_backend_message(header.tag);
                buf.advance(header.total_len);
            }
        }
    }
}
