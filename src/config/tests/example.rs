//! The shipped `config/pgferry.toml` must load: its /etc/pgferry paths are pointed at temp files.

use super::TempDir;
use crate::config::*;
use std::time::Duration;

const EXAMPLE: &str = include_str!("../../../config/pgferry.toml");

#[test]
fn example_file_loads() {
    let dir = TempDir::new();
    for name in ["server.crt", "server.key", "global-bundle.pem"] {
        dir.file(name, "placeholder");
    }
    let text = EXAMPLE.replace("/etc/pgferry/", &format!("{}/", dir.path().display()));
    let path = dir.file("pgferry.toml", &text);
    let c = Config::from_file(&path).unwrap();
    assert_eq!(c.tls.mode, ClientTlsMode::Require);
    assert_eq!(c.limits.max_message_size, 64 << 20);
    assert_eq!(c.users.len(), 2);
    assert!(matches!(&c.users[1].credential, Credential::ScramSecret(_)));
    let app = &c.databases[0];
    assert_eq!(
        (app.dbname.as_str(), app.min_pool_size, app.tls_mode),
        ("app_production", 2, BackendTlsMode::VerifyFull)
    );
    assert_eq!(app.server_idle_timeout, Duration::from_secs(600));
    assert_eq!(app.tls_ca_file, Some(dir.path().join("global-bundle.pem")));
    let reports = &c.databases[1];
    let d = DatabaseConfig::new("reports", &reports.host, 5432);
    assert_eq!(
        (reports.connect_timeout, reports.server_lifetime),
        (d.connect_timeout, d.server_lifetime)
    );
    // Two databases, app's cap, and app's client limit.
    assert_eq!(c.describe_pools().lines().count(), 4);
    assert_eq!(app.max_db_connections, Some(30));
    assert_eq!(c.users[0].limits.max_client_connections, Some(200));
    let p = (&c.pooling, PoolingConfig::default());
    assert_eq!(
        (p.0.pinning, p.0.max_prepared_statements_per_client),
        (p.1.pinning, p.1.max_prepared_statements_per_client)
    );
    assert_eq!(
        (
            p.0.max_prepared_statements_per_server,
            p.0.max_cached_statements
        ),
        (
            p.1.max_prepared_statements_per_server,
            p.1.max_cached_statements
        )
    );
}

#[test]
fn example_documents_every_key() {
    let keys = [
        "addr",
        "max_client_connections",
        "max_message_size",
        "max_startup_packet_size",
        "max_startup_parameters",
        "login_timeout",
        "query_wait_timeout",
        "client_idle_timeout",
        "idle_transaction_timeout",
        "client_park_after",
        "server_reset_timeout",
        "shutdown_timeout",
        "listen",
        "mode",
        "cert_file",
        "key_file",
        "allow_md5",
        "format",
        "level",
        "name",
        "password",
        "scram_secret",
        "host",
        "port",
        "dbname",
        "backend_user",
        "backend_password",
        "pool_mode",
        "pool_size",
        "min_pool_size",
        "connect_timeout",
        "server_idle_timeout",
        "server_lifetime",
        "tls_mode",
        "tls_ca_file",
        "max_db_connections",
        "pinning",
        "max_prepared_statements_per_client",
        "max_prepared_statements_per_server",
        "max_cached_statements",
    ];
    for key in keys {
        assert!(
            EXAMPLE.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "{key} not set in the example"
        );
    }
}
