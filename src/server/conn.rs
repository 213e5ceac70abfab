//! One authenticated backend connection, and cancel requests to its backend.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::login::login;
use super::shown::ServerInfo;
use super::stream::{establish, ServerStream};
use super::wire::{self, ErrorFields};
use super::{Alignment, ServerPrepared, VersionedMap};
use super::{BackendKey, BackendTarget, ServerError};

/// Source of [`ServerConn::id`]: unique for the life of the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An authenticated backend connection, ready for queries.
///
/// The relay owns the framing after login; this type only guarantees a clean start and
/// carries what the relay and the pool need. It returns to the pool only while
/// [`is_clean`](Self::is_clean) holds (see `pool::Checkout::give_back`).
#[derive(Debug)]
pub struct ServerConn {
    /// The socket; the relay reads and writes it directly.
    pub stream: ServerStream,
    /// Bytes already read from `stream` but not consumed (normally empty after login); the
    /// relay must process these before reading the socket again.
    pub read_buf: BytesMut,
    /// The backend's reported parameters (server_version, client_encoding, TimeZone, ...),
    /// as of login; the relay updates them as ParameterStatus messages pass.
    pub params: VersionedMap,
    /// Non-reported settings pgferry applied for the current client (search_path,
    /// statement_timeout, ...), so the next client's differences can be computed.
    pub applied: VersionedMap,
    /// Which client settings `params` and `applied` were last found to match, so a client
    /// taking back the backend it just used skips the comparison.
    pub aligned: Alignment,
    /// The `pgf_<n>` statements prepared on this connection (transaction pooling).
    pub prepared: ServerPrepared,
    /// The backend's cancel key, used by [`send_cancel`].
    pub key: BackendKey,
    /// Process-unique id, for logs and the admin console.
    pub id: u64,
    /// What the admin console shows of this connection (its pool lists it weakly).
    pub shown: Arc<ServerInfo>,
    /// Where and as whom this connection logged in. A reload may point the pool elsewhere
    /// while the connection is borrowed; cancel requests must still reach this backend.
    pub target: Arc<BackendTarget>,
    /// When the login completed (server_lifetime).
    pub created: Instant,
    /// When the connection last became idle; health checks are skipped for recently used ones.
    pub last_used: Instant,
    /// The close-needed flag of the pool generation it was opened in (set by its pool): once
    /// true (RECONNECT, KILL, or a reload that changed the target), it closes when next
    /// released. See [`ServerConn::close_needed`].
    pub generation: Option<Arc<AtomicBool>>,
    clean: bool,
}

impl ServerConn {
    /// Connects, negotiates TLS and logs in, all within `target.connect_timeout`.
    pub async fn connect(target: &BackendTarget) -> Result<ServerConn, ServerError> {
        ServerConn::connect_shared(&Arc::new(target.clone())).await
    }

    /// [`ServerConn::connect`] for a pool, whose connections share its target.
    pub async fn connect_shared(target: &Arc<BackendTarget>) -> Result<ServerConn, ServerError> {
        bounded(target, async {
            let mut stream = establish(target).await?;
            let outcome = login(&mut stream, target).await?;
            let now = Instant::now();
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let shown = Arc::new(shown(id, &stream, outcome.key));
            Ok(ServerConn {
                stream,
                read_buf: outcome.leftover,
                params: outcome.params.into(),
                applied: VersionedMap::default(),
                aligned: Alignment::default(),
                prepared: ServerPrepared::new(target.max_prepared_statements),
                key: outcome.key,
                id,
                shown,
                target: Arc::clone(target),
                created: now,
                last_used: now,
                generation: None,
                clean: true,
            })
        })
        .await
    }

    /// Records that the connection is not idle-and-in-sync (request sent, transaction open,
    /// or an error left it unknown); a dirty connection is dropped instead of reused.
    pub fn mark_dirty(&mut self) {
        self.clean = false;
    }

    /// Records that the backend reported ReadyForQuery 'I' with nothing outstanding; also
    /// refreshes `last_used`.
    pub fn mark_clean(&mut self) {
        self.clean = true;
        self.shown.returned();
        self.last_used = Instant::now();
    }

    /// True once its pool marked the connection to close when released (SHOW SERVERS'
    /// `close_needed`).
    pub fn close_needed(&self) -> bool {
        self.generation
            .as_ref()
            .is_some_and(|g| g.load(Ordering::Relaxed))
    }

    /// True only when the connection is idle and in sync, i.e. safe to hand to another client.
    pub fn is_clean(&self) -> bool {
        self.clean
    }

    /// Reads one whole backend message (header + body), consuming `read_buf` first. For
    /// pgferry's own exchanges (health checks, tests), not the relay hot path: frames larger
    /// than [`wire::MAX_CONTROL_FRAME`] are refused.
    pub async fn read_frame(&mut self) -> Result<BytesMut, ServerError> {
        wire::read_frame(&mut self.stream, &mut self.read_buf).await
    }

    /// Checks liveness with an empty query: the backend must answer ReadyForQuery 'I' within
    /// the target's connect timeout. Any failure marks the connection dirty.
    pub async fn ping(&mut self, target: &BackendTarget) -> Result<(), ServerError> {
        let result = bounded(target, self.empty_query()).await;
        match result {
            Ok(()) => self.mark_clean(),
            Err(_) => self.mark_dirty(),
        }
        result
    }

    /// Ends the session politely (Terminate, then close), so the backend logs no "unexpected
    /// EOF"; failures do not matter, the connection is gone either way.
    pub async fn terminate(&mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = self.stream.write_all(&out).await;
        let _ = self.stream.shutdown().await;
    }

    async fn empty_query(&mut self) -> Result<(), ServerError> {
        self.mark_dirty();
        let mut out = BytesMut::new();
        frontend::query("", &mut out)?;
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        loop {
            let frame = self.read_frame().await?;
            let body = frame.get(5..).unwrap_or_default();
            match (frame.first(), body.first()) {
                (Some(b'Z'), Some(b'I')) => return Ok(()),
                (Some(b'Z'), _) => return Err(ServerError::Protocol("backend not idle".into())),
                (Some(b'E'), _) => return Err(ErrorFields::parse(body).into_error()),
                // EmptyQueryResponse, notices, notifications, parameter changes.
                _ => {}
            }
        }
    }
}

/// Asks the backend to cancel whatever `key`'s session is running, over a new connection
/// negotiated like a login (PostgreSQL accepts CancelRequest inside TLS). Waits for the
/// backend to close the connection, which it does once the request has been handled.
pub async fn send_cancel(target: &BackendTarget, key: BackendKey) -> Result<(), ServerError> {
    bounded(target, async {
        let mut stream = establish(target).await?;
        let mut out = BytesMut::new();
        frontend::cancel_request(key.process_id, key.secret_key, &mut out);
        stream.write_all(&out).await?;
        stream.flush().await?;
        let mut sink = [0u8; 64];
        // The backend sends nothing and closes; TLS may end without close_notify, which
        // surfaces as an error — either way the request has been processed.
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
        Ok(())
    })
    .await
}

/// Bounds a backend exchange by the target's connect timeout.
/// The console's record of a connection that just logged in (rare path: two getsockname-like
/// calls).
fn shown(id: u64, stream: &ServerStream, key: BackendKey) -> ServerInfo {
    let tcp = match stream {
        crate::stream::MaybeTls::Plain(tcp) => Some(tcp),
        crate::stream::MaybeTls::Tls(tls) => Some(tls.get_ref().0),
        crate::stream::MaybeTls::Detached => None,
    };
    let peer = tcp.and_then(|t| t.peer_addr().ok());
    let local = tcp.and_then(|t| t.local_addr().ok());
    ServerInfo::new(id, peer, local, stream.is_tls(), key.process_id)
}

async fn bounded<T>(
    target: &BackendTarget,
    work: impl std::future::Future<Output = Result<T, ServerError>>,
) -> Result<T, ServerError> {
    match tokio::time::timeout(target.connect_timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(ServerError::Timeout {
            addr: target.addr(),
            after: target.connect_timeout,
        }),
    }
}
