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
mod tests {
    use super::*;

    const LIMITS: StartupLimits = StartupLimits {
        max_packet_size: 10_000,
        max_parameters: 4,
    };

    fn packet(code: i32, body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as i32).to_be_bytes().to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn parses_requests() {
        assert_eq!(
            parse_packet(&packet(SSL_REQUEST_CODE, b""), LIMITS),
            Ok(InitialPacket::SslRequest)
        );
        assert_eq!(
            parse_packet(&packet(GSSENC_REQUEST_CODE, b""), LIMITS),
            Ok(InitialPacket::GssEncRequest)
        );
        let cancel = packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 9, 0, 0, 1, 0]);
        assert_eq!(
            parse_packet(&cancel, LIMITS),
            Ok(InitialPacket::Cancel {
                process_id: 9,
                secret_key: 256
            })
        );
        assert_eq!(
            parse_packet(&packet(CANCEL_REQUEST_CODE, &[0, 0]), LIMITS),
            Err(StartupError::BadCancelLength(10))
        );
    }

    #[test]
    fn parses_startup_parameters() {
        let body = b"user\0app\0database\0db\0application_name\0lambda\0_pq_.x\0y\0\0";
        let Ok(InitialPacket::Startup(s)) = parse_packet(&packet(196_608, body), LIMITS) else {
            panic!("startup expected");
        };
        assert_eq!((s.user.as_str(), s.database.as_str()), ("app", "db"));
        assert_eq!(s.param("application_name"), Some("lambda"));
        assert_eq!(s.protocol_options, vec!["_pq_.x".to_string()]);
    }

    #[test]
    fn database_defaults_to_user_and_user_is_required() {
        let Ok(InitialPacket::Startup(s)) =
            parse_packet(&packet(196_608, b"user\0app\0\0"), LIMITS)
        else {
            panic!("startup expected");
        };
        assert_eq!(s.database, "app");
        assert_eq!(
            parse_packet(&packet(196_608, b"\0"), LIMITS),
            Err(StartupError::MissingUser)
        );
    }

    #[test]
    fn rejects_bad_packets() {
        assert!(matches!(
            parse_packet(&packet(131_072, b"\0"), LIMITS),
            Err(StartupError::UnsupportedProtocol { major: 2, .. })
        ));
        assert!(parse_packet(&packet(196_608, b"user\0app"), LIMITS).is_err());
        let many = b"a\0b\0c\0d\0e\0f\0g\0h\0i\0j\0user\0u\0\0";
        assert_eq!(
            parse_packet(&packet(196_608, many), LIMITS),
            Err(StartupError::TooManyParameters { max: 4 })
        );
        assert_eq!(
            parse_packet(
                &packet(196_608, b"user\0u\0replication\0database\0\0"),
                LIMITS
            ),
            Err(StartupError::Replication)
        );
    }

    #[tokio::test]
    async fn read_packet_enforces_limits() {
        let mut inbox = Inbox::default();
        let mut big: &[u8] = &[0, 0, 0x30, 0, 1, 2];
        assert!(matches!(
            read_packet(&mut big, &mut inbox, 10_000).await,
            Err(StartupError::TooLarge { .. })
        ));
        let (mut inbox, mut tiny): (_, &[u8]) = (Inbox::default(), &[0, 0, 0, 4]);
        assert_eq!(
            read_packet(&mut tiny, &mut inbox, 10_000).await,
            Err(StartupError::BadLength(4))
        );
        let (mut inbox, mut short): (_, &[u8]) = (Inbox::default(), &[0, 0, 0, 12, 1]);
        assert_eq!(
            read_packet(&mut short, &mut inbox, 10_000).await,
            Err(StartupError::Incomplete)
        );
        let (mut inbox, mut half_length): (_, &[u8]) = (Inbox::default(), &[0, 0]);
        assert_eq!(
            read_packet(&mut half_length, &mut inbox, 10_000).await,
            Err(StartupError::Incomplete)
        );
        let (mut inbox, mut nothing): (_, &[u8]) = (Inbox::default(), &[]);
        assert_eq!(
            read_packet(&mut nothing, &mut inbox, 10_000).await,
            Err(StartupError::Eof)
        );
        // PostgreSQL's limit applies to what follows the length word.
        let mut at_limit = packet(196_608, &[b'x'; 9996]);
        at_limit.extend_from_slice(b"more");
        let (mut inbox, mut stream) = (Inbox::default(), at_limit.as_slice());
        assert!(read_packet(&mut stream, &mut inbox, 10_000).await.is_ok());
    }

    #[test]
    fn parameters_that_are_not_utf8_are_named() {
        let body = b"user\0app\0application_name\0caf\xc3\x28\0\0";
        assert_eq!(
            parse_packet(&packet(196_608, body), LIMITS),
            Err(StartupError::NotUtf8 {
                what: "startup parameter \"application_name\"".into(),
                bytes: "0xc3".into(),
            })
        );
        let body = b"user\0\xff\0\0";
        let error = parse_packet(&packet(196_608, body), LIMITS).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid byte sequence for encoding \"UTF8\" in startup parameter \"user\": 0xff"
        );
        assert_eq!(error.sqlstate(), "22021");
        let body = b"us\xe9r\0app\0\0";
        assert!(matches!(
            parse_packet(&packet(196_608, body), LIMITS),
            Err(StartupError::NotUtf8 { what, .. }) if what == "the name of a startup parameter"
        ));
    }

    /// Two packets that arrived together: the first read takes both, the second packet is
    /// served from the inbox, and what follows it stays pending.
    #[tokio::test]
    async fn read_packet_keeps_what_arrived_behind_a_packet() {
        let mut wire = packet(SSL_REQUEST_CODE, b"");
        wire.extend_from_slice(&packet(196_608, b"user\0u\0\0"));
        wire.extend_from_slice(b"rest");
        let (mut inbox, mut stream) = (Inbox::default(), wire.as_slice());
        let first = read_packet(&mut stream, &mut inbox, 10_000).await.unwrap();
        assert_eq!(parse_packet(first, LIMITS), Ok(InitialPacket::SslRequest));
        assert!(stream.is_empty(), "one read took everything");
        assert_eq!(inbox.pending().len(), 16 + 4);
        let second = read_packet(&mut stream, &mut inbox, 10_000).await.unwrap();
        assert!(matches!(
            parse_packet(second, LIMITS),
            Ok(InitialPacket::Startup(_))
        ));
        assert_eq!(inbox.pending(), b"rest");
        assert_eq!(&inbox.into_pending()[..], b"rest");
    }

    /// `fill` never reads past its limit, so bytes meant for a later owner stay in the stream.
    #[tokio::test]
    async fn fill_reads_no_further_than_its_limit() {
        let (mut inbox, mut stream): (_, &[u8]) = (Inbox::default(), b"0123456789");
        inbox.fill(&mut stream, 2, 6).await.unwrap();
        assert_eq!(inbox.pending(), b"012345");
        assert_eq!(stream, b"6789");
        assert_eq!(inbox.take(4), b"0123");
        inbox.fill(&mut stream, 5, 5).await.unwrap();
        assert_eq!(inbox.pending(), b"45678");
        assert_eq!(stream, b"9");
        let eof = inbox.fill(&mut stream, 9, 9).await.unwrap_err();
        assert_eq!(eof.kind(), io::ErrorKind::UnexpectedEof);
    }
}
