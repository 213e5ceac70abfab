//! The admin console (databases `pgbouncer` / `pgferry`): login and refusals, the console's
//! protocol rules, and every SHOW's columns and values under real traffic, through psql,
//! tokio-postgres `simple_query` and a raw client that sees type OIDs.

mod support;

use support::console::*;
use support::probe::*;
use support::*;

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

#[tokio::test]
async fn every_show_has_pgbouncers_columns_in_order_with_their_type_oids() {
    let handle = start_proxy(console_config(pg())).await;
    let _app = app_client(&handle).await;
    let mut console = ConsoleClient::login(
        handle.client_addr(),
        WATCHER_USER,
        WATCHER_PASSWORD,
        "pgbouncer",
    )
    .await;
    for show in [
        "POOLS",
        "DATABASES",
        "USERS",
        "CLIENTS",
        "SERVERS",
        "CONFIG",
        "LISTS",
        "VERSION",
        "STATS",
        "STATS_TOTALS",
        "STATS_AVERAGES",
        "PINS",
        "PREPARED",
    ] {
        let reply = console.query(&format!("SHOW {show}")).await;
        let table = reply.table();
        let got: Vec<(&str, u32)> = table
            .columns
            .iter()
            .map(|(n, o)| (n.as_str(), *o))
            .collect();
        assert_eq!(got, expected_columns(show), "SHOW {show}");
        assert_eq!(reply.tags, ["SHOW"], "SHOW {show}");
        for row in &table.rows {
            assert_eq!(row.len(), table.columns.len(), "SHOW {show} row {row:?}");
        }
    }
}

#[tokio::test]
async fn pools_clients_and_servers_show_a_held_connection_and_a_waiting_client() {
    let mut config = console_config(pg());
    config.databases[0].pool_size = 1;
    let handle = start_proxy(config).await;
    let holder = named_client(&handle, "holder").await;
    let waiter = named_client(&handle, "waiter").await;
    let rows = holder
        .simple_query("BEGIN; SELECT pg_backend_pid()")
        .await
        .unwrap();
    let backend_pid = simple_rows(&rows).1[0][0].clone().unwrap_or_default();
    let waiting = tokio::spawn(async move { waiter.simple_query("SELECT 42").await });
    let mut console =
        ConsoleClient::login(handle.client_addr(), OPS_USER, OPS_PASSWORD, "pgbouncer").await;

    let pools = show_until(&mut console, "POOLS", |t| {
        t.int("user", APP_USER, "cl_waiting") == 1
    })
    .await;
    let at = |column| pools.int("user", APP_USER, column);
    assert_eq!(
        (
            at("cl_active"),
            at("sv_active"),
            at("sv_idle"),
            at("sv_login")
        ),
        (1, 1, 0, 0),
        "{pools:?}"
    );
    let pool_row = pools.row_where("user", APP_USER);
    assert_eq!(pools.cell(pool_row, "database"), Some(APP_DB));
    assert_eq!(pools.cell(pool_row, "pool_mode"), Some("transaction"));

    let clients = console.query("SHOW CLIENTS").await.table().clone();
    let holder_row = clients.row_where("application_name", "holder");
    assert_eq!(clients.cell(holder_row, "state"), Some("active"));
    assert_eq!(clients.cell(holder_row, "type"), Some("C"));
    assert_eq!(clients.cell(holder_row, "addr"), Some("127.0.0.1"));
    let holder_id = clients
        .cell(holder_row, "id")
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        clients.cell(holder_row, "ptr"),
        Some(&*format!("c{holder_id}"))
    );
    let server_ptr = clients
        .cell(holder_row, "link")
        .unwrap_or_default()
        .to_string();
    let waiter_row = clients.row_where("application_name", "waiter");
    assert_eq!(clients.cell(waiter_row, "state"), Some("waiting"));
    assert_eq!(clients.cell(waiter_row, "link"), Some(""));
    let console_rows = clients.rows_where("database", "pgbouncer");
    assert_eq!(console_rows.len(), 1, "the console lists itself");

    let servers = console.query("SHOW SERVERS").await.table().clone();
    let server = servers.row_where("ptr", &server_ptr);
    assert_eq!(servers.cell(server, "state"), Some("active"));
    assert_eq!(
        servers.cell(server, "link"),
        Some(&*format!("c{holder_id}"))
    );
    assert_eq!(
        servers.cell(server, "remote_pid"),
        Some(backend_pid.as_str())
    );
    assert_eq!(servers.cell(server, "port"), Some(&*pg().port.to_string()));

    holder.simple_query("COMMIT").await.unwrap();
    let answer = waiting
        .await
        .unwrap()
        .expect("the waiter got the connection");
    assert_eq!(simple_rows(&answer).1[0][0].as_deref(), Some("42"));
    // The waiter's client was dropped with its task: the holder alone remains, idle.
    let pools = show_until(&mut console, "POOLS", |t| {
        t.int("user", APP_USER, "sv_idle") == 1 && t.int("user", APP_USER, "cl_active") == 1
    })
    .await;
    assert_eq!(pools.int("user", APP_USER, "cl_waiting"), 0);
    let servers = console.query("SHOW SERVERS").await.table().clone();
    assert_eq!(servers.cell(&servers.rows[0], "state"), Some("idle"));
}

#[tokio::test]
async fn stats_count_the_transactions_and_queries_that_ran() {
    let handle = start_proxy(console_config(pg())).await;
    let app = app_client(&handle).await;
    for _ in 0..5 {
        app.simple_query("SELECT 1").await.unwrap();
    }
    app.simple_query("BEGIN; SELECT 1; SELECT 2; COMMIT")
        .await
        .unwrap();
    let mut console = ConsoleClient::login(
        handle.client_addr(),
        WATCHER_USER,
        WATCHER_PASSWORD,
        "pgferry",
    )
    .await;
    let totals = console.query("SHOW STATS_TOTALS").await.table().clone();
    let total = |c| totals.int("database", APP_DB, c);
    assert_eq!(total("xact_count"), 6);
    assert!(total("query_count") >= 6, "{totals:?}");
    assert!(total("server_assignment_count") >= 6, "{totals:?}");
    assert!(
        total("xact_time") > 0 && total("query_time") > 0,
        "{totals:?}"
    );
    let stats = console.query("SHOW STATS").await.table().clone();
    assert_eq!(stats.int("database", APP_DB, "total_xact_count"), 6);
    assert!(
        stats.int("database", APP_DB, "avg_xact_time") > 0,
        "{stats:?}"
    );
    let averages = console.query("SHOW STATS_AVERAGES").await.table().clone();
    assert!(
        averages.int("database", APP_DB, "xact_time") > 0,
        "{averages:?}"
    );
}

#[tokio::test]
async fn show_pins_lists_a_pinned_client_with_its_reason() {
    let handle = start_proxy(console_config(pg())).await;
    let pinned = named_client(&handle, "locker").await;
    pinned
        .simple_query("SELECT pg_advisory_lock(77)")
        .await
        .unwrap();
    let _plain = named_client(&handle, "plain").await;
    let mut console =
        ConsoleClient::login(handle.client_addr(), OPS_USER, OPS_PASSWORD, "pgbouncer").await;
    let clients = console.query("SHOW CLIENTS").await.table().clone();
    let id = clients
        .cell(clients.row_where("application_name", "locker"), "id")
        .unwrap_or_default()
        .to_string();
    let pins = console.query("SHOW PINS").await.table().clone();
    assert_eq!(pins.rows.len(), 1, "{pins:?}");
    let row = pins.row_where("client", &id);
    assert_eq!(pins.cell(row, "reasons"), Some("advisory_lock"));
    assert_eq!(pins.cell(row, "user"), Some(APP_USER));
    assert_eq!(pins.cell(row, "database"), Some(APP_DB));
    assert!(pins
        .cell(row, "since")
        .unwrap_or_default()
        .ends_with(" UTC"));
    // A pinned client keeps its server: SHOW CLIENTS shows it linked.
    let row = clients.row_where("application_name", "locker");
    assert!(clients
        .cell(row, "link")
        .unwrap_or_default()
        .starts_with('s'));
}

#[tokio::test]
async fn show_prepared_lists_a_named_statement_and_its_client() {
    let handle = start_proxy(console_config(pg())).await;
    let app = named_client(&handle, "preparer").await;
    let statement = app.prepare("SELECT $1::int4 + 1").await.unwrap();
    let row = app.query_one(&statement, &[&41i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let mut console =
        ConsoleClient::login(handle.client_addr(), OPS_USER, OPS_PASSWORD, "pgbouncer").await;
    let prepared = console.query("SHOW PREPARED").await.table().clone();
    let row = prepared.row_where("query", "SELECT $1::int4 + 1");
    assert!(prepared
        .cell(row, "name")
        .unwrap_or_default()
        .starts_with("pgf_"));
    assert_eq!(prepared.cell(row, "clients"), Some("1"));
    assert_eq!(prepared.cell(row, "backends"), Some("1"));
    let clients = console.query("SHOW CLIENTS").await.table().clone();
    assert_eq!(
        clients.int("application_name", "preparer", "prepared_statements"),
        1
    );
    drop(statement);
    drop(app);
}

#[tokio::test]
async fn databases_users_lists_and_config_reflect_the_configuration_and_traffic() {
    let handle = start_proxy(console_config(pg())).await;
    let app = app_client(&handle).await;
    app.simple_query("SELECT 1").await.unwrap();
    let mut console =
        ConsoleClient::login(handle.client_addr(), OPS_USER, OPS_PASSWORD, "pgbouncer").await;
    let dbs = console.query("SHOW DATABASES").await.table().clone();
    let row = dbs.row_where("name", APP_DB);
    assert_eq!(dbs.cell(row, "host"), Some(pg().host.as_str()));
    assert_eq!(dbs.cell(row, "force_user"), None);
    assert_eq!(dbs.cell(row, "pool_mode"), Some("transaction"));
    assert_eq!(dbs.int("name", APP_DB, "pool_size"), 5);
    assert_eq!(dbs.int("name", APP_DB, "current_connections"), 1);
    assert_eq!(dbs.int("name", APP_DB, "current_client_connections"), 1);
    assert_eq!(dbs.int("name", APP_DB, "paused"), 0);

    let users = console.query("SHOW USERS").await.table().clone();
    assert_eq!(users.int("name", APP_USER, "current_client_connections"), 1);
    assert_eq!(users.int("name", APP_USER, "current_connections"), 1);
    assert_eq!(users.int("name", OPS_USER, "current_client_connections"), 1);

    let lists = console.query("SHOW LISTS").await.table().clone();
    assert_eq!(lists.rows.len(), 14);
    assert_eq!(lists.int("list", "databases", "items"), 1);
    assert_eq!(lists.int("list", "users", "items"), 4);
    // One pool per user with a backend login: app, other, ops, watcher.
    assert_eq!(lists.int("list", "pools", "items"), 4);
    assert_eq!(lists.int("list", "used_clients", "items"), 2);
    assert_eq!(lists.int("list", "used_servers", "items"), 1);

    let config = console.query("SHOW CONFIG").await.table().clone();
    let value = |key| {
        config
            .cell(config.row_where("key", key), "value")
            .map(str::to_string)
    };
    let changeable = |key| {
        config
            .cell(config.row_where("key", key), "changeable")
            .map(str::to_string)
    };
    assert_eq!(value("max_client_conn").as_deref(), Some("10000"));
    assert_eq!(value("admin.users").as_deref(), Some(OPS_USER));
    assert_eq!(value("databases[0].pool_size").as_deref(), Some("5"));
    assert_eq!(changeable("listen.addr").as_deref(), Some("no"));
    assert_eq!(
        changeable("limits.query_wait_timeout").as_deref(),
        Some("yes")
    );
    assert!(
        config
            .rows
            .iter()
            .all(|r| !r.iter().flatten().any(|v| v.contains(APP_PASSWORD))),
        "SHOW CONFIG must not show passwords"
    );
}

#[tokio::test]
async fn psql_shows_pools_and_clients() {
    let handle = start_proxy(console_config(pg())).await;
    let app = named_client(&handle, "psql-visible").await;
    app.simple_query("SELECT 1").await.unwrap();
    let addr = handle.client_addr();
    let pools = psql(addr, WATCHER_USER, WATCHER_PASSWORD, "SHOW POOLS").await;
    let mut lines = pools.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("database|user|cl_active|cl_waiting|"),
        "{pools}"
    );
    assert!(
        lines.any(|l| l.starts_with(&format!("{APP_DB}|{APP_USER}|1|0|"))),
        "{pools}"
    );
    let clients = psql(addr, OPS_USER, OPS_PASSWORD, "show clients;").await;
    assert!(clients.contains("|psql-visible|"), "{clients}");
}

#[tokio::test]
async fn the_console_follows_the_tls_rules_of_the_client_port() {
    let dir = pg().scratch_dir("console-tls");
    let (cert, key, ca) = proxy_cert(&dir);
    let mut config = console_config(pg());
    config.tls.mode = pgferry::config::ClientTlsMode::Require;
    config.tls.cert_file = Some(cert);
    config.tls.key_file = Some(key);
    let handle = start_proxy(config).await;
    let addr = handle.client_addr();
    let plain = connect(addr, OPS_USER, OPS_PASSWORD, "pgbouncer").await;
    let message = expect_sqlstate(plain, "28000");
    assert!(message.contains("requires TLS"), "{message}");
    let client = connect_tls(addr, OPS_USER, OPS_PASSWORD, "pgbouncer", &ca)
        .await
        .expect("console over TLS");
    let (names, rows) = simple_rows(&client.simple_query("SHOW CLIENTS").await.unwrap());
    let tls = names.iter().position(|n| n == "tls").unwrap_or(usize::MAX);
    let database = names
        .iter()
        .position(|n| n == "database")
        .unwrap_or(usize::MAX);
    let me = rows
        .iter()
        .find(|r| r[database].as_deref() == Some("pgbouncer"))
        .expect("the console lists itself");
    assert_eq!(me[tls].as_deref(), Some("TLS"));
}

#[tokio::test]
async fn md5_logins_reach_the_console_where_md5_is_allowed() {
    let mut config = console_config(pg());
    config.auth.allow_md5 = true;
    let handle = start_proxy(config).await;
    // RawClient answers whichever challenge comes: with allow_md5 and a plaintext password it
    // is md5, so this login goes the md5 way.
    let mut raw = RawClient::login(handle.client_addr(), OPS_USER, OPS_PASSWORD, "pgferry").await;
    let mut query = bytes::BytesMut::new();
    frontend::query(&mut query, "SHOW VERSION");
    raw.send(&query).await;
    assert_eq!(raw.read_until_ready().await, [b'T', b'D', b'C', b'Z']);
}
