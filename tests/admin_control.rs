//! The admin console's control commands against a real PostgreSQL: PAUSE / RESUME under
//! load, RECONNECT and WAIT_CLOSE, KILL, KILL_CLIENT (parked clients too), SHUTDOWN modes,
//! and the precise errors of commands that cannot apply.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgferry::control::ShutdownMode;
use support::console::*;
use support::probe::*;
use support::*;

const POOL: &str = "{database=\"appdb\",user=\"app\"}";

fn series(name: &str) -> String {
    format!("{name}{POOL}")
}

/// The server connections of the app pool in `state` (labels print in name order).
fn servers(state: &str) -> String {
    format!("pgferry_server_connections{{database=\"appdb\",state=\"{state}\",user=\"app\"}}")
}

fn value(handle: &pgferry::ProxyHandle, series: &str) -> f64 {
    metric(&handle.metrics().encode(), series)
}

async fn console(handle: &pgferry::ProxyHandle) -> ConsoleClient {
    ConsoleClient::login(handle.client_addr(), OPS_USER, OPS_PASSWORD, "pgbouncer").await
}

/// A pool client through the raw console client (it keeps the welcome, BackendKeyData too).
async fn app_raw(handle: &pgferry::ProxyHandle) -> ConsoleClient {
    ConsoleClient::login(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await
}

/// The process id pgferry gave a client in BackendKeyData (KILL_CLIENT's id).
fn client_id(client: &ConsoleClient) -> i32 {
    let (_, body) = client
        .welcome
        .iter()
        .find(|(tag, _)| *tag == b'K')
        .expect("BackendKeyData in the welcome");
    i32::from_be_bytes([body[0], body[1], body[2], body[3]])
}

/// Reads what the proxy sends a client it ends: one FATAL, then end of stream.
async fn expect_fatal(client: &mut ConsoleClient, code: &str, words: &str) {
    let (tag, body) =
        tokio::time::timeout(Duration::from_secs(10), read_message(&mut client.stream))
            .await
            .expect("the proxy ends the client within 10 s")
            .expect("a message before the connection closes");
    assert_eq!(tag, b'E', "expected a FATAL ErrorResponse");
    assert_eq!(error_code(&body), code);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("FATAL"), "{text}");
    assert!(text.contains(words), "{text}");
    assert!(
        read_message(&mut client.stream).await.is_none(),
        "the connection closes after the FATAL"
    );
}

fn assert_ok(reply: &Reply, tag: &str) {
    assert!(reply.errors.is_empty(), "{tag}: {:?}", reply.errors);
    assert_eq!(reply.tags, [tag]);
}

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    let row = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pg_backend_pid");
    row.get(0)
}

/// Waits (bounded) until `condition` holds, yielding between checks.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn pause_under_load_holds_new_transactions_without_errors_until_resume() {
    let mut config = console_config(pg());
    config.limits.query_wait_timeout = Duration::from_secs(60);
    let handle = start_proxy(config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..20 {
        let client = app_client(&handle).await;
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                client.batch_execute("BEGIN; SELECT 1; COMMIT").await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), tokio_postgres::Error>(())
        }));
    }
    until("transactions flowing", || {
        done.load(Ordering::Relaxed) > 200
    })
    .await;

    let mut ops = console(&handle).await;
    assert_ok(&ops.query("PAUSE appdb").await, "PAUSE");
    // Complete means every backend is back: none is active, all stay open.
    assert_eq!(value(&handle, &servers("active")), 0.0);
    assert!(value(&handle, &servers("idle")) > 0.0, "backends stay open");
    assert_eq!(value(&handle, "pgferry_paused{database=\"appdb\"}"), 1.0);
    wait_for_metric(&handle, &series("pgferry_pool_waiting_clients"), 20.0).await;
    let held_at = value(&handle, &series("pgferry_transactions_total"));
    let finished = done.load(Ordering::Relaxed);
    // Every worker is waiting for a backend, so nothing can have moved since.
    assert_eq!(
        value(&handle, &series("pgferry_transactions_total")),
        held_at
    );
    assert_eq!(done.load(Ordering::Relaxed), finished);
    assert!(workers.iter().all(|w| !w.is_finished()), "no worker failed");

    assert_ok(&ops.query("RESUME appdb").await, "RESUME");
    assert_eq!(value(&handle, "pgferry_paused{database=\"appdb\"}"), 0.0);
    until("transactions flowing again", || {
        done.load(Ordering::Relaxed) > finished + 200
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker
            .await
            .expect("worker")
            .expect("no client saw an error");
    }
    let errors = metric(
        &handle.metrics().encode(),
        "pgferry_errors_total{class=\"53\"}",
    ) + metric(
        &handle.metrics().encode(),
        "pgferry_errors_total{class=\"57\"}",
    );
    assert_eq!(errors, 0.0);
}

#[tokio::test]
async fn pause_completes_only_after_the_open_transaction_ends() {
    let handle = start_proxy(console_config(pg())).await;
    let inside = app_client(&handle).await;
    inside.batch_execute("BEGIN").await.unwrap();
    let pid = backend_pid(&inside).await;
    let pausing = tokio::spawn({
        let addr = handle.client_addr();
        async move {
            let mut ops = ConsoleClient::login(addr, OPS_USER, OPS_PASSWORD, "pgferry").await;
            ops.query("PAUSE").await
        }
    });
    wait_for_metric(&handle, "pgferry_paused{database=\"appdb\"}", 1.0).await;
    // The running transaction goes on, on its own backend, while PAUSE waits for it.
    assert_eq!(backend_pid(&inside).await, pid);
    assert!(!pausing.is_finished(), "PAUSE waits for the transaction");
    inside.batch_execute("COMMIT").await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), pausing)
        .await
        .expect("PAUSE completes once the transaction ended")
        .expect("console task");
    assert_ok(&reply, "PAUSE");
    // Its next transaction waits until RESUME.
    let next = tokio::spawn(async move { backend_pid(&inside).await });
    wait_for_metric(&handle, &series("pgferry_pool_waiting_clients"), 1.0).await;
    assert_ok(&console(&handle).await.query("RESUME").await, "RESUME");
    tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("the held transaction runs after RESUME")
        .expect("client task");
}

/// A RESUME while a PAUSE still waits for its transactions ends that PAUSE with an error
/// (nothing is paused any more), so a forgotten PAUSE never waits forever.
#[tokio::test]
async fn resume_ends_a_pause_that_is_still_waiting() {
    let handle = start_proxy(console_config(pg())).await;
    let inside = app_client(&handle).await;
    inside.batch_execute("BEGIN").await.unwrap();
    let pausing = tokio::spawn({
        let addr = handle.client_addr();
        async move {
            let mut ops = ConsoleClient::login(addr, OPS_USER, OPS_PASSWORD, "pgbouncer").await;
            ops.query("PAUSE appdb").await
        }
    });
    wait_for_metric(&handle, "pgferry_paused{database=\"appdb\"}", 1.0).await;
    assert_ok(
        &console(&handle).await.query("RESUME appdb").await,
        "RESUME",
    );
    let reply = tokio::time::timeout(Duration::from_secs(10), pausing)
        .await
        .expect("the PAUSE returns")
        .expect("console task");
    assert_eq!(reply.error_code(), "55000");
    assert!(reply.errors[0].1.contains("ended by RESUME"), "{reply:?}");
    inside
        .batch_execute("COMMIT")
        .await
        .expect("the transaction went on");
}

/// Session mode (and a pinned client) holds its backend for the whole session: as in
/// PgBouncer, PAUSE completes only once such clients have disconnected; until then they go
/// on working on their own backend.
#[tokio::test]
async fn pause_waits_for_session_mode_clients_to_leave() {
    let mut config = console_config(pg());
    config.databases[0].pool_mode = pgferry::config::PoolMode::Session;
    let handle = start_proxy(config).await;
    let session = app_client(&handle).await;
    let pid = backend_pid(&session).await;
    let pausing = tokio::spawn({
        let addr = handle.client_addr();
        async move {
            let mut ops = ConsoleClient::login(addr, OPS_USER, OPS_PASSWORD, "pgbouncer").await;
            ops.query("PAUSE appdb").await
        }
    });
    wait_for_metric(&handle, "pgferry_paused{database=\"appdb\"}", 1.0).await;
    assert_eq!(backend_pid(&session).await, pid, "the session goes on");
    assert!(!pausing.is_finished(), "PAUSE waits for the session");
    drop(session);
    let reply = tokio::time::timeout(Duration::from_secs(10), pausing)
        .await
        .expect("PAUSE completes once the session left")
        .expect("console task");
    assert_ok(&reply, "PAUSE");
    assert_eq!(
        value(&handle, &servers("idle")),
        1.0,
        "its backend stays open"
    );
}

#[tokio::test]
async fn a_wait_during_pause_is_bounded_by_query_wait_timeout() {
    let mut config = console_config(pg());
    config.limits.query_wait_timeout = Duration::from_millis(300);
    let handle = start_proxy(config).await;
    let client = app_client(&handle).await;
    client.batch_execute("SELECT 1").await.unwrap();
    assert_ok(&console(&handle).await.query("PAUSE appdb").await, "PAUSE");
    let error = client
        .batch_execute("SELECT 1")
        .await
        .expect_err("paused too long");
    assert_eq!(sqlstate(&error).as_deref(), Some("57P03"));
    let message = error.as_db_error().map(|e| e.message().to_string());
    assert!(
        message.unwrap_or_default().contains("is paused"),
        "{error:?}"
    );
}

#[tokio::test]
async fn commands_that_cannot_apply_get_precise_errors() {
    let handle = start_proxy(console_config(pg())).await;
    let mut ops = console(&handle).await;
    let cases = [
        ("RESUME appdb", "55000", "database appdb is not paused"),
        ("RESUME", "55000", "pgferry is not paused"),
        ("PAUSE nosuchdb", "3D000", "no such database: nosuchdb"),
        ("KILL nosuchdb", "3D000", "no such database: nosuchdb"),
        ("RECONNECT nosuchdb", "3D000", "no such database: nosuchdb"),
        ("KILL_CLIENT 987654", "42704", "no such client: 987654"),
        // Started from a Config value, not a file: nothing to reload (the file case is in
        // tests/live_reload.rs).
        ("RELOAD", "F0000", "nothing to reload"),
    ];
    for (command, code, words) in cases {
        let reply = ops.query(command).await;
        assert_eq!(reply.error_code(), code, "{command}");
        assert!(
            reply.errors[0].1.contains(words),
            "{command}: {:?}",
            reply.errors
        );
    }
    let own_id = client_id(&ops);
    let reply = ops.query(&format!("KILL_CLIENT {own_id}")).await;
    assert_eq!(reply.error_code(), "42704");
    assert!(reply.errors[0].1.contains("admin console session"));
    assert_ok(&ops.query("PAUSE appdb").await, "PAUSE");
    let reply = ops.query("PAUSE appdb").await;
    assert_eq!(reply.error_code(), "55000");
    assert!(reply.errors[0].1.contains("already paused"));
    assert_ok(&ops.query("RESUME appdb").await, "RESUME");
}

#[tokio::test]
async fn reconnect_replaces_backends_after_release_and_wait_close_waits_for_it() {
    let handle = start_proxy(console_config(pg())).await;
    let inside = app_client(&handle).await;
    let idle = app_client(&handle).await;
    inside.batch_execute("BEGIN").await.unwrap();
    let inside_pid = backend_pid(&inside).await;
    let idle_pid = backend_pid(&idle).await;
    let pool = handle
        .context()
        .live
        .load()
        .pools
        .route(APP_DB, APP_USER)
        .expect("the app pool");

    wait_for_metric(&handle, &servers("idle"), 1.0).await;
    let mut ops = console(&handle).await;
    assert_ok(&ops.query("RECONNECT appdb").await, "RECONNECT");
    let discarded = "pgferry_server_connections_discarded_total{database=\"appdb\",reason=\"reconnect\",user=\"app\"}";
    assert_eq!(value(&handle, discarded), 1.0, "the idle one");
    // The idle backend closed at once; the one inside the transaction is only marked.
    assert_eq!(pool.close_needed(), 1);
    assert_eq!(backend_pid(&inside).await, inside_pid, "not interrupted");
    let waiting = tokio::spawn({
        let addr = handle.client_addr();
        async move {
            let mut ops = ConsoleClient::login(addr, OPS_USER, OPS_PASSWORD, "pgbouncer").await;
            ops.query("WAIT_CLOSE appdb").await
        }
    });
    let fresh = backend_pid(&idle).await;
    assert!(fresh != idle_pid && fresh != inside_pid, "a new backend");
    assert!(
        !waiting.is_finished(),
        "WAIT_CLOSE waits for the transaction"
    );
    inside.batch_execute("COMMIT").await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("WAIT_CLOSE returns once the marked backend closed")
        .expect("console task");
    assert_ok(&reply, "WAIT_CLOSE");
    assert_eq!(pool.close_needed(), 0);
    let after = backend_pid(&inside).await;
    assert!(after != inside_pid && after != idle_pid, "a new backend");
}

#[tokio::test]
async fn kill_ends_the_databases_clients_and_new_work_waits_for_resume() {
    let handle = start_proxy(console_config(pg())).await;
    let mut idle = app_raw(&handle).await;
    let mut inside = app_raw(&handle).await;
    assert_ok(&inside.query("BEGIN").await, "BEGIN");
    let mut ops = console(&handle).await;
    assert_ok(&ops.query("KILL appdb").await, "KILL");
    let words = "database \"appdb\" was killed by an administrator (pgferry KILL)";
    expect_fatal(&mut idle, "57P01", words).await;
    expect_fatal(&mut inside, "57P01", words).await;
    wait_for_metric(&handle, &servers("active"), 0.0).await;
    assert_eq!(
        value(&handle, &servers("idle")),
        0.0,
        "KILL closed the backends"
    );
    assert_eq!(value(&handle, "pgferry_paused{database=\"appdb\"}"), 1.0);

    // A new client logs in, but its work waits until RESUME.
    let late = app_client(&handle).await;
    let work = tokio::spawn(async move { late.simple_query("SELECT 1").await.map(|_| ()) });
    wait_for_metric(&handle, &series("pgferry_pool_waiting_clients"), 1.0).await;
    assert_ok(&ops.query("RESUME appdb").await, "RESUME");
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .expect("the held query runs after RESUME")
        .expect("client task")
        .expect("no error");
}

#[tokio::test]
async fn kill_client_ends_that_client_only_even_when_parked() {
    let mut config = console_config(pg());
    config.limits.client_park_after = Duration::from_millis(50);
    let handle = start_proxy(config).await;
    let mut victim = app_raw(&handle).await;
    let mut bystander = app_raw(&handle).await;
    assert_ok(&victim.query("SELECT 1").await, "SELECT 1");
    // Both idle clients leave the runtime for the parking lot.
    wait_for_metric(&handle, "pgferry_client_connections_parked", 2.0).await;
    let mut ops = console(&handle).await;
    assert_ok(
        &ops.query(&format!("KILL_CLIENT {}", client_id(&victim)))
            .await,
        "KILL_CLIENT",
    );
    expect_fatal(&mut victim, "57P01", "pgferry KILL_CLIENT").await;
    assert_ok(&bystander.query("SELECT 1").await, "SELECT 1");

    // One that is in a transaction is ended too, and its backend is not reused.
    assert_ok(&bystander.query("BEGIN").await, "BEGIN");
    assert_ok(
        &ops.query(&format!("KILL_CLIENT {}", client_id(&bystander)))
            .await,
        "KILL_CLIENT",
    );
    expect_fatal(&mut bystander, "57P01", "pgferry KILL_CLIENT").await;
    let other = app_client(&handle).await;
    let status = other.simple_query("SELECT 1").await;
    assert!(status.is_ok(), "other clients go on: {status:?}");
}

#[tokio::test]
async fn shutdown_wait_for_clients_stops_accepting_and_lets_clients_finish() {
    let handle = start_proxy(console_config(pg())).await;
    let addr = handle.client_addr();
    let client = app_client(&handle).await;
    let mut ops = console(&handle).await;
    assert_ok(&ops.query("SHUTDOWN WAIT_FOR_CLIENTS").await, "SHUTDOWN");
    let mode = tokio::time::timeout(Duration::from_secs(5), handle.shutdown_requested())
        .await
        .expect("the request reaches the handle");
    assert_eq!(mode, ShutdownMode::WaitForClients);
    let stopping = tokio::spawn(handle.shutdown_as(mode));
    // New clients are refused at the door (the listener is closed).
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "the proxy still accepts clients");
        tokio::task::yield_now().await;
    }
    // The existing clients go on.
    client.simple_query("SELECT 1").await.expect("still served");
    assert_ok(&ops.query("SHOW VERSION").await, "SHOW");
    assert!(!stopping.is_finished(), "clients are still connected");
    drop(client);
    drop(ops);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the proxy stops once every client left")
        .expect("shutdown task");
}

#[tokio::test]
async fn plain_shutdown_is_requested_once_and_ends_idle_clients() {
    let handle = start_proxy(console_config(pg())).await;
    let (client, connection) = app_client_watched(&handle).await;
    client.simple_query("SELECT 1").await.unwrap();
    let mut ops = console(&handle).await;
    assert_ok(&ops.query("SHUTDOWN").await, "SHUTDOWN");
    drop(ops);
    let mode = handle.shutdown_requested().await;
    assert_eq!(mode, ShutdownMode::Immediate);
    tokio::time::timeout(Duration::from_secs(15), handle.shutdown_as(mode))
        .await
        .expect("shutdown within its timeout");
    let ended = connection.await.expect("connection task");
    let error = ended.expect_err("the idle client was told why");
    assert_eq!(sqlstate(&error).as_deref(), Some("57P01"));
}

/// The binary: SHUTDOWN on the console ends the process, with success, like SIGTERM does.
#[tokio::test]
async fn the_binary_exits_after_shutdown_from_the_console() {
    let dir = std::env::temp_dir().join(format!("pgferry-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("pgferry.toml");
    let toml = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[metrics]\nlisten = \"off\"\n[tls]\nmode = \"disable\"\n\
         [admin]\nusers = [\"{OPS_USER}\"]\n\
         [[users]]\nname = \"{APP_USER}\"\npassword = \"{APP_PASSWORD}\"\n\
         [[users]]\nname = \"{OPS_USER}\"\npassword = \"{OPS_PASSWORD}\"\n\
         [[databases]]\nname = \"{APP_DB}\"\nhost = \"127.0.0.1\"\nport = {}\ntls_mode = \"disable\"\n",
        pg().port
    );
    std::fs::write(&file, toml).expect("config file");
    let mut pgferry = support::binary::Pgferry::spawn([
        "--config".as_ref(),
        file.as_os_str(),
        "--log-format".as_ref(),
        "human".as_ref(),
    ]);
    let addr = pgferry.client_addr();
    let mut ops = ConsoleClient::login(addr, OPS_USER, OPS_PASSWORD, "pgbouncer").await;
    assert_ok(&ops.query("SHUTDOWN").await, "SHUTDOWN");
    let pid = pgferry.child.id().to_string();
    let exited = tokio::task::spawn_blocking(move || pgferry.child.wait());
    let Ok(status) = tokio::time::timeout(Duration::from_secs(20), exited).await else {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
        panic!("the process did not exit within 20 s of SHUTDOWN");
    };
    let status = status.expect("wait thread").expect("exit status");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn shutdown_wait_for_servers_lets_the_open_transaction_finish_first() {
    let handle = start_proxy(console_config(pg())).await;
    let addr = handle.client_addr();
    let (inside, connection) = app_client_watched(&handle).await;
    inside.batch_execute("BEGIN").await.unwrap();
    let mut ops = console(&handle).await;
    assert_ok(&ops.query("SHUTDOWN WAIT_FOR_SERVERS").await, "SHUTDOWN");
    drop(ops);
    let mode = handle.shutdown_requested().await;
    assert_eq!(mode, ShutdownMode::WaitForServers);
    let stopping = tokio::spawn(handle.shutdown_as(mode));
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "the proxy still accepts clients");
        tokio::task::yield_now().await;
    }
    inside
        .batch_execute("SELECT 1; COMMIT")
        .await
        .expect("the transaction finishes");
    tokio::time::timeout(Duration::from_secs(15), stopping)
        .await
        .expect("the proxy stops once the backend was released")
        .expect("shutdown task");
    let error = connection
        .await
        .expect("connection task")
        .expect_err("then the idle client is told why");
    assert_eq!(sqlstate(&error).as_deref(), Some("57P01"));
}
