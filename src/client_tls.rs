//! The server side of a client's TLS session, as a byte stream over its TCP socket.
//!
//! Built on rustls's unbuffered API so that pgferry, not rustls, owns the ciphertext buffers:
//! they exist only while they hold bytes (see [`buffers`]), and an idle TLS client keeps only
//! its keys. (tokio-rustls keeps a 4 KiB receive buffer per connection for its whole life.)

mod buffers;
mod turn;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use buffers::{release_incoming, reserve_incoming, Outgoing, Stash, MAX_RECORD};
use turn::{encode_room, on_state, Step, Want};

/// Received ciphertext rustls may need at once: a handshake message (at most 64 KiB, rustls's
/// limit) split over records, plus a partial record. More means a misbehaving peer.
const MAX_INCOMING: usize = (1 << 16) + 2 * MAX_RECORD;

/// Plaintext encrypted per write call: a few records, so one call's ciphertext stays small.
const MAX_WRITE: usize = 2 << 14;

/// Ciphertext queued beyond this (answers to the peer's KeyUpdates that the socket does not
/// take) stops reading until the socket drains.
const MAX_QUEUED: usize = 4 * MAX_RECORD;

/// Why a client's TLS session failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// rustls refused the peer's records (bad record, fatal alert, handshake failure...).
    #[error("TLS error: {0}")]
    Tls(#[from] rustls::Error),
    /// A handshake record could not be encoded.
    #[error("TLS encoding failed: {0}")]
    Encode(#[from] EncodeError),
    /// Application data could not be encrypted (e.g. the keys are exhausted).
    #[error("TLS encryption failed: {0}")]
    Encrypt(#[from] EncryptError),
    /// The peer sent more ciphertext than any legitimate record or handshake message needs.
    #[error("more than {MAX_INCOMING} bytes of TLS data without a complete message")]
    Oversized,
    /// The connection closed during the handshake or in the middle of a record.
    #[error("connection closed in the middle of the TLS {0}")]
    Truncated(&'static str),
    /// An earlier error ended the session.
    #[error("the TLS session failed earlier")]
    Failed,
    /// rustls reached a state this stream has no use for (e.g. early data, which is off).
    #[error("unexpected TLS state {0}")]
    UnexpectedState(String),
}

impl From<ClientTlsError> for io::Error {
    fn from(error: ClientTlsError) -> Self {
        let kind = match error {
            ClientTlsError::Truncated(_) => io::ErrorKind::UnexpectedEof,
            ClientTlsError::Encrypt(EncryptError::EncryptExhausted) => io::ErrorKind::BrokenPipe,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, error)
    }
}

/// An established TLS session with a client.
///
/// Write contract: `poll_write` returns `Ok(n)` once `n` bytes are encrypted, though the
/// socket may not have taken all of their ciphertext yet. What waits is sent before anything
/// else by the next `poll_write`, `poll_flush`, `poll_shutdown` *or `poll_read`* (a write
/// returns `Pending` until the earlier ciphertext is out). A session that goes back to reading
/// the client after answering it therefore delivers the whole answer without calling `flush`:
/// the tail of a large result cannot stay stranded while the client waits for it.
///
/// Reads end with EOF at the peer's close_notify or at TCP EOF between records; bad records
/// and fatal alerts are `io::Error`s. Vectored writes are not specialised.
pub struct ClientTls {
    tcp: TcpStream,
    session: TlsSession,
}

/// A client's TLS state apart from its socket: what the parking lot keeps of a parked TLS
/// session (see [`ClientTls::detach`]).
pub struct TlsSession {
    conn: UnbufferedServerConnection,
    /// Received ciphertext rustls has not consumed (a partial record); no memory while empty.
    incoming: BytesMut,
    outgoing: Outgoing,
    stash: Stash,
    /// The peer's close_notify arrived (rustls reports it once).
    peer_closed: bool,
    /// Our close_notify is queued.
    close_sent: bool,
    /// rustls reported an error: the session is over and rustls is not called again.
    failed: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("tcp", &self.tcp)
            .field("incoming", &self.session.incoming.len())
            .field("outgoing", &self.session.outgoing.pending().len())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Performs the server side of the TLS handshake on `tcp` and returns the session.
    ///
    /// The handshake's last flight is sent before returning. Application data the client sent
    /// right behind its Finished message stays queued for the first read.
    pub async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<ClientTls> {
        Self::accept_received(tcp, config, BytesMut::new()).await
    }

    /// [`Self::accept`] for a client whose first bytes (the start of its ClientHello) were
    /// already read from `tcp`: they are the start of the ciphertext.
    pub async fn accept_received(
        tcp: TcpStream,
        config: Arc<ServerConfig>,
        received: BytesMut,
    ) -> io::Result<ClientTls> {
        let conn = UnbufferedServerConnection::new(config).map_err(ClientTlsError::from)?;
        let session = TlsSession {
            conn,
            incoming: received,
            outgoing: Outgoing::default(),
            stash: Stash::default(),
            peer_closed: false,
            close_sent: false,
            failed: false,
        };
        let mut tls = ClientTls { tcp, session };
        poll_fn(|cx| tls.poll_handshake(cx)).await?;
        release_incoming(&mut tls.session.incoming);
        Ok(tls)
    }

    /// The ALPN protocol the client and pgferry agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.session.conn.alpn_protocol()
    }

    /// The client's socket under the TLS layer.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Splits an idle session into its socket and its TLS state, for the parking lot; hands
    /// the session back unchanged while bytes are in flight (ciphertext queued or half-read,
    /// decrypted bytes not yet read), as those need the socket in the runtime.
    pub fn detach(self: Box<Self>) -> Result<(TcpStream, TlsSession), Box<Self>> {
        let s = &self.session;
        if s.incoming.is_empty() && s.outgoing.is_empty() && s.stash.is_empty() && !s.failed {
            let ClientTls { tcp, session } = *self;
            Ok((tcp, session))
        } else {
            Err(self)
        }
    }

    /// Joins a socket and the TLS state [`Self::detach`] took from it.
    pub fn attach(tcp: TcpStream, session: TlsSession) -> Self {
        ClientTls { tcp, session }
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.step(Want::Handshake)? {
                Step::Progress => {}
                Step::Done(_) => return self.poll_send(cx),
                Step::NeedInput => {
                    ready!(self.poll_send(cx))?;
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(ClientTlsError::Truncated("handshake").into()));
                    }
                }
                Step::Closed => {
                    return Poll::Ready(Err(ClientTlsError::Truncated("handshake").into()))
                }
            }
        }
    }

    /// One turn of rustls over the received ciphertext. A rustls error is answered with its
    /// alert (best effort, without waiting) before it is returned.
    fn step(&mut self, want: Want<'_, '_>) -> Result<Step, ClientTlsError> {
        if self.session.failed {
            return Err(ClientTlsError::Failed);
        }
        let TlsSession {
            conn,
            incoming,
            outgoing,
            stash,
            peer_closed,
            ..
        } = &mut self.session;
        let status = conn.process_tls_records(incoming);
        let mut discard = status.discard;
        let step = match status.state {
            Ok(state) => on_state(state, want, outgoing, stash, peer_closed, &mut discard),
            Err(error) => Err(ClientTlsError::Tls(error)),
        };
        incoming.advance(discard.min(incoming.len()));
        if matches!(step, Err(ClientTlsError::Tls(_))) {
            self.session.failed = true;
            self.send_alert();
        }
        step
    }

    /// Queues the alert rustls prepared for the error it just reported and offers it to the
    /// socket once: the session is over, so nothing waits for a slow peer.
    fn send_alert(&mut self) {
        // One turn only: a second one could process the offending record again.
        let status = self
            .session
            .conn
            .process_tls_records(&mut self.session.incoming);
        let discard = status.discard;
        if let Ok(ConnectionState::EncodeTlsData(mut data)) = status.state {
            let _ = self
                .session
                .outgoing
                .append(|out| data.encode(out), encode_room);
        }
        self.session
            .incoming
            .advance(discard.min(self.session.incoming.len()));
        while let Ok(n @ 1..) = self.tcp.try_write(self.session.outgoing.pending()) {
            self.session.outgoing.consume(n);
        }
    }

    /// Sends queued ciphertext until none is left (`Ready(Ok)`) or the socket is full.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.session.outgoing.is_empty() {
            let n =
                ready!(Pin::new(&mut self.tcp).poll_write(cx, self.session.outgoing.pending()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.session.outgoing.consume(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Reads more ciphertext from the socket; `Ok(0)` at TCP EOF. While the socket has
    /// nothing and no partial record is kept, the receive buffer is released.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.session.incoming.len() >= MAX_INCOMING {
            return Poll::Ready(Err(ClientTlsError::Oversized.into()));
        }
        reserve_incoming(&mut self.session.incoming);
        loop {
            match self.tcp.try_read_buf(&mut self.session.incoming) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
            if self.tcp.poll_read_ready(cx)?.is_pending() {
                release_incoming(&mut self.session.incoming);
                return Poll::Pending;
            }
        }
    }

    fn poll_read_plain(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 || self.session.stash.deliver(buf) {
            return Poll::Ready(Ok(()));
        }
        // The write contract: ciphertext earlier writes left behind goes out now.
        if let Poll::Ready(Err(e)) = self.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        loop {
            match self.step(Want::Read(&mut *buf))? {
                Step::Progress => {}
                Step::Done(_) | Step::Closed => return Poll::Ready(Ok(())),
                Step::NeedInput if self.session.peer_closed => return Poll::Ready(Ok(())),
                Step::NeedInput => {
                    // Answers to the peer (KeyUpdate) go out first; too many waiting stop reading.
                    let sent = self.poll_send(cx)?;
                    if sent.is_pending() && self.session.outgoing.pending().len() > MAX_QUEUED {
                        return Poll::Pending;
                    }
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(self.at_tcp_eof());
                    }
                }
            }
        }
    }

    /// TCP EOF between records reads as EOF (libpq may close without close_notify); in the
    /// middle of one it is an error.
    fn at_tcp_eof(&self) -> io::Result<()> {
        if self.session.incoming.is_empty() {
            Ok(())
        } else {
            Err(ClientTlsError::Truncated("record").into())
        }
    }

    fn poll_write_plain(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.poll_send(cx))?;
        let data = data.get(..MAX_WRITE).unwrap_or(data);
        let n = self.turn_until_done(|| Want::Write(data))?;
        // Sending starts now; whatever the socket does not take waits (see the type's doc).
        if let Poll::Ready(Err(e)) = self.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    /// Turns rustls until `want` is fulfilled; a write must not need more input.
    fn turn_until_done<'a>(&mut self, want: impl Fn() -> Want<'a, 'a>) -> io::Result<usize> {
        loop {
            match self.step(want())? {
                Step::Progress => {}
                Step::Done(n) => return Ok(n),
                Step::NeedInput | Step::Closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "TLS session cannot send application data",
                    ))
                }
            }
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        if !self.session.close_sent && !self.session.failed {
            self.session.close_sent = true;
            self.turn_until_done(|| Want::Close)?;
            ready!(self.poll_send(cx))?;
        }
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl AsyncRead for ClientTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().poll_read_plain(cx, buf)
    }
}

impl AsyncWrite for ClientTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_plain(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    /// Sends close_notify, then shuts the socket's write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_close(cx)
    }
}

#[cfg(test)]
mod tests;
