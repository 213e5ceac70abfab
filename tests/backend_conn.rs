//! Backend connections against a real PostgreSQL: TLS modes, auth methods, login errors,
//! cancel, and the pool. One cluster serves every step; it stops even on failure.

#[path = "backend_conn/harness.rs"]
mod harness;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use harness::{TestPg, CLEAR_USER, MD5_USER, SCRAM_USER};
use pgferry::config::{BackendTlsMode, DatabaseConfig, Limits, PoolMode};
use pgferry::metrics::Metrics;
use pgferry::pool::BackendPool;
use pgferry::server::wire::ErrorFields;
use pgferry::server::{send_cancel, BackendTarget, ServerConn, ServerError};
use tokio::io::AsyncWriteExt;

const TIMEOUT: Duration = Duration::from_secs(5);

fn target(
    pg: &TestPg,
    host: &str,
    user: (&str, &str),
    mode: BackendTlsMode,
    ca: Option<&Path>,
) -> BackendTarget {
    BackendTarget {
        database: "appdb".to_string(),
        host: host.to_string(),
        port: pg.port,
        dbname: "postgres".to_string(),
        user: user.0.to_string(),
        password: Some(user.1.to_string()),
        tls_mode: mode,
        tls: pgferry::tls::client_config(mode, ca).expect("client tls config"),
        connect_timeout: TIMEOUT,
        startup_params: vec![("application_name".to_string(), "pgferry".to_string())],
        max_prepared_statements: 100,
    }
}

fn plain(pg: &TestPg, user: (&str, &str)) -> BackendTarget {
    target(pg, "127.0.0.1", user, BackendTlsMode::Disable, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections() {
    let pg = TestPg::start();
    scram_login_plain(&pg).await;
    tls_modes(&pg).await;
    password_methods(&pg).await;
    login_errors(&pg).await;
    unreachable_backends().await;
    cancel_running_query(&pg).await;
    pool_reuse_hand_off_and_limits(&pg).await;
    pool_upkeep_and_connect_errors(&pg).await;
}

async fn scram_login_plain(pg: &TestPg) {
    let conn = ServerConn::connect(&plain(pg, SCRAM_USER))
        .await
        .expect("scram login");
    assert!(!conn.stream.is_tls());
    assert!(conn.is_clean());
    assert!(conn.read_buf.is_empty());
    assert!(conn
        .params
        .get("server_version")
        .is_some_and(|v| v.starts_with("15")));
    assert_eq!(
        conn.params.get("client_encoding").map(String::as_str),
        Some("UTF8")
    );
    assert_eq!(
        conn.params.get("application_name").map(String::as_str),
        Some("pgferry")
    );
    assert_ne!(conn.key.process_id, 0);
    let other = ServerConn::connect(&plain(pg, SCRAM_USER))
        .await
        .expect("second login");
    assert_ne!(conn.id, other.id);
}

async fn tls_modes(pg: &TestPg) {
    let (ca, wrong) = (Some(pg.ca_file.as_path()), Some(pg.wrong_ca_file.as_path()));
    for mode in [BackendTlsMode::Prefer, BackendTlsMode::Require] {
        let conn = ServerConn::connect(&target(pg, "127.0.0.1", SCRAM_USER, mode, None)).await;
        assert!(conn.expect("tls login").stream.is_tls(), "{mode:?}");
    }
    // The certificate names only `localhost`: verify-ca ignores the host, verify-full does not.
    let ok = ServerConn::connect(&target(
        pg,
        "127.0.0.1",
        SCRAM_USER,
        BackendTlsMode::VerifyCa,
        ca,
    ))
    .await;
    assert!(ok.expect("verify-ca").stream.is_tls());
    let ok = ServerConn::connect(&target(
        pg,
        "localhost",
        SCRAM_USER,
        BackendTlsMode::VerifyFull,
        ca,
    ))
    .await;
    assert!(ok.expect("verify-full").stream.is_tls());
    let bad = ServerConn::connect(&target(
        pg,
        "127.0.0.1",
        SCRAM_USER,
        BackendTlsMode::VerifyCa,
        wrong,
    ))
    .await;
    assert!(matches!(bad, Err(ServerError::Tls(_))), "{bad:?}");
    let bad = ServerConn::connect(&target(
        pg,
        "127.0.0.1",
        SCRAM_USER,
        BackendTlsMode::VerifyFull,
        ca,
    ))
    .await;
    assert!(matches!(bad, Err(ServerError::Tls(_))), "{bad:?}");
}

async fn password_methods(pg: &TestPg) {
    for user in [MD5_USER, CLEAR_USER] {
        let conn = ServerConn::connect(&plain(pg, user)).await;
        assert!(conn.is_ok(), "{}: {:?}", user.0, conn.err());
        let tls = target(pg, "127.0.0.1", user, BackendTlsMode::Require, None);
        assert!(
            ServerConn::connect(&tls).await.is_ok(),
            "{} over TLS",
            user.0
        );
    }
}

async fn login_errors(pg: &TestPg) {
    for user in [SCRAM_USER, MD5_USER, CLEAR_USER] {
        let err = ServerConn::connect(&plain(pg, (user.0, "wrong")))
            .await
            .err();
        assert_eq!(
            err.as_ref().map(ServerError::sqlstate),
            Some("28P01"),
            "{}: {err:?}",
            user.0
        );
    }
    let mut missing_db = plain(pg, SCRAM_USER);
    missing_db.dbname = "no_such_db".to_string();
    let err = ServerConn::connect(&missing_db)
        .await
        .expect_err("unknown db must fail");
    assert_eq!(err.sqlstate(), "3D000");
    assert!(matches!(&err, ServerError::Backend { message, .. } if message.contains("no_such_db")));
    let mut no_password = plain(pg, SCRAM_USER);
    no_password.password = None;
    let err = ServerConn::connect(&no_password).await.err();
    assert!(
        matches!(err, Some(ServerError::UnsupportedAuth(_))),
        "{err:?}"
    );
}

async fn unreachable_backends() {
    let closed = BackendTarget {
        database: "appdb".to_string(),
        host: "127.0.0.1".to_string(),
        port: harness::free_port(),
        dbname: "postgres".to_string(),
        user: "nobody".to_string(),
        password: None,
        tls_mode: BackendTlsMode::Disable,
        tls: None,
        connect_timeout: Duration::from_millis(500),
        startup_params: Vec::new(),
        max_prepared_statements: 100,
    };
    let started = Instant::now();
    let err = ServerConn::connect(&closed)
        .await
        .expect_err("closed port must fail");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, ServerError::Connect { .. }), "{err:?}");
    assert_eq!(err.sqlstate(), "08006");
    assert!(err
        .client_message("appdb")
        .starts_with(&format!("backend \"appdb\" (127.0.0.1:{})", closed.port)));

    // A listener that never answers: the whole login is bounded by connect_timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut hung = closed.clone();
    hung.port = silent.local_addr().expect("addr").port();
    let started = Instant::now();
    let err = ServerConn::connect(&hung)
        .await
        .expect_err("silent backend must fail");
    assert!(matches!(err, ServerError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.sqlstate(), "08006");
}

async fn cancel_running_query(pg: &TestPg) {
    let target = target(pg, "127.0.0.1", SCRAM_USER, BackendTlsMode::Require, None);
    let mut conn = ServerConn::connect(&target).await.expect("login");
    let mut query = BytesMut::new();
    postgres_protocol::message::frontend::query("SELECT pg_sleep(30)", &mut query).expect("encode");
    conn.mark_dirty();
    conn.stream.write_all(&query).await.expect("send query");
    wait_until_active(pg, conn.key.process_id).await;

    let started = Instant::now();
    send_cancel(&target, conn.key).await.expect("send cancel");
    let sqlstate = tokio::time::timeout(TIMEOUT, first_error(&mut conn))
        .await
        .expect("cancel within 5 s");
    assert_eq!(sqlstate, "57014");
    assert!(started.elapsed() < TIMEOUT);
    // The connection is back in sync and idle afterwards.
    let status = tokio::time::timeout(TIMEOUT, ready_status(&mut conn))
        .await
        .expect("ReadyForQuery");
    assert_eq!(status, b'I');
}

/// Polls pg_stat_activity (from a separate tokio-postgres session) until `pid` runs a query.
async fn wait_until_active(pg: &TestPg, pid: i32) {
    let dsn = format!(
        "host=127.0.0.1 port={} user={} password={} dbname=postgres",
        pg.port, SCRAM_USER.0, SCRAM_USER.1
    );
    let (client, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .expect("observer");
    tokio::spawn(connection);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
                &[&pid],
            )
            .await
            .expect("pg_stat_activity");
        if row.get::<_, i64>(0) == 1 {
            return;
        }
        assert!(Instant::now() < deadline, "query never became active");
    }
}

async fn first_error(conn: &mut ServerConn) -> String {
    loop {
        let frame = conn.read_frame().await.expect("read frame");
        if frame.first() == Some(&b'E') {
            return ErrorFields::parse(frame.get(5..).unwrap_or_default()).sqlstate;
        }
    }
}

async fn ready_status(conn: &mut ServerConn) -> u8 {
    loop {
        let frame = conn.read_frame().await.expect("read frame");
        if frame.first() == Some(&b'Z') {
            return frame.get(5).copied().unwrap_or(0);
        }
    }
}

fn pool_config(pg: &TestPg, size: u32, min_idle: u32) -> DatabaseConfig {
    DatabaseConfig {
        name: "appdb".to_string(),
        host: "127.0.0.1".to_string(),
        port: pg.port,
        dbname: "postgres".to_string(),
        backend_user: None,
        backend_password: None,
        pool_mode: PoolMode::Transaction,
        pool_size: size,
        min_pool_size: min_idle,
        connect_timeout: TIMEOUT,
        server_idle_timeout: Duration::from_secs(600),
        server_lifetime: Duration::from_secs(3600),
        tls_mode: BackendTlsMode::Disable,
        tls_ca_file: None,
        max_db_connections: None,
    }
}

fn pool(pg: &TestPg, size: u32, min_idle: u32, metrics: &Metrics) -> Arc<BackendPool> {
    let limits = Limits {
        query_wait_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let db = pool_config(pg, size, min_idle);
    let target = Arc::new(plain(pg, SCRAM_USER));
    Arc::new(BackendPool::new(
        &db,
        target,
        &limits,
        metrics.pool("appdb", SCRAM_USER.0),
    ))
}

fn open_idle(pool: &BackendPool) -> (u32, u32) {
    let state = pool.state();
    (state.connections, state.idle)
}

async fn pool_reuse_hand_off_and_limits(pg: &TestPg) {
    let metrics = Metrics::new();
    let pool = pool(pg, 2, 0, &metrics);
    let first = pool.checkout().await.expect("first");
    let second = pool.checkout().await.expect("second");
    assert_ne!(first.conn.id, second.conn.id);
    assert_eq!(open_idle(&pool), (2, 0));

    // Full: a third client waits its turn and gets 53300 when nobody returns one in time.
    let refused = pool.checkout().await.err().expect("pool is full");
    assert_eq!(refused.sqlstate(), "53300");

    // A returned connection goes straight to the waiting client.
    let waiter = tokio::spawn({
        let pool = Arc::clone(&pool);
        async move {
            let checkout = pool.checkout().await?;
            let id = checkout.conn.id;
            checkout.give_back();
            Ok::<_, pgferry::pool::CheckoutError>(id)
        }
    });
    while pool.state().waiting == 0 {
        tokio::task::yield_now().await;
    }
    let first_id = first.conn.id;
    first.give_back();
    assert_eq!(waiter.await.expect("task").expect("handed over"), first_id);
    assert_eq!(open_idle(&pool), (2, 1));

    // A dirty connection is closed, not reused; a clean one is.
    let mut second = second;
    second.conn.mark_dirty();
    second.give_back();
    assert_eq!(open_idle(&pool), (1, 1));
    let again = pool.checkout().await.expect("reuse");
    assert_eq!(again.conn.id, first_id, "a clean connection is reused");

    // Past server_lifetime: closed when given back.
    let mut again = again;
    again.conn.created = Instant::now()
        .checked_sub(Duration::from_secs(3601))
        .expect("clock");
    again.give_back();
    assert_eq!(open_idle(&pool), (0, 0));
}

async fn pool_upkeep_and_connect_errors(pg: &TestPg) {
    let metrics = Metrics::new();
    let pool = pool(pg, 3, 1, &metrics);
    pool.tend().await;
    assert_eq!(open_idle(&pool), (1, 1), "min_pool_size warmed");

    // Three idle connections, two of them idle for an hour: upkeep closes those beyond the
    // warm minimum that idled out, keeping the warmest.
    let lent = [
        pool.checkout().await,
        pool.checkout().await,
        pool.checkout().await,
    ];
    let mut lent: Vec<_> = lent.into_iter().map(|c| c.expect("checkout")).collect();
    let hour_ago = Instant::now()
        .checked_sub(Duration::from_secs(3600))
        .expect("clock");
    for conn in &mut lent[..2] {
        conn.conn.last_used = hour_ago;
    }
    let fresh_id = lent[2].conn.id;
    for conn in lent {
        conn.give_back();
    }
    assert_eq!(open_idle(&pool), (3, 3));
    pool.tend().await;
    assert_eq!(open_idle(&pool), (1, 1));
    let kept = pool.checkout().await.expect("kept");
    assert_eq!(kept.conn.id, fresh_id);
    assert!(metrics.encode().lines().any(|l| l
        .starts_with("pgferry_server_connections_discarded_total")
        && l.contains("reason=\"idle_timeout\"")
        && l.ends_with(" 2")));

    // A down backend: every client asking gets 08006 naming it.
    let mut dead = pool_config(pg, 1, 0);
    dead.port = harness::free_port();
    let mut target = plain(pg, SCRAM_USER);
    target.port = dead.port;
    let dead = BackendPool::new(
        &dead,
        Arc::new(target),
        &Limits::default(),
        metrics.pool("appdb", "x"),
    );
    let (a, b) = tokio::join!(dead.checkout(), dead.checkout());
    for error in [a.err().expect("down"), b.err().expect("down")] {
        assert_eq!(error.sqlstate(), "08006", "{error}");
        assert!(error.to_string().contains("appdb"), "{error}");
    }
    assert_eq!(open_idle(&dead), (0, 0));

    let mut unreachable = plain(pg, SCRAM_USER);
    unreachable.port = harness::free_port();
    let error = ServerConn::connect(&unreachable)
        .await
        .expect_err("nothing listens there");
    assert_eq!(error.sqlstate(), "08006");
}
