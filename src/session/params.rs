//! The client's view of session settings, and bringing a borrowed backend in line with it.
//!
//! In transaction mode a client's consecutive transactions run on different backends that
//! earlier clients may have configured differently. Each client's desired settings (the
//! pool's defaults, overlaid by its startup parameters and by ParameterStatus changes it caused)
//! are compared on checkout with what the backend has, and the difference is applied with one
//! injected statement whose replies are swallowed.

use std::collections::HashMap;

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

/// Desired session settings of one client.
#[derive(Debug, Clone, Default)]
pub struct ClientParams {
    desired: HashMap<String, String>,
}

impl ClientParams {
    /// Starts from the pool's defaults and applies the client's startup parameters
    /// (including `options=-c name=value` switches).
    pub fn new(baseline: &HashMap<String, String>, startup: &StartupParams) -> Self {
        let mut desired: HashMap<String, String> = SESSION_REPORTED
            .iter()
            .filter_map(|name| baseline.get(*name).map(|v| (name.to_string(), v.clone())))
            .collect();
        for (name, value) in &startup.params {
            if name == "options" {
                desired.extend(parse_options(value));
            } else {
                desired.insert(canonical_name(baseline, name), value.clone());
            }
        }
        ClientParams { desired }
    }

    /// The backend reported a change while serving this client: it is now the client's wish.
    pub fn observe(&mut self, name: &str, value: &str) {
        if SESSION_REPORTED.contains(&name) {
            self.desired.insert(name.to_string(), value.to_string());
        }
    }

    /// What the client believes `name` is (reported to it at login).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.desired.get(name).map(String::as_str)
    }

    /// All desired settings.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.desired.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// SQL that makes a backend whose state is `current` (reported params plus what pgferry
    /// applied earlier) match this client, or `None` when it already does. `applied` lists the
    /// non-reported settings pgferry set on that backend; it is updated to the new state.
    pub fn sync_sql(
        &self,
        current: &HashMap<String, String>,
        applied: &mut HashMap<String, String>,
    ) -> Option<String> {
        let mut sets = Vec::new();
        for (name, value) in &self.desired {
            let have = current.get(name).or_else(|| applied.get(name));
            if have != Some(value) {
                sets.push(format!(
                    "pg_catalog.set_config({}, {}, false)",
                    literal(name),
                    literal(value)
                ));
                if !current.contains_key(name) {
                    applied.insert(name.clone(), value.clone());
                }
            }
        }
        let stale: Vec<String> = applied
            .keys()
            .filter(|k| !self.desired.contains_key(*k))
            .cloned()
            .collect();
        let mut sql = String::new();
        if !sets.is_empty() {
            sql = format!("SELECT {};", sets.join(", "));
        }
        for name in stale {
            applied.remove(&name);
            sql.push_str(&format!("RESET {};", identifier(&name)));
        }
        (!sql.is_empty()).then_some(sql)
    }
}

/// Reported parameter names are case-sensitive in ParameterStatus ("DateStyle"), but clients
/// may send "datestyle": use the backend's spelling when it is known.
fn canonical_name(baseline: &HashMap<String, String>, name: &str) -> String {
    baseline
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
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

/// A quoted identifier (for RESET).
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline() -> HashMap<String, String> {
        [
            ("TimeZone", "UTC"),
            ("application_name", "pgferry"),
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
    fn startup_params_and_options_override_baseline() {
        let p = ClientParams::new(
            &baseline(),
            &startup(&[
                ("timezone", "Europe/Paris"),
                ("options", "-c statement_timeout=5s --search-path=a,b"),
            ]),
        );
        assert_eq!(p.get("TimeZone"), Some("Europe/Paris"));
        assert_eq!(p.get("statement_timeout"), Some("5s"));
        assert_eq!(p.get("search_path"), Some("a,b"));
        assert_eq!(p.get("server_version"), None);
    }

    #[test]
    fn sync_sql_sets_differences_and_resets_stale_settings() {
        let p = ClientParams::new(
            &baseline(),
            &startup(&[("application_name", "it's"), ("statement_timeout", "1s")]),
        );
        let mut current = baseline();
        let mut applied = HashMap::from([("lock_timeout".to_string(), "2s".to_string())]);
        let sql = p.sync_sql(&current, &mut applied).unwrap();
        assert!(
            sql.contains("set_config(E'application_name', E'it''s', false)"),
            "{sql}"
        );
        assert!(
            sql.contains("set_config(E'statement_timeout', E'1s', false)"),
            "{sql}"
        );
        assert!(sql.ends_with("RESET \"lock_timeout\";"), "{sql}");
        assert_eq!(
            applied.get("statement_timeout").map(String::as_str),
            Some("1s")
        );
        current.insert("application_name".into(), "it's".into());
        assert_eq!(p.sync_sql(&current, &mut applied), None);
    }

    #[test]
    fn observes_only_session_settings() {
        let mut p = ClientParams::new(&baseline(), &startup(&[]));
        p.observe("TimeZone", "Asia/Tokyo");
        p.observe("is_superuser", "on");
        assert_eq!(p.get("TimeZone"), Some("Asia/Tokyo"));
        assert_eq!(p.get("is_superuser"), None);
    }

    #[test]
    fn options_with_escaped_spaces() {
        assert_eq!(
            parse_options(r"-c application_name=my\ app -cwork_mem=4MB"),
            vec![
                ("application_name".into(), "my app".into()),
                ("work_mem".into(), "4MB".into())
            ]
        );
    }
}
