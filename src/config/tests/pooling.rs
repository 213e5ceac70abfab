//! The `[pooling]` section: defaults, parsing, range checks and the `--pinning` override.

use super::{load_err, TempDir, MINIMAL};
use crate::config::cli::Cli;
use crate::config::*;
use clap::{CommandFactory, Parser};

fn load(text: &str) -> Config {
    match Config::from_toml_str(text, "pgferry.toml") {
        Ok(c) => c,
        Err(e) => panic!("{e} for:\n{text}"),
    }
}

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("pgferry").chain(args.iter().copied())).unwrap()
}

#[test]
fn defaults_without_a_pooling_section() {
    let p = load(MINIMAL).pooling;
    assert_eq!(p.pinning, PinningMode::Pin);
    assert_eq!(
        (
            p.max_prepared_statements_per_client,
            p.max_prepared_statements_per_server,
            p.max_cached_statements
        ),
        (1000, 500, 10_000)
    );
    let d = PoolingConfig::default();
    assert_eq!(
        (d.pinning, d.max_prepared_statements_per_client),
        (p.pinning, p.max_prepared_statements_per_client)
    );
    assert_eq!(
        load(&format!("[pooling]\n{MINIMAL}"))
            .pooling
            .max_cached_statements,
        10_000
    );
}

#[test]
fn every_key_is_parsed() {
    let text = format!(
        "[pooling]\npinning = \"error\"\nmax_prepared_statements_per_client = 7\n\
         max_prepared_statements_per_server = 100000\nmax_cached_statements = 10000000\n{MINIMAL}"
    );
    let p = load(&text).pooling;
    assert_eq!(p.pinning, PinningMode::Error);
    assert_eq!(
        (
            p.max_prepared_statements_per_client,
            p.max_prepared_statements_per_server,
            p.max_cached_statements
        ),
        (7, 100_000, 10_000_000)
    );
    for (name, mode) in [("pin", PinningMode::Pin), ("ignore", PinningMode::Ignore)] {
        let text = format!("[pooling]\npinning = \"{name}\"\n{MINIMAL}");
        assert_eq!(load(&text).pooling.pinning, mode);
    }
}

#[test]
fn each_invalid_value_names_its_key() {
    let per = |side: &str, v: &str| {
        (
            format!("max_prepared_statements_per_{side} = {v}"),
            format!(
                "pooling.max_prepared_statements_per_{side}: must be between 1 and 100000, got {v}"
            ),
        )
    };
    let mut cases = vec![
        (
            "pinning = \"pinned\"".to_string(),
            "pooling.pinning: expected one of \"pin\", \"ignore\", \"error\", got \"pinned\""
                .to_string(),
        ),
        (
            "max_cached_statements = 0".to_string(),
            "pooling.max_cached_statements: must be between 1 and 10000000, got 0".to_string(),
        ),
        (
            "max_cached_statements = 10000001".to_string(),
            "pooling.max_cached_statements: must be between 1 and 10000000, got 10000001"
                .to_string(),
        ),
    ];
    for side in ["client", "server"] {
        cases.extend([per(side, "0"), per(side, "100001"), per(side, "-3")]);
    }
    for (line, want) in cases {
        let err = load_err(&format!("[pooling]\n{line}\n{MINIMAL}"));
        assert_eq!(err, format!("pgferry.toml: {want}"));
    }
}

#[test]
fn unknown_keys_and_wrong_types_are_located() {
    let err = load_err(&format!("[pooling]\npining = \"pin\"\n{MINIMAL}"));
    assert!(
        err.starts_with("pgferry.toml: line 2, column 1: unknown field `pining`"),
        "{err}"
    );
    let err = load_err(&format!(
        "[pooling]\nmax_cached_statements = \"lots\"\n{MINIMAL}"
    ));
    assert!(
        err.starts_with("pgferry.toml: line 2, column 25: invalid type"),
        "{err}"
    );
}

#[test]
fn validate_checks_programmatic_pooling() {
    let mut c = load(MINIMAL);
    c.pooling.max_prepared_statements_per_server = 0;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "config: pooling.max_prepared_statements_per_server: must be between 1 and 100000, got 0"
    );
    c.pooling.max_prepared_statements_per_server = 1;
    c.pooling.max_cached_statements = usize::MAX;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        format!(
            "config: pooling.max_cached_statements: must be between 1 and 10000000, got {}",
            i64::MAX
        )
    );
}

#[test]
fn pinning_flag_overrides_file_and_quick_mode() {
    let dir = TempDir::new();
    let text = format!("[pooling]\npinning = \"ignore\"\nmax_cached_statements = 42\n{MINIMAL}");
    let path = dir.file("pgferry.toml", &text).display().to_string();
    let c = cli(&["--config", &path]).resolve_config().unwrap();
    assert_eq!(c.pooling.pinning, PinningMode::Ignore);
    let c = cli(&["--config", &path, "--pinning", "error"])
        .resolve_config()
        .unwrap();
    assert_eq!(
        (c.pooling.pinning, c.pooling.max_cached_statements),
        (PinningMode::Error, 42)
    );
    let url = "postgres://app:pw@db.internal/app";
    let c = cli(&["--backend", url]).resolve_config().unwrap();
    assert_eq!(c.pooling.pinning, PinningMode::Pin);
    let c = cli(&["--backend", url, "--pinning", "ignore"])
        .resolve_config()
        .unwrap();
    assert_eq!(c.pooling.pinning, PinningMode::Ignore);
}

#[test]
fn pinning_flag_is_checked_and_has_an_env_var() {
    let err = Cli::try_parse_from(["pgferry", "--pinning", "sometimes"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
    let cmd = Cli::command();
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_id() == "pinning")
        .unwrap();
    assert_eq!(
        arg.get_env().and_then(|e| e.to_str()),
        Some("PGFERRY_PINNING")
    );
    let names: Vec<_> = arg
        .get_possible_values()
        .iter()
        .map(|v| v.get_name().to_string())
        .collect();
    assert_eq!(names, ["pin", "ignore", "error"]);
}
