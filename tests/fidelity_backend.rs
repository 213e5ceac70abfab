//! Issue 11, items 7 and 10: how a session ends when its backend ends it, and how a backend
//! comes back from a client that vanished in the middle of `COPY ... TO STDOUT`.

mod support;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use pgferry::config::PoolMode;
use support::probe::frontend as fe;
use support::probe::{error_code, read_message, RawClient};
use support::*;

/// A proxy on the shared server with one backend in `mode`; md5 for [`RawClient`].
async fn one_backend_proxy(mode: PoolMode) -> pgferry::ProxyHandle {
    let mut config = proxy_config(pg());
    config.auth.allow_md5 = true;
    config.databases[0].pool_size = 1;
    config.databases[0].pool_mode = mode;
    // A reset that waits for its timeout leaves the next client waiting past
    // `query_wait_timeout` (53300): the next client's success is the test's clock.
    config.limits.server_reset_timeout = Duration::from_secs(30);
    config.limits.query_wait_timeout = Duration::from_secs(2);
    start_proxy(config).await
}

/// Backend pid of the client's connection.
async fn backend_pid(client: &mut RawClient) -> i32 {
    let mut buf = BytesMut::new();
    fe::query(&mut buf, "SELECT pg_backend_pid()");
    client.send(&buf).await;
    let mut pid = None;
    loop {
        let Some((tag, body)) = read_message(&mut client.stream).await else {
            panic!("connection closed before ReadyForQuery");
        };
        if tag == b'E' {
            panic!("error {}", String::from_utf8_lossy(&body));
        }
        match tag {
            b'D' => pid = Some(data_row_text(&body)),
            b'Z' => break,
            _ => {}
        }
    }
    pid.and_then(|p| p.parse().ok()).expect("a pid row")
}

/// The only column of a DataRow body, as text.
fn data_row_text(body: &[u8]) -> String {
    let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]) as usize;
    String::from_utf8_lossy(&body[6..6 + len]).into_owned()
}

/// All discarded backends of the test pool, whatever the reason.
fn discarded(handle: &pgferry::ProxyHandle) -> f64 {
    handle
        .metrics()
        .encode()
        .lines()
        .filter(|l| l.starts_with("pgferry_server_connections_discarded_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Item 10: a client that reads part of a large COPY TO STDOUT and closes its socket. The
/// backend must come back clean (COPY cancelled and drained) before the next client's wait
/// for it times out, and be reused, not discarded after `server_reset_timeout`.
async fn vanished_copy_reader_leaves_a_clean_backend(mode: PoolMode) {
    let handle = one_backend_proxy(mode).await;
    let addr = handle.client_addr();
    let mut reader = RawClient::login(addr, APP_USER, APP_PASSWORD, APP_DB).await;
    let pid = backend_pid(&mut reader).await;
    let mut buf = BytesMut::new();
    // About 10 GB if nobody stops it.
    fe::query(
        &mut buf,
        "COPY (SELECT repeat('x', 200) FROM generate_series(1, 50000000)) TO STDOUT",
    );
    reader.send(&buf).await;
    let (tag, _) = read_message(&mut reader.stream)
        .await
        .expect("CopyOutResponse");
    assert_eq!(tag, b'H');
    for _ in 0..100 {
        let (tag, _) = read_message(&mut reader.stream).await.expect("CopyData");
        assert_eq!(tag, b'd');
    }
    drop(reader);

    let mut next = RawClient::login(addr, APP_USER, APP_PASSWORD, APP_DB).await;
    let next_pid = backend_pid(&mut next).await;
    assert_eq!(next_pid, pid, "the same backend serves the next client");
    assert_eq!(discarded(&handle), 0.0, "no backend was discarded");
}

#[tokio::test]
async fn vanished_copy_reader_leaves_a_clean_backend_transaction_mode() {
    vanished_copy_reader_leaves_a_clean_backend(PoolMode::Transaction).await;
}

#[tokio::test]
async fn vanished_copy_reader_leaves_a_clean_backend_session_mode() {
    vanished_copy_reader_leaves_a_clean_backend(PoolMode::Session).await;
}

/// Every message the client receives until the connection closes: (type, SQLSTATE of errors).
async fn messages_until_closed(client: &mut RawClient) -> Vec<(u8, String)> {
    let mut seen = Vec::new();
    let deadline = Duration::from_secs(10);
    while let Ok(Some((tag, body))) =
        tokio::time::timeout(deadline, read_message(&mut client.stream)).await
    {
        let code = if tag == b'E' {
            error_code(&body)
        } else {
            String::new()
        };
        seen.push((tag, code));
    }
    seen
}

/// Item 7: a backend that ends the session with its own FATAL (57P01 after
/// pg_terminate_backend) gives the client exactly that error, and then the connection closes:
/// no second 08006 from pgferry. A direct connection is the oracle.
async fn a_backends_fatal_is_the_only_error(mode: PoolMode) {
    let handle = one_backend_proxy(mode).await;
    let mut through = RawClient::login(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await;
    let mut direct = RawClient::login(pg().addr(), APP_USER, APP_PASSWORD, APP_DB).await;
    let admin = pg().superuser_client().await;
    for client in [&mut through, &mut direct] {
        let mut buf = BytesMut::new();
        // Held in a transaction (transaction mode keeps the backend only then), the
        // backend is terminated while the client waits for it.
        fe::query(&mut buf, "BEGIN");
        client.send(&buf).await;
        client.read_until_ready().await;
        let pid = backend_pid(client).await;
        let mut buf = BytesMut::new();
        fe::query(&mut buf, "SELECT pg_sleep(30)");
        client.send(&buf).await;
        wait_until_sleeping(&admin, pid).await;
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .expect("terminate");
    }
    let expected = messages_until_closed(&mut direct).await;
    let got = messages_until_closed(&mut through).await;
    let errors: Vec<_> = expected.iter().filter(|(tag, _)| *tag == b'E').collect();
    assert_eq!(errors, [&(b'E', "57P01".to_string())], "the oracle");
    assert_eq!(got, expected);
}

/// Waits until backend `pid` runs pg_sleep (bounded), so the terminate hits a running query.
async fn wait_until_sleeping(admin: &tokio_postgres::Client, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let row = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE 'SELECT pg_sleep%' AND state = 'active'",
                &[&pid],
            )
            .await
            .expect("pg_stat_activity");
        if row.get::<_, i64>(0) == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backend {pid} never started sleeping"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_backends_fatal_is_the_only_error_transaction_mode() {
    a_backends_fatal_is_the_only_error(PoolMode::Transaction).await;
}

#[tokio::test]
async fn a_backends_fatal_is_the_only_error_session_mode() {
    a_backends_fatal_is_the_only_error(PoolMode::Session).await;
}

/// A long statement followed by a message of an invalid type in one write: pgferry waits for
/// the statement's replies before its FATAL (as PostgreSQL does), but shutdown's closing phase
/// ends that wait: the client hears 57P01 and the proxy stops within its shutdown timeout.
#[tokio::test]
async fn shutdown_ends_the_wait_before_refusing_an_invalid_message() {
    let mut config = proxy_config(pg());
    config.auth.allow_md5 = true;
    config.databases[0].pool_size = 1; // the pid below is the backend that will sleep
    config.limits.shutdown_timeout = Duration::from_millis(300);
    let handle = start_proxy(config).await;
    let mut client = RawClient::login(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await;
    let pid = backend_pid(&mut client).await;
    let mut buf = BytesMut::new();
    fe::query(&mut buf, "BEGIN");
    client.send(&buf).await;
    client.read_until_ready().await;
    let mut buf = BytesMut::new();
    fe::query(&mut buf, "SELECT pg_sleep(60)");
    buf.extend_from_slice(b"z\0\0\0\x04");
    client.send(&buf).await;
    wait_until_sleeping(&pg().superuser_client().await, pid).await;
    let started = Instant::now();
    handle.shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "shutdown took {took:?}");
    let seen = messages_until_closed(&mut client).await;
    assert_eq!(seen.last(), Some(&(b'E', "57P01".to_string())), "{seen:?}");
}
