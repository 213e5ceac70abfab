//! Where a reload gets its configuration from and how it changes the log filter: owned by
//! the session context, kept apart from the reload itself (which takes the whole context).

use crate::config::{Config, ConfigError};

/// Loads the configuration again, from the same file and with the same command-line and
/// environment overrides as at start-up.
pub type ConfigSource = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Installs a new log filter directive (`log.level`); the binary owns the log subscriber.
pub type LogFilterHook = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// How this proxy reloads: where its configuration comes from, and how to change the log
/// filter. A proxy started from a `Config` value alone has nothing to reload.
#[derive(Default)]
pub struct Reloader {
    pub(super) source: Option<ConfigSource>,
    pub(super) log_filter: Option<LogFilterHook>,
    /// One reload at a time (SIGHUP and RELOAD may race).
    pub(super) running: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// A reloader that reads its configuration from `source`.
    pub fn new(source: ConfigSource) -> Self {
        Reloader {
            source: Some(source),
            ..Reloader::default()
        }
    }

    /// Reloads from a configuration file, without command-line overrides.
    pub fn from_file(path: impl Into<std::path::PathBuf>) -> Self {
        let path = path.into();
        Reloader::new(Box::new(move || Config::from_file(&path)))
    }

    /// Also applies `log.level` changes through `hook`.
    pub fn with_log_filter(mut self, hook: LogFilterHook) -> Self {
        self.log_filter = Some(hook);
        self
    }
}
