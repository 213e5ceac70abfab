//! How a session ends: the backend goes back first (reset, or closed when it cannot be), then
//! the client is told why, with a bounded goodbye so a frozen client cannot keep the task.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

use super::relay::{fatal, Exit, Relay};
use super::reset::salvage;
use crate::protocol::messages;
use crate::protocol::sqlstate;

/// How long a client gets to take its final error message.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

impl Relay {
    pub(super) async fn end(mut self: Box<Self>, exit: Exit) {
        // The end of a session is rare and its state large: boxed, so the relay future that
        // every idle client carries does not reserve room for it.
        let span = self.end_span();
        Box::pin(self.finish(exit).instrument(span)).await;
    }

    /// The context of the session's last events (no span lives while it runs: see
    /// [`super::run_client`]): its `client` id, the pool's database and backend user (the
    /// client's own user name is not kept per session; the login refusal and DEBUG login span
    /// carry it), and peer (unless the socket no longer knows it, e.g. after a reset).
    fn end_span(&self) -> tracing::Span {
        let span = tracing::debug_span!(
            "client",
            client = self.cancel.key().process_id,
            peer = tracing::field::Empty,
            backend_user = %self.pool.user,
            database = %self.pool.database,
        );
        if !span.is_disabled() {
            if let Ok(peer) = self.client.peer_addr() {
                span.record("peer", tracing::field::display(peer));
            }
        }
        span
    }

    /// Tells the client why it ends (if it is still there) and returns or discards the backend.
    /// The backend goes back first (bounded by `server_reset_timeout`), so a client that
    /// does not read its goodbye cannot keep a backend from other clients.
    async fn finish(&mut self, exit: Exit) {
        self.flush_byte_counts();
        tracing::debug!(?exit, "session ended");
        if let Some(held) = self.held.take() {
            // A client that left mid-message leaves the backend waiting for the rest of it.
            let broken = matches!(
                exit,
                Exit::BackendLost(_) | Exit::BackendEnded | Exit::Killed(_)
            ) || !self.client_scan.at_boundary();
            self.cancel.detach();
            let limit = self.ctx.live.load().config.limits.server_reset_timeout;
            salvage(*held, &self.pool, self.mode, limit, broken, &self.pins).await;
        }
        for reason in self.pins.clone() {
            self.unpin(reason);
        }
        match &exit {
            Exit::Fatal { sqlstate, message } => self.send_fatal(sqlstate, message).await,
            Exit::BackendLost(message) => {
                self.send_fatal(sqlstate::CONNECTION_FAILURE, message).await
            }
            Exit::BackendEnded => self.say_goodbye(None).await,
            Exit::Killed(message) => self.send_fatal(sqlstate::ADMIN_SHUTDOWN, message).await,
            Exit::ClientGone | Exit::Terminated | Exit::Park => {}
        }
    }

    /// How a session of a pool that a reload removed ends (outside a transaction).
    pub(super) fn retired(&self) -> Exit {
        let error = crate::pool::CheckoutError::Retired {
            database: self.pool.database.clone(),
        };
        fatal(error.sqlstate(), &error.to_string())
    }

    async fn send_fatal(&mut self, code: &str, message: &str) {
        let mut buf = BytesMut::new();
        messages::error_response(&mut buf, messages::Severity::Fatal, code, message);
        self.ctx.metrics.count_error(code);
        self.say_goodbye(Some(&buf)).await;
    }

    /// Sends the last message (if any) and closes the client's side of the connection.
    async fn say_goodbye(&mut self, last: Option<&[u8]>) {
        let goodbye = async {
            if let Some(last) = last {
                let _ = self.client.write_all(last).await;
            }
            let _ = self.client.shutdown().await;
        };
        // A frozen client must not keep this task (and its socket) for TCP's retry period.
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, goodbye).await;
    }
}
