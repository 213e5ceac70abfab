//! Running PostgreSQL's command-line tools from tests.
//!
//! PostgreSQL refuses to run as root, and CI machines often run tests as root. Everything that
//! touches the data directory therefore goes through [`pg_command`], which switches to the
//! `postgres` OS user when needed, so tests behave the same as root and as a normal user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// OS user that owns test clusters when the tests run as root.
pub const PG_OS_USER: &str = "postgres";

/// Why the test support could not prepare or drive the PostgreSQL server.
#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("`{cmd}` failed ({status}):\n{output}")]
    Command {
        cmd: String,
        status: String,
        output: String,
    },
    #[error("certificate generation failed: {0}")]
    Cert(#[from] rcgen::Error),
}

impl SupportError {
    /// Wraps an I/O error with what was being attempted, so a failing test says which step broke.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SupportError {
        let what = what.into();
        move |source| SupportError::Io { what, source }
    }
}

/// Locates a PostgreSQL program: the newest `/usr/lib/postgresql/<version>/bin` first (Debian
/// keeps server tools there, off PATH), then PATH. Falls back to the bare name so the spawn
/// error names the missing program.
pub fn pg_bin(name: &str) -> PathBuf {
    newest_debian_bin(name)
        .or_else(|| find_in_path(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn newest_debian_bin(name: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin").join(name)))
        })
        .filter(|(_, path)| path.is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, path)| path)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// True when this process runs with effective uid 0 (read from /proc, no libc needed).
pub fn running_as_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// Builds a command for a PostgreSQL server tool, run as [`PG_OS_USER`] when we are root.
/// `cwd` must be readable by that user (the tools call getcwd).
pub fn pg_command(program: &str, cwd: &Path) -> Command {
    let bin = pg_bin(program);
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", PG_OS_USER, "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.current_dir(cwd).stdin(Stdio::null());
    cmd
}

/// Runs a command to completion; a non-zero exit becomes an error carrying its output.
pub fn run(cmd: &mut Command) -> Result<Output, SupportError> {
    let shown = format!("{cmd:?}");
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(SupportError::io(format!(
            "cannot run {shown} (is PostgreSQL installed? `bash tests/run.sh` installs it)"
        )))?;
    if output.status.success() {
        return Ok(output);
    }
    Err(SupportError::Command {
        cmd: shown,
        status: output.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// Makes sure the `postgres` OS user exists (a fresh machine with only client packages may
/// lack it) and hands `dir` to it, so the server can read its key and write its data.
pub fn give_to_pg_user(dir: &Path) -> Result<(), SupportError> {
    if !running_as_root() {
        return Ok(());
    }
    let exists = Command::new("id")
        .arg("-u")
        .arg(PG_OS_USER)
        .output()
        .map_err(SupportError::io("cannot run `id`"))?
        .status
        .success();
    if !exists {
        run(Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin", PG_OS_USER]))?;
    }
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{PG_OS_USER}:"))
        .arg(dir))?;
    Ok(())
}

/// How often a server start is retried when another process took the chosen port first.
const START_ATTEMPTS: usize = 5;

/// Starts a server with `start(port)` on a free port, and again on another one (a few times)
/// when its log at `log` says another process took the port between choosing and binding it.
pub fn start_on_free_port(
    log: &Path,
    mut start: impl FnMut(u16) -> Result<(), SupportError>,
) -> Result<u16, SupportError> {
    let mut attempt = 1;
    loop {
        let port = super::free_port();
        match start(port) {
            Ok(()) => return Ok(port),
            Err(_) if attempt < START_ATTEMPTS && port_was_taken(log) => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

fn port_was_taken(log: &Path) -> bool {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    log.contains("Address already in use")
}
