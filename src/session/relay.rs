//! The relay loop: one client, a backend borrowed per transaction (or held for the session).
//!
//! Reads client and backend concurrently. Client bytes are forwarded as they arrive after a
//! header scan (tags drive the expected-response queue); backend bytes are forwarded in whole
//! read-buffer batches, except messages the queue says to swallow. Only ReadyForQuery,
//! ParameterStatus and ErrorResponse bodies are decoded on the way back.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Sleep;

use super::buffers::{read_client, reserve};
use super::expect::{Request, Route};
use super::held::{is_frontend_tag, Action, Held};
use super::params::ClientParams;
use super::prepared::ClientStatements;
use super::refusal::invalid_message_type;
use super::signal::SessionSignal;
use super::sql_scan::PinReason;
use super::SessionContext;
use crate::admin::registry::ClientEntry;
use crate::cancel::CancelSlot;
use crate::config::PoolMode;
use crate::metrics::ClientState;
use crate::pool::{BackendPool, UserAdmission};
use crate::protocol::frame::FrameScanner;
use crate::protocol::messages;
use crate::protocol::sqlstate;
use crate::stream::ClientStream;

/// Why the relay loop ended.
#[derive(Debug)]
pub enum Exit {
    /// The client closed its socket.
    ClientGone,
    /// The client sent Terminate.
    Terminated,
    /// pgferry ends the session with this FATAL error.
    Fatal {
        sqlstate: &'static str,
        message: String,
    },
    /// The backend connection failed under the client.
    BackendLost(String),
    /// The backend ended the session with its own FATAL error, already forwarded to the
    /// client: the connection just closes, as it would on a direct connection (no second
    /// error from pgferry).
    BackendEnded,
    /// Not an end: the idle session leaves the runtime for the parking lot.
    Park,
    /// An administrator ended the session (KILL, KILL_CLIENT): 57P01 with this message, and
    /// any backend it holds is closed, not reset.
    Killed(String),
}

enum Event {
    Client(std::io::Result<usize>),
    Server(std::io::Result<usize>),
    IdleTimeout,
    IdleInTransactionTimeout,
    Shutdown,
    /// Cancels that kept an idle backend with this client have arrived: release it now.
    CancelsSettled,
    /// The client has been idle for a park period: move it to the parking lot.
    Park,
    /// The session signals changed (see [`SessionSignal`]).
    Signalled,
    /// A reload removed this session's pool while it was idle.
    Retired,
}

/// A logged-in client session.
pub struct Relay {
    pub(super) ctx: Arc<SessionContext>,
    pub(super) client: ClientStream,
    pub(super) client_buf: BytesMut,
    pub(super) client_scan: FrameScanner,
    pub(super) pool: Arc<BackendPool>,
    /// The pool's mode when the session logged in: a reload that changes the pool's mode
    /// applies to new sessions, so a session's statements and state never change rules.
    pub(super) mode: PoolMode,
    /// The borrowed backend, boxed: most clients are idle most of the time.
    pub(super) held: Option<Box<Held>>,
    pub(super) params: ClientParams,
    pub(super) cancel: CancelSlot,
    /// The session's console registration; also counts it in `pgferry_client_connections`.
    pub(super) entry: ClientEntry,
    /// This client's named prepared statements (transaction mode).
    pub(super) statements: ClientStatements,
    /// Why this session keeps its backend (transaction mode); empty when not pinned.
    pub(super) pins: Vec<PinReason>,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    /// This session's view of [`SessionContext::signals`]: kept, not cloned per wait.
    pub(super) signals: watch::Receiver<SessionSignal>,
    /// The session's place under `max_client_connections`, held while parked too.
    pub(super) _admission: OwnedSemaphorePermit,
    /// The session's place under its user's `max_client_connections`.
    pub(super) _user_admission: UserAdmission,
    /// The idle timer, boxed and made on first use: by default no timeout applies, and an
    /// idle client then carries no room for one.
    pub(super) timer: Option<Pin<Box<Sleep>>>,
}

impl Relay {
    /// Runs the session to its end and returns any borrowed backend to the pool (clean) or
    /// discards it. The relay comes boxed: a future keeps its by-value arguments twice (as
    /// argument and as local), which for every idle client would be a second `Relay`.
    pub async fn run(mut self: Box<Self>) {
        // A session killed while parked comes back here to end.
        if let Some(exit) = self.kill_order() {
            return self.end(exit).await;
        }
        let exit = loop {
            match self.relay_loop().await {
                Exit::Park => match Arc::clone(&self.ctx).parking.park(self) {
                    Ok(()) => return,
                    Err(relay) => self = relay,
                },
                exit => break exit,
            }
        };
        self.end(exit).await;
    }

    /// Ends a parked session whose `client_idle_timeout` ran out while it was parked.
    pub async fn end_idle(self: Box<Self>) {
        self.end(idle_timeout()).await;
    }

    /// Alternates between waiting without a backend and serving with one. Idle clients are the
    /// many, so their wait is a small future of its own; the serving state (checkout, writes,
    /// replies: several times larger) lives in a box only while the client is active.
    async fn relay_loop(&mut self) -> Exit {
        if self.mode == PoolMode::Session {
            if let Err(exit) = Box::pin(self.checkout()).await {
                return exit;
            }
        }
        loop {
            let first = match self.held {
                None => Some(self.next_idle_event().await),
                Some(_) => None,
            };
            if let Some(exit) = Box::pin(self.serve(first)).await {
                return exit;
            }
        }
    }

    /// Handles `first` (if any), then every event until no backend is held any more or the
    /// session ends (`Some`).
    async fn serve(&mut self, mut first: Option<Event>) -> Option<Exit> {
        loop {
            let event = match first.take() {
                Some(event) => event,
                None if self.held.is_none() => return None,
                None => self.next_event().await,
            };
            if let Some(exit) = self.on_event(event).await {
                return Some(exit);
            }
            self.release_if_idle();
            let idle = self.held.as_deref().is_none_or(Held::is_idle);
            let signal = *self.signals.borrow();
            if idle && signal.draining || signal.closing {
                return Some(shutting_down());
            }
            // A reload removed the pool: the client finished its transaction, now it is told.
            if idle && self.pool.is_retired() {
                return Some(self.retired());
            }
        }
    }

    /// Acts on one event; `Some` ends the session.
    async fn on_event(&mut self, event: Event) -> Option<Exit> {
        match event {
            Event::Client(Ok(0)) => Some(Exit::ClientGone),
            Event::Client(Ok(n)) => {
                self.bytes_in += n as u64;
                self.on_client_data().await.err()
            }
            Event::Server(Ok(0)) => Some(self.backend_lost("the backend closed the connection")),
            Event::Server(Ok(_)) => self.on_server_data().await.err(),
            Event::Client(Err(_)) => Some(Exit::ClientGone),
            Event::Server(Err(e)) => Some(self.backend_lost(&e.to_string())),
            Event::IdleTimeout => Some(idle_timeout()),
            Event::IdleInTransactionTimeout => Some(fatal(
                sqlstate::IDLE_IN_TRANSACTION_TIMEOUT,
                "terminating connection due to idle-in-transaction timeout",
            )),
            Event::Shutdown => Some(shutting_down()),
            Event::Park => Some(Exit::Park),
            Event::Signalled => self.kill_order(),
            Event::Retired => Some(self.retired()),
            // Nothing to do here: the checks after every event (release, shutdown) do it.
            Event::CancelsSettled => None,
        }
    }

    /// The end an administrator ordered for this session (KILL, KILL_CLIENT), if any; looked
    /// at only when the session signals change.
    fn kill_order(&self) -> Option<Exit> {
        self.cancel.killed().map(|m| Exit::Killed(m.to_string()))
    }

    /// Which timeout applies while waiting: idle-in-transaction when a backend is held inside
    /// a transaction with nothing outstanding, otherwise the client idle timeout when idle.
    fn timeout(&self) -> Option<(Duration, fn() -> Event)> {
        // The backend is working: bounding that is statement_timeout's job.
        if self.held.as_deref().is_some_and(|h| !h.queue.is_empty()) {
            return None;
        }
        let limits = self.ctx.live.relay();
        let (duration, event): (Duration, fn() -> Event) = match &self.held {
            // The backend waits for the client, which holds it: in a transaction, in an open
            // extended-protocol batch or COPY, or in the middle of sending a message.
            Some(h)
                if h.status != b'I'
                    || h.unsynced
                    || h.copy_in
                    || !self.client_scan.at_boundary() =>
            {
                (limits.idle_transaction_timeout(), || {
                    Event::IdleInTransactionTimeout
                })
            }
            _ => (limits.client_idle_timeout(), || Event::IdleTimeout),
        };
        (!duration.is_zero()).then_some((duration, event))
    }

    /// Readies an idle session for the parking lot: drops its timer (the lot keeps no timers)
    /// and returns when its `client_idle_timeout` runs out, if one applies.
    pub(super) fn prepare_to_park(&mut self) -> Option<tokio::time::Instant> {
        let deadline = self
            .timeout()
            .and(self.timer.as_ref())
            .map(|t| t.deadline());
        self.timer = None;
        deadline
    }

    /// Starts the timer of the timeout that applies now (see [`Self::timeout`]): whether one
    /// is armed, and the event it fires.
    fn arm_timeout(&mut self) -> (bool, fn() -> Event) {
        match self.timeout() {
            Some((duration, event)) => (arm(&mut self.timer, duration), event),
            None => (false, || Event::IdleTimeout),
        }
    }

    /// The next event of a client without a backend: data, the idle timeout, shutdown, or
    /// the second tick of the park clock since the wait began (time to park).
    async fn next_idle_event(&mut self) -> Event {
        let (timed, on_timeout) = self.arm_timeout();
        let Relay {
            client,
            client_buf,
            signals,
            timer,
            cancel,
            pool,
            ..
        } = self;
        let since = signals.borrow_and_update().park_epoch;
        loop {
            tokio::select! {
                r = read_client(client, client_buf) => return Event::Client(r),
                () = expiry(timer), if timed => return on_timeout(),
                changed = signals.changed() => {
                    let signal = *signals.borrow_and_update();
                    if changed.is_err() || signal.draining || signal.closing {
                        return Event::Shutdown;
                    }
                    if cancel.killed().is_some() {
                        return Event::Signalled;
                    }
                    if signal.parks_wait_from(since) && client_buf.is_empty() {
                        return Event::Park;
                    }
                    if pool.is_retired() {
                        return Event::Retired;
                    }
                }
            }
        }
    }

    /// The next event of a client holding a backend.
    async fn next_event(&mut self) -> Event {
        let (timed, on_timeout) = self.arm_timeout();
        let Relay {
            client,
            client_buf,
            held: Some(held),
            cancel,
            mode,
            pins,
            client_scan,
            signals,
            timer,
            ..
        } = self
        else {
            // `serve` waits here only with a backend; an event that changes nothing sends it
            // back to the idle wait otherwise.
            return Event::CancelsSettled;
        };
        // Only a transaction-mode session that kept an idle backend because of a cancel in
        // flight waits for that cancel.
        // (These are exactly `release_if_idle`'s conditions but the cancel, so this never spins.)
        let idle = held.is_idle();
        let waits_for_cancel =
            *mode == PoolMode::Transaction && pins.is_empty() && client_scan.at_boundary() && idle;
        // A session holding an idle backend (session mode, pinned) ends at shutdown; one
        // inside a transaction gets until `shutdown_timeout`.
        let conn = held.conn();
        reserve(&mut conn.read_buf);
        tokio::select! {
            r = read_client(client, client_buf) => Event::Client(r),
            r = conn.stream.read_buf(&mut conn.read_buf) => Event::Server(r),
            () = expiry(timer), if timed => on_timeout(),
            changed = signals.changed() => match changed {
                // Park ticks and shutdown phases: the checks after every event act on them.
                Ok(()) => Event::Signalled,
                Err(_) => Event::Shutdown,
            },
            () = cancels_settled(cancel, waits_for_cancel) => Event::CancelsSettled,
        }
    }

    /// Scans what the client sent, borrows a backend if needed, and forwards it.
    async fn on_client_data(&mut self) -> Result<(), Exit> {
        if self.held.is_none() && !self.first_message_ready()? {
            return Ok(());
        }
        if self.held.is_none() {
            Box::pin(self.checkout()).await?;
        }
        let batch = self.scan_client()?;
        match batch.rewritten {
            Some(out) => self.write_to_server(Outgoing::Assembled(out)).await?,
            None if batch.consumed > 0 => {
                self.write_to_server(Outgoing::ClientBuffer(batch.consumed))
                    .await?
            }
            None => {}
        }
        self.client_buf.advance(batch.consumed);
        self.send_due_replies().await?;
        if batch.terminate {
            return Err(Exit::Terminated);
        }
        if let Some(tag) = batch.refused {
            return Err(self.refuse_invalid_type(tag).await);
        }
        Ok(())
    }

    /// Without a backend, one is borrowed only once the first message is complete (or large),
    /// so a client trickling bytes cannot hold a backend; Terminate and malformed headers are
    /// handled without one, and so is a message of an invalid type, refused at its first byte.
    fn first_message_ready(&self) -> Result<bool, Exit> {
        match self.client_buf.first() {
            Some(&tag) if !is_frontend_tag(tag) => return Err(invalid_message_type(tag)),
            _ => {}
        }
        let max = self.ctx.live.relay().max_message_size();
        let header = match crate::protocol::frame::peek_header(&self.client_buf, max) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(false),
            Err(e) => return Err(fatal(sqlstate::PROTOCOL_VIOLATION, &e.to_string())),
        };
        if header.tag == b'X' {
            return Err(Exit::Terminated);
        }
        Ok(self.client_buf.len() >= header.total_len.min(STREAM_AFTER))
    }

    /// Replies pgferry produced that are due now (nothing is outstanding before them).
    async fn send_due_replies(&mut self) -> Result<(), Exit> {
        let due = self
            .held
            .as_mut()
            .map(|h| h.queue.take_due())
            .unwrap_or_default();
        for reply in due {
            self.client
                .write_all(&reply)
                .await
                .map_err(|_| Exit::ClientGone)?;
            self.bytes_out += reply.len() as u64;
        }
        Ok(())
    }

    /// Forwards the first `len` bytes of the client buffer to the backend. While the backend
    /// does not accept more, its output is read and relayed: a backend blocked writing results
    /// to us would otherwise never read the rest of a large pipeline or COPY (deadlock).
    async fn write_to_server(&mut self, outgoing: Outgoing) -> Result<(), Exit> {
        let len = match &outgoing {
            Outgoing::ClientBuffer(len) => *len,
            Outgoing::Assembled(bytes) => bytes.len(),
        };
        let mut written = 0;
        while written < len {
            let step = {
                let Some(held) = self.held.as_mut() else {
                    return Ok(());
                };
                let conn = held.conn();
                let data = match &outgoing {
                    Outgoing::ClientBuffer(_) => &self.client_buf[written..len],
                    Outgoing::Assembled(bytes) => &bytes[written..],
                };
                write_or_read(&mut conn.stream, &mut conn.read_buf, data).await
            };
            match step {
                Ok(WriteStep::Wrote(n)) => written += n,
                Ok(WriteStep::Read(0)) => {
                    return Err(self.backend_lost("the backend closed the connection"))
                }
                Ok(WriteStep::Read(_)) => self.on_server_data().await?,
                Err(e) => return Err(self.backend_lost(&e.to_string())),
            }
        }
        Ok(())
    }

    /// Borrows a backend, points cancel requests at it and aligns its session settings.
    pub(super) async fn checkout(&mut self) -> Result<(), Exit> {
        let clock = &self.ctx.registry.clock;
        self.entry.set(ClientState::Waiting, clock);
        let checkout = self.pool.checkout().await;
        self.entry.set(ClientState::Active, clock);
        let checkout = checkout.map_err(|e| fatal(e.sqlstate(), &e.to_string()))?;
        let mut held = Held::new(checkout);
        let conn = held.conn();
        conn.shown
            .lent_to(self.cancel.key().process_id, clock.now_ms());
        self.cancel.attach(Arc::clone(&conn.target), conn.key);
        if let Some(sql) = self
            .params
            .sync_sql(&conn.params, &mut conn.applied, &mut conn.aligned)
        {
            let mut out = BytesMut::new();
            messages::query(&mut out, &sql);
            if let Err(e) = conn.stream.write_all(&out).await {
                self.held = Some(Box::new(held));
                return Err(self.backend_lost(&e.to_string()));
            }
            held.note_request(Request::Query, Route::Swallow, Action::default());
        }
        self.held = Some(Box::new(held));
        Ok(())
    }

    /// Transaction mode: gives the backend back as soon as it is idle and in sync.
    fn release_if_idle(&mut self) {
        let idle = self.held.as_deref().is_some_and(Held::is_idle)
            && self.client_scan.at_boundary()
            && self.pins.is_empty();
        // A cancel on its way to this backend must not reach another client's statement.
        if !idle || self.mode != PoolMode::Transaction || !self.cancel.try_detach() {
            return;
        }
        if let Some(mut held) = self.held.take() {
            held.conn().mark_clean();
            held.give_back();
            self.entry.set(ClientState::Idle, &self.ctx.registry.clock);
            self.entry.set_prepared(self.statements.len());
            self.flush_byte_counts();
        }
    }

    /// Byte counters go to Prometheus per transaction, not per message.
    pub(super) fn flush_byte_counts(&mut self) {
        self.ctx
            .metrics
            .add_client_bytes_received(std::mem::take(&mut self.bytes_in));
        self.ctx
            .metrics
            .add_client_bytes_sent(std::mem::take(&mut self.bytes_out));
    }

    /// How the session ends when the backend connection fails or closes: quietly if the
    /// backend already told the client why (its FATAL error), with 08006 otherwise.
    pub(super) fn backend_lost(&self, detail: &str) -> Exit {
        if self.held.as_deref().is_some_and(|h| h.ended_by_backend) {
            return Exit::BackendEnded;
        }
        let target = self.pool.target();
        Exit::BackendLost(format!(
            "connection to backend \"{}\" ({}:{}) was lost: {detail}",
            self.pool.database, target.host, target.port
        ))
    }
}

/// Sets the session's timer to fire `duration` from now, making it on first use; false (not
/// armed) when that moment is beyond what the clock can represent, as it then never comes.
fn arm(timer: &mut Option<Pin<Box<Sleep>>>, duration: Duration) -> bool {
    let Some(deadline) = tokio::time::Instant::now().checked_add(duration) else {
        return false;
    };
    match timer {
        Some(sleep) => sleep.as_mut().reset(deadline),
        None => *timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
    }
    true
}

/// Resolves when the armed timer fires (never if there is none).
async fn expiry(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Resolves once cancels this session waits for have landed; never when it waits for none.
/// Boxed when needed: that wait is rare, and every idle client would carry room for it.
async fn cancels_settled(cancel: &CancelSlot, waits: bool) {
    if waits {
        Box::pin(cancel.cancels_settled()).await
    } else {
        std::future::pending().await
    }
}

fn idle_timeout() -> Exit {
    fatal(
        sqlstate::IDLE_SESSION_TIMEOUT,
        "terminating connection due to idle-session timeout",
    )
}

pub(super) fn shutting_down() -> Exit {
    fatal(sqlstate::ADMIN_SHUTDOWN, "pgferry is shutting down")
}

/// Ends the session with a FATAL error.
pub(super) fn fatal(sqlstate: &'static str, message: &str) -> Exit {
    Exit::Fatal {
        sqlstate,
        message: message.to_string(),
    }
}

/// Messages start streaming to the backend once this much of them arrived.
const STREAM_AFTER: usize = 64 * 1024;

/// What [`Relay::write_to_server`] sends.
enum Outgoing {
    /// The first `n` bytes of the client buffer, unchanged (no copy).
    ClientBuffer(usize),
    /// A batch assembled because some frames were rewritten.
    Assembled(BytesMut),
}

/// Progress of [`write_or_read`].
enum WriteStep {
    Wrote(usize),
    Read(usize),
}

/// Writes some of `data`, or, if the stream accepts nothing right now, reads what it has for us.
async fn write_or_read<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    read_buf: &mut BytesMut,
    data: &[u8],
) -> std::io::Result<WriteStep> {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = Pin::new(&mut *stream).poll_write(cx, data) {
            return Poll::Ready(match result {
                Ok(0) => Err(std::io::ErrorKind::WriteZero.into()),
                other => other.map(WriteStep::Wrote),
            });
        }
        // Slow path only (the backend is not reading): a copy through the stack is fine.
        let mut chunk = [0u8; 8192];
        let mut filled = ReadBuf::new(&mut chunk);
        match Pin::new(&mut *stream).poll_read(cx, &mut filled) {
            Poll::Ready(Ok(())) => {
                read_buf.extend_from_slice(filled.filled());
                Poll::Ready(Ok(WriteStep::Read(filled.filled().len())))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, F: std::future::Future>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Thousands of idle clients each keep one `Relay` and one waiting `run` future: a change
    /// that pulls the serving state (or a second `Relay`) into that future shows up here.
    #[test]
    fn an_idle_session_stays_small() {
        let relay = std::mem::size_of::<Relay>();
        let waiting = future_size(Relay::run);
        let serving = future_size(|r: &mut Relay| r.serve(None));
        assert!(relay <= 512, "Relay is {relay} bytes");
        assert!(waiting <= 384, "the idle wait is {waiting} bytes");
        assert!(
            serving > waiting,
            "serving ({serving} B) is boxed apart from the idle wait"
        );
    }
}
