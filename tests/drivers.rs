//! Real client drivers against pgferry in transaction mode: psycopg 3, asyncpg and
//! node-postgres scripts (tests/drivers/) run 20 concurrent clients through a pool of 3, so
//! clients hop between backends while relying on prepared statements and session state.
//!
//! The drivers are installed once per test binary by `tests/drivers/install.sh` (pinned
//! versions, cached under the target dir). A missing Python/Node runtime fails the tests: they
//! must run in CI. Each script also runs straight against PostgreSQL, which proves the scripts
//! themselves are right whenever a proxied run fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pgferry::config::PoolMode;
use support::*;

/// Backends in the pool: far fewer than the scripts' 20 clients, so clients hop.
const POOL_SIZE: u32 = 3;
/// Upper bound for one script run; the scripts also bound each feature (120 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

/// A driver script and the runtime that runs it.
#[derive(Clone, Copy, Debug)]
enum Script {
    Psycopg,
    Asyncpg,
    NodePg,
    SessionState,
}

impl Script {
    const ALL: [Script; 4] = [
        Script::Psycopg,
        Script::Asyncpg,
        Script::NodePg,
        Script::SessionState,
    ];

    fn file(self) -> &'static str {
        match self {
            Script::Psycopg => "psycopg_compat.py",
            Script::Asyncpg => "asyncpg_compat.py",
            Script::NodePg => "node_pg_compat.js",
            Script::SessionState => "session_state.py",
        }
    }

    /// The command that runs this script with the installed drivers, killed by coreutils
    /// `timeout` (exit status 124) if it outlives [`SCRIPT_TIMEOUT`].
    fn command(self, drivers: &Path) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.arg("--kill-after=10")
            .arg(SCRIPT_TIMEOUT.as_secs().to_string());
        match self {
            Script::NodePg => {
                cmd.arg("node")
                    .env("NODE_PATH", drivers.join("node").join("node_modules"));
            }
            _ => {
                cmd.arg(drivers.join("venv").join("bin").join("python"));
            }
        }
        cmd.arg(scripts_dir().join(self.file()))
            .current_dir(scripts_dir());
        cmd
    }
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("drivers")
}

/// Where a script connects and the tag that keeps its table names apart from other runs.
struct Target {
    host: String,
    port: u16,
    tag: &'static str,
}

/// Runs `script` against `target`, panicking with its whole output unless it exits with 0.
async fn run_script(script: Script, target: &Target) {
    let drivers = support::installed::installed("drivers");
    let mut cmd = script.command(&drivers);
    cmd.env("PGHOST", &target.host)
        .env("PGPORT", target.port.to_string())
        .env("PGUSER", APP_USER)
        .env("PGPASSWORD", APP_PASSWORD)
        .env("PGDATABASE", APP_DB)
        .env("PGSSLMODE", "disable")
        .env("PGF_TAG", target.tag)
        .env("PGF_CLIENTS", "20")
        .stdin(Stdio::null());
    let what = format!("{} against {}", script.file(), target.tag);
    // The proxy runs on this test's runtime: wait for the script off it.
    let output = match tokio::task::spawn_blocking(move || cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("cannot run {what}: {e}"),
        Err(e) => panic!("waiting for {what} failed: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{text}",
        output.status
    );
    println!("{what}:\n{text}");
}

/// Starts pgferry in transaction mode with a pool of [`POOL_SIZE`] and runs `script` through it.
async fn run_through_pgferry(script: Script) {
    support::installed::installed("drivers");
    let mut config = proxy_config(pg());
    for db in &mut config.databases {
        db.pool_mode = PoolMode::Transaction;
        db.pool_size = POOL_SIZE;
    }
    // Pinned sessions queue behind each other for the 3 backends: waits are long but legal.
    config.limits.query_wait_timeout = Duration::from_secs(120);
    let handle = start_proxy(config).await;
    let addr = handle.client_addr();
    let target = Target {
        host: addr.ip().to_string(),
        port: addr.port(),
        tag: "pgferry",
    };
    run_script(script, &target).await;
    handle.shutdown().await;
}

#[tokio::test]
async fn psycopg_through_pgferry() {
    run_through_pgferry(Script::Psycopg).await;
}

#[tokio::test]
async fn asyncpg_through_pgferry() {
    run_through_pgferry(Script::Asyncpg).await;
}

#[tokio::test]
async fn node_pg_through_pgferry() {
    run_through_pgferry(Script::NodePg).await;
}

#[tokio::test]
async fn session_state_through_pgferry() {
    run_through_pgferry(Script::SessionState).await;
}

/// Baseline: every script passes straight against PostgreSQL, so a proxied failure is
/// pgferry's, not the script's.
#[tokio::test]
async fn all_scripts_pass_directly_against_postgres() {
    let server = pg();
    let target = Target {
        host: server.host.clone(),
        port: server.port,
        tag: "direct",
    };
    for script in Script::ALL {
        run_script(script, &target).await;
    }
}
