//! Per-user limits (`[[users]]` pool_size, pool_mode, max_client_connections) and
//! `databases[].max_db_connections`: parsing, ranges and contradictions.

use super::load_err;
use crate::config::*;

fn load(text: &str) -> Config {
    match Config::from_toml_str(text, "pgferry.toml") {
        Ok(c) => c,
        Err(e) => panic!("{e} for:\n{text}"),
    }
}

fn config(user_extra: &str, db_extra: &str) -> String {
    format!(
        "[[users]]\nname = \"svc\"\npassword = \"pw\"\n{user_extra}\n\
         [[users]]\nname = \"other\"\npassword = \"pw\"\n\
         [[databases]]\nname = \"app\"\nhost = \"db\"\n{db_extra}\n"
    )
}

#[test]
fn every_limit_is_parsed_and_unset_ones_fall_back_to_the_database() {
    let c = load(&config(
        "pool_size = 3\npool_mode = \"session\"\nmax_client_connections = 5",
        "max_db_connections = 8",
    ));
    let limits = c.users[0].limits;
    assert_eq!(limits.pool_size, Some(3));
    assert_eq!(limits.pool_mode, Some(PoolMode::Session));
    assert_eq!(limits.max_client_connections, Some(5));
    assert_eq!(c.users[1].limits, UserLimits::default());
    assert_eq!(c.databases[0].max_db_connections, Some(8));
    let db = &c.databases[0];
    assert_eq!(
        c.pool_settings(db, "svc"),
        PoolSettings {
            pool_size: 3,
            pool_mode: PoolMode::Session
        }
    );
    assert_eq!(c.pool_settings(db, "other").pool_size, 20);
    assert_eq!(load(&config("", "")).databases[0].max_db_connections, None);
}

#[test]
fn each_invalid_value_names_its_key() {
    let cases = [
        (
            config("pool_size = 0", ""),
            "users[0].pool_size: must be between 1 and 10000, got 0",
        ),
        (
            config("max_client_connections = -1", ""),
            "users[0].max_client_connections: must be between 1 and 1000000, got -1",
        ),
        (
            config("pool_mode = \"statement\"", ""),
            "users[0].pool_mode: expected one of \"transaction\", \"session\", got \"statement\"",
        ),
        (
            config("", "max_db_connections = 0"),
            "databases[0].max_db_connections: must be between 1 and 1000000, got 0",
        ),
        (
            config("", "min_pool_size = 4\nmax_db_connections = 3"),
            "databases[0].min_pool_size: must not exceed max_db_connections (3), got 4",
        ),
        (
            config("pool_size = 2", "min_pool_size = 3"),
            "users[0].pool_size: must not be below min_pool_size (3) of database \"app\", \
             which pools connections as this user, got 2",
        ),
    ];
    for (text, want) in cases {
        let err = load_err(&text);
        assert_eq!(err, format!("pgferry.toml: {want}"), "{text}");
    }
}

#[test]
fn pool_settings_of_a_user_no_pool_logs_in_as_are_refused() {
    let forced = "backend_user = \"owner\"\nbackend_password = \"pw\"";
    let err = load_err(&config("pool_mode = \"session\"", forced));
    assert!(
        err.starts_with(
            "pgferry.toml: users[0].pool_mode: has no effect: every database sets a \
             backend_user other than \"svc\""
        ),
        "{err}"
    );
    // The client limit counts the client's own sessions: valid with a forced user.
    let c = load(&config("max_client_connections = 2", forced));
    assert_eq!(c.users[0].limits.max_client_connections, Some(2));
    // The forced user's own entry shapes the shared pool.
    let text = format!(
        "{}[[users]]\nname = \"owner\"\npassword = \"pw\"\npool_size = 4\n",
        config("", forced)
    );
    let c = load(&text);
    assert_eq!(c.pool_settings(&c.databases[0], "owner").pool_size, 4);
}

#[test]
fn unknown_user_keys_stay_errors_and_programmatic_configs_are_checked() {
    let err = load_err(&config("pool_sise = 3", ""));
    assert!(err.contains("unknown field `pool_sise`"), "{err}");
    let mut c = load(&config("", ""));
    c.users[0].limits.pool_size = Some(0);
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "config: users[0].pool_size: must be between 1 and 10000, got 0"
    );
    c.users[0].limits.pool_size = None;
    c.databases[0].max_db_connections = Some(0);
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "config: databases[0].max_db_connections: must be between 1 and 1000000, got 0"
    );
}
