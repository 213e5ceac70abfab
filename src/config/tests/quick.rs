use crate::config::quick::{parse_backend_url, BackendUrl};
use crate::config::*;
use std::path::PathBuf;

fn url_err(url: &str) -> String {
    match parse_backend_url(url) {
        Ok(parsed) => panic!("expected an error for {url}, got {parsed:?}"),
        Err(reason) => reason,
    }
}

#[test]
fn full_url_with_percent_encoding() {
    let url = "postgresql://app%40corp:p%40ss%3Aw%2Fo%20rd@db.example.com:6543/my%20db";
    let parsed = parse_backend_url(url).unwrap();
    let want = BackendUrl {
        user: "app@corp".into(),
        password: "p@ss:w/o rd".into(),
        host: "db.example.com".into(),
        port: 6543,
        dbname: "my db".into(),
        tls_mode: BackendTlsMode::Prefer,
        tls_ca_file: None,
    };
    assert_eq!(parsed, want);
}

#[test]
fn defaults_port_and_maps_sslmode() {
    let url =
        "postgres://u:p@10.0.0.5/app?sslmode=verify-full&sslrootcert=/etc/rds/global-bundle.pem";
    let parsed = parse_backend_url(url).unwrap();
    assert_eq!((parsed.host.as_str(), parsed.port), ("10.0.0.5", 5432));
    assert_eq!(parsed.tls_mode, BackendTlsMode::VerifyFull);
    assert_eq!(
        parsed.tls_ca_file,
        Some(PathBuf::from("/etc/rds/global-bundle.pem"))
    );
    let v6 = parse_backend_url("postgres://u:p@[::1]:5433/app?sslmode=disable").unwrap();
    assert_eq!(
        (v6.host.as_str(), v6.port, v6.tls_mode),
        ("::1", 5433, BackendTlsMode::Disable)
    );
}

#[test]
fn missing_parts_are_named() {
    let shape = "expected postgres://USER:PASSWORD@HOST[:PORT]/DBNAME";
    assert_eq!(
        url_err("postgres://:pw@h/db"),
        format!("missing user name; {shape}")
    );
    assert_eq!(
        url_err("postgres://u@h/db"),
        format!("missing password; {shape}")
    );
    assert_eq!(
        url_err("postgres://u:@h/db"),
        format!("missing password; {shape}")
    );
    assert_eq!(
        url_err("postgres://u:p@h"),
        format!("missing database name; {shape}")
    );
    assert_eq!(
        url_err("postgres://u:p@h/"),
        format!("missing database name; {shape}")
    );
    assert_eq!(
        url_err("postgres:///db"),
        format!("missing user name; {shape}")
    );
    assert_eq!(
        url_err("mysql://u:p@h/db"),
        format!("scheme must be postgres:// or postgresql://; {shape}")
    );
    assert_eq!(
        url_err("postgres://u:p@h/a/b"),
        format!("database name must not contain '/'; {shape}")
    );
    assert!(url_err("not a url").starts_with("invalid URL ("));
    assert_eq!(
        url_err("postgres://u:p@h:0/db"),
        "port must be between 1 and 65535, got 0"
    );
}

#[test]
fn bad_query_and_encoding() {
    assert_eq!(
        url_err("postgres://u:p@h/db?sslmode=allow"),
        "sslmode: expected one of \"disable\", \"prefer\", \"require\", \"verify-ca\", \"verify-full\", got \"allow\""
    );
    assert_eq!(
        url_err("postgres://u:p@h/db?connect_timeout=3"),
        "unsupported URL parameter \"connect_timeout\" (supported: sslmode, sslrootcert)"
    );
    assert_eq!(
        url_err("postgres://u:p%zz@h/db"),
        "invalid percent-encoding in password"
    );
    assert_eq!(
        url_err("postgres://u:p%ff@h/db"),
        "password is not valid UTF-8 after percent-decoding"
    );
}

#[test]
fn quick_builds_one_user_and_one_database() {
    let opts = QuickOptions {
        backend_url: "postgres://app:s%23cret@db.internal:5433/appdb?sslmode=require".into(),
        pool_mode: Some(PoolMode::Session),
        pool_size: Some(7),
        metrics_listen: Some(MetricsListen::Off),
        ..QuickOptions::default()
    };
    let c = Config::quick(opts).unwrap();
    assert_eq!(c.listen.addr, DEFAULT_LISTEN);
    assert_eq!(c.metrics.listen, None);
    assert_eq!(c.tls.mode, ClientTlsMode::Disable);
    assert_eq!(c.users.len(), 1);
    assert_eq!(c.users[0].name, "app");
    assert!(matches!(&c.users[0].credential, Credential::Plain(p) if p == "s#cret"));
    let db = &c.databases[0];
    assert_eq!(
        (
            db.name.as_str(),
            db.dbname.as_str(),
            db.host.as_str(),
            db.port
        ),
        ("appdb", "appdb", "db.internal", 5433)
    );
    assert_eq!(
        (db.pool_mode, db.pool_size, db.tls_mode),
        (PoolMode::Session, 7, BackendTlsMode::Require)
    );
    assert_eq!(db.backend_user, None);
}

#[test]
fn quick_errors_name_the_command_line() {
    let opts = QuickOptions {
        backend_url: "postgres://app@h/db".into(),
        ..QuickOptions::default()
    };
    let err = Config::quick(opts).unwrap_err().to_string();
    assert_eq!(err, "command line: --backend: missing password; expected postgres://USER:PASSWORD@HOST[:PORT]/DBNAME");
    let opts = QuickOptions {
        backend_url: "postgres://app:pw@h/pgferry".into(),
        ..QuickOptions::default()
    };
    let err = Config::quick(opts).unwrap_err().to_string();
    assert_eq!(
        err,
        "command line: databases[0].name: \"pgferry\" is reserved for the admin console"
    );
    let opts = QuickOptions {
        backend_url: "postgres://app:pw@h/db".into(),
        tls_cert: Some("/nonexistent/c.pem".into()),
        tls_key: Some("/nonexistent/k.pem".into()),
        ..QuickOptions::default()
    };
    let err = Config::quick(opts).unwrap_err().to_string();
    assert!(
        err.starts_with("command line: tls.cert_file: cannot read /nonexistent/c.pem: "),
        "{err}"
    );
}

#[test]
fn quick_errors_never_echo_the_password() {
    let opts = QuickOptions {
        backend_url: "postgres://app:hunter2@h/db?x=1".into(),
        ..QuickOptions::default()
    };
    let err = Config::quick(opts).unwrap_err().to_string();
    assert!(!err.contains("hunter2"), "{err}");
}
