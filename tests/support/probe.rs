//! Test-side probes of a running proxy: SQLSTATEs of client errors, raw protocol sockets for
//! what real drivers never send, and Prometheus scrapes.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// SQLSTATE of a client error (`None` for I/O-level errors without a server message).
pub fn sqlstate(error: &tokio_postgres::Error) -> Option<String> {
    error.as_db_error().map(|e| e.code().code().to_string())
}

/// Asserts `result` failed with `expected` SQLSTATE; returns the server's message.
pub fn expect_sqlstate<T: std::fmt::Debug>(
    result: Result<T, tokio_postgres::Error>,
    expected: &str,
) -> String {
    match result {
        Ok(value) => panic!("expected SQLSTATE {expected}, got success: {value:?}"),
        Err(error) => {
            assert_eq!(
                sqlstate(&error).as_deref(),
                Some(expected),
                "unexpected error: {error:?}"
            );
            error
                .as_db_error()
                .map(|e| e.message().to_string())
                .unwrap_or_default()
        }
    }
}

/// A startup-phase packet: length + code + body.
pub fn packet(code: i32, body: &[u8]) -> Vec<u8> {
    let mut v = ((body.len() + 8) as i32).to_be_bytes().to_vec();
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A protocol 3.0 StartupMessage for `user` / `database`.
pub fn startup_message(user: &str, database: &str) -> Vec<u8> {
    let body = format!("user\0{user}\0database\0{database}\0\0");
    packet(196_608, body.as_bytes())
}

/// SSLRequest.
pub fn ssl_request() -> Vec<u8> {
    packet(80_877_103, b"")
}

/// Reads one backend message (tag, body) from a raw socket.
pub async fn read_message<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).await.ok()?;
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; len.checked_sub(4)?];
    stream.read_exact(&mut body).await.ok()?;
    Some((header[0], body))
}

/// The SQLSTATE field of an ErrorResponse body.
pub fn error_code(body: &[u8]) -> String {
    body.split(|b| *b == 0)
        .find(|field| field.first() == Some(&b'C'))
        .map(|field| String::from_utf8_lossy(&field[1..]).to_string())
        .unwrap_or_default()
}

/// Sends raw bytes on a fresh connection and returns the first message back.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Option<(u8, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(bytes).await.ok()?;
    read_message(&mut stream).await
}

/// GET a path from the proxy's HTTP side port; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("metrics port reachable");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Waits (at most 5 s, yielding between checks) until `series` reads `value`; fails otherwise.
pub async fn wait_for_metric(handle: &pgferry::ProxyHandle, series: &str, value: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let current = metric(&handle.metrics().encode(), series);
        if current == value {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} stayed {current}, expected {value}"
        );
        tokio::task::yield_now().await;
    }
}

/// The value of one exposition line (`name{labels}` exactly as printed), 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A client speaking the protocol byte by byte, for message sequences real drivers produce but
/// tokio-postgres does not (Flush without Sync, pipelines across errors, malformed messages).
pub struct RawClient {
    pub stream: TcpStream,
}

impl RawClient {
    /// Connects and logs in (md5 or SCRAM-SHA-256, whichever the server asks for, so the
    /// same client also speaks to PostgreSQL directly as an oracle); returns once
    /// ReadyForQuery arrived.
    pub async fn login(addr: SocketAddr, user: &str, password: &str, database: &str) -> RawClient {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(&startup_message(user, database))
            .await
            .expect("startup");
        let (tag, body) = read_message(&mut stream).await.expect("auth request");
        assert_eq!(tag, b'R', "expected an authentication request");
        match &body[..4] {
            [0, 0, 0, 5] => {
                let salt = [body[4], body[5], body[6], body[7]];
                md5_login(&mut stream, user, password, salt).await
            }
            [0, 0, 0, 10] => scram_login(&mut stream, password).await,
            other => panic!("unexpected authentication request {other:?}"),
        }
        let mut client = RawClient { stream };
        client.read_until_ready().await;
        client
    }

    /// Sends raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Reads `n` messages and returns their type bytes.
    pub async fn read_tags(&mut self, n: usize) -> Vec<u8> {
        let mut tags = Vec::new();
        for _ in 0..n {
            tags.push(read_message(&mut self.stream).await.expect("message").0);
        }
        tags
    }

    /// Reads messages through the next ReadyForQuery; returns the type bytes.
    pub async fn read_until_ready(&mut self) -> Vec<u8> {
        let mut tags = Vec::new();
        loop {
            let (tag, _) = read_message(&mut self.stream)
                .await
                .expect("message before ReadyForQuery");
            tags.push(tag);
            if tag == b'Z' {
                return tags;
            }
        }
    }
}

async fn md5_login(stream: &mut TcpStream, user: &str, password: &str, salt: [u8; 4]) {
    let hash =
        postgres_protocol::authentication::md5_hash(user.as_bytes(), password.as_bytes(), salt);
    let mut msg = bytes::BytesMut::new();
    postgres_protocol::message::frontend::password_message(hash.as_bytes(), &mut msg)
        .expect("encode");
    stream.write_all(&msg).await.expect("password");
}

/// SCRAM-SHA-256 without channel binding, up to AuthenticationOk.
async fn scram_login(stream: &mut TcpStream, password: &str) {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
    use postgres_protocol::message::frontend as fe;
    let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    let mut msg = bytes::BytesMut::new();
    fe::sasl_initial_response(SCRAM_SHA_256, scram.message(), &mut msg).expect("encode");
    stream.write_all(&msg).await.expect("client-first");
    let (_, body) = read_message(stream).await.expect("server-first");
    assert_eq!(&body[..4], &[0, 0, 0, 11], "SASL continue");
    scram.update(&body[4..]).expect("server-first valid");
    msg.clear();
    fe::sasl_response(scram.message(), &mut msg).expect("encode");
    stream.write_all(&msg).await.expect("client-final");
    let (_, body) = read_message(stream).await.expect("server-final");
    assert_eq!(&body[..4], &[0, 0, 0, 12], "SASL final");
    scram.finish(&body[4..]).expect("server signature valid");
}

/// Frontend message builders for raw tests.
pub mod frontend {
    use bytes::BytesMut;
    use postgres_protocol::message::frontend as fe;
    use postgres_protocol::IsNull;

    /// Parse of `query` as statement `name` with no parameter types.
    pub fn parse(buf: &mut BytesMut, name: &str, query: &str) {
        fe::parse(name, query, std::iter::empty(), buf).expect("parse");
    }

    /// Bind of statement `statement` to the unnamed portal, no parameters, text results.
    pub fn bind(buf: &mut BytesMut, statement: &str) {
        let no_params: [Option<&[u8]>; 0] = [];
        fe::bind(
            "",
            statement,
            std::iter::empty::<i16>(),
            no_params.iter(),
            |value: &Option<&[u8]>, out: &mut BytesMut| match value {
                Some(v) => {
                    out.extend_from_slice(v);
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            std::iter::empty::<i16>(),
            buf,
        )
        .map_err(|_| "bind")
        .expect("bind");
    }

    /// Execute of the unnamed portal, all rows.
    pub fn execute(buf: &mut BytesMut) {
        fe::execute("", 0, buf).expect("execute");
    }

    /// Describe of a statement.
    pub fn describe_statement(buf: &mut BytesMut, name: &str) {
        fe::describe(b'S', name, buf).expect("describe");
    }

    /// Close of a statement.
    pub fn close_statement(buf: &mut BytesMut, name: &str) {
        fe::close(b'S', name, buf).expect("close");
    }

    /// Flush.
    pub fn flush(buf: &mut BytesMut) {
        fe::flush(buf);
    }

    /// Sync.
    pub fn sync(buf: &mut BytesMut) {
        fe::sync(buf);
    }

    /// Simple Query.
    pub fn query(buf: &mut BytesMut, sql: &str) {
        fe::query(sql, buf).expect("query");
    }
}
