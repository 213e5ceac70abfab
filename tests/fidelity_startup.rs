//! Protocol fidelity of the connection opening and of backend login failures (issue 11):
//! startup packets PostgreSQL drops without a word, backend refusals that keep their own
//! SQLSTATE, logins that never finish, startup values that are not UTF-8, and plain-text logs.
//! Real PostgreSQL is the oracle wherever it can be asked the same question.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pgferry::config::{BackendTlsMode, Credential, DatabaseConfig, PoolMode, UserConfig};
use support::probe::{error_code, expect_sqlstate, read_message, wait_for_metric};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MODES: [PoolMode; 2] = [PoolMode::Transaction, PoolMode::Session];
const BAD_STARTUP: &str = "pgferry_client_connections_rejected_total{reason=\"bad_startup\"}";

/// Sends `bytes` (then half-closes if `then_close`) and collects everything the server sends
/// until it closes; a reset after nothing was sent counts as a close with no bytes.
async fn reply_to(addr: SocketAddr, bytes: &[u8], then_close: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    if then_close {
        stream.shutdown().await.expect("half-close");
    }
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
    match read {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => panic!("reading the reply failed: {e}"),
        Err(_) => panic!("the server kept the connection open after {bytes:?}"),
    }
    reply
}

/// Openings PostgreSQL answers by closing the connection without an ErrorResponse.
fn silent_openings() -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut too_long = probe::startup_message(APP_USER, APP_DB);
    too_long.splice(0..4, 10_005i32.to_be_bytes());
    let client_hello = vec![
        0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03,
    ];
    vec![
        ("length below 8", vec![0, 0, 0, 4, 0, 3, 0, 0], false),
        ("length 2", vec![0, 0, 0, 2, 0, 0, 0, 0], false),
        (
            "negative length",
            vec![0xff, 0xff, 0xff, 0xf0, 0, 3, 0, 0],
            false,
        ),
        ("length over 10000", too_long, false),
        (
            "HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        ("TLS ClientHello, TLS off", client_hello, false),
        ("EOF inside the length", vec![0, 0], true),
        (
            "EOF inside the packet",
            vec![0, 0, 0, 40, 0, 3, 0, 0, b'u'],
            true,
        ),
        ("nothing at all", Vec::new(), true),
        (
            "short CancelRequest",
            probe::packet(80_877_102, &[0, 0, 0, 1]),
            false,
        ),
        (
            "long CancelRequest",
            probe::packet(80_877_102, &[0; 12]),
            false,
        ),
    ]
}

#[tokio::test]
async fn packets_postgres_drops_silently_are_dropped_silently_and_counted() {
    let handle = start_proxy(proxy_config(pg())).await;
    let mut rejected = 0.0;
    for (case, bytes, then_close) in silent_openings() {
        let oracle = reply_to(pg().addr(), &bytes, then_close).await;
        assert_eq!(oracle, b"", "PostgreSQL answered {case}");
        let reply = reply_to(handle.client_addr(), &bytes, then_close).await;
        assert_eq!(reply, b"", "pgferry answered {case}");
        // Each is logged and counted as a bad startup, except a connection that sent nothing
        // (health checks do that; PostgreSQL does not log it either).
        if !bytes.is_empty() {
            rejected += 1.0;
        }
        wait_for_metric(&handle, BAD_STARTUP, rejected).await;
    }
}

/// Where PostgreSQL does answer a bad opening, pgferry answers with the same SQLSTATE.
#[tokio::test]
async fn startup_errors_postgres_reports_are_still_reported() {
    let handle = start_proxy(proxy_config(pg())).await;
    let cases = [
        // (Not 2.0: PostgreSQL answers that in the protocol 2 error format.)
        ("protocol 4.0", probe::packet(262_144, b"user\0app\0\0")),
        ("no user", probe::packet(196_608, b"database\0appdb\0\0")),
    ];
    for (case, bytes) in cases {
        let expected = reply_code(pg().addr(), &bytes).await;
        assert_eq!(
            reply_code(handle.client_addr(), &bytes).await,
            expected,
            "{case}"
        );
    }
}

async fn reply_code(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    let (tag, body) = read_message(&mut stream).await.expect("an ErrorResponse");
    assert_eq!(tag, b'E');
    error_code(&body)
}

/// A startup value that is not UTF-8 is refused with a message naming the parameter and the
/// bytes, and PostgreSQL's SQLSTATE for an invalid byte sequence.
#[tokio::test]
async fn startup_values_that_are_not_utf8_are_named_precisely() {
    let handle = start_proxy(proxy_config(pg())).await;
    let body = b"user\0app\0database\0appdb\0application_name\0caf\xe9\0\0";
    let mut stream = TcpStream::connect(handle.client_addr()).await.unwrap();
    stream
        .write_all(&probe::packet(196_608, body))
        .await
        .unwrap();
    let (tag, body) = read_message(&mut stream).await.expect("an ErrorResponse");
    assert_eq!(tag, b'E');
    assert_eq!(error_code(&body), "22021");
    let message = field(&body, b'M');
    assert_eq!(
        message,
        "invalid byte sequence for encoding \"UTF8\" in startup parameter \"application_name\": 0xe9"
    );
}

fn field(body: &[u8], code: u8) -> String {
    body.split(|b| *b == 0)
        .find(|f| f.first() == Some(&code))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_default()
}

/// A dedicated role on the shared server, dropped and recreated by each test that uses it.
async fn create_role(name: &str, password: &str, limit: i32) {
    let admin = pg().superuser_client().await;
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {name}; \
             CREATE ROLE {name} LOGIN PASSWORD '{password}' CONNECTION LIMIT {limit}"
        ))
        .await
        .expect("create role");
}

/// A proxy whose only user is `role`, on database `lim` (the server's `postgres`).
async fn proxy_for_role(role: &str, password: &str, mode: PoolMode) -> pgferry::ProxyHandle {
    let mut config = proxy_config(pg());
    config.users = vec![UserConfig::new(
        role,
        Credential::Plain(password.to_string()),
    )];
    let mut db = DatabaseConfig::new("lim", &pg().host, pg().port);
    db.dbname = "postgres".into();
    db.tls_mode = BackendTlsMode::Disable;
    db.pool_mode = mode;
    db.pool_size = 5;
    db.min_pool_size = 0;
    config.databases = vec![db];
    start_proxy(config).await
}

/// Waits (bounded) until the server runs no backend for `role`: a probe login that just
/// ended may still count against the role's connection limit.
async fn wait_no_backends(role: &str) {
    let admin = pg().superuser_client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                &[&role],
            )
            .await
            .expect("pg_stat_activity");
        if row.get::<_, i64>(0) == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{role} still has backends");
        tokio::task::yield_now().await;
    }
}

/// Logs in a client and makes it hold the pool's only backend connection in a transaction.
async fn holder(
    handle: &pgferry::ProxyHandle,
    role: &str,
    password: &str,
) -> tokio_postgres::Client {
    let holder = connect(handle.client_addr(), role, password, "lim")
        .await
        .expect("first login");
    holder.batch_execute("BEGIN").await.expect("BEGIN");
    holder
}

/// What a second client gets when it needs a new backend connection: pgferry authenticates it
/// itself, so the backend's refusal arrives with its first query (or, in session mode, where
/// the backend is taken right after the login, as soon as that fails).
async fn newcomer_result(
    handle: &pgferry::ProxyHandle,
    role: &str,
    password: &str,
) -> Result<(), tokio_postgres::Error> {
    let newcomer = connect(handle.client_addr(), role, password, "lim").await?;
    newcomer.simple_query("SELECT 1").await.map(drop)
}

#[tokio::test]
async fn backend_too_many_connections_for_role_reaches_the_client_as_53300() {
    for mode in MODES {
        let role = format!("fid_limited_{mode:?}").to_lowercase();
        create_role(&role, "limited-pw", 1).await;
        let handle = proxy_for_role(&role, "limited-pw", mode).await;
        wait_no_backends(&role).await;
        let holder = holder(&handle, &role, "limited-pw").await;
        let direct = connect(pg().addr(), &role, "limited-pw", "postgres").await;
        let oracle = expect_sqlstate(direct, "53300");
        let result = newcomer_result(&handle, &role, "limited-pw").await;
        let message = expect_sqlstate(result, "53300");
        assert!(message.contains(&oracle), "{mode:?}: {message}");
        assert!(message.contains("\"lim\""), "names the backend: {message}");
        holder
            .batch_execute("COMMIT")
            .await
            .expect("holder unaffected");
    }
}

#[tokio::test]
async fn backend_refusing_the_password_reaches_the_client_as_28p01() {
    for mode in MODES {
        let role = format!("fid_repassword_{mode:?}").to_lowercase();
        create_role(&role, "first-pw", -1).await;
        let handle = proxy_for_role(&role, "first-pw", mode).await;
        let holder = holder(&handle, &role, "first-pw").await;
        let admin = pg().superuser_client().await;
        admin
            .batch_execute(&format!("ALTER ROLE {role} PASSWORD 'second-pw'"))
            .await
            .unwrap();
        let direct = connect(pg().addr(), &role, "first-pw", "postgres").await;
        let oracle = expect_sqlstate(direct, "28P01");
        let result = newcomer_result(&handle, &role, "first-pw").await;
        let message = expect_sqlstate(result, "28P01");
        assert!(message.contains(&oracle), "{mode:?}: {message}");
        holder
            .batch_execute("COMMIT")
            .await
            .expect("holder unaffected");
    }
}

/// Human-format logs written to a pipe carry no ANSI escape codes.
#[test]
fn logs_to_a_pipe_are_plain_text() {
    use std::io::BufRead;
    let backend = format!(
        "postgres://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{}/{APP_DB}?sslmode=disable",
        pg().port
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["--backend", &backend, "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "off", "--log-format", "human"])
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pgferry");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(stderr);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            if tx.send(std::mem::take(&mut line)).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let listening = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.extend_from_slice(&line);
                if String::from_utf8_lossy(&line).contains("pgferry listening") {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(listening, "no 'pgferry listening' line:\n{text}");
    assert!(
        !seen.contains(&0x1b),
        "ANSI escape codes in piped logs:\n{text:?}"
    );
}

/// A server that accepts TCP connections and never answers: a hung backend.
fn black_hole() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the black hole");
    let port = listener.local_addr().expect("its address").port();
    (listener, port)
}

fn server_connections(state: &str) -> String {
    format!(
        "pgferry_server_connections{{database=\"{APP_DB}\",state=\"{state}\",user=\"{APP_USER}\"}}"
    )
}

const BACKEND_UP: &str = "pgferry_backend_up{database=\"appdb\"}";

#[tokio::test]
async fn logins_a_backend_never_completes_are_opening_not_active_and_not_ready() {
    let (_listener, port) = black_hole();
    for mode in MODES {
        let mut config = proxy_config(pg());
        config.databases[0].port = port;
        config.databases[0].pool_mode = mode;
        config.databases[0].connect_timeout = Duration::from_secs(3);
        let handle = start_proxy(config).await;
        let text = handle.metrics().encode();
        assert_eq!(
            probe::metric(&text, BACKEND_UP),
            0.0,
            "{mode:?}: TCP accepted, login never done"
        );
        let metrics_addr = handle.metrics_addr().expect("metrics enabled");
        assert_eq!(
            probe::http_get(metrics_addr, "/readyz").await.0,
            503,
            "{mode:?}"
        );
        let addr = handle.client_addr();
        let client =
            tokio::spawn(async move { connect(addr, APP_USER, APP_PASSWORD, APP_DB).await });
        wait_for_metric(&handle, &server_connections("opening"), 1.0).await;
        let text = handle.metrics().encode();
        assert_eq!(
            probe::metric(&text, &server_connections("active")),
            0.0,
            "{mode:?}"
        );
        assert_eq!(
            probe::metric(&text, &server_connections("idle")),
            0.0,
            "{mode:?}"
        );
        let message = expect_sqlstate(client.await.expect("client task"), "08006");
        assert!(message.contains("did not answer"), "{mode:?}: {message}");
        wait_for_metric(&handle, &server_connections("opening"), 0.0).await;
    }
}

#[tokio::test]
async fn a_backend_refusing_pgferrys_login_is_down_and_not_ready() {
    for mode in MODES {
        let mut config = proxy_config(pg());
        config.databases[0].pool_mode = mode;
        config.databases[0].backend_user = Some(APP_USER.to_string());
        config.databases[0].backend_password = Some("not-the-password".to_string());
        let handle = start_proxy(config).await;
        let text = handle.metrics().encode();
        assert_eq!(
            probe::metric(&text, BACKEND_UP),
            0.0,
            "{mode:?}: TCP works, login does not"
        );
        let metrics_addr = handle.metrics_addr().expect("metrics enabled");
        assert_eq!(
            probe::http_get(metrics_addr, "/readyz").await.0,
            503,
            "{mode:?}"
        );
        let result = connect(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await;
        let message = expect_sqlstate(result, "28P01");
        assert!(message.contains("backend \"appdb\""), "{mode:?}: {message}");
    }
}

#[tokio::test]
async fn a_backend_serving_logins_is_up_and_ready() {
    let handle = start_proxy(proxy_config(pg())).await;
    assert_eq!(probe::metric(&handle.metrics().encode(), BACKEND_UP), 1.0);
    let metrics_addr = handle.metrics_addr().expect("metrics enabled");
    assert_eq!(probe::http_get(metrics_addr, "/readyz").await.0, 200);
}

/// A proxy in `mode` for the private server, clients `app` logging in to it as its superuser.
async fn proxy_for_private(
    server: &support::private_pg::PrivatePg,
    mode: PoolMode,
) -> pgferry::ProxyHandle {
    let mut config = proxy_config(pg());
    let db = &mut config.databases[0];
    db.port = server.port;
    db.dbname = "postgres".into();
    db.pool_mode = mode;
    db.backend_user = Some(support::private_pg::PRIVATE_SUPERUSER.into());
    db.backend_password = Some("unused: trust".into());
    start_proxy(config).await
}

/// What a direct login to the private server gets once its shutdown is under way (bounded).
async fn wait_for_login_refusal(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let direct = connect(
            addr,
            support::private_pg::PRIVATE_SUPERUSER,
            "x",
            "postgres",
        )
        .await;
        if let Err(error) = &direct {
            if probe::sqlstate(error).as_deref() == Some("57P03") {
                return expect_sqlstate(direct, "57P03");
            }
        }
        assert!(
            Instant::now() < deadline,
            "the server never refused logins: {direct:?}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn backend_refusing_logins_while_shutting_down_reaches_the_client_as_57p03() {
    let server = support::private_pg::PrivatePg::launch("shutdown").expect("private server");
    let mut proxies = Vec::new();
    for mode in MODES {
        let handle = proxy_for_private(&server, mode).await;
        let holder = app_client(&handle).await;
        holder.batch_execute("BEGIN").await.expect("BEGIN");
        proxies.push((mode, handle, holder));
    }
    server.begin_smart_shutdown().expect("smart shutdown");
    let oracle = wait_for_login_refusal(server.addr()).await;
    for (mode, handle, holder) in &proxies {
        let result = async {
            let newcomer = connect(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await?;
            newcomer.simple_query("SELECT 1").await.map(drop)
        }
        .await;
        let message = expect_sqlstate(result, "57P03");
        assert!(message.contains(&oracle), "{mode:?}: {message}");
        assert!(message.contains("backend \"appdb\""), "{mode:?}: {message}");
        holder
            .batch_execute("SELECT 1")
            .await
            .expect("the holder's session goes on");
    }
    server.stop_now().expect("stop the private server");
}
