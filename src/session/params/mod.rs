//! The client's view of session settings, and bringing a borrowed backend in line with it.
//!
//! In transaction mode a client's consecutive transactions run on backends that earlier clients
//! may have configured differently. Each client's desired settings are kept in two kinds:
//! - parameters the backend reports in ParameterStatus (TimeZone, DateStyle, application_name,
//!   ...): plain values, starting from the pool's defaults overlaid by startup parameters, then
//!   following every ParameterStatus the client's own statements cause;
//! - every other setting (statement_timeout, search_path before PostgreSQL 18, ...): kept as
//!   the statement that reproduces it — `set_config(name, value)` for startup parameters
//!   (`options=-c ...`, whose values are raw configuration strings), and the client's own
//!   `SET name TO expr` as written for settings seen by the lexical scanner.
//!
//! On checkout the differences are applied with one injected statement whose replies are
//! swallowed. That comparison runs at every transaction, and almost always finds nothing: a
//! backend remembers the settings it was last found to match (see [`Alignment`]), so a client
//! with the same settings skips it while the backend's record has not changed.
//!
//! PostgreSQL returns RESET / RESET ALL / DISCARD ALL to a session's startup values, but a
//! pooled backend's startup values are not the client's: [`restore`] follows such statements
//! with the client's own startup values.

mod restore;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::encoding::canonical_client_encoding;
use crate::pool::Baseline;
use crate::protocol::startup::StartupParams;
use crate::server::{Alignment, VersionedMap};

/// Reported parameters a client may change and that must therefore follow it across backends.
const SESSION_REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "standard_conforming_strings",
    "search_path",
    "default_transaction_read_only",
];

/// Startup parameters that are not settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "options", "replication"];

/// Room for a typical settings key (a few reported values, no SETs) without regrowing.
const KEY_CAPACITY: usize = 128;

/// Desired session settings of one client.
#[derive(Debug, Clone)]
pub struct ClientParams {
    /// The pool's reported parameters, shared by every client of the pool.
    baseline: Arc<Baseline>,
    /// Reported parameters this client wants differently from `baseline` (canonical spelling
    /// → plain value); usually one or two entries, so idle clients stay small.
    overrides: HashMap<String, String>,
    /// Other settings (lower-case name → the statement that sets it).
    other: BTreeMap<String, String>,
    /// Values at login, which RESET / RESET ALL / DISCARD ALL return to.
    initial_other: BTreeMap<String, String>,
    /// Every startup setting, reported or not (lower-case name → name as the backend spells
    /// it and raw value), which pgferry restores after the backend's RESET (see [`restore`]).
    startup: BTreeMap<String, (String, String)>,
    /// Exact encoding of everything [`sync_sql`](Self::sync_sql) reads from this client (the
    /// reported values it wants and `other`), kept current by every change: clients with equal
    /// keys need the same statements on any backend.
    key: Arc<str>,
}

impl ClientParams {
    /// Starts from the pool's defaults and applies the client's startup parameters
    /// (including `options=-c name=value` switches). Fails on a value PostgreSQL would refuse
    /// at login and pgferry can judge without a backend (`client_encoding`).
    pub fn new(
        baseline: Arc<Baseline>,
        startup: &StartupParams,
    ) -> Result<Self, StartupValueError> {
        let mut params = ClientParams {
            baseline,
            overrides: HashMap::new(),
            other: BTreeMap::new(),
            initial_other: BTreeMap::new(),
            startup: BTreeMap::new(),
            key: Arc::from(""),
        };
        for (name, value) in &startup.params {
            if name == "options" {
                for (name, value) in parse_options(value) {
                    params.set_startup(&name, &value)?;
                }
            } else if !NOT_SETTINGS.contains(&name.as_str()) {
                params.set_startup(name, value)?;
            }
        }
        params.initial_other = params.other.clone();
        params.refresh_key();
        Ok(params)
    }

    /// True if the client gave any setting at login: only then can a RESET on a pooled
    /// backend land elsewhere than the client's own startup value.
    pub fn has_startup_settings(&self) -> bool {
        !self.startup.is_empty()
    }

    /// Recomputes `key` after a change. Each field is `-` (absent) or `+<text>\0`: protocol
    /// strings cannot contain NUL (every one is NUL-terminated on the wire, and so is all SQL
    /// text the statements come from), so distinct settings never share an encoding.
    fn refresh_key(&mut self) {
        let mut key = String::with_capacity(KEY_CAPACITY);
        let mut field = |text: Option<&str>| match text {
            Some(text) => {
                key.push('+');
                key.push_str(text);
                key.push('\0');
            }
            None => key.push('-'),
        };
        for name in SESSION_REPORTED {
            field(self.get(name));
        }
        for (name, statement) in &self.other {
            field(Some(name));
            field(Some(statement));
        }
        self.key = key.into();
    }

    /// The backend's spelling of a reported parameter name (`timezone` → `TimeZone`).
    fn canonical(&self, name: &str) -> Option<&str> {
        self.baseline
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .map(String::as_str)
    }

    fn set_startup(&mut self, name: &str, value: &str) -> Result<(), StartupValueError> {
        let value = startup_value(name, value)?;
        let value = value.as_str();
        let lower = name.to_ascii_lowercase();
        match self.canonical(name).map(str::to_string) {
            Some(canonical) => {
                self.startup
                    .insert(lower, (canonical.clone(), value.to_string()));
                self.overrides.insert(canonical, value.to_string());
            }
            None => {
                let statement = format!(
                    "SELECT pg_catalog.set_config({}, {}, false);",
                    literal(&lower),
                    literal(value)
                );
                self.startup
                    .insert(lower.clone(), (lower.clone(), value.to_string()));
                self.other.insert(lower, statement);
            }
        }
        Ok(())
    }

    /// True if the backend reports `name` (so ParameterStatus, not SET tracking, follows it).
    pub fn is_reported(&self, name: &str) -> bool {
        self.canonical(name).is_some()
    }

    /// The backend reported a change while serving this client: it is now the client's wish.
    pub fn observe(&mut self, name: &str, value: &str) {
        if !SESSION_REPORTED.contains(&name) || self.get(name) == Some(value) {
            return;
        }
        if self.baseline.get(name).map(String::as_str) == Some(value) {
            self.overrides.remove(name);
        } else {
            self.overrides.insert(name.to_string(), value.to_string());
        }
        self.refresh_key();
    }

    /// A successful `SET name TO expr` of a parameter the backend does not report.
    pub fn set(&mut self, name: &str, expr: &str) {
        if !self.is_reported(name) {
            let name = name.to_ascii_lowercase();
            let statement = format!("SET {} TO {expr};", identifier(&name));
            if self.other.get(&name) != Some(&statement) {
                self.other.insert(name, statement);
                self.refresh_key();
            }
        }
    }

    /// The statement that reproduces the client's setting of a non-reported parameter, as
    /// recorded in a backend's `applied` map.
    pub fn statement_for(&self, name: &str) -> Option<&str> {
        self.other
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// A successful `RESET name` (or `SET name TO DEFAULT`): back to the login value.
    pub fn reset(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        match self.initial_other.get(&name) {
            Some(initial) => self.other.insert(name, initial.clone()),
            None => self.other.remove(&name),
        };
        self.refresh_key();
    }

    /// A successful `RESET ALL` / `DISCARD ALL`.
    pub fn reset_all(&mut self) {
        self.other = self.initial_other.clone();
        self.refresh_key();
    }

    /// The client's own value of reported parameter `name`, if it differs from the pool's
    /// baseline (which the caller already holds).
    pub fn overridden(&self, name: &str) -> Option<&str> {
        self.overrides.get(name).map(String::as_str)
    }

    /// What the client believes a reported parameter is (reported to it at login).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.overrides
            .get(name)
            .or_else(|| self.baseline.get(name))
            .map(String::as_str)
    }

    /// SQL that makes a backend whose reported parameters are `current` and whose other
    /// settings pgferry set are `applied` match this client, or `None` when it already does.
    /// `applied` is updated to the state the SQL produces. `aligned` is the backend's memory of
    /// the last client settings it was found to match: when it still holds for this client's,
    /// the answer is `None` without comparing anything.
    pub fn sync_sql(
        &self,
        current: &VersionedMap,
        applied: &mut VersionedMap,
        aligned: &mut Alignment,
    ) -> Option<String> {
        if aligned.holds(&self.key, current, applied) {
            return None;
        }
        let sql = self.diff_sql(current, applied);
        aligned.record(sql.is_none(), &self.key, current, applied);
        sql
    }

    /// The full comparison behind [`sync_sql`](Self::sync_sql).
    fn diff_sql(&self, current: &VersionedMap, applied: &mut VersionedMap) -> Option<String> {
        let sets: Vec<String> = SESSION_REPORTED
            .iter()
            .filter_map(|name| self.get(name).map(|value| (*name, value)))
            .filter(|(name, value)| current.get(*name).map(String::as_str) != Some(*value))
            .map(|(name, value)| {
                format!(
                    "pg_catalog.set_config({}, {}, false)",
                    literal(name),
                    literal(value)
                )
            })
            .collect();
        let mut sql = String::new();
        if !sets.is_empty() {
            sql = format!("SELECT {};", sets.join(", "));
        }
        for (name, statement) in &self.other {
            if applied.get(name) != Some(statement) {
                sql.push_str(statement);
                applied.insert(name.clone(), statement.clone());
            }
        }
        let mut stale: Vec<String> = applied
            .keys()
            .filter(|k| !self.other.contains_key(*k))
            .cloned()
            .collect();
        stale.sort();
        for name in stale {
            applied.remove(&name);
            sql.push_str(&format!("RESET {};", identifier(&name)));
        }
        (!sql.is_empty()).then_some(sql)
    }
}

/// A startup value PostgreSQL refuses at login (its FATAL, SQLSTATE 22023, says the same).
#[derive(Debug, thiserror::Error)]
pub enum StartupValueError {
    #[error("invalid value for parameter \"{name}\": \"{value}\"")]
    Invalid { name: &'static str, value: String },
}

/// The value PostgreSQL gives startup parameter `name` when a client sends `value`:
/// `client_encoding` by its canonical name (as PostgreSQL reports it), others as sent.
fn startup_value(name: &str, value: &str) -> Result<String, StartupValueError> {
    if !name.eq_ignore_ascii_case("client_encoding") {
        return Ok(value.to_string());
    }
    canonical_client_encoding(value)
        .map(str::to_string)
        .ok_or_else(|| StartupValueError::Invalid {
            name: "client_encoding",
            value: value.to_string(),
        })
}

/// Parses libpq's `options` startup parameter: `-c name=value` and `--name=value` switches,
/// with backslash-escaped spaces.
pub fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut settings = Vec::new();
    let mut words = split_unescaped(options).into_iter();
    while let Some(word) = words.next() {
        let setting = match word.as_str() {
            "-c" => words.next(),
            w if w.starts_with("--") => Some(w[2..].to_string()),
            w if w.starts_with("-c") => Some(w[2..].to_string()),
            _ => None,
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            settings.push((name.replace('-', "_"), value.to_string()));
        }
    }
    settings
}

fn split_unescaped(text: &str) -> Vec<String> {
    let mut words = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => words
                .last_mut()
                .into_iter()
                .for_each(|w| w.extend(chars.next())),
            c if c.is_whitespace() => words.push(String::new()),
            c => words.last_mut().into_iter().for_each(|w| w.push(c)),
        }
    }
    words.retain(|w| !w.is_empty());
    words
}

/// A string literal that means the same whatever `standard_conforming_strings` is.
fn literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A parameter name as SQL: each dot-separated part quoted (`"myapp"."user_id"`).
fn identifier(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}
