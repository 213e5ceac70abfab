//! Transaction-mode rules against a real PostgreSQL: named prepared statements reused while
//! clients hop between backends, session settings that follow their client and never leak to
//! others, pinning (and its metrics, un-pinning and the `error` policy), PostgreSQL's own errors
//! for misused statement names.

mod support;

use std::sync::Arc;

use bytes::BytesMut;
use futures_util::future::join_all;
use pgferry::config::PinningMode;
use support::probe::frontend as fe;
use support::probe::{expect_sqlstate, metric, RawClient};
use support::*;

fn config(pool_size: u32) -> pgferry::config::Config {
    let mut config = proxy_config(pg());
    config.databases[0].pool_size = pool_size;
    config.limits.query_wait_timeout = std::time::Duration::from_secs(60);
    config
}

#[tokio::test]
async fn prepared_statements_are_reused_across_backends_and_pipelines() {
    let handle = Arc::new(start_proxy(config(2)).await);
    let tasks = (0..20i32).map(|id| {
        let handle = Arc::clone(&handle);
        async move {
            let mut c = app_client(&handle).await;
            let add = c.prepare("SELECT $1::int4 + 1").await.unwrap();
            let ident = c
                .prepare("SELECT $1::int4 * 1000 + $2::int4")
                .await
                .unwrap();
            for round in 0..20i32 {
                let row = c.query_one(&add, &[&id]).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), id + 1);
                let tx = c.transaction().await.unwrap();
                let row = tx.query_one(&ident, &[&id, &round]).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), id * 1000 + round);
                tx.commit().await.unwrap();
            }
            let inputs: Vec<i32> = (0..10).collect();
            let params: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 1]> =
                inputs.iter().map(|i| [i as _]).collect();
            let pipelined = join_all(params.iter().map(|p| c.query_one(&add, p))).await;
            for (i, row) in pipelined.into_iter().enumerate() {
                assert_eq!(row.unwrap().get::<_, i32>(0), i as i32 + 1);
            }
        }
    });
    join_all(tasks).await;
    let text = handle.metrics().encode();
    assert_eq!(
        metric(
            &text,
            "pgferry_pool_max_connections{database=\"appdb\",user=\"app\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn statement_names_behave_as_in_postgres() {
    let mut cfg = config(2);
    cfg.auth.allow_md5 = true;
    let handle = start_proxy(cfg).await;
    let mut raw = RawClient::login(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await;
    let mut buf = BytesMut::new();
    fe::parse(&mut buf, "s1", "SELECT 1");
    fe::sync(&mut buf);
    fe::parse(&mut buf, "s1", "SELECT 2");
    fe::bind(&mut buf, "s1");
    fe::execute(&mut buf);
    fe::sync(&mut buf);
    fe::bind(&mut buf, "nope");
    fe::execute(&mut buf);
    fe::sync(&mut buf);
    fe::close_statement(&mut buf, "s1");
    fe::parse(&mut buf, "s1", "SELECT 3");
    fe::bind(&mut buf, "s1");
    fe::execute(&mut buf);
    fe::sync(&mut buf);
    raw.send(&buf).await;
    assert_eq!(raw.read_until_ready().await, b"1Z".to_vec());
    assert_eq!(
        raw.read_until_ready().await,
        b"EZ".to_vec(),
        "42P05: name already in use"
    );
    assert_eq!(
        raw.read_until_ready().await,
        b"EZ".to_vec(),
        "26000: unknown name"
    );
    assert_eq!(
        raw.read_until_ready().await,
        b"312DCZ".to_vec(),
        "close, then the name is free"
    );
}

async fn show(c: &tokio_postgres::Client, what: &str) -> String {
    c.query_one(&format!("SHOW {what}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn session_settings_follow_their_client_and_never_leak() {
    let handle = start_proxy(config(1)).await;
    let a = app_client(&handle).await;
    let b = app_client(&handle).await;
    a.batch_execute("SET statement_timeout = '4321ms'; SET application_name = 'client-a'")
        .await
        .unwrap();
    assert_eq!(
        show(&b, "statement_timeout").await,
        "0",
        "A's SET leaked to B"
    );
    assert_eq!(
        show(&b, "application_name").await,
        "",
        "A's application_name leaked to B"
    );
    assert_eq!(show(&a, "statement_timeout").await, "4321ms");
    assert_eq!(show(&a, "application_name").await, "client-a");
    a.batch_execute("BEGIN; SET statement_timeout = '999ms'; ROLLBACK")
        .await
        .unwrap();
    assert_eq!(show(&b, "statement_timeout").await, "0");
    assert_eq!(
        show(&a, "statement_timeout").await,
        "4321ms",
        "a rolled-back SET never happened"
    );
    a.batch_execute("RESET statement_timeout").await.unwrap();
    assert_eq!(show(&b, "search_path").await, "\"$user\", public");
    assert_eq!(show(&a, "statement_timeout").await, "0");
}

#[tokio::test]
async fn startup_options_apply_on_every_backend() {
    let handle = start_proxy(config(2)).await;
    let addr = handle.client_addr();
    for _ in 0..3 {
        let conn = format!(
            "{} options='-c timezone=Asia/Tokyo -c search_path=a,public'",
            conn_string(addr, APP_USER, APP_PASSWORD, APP_DB, "disable")
        );
        let (c, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        for _ in 0..3 {
            let tz: String = c.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
            let path: String = c.query_one("SHOW search_path", &[]).await.unwrap().get(0);
            assert_eq!((tz.as_str(), path.as_str()), ("Asia/Tokyo", "a,public"));
        }
    }
}

#[tokio::test]
async fn advisory_locks_pin_and_unlock_unpins() {
    let handle = start_proxy(config(1)).await;
    let a = app_client(&handle).await;
    a.batch_execute("SELECT pg_advisory_lock(777)")
        .await
        .unwrap();
    let text = handle.metrics().encode();
    assert_eq!(
        metric(&text, "pgferry_pinned_sessions{reason=\"advisory_lock\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "pgferry_client_pins_total{database=\"appdb\",reason=\"advisory_lock\",user=\"app\"}"
        ),
        1.0
    );
    // Still A's backend, across transactions: the lock is visible as held by this session.
    for _ in 0..3 {
        let held: i64 = a
            .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(held, 1);
    }
    a.batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();
    let text = handle.metrics().encode();
    assert_eq!(
        metric(&text, "pgferry_pinned_sessions{reason=\"advisory_lock\"}"),
        0.0
    );
    // Unpinned: the single backend serves another client now.
    let b = app_client(&handle).await;
    b.simple_query("SELECT 1")
        .await
        .expect("backend released after unlock");
}

#[tokio::test]
async fn pinned_session_state_is_cleaned_before_reuse() {
    let handle = start_proxy(config(1)).await;
    let a = app_client(&handle).await;
    a.batch_execute("SELECT pg_advisory_lock(4243); LISTEN chan; CREATE TEMP TABLE t_pin (v int)")
        .await
        .unwrap();
    drop(a);
    let b = app_client(&handle).await; // gets the same single backend once A's cleanup ran
    let locks: i64 = b
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(locks, 0, "advisory lock left behind");
    let channels: i64 = b
        .query_one("SELECT count(*) FROM pg_listening_channels()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(channels, 0, "LISTEN left behind");
    expect_sqlstate(b.simple_query("SELECT * FROM t_pin").await, "42P01");
}

#[tokio::test]
async fn pinning_error_policy_refuses_with_0a000_like_postgres_errors() {
    let mut cfg = config(2);
    cfg.pooling.pinning = PinningMode::Error;
    let handle = start_proxy(cfg).await;
    let c = app_client(&handle).await;
    let message = expect_sqlstate(c.simple_query("SELECT pg_advisory_lock(1)").await, "0A000");
    assert!(message.contains("advisory locks"), "{message}");
    c.simple_query("SELECT 1").await.expect("session continues");
    c.batch_execute("BEGIN").await.unwrap();
    expect_sqlstate(c.simple_query("LISTEN x").await, "0A000");
    expect_sqlstate(c.simple_query("SELECT 1").await, "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    let prepared = c.prepare("SELECT pg_advisory_lock($1)").await;
    expect_sqlstate(prepared, "0A000");
}

#[tokio::test]
async fn a_setting_pgferry_cannot_apply_is_reported_as_a_warning() {
    let handle = start_proxy(config(1)).await;
    let conn = format!(
        "{} options='-c statement_timeout=banana'",
        conn_string(
            handle.client_addr(),
            APP_USER,
            APP_PASSWORD,
            APP_DB,
            "disable"
        )
    );
    let (c, mut connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let Ok(tokio_postgres::AsyncMessage::Notice(notice)) = message {
                let _ = tx.send(notice.message().to_string());
            }
        }
    });
    let one: i32 = c
        .query_one("SELECT 1", &[])
        .await
        .expect("the query itself runs")
        .get(0);
    assert_eq!(one, 1);
    let warning = notices.recv().await.expect("a warning");
    assert!(
        warning.contains("could not apply this session's settings"),
        "{warning}"
    );
}
