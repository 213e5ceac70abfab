//! Tests of loading, validation, quick mode and the CLI, sharing a small temp-dir helper.

mod admin;
mod cli;
mod example;
mod file;
mod limits;
mod pooling;
mod quick;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory under the system temp dir, removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pgferry-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` with `contents` and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One user with a plaintext password and one database: the smallest valid file.
pub(super) const MINIMAL: &str = r#"
[[users]]
name = "alice"
password = "pw"

[[databases]]
name = "app"
host = "db.internal"
"#;

/// The error message of loading `text` as `pgferry.toml`.
pub(super) fn load_err(text: &str) -> String {
    match super::Config::from_toml_str(text, "pgferry.toml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}
