//! Session lifecycle through pgferry: cancel, clients vanishing mid-transaction, pool
//! exhaustion, client limits, oversized and malformed messages, idle timeouts, session mode,
//! metrics and health endpoints.

mod support;

use std::time::{Duration, Instant};

use support::probe::*;
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn cancel_request_stops_a_long_query_quickly() {
    let handle = start_proxy(proxy_config(pg())).await;
    let client = app_client(&handle).await;
    let token = client.cancel_token();
    let started = Instant::now();
    let sleeper = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
    // Cancel as soon as the backend is running the query.
    let observer = connect(pg().addr(), SUPERUSER, &pg().superuser_password, "postgres")
        .await
        .unwrap();
    loop {
        let running: i64 = observer
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'", &[])
            .await
            .unwrap()
            .get(0);
        if running > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent to pgferry");
    let result = sleeper.await.unwrap();
    expect_sqlstate(result, "57014");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "cancel took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn killed_client_mid_transaction_leaves_no_lock_behind() {
    let mut config = proxy_config(pg());
    config.databases[0].pool_size = 2;
    let handle = start_proxy(config).await;
    let (victim, connection_task) = app_client_watched(&handle).await;
    victim
        .batch_execute("BEGIN; SELECT pg_advisory_xact_lock(4242)")
        .await
        .unwrap();
    connection_task.abort(); // the socket closes mid-transaction, like a frozen Lambda reaped
    drop(victim);
    let other = app_client(&handle).await;
    other
        .batch_execute("SET lock_timeout = '5s'")
        .await
        .unwrap();
    let got: bool = other
        .query_one("SELECT pg_advisory_xact_lock(4242) IS NOT NULL", &[])
        .await
        .expect("lock released by pgferry's rollback")
        .get(0);
    assert!(got);
}

#[tokio::test]
async fn pool_exhaustion_returns_53300_after_the_wait_timeout() {
    let mut config = proxy_config(pg());
    config.databases[0].pool_size = 1;
    config.limits.query_wait_timeout = Duration::from_millis(300);
    let handle = start_proxy(config).await;
    let holder = app_client(&handle).await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let waiter = app_client(&handle).await;
    let message = expect_sqlstate(waiter.simple_query("SELECT 1").await, "53300");
    assert!(
        message.contains("no backend connection available within 0.3 s"),
        "{message}"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    let again = app_client(&handle).await;
    again
        .simple_query("SELECT 1")
        .await
        .expect("pool free again");
    let text = handle.metrics().encode();
    assert_eq!(
        metric(
            &text,
            "pgferry_pool_checkout_timeouts_total{database=\"appdb\",user=\"app\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn max_client_connections_is_enforced() {
    let mut config = proxy_config(pg());
    config.limits.max_client_connections = 2;
    let handle = start_proxy(config).await;
    let _a = app_client(&handle).await;
    let _b = app_client(&handle).await;
    let message = expect_sqlstate(
        connect(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await,
        "53300",
    );
    assert!(message.contains("too many clients"), "{message}");
}

#[tokio::test]
async fn oversized_and_malformed_messages_get_08p01_and_leave_others_unaffected() {
    let mut config = proxy_config(pg());
    config.limits.max_startup_packet_size = 1024;
    let handle = start_proxy(config).await;
    let bystander = app_client(&handle).await;
    let mut big = startup_message(APP_USER, APP_DB);
    big.splice(0..4, 2000i32.to_be_bytes());
    big.resize(2000, b'x');
    // An impossible startup length is dropped without a reply, as PostgreSQL does.
    assert_eq!(raw_exchange(handle.client_addr(), &big).await, None);
    let (tag, body) = raw_exchange(handle.client_addr(), &packet(131_072, b"\0"))
        .await
        .expect("reply");
    assert_eq!((tag, error_code(&body).as_str()), (b'E', "0A000"));
    let short = [0, 0, 0, 2, 0, 0, 0, 0];
    assert_eq!(raw_exchange(handle.client_addr(), &short).await, None);
    bystander
        .simple_query("SELECT 1")
        .await
        .expect("other clients unaffected");
}

#[tokio::test]
async fn oversized_query_is_refused_with_08p01() {
    let mut config = proxy_config(pg());
    config.limits.max_message_size = 4096;
    let handle = start_proxy(config).await;
    let client = app_client(&handle).await;
    let long = format!("SELECT '{}'", "x".repeat(10_000));
    let result = client.simple_query(&long).await;
    expect_sqlstate(result, "08P01");
    app_client(&handle)
        .await
        .simple_query("SELECT 1")
        .await
        .expect("proxy still serves");
}

#[tokio::test]
async fn idle_and_idle_in_transaction_timeouts_close_with_clear_errors() {
    let mut config = proxy_config(pg());
    config.limits.client_idle_timeout = Duration::from_millis(300);
    config.limits.idle_transaction_timeout = Duration::from_millis(300);
    let handle = start_proxy(config).await;
    for (setup, expected) in [("SELECT 1", "57P05"), ("BEGIN", "25P03")] {
        let (client, connection) = app_client_watched(&handle).await;
        client.batch_execute(setup).await.unwrap();
        let error = connection
            .await
            .unwrap()
            .expect_err("pgferry closes the idle session");
        assert_eq!(sqlstate(&error).as_deref(), Some(expected), "{error:?}");
    }
}

#[tokio::test]
async fn session_mode_keeps_session_state_and_discards_it_at_the_end() {
    let mut config = proxy_config(pg());
    config.databases[0].pool_mode = pgferry::config::PoolMode::Session;
    config.databases[0].pool_size = 1;
    let handle = start_proxy(config).await;
    let first = app_client(&handle).await;
    first
        .batch_execute("CREATE TEMP TABLE session_scratch (v int); SET application_name = 'first'")
        .await
        .unwrap();
    first
        .batch_execute("INSERT INTO session_scratch VALUES (1)")
        .await
        .unwrap();
    let name: String = first
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "first");
    drop(first);
    let second = app_client(&handle).await; // waits for the single backend, DISCARDed
    let result = second.simple_query("SELECT * FROM session_scratch").await;
    expect_sqlstate(result, "42P01");
}

/// Queries a client sends before the previous reply arrives (tokio-postgres writes concurrent
/// requests in one go) are separate transactions, and each is counted once its ReadyForQuery
/// is relayed: before, all but the first of a pipelined run went uncounted.
#[tokio::test]
async fn pipelined_transactions_are_each_counted() {
    let handle = start_proxy(proxy_config(pg())).await;
    let client = app_client(&handle).await;
    let (a, b, c) = tokio::join!(
        client.simple_query("SELECT 1"),
        client.simple_query("SELECT 2"),
        client.simple_query("SELECT 3"),
    );
    for result in [a, b, c] {
        result.unwrap();
    }
    let series = "pgferry_transactions_total{database=\"appdb\",user=\"app\"}";
    assert_eq!(metric(&handle.metrics().encode(), series), 3.0);
}

#[tokio::test]
async fn metrics_and_health_reflect_a_known_workload() {
    let handle = start_proxy(proxy_config(pg())).await;
    let metrics_addr = handle.metrics_addr().expect("metrics enabled");
    assert_eq!(http_get(metrics_addr, "/healthz").await.0, 200);
    assert_eq!(http_get(metrics_addr, "/readyz").await.0, 200);
    let client = app_client(&handle).await;
    for _ in 0..5 {
        client.simple_query("SELECT 1").await.unwrap();
    }
    client
        .batch_execute("BEGIN; SELECT 1; SELECT 2; COMMIT")
        .await
        .unwrap();
    let _ = client
        .simple_query("SELECT * FROM missing_table_for_metrics")
        .await;
    // tokio-postgres reports the error before the ReadyForQuery behind it may have been
    // relayed; one more round trip makes sure the proxy has seen it.
    client.simple_query("SELECT 1").await.unwrap();
    let (status, text) = http_get(metrics_addr, "/metrics").await;
    assert_eq!(status, 200);
    let pool = "{database=\"appdb\",user=\"app\"}";
    assert_eq!(
        metric(&text, &format!("pgferry_transactions_total{pool}")),
        8.0
    );
    assert_eq!(metric(&text, &format!("pgferry_queries_total{pool}")), 8.0);
    assert_eq!(metric(&text, "pgferry_errors_total{class=\"42\"}"), 1.0);
    assert_eq!(
        metric(&text, "pgferry_client_logins_total{result=\"ok\"}"),
        1.0
    );
    // The client reads its ReadyForQuery a moment before the proxy returns the backend and
    // counts the client idle: wait (bounded) for that, then require exactly one.
    wait_for_metric(&handle, "pgferry_client_connections{state=\"idle\"}", 1.0).await;
    assert_eq!(
        metric(
            &handle.metrics().encode(),
            "pgferry_client_connections{state=\"active\"}"
        ),
        0.0
    );
    assert!(metric(&text, "pgferry_client_bytes_sent_total") > 0.0);
    drop(client);
}

#[tokio::test]
async fn unreachable_backend_gives_08006_naming_it_and_startup_still_works() {
    let mut config = proxy_config(pg());
    config.databases[0].port = free_port();
    let handle = start_proxy(config).await;
    let started = Instant::now();
    let message = expect_sqlstate(
        connect(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await,
        "08006",
    );
    assert!(message.contains("appdb"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        http_get(handle.metrics_addr().unwrap(), "/readyz").await.0,
        503
    );
}

#[tokio::test]
async fn terminate_and_half_sent_messages_do_not_leak_backends() {
    let mut config = proxy_config(pg());
    config.databases[0].pool_size = 1;
    let handle = start_proxy(config).await;
    for _ in 0..3 {
        let client = app_client(&handle).await;
        client.simple_query("SELECT 1").await.unwrap();
    }
    // A raw client that sends half a message and disconnects while holding nothing.
    let mut raw = tokio::net::TcpStream::connect(handle.client_addr())
        .await
        .unwrap();
    raw.write_all(&[0, 0]).await.unwrap();
    drop(raw);
    let last = app_client(&handle).await;
    last.simple_query("SELECT 1")
        .await
        .expect("the single backend was returned each time");
}

#[tokio::test]
async fn shutdown_ends_idle_sessions_then_closes_the_rest_after_the_timeout() {
    let mut config = proxy_config(pg());
    config.limits.shutdown_timeout = Duration::from_millis(300);
    let handle = start_proxy(config).await;
    let (idle, idle_conn) = app_client_watched(&handle).await;
    idle.simple_query("SELECT 1").await.unwrap();
    let (busy, busy_conn) = app_client_watched(&handle).await;
    busy.batch_execute("BEGIN").await.unwrap();
    let started = Instant::now();
    handle.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    let error = idle_conn
        .await
        .unwrap()
        .expect_err("idle session told to go");
    assert_eq!(sqlstate(&error).as_deref(), Some("57P01"), "{error:?}");
    let error = busy_conn
        .await
        .unwrap()
        .expect_err("session in a transaction closed after the timeout");
    assert_eq!(sqlstate(&error).as_deref(), Some("57P01"), "{error:?}");
}
