//! A raw admin-console client for tests: logs in with SCRAM, keeps every message of the
//! welcome, and decodes replies into tables with their column names and type OIDs (which
//! tokio-postgres' `simple_query` does not expose).

mod columns;
mod helpers;

use std::net::SocketAddr;

use bytes::BytesMut;
use pgferry::config::{Config, Credential, UserConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub use columns::expected_columns;
pub use helpers::{named_client, psql, show_until, simple_rows};

use super::probe::{frontend, read_message, startup_message};
use super::{proxy_config, PgServer};

/// Full-control console user configured by [`console_config`].
pub const OPS_USER: &str = "ops";
/// Password of [`OPS_USER`].
pub const OPS_PASSWORD: &str = "ops-secret";
/// Stats-only console user configured by [`console_config`].
pub const WATCHER_USER: &str = "watcher";
/// Password of [`WATCHER_USER`].
pub const WATCHER_PASSWORD: &str = "watcher-secret";

/// [`proxy_config`] plus `ops` in `admin.users` and `watcher` in `admin.stats_users` (both
/// proxy-only users: the console never needs a backend login).
pub fn console_config(pg: &PgServer) -> Config {
    let mut config = proxy_config(pg);
    for (name, password) in [(OPS_USER, OPS_PASSWORD), (WATCHER_USER, WATCHER_PASSWORD)] {
        config.users.push(UserConfig::new(
            name,
            Credential::Plain(password.to_string()),
        ));
    }
    config.admin.users = vec![OPS_USER.to_string()];
    config.admin.stats_users = vec![WATCHER_USER.to_string()];
    config
}

/// One result set: columns (name, type OID) and rows of text cells (`None` = NULL).
#[derive(Debug, Default, Clone)]
pub struct Table {
    pub columns: Vec<(String, u32)>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    /// Column names in order.
    pub fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The cell of `column` in `row`, panicking with context when the column is missing.
    pub fn cell<'a>(&'a self, row: &'a [Option<String>], column: &str) -> Option<&'a str> {
        let i = self
            .columns
            .iter()
            .position(|(n, _)| n == column)
            .unwrap_or_else(|| panic!("no column {column:?} in {:?}", self.names()));
        row[i].as_deref()
    }

    /// The rows whose `column` equals `value`.
    pub fn rows_where(&self, column: &str, value: &str) -> Vec<&Vec<Option<String>>> {
        self.rows
            .iter()
            .filter(|row| self.cell(row, column) == Some(value))
            .collect()
    }

    /// The one row whose `column` equals `value`, as a map-like accessor.
    pub fn row_where(&self, column: &str, value: &str) -> &Vec<Option<String>> {
        let rows = self.rows_where(column, value);
        assert_eq!(
            rows.len(),
            1,
            "rows with {column} = {value}: {:?}",
            self.rows
        );
        rows[0]
    }

    /// An integer cell of the row where `key_column` = `key`.
    pub fn int(&self, key_column: &str, key: &str, column: &str) -> i64 {
        let row = self.row_where(key_column, key);
        let text = self.cell(row, column).unwrap_or("NULL");
        text.parse()
            .unwrap_or_else(|_| panic!("{column} = {text:?} is not an integer"))
    }
}

/// Everything a Query produced up to ReadyForQuery.
#[derive(Debug, Default)]
pub struct Reply {
    pub tables: Vec<Table>,
    /// CommandComplete tags in order.
    pub tags: Vec<String>,
    /// (SQLSTATE, message) of ErrorResponses.
    pub errors: Vec<(String, String)>,
    /// (message, detail) of NoticeResponses.
    pub notices: Vec<(String, String)>,
    pub empty_query: bool,
    /// Every message's type byte, in order.
    pub message_tags: Vec<u8>,
}

impl Reply {
    /// The only table, panicking on errors.
    pub fn table(&self) -> &Table {
        assert!(self.errors.is_empty(), "errors: {:?}", self.errors);
        assert_eq!(self.tables.len(), 1, "expected one result set");
        &self.tables[0]
    }

    /// The SQLSTATE of the only error.
    pub fn error_code(&self) -> &str {
        assert_eq!(self.errors.len(), 1, "expected one error: {self:?}");
        &self.errors[0].0
    }
}

/// A logged-in console connection.
pub struct ConsoleClient {
    pub stream: TcpStream,
    /// The messages of the welcome (after authentication), type byte and body.
    pub welcome: Vec<(u8, Vec<u8>)>,
}

impl ConsoleClient {
    /// Logs in to `database` (normally `pgbouncer` or `pgferry`) with SCRAM.
    pub async fn login(addr: SocketAddr, user: &str, password: &str, database: &str) -> Self {
        Self::try_login(addr, user, password, database, &[])
            .await
            .unwrap_or_else(|(code, message)| panic!("console login refused: {code} {message}"))
    }

    /// Logs in with extra startup parameters; `Err((sqlstate, message))` if refused.
    pub async fn try_login(
        addr: SocketAddr,
        user: &str,
        password: &str,
        database: &str,
        extra: &[(&str, &str)],
    ) -> Result<Self, (String, String)> {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(&startup(user, database, extra))
            .await
            .expect("startup");
        let (tag, body) = read_message(&mut stream).await.expect("auth request");
        if tag == b'E' {
            return Err(error_fields(&body));
        }
        assert_eq!(&body[..4], &[0, 0, 0, 10], "expected SCRAM");
        if let Some(error) = scram(&mut stream, password).await {
            return Err(error);
        }
        let mut welcome = Vec::new();
        loop {
            let (tag, body) = read_message(&mut stream).await.expect("welcome");
            if tag == b'E' {
                return Err(error_fields(&body));
            }
            welcome.push((tag, body));
            if tag == b'Z' {
                return Ok(ConsoleClient { stream, welcome });
            }
        }
    }

    /// ParameterStatus values of the welcome.
    pub fn parameter(&self, name: &str) -> Option<String> {
        self.welcome
            .iter()
            .filter(|(t, _)| *t == b'S')
            .find_map(|(_, body)| {
                let mut parts = body.split(|b| *b == 0);
                let key = parts.next()?;
                let value = parts.next()?;
                (key == name.as_bytes()).then(|| String::from_utf8_lossy(value).to_string())
            })
    }

    /// Sends a simple Query and decodes everything up to ReadyForQuery.
    pub async fn query(&mut self, sql: &str) -> Reply {
        let mut buf = BytesMut::new();
        frontend::query(&mut buf, sql);
        self.stream.write_all(&buf).await.expect("send query");
        self.read_reply().await
    }

    /// Sends raw frontend bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Decodes messages up to ReadyForQuery.
    pub async fn read_reply(&mut self) -> Reply {
        let mut reply = Reply::default();
        loop {
            let (tag, body) = read_message(&mut self.stream)
                .await
                .unwrap_or_else(|| panic!("connection closed mid-reply: {reply:?}"));
            reply.message_tags.push(tag);
            match tag {
                b'T' => reply.tables.push(Table {
                    columns: row_description(&body),
                    rows: Vec::new(),
                }),
                b'D' => reply
                    .tables
                    .last_mut()
                    .expect("DataRow after RowDescription")
                    .rows
                    .push(data_row(&body)),
                b'C' => reply.tags.push(cstr(&body)),
                b'E' => reply.errors.push(error_fields(&body)),
                b'N' => reply.notices.push((field(&body, b'M'), field(&body, b'D'))),
                b'I' => reply.empty_query = true,
                b'Z' => return reply,
                _ => {}
            }
        }
    }
}

fn startup(user: &str, database: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    if extra.is_empty() {
        return startup_message(user, database);
    }
    let mut body = format!("user\0{user}\0database\0{database}\0");
    for (k, v) in extra {
        body.push_str(&format!("{k}\0{v}\0"));
    }
    body.push('\0');
    super::probe::packet(196_608, body.as_bytes())
}

/// SCRAM-SHA-256 up to AuthenticationOk; `Some(error)` when the server refused.
async fn scram(stream: &mut TcpStream, password: &str) -> Option<(String, String)> {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
    use postgres_protocol::message::frontend as fe;
    let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    let mut msg = BytesMut::new();
    fe::sasl_initial_response(SCRAM_SHA_256, scram.message(), &mut msg).expect("encode");
    stream.write_all(&msg).await.expect("client-first");
    let (_, body) = read_message(stream).await.expect("server-first");
    scram.update(&body[4..]).expect("server-first valid");
    msg.clear();
    fe::sasl_response(scram.message(), &mut msg).expect("encode");
    stream.write_all(&msg).await.expect("client-final");
    let (tag, body) = read_message(stream).await.expect("server-final");
    if tag == b'E' {
        return Some(error_fields(&body));
    }
    scram.finish(&body[4..]).expect("server signature valid");
    let (tag, body) = read_message(stream).await.expect("AuthenticationOk");
    if tag == b'E' {
        return Some(error_fields(&body));
    }
    assert_eq!(
        (tag, &body[..]),
        (b'R', &[0u8, 0, 0, 0][..]),
        "AuthenticationOk"
    );
    None
}

fn cstr(body: &[u8]) -> String {
    let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).to_string()
}

fn field(body: &[u8], code: u8) -> String {
    body.split(|b| *b == 0)
        .find(|f| f.first() == Some(&code))
        .map(|f| String::from_utf8_lossy(&f[1..]).to_string())
        .unwrap_or_default()
}

fn error_fields(body: &[u8]) -> (String, String) {
    (field(body, b'C'), field(body, b'M'))
}

fn row_description(body: &[u8]) -> Vec<(String, u32)> {
    let count = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut pos = 2;
    let mut columns = Vec::new();
    for _ in 0..count {
        let name = cstr(&body[pos..]);
        pos += name.len() + 1;
        let oid = u32::from_be_bytes([body[pos + 6], body[pos + 7], body[pos + 8], body[pos + 9]]);
        pos += 18;
        columns.push((name, oid));
    }
    columns
}

fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let count = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut pos = 2;
    let mut cells = Vec::new();
    for _ in 0..count {
        let len = i32::from_be_bytes([body[pos], body[pos + 1], body[pos + 2], body[pos + 3]]);
        pos += 4;
        if len < 0 {
            cells.push(None);
        } else {
            let len = len as usize;
            cells.push(Some(
                String::from_utf8_lossy(&body[pos..pos + len]).to_string(),
            ));
            pos += len;
        }
    }
    cells
}
