//! Parked idle clients (`limits.client_park_after`): they leave the runtime, come back on their
//! next message, still count against `max_client_connections`, still time out, are cleaned up
//! when they leave, and are told when pgferry shuts down.

mod support;

use std::time::{Duration, Instant};

use support::probe::*;
use support::*;

const PARKED: &str = "pgferry_client_connections_parked";
const IDLE: &str = "pgferry_client_connections{state=\"idle\"}";

/// A proxy that parks clients after 20–40 ms of silence.
fn parking_config() -> pgferry::config::Config {
    let mut config = proxy_config(pg());
    config.limits.client_park_after = Duration::from_millis(20);
    config
}

#[tokio::test]
async fn a_parked_client_is_resumed_by_its_next_query() {
    let handle = start_proxy(parking_config()).await;
    let client = app_client(&handle).await;
    client
        .batch_execute("SET application_name = 'parker'")
        .await
        .unwrap();
    for round in 0..3 {
        wait_for_metric(&handle, PARKED, 1.0).await;
        let row = client
            .query_one(
                "SELECT current_setting('application_name'), $1::int",
                &[&round],
            )
            .await
            .expect("a parked client's query is served");
        assert_eq!(row.get::<_, String>(0), "parker", "its settings came along");
        assert_eq!(row.get::<_, i32>(1), round);
    }
    assert_eq!(metric(&handle.metrics().encode(), IDLE), 1.0);
}

#[tokio::test]
async fn a_parked_tls_client_keeps_its_session_and_can_close_it() {
    let (cert, key, ca) = proxy_cert(&pg().scratch_dir("parking-tls"));
    let mut config = parking_config();
    config.tls.mode = pgferry::config::ClientTlsMode::Require;
    config.tls.cert_file = Some(cert);
    config.tls.key_file = Some(key);
    let handle = start_proxy(config).await;
    let client = connect_tls(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB, &ca)
        .await
        .expect("TLS login");
    for round in 0..3 {
        wait_for_metric(&handle, PARKED, 1.0).await;
        let long = "x".repeat(100_000);
        let row = client
            .query_one("SELECT $1::int, length($2::text)", &[&round, &long])
            .await
            .expect("a parked TLS client's query is served over the same TLS session");
        assert_eq!(row.get::<_, i32>(0), round);
        assert_eq!(row.get::<_, i32>(1), 100_000);
    }
    wait_for_metric(&handle, PARKED, 1.0).await;
    drop(client);
    wait_for_metric(&handle, IDLE, 0.0).await;
    wait_for_metric(&handle, PARKED, 0.0).await;
}

#[tokio::test]
async fn a_client_that_leaves_while_parked_is_cleaned_up() {
    let handle = start_proxy(parking_config()).await;
    let client = app_client(&handle).await;
    client.simple_query("SELECT 1").await.unwrap();
    wait_for_metric(&handle, PARKED, 1.0).await;
    drop(client);
    wait_for_metric(&handle, IDLE, 0.0).await;
    wait_for_metric(&handle, PARKED, 0.0).await;
    app_client(&handle)
        .await
        .simple_query("SELECT 1")
        .await
        .expect("the proxy still serves");
}

#[tokio::test]
async fn parked_clients_count_against_max_client_connections() {
    let mut config = parking_config();
    config.limits.max_client_connections = 1;
    let handle = start_proxy(config).await;
    let parked = app_client(&handle).await;
    wait_for_metric(&handle, PARKED, 1.0).await;
    expect_sqlstate(
        connect(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await,
        "53300",
    );
    parked
        .simple_query("SELECT 1")
        .await
        .expect("the parked client keeps its place");
}

#[tokio::test]
async fn a_parked_client_still_gets_its_idle_timeout() {
    let mut config = parking_config();
    config.limits.client_idle_timeout = Duration::from_millis(300);
    let handle = start_proxy(config).await;
    let (client, connection) = app_client_watched(&handle).await;
    client.simple_query("SELECT 1").await.unwrap();
    wait_for_metric(&handle, PARKED, 1.0).await;
    let error = connection
        .await
        .unwrap()
        .expect_err("pgferry closes the idle session");
    assert_eq!(sqlstate(&error).as_deref(), Some("57P05"), "{error:?}");
    wait_for_metric(&handle, PARKED, 0.0).await;
}

#[tokio::test]
async fn parked_clients_are_told_at_shutdown() {
    let mut config = parking_config();
    config.limits.shutdown_timeout = Duration::from_secs(30);
    let handle = start_proxy(config).await;
    let (client, connection) = app_client_watched(&handle).await;
    client.simple_query("SELECT 1").await.unwrap();
    wait_for_metric(&handle, PARKED, 1.0).await;
    let started = Instant::now();
    handle.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for the parked session",
        started.elapsed()
    );
    let error = connection
        .await
        .unwrap()
        .expect_err("the parked session is told to go");
    assert_eq!(sqlstate(&error).as_deref(), Some("57P01"), "{error:?}");
}
