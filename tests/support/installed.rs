//! Third-party tools the tests run (drivers, the PgBouncer exporter, botocore), installed by
//! `tests/<name>/install.sh` into `<target dir>/<name>` the first time a test binary needs them.
//! A tool that cannot be installed fails the test with the script's output; it is never
//! skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Runs `tests/<name>/install.sh` once per test binary and returns its cache directory
/// (`<target dir>/<name>`), where the script put the tool.
pub fn installed(name: &str) -> PathBuf {
    static OUTCOMES: Mutex<Option<HashMap<String, Result<PathBuf, String>>>> = Mutex::new(None);
    let mut outcomes = OUTCOMES.lock().unwrap_or_else(|p| p.into_inner());
    let outcome = outcomes
        .get_or_insert_with(HashMap::new)
        .entry(name.to_string())
        .or_insert_with(|| install(name));
    match outcome {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn install(name: &str) -> Result<PathBuf, String> {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let cache = tmp.parent().unwrap_or(tmp).join(name);
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
        .join("install.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(&cache)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run tests/{name}/install.sh: {e}"))?;
    if output.status.success() {
        return Ok(cache);
    }
    Err(format!(
        "tests/{name}/install.sh failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}
