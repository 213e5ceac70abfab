//! Real command-line clients through pgferry: a psql round trip (including libpq's fastpath
//! function calls via large objects) and a short pgbench select-only run.

mod support;

use std::process::Command;

use support::*;

fn libpq_env(cmd: &mut Command, addr: std::net::SocketAddr) -> &mut Command {
    cmd.env("PGHOST", addr.ip().to_string())
        .env("PGPORT", addr.port().to_string())
        .env("PGUSER", APP_USER)
        .env("PGPASSWORD", APP_PASSWORD)
        .env("PGDATABASE", APP_DB)
        .env("PGSSLMODE", "disable")
}

fn run(cmd: &mut Command) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{cmd:?} failed: {stdout}\n{stderr}"
    );
    stdout
}

#[tokio::test]
async fn psql_round_trip_with_fastpath_function_calls() {
    let handle = start_proxy(proxy_config(pg())).await;
    let addr = handle.client_addr();
    // In the test server's scratch space, which the support's watchdog deletes.
    let file = pg().scratch_dir("psql").join("large-object");
    std::fs::write(&file, b"large object payload").unwrap();
    let script = format!(
        "SELECT 40 + 2 AS answer;\nBEGIN;\n\\lo_import {path}\nSELECT count(*) FROM pg_largeobject_metadata WHERE oid = :LASTOID;\nROLLBACK;\n\n",
        path = file.display()
    );
    let script_file = file.with_extension("sql");
    std::fs::write(&script_file, script).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        let args = ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f"];
        run(libpq_env(&mut Command::new(pg_bin("psql")), addr)
            .args(args)
            .arg(&script_file))
    })
    .await
    .unwrap();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.first(), Some(&"42"), "{output}");
    assert_eq!(lines.last(), Some(&"1"), "{output}");
}

#[tokio::test]
async fn pgbench_runs_in_every_query_mode_without_errors() {
    let mut config = proxy_config(pg());
    config.databases[0].pool_size = 4;
    let handle = start_proxy(config).await;
    let addr = handle.client_addr();
    let outputs = tokio::task::spawn_blocking(move || {
        run(libpq_env(&mut Command::new(pg_bin("pgbench")), addr).args(["-i", "-s", "1", "-q"]));
        ["simple", "extended", "prepared"]
            .map(|mode| {
                let args = ["-S", "-c", "16", "-j", "2", "-t", "100", "-n", "-M", mode];
                (
                    mode,
                    run(libpq_env(&mut Command::new(pg_bin("pgbench")), addr).args(args)),
                )
            })
            .to_vec()
    })
    .await
    .unwrap();
    for (mode, output) in outputs {
        assert!(
            output.contains("number of transactions actually processed: 1600/1600"),
            "-M {mode}: {output}"
        );
        assert!(
            output.contains("number of failed transactions: 0"),
            "-M {mode}: {output}"
        );
    }
}
