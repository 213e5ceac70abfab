//! Returning to the client's startup values after the backend returned to its own.
//!
//! PostgreSQL's `RESET x`, `RESET ALL`, `DISCARD ALL` and `SET x TO DEFAULT` go back to the
//! value the session started with, which includes the client's startup parameters (`options=-c
//! ...` or plain startup parameters). A pooled backend started with none of them: the same
//! statement takes it to the server's defaults. pgferry therefore follows such a Query with one
//! statement of its own that sets the client's startup values again (its replies swallowed, the
//! ParameterStatus messages of both folded into what PostgreSQL would have reported: see
//! `session::reports`).
//!
//! The follow-up is sent right behind the client's Query, before any later client message,
//! so nothing the client runs next sees the backend's defaults. It must not act when the
//! client's statement had no effect (it failed, or its implicit transaction was rolled back):
//! it only restores settings still at the backend's reset value, which is exactly the state a
//! successful RESET leaves. In an aborted transaction it fails harmlessly, like the client's
//! statement did.

use super::{literal, ClientParams, SESSION_REPORTED};
use crate::session::sql_scan::SessionEffect;

/// Which startup settings a client's statement returned to the backend's defaults.
enum Scope<'a> {
    All,
    Some(Vec<&'a str>),
}

impl<'a> Scope<'a> {
    fn of(effects: &'a [SessionEffect]) -> Option<Scope<'a>> {
        let mut names = Vec::new();
        for effect in effects {
            match effect {
                SessionEffect::ResetAll | SessionEffect::DiscardAll => return Some(Scope::All),
                SessionEffect::Reset { name } => names.push(name.as_str()),
                SessionEffect::Set { name, value } if value.eq_ignore_ascii_case("default") => {
                    names.push(name.as_str())
                }
                _ => {}
            }
        }
        (!names.is_empty()).then_some(Scope::Some(names))
    }
}

impl ClientParams {
    /// The statement that sets the client's startup values again after a Query with
    /// `effects` ran on a pooled backend, or `None` if the Query returns no startup setting
    /// to a default. See the module documentation for why it is guarded.
    pub fn restore_sql(&self, effects: &[SessionEffect]) -> Option<String> {
        let values: Vec<String> = match Scope::of(effects)? {
            Scope::All => self.startup.values().map(row).collect(),
            Scope::Some(names) => names
                .iter()
                .filter_map(|name| self.startup.get(&name.to_ascii_lowercase()))
                .map(row)
                .collect(),
        };
        if values.is_empty() {
            return None;
        }
        Some(format!(
            "SELECT pg_catalog.set_config(v.name, v.value, false) \
             FROM (VALUES {}) AS v(name, value) \
             LEFT JOIN pg_catalog.pg_settings s \
             ON pg_catalog.lower(s.name) = pg_catalog.lower(v.name) \
             WHERE s.name IS NULL OR s.setting IS NOT DISTINCT FROM s.reset_val",
            values.join(", ")
        ))
    }

    /// What the client was last told reported parameter `name` is: its tracked value for the
    /// session settings, else `backend_before` (the backend's report before the statement).
    pub fn client_view<'a>(
        &'a self,
        name: &str,
        backend_before: Option<&'a str>,
    ) -> Option<&'a str> {
        if SESSION_REPORTED.contains(&name) {
            self.get(name)
        } else {
            backend_before
        }
    }

    /// The settings pgferry applies for this client's non-reported startup parameters, as a
    /// backend's `applied` record holds them (name → statement): what a backend has after a
    /// RESET ALL and the restore.
    pub fn startup_statements(&self) -> impl Iterator<Item = (&String, &String)> {
        self.initial_other.iter()
    }
}

fn row((name, value): &(String, String)) -> String {
    format!("({}, {})", literal(name), literal(value))
}
