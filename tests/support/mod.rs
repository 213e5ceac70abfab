//! Shared infrastructure for pgferry's integration tests.
//!
//! Every test binary starts with `mod support;` and gets: a real PostgreSQL server ([`pg`]),
//! a test CA with certificates for the server and the proxy ([`proxy_cert`], [`tls_connector`]),
//! a ready proxy configuration pointing at that server ([`proxy_config`]) and small client
//! helpers. Each binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code, unused_imports)]

mod certs;
mod cmd;
mod pg;
mod watchdog;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Mutex;

use pgferry::config::{BackendTlsMode, Config, Credential, DatabaseConfig, UserConfig};
use tokio_postgres::{Client, NoTls};

pub use certs::{proxy_cert, tls_connector, write_localhost_cert, CertFiles};
pub use cmd::{pg_bin, running_as_root, SupportError};
pub use pg::{pg, PgServer, SUPERUSER};

/// Login role with its own database ([`APP_DB`]) on the test server and in [`proxy_config`].
pub const APP_USER: &str = "app";
/// Password of [`APP_USER`], on the server and in [`proxy_config`].
pub const APP_PASSWORD: &str = "app-secret";
/// Database owned by [`APP_USER`].
pub const APP_DB: &str = "appdb";
/// A second login role, for per-user pool and auth-mismatch tests.
pub const OTHER_USER: &str = "other";
/// Password of [`OTHER_USER`], on the server and in [`proxy_config`].
pub const OTHER_PASSWORD: &str = "other-secret";

/// A loopback port that was free a moment ago. Never hands out the same port twice in one
/// process, but another process may still grab it: callers that bind later must retry.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("cannot bind an ephemeral loopback port: {e}"));
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Serialises tests that stop/restart the shared server against the tests that need it up:
/// normal tests hold `read()`, disruptive ones `write()`. Only needed when both kinds share a
/// test binary; a separate test file per disruptive scenario is simpler.
pub fn backend_lock() -> &'static tokio::sync::RwLock<()> {
    static LOCK: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());
    &LOCK
}

/// A proxy configuration for `pg`: `Config::minimal()` (ephemeral loopback ports, client TLS
/// off) plus users app/other with plaintext passwords and database `appdb` (backend TLS off,
/// pool size 5). Tests tweak fields from here.
pub fn proxy_config(pg: &PgServer) -> Config {
    let mut config = Config::minimal();
    for (name, password) in [(APP_USER, APP_PASSWORD), (OTHER_USER, OTHER_PASSWORD)] {
        config.users.push(UserConfig::new(
            name,
            Credential::Plain(password.to_string()),
        ));
    }
    let mut db = DatabaseConfig::new(APP_DB, &pg.host, pg.port);
    db.tls_mode = BackendTlsMode::Disable;
    db.pool_size = 5;
    config.databases.push(db);
    config
}

/// Starts the proxy in-process, panicking with the start error (tests cannot go on without it).
pub async fn start_proxy(config: Config) -> pgferry::ProxyHandle {
    match pgferry::Proxy::start(config).await {
        Ok(handle) => handle,
        Err(e) => panic!("proxy failed to start: {e}"),
    }
}

/// Key-value connection string for `addr` (the proxy or the server); `sslmode` as in libpq.
pub fn conn_string(
    addr: SocketAddr,
    user: &str,
    password: &str,
    db: &str,
    sslmode: &str,
) -> String {
    format!(
        "host={} port={} user={user} password={password} dbname={db} sslmode={sslmode}",
        addr.ip(),
        addr.port()
    )
}

/// The usual test client: user `app` on `appdb` through the proxy, plaintext.
pub async fn app_client(handle: &pgferry::ProxyHandle) -> Client {
    connect(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB)
        .await
        .expect("login through pgferry")
}

/// Like [`app_client`], but hands back the connection task too, for tests that watch how the
/// session ends (its error carries the FATAL the proxy sent).
pub async fn app_client_watched(
    handle: &pgferry::ProxyHandle,
) -> (
    Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let config = conn_string(
        handle.client_addr(),
        APP_USER,
        APP_PASSWORD,
        APP_DB,
        "disable",
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .expect("login through pgferry");
    (client, tokio::spawn(connection))
}

/// Plaintext client connection (e.g. to the proxy); the connection task is spawned.
pub async fn connect(
    addr: SocketAddr,
    user: &str,
    password: &str,
    db: &str,
) -> Result<Client, tokio_postgres::Error> {
    let config = conn_string(addr, user, password, db, "disable");
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// TLS client connection (`sslmode=require`, certificate and hostname verified against
/// `ca_path`); the connection task is spawned.
pub async fn connect_tls(
    addr: SocketAddr,
    user: &str,
    password: &str,
    db: &str,
    ca_path: &Path,
) -> Result<Client, tokio_postgres::Error> {
    let config = conn_string(addr, user, password, db, "require");
    let (client, connection) = tokio_postgres::connect(&config, tls_connector(ca_path)).await?;
    tokio::spawn(connection);
    Ok(client)
}

pub mod binary;
pub mod console;
pub mod installed;
pub mod private_pg;
pub mod probe;
pub mod transcript;
