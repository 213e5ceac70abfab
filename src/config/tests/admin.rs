//! The `[admin]` section: who may use the console.

use super::{load_err, MINIMAL};
use crate::config::*;

const USERS: &str = "[[users]]\nname = \"alice\"\npassword = \"pw\"\n\
                     [[users]]\nname = \"grafana\"\npassword = \"pw\"\n";
const DB: &str = "[[databases]]\nname = \"app\"\nhost = \"db.internal\"\n";

fn with_admin(admin: &str) -> String {
    format!("[admin]\n{admin}\n{USERS}{DB}")
}

#[test]
fn admin_lists_default_to_empty_and_are_read() {
    let c = Config::from_toml_str(MINIMAL, "x.toml").unwrap();
    assert_eq!(c.admin, AdminConfig::default());
    let text = with_admin("users = [\"alice\"]\nstats_users = [\"grafana\"]");
    let c = Config::from_toml_str(&text, "x.toml").unwrap();
    assert_eq!(c.admin.users, ["alice"]);
    assert_eq!(c.admin.stats_users, ["grafana"]);
}

#[test]
fn admin_users_must_be_configured_users() {
    assert_eq!(
        load_err(&with_admin("users = [\"bob\"]")),
        "pgferry.toml: admin.users: user \"bob\" is not a configured [[users]] entry"
    );
    assert_eq!(
        load_err(&with_admin("stats_users = [\"alice\", \"prometheus\"]")),
        "pgferry.toml: admin.stats_users: user \"prometheus\" is not a configured [[users]] entry"
    );
}

#[test]
fn unknown_admin_keys_are_errors() {
    let error = load_err(&with_admin("admins = [\"alice\"]"));
    assert!(error.contains("unknown field `admins`"), "{error}");
}

#[test]
fn pgbouncer_is_reserved_like_pgferry() {
    for name in ["pgbouncer", "pgferry"] {
        let text = format!("{USERS}[[databases]]\nname = \"{name}\"\nhost = \"h\"\n");
        assert_eq!(
            load_err(&text),
            format!(
                "pgferry.toml: databases[0].name: \"{name}\" is reserved for the admin console"
            )
        );
    }
}
