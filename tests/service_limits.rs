//! Per-service limits against a real PostgreSQL: per-user pool_size / pool_mode /
//! max_client_connections, the per-database cap shared by all its pools (checked in the
//! server's own pg_stat_activity), live resize, and the metrics that go with them.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgferry::config::{Config, PoolMode};
use pgferry::metrics::Metrics;
use pgferry::pool::PoolRegistry;
use support::probe::{expect_sqlstate, metric, wait_for_metric};
use support::*;
use tokio::sync::mpsc;

const BOUND: Duration = Duration::from_secs(10);

fn config() -> Config {
    let mut config = proxy_config(pg());
    config.limits.query_wait_timeout = Duration::from_secs(30);
    config
}

fn series(name: &str, user: &str) -> String {
    format!("{name}{{database=\"{APP_DB}\",user=\"{user}\"}}")
}

async fn client(handle: &pgferry::ProxyHandle, user: &str) -> tokio_postgres::Client {
    let password = if user == APP_USER {
        APP_PASSWORD
    } else {
        OTHER_PASSWORD
    };
    connect(handle.client_addr(), user, password, APP_DB)
        .await
        .expect("login through pgferry")
}

async fn pid(c: &tokio_postgres::Client) -> i32 {
    let rows = c.simple_query("SELECT pg_backend_pid()").await.unwrap();
    let value = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    });
    value.and_then(|v| v.parse().ok()).expect("a pid")
}

/// A database of the test's own, so its pg_stat_activity rows are the test's alone.
async fn own_database(name: &str) -> Config {
    let su = pg().superuser_client().await;
    su.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .unwrap();
    su.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut config = config();
    config.databases[0].dbname = name.to_string();
    config
}

/// Client backends connected to `dbname`, as the server itself counts them.
async fn server_backends(dbname: &str) -> i64 {
    let su = pg().superuser_client().await;
    let row = su
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND backend_type = 'client backend'",
            &[&dbname],
        )
        .await
        .unwrap();
    row.get(0)
}

/// Waits until the server counts at most `n` client backends on `dbname`: a backend pgferry
/// closed leaves pg_stat_activity a moment later (its process exits asynchronously).
async fn settles_at_most(dbname: &str, n: i64) {
    let deadline = Instant::now() + BOUND;
    loop {
        let count = server_backends(dbname).await;
        if count <= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{count} backends on {dbname}, cap {n}"
        );
        tokio::task::yield_now().await;
    }
}

/// Backend connections pgferry holds for `APP_DB`, all pools and states together.
fn proxy_backends(handle: &pgferry::ProxyHandle) -> f64 {
    let text = handle.metrics().encode();
    text.lines()
        .filter(|l| l.starts_with("pgferry_server_connections{"))
        .filter(|l| l.contains(&format!("database=\"{APP_DB}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_users_pool_size_caps_its_own_pool_only() {
    let mut config = config();
    config.users[0].limits.pool_size = Some(2);
    config.limits.query_wait_timeout = Duration::from_millis(300);
    let handle = start_proxy(config).await;
    let text = handle.metrics().encode();
    let max = |user| metric(&text, &series("pgferry_pool_max_connections", user));
    assert_eq!((max(APP_USER), max(OTHER_USER)), (2.0, 5.0));

    let mut app = Vec::new();
    for _ in 0..3 {
        app.push(client(&handle, APP_USER).await);
    }
    for c in &app[..2] {
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
    }
    let refused = app[2].batch_execute("SELECT 1").await;
    let message = expect_sqlstate(refused, "53300");
    assert!(message.contains("pool of 2"), "{message}");

    // Four transactions of the other user at once: its pool keeps the database's size.
    let mut other = Vec::new();
    for _ in 0..4 {
        let c = client(&handle, OTHER_USER).await;
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
        other.push(c);
    }
    let pids: std::collections::HashSet<i32> =
        futures_util::future::join_all(other.iter().map(pid))
            .await
            .into_iter()
            .collect();
    assert_eq!(pids.len(), 4, "four backends at once");
}

#[tokio::test]
async fn a_users_session_mode_keeps_its_backend_while_others_share() {
    let mut config = config();
    config.users[0].limits.pool_mode = Some(PoolMode::Session);
    let handle = start_proxy(config).await;

    // Transaction mode (other): the first client's backend is free again between
    // transactions, so the next client's transaction gets that same (warmest) backend.
    let o1 = client(&handle, OTHER_USER).await;
    let o2 = client(&handle, OTHER_USER).await;
    let first = pid(&o1).await;
    let idle = format!(
        "pgferry_server_connections{{database=\"{APP_DB}\",state=\"idle\",user=\"{OTHER_USER}\"}}"
    );
    wait_for_metric(&handle, &idle, 1.0).await;
    assert_eq!(pid(&o2).await, first, "shared between transactions");

    // Session mode (app): the first client keeps its backend for the whole session.
    let a1 = client(&handle, APP_USER).await;
    let kept = pid(&a1).await;
    let a2 = client(&handle, APP_USER).await;
    assert_ne!(pid(&a2).await, kept, "a session keeps its backend");
    assert_eq!(pid(&a1).await, kept);
}

#[tokio::test]
async fn the_client_over_a_users_limit_gets_53300_and_other_users_do_not() {
    let mut config = config();
    config.users[0].limits.max_client_connections = Some(3);
    let handle = start_proxy(config).await;
    let mut app = Vec::new();
    for _ in 0..3 {
        app.push(client(&handle, APP_USER).await);
    }
    let refused = connect(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await;
    let message = expect_sqlstate(refused, "53300");
    assert_eq!(
        message,
        "too many connections for role \"app\" (pgferry users[].max_client_connections = 3)"
    );
    let rejected = "pgferry_client_connections_rejected_total{reason=\"max_user_clients\"}";
    assert_eq!(metric(&handle.metrics().encode(), rejected), 1.0);
    let other = client(&handle, OTHER_USER).await;
    other.batch_execute("SELECT 1").await.unwrap();
    for c in &app {
        c.batch_execute("SELECT 1").await.unwrap();
    }

    // A session that ends gives its place back.
    drop(app.pop());
    let deadline = Instant::now() + BOUND;
    loop {
        match connect(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await {
            Ok(c) => break c.batch_execute("SELECT 1").await.unwrap(),
            Err(e) => {
                assert!(Instant::now() < deadline, "place never freed: {e}");
                tokio::task::yield_now().await;
            }
        }
    }
}

#[tokio::test]
async fn a_flooding_user_is_refused_and_does_not_slow_another_user() {
    let mut config = config();
    config.databases[0].pool_size = 2;
    config.users[0].limits.max_client_connections = Some(8);
    let handle = Arc::new(start_proxy(config).await);
    let stop = Arc::new(AtomicU32::new(0));
    let mut flood = Vec::new();
    for _ in 0..8 {
        let c = client(&handle, APP_USER).await;
        let stop = Arc::clone(&stop);
        flood.push(tokio::spawn(async move {
            let mut done = 0u32;
            while stop.load(Ordering::Relaxed) == 0 {
                c.batch_execute("BEGIN; SELECT pg_sleep(0.005); COMMIT")
                    .await
                    .unwrap();
                done += 1;
            }
            done
        }));
    }
    for _ in 0..2 {
        let refused = connect(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await;
        expect_sqlstate(refused, "53300");
    }
    // The flood is on: app clients queue for its 2 connections.
    let app_waits = series("pgferry_pool_waiting_clients", APP_USER);
    let deadline = Instant::now() + BOUND;
    while metric(&handle.metrics().encode(), &app_waits) < 1.0 {
        assert!(Instant::now() < deadline, "the flood never queued");
        tokio::task::yield_now().await;
    }

    let other = client(&handle, OTHER_USER).await;
    for _ in 0..200 {
        other.batch_execute("SELECT 1").await.unwrap();
    }
    stop.store(1, Ordering::Relaxed);
    let mut flooded = 0;
    for task in flood {
        flooded += task.await.unwrap();
    }
    assert!(flooded > 8, "the flood ran transactions ({flooded})");

    // The other user's own pool had a free connection for every checkout: its waits are the
    // first connect (a SCRAM login to a local server, a few ms even on a loaded CPU) and
    // otherwise a lock and a pop. 99% of its 200 checkouts must be within 25 ms, whatever the
    // flooding user's 8 clients on 2 connections do (each of them waits up to ~4 x 5 ms).
    let text = handle.metrics().encode();
    let wait = "pgferry_pool_checkout_wait_seconds";
    let bucket = |user: &str, le: &str| {
        let s = format!("{wait}_bucket{{database=\"{APP_DB}\",user=\"{user}\",le=\"{le}\"}}");
        metric(&text, &s)
    };
    let total = metric(&text, &series(&format!("{wait}_count"), OTHER_USER));
    assert!(total >= 200.0, "{total}");
    let within = bucket(OTHER_USER, "0.025");
    assert!(
        within >= 0.99 * total,
        "p99 over 25 ms: {within} of {total}"
    );
    let app_total = metric(&text, &series(&format!("{wait}_count"), APP_USER));
    assert!(
        bucket(APP_USER, "0.0025") < app_total,
        "the flood itself waited"
    );
}

#[tokio::test]
async fn the_database_cap_bounds_all_pools_on_the_server_fairly() {
    let dbname = "limits_cap";
    let mut config = own_database(dbname).await;
    config.databases[0].max_db_connections = Some(2);
    let handle = Arc::new(start_proxy(config).await);

    // Two idle connections in app's pool fill the cap.
    let (a1, a2) = (
        client(&handle, APP_USER).await,
        client(&handle, APP_USER).await,
    );
    a1.batch_execute("BEGIN; SELECT 1").await.unwrap();
    a2.batch_execute("BEGIN; SELECT 1").await.unwrap();
    a1.batch_execute("COMMIT").await.unwrap();
    a2.batch_execute("COMMIT").await.unwrap();
    assert_eq!(server_backends(dbname).await, 2);

    // The other user's pool is empty, yet its client is served: an idle app connection is
    // closed to make room (else it would wait for the 30 s timeout).
    let o1 = client(&handle, OTHER_USER).await;
    tokio::time::timeout(BOUND, o1.batch_execute("SELECT 1"))
        .await
        .expect("served by evicting an idle connection")
        .unwrap();
    let servers = |user: &str, state: &str| {
        format!(
            "pgferry_server_connections{{database=\"{APP_DB}\",state=\"{state}\",user=\"{user}\"}}"
        )
    };
    let text = handle.metrics().encode();
    assert_eq!(metric(&text, &servers(APP_USER, "idle")), 1.0);
    assert_eq!(metric(&text, &servers(OTHER_USER, "idle")), 1.0);
    settles_at_most(dbname, 2).await;

    // FIFO across pools: both places busy in app's pool; an `other` client queues first,
    // then an app client; the first connection returned goes to the `other` client (whose
    // pool holds none: app's backend is closed and one is logged in for `other`).
    a1.batch_execute("BEGIN; SELECT 1").await.unwrap();
    a2.batch_execute("BEGIN; SELECT 1").await.unwrap();
    settles_at_most(dbname, 2).await;
    assert_eq!(proxy_backends(&handle), 2.0);
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let queue = |c: tokio_postgres::Client, tag: &'static str| {
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            c.batch_execute("SELECT 1").await.unwrap();
            let _ = done_tx.send(tag);
            c
        })
    };
    let other_wait = queue(o1, "other");
    wait_for_metric(
        &handle,
        &series("pgferry_pool_waiting_clients", OTHER_USER),
        1.0,
    )
    .await;
    let a3 = client(&handle, APP_USER).await;
    let app_wait = queue(a3, "app");
    wait_for_metric(
        &handle,
        &series("pgferry_pool_waiting_clients", APP_USER),
        1.0,
    )
    .await;
    let oldest = metric(
        &handle.metrics().encode(),
        &series("pgferry_pool_oldest_wait_seconds", OTHER_USER),
    );
    assert!(oldest > 0.0, "the other client's wait has an age: {oldest}");
    a1.batch_execute("COMMIT").await.unwrap();
    let first = tokio::time::timeout(BOUND, done.recv()).await.unwrap();
    assert_eq!(first, Some("other"), "served in arrival order across pools");
    let second = tokio::time::timeout(BOUND, done.recv()).await.unwrap();
    assert_eq!(second, Some("app"));
    a2.batch_execute("COMMIT").await.unwrap();
    let _ = (other_wait.await.unwrap(), app_wait.await.unwrap());
    settles_at_most(dbname, 2).await;
    let text = handle.metrics().encode();
    assert_eq!(
        metric(
            &text,
            &series("pgferry_pool_oldest_wait_seconds", OTHER_USER)
        ),
        0.0
    );
}

#[tokio::test]
async fn pools_and_the_cap_resize_live_on_the_server() {
    let dbname = "limits_resize";
    let mut config = own_database(dbname).await;
    config.databases[0].pool_size = 1;
    config.databases[0].max_db_connections = Some(4);
    let metrics = Metrics::new();
    let pools = PoolRegistry::build(&config, &metrics).unwrap();
    let pool = pools.route(APP_DB, APP_USER).unwrap();

    // Growing serves a waiting checkout at once.
    let first = pool.checkout().await.unwrap();
    let waiting = tokio::spawn({
        let pool = Arc::clone(&pool);
        async move { pool.checkout().await }
    });
    let deadline = Instant::now() + BOUND;
    while pool.state().waiting == 0 {
        assert!(Instant::now() < deadline, "never queued");
        tokio::task::yield_now().await;
    }
    pool.resize(3);
    let second = tokio::time::timeout(BOUND, waiting)
        .await
        .expect("served at once")
        .unwrap()
        .unwrap();
    let third = pool.checkout().await.unwrap();
    assert_eq!(server_backends(dbname).await, 3);
    assert_eq!(pool.state().max_size, 3);

    // Shrinking closes idle connections now and borrowed ones when given back.
    first.give_back();
    second.give_back();
    pool.resize(1);
    assert_eq!((pool.state().connections, pool.state().idle), (1, 0));
    third.give_back();
    assert_eq!((pool.state().connections, pool.state().idle), (1, 1));
    let deadline = Instant::now() + BOUND;
    while server_backends(dbname).await != 1 {
        assert!(Instant::now() < deadline, "backends not closed");
        tokio::task::yield_now().await;
    }

    // The cap, lowered below what is open, closes idle connections across pools.
    let cap = pools.database_cap(APP_DB).unwrap();
    let other = pools.route(APP_DB, OTHER_USER).unwrap();
    let o = other.checkout().await.unwrap();
    o.give_back();
    assert_eq!(cap.open(), 2);
    cap.set_limit(1);
    assert_eq!(cap.open(), 1);
    let deadline = Instant::now() + BOUND;
    while server_backends(dbname).await != 1 {
        assert!(Instant::now() < deadline, "idle connection not closed");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn build_info_and_connect_results_are_exported() {
    let mut config = config();
    let mut down = config.databases[0].clone();
    down.name = "downdb".into();
    down.port = free_port();
    config.databases.push(down);
    let handle = start_proxy(config).await;
    client(&handle, APP_USER)
        .await
        .batch_execute("SELECT 1")
        .await
        .unwrap();
    let refused = connect(handle.client_addr(), APP_USER, APP_PASSWORD, "downdb").await;
    expect_sqlstate(refused, "08006");
    let text = handle.metrics().encode();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        metric(
            &text,
            &format!("pgferry_build_info{{version=\"{version}\"}}")
        ),
        1.0
    );
    let connects = |db: &str, result: &str| {
        let s = format!(
            "pgferry_server_connects_total{{database=\"{db}\",result=\"{result}\",user=\"app\"}}"
        );
        metric(&text, &s)
    };
    assert_eq!(connects(APP_DB, "ok"), 1.0);
    assert_eq!(connects(APP_DB, "error"), 0.0);
    assert_eq!(connects("downdb", "error"), 1.0);
    assert_eq!(connects("downdb", "ok"), 0.0);
}

#[tokio::test]
async fn a_client_held_up_by_the_database_cap_is_told_so() {
    let mut config = config();
    config.databases[0].max_db_connections = Some(1);
    config.limits.query_wait_timeout = Duration::from_millis(300);
    let handle = start_proxy(config).await;
    let app = client(&handle, APP_USER).await;
    app.batch_execute("BEGIN; SELECT 1").await.unwrap();
    // The other user's pool has room, but the database's one connection is in a transaction.
    let refused = connect(handle.client_addr(), OTHER_USER, OTHER_PASSWORD, APP_DB).await;
    let message = expect_sqlstate(refused, "53300");
    assert_eq!(
        message,
        "no backend connection available within 0.3 s (database \"appdb\" is at its \
         max_db_connections = 1, shared by all its pools)"
    );
    app.batch_execute("COMMIT").await.unwrap();
    let other = client(&handle, OTHER_USER).await;
    other.batch_execute("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn two_users_hammering_a_capped_database_never_exceed_it_and_both_progress() {
    let dbname = "limits_stress";
    let mut config = own_database(dbname).await;
    config.databases[0].max_db_connections = Some(3);
    let handle = Arc::new(start_proxy(config).await);
    let stop = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let user = if i % 2 == 0 { APP_USER } else { OTHER_USER };
        let c = client(&handle, user).await;
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut done = 0u32;
            while stop.load(Ordering::Relaxed) == 0 {
                c.batch_execute("BEGIN; SELECT pg_sleep(0.002); COMMIT")
                    .await
                    .unwrap();
                done += 1;
            }
            (user, done)
        }));
    }
    // While they run, pgferry never holds more than the cap (checked at every scrape).
    let txns = |user: &str| {
        metric(
            &handle.metrics().encode(),
            &series("pgferry_transactions_total", user),
        )
    };
    let deadline = Instant::now() + BOUND;
    while txns(APP_USER) < 100.0 || txns(OTHER_USER) < 100.0 {
        assert!(Instant::now() < deadline, "both users must progress");
        let held = proxy_backends(&handle);
        assert!(held <= 3.0, "pgferry holds {held} backends, cap 3");
        tokio::task::yield_now().await;
    }
    stop.store(1, Ordering::Relaxed);
    for task in tasks {
        let (_user, done) = task.await.unwrap();
        assert!(done > 0, "every client was served");
    }
    settles_at_most(dbname, 3).await;
    let text = handle.metrics().encode();
    let timeouts =
        |user: &str| metric(&text, &series("pgferry_pool_checkout_timeouts_total", user));
    assert_eq!((timeouts(APP_USER), timeouts(OTHER_USER)), (0.0, 0.0));
    // Pools even out their connections instead of swapping a backend per transaction:
    // measured 9 logins for ~300 transactions; a swap per transaction would be hundreds.
    let logins = |user: &str| {
        let s = format!(
            "pgferry_server_connects_total{{database=\"{APP_DB}\",result=\"ok\",user=\"{user}\"}}"
        );
        metric(&text, &s)
    };
    let total = logins(APP_USER) + logins(OTHER_USER);
    assert!(total <= 40.0, "{total} backend logins: pools swap backends");
}

#[tokio::test]
async fn with_a_backend_user_the_shared_pool_takes_that_users_limits() {
    let mut config = config();
    config.databases[0].backend_user = Some(OTHER_USER.into());
    config.databases[0].backend_password = Some(OTHER_PASSWORD.into());
    config.users[1].limits.pool_size = Some(1);
    config.users[0].limits.max_client_connections = Some(1);
    config.limits.query_wait_timeout = Duration::from_millis(300);
    let handle = start_proxy(config).await;
    let text = handle.metrics().encode();
    assert_eq!(
        metric(&text, &series("pgferry_pool_max_connections", OTHER_USER)),
        1.0
    );
    assert!(!text.contains(&series("pgferry_pool_max_connections", APP_USER)));

    // app's client uses the backend user's pool of 1; the client limit is still app's own.
    let app = client(&handle, APP_USER).await;
    app.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let refused = connect(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await;
    expect_sqlstate(refused, "53300");
    let other = client(&handle, OTHER_USER).await;
    let waited = other.batch_execute("SELECT 1").await;
    let message = expect_sqlstate(waited, "53300");
    assert!(message.contains("pool of 1"), "{message}");
}
