//! Connection opening: TLS negotiation and the startup packet.
//!
//! Accepts SSLRequest (answered `S` or `N`), GSSENCRequest (always `N`), PostgreSQL 17 direct
//! TLS (first byte 0x16, ALPN `postgresql` required) and CancelRequest. Plaintext bytes sent
//! behind an SSLRequest are refused before answering it (CVE-2021-23214): they could only be an
//! attacker's injection into the session that the client believes is encrypted.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::SessionContext;
use crate::cancel::CancelKey;
use crate::client_tls::ClientTls;
use crate::config::ClientTlsMode;
use crate::metrics::{RejectReason, TlsKind};
use crate::protocol::messages::{self, Severity};
use crate::protocol::sqlstate;
use crate::protocol::startup::{self, Inbox, InitialPacket, StartupError, StartupParams};
use crate::stream::{ClientStream, MaybeTls};
use crate::tls::ALPN_POSTGRESQL;

/// TLS record type byte of a handshake: what a direct-TLS client sends first.
const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// What the opening of a connection amounted to.
pub enum Opened {
    /// A client that wants a session, with its (maybe encrypted) stream and what it sent
    /// behind its startup packet (normally nothing).
    Session(ClientStream, StartupParams, Inbox),
    /// A cancel request: handled, then the connection closes.
    Cancel(CancelKey),
    /// The client was refused (and told why, where possible) or went away.
    Closed,
}

/// Runs the opening exchange on a freshly accepted socket. Its first read takes what the
/// client sent (normally the whole startup packet or SSLRequest); its first byte tells direct
/// TLS, whose ClientHello bytes then go to the TLS session, from the in-band kinds.
pub async fn open(mut tcp: TcpStream, ctx: &SessionContext) -> Opened {
    let mut inbox = Inbox::with_capacity(startup::OPENING_READ);
    if inbox
        .fill(&mut tcp, 1, startup::OPENING_READ)
        .await
        .is_err()
    {
        return Opened::Closed;
    }
    if inbox.pending().first() == Some(&TLS_HANDSHAKE_BYTE) {
        direct_tls(tcp, inbox, ctx).await
    } else {
        negotiate(MaybeTls::Plain(tcp), inbox, ctx).await
    }
}

async fn direct_tls(tcp: TcpStream, hello: Inbox, ctx: &SessionContext) -> Opened {
    let Some(config) = ctx.tls_config() else {
        // PostgreSQL without direct TLS reads the ClientHello as an invalid length and closes.
        tracing::info!(
            peer = tcp.peer_addr().ok().map(tracing::field::display),
            message = "TLS ClientHello received but TLS is disabled",
            "refusing client without a reply, as PostgreSQL does"
        );
        ctx.metrics.client_rejected(RejectReason::BadStartup);
        return Opened::Closed;
    };
    let received = hello.into_pending();
    let tls = match ClientTls::accept_received(tcp, config, received).await {
        Ok(tls) => tls,
        Err(error) => {
            ctx.metrics.tls_handshake(TlsKind::Direct, false);
            tracing::debug!(%error, "direct TLS handshake failed");
            return Opened::Closed;
        }
    };
    ctx.metrics.tls_handshake(TlsKind::Direct, true);
    let mut stream = MaybeTls::Tls(Box::new(tls));
    if !alpn_is_postgresql(&stream) {
        let msg =
            "received direct SSL connection request without ALPN protocol negotiation extension";
        return refuse(&mut stream, ctx, None, sqlstate::PROTOCOL_VIOLATION, msg).await;
    }
    negotiate(stream, Inbox::default(), ctx).await
}

fn alpn_is_postgresql(stream: &ClientStream) -> bool {
    match stream {
        MaybeTls::Tls(tls) => tls.alpn_protocol() == Some(ALPN_POSTGRESQL),
        MaybeTls::Plain(_) | MaybeTls::Detached => false,
    }
}

/// Reads startup-phase packets until a StartupMessage or CancelRequest, upgrading to TLS when
/// asked. At most one SSLRequest and one GSSENCRequest are honoured, as in PostgreSQL.
async fn negotiate(mut stream: ClientStream, mut inbox: Inbox, ctx: &SessionContext) -> Opened {
    let limits = ctx.startup_limits();
    let (mut ssl_done, mut gss_done) = (stream.is_tls(), false);
    loop {
        let read = startup::read_packet(&mut stream, &mut inbox, limits.max_packet_size).await;
        let packet = match read {
            Ok(packet) => startup::parse_packet(packet, limits),
            Err(error) => return refuse_startup(&mut stream, ctx, &error).await,
        };
        match packet {
            Ok(InitialPacket::SslRequest) if !ssl_done => {
                ssl_done = true;
                stream = match answer_ssl_request(stream, &inbox, ctx).await {
                    Some(stream) => stream,
                    None => return Opened::Closed,
                };
            }
            Ok(InitialPacket::GssEncRequest) if !gss_done => {
                gss_done = true;
                if stream.write_all(b"N").await.is_err() {
                    return Opened::Closed;
                }
            }
            Ok(InitialPacket::Cancel {
                process_id,
                secret_key,
            }) => {
                return Opened::Cancel(CancelKey {
                    process_id,
                    secret_key,
                })
            }
            Ok(InitialPacket::Startup(params)) => return admit(stream, params, inbox, ctx).await,
            Ok(_) => {
                let error = StartupError::Malformed("repeated encryption request");
                return refuse_startup(&mut stream, ctx, &error).await;
            }
            Err(error) => return refuse_startup(&mut stream, ctx, &error).await,
        }
    }
}

/// Enforces the TLS policy on a StartupMessage.
async fn admit(
    mut stream: ClientStream,
    params: StartupParams,
    inbox: Inbox,
    ctx: &SessionContext,
) -> Opened {
    if ctx.tls_mode() == ClientTlsMode::Require && !stream.is_tls() {
        ctx.metrics.client_rejected(RejectReason::TlsRequired);
        let msg = "pgferry requires TLS: connect with sslmode=require (or verify-ca/verify-full)";
        return refuse(
            &mut stream,
            ctx,
            Some(&params),
            sqlstate::INVALID_AUTHORIZATION,
            msg,
        )
        .await;
    }
    Opened::Session(stream, params, inbox)
}

/// Answers an SSLRequest with `S` (then performs the TLS handshake) or `N`. Bytes that were
/// read along with the SSLRequest are refused, as PostgreSQL does: they were sent in plaintext
/// but would be taken as the first bytes of the encrypted session. (Bytes still in the socket
/// go to the TLS handshake, which rejects them.)
async fn answer_ssl_request(
    stream: ClientStream,
    inbox: &Inbox,
    ctx: &SessionContext,
) -> Option<ClientStream> {
    let MaybeTls::Plain(mut tcp) = stream else {
        return None;
    };
    if !inbox.pending().is_empty() {
        ctx.metrics.client_rejected(RejectReason::BadStartup);
        let mut stream = MaybeTls::Plain(tcp);
        refuse(
            &mut stream,
            ctx,
            None,
            sqlstate::PROTOCOL_VIOLATION,
            "received unencrypted data after SSL request",
        )
        .await;
        return None;
    }
    let Some(config) = ctx.tls_config() else {
        tcp.write_all(b"N").await.ok()?;
        return Some(MaybeTls::Plain(tcp));
    };
    tcp.write_all(b"S").await.ok()?;
    match ClientTls::accept(tcp, config).await {
        Ok(tls) => {
            ctx.metrics.tls_handshake(TlsKind::SslRequest, true);
            Some(MaybeTls::Tls(Box::new(tls)))
        }
        Err(error) => {
            ctx.metrics.tls_handshake(TlsKind::SslRequest, false);
            tracing::debug!(%error, "TLS handshake failed");
            None
        }
    }
}

/// Refuses a bad first packet: with a FATAL ErrorResponse where PostgreSQL sends one, else
/// (a length no startup packet has, a packet cut short) by closing after a log line, as
/// PostgreSQL does. A connection that closes without sending anything is not worth either.
async fn refuse_startup(
    stream: &mut ClientStream,
    ctx: &SessionContext,
    error: &StartupError,
) -> Opened {
    if *error == StartupError::Eof {
        return Opened::Closed;
    }
    ctx.metrics.client_rejected(RejectReason::BadStartup);
    if !error.closes_silently() {
        return refuse(stream, ctx, None, error.sqlstate(), &error.to_string()).await;
    }
    let peer = stream.peer_addr().ok();
    tracing::info!(
        peer = peer.map(tracing::field::display),
        sqlstate = error.sqlstate(),
        message = %error,
        "refusing client without a reply, as PostgreSQL does"
    );
    let _ = stream.shutdown().await;
    Opened::Closed
}

/// Sends a FATAL error and reports the connection as closed. The log line names the client
/// (peer, and user and database once its startup packet is known): no span carries them.
pub async fn refuse(
    stream: &mut ClientStream,
    ctx: &SessionContext,
    startup: Option<&StartupParams>,
    code: &str,
    message: &str,
) -> Opened {
    let peer = stream.peer_addr().ok();
    tracing::info!(
        peer = peer.map(tracing::field::display),
        user = startup.map(|s| tracing::field::display(&s.user)),
        database = startup.map(|s| tracing::field::display(&s.database)),
        sqlstate = code,
        message,
        "refusing client"
    );
    send_fatal(stream, ctx, code, message).await;
    Opened::Closed
}

/// Writes a FATAL ErrorResponse and flushes; failures are irrelevant as the session ends.
pub async fn send_fatal(
    stream: &mut ClientStream,
    ctx: &SessionContext,
    code: &str,
    message: &str,
) {
    let mut buf = BytesMut::new();
    messages::error_response(&mut buf, Severity::Fatal, code, message);
    ctx.metrics.count_error(code);
    let _ = stream.write_all(&buf).await;
    let _ = stream.shutdown().await;
}
