//! Relay behaviour through pgferry in transaction mode against a real PostgreSQL: simple and
//! extended protocol, pipelines, transactions, errors, COPY, notices, and 200 clients sharing
//! a pool of 5 without seeing each other's writes.

mod support;

use std::sync::Arc;

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};

use support::probe::expect_sqlstate;
use support::*;
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

fn row_count(messages: &[SimpleQueryMessage]) -> usize {
    messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count()
}

#[tokio::test]
async fn simple_queries_multi_statements_empty_queries_and_errors() {
    let handle = start_proxy(proxy_config(pg())).await;
    let client = app_client(&handle).await;
    let rows = client
        .simple_query("SELECT 1 AS a; SELECT generate_series(1, 3)")
        .await
        .unwrap();
    assert_eq!(row_count(&rows), 4);
    assert_eq!(row_count(&client.simple_query("").await.unwrap()), 0);
    expect_sqlstate(
        client.simple_query("SELECT * FROM no_such_table").await,
        "42P01",
    );
    let rows = client.simple_query("SELECT current_user").await.unwrap();
    let user = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(user.as_deref(), Some(APP_USER));
}

#[tokio::test]
async fn extended_protocol_and_pipelines() {
    let handle = start_proxy(proxy_config(pg())).await;
    let client = app_client(&handle).await;
    let row = client
        .query_typed("SELECT $1::int4 + 1", &[(&41i32, Type::INT4)])
        .await
        .unwrap();
    assert_eq!(row[0].get::<_, i32>(0), 42);
    // tokio-postgres pipelines concurrent requests on one connection: many Syncs in flight.
    let queries = (0..50).map(|i| {
        let client = &client;
        async move {
            client
                .query_typed("SELECT $1::int8 * 2", &[(&i64::from(i), Type::INT8)])
                .await
        }
    });
    let results = join_all(queries).await;
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap()[0].get::<_, i64>(0), i as i64 * 2);
    }
}

#[tokio::test]
async fn transactions_commit_rollback_and_errors_inside_them() {
    let handle = start_proxy(proxy_config(pg())).await;
    let mut client = app_client(&handle).await;
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS relay_tx (v int)")
        .await
        .unwrap();
    client.batch_execute("TRUNCATE relay_tx").await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO relay_tx VALUES ($1)", &[&1i32])
        .await
        .unwrap();
    let seen: i64 = tx
        .query_one("SELECT count(*) FROM relay_tx", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 1);
    tx.rollback().await.unwrap();
    let tx = client.transaction().await.unwrap();
    expect_sqlstate(
        tx.batch_execute("SELECT * FROM missing_in_tx").await,
        "42P01",
    );
    expect_sqlstate(tx.batch_execute("SELECT 1").await, "25P02");
    tx.rollback().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO relay_tx VALUES (2)", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let rows = client.simple_query("SELECT v FROM relay_tx").await.unwrap();
    assert_eq!(row_count(&rows), 1);
}

#[tokio::test]
async fn copy_in_and_copy_out() {
    // tokio-postgres runs COPY over the extended protocol and pipelines a Sync that PostgreSQL
    // ignores during copy-in: the single backend must still be released afterwards.
    let mut config = proxy_config(pg());
    config.databases[0].pool_size = 1;
    config.limits.query_wait_timeout = std::time::Duration::from_secs(2);
    let handle = start_proxy(config).await;
    let mut client = app_client(&handle).await;
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS relay_copy (v int, t text)")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    tx.batch_execute("TRUNCATE relay_copy").await.unwrap();
    let sink = tx.copy_in("COPY relay_copy FROM STDIN").await.unwrap();
    let data: String = (0..10_000).map(|i| format!("{i}\trow {i}\n")).collect();
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    let copied = sink.as_mut().finish().await.unwrap();
    assert_eq!(copied, 10_000);
    let out = tx
        .copy_out("COPY (SELECT v FROM relay_copy ORDER BY v) TO STDOUT")
        .await
        .unwrap();
    let mut out = std::pin::pin!(out);
    let mut bytes = Vec::new();
    while let Some(chunk) = out.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    tx.commit().await.unwrap();
    assert_eq!(String::from_utf8(bytes).unwrap().lines().count(), 10_000);
    let other = app_client(&handle).await;
    other
        .simple_query("SELECT 1")
        .await
        .expect("backend released after COPY");
}

#[tokio::test]
async fn notices_reach_the_client() {
    let handle = start_proxy(proxy_config(pg())).await;
    let conn_str = conn_string(
        handle.client_addr(),
        APP_USER,
        APP_PASSWORD,
        APP_DB,
        "disable",
    );
    let (client, mut connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let Ok(AsyncMessage::Notice(notice)) = message {
                let _ = tx.send(notice.message().to_string());
            }
        }
    });
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$")
        .await
        .unwrap();
    assert_eq!(rx.recv().await.as_deref(), Some("hello from plpgsql"));
}

#[tokio::test]
async fn two_hundred_clients_on_a_pool_of_five_see_only_their_own_writes() {
    let mut config = proxy_config(pg());
    config.databases[0].pool_size = 5;
    config.limits.query_wait_timeout = std::time::Duration::from_secs(60);
    let handle = Arc::new(start_proxy(config).await);
    let setup = app_client(&handle).await;
    setup
        .batch_execute("CREATE TABLE IF NOT EXISTS relay_isolation (client int, n int)")
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..200i32 {
        let handle = Arc::clone(&handle);
        tasks.spawn(async move {
            let mut client = app_client(&handle).await;
            for round in 0..3i32 {
                let tx = client.transaction().await.unwrap();
                let first: i64 = tx
                    .query_one("SELECT txid_current()", &[])
                    .await
                    .unwrap()
                    .get(0);
                tx.execute(
                    "INSERT INTO relay_isolation VALUES ($1, $2)",
                    &[&id, &round],
                )
                .await
                .unwrap();
                let clients: Vec<i32> = tx
                    .query("SELECT DISTINCT client FROM relay_isolation", &[])
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                assert_eq!(
                    clients,
                    vec![id],
                    "client {id} saw other clients' uncommitted rows"
                );
                let last: i64 = tx
                    .query_one("SELECT txid_current()", &[])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(first, last, "a transaction moved between backends");
                tx.rollback().await.unwrap();
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("client task");
    }
    let text = handle.metrics().encode();
    let conns = support::probe::metric(
        &text,
        "pgferry_pool_max_connections{database=\"appdb\",user=\"app\"}",
    );
    assert_eq!(conns, 5.0);
}
