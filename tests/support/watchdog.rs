//! Cleanup that survives the test process.
//!
//! The shared server lives in a static, and Rust never drops statics; a test binary may also be
//! killed (Ctrl-C, timeout). A detached shell therefore polls the test process and, once it is
//! gone, stops PostgreSQL immediately and deletes the temp directory. It runs in its own process
//! group so a Ctrl-C aimed at the test run does not kill the cleanup too.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::cmd::{pg_command, SupportError};

const SCRIPT: &str = r#"
pid=$1; root=$2; shift 2
while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
# A pg_ctl start orphaned mid-way may bring the server up just after a first stop: try again.
for attempt in 1 2 3; do "$@" >/dev/null 2>&1; sleep 0.5; done
rm -rf "$root"
"#;

/// Starts the watchdog for the cluster whose files live in `root_dir` (data dir `root_dir/data`).
/// Call it before creating the cluster, so a half-finished setup is cleaned up as well.
pub fn spawn(root_dir: &Path) -> Result<(), SupportError> {
    let mut stop = pg_command("pg_ctl", root_dir);
    stop.arg("-D")
        .arg(root_dir.join("data"))
        .args(["-m", "immediate", "stop"]);
    let child = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("pgferry-test-watchdog")
        .arg(std::process::id().to_string())
        .arg(root_dir)
        .args(argv(&stop))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(SupportError::io("cannot spawn the cleanup watchdog"))?;
    // Never waited for on purpose: it must outlive us; init reaps it.
    std::mem::forget(child);
    Ok(())
}

/// Program and arguments of `cmd`, so the same command can be handed to a shell for later.
fn argv(cmd: &Command) -> Vec<OsString> {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_owned())
        .collect()
}
