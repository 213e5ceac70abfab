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
//! swallowed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::protocol::startup::StartupParams;

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

/// Desired session settings of one client.
#[derive(Debug, Clone, Default)]
pub struct ClientParams {
    /// The pool's reported parameters, shared by every client of the pool.
    baseline: Arc<HashMap<String, String>>,
    /// Reported parameters this client wants differently from `baseline` (canonical spelling
    /// → plain value); usually one or two entries, so idle clients stay small.
    overrides: HashMap<String, String>,
    /// Other settings (lower-case name → the statement that sets it).
    other: BTreeMap<String, String>,
    /// Values at login, which RESET / RESET ALL / DISCARD ALL return to.
    initial_other: BTreeMap<String, String>,
}

impl ClientParams {
    /// Starts from the pool's defaults and applies the client's startup parameters
    /// (including `options=-c name=value` switches).
    pub fn new(baseline: Arc<HashMap<String, String>>, startup: &StartupParams) -> Self {
        let mut params = ClientParams {
            baseline,
            ..ClientParams::default()
        };
        for (name, value) in &startup.params {
            if name == "options" {
                for (name, value) in parse_options(value) {
                    params.set_startup(&name, &value);
                }
            } else if !NOT_SETTINGS.contains(&name.as_str()) {
                params.set_startup(name, value);
            }
        }
        params.initial_other = params.other.clone();
        params
    }

    /// The backend's spelling of a reported parameter name (`timezone` → `TimeZone`).
    fn canonical(&self, name: &str) -> Option<&str> {
        self.baseline
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .map(String::as_str)
    }

    fn set_startup(&mut self, name: &str, value: &str) {
        match self.canonical(name).map(str::to_string) {
            Some(canonical) => {
                self.overrides.insert(canonical, value.to_string());
            }
            None => {
                let name = name.to_ascii_lowercase();
                let statement = format!(
                    "SELECT pg_catalog.set_config({}, {}, false);",
                    literal(&name),
                    literal(value)
                );
                self.other.insert(name, statement);
            }
        }
    }

    /// True if the backend reports `name` (so ParameterStatus, not SET tracking, follows it).
    pub fn is_reported(&self, name: &str) -> bool {
        self.canonical(name).is_some()
    }

    /// The backend reported a change while serving this client: it is now the client's wish.
    pub fn observe(&mut self, name: &str, value: &str) {
        if !SESSION_REPORTED.contains(&name) {
            return;
        }
        if self.baseline.get(name).map(String::as_str) == Some(value) {
            self.overrides.remove(name);
        } else {
            self.overrides.insert(name.to_string(), value.to_string());
        }
    }

    /// A successful `SET name TO expr` of a parameter the backend does not report.
    pub fn set(&mut self, name: &str, expr: &str) {
        if !self.is_reported(name) {
            let name = name.to_ascii_lowercase();
            let statement = format!("SET {} TO {expr};", identifier(&name));
            self.other.insert(name, statement);
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
    }

    /// A successful `RESET ALL` / `DISCARD ALL`.
    pub fn reset_all(&mut self) {
        self.other = self.initial_other.clone();
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
    /// `applied` is updated to the state the SQL produces.
    pub fn sync_sql(
        &self,
        current: &HashMap<String, String>,
        applied: &mut HashMap<String, String>,
    ) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline() -> HashMap<String, String> {
        [
            ("TimeZone", "UTC"),
            ("application_name", ""),
            ("server_version", "15.1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn startup(params: &[(&str, &str)]) -> StartupParams {
        StartupParams {
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..StartupParams::default()
        }
    }

    #[test]
    fn startup_params_and_options_override_baseline_with_canonical_names() {
        let p = ClientParams::new(
            Arc::new(baseline()),
            &startup(&[(
                "options",
                "-c timezone=Asia/Tokyo -c Statement_Timeout=5s --search-path=a,b",
            )]),
        );
        assert_eq!(p.get("TimeZone"), Some("Asia/Tokyo"));
        assert_eq!(
            p.statement_for("statement_timeout"),
            Some("SELECT pg_catalog.set_config(E'statement_timeout', E'5s', false);")
        );
        assert_eq!(
            p.statement_for("search_path"),
            Some("SELECT pg_catalog.set_config(E'search_path', E'a,b', false);"),
            "startup values are configuration strings, not SQL"
        );
        assert_eq!(
            p.get("server_version"),
            Some("15.1"),
            "the pool's value, shared"
        );
    }

    #[test]
    fn sync_sql_sets_differences_and_resets_stale_settings() {
        let mut p = ClientParams::new(
            Arc::new(baseline()),
            &startup(&[("application_name", "it's"), ("statement_timeout", "1s")]),
        );
        p.set("search_path", "a, \"B\"");
        let mut current = baseline();
        let mut applied = HashMap::from([("lock_timeout".to_string(), "SET x;".to_string())]);
        let sql = p.sync_sql(&current, &mut applied).unwrap();
        assert_eq!(
            sql,
            "SELECT pg_catalog.set_config(E'application_name', E'it''s', false);\
             SET \"search_path\" TO a, \"B\";\
             SELECT pg_catalog.set_config(E'statement_timeout', E'1s', false);RESET \"lock_timeout\";"
        );
        current.insert("application_name".into(), "it's".into());
        assert_eq!(p.sync_sql(&current, &mut applied), None);
    }

    #[test]
    fn set_reset_and_reset_all_follow_postgres_semantics() {
        let mut p = ClientParams::new(
            Arc::new(baseline()),
            &startup(&[("statement_timeout", "1s")]),
        );
        p.set("statement_timeout", "'9s'");
        p.set("Work_Mem", "'64MB'");
        p.set("TimeZone", "'Asia/Tokyo'");
        assert_eq!(
            p.statement_for("work_mem"),
            Some("SET \"work_mem\" TO '64MB';")
        );
        assert_eq!(
            p.statement_for("timezone"),
            None,
            "reported parameters follow ParameterStatus"
        );
        p.reset("statement_timeout");
        assert_eq!(
            p.statement_for("statement_timeout"),
            Some("SELECT pg_catalog.set_config(E'statement_timeout', E'1s', false);")
        );
        p.reset_all();
        assert_eq!(p.statement_for("work_mem"), None);
    }

    #[test]
    fn observes_only_session_settings() {
        let mut p = ClientParams::new(Arc::new(baseline()), &startup(&[]));
        p.observe("TimeZone", "Asia/Tokyo");
        p.observe("is_superuser", "on");
        assert_eq!(p.get("TimeZone"), Some("Asia/Tokyo"));
        assert_eq!(p.get("is_superuser"), None);
    }

    #[test]
    fn options_with_escaped_spaces_and_dotted_names() {
        assert_eq!(
            parse_options(r"-c application_name=my\ app -cwork_mem=4MB"),
            vec![
                ("application_name".into(), "my app".into()),
                ("work_mem".into(), "4MB".into())
            ]
        );
        assert_eq!(identifier("myapp.user_id"), "\"myapp\".\"user_id\"");
    }
}
