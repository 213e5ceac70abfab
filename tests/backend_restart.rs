//! A backend restart under pgferry: clients holding or reusing dead backend connections get a
//! clear error, then new transactions succeed without restarting pgferry. In its own test
//! binary because it restarts the PostgreSQL server that the binary shares.

mod support;

use support::probe::*;
use support::*;

#[tokio::test]
async fn backend_restart_gives_errors_then_recovers() {
    let mut config = proxy_config(pg());
    config.databases[0].pool_size = 3;
    let handle = start_proxy(config).await;
    let addr = handle.client_addr();
    // Warm the pool with several backend connections.
    let clients = futures_util::future::join_all(
        (0..3).map(|_| connect(addr, APP_USER, APP_PASSWORD, APP_DB)),
    )
    .await;
    let clients: Vec<_> = clients.into_iter().map(|c| c.expect("login")).collect();
    let holder = &clients[0];
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    for c in &clients[1..] {
        c.batch_execute("BEGIN; SELECT 1; COMMIT").await.unwrap();
    }
    pg().restart().expect("pg_ctl restart");
    let error = holder
        .simple_query("SELECT 1")
        .await
        .expect_err("the backend under the transaction died");
    let code = sqlstate(&error);
    assert!(
        matches!(code.as_deref(), Some("08006") | Some("57P01")),
        "{error:?}"
    );
    // Idle pooled connections died too; pgferry must notice and open fresh ones.
    let fresh = connect(addr, APP_USER, APP_PASSWORD, APP_DB)
        .await
        .expect("login after restart");
    for _ in 0..5 {
        fresh
            .simple_query("SELECT 1")
            .await
            .expect("new transactions succeed after the restart");
    }
    let text = handle.metrics().encode();
    assert!(metric(&text, "pgferry_client_connections_total") >= 4.0);
}
