//! `pgferry sizing` end to end: the real binary's human output, its JSON (parsed), and the exit
//! codes and messages of bad input.

use std::process::{Command, Output};

fn sizing(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .arg("sizing")
        .args(args)
        .output()
        .expect("the pgferry binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_usage_error(output: &Output, needle: &str) {
    assert_eq!(output.status.code(), Some(2), "stderr: {}", stderr(output));
    assert!(stdout(output).is_empty(), "stdout: {}", stdout(output));
    assert!(
        stderr(output).contains(needle),
        "stderr: {}",
        stderr(output)
    );
}

#[test]
fn human_output_shows_the_arithmetic_and_a_snippet_that_agrees() {
    let output = sizing(&[
        "--instance-class",
        "db.t4g.medium",
        "--replicas",
        "3",
        "--users",
        "2",
        "--reserved",
        "10",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let text = stdout(&output);
    let value = |label: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(label)).expect(label);
        let rest = line[label.len()..].trim();
        rest.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect(line)
    };
    let max = value("default max_connections");
    assert!((380..=430).contains(&max), "{text}");
    let available = value("available");
    assert_eq!(available, max - 3 - 2 - 10);
    let budget = value("budget");
    assert_eq!(budget, available * 80 / 100);
    let per_replica = value("per replica (max_db_connections)");
    assert_eq!(per_replica, budget / 3);
    let pool = value("per pool (pool_size)");
    assert_eq!(pool, per_replica / 2);
    assert!(text.contains("db.t4g.medium (burstable)"), "{text}");
    assert!(text.contains("4.00 GiB"), "{text}");
    assert!(text.contains("[[databases]]"), "{text}");
    assert!(text.contains(&format!("pool_size = {pool}\n")), "{text}");
    assert!(
        text.contains(&format!("max_db_connections = {per_replica}\n")),
        "{text}"
    );
}

#[test]
fn json_output_parses_and_matches_the_documented_serverless_table() {
    let output = sizing(&[
        "--instance-class",
        "db.serverless",
        "--min-acu",
        "1",
        "--max-acu",
        "16",
        "--replicas",
        "2",
        "--json",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let json: serde_json::Value =
        serde_json::from_str(stdout(&output).trim()).expect("one JSON object");
    assert_eq!(json["target"]["max_connections"], 3360);
    assert_eq!(json["target"]["memory_bytes"], 32u64 << 30);
    assert_eq!(json["plan"]["available"], 3355);
    assert_eq!(json["plan"]["budget"], 2684);
    assert_eq!(json["plan"]["per_replica"], 1342);
    assert_eq!(json["plan"]["pool_size"], 1342);
    let snippet = json["config_snippet"]
        .as_str()
        .expect("snippet is a string");
    assert!(snippet.contains("pool_size = 1342\n"), "{snippet}");
}

#[test]
fn unknown_class_lists_the_known_families() {
    let output = sizing(&["--instance-class", "db.x2g.large"]);
    assert_usage_error(&output, "unknown instance class \"db.x2g.large\"");
    for family in [
        "db.t3.*",
        "db.t4g.*",
        "db.m7i.*",
        "db.r7g.*",
        "db.serverless",
    ] {
        assert!(stderr(&output).contains(family), "{}", stderr(&output));
    }
    let output = sizing(&["--instance-class", "db.t4g.huge"]);
    assert_usage_error(&output, "db.t4g comes in micro, small, medium");
}

#[test]
fn invalid_numbers_are_precise_errors() {
    let class = ["--instance-class", "db.t3.micro"];
    let with = |extra: &[&str]| sizing(&[&class[..], extra].concat());
    assert_usage_error(
        &with(&["--replicas", "0"]),
        "--replicas must be at least 1, got 0",
    );
    assert_usage_error(
        &with(&["--users", "0"]),
        "--users must be at least 1, got 0",
    );
    assert_usage_error(
        &with(&["--percent", "0"]),
        "--percent must be between 1 and 100, got 0",
    );
    assert_usage_error(
        &with(&["--percent", "101"]),
        "--percent must be between 1 and 100, got 101",
    );
    assert_usage_error(
        &with(&["--replicas=-1"]),
        "invalid value '-1' for '--replicas <N>'",
    );
    assert_usage_error(
        &with(&["--reserved", "ten"]),
        "invalid value 'ten' for '--reserved <N>'",
    );
    assert_usage_error(
        &with(&["--reserved", "500"]),
        "leave nothing of max_connections",
    );
    assert_usage_error(
        &with(&["--replicas", "70"]),
        "cannot give each of 1 pools one connection",
    );
}

#[test]
fn serverless_needs_a_valid_capacity() {
    assert_usage_error(
        &sizing(&["--instance-class", "db.serverless"]),
        "needs --max-acu",
    );
    assert_usage_error(
        &sizing(&["--instance-class", "db.serverless", "--max-acu", "8.25"]),
        "is not an ACU value",
    );
    assert_usage_error(
        &sizing(&[
            "--instance-class",
            "db.serverless",
            "--min-acu",
            "8",
            "--max-acu",
            "4",
        ]),
        "invalid capacity range",
    );
    assert_usage_error(
        &sizing(&["--instance-class", "db.r6g.large", "--max-acu", "4"]),
        "only apply to --instance-class db.serverless",
    );
}
