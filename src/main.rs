//! The `pgferry` binary: run the proxy, check a configuration, or hash a password.

use std::io::BufRead;
use std::process::ExitCode;

use clap::Parser;
use pgferry::config::cli::{Cli, Command};
use pgferry::config::{Config, LogFormat};
use pgferry::control::ShutdownMode;
use pgferry::Proxy;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::CheckConfig { file }) => check_config(file),
        Some(Command::HashPassword { .. }) => hash_password(),
        None => run(&cli),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::from_file(file) {
        Ok(config) => {
            println!("{}: OK", file.display());
            print!("{}", config.describe_pools());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Reads one password line from stdin and prints its SCRAM-SHA-256 secret for the config file,
/// so plaintext passwords need not be stored.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err()
        || line.trim_end_matches(['\r', '\n']).is_empty()
    {
        eprintln!("hash-password: expected the password on standard input");
        return ExitCode::FAILURE;
    }
    println!(
        "{}",
        pgferry::auth::hash_password(line.trim_end_matches(['\r', '\n']))
    );
    ExitCode::SUCCESS
}

fn run(cli: &Cli) -> ExitCode {
    let config = match cli.resolve_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("pgferry: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.runtime.worker_threads > 0 {
        builder.worker_threads(config.runtime.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pgferry: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> ExitCode {
    let handle = match Proxy::start(config).await {
        Ok(handle) => handle,
        Err(error) => {
            tracing::error!(%error, "pgferry could not start");
            eprintln!("pgferry: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mode = tokio::select! {
        () = wait_for_signal() => ShutdownMode::Immediate,
        mode = handle.shutdown_requested() => mode,
    };
    tracing::info!(?mode, "shutting down");
    handle.shutdown_as(mode).await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_logs())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

/// Colour only where a human watches a terminal: logs written to a file, a pipe or journald
/// must be plain text (escape codes break grep and log shippers). `NO_COLOR` set to anything
/// non-empty turns colour off (https://no-color.org).
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_colour && std::io::stderr().is_terminal()
}
