//! A real third-party consumer of the admin console: PyPI's prometheus-pgbouncer-exporter
//! (Python, psycopg2, simple protocol) pointed at pgferry's `pgbouncer` database must report
//! pgferry's pools, databases, stats and config. Also checks the columns the Go exporter
//! (prometheus-community/pgbouncer_exporter) relies on.
//!
//! The exporter is installed by `tests/exporter/install.sh` (pinned, cached under the target
//! dir); if it cannot be installed the tests fail, they never skip.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::console::*;
use support::probe::*;
use support::*;

/// The exporter process, killed when the test ends (however it ends).
struct Exporter {
    child: Child,
    port: u16,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the exporter against the console at `console` as the stats user.
fn start_exporter(console: std::net::SocketAddr) -> Exporter {
    let executable = support::installed::installed("exporter")
        .join("venv")
        .join("bin")
        .join("pgbouncer-exporter");
    let port = free_port();
    let dir = pg().scratch_dir(&format!("exporter-{port}"));
    let config = dir.join("exporter.yml");
    let yaml = format!(
        "exporter_host: 127.0.0.1\nexporter_port: {port}\npgbouncers:\n  - dsn: \
         postgresql://{WATCHER_USER}:{WATCHER_PASSWORD}@{}:{}/pgbouncer?sslmode=disable\n    \
         connect_timeout: 5\n",
        console.ip(),
        console.port()
    );
    std::fs::write(&config, yaml).expect("exporter config written");
    let child = Command::new("timeout")
        .args(["--kill-after=5", "300"])
        .arg(&executable)
        .arg("--config")
        .arg(&config)
        .arg("--log-file")
        .arg(dir.join("exporter.log"))
        .env("PYTHONWARNINGS", "ignore")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", executable.display()));
    Exporter { child, port }
}

/// Scrapes the exporter until it answers with `pgbouncer_up` (bounded: 30 s; the exporter is a
/// Python process that needs a moment to listen).
async fn scrape(exporter: &mut Exporter) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], exporter.port));
    loop {
        if let Ok(Some(status)) = exporter.child.try_wait() {
            panic!("the exporter exited early: {status}");
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let (status, body) = http_get(addr, "/metrics").await;
            if status == 200 && body.contains("pgbouncer_up") {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the exporter never served metrics"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_pgbouncer_exporter_reports_pgferrys_pools_databases_and_stats() {
    let handle = start_proxy(console_config(pg())).await;
    let app = app_client(&handle).await;
    for _ in 0..3 {
        app.simple_query("SELECT 1").await.unwrap();
    }
    // A second client holds its connection inside a transaction: one active server.
    let holder = app_client(&handle).await;
    holder.simple_query("BEGIN; SELECT 1").await.unwrap();
    let mut exporter = start_exporter(handle.client_addr());
    let text = scrape(&mut exporter).await;
    let log = std::fs::read_to_string(
        pg().scratch_dir(&format!("exporter-{}", exporter.port))
            .join("exporter.log"),
    )
    .unwrap_or_default();
    assert_eq!(metric(&text, "pgbouncer_up"), 1.0, "{text}\n{log}");
    let pool = format!("{{database=\"{APP_DB}\",user=\"{APP_USER}\"}}");
    let series = |name: &str, labels: &str| metric(&text, &format!("{name}{labels}"));
    assert_eq!(
        series("pgbouncer_pools_client_active_connections", &pool),
        2.0,
        "{text}"
    );
    assert_eq!(
        series("pgbouncer_pools_client_waiting_connections", &pool),
        0.0
    );
    assert_eq!(
        series("pgbouncer_pools_server_active_connections", &pool),
        1.0,
        "{text}"
    );
    // The holder took the connection the SELECTs used: one server, active.
    assert_eq!(
        series("pgbouncer_pools_server_idle_connections", &pool),
        0.0,
        "{text}"
    );
    assert!(text.contains(&format!("pgbouncer_pools_client_maxwait_seconds{pool}")));
    let db = format!("{{database=\"{APP_DB}\"}}");
    assert_eq!(
        series("pgbouncer_stats_transactions_total", &db),
        3.0,
        "{text}"
    );
    // Three SELECTs plus the holder's open `BEGIN; SELECT 1` (one Query, one ReadyForQuery).
    assert_eq!(series("pgbouncer_stats_queries_total", &db), 4.0, "{text}");
    assert!(
        series("pgbouncer_stats_queries_duration_microseconds_total", &db) > 0.0,
        "{text}"
    );
    let backend = format!("{{backend_database=\"{APP_DB}\",database=\"{APP_DB}\"}}");
    assert_eq!(
        series("pgbouncer_databases_database_pool_size", &backend),
        5.0,
        "{text}"
    );
    assert_eq!(
        series("pgbouncer_databases_database_current_connections", &backend),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "pgbouncer_config_max_client_conn"),
        10000.0,
        "{text}"
    );
    assert!(
        text.contains("pgbouncer_config_max_user_connections 0.0"),
        "{text}"
    );
    holder.simple_query("COMMIT").await.unwrap();
}

/// What prometheus-community's Go pgbouncer_exporter requires of the console (it marks
/// pgbouncer_up 0 on any mismatch): SHOW VERSION exactly one `version` column; SHOW LISTS
/// exactly two columns with numeric items; SHOW CONFIG three or four columns with
/// max_client_conn and max_user_connections numeric; the columns it reads by name elsewhere.
#[tokio::test]
async fn the_go_exporters_expectations_hold() {
    let handle = start_proxy(console_config(pg())).await;
    let _app = app_client(&handle).await;
    let mut console = ConsoleClient::login(
        handle.client_addr(),
        WATCHER_USER,
        WATCHER_PASSWORD,
        "pgbouncer",
    )
    .await;
    let version = console.query("SHOW VERSION").await.table().clone();
    assert_eq!(version.names(), ["version"]);
    let lists = console.query("SHOW LISTS").await.table().clone();
    assert_eq!(lists.names().len(), 2);
    for row in &lists.rows {
        let items = lists.cell(row, "items").unwrap_or_default();
        assert!(items.parse::<f64>().is_ok(), "items {items:?}");
    }
    let config = console.query("SHOW CONFIG").await.table().clone();
    assert!((3..=4).contains(&config.names().len()));
    for key in ["max_client_conn", "max_user_connections"] {
        let value = config
            .cell(config.row_where("key", key), "value")
            .unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "{key} = {value:?}");
    }
    let needs: [(&str, &[&str]); 5] = [
        ("CLIENTS", &["database", "user", "state"]),
        (
            "DATABASES",
            &[
                "name",
                "host",
                "port",
                "database",
                "force_user",
                "pool_mode",
                "pool_size",
                "reserve_pool_size",
                "max_connections",
                "current_connections",
                "paused",
                "disabled",
            ],
        ),
        (
            "STATS_TOTALS",
            &[
                "database",
                "xact_count",
                "query_count",
                "xact_time",
                "query_time",
                "wait_time",
            ],
        ),
        (
            "POOLS",
            &[
                "database",
                "user",
                "cl_active",
                "cl_waiting",
                "sv_active",
                "maxwait",
            ],
        ),
        (
            "STATS",
            &["database", "total_xact_count", "total_query_time"],
        ),
    ];
    for (show, columns) in needs {
        let table = console.query(&format!("SHOW {show}")).await.table().clone();
        for column in columns {
            assert!(table.names().contains(column), "SHOW {show} lacks {column}");
        }
        assert!(!table.rows.is_empty(), "SHOW {show} has no rows");
    }
}
