//! The admin console (databases `pgbouncer` / `pgferry`): login and refusals, the console's
//! protocol rules, and every SHOW's columns and values under real traffic, through psql,
//! tokio-postgres `simple_query` and a raw client that sees type OIDs.

mod support;

use std::process::Command;

use support::console::*;
use support::probe::*;
use support::*;
use tokio_postgres::SimpleQueryMessage;

/// The rows of a simple_query as (column names, rows of text cells).
fn simple_rows(messages: &[SimpleQueryMessage]) -> (Vec<String>, Vec<Vec<Option<String>>>) {
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
async fn psql(addr: std::net::SocketAddr, user: &str, password: &str, sql: &str) -> String {
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

#[tokio::test]
async fn show_version_answers_on_both_console_names() {
    let handle = start_proxy(console_config(pg())).await;
    for database in ["pgbouncer", "pgferry"] {
        let client = connect(handle.client_addr(), OPS_USER, OPS_PASSWORD, database)
            .await
            .expect("console login");
        let (names, rows) = simple_rows(&client.simple_query("SHOW VERSION").await.unwrap());
        assert_eq!(names, ["version"]);
        assert_eq!(rows.len(), 1);
        let version = rows[0][0].clone().unwrap_or_default();
        assert_eq!(version, format!("pgferry {}", env!("CARGO_PKG_VERSION")));
    }
    let mut raw =
        ConsoleClient::login(handle.client_addr(), OPS_USER, OPS_PASSWORD, "pgferry").await;
    let reply = raw.query("show version").await;
    assert_eq!(reply.table().columns, [("version".to_string(), 25)]);
    assert_eq!(reply.tags, ["SHOW"]);
}

#[tokio::test]
async fn psql_reads_the_console() {
    let handle = start_proxy(console_config(pg())).await;
    let out = psql(handle.client_addr(), OPS_USER, OPS_PASSWORD, "SHOW VERSION").await;
    let expected = format!("version\npgferry {}\n(1 row)\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(out, expected);
}

#[tokio::test]
async fn welcome_tolerates_monitoring_startup_parameters_and_reports_console_parameters() {
    let handle = start_proxy(console_config(pg())).await;
    let extra = [
        ("application_name", "pgbouncer_exporter"),
        ("extra_float_digits", "3"),
        ("options", "-c statement_timeout=5s"),
        ("client_encoding", "UTF8"),
    ];
    let console = ConsoleClient::try_login(
        handle.client_addr(),
        WATCHER_USER,
        WATCHER_PASSWORD,
        "pgbouncer",
        &extra,
    )
    .await
    .expect("stats user logs in");
    let version = console.parameter("server_version").unwrap_or_default();
    assert!(version.ends_with("/pgferry"), "server_version {version:?}");
    for (name, value) in [
        ("client_encoding", "UTF8"),
        ("server_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("standard_conforming_strings", "on"),
        ("application_name", "pgbouncer_exporter"),
    ] {
        assert_eq!(console.parameter(name).as_deref(), Some(value), "{name}");
    }
    let tags: Vec<u8> = console.welcome.iter().map(|(t, _)| *t).collect();
    assert!(tags.contains(&b'K'), "BackendKeyData in {tags:?}");
    assert_eq!(tags.last(), Some(&b'Z'));
}

#[tokio::test]
async fn users_outside_the_admin_lists_are_refused_after_authentication() {
    let handle = start_proxy(console_config(pg())).await;
    let addr = handle.client_addr();
    let refused = connect(addr, APP_USER, APP_PASSWORD, "pgbouncer").await;
    let message = expect_sqlstate(refused, "28000");
    assert!(
        message.contains("admin.users") && message.contains("admin.stats_users"),
        "{message}"
    );
    let wrong = connect(addr, OPS_USER, "not-the-password", "pgferry").await;
    expect_sqlstate(wrong, "28P01");
    let unknown = connect(addr, "nobody", "x", "pgferry").await;
    expect_sqlstate(unknown, "28000");
}

#[tokio::test]
async fn stats_users_may_show_but_not_control() {
    let handle = start_proxy(console_config(pg())).await;
    let client = connect(
        handle.client_addr(),
        WATCHER_USER,
        WATCHER_PASSWORD,
        "pgbouncer",
    )
    .await
    .expect("stats user logs in");
    for command in [
        "PAUSE",
        "RESUME appdb",
        "RELOAD",
        "KILL_CLIENT 1",
        "SHUTDOWN",
    ] {
        let message = expect_sqlstate(client.simple_query(command).await, "42501");
        assert!(message.contains("admin.users"), "{message}");
    }
    let (names, _) = simple_rows(&client.simple_query("SHOW VERSION").await.unwrap());
    assert_eq!(names, ["version"]);
}

#[tokio::test]
async fn unknown_commands_are_42601_and_the_session_goes_on() {
    let handle = start_proxy(console_config(pg())).await;
    let client = connect(handle.client_addr(), OPS_USER, OPS_PASSWORD, "pgbouncer")
        .await
        .unwrap();
    for bad in ["SELECT 1", "SHOW nothing", "KILL_CLIENT abc", "PAUSE a b"] {
        let message = expect_sqlstate(client.simple_query(bad).await, "42601");
        assert!(message.contains("SHOW HELP"), "{message}");
    }
    assert!(client.simple_query("show version").await.is_ok());
}

#[tokio::test]
async fn statements_split_on_semicolons_and_empty_queries_answer_empty() {
    let handle = start_proxy(console_config(pg())).await;
    let mut console =
        ConsoleClient::login(handle.client_addr(), OPS_USER, OPS_PASSWORD, "pgbouncer").await;
    let reply = console.query("  ;  ").await;
    assert!(reply.empty_query && reply.errors.is_empty(), "{reply:?}");
    let reply = console.query(" SHOW VERSION ;show   version;; ").await;
    assert_eq!(reply.tables.len(), 2);
    assert_eq!(reply.tags, ["SHOW", "SHOW"]);
    // An error ends the Query: the statement after it is not run.
    let reply = console.query("SHOW VERSION; BOGUS; SHOW VERSION").await;
    assert_eq!(reply.tables.len(), 1);
    assert_eq!(reply.error_code(), "42601");
}

#[tokio::test]
async fn show_help_is_a_notice_listing_the_commands() {
    let handle = start_proxy(console_config(pg())).await;
    let mut console =
        ConsoleClient::login(handle.client_addr(), OPS_USER, OPS_PASSWORD, "pgbouncer").await;
    let reply = console.query("SHOW HELP").await;
    assert_eq!(reply.tags, ["SHOW"]);
    assert_eq!(reply.notices.len(), 1);
    let (message, detail) = &reply.notices[0];
    assert_eq!(message, "Console usage");
    for command in [
        "SHOW HELP|CONFIG",
        "PAUSE [<db>]",
        "KILL_CLIENT",
        "WAIT_CLOSE",
        "PINS",
    ] {
        assert!(detail.contains(command), "{command} in {detail}");
    }
}

#[tokio::test]
async fn extended_protocol_is_refused_and_the_session_recovers_at_sync() {
    let handle = start_proxy(console_config(pg())).await;
    let mut console =
        ConsoleClient::login(handle.client_addr(), OPS_USER, OPS_PASSWORD, "pgbouncer").await;
    let mut buf = bytes::BytesMut::new();
    frontend::parse(&mut buf, "", "SHOW VERSION");
    frontend::bind(&mut buf, "");
    frontend::execute(&mut buf);
    frontend::sync(&mut buf);
    console.send_raw(&buf).await;
    let reply = console.read_reply().await;
    assert_eq!(reply.error_code(), "0A000");
    assert!(
        reply.errors[0].1.contains("extended query protocol"),
        "{reply:?}"
    );
    assert_eq!(
        reply.message_tags,
        [b'E', b'Z'],
        "one error, then ReadyForQuery at Sync"
    );
    // tokio-postgres' query() uses the extended protocol: it gets the same error.
    let client = connect(handle.client_addr(), OPS_USER, OPS_PASSWORD, "pgbouncer")
        .await
        .unwrap();
    expect_sqlstate(client.query("SHOW VERSION", &[]).await, "0A000");
    assert!(client.simple_query("SHOW VERSION").await.is_ok());
    let reply = console.query("SHOW VERSION").await;
    assert_eq!(reply.table().rows.len(), 1);
}
