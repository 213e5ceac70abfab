//! Client input PostgreSQL accepts, rejects or ignores in ways a client can tell (issue 11):
//! requests sent while the backend skips to Sync after an extended-protocol error, a valid
//! request followed by a message of an invalid type in the same write, malformed
//! extended-protocol messages (an ERROR, not the end of the session), and invalid type bytes
//! refused before their body arrives. Each scenario runs against PostgreSQL directly (the
//! oracle) and through pgferry in both pool modes, and the replies must match.

mod support;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use pgferry::config::PoolMode;
use support::probe::frontend as fe;
use support::probe::{read_message, startup_message, wait_for_metric, RawClient};
use support::*;

const MODES: [PoolMode; 2] = [PoolMode::Transaction, PoolMode::Session];
/// How long any single reply may take before the test calls it a hang.
const REPLY_DEADLINE: Duration = Duration::from_secs(5);

/// A pgferry with one backend connection in `mode` (md5 for [`RawClient`]).
async fn proxy(mode: PoolMode) -> pgferry::ProxyHandle {
    let mut config = proxy_config(pg());
    config.auth.allow_md5 = true;
    config.databases[0].pool_size = 1;
    config.databases[0].pool_mode = mode;
    config.limits.server_reset_timeout = Duration::from_secs(30);
    start_proxy(config).await
}

async fn via_proxy(handle: &pgferry::ProxyHandle) -> RawClient {
    RawClient::login(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await
}

/// A raw session straight to PostgreSQL (SCRAM), the oracle every scenario is compared with.
async fn direct() -> RawClient {
    RawClient::login(pg().addr(), APP_USER, APP_PASSWORD, APP_DB).await
}

/// One backend message as the test compares it: type byte, and for an ErrorResponse its
/// severity, SQLSTATE and message text.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Message(char),
    Error {
        severity: String,
        code: String,
        message: String,
    },
    /// The server closed the connection.
    Closed,
}

fn error_field(body: &[u8], field: u8) -> String {
    body.split(|b| *b == 0)
        .find(|f| f.first() == Some(&field))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_default()
}

async fn next_reply(client: &mut RawClient) -> Reply {
    let read = tokio::time::timeout(REPLY_DEADLINE, read_message(&mut client.stream)).await;
    match read.expect("no reply within the deadline") {
        None => Reply::Closed,
        Some((b'E', body)) => Reply::Error {
            severity: error_field(&body, b'V'),
            code: error_field(&body, b'C'),
            message: error_field(&body, b'M'),
        },
        Some((tag, _)) => Reply::Message(char::from(tag)),
    }
}

/// Replies through the next ReadyForQuery, or through the end of the connection.
async fn replies_until_ready(client: &mut RawClient) -> Vec<Reply> {
    let mut replies = Vec::new();
    loop {
        let reply = next_reply(client).await;
        let end = matches!(reply, Reply::Message('Z') | Reply::Closed);
        replies.push(reply);
        if end {
            return replies;
        }
    }
}

fn tags(replies: &[Reply]) -> String {
    replies
        .iter()
        .map(|r| match r {
            Reply::Message(c) => *c,
            Reply::Error { .. } => 'E',
            Reply::Closed => '.',
        })
        .collect()
}

fn error(severity: &str, code: &str, message: &str) -> Reply {
    Reply::Error {
        severity: severity.to_string(),
        code: code.to_string(),
        message: message.to_string(),
    }
}

fn discarded(handle: &pgferry::ProxyHandle) -> f64 {
    handle
        .metrics()
        .encode()
        .lines()
        .filter(|l| l.starts_with("pgferry_server_connections_discarded_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const IDLE_SERVERS: &str =
    "pgferry_server_connections{database=\"appdb\",state=\"idle\",user=\"app\"}";

/// The one backend is back in the pool, idle, and was never discarded.
async fn assert_backend_returned_clean(handle: &pgferry::ProxyHandle) {
    wait_for_metric(handle, IDLE_SERVERS, 1.0).await;
    assert_eq!(discarded(handle), 0.0, "no backend connection discarded");
}

/// Another client gets the pool's only backend (it was released) within the deadline.
async fn assert_backend_free_for_others(handle: &pgferry::ProxyHandle) {
    let other = connect(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB)
        .await
        .expect("second client");
    let query = other.simple_query("SELECT 42");
    tokio::time::timeout(REPLY_DEADLINE, query)
        .await
        .expect("the backend was never released")
        .expect("SELECT 42");
}

// ---- 1. requests sent while the backend skips to Sync -----------------------------------------

/// Parse error + Flush; then a Query and a Sync: PostgreSQL skips the Query (no reply at all)
/// and answers only the Sync; the session then works normally.
async fn query_after_failed_flushed_parse(client: &mut RawClient) -> Vec<Vec<Reply>> {
    let mut buf = BytesMut::new();
    fe::parse(&mut buf, "", "SELEC 1");
    fe::flush(&mut buf);
    client.send(&buf).await;
    let failed = vec![next_reply(client).await];
    buf.clear();
    fe::query(&mut buf, "SELECT 2");
    fe::sync(&mut buf);
    client.send(&buf).await;
    let skipped = replies_until_ready(client).await;
    buf.clear();
    fe::query(&mut buf, "SELECT 3");
    client.send(&buf).await;
    let after = replies_until_ready(client).await;
    vec![failed, skipped, after]
}

#[tokio::test]
async fn a_query_sent_while_the_backend_skips_to_sync_gets_no_reply() {
    let oracle = query_after_failed_flushed_parse(&mut direct().await).await;
    assert_eq!(tags(&oracle[1]), "Z", "PostgreSQL answers only the Sync");
    assert_eq!(tags(&oracle[2]), "TDCZ");
    for mode in MODES {
        let handle = proxy(mode).await;
        let mut client = via_proxy(&handle).await;
        let seen = query_after_failed_flushed_parse(&mut client).await;
        assert_eq!(seen, oracle, "{mode:?}");
        if mode == PoolMode::Transaction {
            assert_backend_free_for_others(&handle).await;
        }
        drop(client);
        assert_backend_returned_clean(&handle).await;
    }
}

/// A FunctionCall and a pgferry-cached named Parse sent while the backend skips: nothing comes
/// back for either (no synthesized ParseComplete), and the name stays free afterwards.
async fn cached_parse_after_failed_flushed_parse(client: &mut RawClient) -> Vec<Vec<Reply>> {
    let mut buf = BytesMut::new();
    // Prepare "known" once so pgferry would answer a second Parse of it itself.
    fe::parse(&mut buf, "known", "SELECT 1");
    fe::close_statement(&mut buf, "known");
    fe::sync(&mut buf);
    client.send(&buf).await;
    let warm = replies_until_ready(client).await;
    buf.clear();
    fe::parse(&mut buf, "", "SELEC 1");
    fe::flush(&mut buf);
    client.send(&buf).await;
    let failed = vec![next_reply(client).await];
    buf.clear();
    fe::parse(&mut buf, "known", "SELECT 1");
    function_call(&mut buf);
    fe::sync(&mut buf);
    client.send(&buf).await;
    let skipped = replies_until_ready(client).await;
    buf.clear();
    // "known" was never created: preparing it again succeeds (no 42P05).
    fe::parse(&mut buf, "known", "SELECT 1");
    fe::bind(&mut buf, "known");
    fe::execute(&mut buf);
    fe::sync(&mut buf);
    client.send(&buf).await;
    let after = replies_until_ready(client).await;
    vec![warm, failed, skipped, after]
}

/// FunctionCall of `pg_backend_pid()` (oid 2026), no arguments, text result.
fn function_call(buf: &mut BytesMut) {
    buf.put_u8(b'F');
    buf.put_i32(4 + 4 + 2 + 2 + 2);
    buf.put_u32(2026);
    buf.put_i16(0);
    buf.put_i16(0);
    buf.put_i16(0);
}

#[tokio::test]
async fn function_calls_and_cached_parses_are_skipped_like_postgres() {
    let oracle = cached_parse_after_failed_flushed_parse(&mut direct().await).await;
    assert_eq!(tags(&oracle[2]), "Z", "PostgreSQL answers only the Sync");
    assert_eq!(tags(&oracle[3]), "12DCZ");
    for mode in MODES {
        let handle = proxy(mode).await;
        let mut client = via_proxy(&handle).await;
        let seen = cached_parse_after_failed_flushed_parse(&mut client).await;
        assert_eq!(seen, oracle, "{mode:?}");
        if mode == PoolMode::Transaction {
            assert_backend_free_for_others(&handle).await;
        }
        drop(client);
        assert_backend_returned_clean(&handle).await;
    }
}

// ---- 2. a valid request, then an invalid message in the same write ----------------------------

async fn insert_then_invalid_type(client: &mut RawClient, value: &str) -> Vec<Reply> {
    let mut buf = BytesMut::new();
    fe::query(
        &mut buf,
        &format!("INSERT INTO fid_input_rows VALUES ('{value}')"),
    );
    buf.extend_from_slice(b"z\0\0\0\x04");
    client.send(&buf).await;
    let mut replies = replies_until_ready(client).await;
    replies.push(next_reply(client).await);
    replies.push(next_reply(client).await);
    replies
}

/// Creates the table the tests write to, once per test binary (concurrent `CREATE TABLE IF
/// NOT EXISTS` can collide).
async fn rows_table() {
    static CREATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    CREATED
        .get_or_init(|| async {
            let db = pg().connect_direct(APP_USER, APP_PASSWORD, APP_DB).await;
            db.batch_execute("CREATE TABLE IF NOT EXISTS fid_input_rows (v text)")
                .await
                .expect("table");
        })
        .await;
}

async fn row_exists(value: &str) -> bool {
    let db = pg().connect_direct(APP_USER, APP_PASSWORD, APP_DB).await;
    let rows = db
        .query(
            "SELECT count(*) FROM fid_input_rows WHERE v = $1",
            &[&value],
        )
        .await
        .expect("count");
    rows[0].get::<_, i64>(0) == 1
}

#[tokio::test]
async fn a_valid_query_is_answered_before_an_invalid_message_type_ends_the_session() {
    rows_table().await;
    let oracle = insert_then_invalid_type(&mut direct().await, "direct").await;
    assert_eq!(
        oracle,
        vec![
            Reply::Message('C'),
            Reply::Message('Z'),
            error("FATAL", "08P01", "invalid frontend message type 122"),
            Reply::Closed,
        ]
    );
    assert!(row_exists("direct").await);
    for mode in MODES {
        let value = format!("{mode:?}");
        let handle = proxy(mode).await;
        let seen = insert_then_invalid_type(&mut via_proxy(&handle).await, &value).await;
        assert_eq!(seen, oracle, "{mode:?}");
        assert!(row_exists(&value).await, "{mode:?}: the INSERT ran");
        assert_backend_returned_clean(&handle).await;
    }
}

/// An extended-protocol batch without Sync, then an invalid type: PostgreSQL's FATAL error
/// flushes the replies it had buffered, so they arrive first.
async fn unsynced_batch_then_invalid_type(client: &mut RawClient) -> Vec<Reply> {
    let mut buf = BytesMut::new();
    fe::parse(&mut buf, "", "SELECT 1");
    fe::bind(&mut buf, "");
    fe::execute(&mut buf);
    buf.extend_from_slice(b"z\0\0\0\x04");
    client.send(&buf).await;
    let mut replies = Vec::new();
    while replies.last() != Some(&Reply::Closed) {
        replies.push(next_reply(client).await);
    }
    replies
}

#[tokio::test]
async fn an_unsynced_batch_is_answered_before_an_invalid_message_type_ends_the_session() {
    let oracle = unsynced_batch_then_invalid_type(&mut direct().await).await;
    assert_eq!(tags(&oracle), "12DCE.");
    for mode in MODES {
        let handle = proxy(mode).await;
        let seen = unsynced_batch_then_invalid_type(&mut via_proxy(&handle).await).await;
        assert_eq!(seen, oracle, "{mode:?}");
        assert_backend_returned_clean(&handle).await;
    }
}

// ---- 9. malformed extended-protocol messages: an ERROR, and the session goes on ---------------

/// `message` (a malformed extended-protocol frame), a Query the backend must skip, and Sync;
/// then a Query that must work.
async fn malformed_then_sync(client: &mut RawClient, message: &[u8]) -> Vec<Vec<Reply>> {
    let mut buf = BytesMut::from(message);
    fe::query(&mut buf, "SELECT 2");
    fe::sync(&mut buf);
    client.send(&buf).await;
    let failed = replies_until_ready(client).await;
    buf.clear();
    fe::query(&mut buf, "SELECT 3");
    client.send(&buf).await;
    vec![failed, replies_until_ready(client).await]
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn malformed_extended_messages_get_postgres_errors_and_the_session_goes_on() {
    let cases = [
        // A named Parse declaring three parameter types and carrying none.
        (
            frame(b'P', b"stmt\0SELECT 1\0\0\x03"),
            "insufficient data left in message",
        ),
        (
            frame(b'D', b"xstmt\0"),
            "invalid DESCRIBE message subtype 120",
        ),
        (frame(b'C', b"xstmt\0"), "invalid CLOSE message subtype 120"),
    ];
    for (message, text) in cases {
        let oracle = malformed_then_sync(&mut direct().await, &message).await;
        assert_eq!(
            oracle[0],
            vec![error("ERROR", "08P01", text), Reply::Message('Z')],
            "PostgreSQL: ERROR, the Query skipped, then the Sync's ReadyForQuery"
        );
        assert_eq!(tags(&oracle[1]), "TDCZ");
        for mode in MODES {
            let handle = proxy(mode).await;
            let mut client = via_proxy(&handle).await;
            let seen = malformed_then_sync(&mut client, &message).await;
            assert_eq!(seen, oracle, "{mode:?}: {text}");
            drop(client);
            assert_backend_returned_clean(&handle).await;
        }
    }
}

/// Bytes whose first byte is not a message type a client may send: refused at once, whatever
/// length follows and however little of the body came.
async fn refused_at_first_byte(client: &mut RawClient, bytes: &[u8]) -> Vec<Reply> {
    client.send(bytes).await;
    vec![next_reply(client).await, next_reply(client).await]
}

#[tokio::test]
async fn invalid_message_types_are_refused_before_their_body_arrives() {
    let mut declares_a_mebibyte = b"z\0\x10\0\0".to_vec();
    declares_a_mebibyte.extend_from_slice(&[0; 10]);
    let cases = [
        (declares_a_mebibyte, "invalid frontend message type 122"),
        (
            startup_message(APP_USER, APP_DB),
            "invalid frontend message type 0",
        ),
        (
            support::probe::ssl_request(),
            "invalid frontend message type 0",
        ),
    ];
    for (bytes, text) in cases {
        let oracle = refused_at_first_byte(&mut direct().await, &bytes).await;
        assert_eq!(
            oracle,
            vec![error("FATAL", "08P01", text), Reply::Closed],
            "PostgreSQL"
        );
        for mode in MODES {
            let handle = proxy(mode).await;
            let seen = refused_at_first_byte(&mut via_proxy(&handle).await, &bytes).await;
            assert_eq!(seen, oracle, "{mode:?}: {text}");
            assert_backend_returned_clean(&handle).await;
        }
    }
}

/// An invalid type byte while COPY FROM STDIN reads data: PostgreSQL fails the COPY with an
/// ERROR, then ends the session (it lost track of message boundaries).
async fn invalid_type_during_copy_in(client: &mut RawClient) -> Vec<Reply> {
    let mut buf = BytesMut::new();
    fe::query(&mut buf, "COPY fid_input_rows FROM STDIN");
    client.send(&buf).await;
    let mut replies = vec![next_reply(client).await];
    let mut data = frame(b'd', b"copied\n");
    data.extend_from_slice(b"z\0\0\0\x04");
    client.send(&data).await;
    while replies.last() != Some(&Reply::Closed) {
        replies.push(next_reply(client).await);
    }
    replies
}

#[tokio::test]
async fn an_invalid_type_during_copy_in_fails_the_copy_then_the_session() {
    rows_table().await;
    let oracle = invalid_type_during_copy_in(&mut direct().await).await;
    assert!(!row_exists("copied").await, "PostgreSQL aborted the COPY");
    assert_eq!(
        oracle,
        vec![
            Reply::Message('G'),
            error(
                "ERROR",
                "08P01",
                "unexpected message type 0x7A during COPY from stdin"
            ),
            error(
                "FATAL",
                "08P01",
                "terminating connection because protocol synchronization was lost"
            ),
            Reply::Closed,
        ]
    );
    for mode in MODES {
        let handle = proxy(mode).await;
        let seen = invalid_type_during_copy_in(&mut via_proxy(&handle).await).await;
        assert_eq!(seen, oracle, "{mode:?}");
        assert!(
            !row_exists("copied").await,
            "{mode:?}: the COPY was aborted"
        );
        assert_backend_returned_clean(&handle).await;
    }
}
