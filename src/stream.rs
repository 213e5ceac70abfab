//! A TCP stream that may have been upgraded to TLS, usable wherever a byte stream is.
//!
//! Both sides of the proxy negotiate TLS in-band (SSLRequest), so the same connection is plain
//! first and maybe TLS later; one enum keeps the relay code agnostic of which it got.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

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

    /// The proxy's own address of this connection, for the admin console (rare path).
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            MaybeTls::Plain(tcp) => tcp.local_addr(),
            MaybeTls::Tls(tls) => tls.tcp().local_addr(),
            MaybeTls::Detached => Err(detached()),
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

/// Binds the client listener (`SO_REUSEADDR`, backlog 1024, as `TcpListener::bind` does) with
/// the socket options every client socket needs already set on it. Linux copies them from the
/// listening socket to each accepted one, which saves five `setsockopt` calls per connection:
/// serverless clients connect per invocation, so that cost is paid per request.
pub fn bind_client_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    #[cfg(target_os = "linux")]
    tune_socket(SockRef::from(&socket));
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Tunes an accepted client socket where the listener's options are not inherited (see
/// [`bind_client_listener`]); nothing to do on Linux.
pub fn tune_accepted(stream: &TcpStream) {
    #[cfg(not(target_os = "linux"))]
    tune_socket(SockRef::from(stream));
    #[cfg(target_os = "linux")]
    let _ = stream;
}

/// The socket options client sockets need: no Nagle delay (latency per round trip matters more
/// than packet count) and TCP keepalive, so sockets of frozen Lambda containers are eventually
/// noticed. Failures are logged and ignored: the proxy works without them.
fn tune_socket(socket: SockRef<'_>) {
    if let Err(error) = socket.set_tcp_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY not set");
    }
    if let Err(error) = socket.set_tcp_keepalive(&client_keepalive()) {
        tracing::debug!(%error, "TCP keepalive not set");
    }
    // Unacknowledged writes fail after this long, so a frozen Lambda cannot keep a write to it
    // hanging for the ~15 minutes of default TCP retransmission.
    #[cfg(target_os = "linux")]
    if let Err(error) = socket.set_tcp_user_timeout(Some(CLIENT_USER_TIMEOUT)) {
        tracing::debug!(%error, "TCP_USER_TIMEOUT not set");
    }
}

/// Idle time before the first keepalive probe and between probes.
const KEEPALIVE_TIME: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// `TCP_USER_TIMEOUT` of client sockets.
#[cfg(target_os = "linux")]
const CLIENT_USER_TIMEOUT: Duration = Duration::from_secs(60);

fn client_keepalive() -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The saving rests on Linux copying the listener's options to accepted sockets: checked
    /// on an accepted socket, so a kernel that stopped doing it fails here.
    #[tokio::test]
    async fn accepted_sockets_inherit_the_listener_options() {
        let listener = bind_client_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (_client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (accepted, _) = accepted.unwrap();
        tune_accepted(&accepted);
        let socket = SockRef::from(&accepted);
        assert!(socket.tcp_nodelay().unwrap());
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_TIME);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(CLIENT_USER_TIMEOUT)
        );
    }

    /// The control: a listener without the options gives sockets without them, so the test
    /// above cannot pass by defaults.
    #[tokio::test]
    async fn plain_listener_sockets_lack_the_options() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (accepted, _) = accepted.unwrap();
        let socket = SockRef::from(&accepted);
        assert!(!socket.tcp_nodelay().unwrap());
        assert!(!socket.keepalive().unwrap());
        assert_eq!(socket.tcp_user_timeout().unwrap(), None);
    }
}
