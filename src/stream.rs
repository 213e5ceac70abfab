//! A TCP stream that may have been upgraded to TLS, usable wherever a byte stream is.
//!
//! Both sides of the proxy negotiate TLS in-band (SSLRequest), so the same connection is plain
//! first and maybe TLS later; one enum keeps the relay code agnostic of which it got.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::client_tls::{ClientTls, TlsSession};

/// Plain TCP or a TLS session (`T` is pgferry's client-side TLS stream, or the server-side
/// tokio-rustls stream).
#[derive(Debug)]
pub enum MaybeTls<T> {
    Plain(TcpStream),
    Tls(Box<T>),
    /// No socket: the parking lot holds it while the session is parked (see
    /// `session::park`). I/O fails with `NotConnected`.
    Detached,
}

impl<T> MaybeTls<T> {
    /// True once the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
            MaybeTls::Detached => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }
}

/// A parked client's socket, out of the runtime's reactor, with its TLS state if any.
pub struct ParkedSocket {
    socket: std::net::TcpStream,
    tls: Option<Box<TlsSession>>,
}

impl ParkedSocket {
    /// The socket, for the parking lot's epoll set.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.socket)
    }

    /// Puts the socket back into the runtime. A socket that cannot be registered is closed
    /// (`Detached`): the session then ends as if its client had left.
    pub fn reattach(self) -> ClientStream {
        let tcp = match TcpStream::from_std(self.socket) {
            Ok(tcp) => tcp,
            Err(error) => {
                tracing::warn!(%error, "parked client could not be resumed");
                return MaybeTls::Detached;
            }
        };
        match self.tls {
            None => MaybeTls::Plain(tcp),
            Some(session) => MaybeTls::Tls(Box::new(ClientTls::attach(tcp, *session))),
        }
    }
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the session is parked")
}

/// The client-facing stream type.
pub type ClientStream = MaybeTls<ClientTls>;

impl ClientStream {
    /// Takes the socket out of the runtime for the parking lot, leaving `Detached`. `None`
    /// with the stream unchanged while TLS bytes are in flight; `None` and `Detached` when
    /// deregistering fails, which closes the socket: the session then ends as if the client
    /// had left.
    pub fn detach(&mut self) -> Option<ParkedSocket> {
        let (tcp, tls) = match std::mem::replace(self, MaybeTls::Detached) {
            MaybeTls::Plain(tcp) => (tcp, None),
            MaybeTls::Tls(tls) => match tls.detach() {
                Ok((tcp, session)) => (tcp, Some(Box::new(session))),
                Err(tls) => {
                    *self = MaybeTls::Tls(tls);
                    return None;
                }
            },
            MaybeTls::Detached => return None,
        };
        match tcp.into_std() {
            Ok(socket) => Some(ParkedSocket { socket, tls }),
            Err(error) => {
                tracing::debug!(%error, "client socket not detached");
                None
            }
        }
    }

    /// The client's address, for log lines: pgferry asks the kernel only when a line needs
    /// it (a copy per client would cost memory for every idle client).
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            MaybeTls::Plain(tcp) => tcp.peer_addr(),
            MaybeTls::Tls(tls) => tls.tcp().peer_addr(),
            MaybeTls::Detached => Err(detached()),
        }
    }
}

/// Applies the socket options both sides need: no Nagle delay (latency per round trip matters
/// more than packet count) and TCP keepalive, so sockets of frozen Lambda containers and dead
/// backends are eventually noticed.
pub fn tune_socket(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY not set");
    }
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(60))
        .with_interval(std::time::Duration::from_secs(10));
    let socket = socket2::SockRef::from(stream);
    if let Err(error) = socket.set_tcp_keepalive(&keepalive) {
        tracing::debug!(%error, "TCP keepalive not set");
    }
    // Unacknowledged writes fail after this long, so a frozen Lambda cannot keep a backend
    // (or a write to it) hanging for the ~15 minutes of default TCP retransmission.
    #[cfg(target_os = "linux")]
    if let Err(error) = socket.set_tcp_user_timeout(Some(std::time::Duration::from_secs(60))) {
        tracing::debug!(%error, "TCP_USER_TIMEOUT not set");
    }
}
