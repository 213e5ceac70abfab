//! The first packet of a connection: SSLRequest, GSSENCRequest, CancelRequest or the
//! StartupMessage, parsed with explicit limits (size, parameter count) because it arrives before
//! authentication, from anyone on the network.

use std::io;

use bytes::{Buf, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Request code of SSLRequest.
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// Request code of GSSENCRequest.
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// Request code of CancelRequest.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Protocol major version 3 as it appears in the high 16 bits of the version field.
const PROTOCOL_MAJOR_3: i32 = 3;

/// What the client opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialPacket {
    SslRequest,
    GssEncRequest,
    Cancel { process_id: i32, secret_key: i32 },
    Startup(StartupParams),
}

/// A parsed StartupMessage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartupParams {
    /// Requested minor version of protocol 3; pgferry speaks 3.0 and negotiates down.
    pub minor_version: u16,
    pub user: String,
    /// Defaults to the user name, as in PostgreSQL.
    pub database: String,
    /// Every other parameter (application_name, options, client_encoding, ...) in order.
    pub params: Vec<(String, String)>,
    /// `_pq_.*` protocol options, which pgferry does not support and must report back.
    pub protocol_options: Vec<String>,
}

/// Why the first packet was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StartupError {
    #[error("invalid length of startup packet: {0}")]
    BadLength(i64),
    #[error("invalid length of startup packet: {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// A CancelRequest whose length is not 16 bytes.
    #[error("invalid length of cancel request packet: {0} bytes")]
    BadCancelLength(usize),
    /// The connection closed after part of a packet (a port scanner, or a client that died).
    #[error("incomplete startup packet")]
    Incomplete,
    /// A parameter name or value is not UTF-8; `what` names it (`startup parameter "x"`).
    #[error("invalid byte sequence for encoding \"UTF8\" in {what}: {bytes}")]
    NotUtf8 { what: String, bytes: String },
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")]
    UnsupportedProtocol { major: i32, minor: i32 },
    #[error("startup packet has more than {max} parameters")]
    TooManyParameters { max: usize },
    #[error("invalid startup packet layout: {0}")]
    Malformed(&'static str),
    #[error("no PostgreSQL user name specified in startup packet")]
    MissingUser,
    #[error("replication connections are not supported by pgferry")]
    Replication,
    /// The connection closed before sending anything (health checks, a client that did not
    /// like the answer to its SSLRequest): nothing worth a log line, as in PostgreSQL.
    #[error("connection closed before sending a startup packet")]
    Eof,
}

impl StartupError {
    /// SQLSTATE PostgreSQL uses for the same condition.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            StartupError::UnsupportedProtocol { .. } | StartupError::Replication => {
                super::sqlstate::FEATURE_NOT_SUPPORTED
            }
            StartupError::MissingUser => super::sqlstate::INVALID_AUTHORIZATION,
            StartupError::NotUtf8 { .. } => super::sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
            _ => super::sqlstate::PROTOCOL_VIOLATION,
        }
    }

    /// True where PostgreSQL closes the connection without an ErrorResponse (it only logs):
    /// a length that cannot be a startup packet (an HTTP request or a TLS ClientHello sent to
    /// the port) or a packet cut short. Answering such a peer in the PostgreSQL protocol would
    /// tell it nothing it can use.
    pub fn closes_silently(&self) -> bool {
        matches!(
            self,
            StartupError::BadLength(_)
                | StartupError::BadCancelLength(_)
                | StartupError::TooLarge { .. }
                | StartupError::Incomplete
                | StartupError::Eof
        )
    }
}

/// Limits applied to untrusted startup packets.
#[derive(Debug, Clone, Copy)]
pub struct StartupLimits {
    pub max_packet_size: usize,
    pub max_parameters: usize,
}

/// What the first read of a connection may take: a whole startup packet (libpq's is under 100
/// bytes; drivers that send many parameters read the rest in a second read) or SSLRequest, or
/// the start of a ClientHello, in one `recvfrom` where a header read then a body read took two.
/// Small, because every client logging in holds it: with 1 KiB, 2000 clients logging in at once
/// left ~0.1 KiB more RSS per idle client (freed, but between long-lived allocations).
pub const OPENING_READ: usize = 256;

/// Bytes received from a client during the opening and the login, read ahead of the packet
/// being parsed. A read takes whatever has arrived (up to a limit its caller chooses), so a
/// packet usually costs one read instead of header and body; bytes beyond the packet stay here
/// for the next stage, which must consume them or refuse them (an SSLRequest followed by
/// plaintext: CVE-2021-23214).
#[derive(Debug, Default)]
pub struct Inbox {
    buf: BytesMut,
    /// Length of the packet [`Self::take`] last returned, dropped from `buf` by the next call.
    taken: usize,
}

impl Inbox {
    /// An empty inbox whose first read can take `capacity` bytes without growing.
    pub fn with_capacity(capacity: usize) -> Self {
        Inbox {
            buf: BytesMut::with_capacity(capacity),
            taken: 0,
        }
    }

    /// Received bytes not yet taken.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.taken..]
    }

    /// Reads until at least `want` bytes are pending; the reads never bring the pending bytes
    /// beyond `limit` (or `want`, if larger), so the caller decides how far to read ahead.
    /// EOF before `want` bytes is `UnexpectedEof`.
    pub async fn fill<S>(&mut self, stream: &mut S, want: usize, limit: usize) -> io::Result<()>
    where
        S: AsyncRead + Unpin,
    {
        self.drop_taken();
        let limit = limit.max(want);
        while self.buf.len() < want {
            let room = limit - self.buf.len();
            self.buf.reserve(room);
            let mut limited = (&mut *stream).take(room as u64);
            if limited.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// The next `len` pending bytes (at most what is pending), consumed: they stay readable
    /// until the next call on the inbox.
    pub fn take(&mut self, len: usize) -> &[u8] {
        self.drop_taken();
        self.taken = len.min(self.buf.len());
        &self.buf[..self.taken]
    }

    /// The pending bytes, for the next owner of the stream (TLS, the relay).
    pub fn into_pending(mut self) -> BytesMut {
        self.drop_taken();
        self.buf
    }

    fn drop_taken(&mut self) {
        self.buf.advance(std::mem::take(&mut self.taken));
    }
}

/// Reads one length-prefixed startup-phase packet into `inbox` and returns it (length field
/// included), reading at most [`OPENING_READ`] bytes ahead. The length is checked before the
/// body is awaited; like PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`, `max_packet_size` bounds
/// the packet after its length word.
pub async fn read_packet<'a, S: AsyncRead + Unpin>(
    stream: &mut S,
    inbox: &'a mut Inbox,
    max_packet_size: usize,
) -> Result<&'a [u8], StartupError> {
    if inbox.fill(stream, 4, OPENING_READ).await.is_err() {
        return Err(match inbox.pending() {
            [] => StartupError::Eof,
            _ => StartupError::Incomplete,
        });
    }
    let (len_bytes, _) = inbox
        .pending()
        .split_first_chunk::<4>()
        .ok_or(StartupError::Incomplete)?;
    let len = i32::from_be_bytes(*len_bytes);
    if len < 8 {
        return Err(StartupError::BadLength(len.into()));
    }
    let len = len as usize;
    if len - 4 > max_packet_size {
        return Err(StartupError::TooLarge {
            len,
            max: max_packet_size,
        });
    }
    let incomplete = |_| StartupError::Incomplete;
    inbox
        .fill(stream, len, OPENING_READ)
        .await
        .map_err(incomplete)?;
    Ok(inbox.take(len))
}

/// Parses a packet returned by [`read_packet`].
pub fn parse_packet(packet: &[u8], limits: StartupLimits) -> Result<InitialPacket, StartupError> {
    let (_, rest) = packet
        .split_first_chunk::<4>()
        .ok_or(StartupError::Malformed("short"))?;
    let (code, body) = rest
        .split_first_chunk::<4>()
        .ok_or(StartupError::Malformed("short"))?;
    let code = i32::from_be_bytes(*code);
    match (code, body.len()) {
        (SSL_REQUEST_CODE, 0) => Ok(InitialPacket::SslRequest),
        (GSSENC_REQUEST_CODE, 0) => Ok(InitialPacket::GssEncRequest),
        (CANCEL_REQUEST_CODE, 8) => Ok(InitialPacket::Cancel {
            process_id: i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
            secret_key: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        }),
        (CANCEL_REQUEST_CODE, _) => Err(StartupError::BadCancelLength(packet.len())),
        (SSL_REQUEST_CODE | GSSENC_REQUEST_CODE, _) => Err(StartupError::Malformed(
            "request packet with unexpected length",
        )),
        _ => parse_startup(code, body, limits).map(InitialPacket::Startup),
    }
}

fn parse_startup(
    version: i32,
    body: &[u8],
    limits: StartupLimits,
) -> Result<StartupParams, StartupError> {
    let (major, minor) = (version >> 16, version & 0xffff);
    if major != PROTOCOL_MAJOR_3 {
        return Err(StartupError::UnsupportedProtocol { major, minor });
    }
    let mut startup = StartupParams {
        minor_version: minor as u16,
        ..StartupParams::default()
    };
    let mut rest = body;
    let mut count = 0;
    loop {
        let (name, after) = split_cstr(rest).ok_or(StartupError::Malformed("unterminated name"))?;
        if name.is_empty() {
            break;
        }
        let name = utf8(name, || "the name of a startup parameter".to_string())?;
        let (value, after) = split_cstr(after).ok_or(StartupError::Malformed("missing value"))?;
        let value = utf8(value, || format!("startup parameter \"{name}\""))?;
        count += 1;
        if count > limits.max_parameters {
            return Err(StartupError::TooManyParameters {
                max: limits.max_parameters,
            });
        }
        startup.accept(name, value)?;
        rest = after;
    }
    if startup.user.is_empty() {
        return Err(StartupError::MissingUser);
    }
    if startup.database.is_empty() {
        startup.database = startup.user.clone();
    }
    Ok(startup)
}

/// Splits a NUL-terminated byte string off the front of `bytes`.
fn split_cstr(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == 0)?;
    Some((&bytes[..end], &bytes[end + 1..]))
}

/// `raw` as text, or an error naming the parameter (`what`) and the first invalid bytes in
/// PostgreSQL's notation (`0xc3 0x28`), so the client learns exactly what to fix.
fn utf8(raw: &[u8], what: impl FnOnce() -> String) -> Result<&str, StartupError> {
    std::str::from_utf8(raw).map_err(|error| {
        let start = error.valid_up_to();
        let end = start + error.error_len().unwrap_or(raw.len() - start);
        let bytes = raw[start..end]
            .iter()
            .map(|b| format!("0x{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        StartupError::NotUtf8 {
            what: what(),
            bytes,
        }
    })
}

impl StartupParams {
    fn accept(&mut self, name: &str, value: &str) -> Result<(), StartupError> {
        match name {
            "user" => self.user = value.to_string(),
            "database" => self.database = value.to_string(),
            "replication" if !matches!(value, "false" | "off" | "no" | "0") => {
                return Err(StartupError::Replication)
            }
            "replication" => {}
            _ if name.starts_with("_pq_.") => self.protocol_options.push(name.to_string()),
            _ => self.params.push((name.to_string(), value.to_string())),
        }
        Ok(())
    }

    /// The value of a non-user/database startup parameter, if the client sent it.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests;
