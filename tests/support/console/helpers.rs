//! Test-side helpers around the console: psql runs, simple_query rows, polling a SHOW,
//! clients with an application_name.

use std::process::Command;

use tokio_postgres::SimpleQueryMessage;

use super::super::{conn_string, pg_bin, APP_DB, APP_PASSWORD, APP_USER};
use super::{ConsoleClient, Table};

/// The rows of a simple_query as (column names, rows of text cells).
pub fn simple_rows(messages: &[SimpleQueryMessage]) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let mut names = Vec::new();
    let mut rows = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(columns) => {
                names = columns.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                );
            }
            _ => {}
        }
    }
    (names, rows)
}

/// Runs psql against the console (blocking, so on a blocking thread: the proxy runs on this
/// test's runtime). Returns stdout, panicking with stderr on failure.
pub async fn psql(addr: std::net::SocketAddr, user: &str, password: &str, sql: &str) -> String {
    let (user, password, sql) = (user.to_string(), password.to_string(), sql.to_string());
    tokio::task::spawn_blocking(move || {
        let output = Command::new(pg_bin("psql"))
            .env("PGHOST", addr.ip().to_string())
            .env("PGPORT", addr.port().to_string())
            .env("PGUSER", &user)
            .env("PGPASSWORD", &password)
            .env("PGDATABASE", "pgbouncer")
            .env("PGSSLMODE", "disable")
            .args(["-X", "-A", "-F", "|", "-c", &sql])
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "psql failed: {stdout}\n{stderr}");
        stdout
    })
    .await
    .expect("psql thread")
}

/// Polls `SHOW <what>` until `done` holds for its table (bounded: 10 s).
pub async fn show_until(
    console: &mut ConsoleClient,
    what: &str,
    done: impl Fn(&Table) -> bool,
) -> Table {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let table = console.query(&format!("SHOW {what}")).await.table().clone();
        if done(&table) {
            return table;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SHOW {what} never matched: {table:?}"
        );
        tokio::task::yield_now().await;
    }
}

pub async fn named_client(handle: &pgferry::ProxyHandle, name: &str) -> tokio_postgres::Client {
    let config = format!(
        "{} application_name={name}",
        conn_string(
            handle.client_addr(),
            APP_USER,
            APP_PASSWORD,
            APP_DB,
            "disable"
        )
    );
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .expect("login through pgferry");
    tokio::spawn(connection);
    client
}
