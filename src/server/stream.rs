//! The byte stream to a backend: TCP, then TLS negotiated with SSLRequest per `sslmode`.
//!
//! Shared by logins and cancel requests, since PostgreSQL accepts a CancelRequest inside TLS
//! and a backend that requires TLS refuses it otherwise.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{BackendTarget, ServerError};
use crate::config::BackendTlsMode;
use crate::stream::MaybeTls;

/// Keepalive probes detect backends that vanished without a FIN (failover, network partition).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// A connected backend socket, encrypted or not (see [`MaybeTls`]).
pub type ServerStream = MaybeTls<TlsStream<TcpStream>>;

/// Opens TCP to the target and negotiates TLS as its mode demands (no timeout here: callers
/// bound the whole exchange).
pub(super) async fn establish(target: &BackendTarget) -> Result<ServerStream, ServerError> {
    let tcp = tcp_connect(target).await?;
    match (target.tls_mode, &target.tls) {
        (BackendTlsMode::Disable, _) | (BackendTlsMode::Prefer, None) => Ok(MaybeTls::Plain(tcp)),
        (mode, None) => Err(ServerError::Tls(io::Error::other(format!(
            "tls_mode {mode:?} but no TLS client configuration was built"
        )))),
        (mode, Some(config)) => negotiate_tls(tcp, target, mode, config.clone()).await,
    }
}

/// Resolves the host and connects to the first address that answers.
async fn tcp_connect(target: &BackendTarget) -> Result<TcpStream, ServerError> {
    let addr = target.addr();
    let connect_err = |source| ServerError::Connect {
        addr: addr.clone(),
        source,
    };
    let mut last_err = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
    for sock_addr in tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(connect_err)?
    {
        match TcpStream::connect(sock_addr).await {
            Ok(tcp) => {
                tune_socket(&tcp).map_err(connect_err)?;
                return Ok(tcp);
            }
            Err(e) => last_err = e,
        }
    }
    Err(connect_err(last_err))
}

/// TCP_NODELAY (small protocol messages must not wait) and keepalive.
fn tune_socket(tcp: &TcpStream) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    SockRef::from(tcp).set_tcp_keepalive(&keepalive)
}

/// Sends SSLRequest and, on `S`, performs the rustls handshake with SNI = host.
async fn negotiate_tls(
    mut tcp: TcpStream,
    target: &BackendTarget,
    mode: BackendTlsMode,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Result<ServerStream, ServerError> {
    let mut request = BytesMut::new();
    postgres_protocol::message::frontend::ssl_request(&mut request);
    tcp.write_all(&request).await?;
    match read_ssl_reply(&mut tcp).await? {
        b'S' => {}
        b'N' if mode == BackendTlsMode::Prefer => return Ok(MaybeTls::Plain(tcp)),
        b'N' => return Err(ServerError::TlsRefused),
        other => {
            return Err(ServerError::Protocol(format!(
                "unexpected answer '{}' to SSLRequest",
                char::from(other).escape_default()
            )))
        }
    }
    let name = ServerName::try_from(target.host.clone()).map_err(|e| {
        ServerError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
    })?;
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(ServerError::Tls)?;
    Ok(MaybeTls::Tls(Box::new(tls)))
}

/// Reads the one-byte SSLRequest answer and refuses any bytes behind it: they were sent in
/// plaintext and must never be treated as part of the TLS session (CVE-2021-23214 pattern).
async fn read_ssl_reply(tcp: &mut TcpStream) -> Result<u8, ServerError> {
    let mut reply = [0u8; 64];
    let n = tcp.read(&mut reply).await?;
    if n == 0 {
        return Err(ServerError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "backend closed the connection after SSLRequest",
        )));
    }
    if reply[0] != b'E' && n > 1 {
        return Err(ServerError::Protocol(
            "received unencrypted data after the SSL response".to_string(),
        ));
    }
    Ok(reply[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A fake backend that answers the SSLRequest with `reply` and then waits.
    async fn target_answering(reply: &'static [u8], mode: BackendTlsMode) -> BackendTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            if let Ok((mut sock, _)) = listener.accept().await {
                let mut request = [0u8; 8];
                if sock.read_exact(&mut request).await.is_ok() {
                    let _ = sock.write_all(reply).await;
                }
                let _ = sock.read(&mut request).await;
            }
        });
        BackendTarget {
            database: "appdb".into(),
            host: "127.0.0.1".into(),
            port,
            dbname: "appdb".into(),
            user: "u".into(),
            password: None,
            tls_mode: mode,
            tls: crate::tls::client_config(BackendTlsMode::Require, None)
                .ok()
                .flatten(),
            connect_timeout: Duration::from_secs(5),
            startup_params: Vec::new(),
            max_prepared_statements: 100,
        }
    }

    #[tokio::test]
    async fn plaintext_after_ssl_answer_is_refused() {
        let target = target_answering(b"S\x16\x03\x03", BackendTlsMode::Require).await;
        assert!(matches!(
            establish(&target).await,
            Err(ServerError::Protocol(_))
        ));
    }

    #[tokio::test]
    async fn refusal_depends_on_mode() {
        let target = target_answering(b"N", BackendTlsMode::Require).await;
        assert!(matches!(
            establish(&target).await,
            Err(ServerError::TlsRefused)
        ));
        let target = target_answering(b"N", BackendTlsMode::Prefer).await;
        assert!(matches!(
            establish(&target).await,
            Ok(ServerStream::Plain(_))
        ));
    }
}
