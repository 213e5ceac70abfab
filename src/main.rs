//! The `pgferry` binary: run the proxy, check a configuration, hash a password, size pools
//! for an RDS instance class, or print an RDS IAM token.

use std::io::BufRead;
use std::process::ExitCode;

use clap::Parser;
use pgferry::config::cli::{Cli, Command};
use pgferry::config::{Config, LogFormat};
use pgferry::control::ShutdownMode;
use pgferry::reload::{LogFilterHook, Reloader};
use pgferry::Proxy;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::CheckConfig { file }) => check_config(file),
        Some(Command::HashPassword { .. }) => hash_password(),
        Some(Command::Sizing(args)) => pgferry::sizing::main(args),
        Some(Command::RdsToken(args)) => pgferry::aws::command::run(args),
        None => run(cli),
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

fn run(cli: Cli) -> ExitCode {
    let config = match cli.resolve_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("pgferry: {error}");
            return ExitCode::from(2);
        }
    };
    let log_filter = init_logging(&config);
    // A reload reads the same file with the same flags and environment as start-up.
    let reloader =
        Reloader::new(Box::new(move || cli.resolve_config())).with_log_filter(log_filter);
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
    runtime.block_on(serve(config, reloader))
}

async fn serve(config: Config, reloader: Reloader) -> ExitCode {
    let handle = match Proxy::start_with(config, reloader).await {
        Ok(handle) => handle,
        Err(error) => {
            tracing::error!(%error, "pgferry could not start");
            eprintln!("pgferry: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mode = tokio::select! {
        () = wait_for_stop_reloading_on_hangup(&handle) => ShutdownMode::Immediate,
        mode = handle.shutdown_requested() => mode,
    };
    tracing::info!(?mode, "shutting down");
    handle.shutdown_as(mode).await;
    ExitCode::SUCCESS
}

/// Serves until SIGTERM or SIGINT; each SIGHUP reloads the configuration (the outcome is
/// logged by the reload itself, and a rejected file changes nothing).
async fn wait_for_stop_reloading_on_hangup(handle: &pgferry::ProxyHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM/SIGHUP; only Ctrl-C stops pgferry");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = handle.reload().await;
            }
        }
    }
}

/// Installs the log subscriber; returns how a reload changes its filter (`log.level`).
/// RUST_LOG, when set, wins over the file at start-up and on reload.
fn init_logging(config: &Config) -> LogFilterHook {
    use tracing_subscriber::EnvFilter;
    let from_env = EnvFilter::try_from_default_env().ok();
    let pinned_by_env = from_env.is_some();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(&config.log.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_logs())
        .with_writer(std::io::stderr);
    let set: Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync> = match config.log.format {
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        }
        LogFormat::Human => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        }
    };
    Box::new(move |level: &str| {
        if pinned_by_env {
            return Err("RUST_LOG is set and wins over log.level".to_string());
        }
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        set(filter)
    })
}

/// Colour only where a human watches a terminal: logs written to a file, a pipe or journald
/// must be plain text (escape codes break grep and log shippers). `NO_COLOR` set to anything
/// non-empty turns colour off (https://no-color.org).
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_colour && std::io::stderr().is_terminal()
}
