//! Backend connections against a real PostgreSQL: TLS modes, auth methods, login errors,
//! cancel, and the bb8 manager. One cluster serves every step; it stops even on failure.

#[path = "backend_conn/harness.rs"]
mod harness;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bb8::ManageConnection;
use bytes::BytesMut;
use harness::{TestPg, CLEAR_USER, MD5_USER, SCRAM_USER};
use pgferry::config::BackendTlsMode;
use pgferry::server::wire::ErrorFields;
use pgferry::server::{send_cancel, BackendTarget, ServerConn, ServerError, ServerManager};
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
    manager_and_pool(&pg).await;
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

async fn manager_and_pool(pg: &TestPg) {
    let manager = ServerManager::new(Arc::new(plain(pg, SCRAM_USER)));
    assert_eq!(manager.target().user, SCRAM_USER.0);

    // Health check only after 30 s idle; a stale-but-live connection passes and is refreshed.
    let mut conn = manager.connect().await.expect("manager connect");
    assert!(manager.is_valid(&mut conn).await.is_ok());
    conn.last_used = Instant::now()
        .checked_sub(Duration::from_secs(31))
        .expect("clock");
    assert!(manager.is_valid(&mut conn).await.is_ok());
    assert!(conn.last_used.elapsed() < Duration::from_secs(5));
    assert!(!manager.has_broken(&mut conn));
    conn.mark_dirty();
    assert!(manager.has_broken(&mut conn));
    assert!(manager.is_valid(&mut conn).await.is_err());

    let pool = bb8::Pool::builder()
        .max_size(2)
        .retry_connection(false)
        .connection_timeout(TIMEOUT)
        .build(manager)
        .await
        .expect("pool");
    let first = pool.get().await.expect("first");
    let mut second = pool.get().await.expect("second");
    assert_ne!(first.id, second.id);
    let first_id = first.id;
    drop(first);
    let again = pool.get().await.expect("reuse");
    assert_eq!(again.id, first_id, "a clean connection is reused");
    drop(again);
    second.mark_dirty();
    drop(second);
    let state = pool.state();
    assert_eq!(state.connections, 1, "the dirty connection was dropped");
    assert_eq!(state.statistics.connections_closed_broken, 1);

    let mut dead = plain(pg, SCRAM_USER);
    dead.port = harness::free_port();
    let dead_manager = ServerManager::new(Arc::new(dead));
    let error = dead_manager
        .connect()
        .await
        .expect_err("nothing listens there");
    assert_eq!(error.sqlstate(), "08006");
}
