//! Ending a session over a message whose type byte no client may send, as PostgreSQL does:
//! first the replies to the valid requests sent ahead of it, then the FATAL error.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::buffers::reserve;
use super::relay::{fatal, shutting_down, Exit, Relay};
use crate::protocol::messages::{self, Severity};
use crate::protocol::sqlstate;

/// A Flush message: makes the backend send the replies it buffered.
const FLUSH: &[u8] = b"H\0\0\0\x04";

impl Relay {
    /// Ends the session over a message of the invalid type `tag`, as PostgreSQL does: after
    /// the replies to the requests before it; during COPY FROM STDIN with the COPY's ERROR
    /// first, then FATAL (PostgreSQL reads the type byte there, fails the COPY, and then knows
    /// it lost track of message boundaries).
    pub(super) async fn refuse_invalid_type(&mut self, tag: u8) -> Exit {
        if let Err(exit) = self.deliver_replies_before_refusal().await {
            return exit;
        }
        if !self.held.as_ref().is_some_and(|h| h.copy_in) {
            return invalid_message_type(tag);
        }
        let mut error = BytesMut::new();
        let message = format!("unexpected message type 0x{tag:02X} during COPY from stdin");
        messages::error_response(
            &mut error,
            Severity::Error,
            sqlstate::PROTOCOL_VIOLATION,
            &message,
        );
        self.ctx.metrics.count_error(sqlstate::PROTOCOL_VIOLATION);
        if self.client.write_all(&error).await.is_err() {
            return Exit::ClientGone;
        }
        self.bytes_out += error.len() as u64;
        fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "terminating connection because protocol synchronization was lost",
        )
    }

    /// Before the session ends over an invalid message, lets the replies to the valid requests
    /// sent ahead of it reach the client: PostgreSQL executes and answers those before it reads
    /// the bad type byte, and its FATAL error flushes any replies still buffered (an
    /// extended-protocol batch without Sync), which a Flush asks of the backend here. Stops
    /// early if the backend waits for COPY data (none will come), and at shutdown's closing
    /// phase (a long statement must not hold up the proxy's exit; the reset cancels it).
    async fn deliver_replies_before_refusal(&mut self) -> Result<(), Exit> {
        if let Some(held) = self
            .held
            .as_mut()
            .filter(|h| h.unsynced && !h.queue.is_empty())
        {
            if let Err(e) = held.conn().stream.write_all(FLUSH).await {
                return Err(self.backend_lost(&e.to_string()));
            }
        }
        loop {
            let Some(held) = self.held.as_mut() else {
                return Ok(());
            };
            if held.queue.is_empty() || held.copy_in {
                return Ok(());
            }
            let conn = held.conn();
            reserve(&mut conn.read_buf);
            let read = tokio::select! {
                read = conn.stream.read_buf(&mut conn.read_buf) => read,
                changed = self.signals.changed() => {
                    if changed.is_err() || self.signals.borrow_and_update().closing {
                        return Err(shutting_down());
                    }
                    continue;
                }
            };
            match read {
                Ok(0) => return Err(self.backend_lost("the backend closed the connection")),
                Ok(_) => self.on_server_data().await?,
                Err(e) => return Err(self.backend_lost(&e.to_string())),
            }
        }
    }
}

/// The FATAL error PostgreSQL ends a session with when a message's type byte is not one a
/// client may send (its text names the byte in decimal, e.g. 122 for 'z', 0 for a
/// startup-shaped packet or an SSLRequest after login).
pub(super) fn invalid_message_type(tag: u8) -> Exit {
    let message = format!("invalid frontend message type {tag}");
    fatal(sqlstate::PROTOCOL_VIOLATION, &message)
}
