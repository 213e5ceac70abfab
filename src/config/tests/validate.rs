use super::{load_err, TempDir, MINIMAL};
use crate::config::*;
use std::time::Duration;

const USER: &str = "[[users]]\nname = \"alice\"\npassword = \"pw\"\n";
const SCRAM: &str = "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5";

/// `users` then one `[[databases]]` entry "app" on db.internal with `db_extra` lines.
fn with_db(users: &str, db_extra: &str) -> String {
    format!("{users}[[databases]]\nname = \"app\"\nhost = \"db.internal\"\n{db_extra}")
}

fn assert_err(text: &str, want: &str) {
    assert_eq!(
        load_err(text),
        format!("pgferry.toml: {want}"),
        "for:\n{text}"
    );
}

#[test]
fn limit_rules() {
    let cases = [
        (
            "max_client_connections = 0",
            "limits.max_client_connections: must be between 1 and 1000000, got 0",
        ),
        (
            "max_startup_packet_size = 100",
            "limits.max_startup_packet_size: must be between 1024 and 1048576, got 100",
        ),
        (
            "max_startup_parameters = 1001",
            "limits.max_startup_parameters: must be between 1 and 1000, got 1001",
        ),
        (
            "login_timeout = 0",
            "limits.login_timeout: must be greater than zero",
        ),
        (
            "query_wait_timeout = \"0ms\"",
            "limits.query_wait_timeout: must be greater than zero",
        ),
        (
            "server_reset_timeout = 0",
            "limits.server_reset_timeout: must be greater than zero",
        ),
        (
            "client_idle_timeout = \"366d\"",
            "limits.client_idle_timeout: must be at most 365d",
        ),
    ];
    for (line, want) in cases {
        assert_err(&format!("[limits]\n{line}\n{MINIMAL}"), want);
    }
    for zero_ok in [
        "client_idle_timeout",
        "idle_transaction_timeout",
        "shutdown_timeout",
    ] {
        assert!(Config::from_toml_str(&format!("[limits]\n{zero_ok} = 0\n{MINIMAL}"), "x").is_ok());
    }
}

#[test]
fn client_tls_needs_readable_files() {
    assert_err(
        &format!("[tls]\nmode = \"require\"\n{MINIMAL}"),
        "tls.cert_file: required when tls.mode is \"require\"",
    );
    let dir = TempDir::new();
    let cert = dir.file("c.pem", "x");
    let tls = format!(
        "[tls]\nmode = \"allow\"\ncert_file = {:?}\n",
        cert.display().to_string()
    );
    assert_err(
        &format!("{tls}{MINIMAL}"),
        "tls.key_file: required when tls.mode is \"allow\"",
    );
    let missing = dir.path().join("missing.key");
    let text = format!(
        "{tls}key_file = {:?}\n{MINIMAL}",
        missing.display().to_string()
    );
    let err = load_err(&text);
    let prefix = format!(
        "pgferry.toml: tls.key_file: cannot read {}: ",
        missing.display()
    );
    assert!(
        err.starts_with(&prefix) && err.contains("No such file"),
        "{err}"
    );
    let text = format!(
        "{tls}key_file = {:?}\n{MINIMAL}",
        dir.path().display().to_string()
    );
    assert_err(
        &text,
        &format!(
            "tls.key_file: {} is not a regular file",
            dir.path().display()
        ),
    );
}

#[test]
fn log_level_must_be_a_filter() {
    assert_err(
        &format!("[log]\nlevel = \" \"\n{MINIMAL}"),
        "log.level: must not be empty",
    );
    let err = load_err(&format!("[log]\nlevel = \"pgferry=loud\"\n{MINIMAL}"));
    assert!(
        err.starts_with("pgferry.toml: log.level: invalid filter \"pgferry=loud\": "),
        "{err}"
    );
}

#[test]
fn user_rules() {
    let db = "[[databases]]\nname = \"app\"\nhost = \"h\"\n";
    let cases = [
        ("", "users: at least one [[users]] entry is required"),
        ("[[users]]\npassword = \"pw\"\n", "users[0].name: is required"),
        ("[[users]]\nname = \"\"\npassword = \"pw\"\n", "users[0].name: must not be empty"),
        ("[[users]]\nname = \"bob\"\n", "users[0]: user \"bob\" needs a password or a scram_secret"),
        (
            "[[users]]\nname = \"bob\"\npassword = \"a\"\nscram_secret = \"b\"\n",
            "users[0]: user \"bob\" sets both password and scram_secret; keep exactly one",
        ),
        ("[[users]]\nname = \"bob\"\npassword = \"\"\n", "users[0].password: must not be empty"),
        (
            "[[users]]\nname = \"bob\"\nscram_secret = \"md5abc\"\n",
            "users[0].scram_secret: must start with \"SCRAM-SHA-256$\" (generate one with `pgferry hash-password`)",
        ),
    ];
    for (users, want) in cases {
        assert_err(&format!("{users}{db}"), want);
    }
    assert_err(
        &format!("{USER}{USER}{db}"),
        "users[1].name: duplicate user \"alice\" (also users[0])",
    );
}

#[test]
fn database_rules() {
    let cases = [
        ("port = 0", "databases[0].port: must be between 1 and 65535, got 0"),
        ("port = 65536", "databases[0].port: must be between 1 and 65535, got 65536"),
        ("dbname = \"\"", "databases[0].dbname: must not be empty"),
        ("backend_password = \"x\"", "databases[0].backend_password: requires backend_user"),
        ("backend_user = \"\"", "databases[0].backend_user: must not be empty"),
        ("pool_size = 0", "databases[0].pool_size: must be between 1 and 10000, got 0"),
        ("pool_size = 10001", "databases[0].pool_size: must be between 1 and 10000, got 10001"),
        ("min_pool_size = -1", "databases[0].min_pool_size: must be between 0 and 10000, got -1"),
        ("pool_size = 5\nmin_pool_size = 6", "databases[0].min_pool_size: must not exceed pool_size (5), got 6"),
        ("pool_mode = \"statement\"", "databases[0].pool_mode: expected one of \"transaction\", \"session\", got \"statement\""),
        ("connect_timeout = 0", "databases[0].connect_timeout: must be greater than zero"),
        ("server_lifetime = \"400d\"", "databases[0].server_lifetime: must be at most 365d"),
        ("tls_mode = \"verify-full\"", "databases[0].tls_ca_file: required when tls_mode is \"verify-full\""),
        ("tls_mode = \"verify-ca\"", "databases[0].tls_ca_file: required when tls_mode is \"verify-ca\""),
        ("tls_mode = \"allow\"", "databases[0].tls_mode: expected one of \"disable\", \"prefer\", \"require\", \"verify-ca\", \"verify-full\", got \"allow\""),
    ];
    for (line, want) in cases {
        assert_err(&with_db(USER, &format!("{line}\n")), want);
    }
    let missing_ca =
        "tls_mode = \"verify-full\"\ntls_ca_file = \"/nonexistent/global-bundle.pem\"\n";
    let err = load_err(&with_db(USER, missing_ca));
    assert!(
        err.starts_with(
            "pgferry.toml: databases[0].tls_ca_file: cannot read /nonexistent/global-bundle.pem: "
        ),
        "{err}"
    );
    assert!(Config::from_toml_str(
        &with_db(USER, "server_idle_timeout = 0\nserver_lifetime = 0\n"),
        "x"
    )
    .is_ok());
}

#[test]
fn database_list_rules() {
    assert_err(
        USER,
        "databases: at least one [[databases]] entry is required",
    );
    assert_err(
        &format!("{USER}[[databases]]\nhost = \"h\"\n"),
        "databases[0].name: is required",
    );
    assert_err(
        &format!("{USER}[[databases]]\nname = \"a\"\n"),
        "databases[0].host: is required",
    );
    assert_err(
        &format!("{USER}[[databases]]\nname = \"a\"\nhost = \" \"\n"),
        "databases[0].host: must not be empty",
    );
    assert_err(
        &format!("{USER}[[databases]]\nname = \"pgferry\"\nhost = \"h\"\n"),
        "databases[0].name: \"pgferry\" is reserved for the admin console",
    );
    let two = format!(
        "{}[[databases]]\nname = \"app\"\nhost = \"other\"\n",
        with_db(USER, "")
    );
    assert_err(
        &two,
        "databases[1].name: duplicate database \"app\" (also databases[0])",
    );
}

#[test]
fn scram_only_users_need_a_backend_user() {
    let users = format!("{USER}[[users]]\nname = \"bob\"\nscram_secret = \"{SCRAM}\"\n");
    let mapped = "backend_user = \"app_rw\"\nbackend_password = \"x\"\n";
    let text = format!(
        "{}[[databases]]\nname = \"other\"\nhost = \"h\"\n",
        with_db(&users, mapped)
    );
    assert_err(
        &text,
        "databases[1].backend_user: database \"other\" has no backend_user, so pgferry logs in to \
         the backend as the client's user, but user \"bob\" has only a scram_secret; give \"bob\" a \
         plaintext password, or set backend_user and backend_password",
    );
    let c = Config::from_toml_str(&with_db(&users, mapped), "x").unwrap();
    assert!(matches!(&c.users[1].credential, Credential::ScramSecret(s) if s == SCRAM));
}

#[test]
fn validate_checks_programmatic_configs() {
    let mut c = Config::minimal();
    c.users
        .push(UserConfig::new("u", Credential::Plain("p".into())));
    c.databases
        .push(DatabaseConfig::new("app", "localhost", 5432));
    assert!(c.validate().is_ok());
    c.databases[0].pool_size = 0;
    let err = c.validate().unwrap_err().to_string();
    assert_eq!(
        err,
        "config: databases[0].pool_size: must be between 1 and 10000, got 0"
    );
    c.databases[0].pool_size = 1;
    c.limits.shutdown_timeout = Duration::from_secs(400 * 86_400);
    let err = c.validate().unwrap_err().to_string();
    assert_eq!(err, "config: limits.shutdown_timeout: must be at most 365d");
}
