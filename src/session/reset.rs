//! Returning a backend after its client left: clean, or not at all.
//!
//! If the client vanished mid-query or mid-transaction: cancel what runs, abort any COPY, close
//! an open extended-protocol batch, ROLLBACK, and wait (bounded) for ReadyForQuery `I`. Session
//! mode also runs DISCARD ALL. Only a connection proven idle is returned; anything else is
//! marked broken so bb8 closes it.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::expect::{Request, Route};
use super::held::{Action, Held};
use crate::config::PoolMode;
use crate::pool::BackendPool;
use crate::protocol::decode::ready_status;
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

/// Restores `held` to a clean idle state within `limit`, then drops it (returning it to the pool
/// if clean, closing it otherwise).
pub async fn salvage(mut held: Held, pool: &BackendPool, limit: Duration, broken: bool) {
    let outcome = if broken {
        Ok(Ok(false))
    } else {
        tokio::time::timeout(limit, restore(&mut held, pool)).await
    };
    match outcome {
        Ok(Ok(true)) => held.conn().mark_clean(),
        Ok(Ok(false)) => discard(&mut held, pool, "broken"),
        Ok(Err(error)) => {
            tracing::info!(%error, "backend connection could not be reset");
            discard(&mut held, pool, "reset_failed");
        }
        Err(_) => discard(&mut held, pool, "reset_timeout"),
    }
}

fn discard(held: &mut Held, pool: &BackendPool, reason: &'static str) {
    held.conn().mark_dirty();
    pool.metrics.discarded(reason);
}

async fn restore(held: &mut Held, pool: &BackendPool) -> Result<bool, ResetError> {
    if held.is_idle() && pool.mode == PoolMode::Transaction {
        return Ok(true);
    }
    if held.queue.forget_synthesized() > 0 {
        if let Err(error) = send_cancel(&pool.target, held.conn().key).await {
            tracing::debug!(%error, "cancel during reset failed");
        }
    }
    let mut out = BytesMut::new();
    if held.copy_in {
        messages::copy_fail(&mut out, "client disconnected");
    }
    if held.unsynced {
        messages::sync(&mut out);
        held.note_request(Request::Sync, Route::Swallow, Action::None);
    }
    send(held, &out).await?;
    drain(held).await?;
    if held.status != b'I' {
        run(held, "ROLLBACK").await?;
    }
    if pool.mode == PoolMode::Session {
        run(held, "DISCARD ALL").await?;
        held.conn().applied.clear();
    }
    Ok(held.status == b'I' && held.scan.at_boundary() && held.conn().read_buf.is_empty())
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
    held.note_request(Request::Query, Route::Swallow, Action::None);
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
        super::relay::reserve(&mut conn.read_buf);
        if conn.stream.read_buf(&mut conn.read_buf).await? == 0 {
            return Err(ResetError::Closed);
        }
    }
    Ok(())
}

fn consume_buffered(held: &mut Held) -> Result<(), ResetError> {
    loop {
        let Held {
            checkout,
            scan,
            queue,
            status,
            ..
        } = &mut *held;
        let buf = &mut checkout.conn.read_buf;
        match scan
            .next(buf, usize::MAX, |t| t == b'Z')
            .map_err(|e| ResetError::Protocol(e.to_string()))?
        {
            Scan::NeedMore => return Ok(()),
            Scan::Pass { len, header } => {
                if let Some(header) = header {
                    queue.on_backend_message(header.tag);
                }
                buf.advance(len);
            }
            Scan::Frame(header) => {
                *status = ready_status(&buf[..header.total_len])
                    .map_err(|e| ResetError::Protocol(e.to_string()))?;
                queue.on_backend_message(b'Z');
                buf.advance(header.total_len);
            }
        }
    }
}
