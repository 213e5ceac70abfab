//! Checks the test infrastructure itself, without the proxy: if these fail, every end-to-end
//! test would fail for reasons unrelated to pgferry.
//!
//! The restart test shares this binary with the others, so every test holds
//! `support::backend_lock()` (read, or write for the restart).

mod support;

use support::{pg, APP_DB, APP_PASSWORD, APP_USER, OTHER_PASSWORD, OTHER_USER};
use tokio_postgres::error::SqlState;

#[tokio::test]
async fn server_uses_scram_for_passwords_and_pg_hba() {
    let _up = support::backend_lock().read().await;
    let su = pg().superuser_client().await;
    let row = su
        .query_one(
            "SELECT count(*) FILTER (WHERE rolpassword LIKE 'SCRAM-SHA-256$%'), count(*) \
             FROM pg_authid WHERE rolname IN ('app', 'other', 'postgres')",
            &[],
        )
        .await
        .expect("pg_authid query");
    let (scram, total): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(
        (scram, total),
        (3, 3),
        "every test role must have a SCRAM secret"
    );
    let methods = su
        .query("SELECT DISTINCT auth_method FROM pg_hba_file_rules", &[])
        .await
        .expect("pg_hba_file_rules query");
    let methods: Vec<String> = methods.iter().map(|r| r.get(0)).collect();
    assert_eq!(methods, vec!["scram-sha-256".to_string()]);
}

#[tokio::test]
async fn app_and_other_roles_can_log_in() {
    let _up = support::backend_lock().read().await;
    let app = pg().connect_direct(APP_USER, APP_PASSWORD, APP_DB).await;
    let row = app
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .expect("identity query");
    assert_eq!(row.get::<_, String>(0), APP_USER);
    assert_eq!(row.get::<_, String>(1), APP_DB);
    let other = pg()
        .connect_direct(OTHER_USER, OTHER_PASSWORD, APP_DB)
        .await;
    let user: String = other
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("identity query")
        .get(0);
    assert_eq!(user, OTHER_USER);
}

#[tokio::test]
async fn wrong_password_is_rejected_with_28p01() {
    let _up = support::backend_lock().read().await;
    let err = pg()
        .try_connect_direct(APP_USER, "not-the-password", APP_DB)
        .await
        .expect_err("login with a wrong password must fail");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err:?}");
}

#[tokio::test]
async fn tls_connection_verifies_against_test_ca() {
    let _up = support::backend_lock().read().await;
    let server = pg();
    let client = support::connect_tls(
        server.addr(),
        APP_USER,
        APP_PASSWORD,
        APP_DB,
        server.ca_cert_path(),
    )
    .await
    .expect("TLS login to the test server");
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl query")
        .get(0);
    assert!(ssl, "session must be encrypted");
}

#[tokio::test]
async fn tls_connection_fails_with_an_unrelated_ca() {
    let _up = support::backend_lock().read().await;
    let server = pg();
    let dir = server.scratch_dir("foreign-ca");
    let foreign_ca = dir.join("foreign.pem");
    let pem = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("self-signed cert")
        .cert
        .pem();
    std::fs::write(&foreign_ca, pem).expect("write foreign CA");
    let result =
        support::connect_tls(server.addr(), APP_USER, APP_PASSWORD, APP_DB, &foreign_ca).await;
    assert!(
        result.is_err(),
        "an untrusted server certificate must be refused"
    );
}

#[tokio::test]
async fn proxy_cert_is_signed_by_the_server_ca() {
    let dir = pg().scratch_dir("proxy-cert");
    let (cert, key, ca) = support::proxy_cert(&dir);
    let ca_pem = std::fs::read_to_string(&ca).expect("read CA");
    let server_ca = std::fs::read_to_string(pg().ca_cert_path()).expect("read server CA");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key).expect("key metadata").permissions(),
    );
    let cert_ok = std::fs::read_to_string(&cert).expect("read cert");
    assert_eq!(ca_pem, server_ca);
    assert_eq!(key_mode & 0o777, 0o600);
    assert!(cert_ok.starts_with("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn restart_terminates_sessions_and_comes_back() {
    let _down = support::backend_lock().write().await;
    let server = pg();
    let before = server.superuser_client().await;
    let started: String = before
        .query_one("SELECT pg_postmaster_start_time()::text", &[])
        .await
        .expect("start time")
        .get(0);
    server.restart().expect("pg_ctl restart");
    assert!(
        before.simple_query("SELECT 1").await.is_err(),
        "old session must be gone after restart"
    );
    let after = server.superuser_client().await;
    let restarted: String = after
        .query_one("SELECT pg_postmaster_start_time()::text", &[])
        .await
        .expect("start time")
        .get(0);
    assert_ne!(started, restarted);
}

#[test]
fn pg_bin_finds_the_server_tools() {
    for tool in ["initdb", "pg_ctl", "psql", "pgbench"] {
        assert!(
            support::pg_bin(tool).is_absolute(),
            "{tool} not found: run `bash tests/run.sh` to install PostgreSQL"
        );
    }
}

#[test]
fn free_port_never_repeats_within_a_process() {
    let ports: std::collections::HashSet<u16> = (0..50).map(|_| support::free_port()).collect();
    assert_eq!(ports.len(), 50);
}

#[test]
fn proxy_config_points_at_the_test_server() {
    let server = pg();
    let config = support::proxy_config(server);
    let names: Vec<&str> = config.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, vec![APP_USER, OTHER_USER]);
    assert_eq!(config.databases.len(), 1);
    let db = &config.databases[0];
    assert_eq!(
        (db.name.as_str(), db.port, db.pool_size),
        (APP_DB, server.port, 5)
    );
}
