//! Live reload against a real PostgreSQL: a new configuration file applied under load without
//! a single client error, a rejected file that changes nothing, removed databases, changed
//! backend logins, and SIGHUP to the real binary.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgferry::config::Config;
use pgferry::reload::{ReloadError, Reloader};
use pgferry::ProxyHandle;
use support::probe::metric;
use support::{connect, pg, APP_DB, APP_PASSWORD, APP_USER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A per-test directory for the configuration file and certificates.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pgferry-reload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// What varies between the configuration files of these tests.
#[derive(Clone)]
struct Setup {
    svc_password: &'static str,
    pool_size: u32,
    /// `[tls]` section lines (mode, cert_file, key_file).
    tls: String,
    /// Extra `[[databases]]` blocks and other trailing text.
    extra: String,
    dbname: &'static str,
    pool_mode: &'static str,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            svc_password: "svc-one",
            pool_size: 5,
            tls: "mode = \"disable\"".into(),
            extra: String::new(),
            dbname: APP_DB,
            pool_mode: "transaction",
        }
    }
}

/// A pgferry.toml: user `svc` (a microservice's role) reaches `appdb` through the backend
/// login app/app-secret; metrics off; listener on an ephemeral loopback port.
fn config_text(setup: &Setup) -> String {
    let pg = pg();
    format!(
        r#"[listen]
addr = "127.0.0.1:0"
[metrics]
listen = "off"
[tls]
{tls}
[limits]
query_wait_timeout = "20s"

[[users]]
name = "svc"
password = "{password}"

[[databases]]
name = "{APP_DB}"
host = "{host}"
port = {port}
dbname = "{dbname}"
backend_user = "{APP_USER}"
backend_password = "{APP_PASSWORD}"
pool_mode = "{mode}"
pool_size = {size}
tls_mode = "disable"
{extra}
"#,
        tls = setup.tls,
        password = setup.svc_password,
        host = pg.host,
        port = pg.port,
        dbname = setup.dbname,
        mode = setup.pool_mode,
        size = setup.pool_size,
        extra = setup.extra,
    )
}

fn write_config(path: &Path, setup: &Setup) {
    std::fs::write(path, config_text(setup)).expect("write pgferry.toml");
}

/// Starts an in-process proxy that reloads from `path`.
async fn start_from_file(path: &Path) -> ProxyHandle {
    let config = Config::from_file(path).unwrap_or_else(|e| panic!("config: {e}"));
    match pgferry::Proxy::start_with(config, Reloader::from_file(path)).await {
        Ok(handle) => handle,
        Err(e) => panic!("proxy failed to start: {e}"),
    }
}

async fn svc_client(
    handle: &ProxyHandle,
    password: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect(handle.client_addr(), "svc", password, db).await
}

/// A client whose connection task is handed back: its result carries a FATAL the proxy sends
/// while the client is not waiting for a reply.
async fn svc_client_watched(
    handle: &ProxyHandle,
    db: &str,
) -> (
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let text = support::conn_string(handle.client_addr(), "svc", "svc-one", db, "disable");
    let (client, connection) = tokio_postgres::connect(&text, tokio_postgres::NoTls)
        .await
        .expect("login");
    (client, tokio::spawn(connection))
}

fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(|c| c.code())
}

/// Clients that run transactions until stopped, counting them and keeping every error.
struct Load {
    done: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(handle: &ProxyHandle, clients: usize) -> Load {
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for i in 0..clients {
            let client = svc_client(handle, "svc-one", APP_DB)
                .await
                .unwrap_or_else(|e| panic!("client {i} login: {e}"));
            let (done, errors, stop) = (done.clone(), errors.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let sql = if i % 2 == 0 {
                        "SELECT 1"
                    } else {
                        "BEGIN; SELECT count(*) FROM pg_class; COMMIT"
                    };
                    match client.simple_query(sql).await {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            errors
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(e.to_string());
                            return;
                        }
                    };
                }
            }));
        }
        Load {
            done,
            errors,
            stop,
            tasks,
        }
    }

    /// Waits (bounded) until the clients have run `more` further transactions.
    async fn progress(&self, more: u64) {
        let target = self.done.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.done.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < deadline,
                "load stalled: {:?}",
                self.errors()
            );
            assert!(
                self.errors().is_empty(),
                "client errors: {:?}",
                self.errors()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The certificate a new TLS handshake (SSLRequest, then TLS) is shown.
async fn presented_certificate(handle: &ProxyHandle, ca: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = tokio::net::TcpStream::connect(handle.client_addr())
        .await
        .expect("connect");
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .expect("SSLRequest");
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .expect("SSLRequest answer");
    assert_eq!(&answer, b"S");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("server name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let certs = tls.get_ref().1.peer_certificates().expect("a certificate");
    certs[0].as_ref().to_vec()
}

fn certificate_der(path: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(path)
        .expect("certificate PEM")
        .as_ref()
        .to_vec()
}

fn tls_section(files: &support::CertFiles) -> String {
    format!(
        "mode = \"allow\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
        files.cert.display(),
        files.key.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_changes_pool_size_password_and_certificate_without_a_client_error() {
    let dir = test_dir("load");
    let first = support::write_localhost_cert(&dir, "first").expect("first cert");
    let second = support::write_localhost_cert(&dir, "second").expect("second cert");
    let path = dir.join("pgferry.toml");
    let before = Setup {
        tls: tls_section(&first),
        ..Setup::default()
    };
    write_config(&path, &before);
    let handle = start_from_file(&path).await;
    let pool = format!("{{database=\"{APP_DB}\",user=\"{APP_USER}\"}}");
    let max = format!("pgferry_pool_max_connections{pool}");
    assert_eq!(
        presented_certificate(&handle, &first.ca).await,
        certificate_der(&first.cert)
    );
    let load = Load::start(&handle, 50).await;
    load.progress(300).await;

    let after = Setup {
        svc_password: "svc-two",
        pool_size: 8,
        tls: tls_section(&second),
        ..Setup::default()
    };
    write_config(&path, &after);
    let summary = handle
        .reload()
        .await
        .unwrap_or_else(|e| panic!("reload: {e}"));
    assert!(summary.pools.reconnecting.is_empty(), "{summary:?}");
    assert_eq!(metric(&handle.metrics().encode(), &max), 8.0);
    load.progress(300).await;

    // New logins use the new password; sessions that logged in with the old one go on.
    let refused = svc_client(&handle, "svc-one", APP_DB).await.err();
    assert_eq!(
        refused.as_ref().and_then(sqlstate),
        Some("28P01"),
        "{refused:?}"
    );
    let fresh = svc_client(&handle, "svc-two", APP_DB)
        .await
        .expect("new password");
    fresh.simple_query("SELECT 1").await.expect("query");
    // A new handshake is shown the new certificate.
    assert_eq!(
        presented_certificate(&handle, &second.ca).await,
        certificate_der(&second.cert)
    );
    load.progress(100).await;

    let errors = load.finish().await;
    assert!(errors.is_empty(), "client errors during reload: {errors:?}");
    let text = handle.metrics().encode();
    assert_eq!(
        metric(&text, "pgferry_config_reloads_total{result=\"ok\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "pgferry_config_reloads_total{result=\"error\"}"),
        0.0
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn an_invalid_file_is_rejected_whole_and_the_running_configuration_stays() {
    let dir = test_dir("invalid");
    let path = dir.join("pgferry.toml");
    write_config(&path, &Setup::default());
    let handle = start_from_file(&path).await;
    let client = svc_client(&handle, "svc-one", APP_DB).await.expect("login");
    let success = "pgferry_config_last_reload_success_timestamp_seconds";
    let started = metric(&handle.metrics().encode(), success);
    assert!(
        started > 0.0,
        "start-up counts as the first successful load"
    );

    // A bad value: the same precise error as at start-up (file, key, reason).
    let bad_value = Setup {
        svc_password: "svc-two",
        pool_size: 0,
        ..Setup::default()
    };
    write_config(&path, &bad_value);
    let error = handle.reload().await.expect_err("rejected");
    let message = error.to_string();
    assert!(matches!(error, ReloadError::Config(_)), "{error:?}");
    assert!(message.contains("pgferry.toml"), "{message}");
    assert!(message.contains("databases[0].pool_size"), "{message}");

    // Valid TOML whose certificate cannot be loaded: nothing of it applies, not even the
    // password change that came with it.
    let missing_cert = Setup {
        svc_password: "svc-two",
        tls: "mode = \"allow\"\ncert_file = \"/nonexistent/c.pem\"\nkey_file = \"/nonexistent/k.pem\"".into(),
        ..Setup::default()
    };
    write_config(&path, &missing_cert);
    let error = handle.reload().await.expect_err("rejected");
    assert!(error.to_string().contains("/nonexistent/c.pem"), "{error}");

    let text = handle.metrics().encode();
    assert_eq!(
        metric(&text, "pgferry_config_reloads_total{result=\"error\"}"),
        2.0
    );
    assert_eq!(
        metric(&text, "pgferry_config_reloads_total{result=\"ok\"}"),
        0.0
    );
    assert_eq!(metric(&text, success), started);
    // The running configuration serves on: the old password, the old pool.
    client
        .simple_query("SELECT 1")
        .await
        .expect("existing client");
    let refused = svc_client(&handle, "svc-two", APP_DB).await.err();
    assert_eq!(
        refused.as_ref().and_then(sqlstate),
        Some("28P01"),
        "{refused:?}"
    );
    svc_client(&handle, "svc-one", APP_DB)
        .await
        .expect("old password still works");
    assert_eq!(
        metric(
            &text,
            &format!("pgferry_pool_max_connections{{database=\"{APP_DB}\",user=\"{APP_USER}\"}}")
        ),
        5.0
    );
    handle.shutdown().await;
}

/// A second database, `extra`, on the same server.
fn extra_database(mode: &str) -> String {
    let pg = pg();
    format!(
        "[[databases]]\nname = \"extra\"\nhost = \"{}\"\nport = {}\ndbname = \"{APP_DB}\"\n\
         backend_user = \"{APP_USER}\"\nbackend_password = \"{APP_PASSWORD}\"\n\
         pool_mode = \"{mode}\"\npool_size = 2\ntls_mode = \"disable\"\n",
        pg.host, pg.port
    )
}

/// The session ends (without the client asking anything) with 57P01 naming the database.
async fn assert_ended_as_removed(
    connection: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the session ends")
        .expect("connection task")
        .err();
    assert_eq!(
        ended.as_ref().and_then(sqlstate),
        Some("57P01"),
        "{ended:?}"
    );
    let message = ended
        .as_ref()
        .and_then(|e| e.as_db_error())
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(
        message.contains("\"extra\" was removed from pgferry's configuration"),
        "{message}"
    );
}

async fn removed_database_ends_its_clients_after_their_transaction(mode: &'static str) {
    let dir = test_dir(&format!("removed-{mode}"));
    let path = dir.join("pgferry.toml");
    let with_extra = Setup {
        extra: extra_database(mode),
        pool_mode: mode,
        ..Setup::default()
    };
    write_config(&path, &with_extra);
    let handle = start_from_file(&path).await;
    let (inside, inside_connection) = svc_client_watched(&handle, "extra").await;
    let (idle, idle_connection) = svc_client_watched(&handle, "extra").await;
    idle.simple_query("SELECT 1").await.expect("query");
    let other_db = svc_client(&handle, "svc-one", APP_DB).await.expect("login");
    inside.simple_query("BEGIN").await.expect("begin");
    inside
        .simple_query("SELECT 1")
        .await
        .expect("in transaction");

    write_config(
        &path,
        &Setup {
            pool_mode: mode,
            ..Setup::default()
        },
    );
    let summary = handle
        .reload()
        .await
        .unwrap_or_else(|e| panic!("reload: {e}"));
    assert_eq!(summary.pools.removed, [format!("extra/{APP_USER}")]);

    // An idle client is told at once; the transaction in progress finishes first (in session
    // mode its backend must then go back).
    assert_ended_as_removed(idle_connection).await;
    inside
        .simple_query("SELECT 2")
        .await
        .expect("still in its transaction");
    inside.simple_query("COMMIT").await.expect("commit");
    assert_ended_as_removed(inside_connection).await;
    // The database is gone for new clients; the other one is untouched.
    let refused = svc_client(&handle, "svc-one", "extra").await.err();
    assert_eq!(
        refused.as_ref().and_then(sqlstate),
        Some("3D000"),
        "{refused:?}"
    );
    other_db
        .simple_query("SELECT 1")
        .await
        .expect("other database");
    handle.shutdown().await;
}

#[tokio::test]
async fn a_removed_database_ends_its_clients_after_their_transaction_transaction_mode() {
    removed_database_ends_its_clients_after_their_transaction("transaction").await;
}

#[tokio::test]
async fn a_removed_database_ends_its_clients_after_their_transaction_session_mode() {
    removed_database_ends_its_clients_after_their_transaction("session").await;
}

async fn backend_pid_and_database(client: &tokio_postgres::Client) -> (String, String) {
    let rows = client
        .simple_query("SELECT pg_backend_pid()::text, current_database()::text")
        .await
        .expect("query");
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .expect("a row");
    (
        row.get(0).unwrap_or_default().to_string(),
        row.get(1).unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_changed_backend_target_reconnects_when_released_never_mid_transaction() {
    let dir = test_dir("target");
    let path = dir.join("pgferry.toml");
    write_config(&path, &Setup::default());
    let handle = start_from_file(&path).await;
    let client = svc_client(&handle, "svc-one", APP_DB).await.expect("login");
    client.simple_query("BEGIN").await.expect("begin");
    let (pid, database) = backend_pid_and_database(&client).await;
    assert_eq!(database, APP_DB);

    write_config(
        &path,
        &Setup {
            dbname: "postgres",
            ..Setup::default()
        },
    );
    let summary = handle
        .reload()
        .await
        .unwrap_or_else(|e| panic!("reload: {e}"));
    assert_eq!(summary.pools.reconnecting, [format!("{APP_DB}/{APP_USER}")]);
    // Mid-transaction the client keeps its backend.
    assert_eq!(
        backend_pid_and_database(&client).await,
        (pid.clone(), database)
    );
    client.simple_query("COMMIT").await.expect("commit");
    // Released, that connection was closed; the next transaction logs in to the new target.
    let (new_pid, new_database) = backend_pid_and_database(&client).await;
    assert_ne!(new_pid, pid);
    assert_eq!(new_database, "postgres");
    handle.shutdown().await;
}

#[tokio::test]
async fn a_raised_client_limit_admits_more_clients_at_once() {
    let dir = test_dir("limit");
    let path = dir.join("pgferry.toml");
    let limited = |n: u32| Setup::default().with_limit(n);
    std::fs::write(&path, limited(1)).expect("write");
    let handle = start_from_file(&path).await;
    let first = svc_client(&handle, "svc-one", APP_DB).await.expect("first");
    let refused = svc_client(&handle, "svc-one", APP_DB).await.err();
    assert_eq!(
        refused.as_ref().and_then(sqlstate),
        Some("53300"),
        "{refused:?}"
    );
    std::fs::write(&path, limited(2)).expect("write");
    handle
        .reload()
        .await
        .unwrap_or_else(|e| panic!("reload: {e}"));
    let second = svc_client(&handle, "svc-one", APP_DB)
        .await
        .expect("admitted after reload");
    second.simple_query("SELECT 1").await.expect("query");
    first.simple_query("SELECT 1").await.expect("query");
    handle.shutdown().await;
}

impl Setup {
    /// The file text with `limits.max_client_connections = n`.
    fn with_limit(&self, n: u32) -> String {
        config_text(self).replace(
            "[limits]\n",
            &format!("[limits]\nmax_client_connections = {n}\n"),
        )
    }
}

/// The binary reloads on SIGHUP: a user added to the file can log in, the new log level
/// applies, and a changed listen address is reported as needing a restart.
#[test]
fn sighup_reloads_the_binary_and_reports_restart_only_settings() {
    let dir = test_dir("sighup");
    let path = dir.join("pgferry.toml");
    write_config(&path, &Setup::default());
    let mut pgferry = support::binary::Pgferry::spawn(["--config", path.to_str().expect("utf-8")]);
    let addr = pgferry.client_addr();

    let changed = config_text(&Setup::default())
        .replace("addr = \"127.0.0.1:0\"", "addr = \"127.0.0.1:1\"")
        + "[log]\nlevel = \"debug\"\n[[users]]\nname = \"added\"\npassword = \"added-secret\"\n";
    std::fs::write(&path, changed).expect("write");
    pgferry.signal("-HUP");
    pgferry.wait_for_line("configuration reloaded");
    let restart = pgferry.wait_for_line("only takes effect after a restart");
    assert!(restart.contains("listen.addr"), "{restart}");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = connect(addr, "added", "added-secret", APP_DB)
            .await
            .expect("the added user logs in on the old address");
        client.simple_query("SELECT 1").await.expect("query");
    });
    // The debug level now applies: the login above is logged at DEBUG.
    pgferry.wait_for_line("client logged in");
}

/// An `ops` console user, appended to the file.
const OPS: &str =
    "[[users]]\nname = \"ops\"\npassword = \"ops-secret\"\n[admin]\nusers = [\"ops\"]\n";

/// RELOAD on the console: a pool mode change applies to new sessions, while a session that
/// logged in before keeps its rules; a rejected file answers F0000 with the file's error.
#[tokio::test]
async fn reload_on_the_console_changes_the_pool_mode_for_new_sessions_only() {
    use support::console::ConsoleClient;
    let dir = test_dir("console");
    let path = dir.join("pgferry.toml");
    let mode = |pool_mode| Setup {
        pool_mode,
        extra: OPS.into(),
        ..Setup::default()
    };
    write_config(&path, &mode("transaction"));
    let handle = start_from_file(&path).await;
    let before = svc_client(&handle, "svc-one", APP_DB).await.expect("login");
    before.simple_query("SELECT 1").await.expect("query");

    write_config(&path, &mode("session"));
    let mut ops = ConsoleClient::login(handle.client_addr(), "ops", "ops-secret", "pgferry").await;
    let reply = ops.query("RELOAD").await;
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    assert_eq!(reply.tags, ["RELOAD"]);

    // The new session holds its backend while idle; the old one still gives its back.
    let after = svc_client(&handle, "svc-one", APP_DB).await.expect("login");
    after.simple_query("SELECT 1").await.expect("query");
    before.simple_query("SELECT 1").await.expect("query");
    let servers = |state: &str| {
        format!("pgferry_server_connections{{database=\"{APP_DB}\",state=\"{state}\",user=\"{APP_USER}\"}}")
    };
    support::probe::wait_for_metric(&handle, &servers("active"), 1.0).await;
    support::probe::wait_for_metric(&handle, &servers("idle"), 1.0).await;

    std::fs::write(
        &path,
        config_text(&mode("session")) + "[limits]\nbogus = 1\n",
    )
    .expect("write");
    let reply = ops.query("RELOAD").await;
    assert_eq!(reply.error_code(), "F0000");
    let message = &reply.errors[0].1;
    assert!(message.contains("pgferry.toml"), "{message}");
    assert!(message.contains("running configuration stays"), "{message}");
    after.simple_query("SELECT 1").await.expect("still served");
    handle.shutdown().await;
}
