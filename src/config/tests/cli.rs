use super::{TempDir, MINIMAL};
use crate::config::cli::{Cli, Command};
use crate::config::*;
use clap::{CommandFactory, Parser};
use std::path::PathBuf;
use std::time::Duration;

const FILE: &str = r#"
[listen]
addr = "127.0.0.1:1111"
[metrics]
listen = "127.0.0.1:2222"
[log]
format = "human"
level = "warn"
"#;

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("pgferry").chain(args.iter().copied())).unwrap()
}

fn config_file(dir: &TempDir, extra_db: &str) -> String {
    let text = format!("{FILE}{MINIMAL}pool_size = 3\n{extra_db}");
    dir.file("pgferry.toml", &text).display().to_string()
}

#[test]
fn file_values_apply_without_flags() {
    let dir = TempDir::new();
    let path = config_file(&dir, "");
    let c = parse(&["--config", &path]).resolve_config().unwrap();
    assert_eq!(c.listen.addr.to_string(), "127.0.0.1:1111");
    assert_eq!(
        c.metrics.listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:2222")
    );
    assert_eq!(
        (c.log.format, c.log.level.as_str()),
        (LogFormat::Human, "warn")
    );
    assert_eq!(c.databases[0].pool_size, 3);
}

#[test]
fn flags_override_the_file() {
    let dir = TempDir::new();
    let path = config_file(
        &dir,
        "[[databases]]\nname = \"b\"\nhost = \"h2\"\npool_size = 9\n",
    );
    let cli = parse(&[
        "--config",
        &path,
        "--listen",
        "127.0.0.1:7000",
        "--metrics-listen",
        "off",
        "--pool-size",
        "7",
        "--pool-mode",
        "session",
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "--worker-threads",
        "1",
    ]);
    let c = cli.resolve_config().unwrap();
    assert_eq!(c.runtime.worker_threads, 1);
    assert_eq!(c.listen.addr.to_string(), "127.0.0.1:7000");
    assert_eq!(c.metrics.listen, None);
    assert_eq!(
        (c.log.format, c.log.level.as_str()),
        (LogFormat::Json, "debug")
    );
    for db in &c.databases {
        assert_eq!((db.pool_size, db.pool_mode), (7, PoolMode::Session));
    }
    assert_eq!(c.databases[1].host, "h2");
    assert_eq!(c.databases[1].server_lifetime, Duration::from_secs(3600));
}

#[test]
fn tls_flags_override_and_are_validated_against_the_file_origin() {
    let dir = TempDir::new();
    let path = config_file(&dir, "");
    let err = parse(&["--config", &path, "--tls-mode", "require"])
        .resolve_config()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{path}: tls.cert_file: required when tls.mode is \"require\"")
    );
    let cert = dir.file("c.pem", "x").display().to_string();
    let key = dir.file("k.pem", "x").display().to_string();
    let cli = parse(&[
        "--config",
        &path,
        "--tls-mode",
        "allow",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let c = cli.resolve_config().unwrap();
    assert_eq!(
        (c.tls.mode, c.tls.cert_file),
        (ClientTlsMode::Allow, Some(PathBuf::from(&cert)))
    );
}

#[test]
fn quick_mode_from_flags() {
    let dir = TempDir::new();
    let cert = dir.file("c.pem", "x").display().to_string();
    let key = dir.file("k.pem", "x").display().to_string();
    let url = "postgres://app:pw@db.internal/app";
    let cli = parse(&[
        "--backend",
        url,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--log-level",
        "trace",
    ]);
    let c = cli.resolve_config().unwrap();
    assert_eq!(c.tls.mode, ClientTlsMode::Require);
    assert_eq!(c.log.level, "trace");
    assert_eq!(c.metrics.listen, Some(DEFAULT_METRICS_LISTEN));
    let c = parse(&["--backend", url, "--tls-mode", "disable"])
        .resolve_config()
        .unwrap();
    assert_eq!(c.tls.mode, ClientTlsMode::Disable);
    let err = parse(&["--backend", url, "--log-level", "a=b=c"])
        .resolve_config()
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("command line: log.level: invalid filter"),
        "{err}"
    );
}

#[test]
fn config_or_backend_is_required_and_exclusive() {
    let err = parse(&[]).resolve_config().unwrap_err().to_string();
    assert_eq!(
        err,
        "command line: --config/--backend: one of them is required to run the proxy (see --help)"
    );
    let both = Cli::try_parse_from([
        "pgferry",
        "--config",
        "a.toml",
        "--backend",
        "postgres://u:p@h/d",
    ]);
    assert_eq!(
        both.unwrap_err().kind(),
        clap::error::ErrorKind::ArgumentConflict
    );
}

#[test]
fn flag_values_are_checked_by_clap() {
    for bad in [
        ["--pool-size", "0"],
        ["--pool-mode", "statement"],
        ["--metrics-listen", "nowhere"],
        ["--listen", "x"],
    ] {
        assert!(
            Cli::try_parse_from(["pgferry", bad[0], bad[1]]).is_err(),
            "{bad:?}"
        );
    }
    assert_eq!(
        parse(&["--metrics-listen", "[::1]:9"])
            .metrics_listen
            .map(|m| m != MetricsListen::Off),
        Some(true)
    );
}

#[test]
fn subcommands() {
    let cli = parse(&["check-config", "/etc/pgferry/pgferry.toml"]);
    assert_eq!(
        cli.command,
        Some(Command::CheckConfig {
            file: "/etc/pgferry/pgferry.toml".into()
        })
    );
    let cli = parse(&["hash-password", "--password-stdin"]);
    assert_eq!(
        cli.command,
        Some(Command::HashPassword {
            password_stdin: true
        })
    );
    assert_eq!(
        parse(&["hash-password"]).command,
        Some(Command::HashPassword {
            password_stdin: false
        })
    );
}

#[test]
fn every_flag_has_help() {
    let cmd = Cli::command();
    cmd.clone().debug_assert();
    let mut all: Vec<clap::Command> = vec![cmd.clone()];
    all.extend(cmd.get_subcommands().cloned());
    for c in &all {
        for arg in c
            .get_arguments()
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        {
            assert!(
                arg.get_help().is_some(),
                "{} --{} has no help",
                c.get_name(),
                arg.get_id()
            );
        }
    }
}
