//! One real PostgreSQL server per test binary.
//!
//! Behaviour tests must run against a real server (never a mock). Starting one costs ~1-2 s, so
//! [`pg`] starts it lazily once per test binary and every test shares it. Statics are never
//! dropped, so a watchdog process (see `watchdog.rs`) stops the server and deletes its files
//! once the test process is gone, however it ends.
//!
//! Tests that stop or restart the server ([`PgServer::restart`], [`PgServer::stop`]) disturb
//! every other test of the same binary: put them in their own test file, or make every test of
//! that file hold [`super::backend_lock`] (read for normal tests, write for disruptive ones).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio_postgres::{Client, NoTls};

use super::cmd::{give_to_pg_user, pg_command, run, start_on_free_port, SupportError};
use super::{certs, watchdog};

/// Superuser created by initdb.
pub const SUPERUSER: &str = "postgres";

/// A running test PostgreSQL server (SCRAM-only, TLS on, loopback only).
#[derive(Debug)]
pub struct PgServer {
    /// Always "127.0.0.1": the server listens on loopback only.
    pub host: String,
    /// Free port chosen at start (stable across restart/stop/start).
    pub port: u16,
    /// Superuser role name ("postgres").
    pub superuser: String,
    /// Random per run; also in `pwfile` under `root_dir`.
    pub superuser_password: String,
    /// PGDATA (owned by the `postgres` OS user when tests run as root).
    pub data_dir: PathBuf,
    /// Temp directory holding the data dir, certificates, socket dir and log.
    pub root_dir: PathBuf,
    ca_cert: PathBuf,
}

/// The shared server of this test binary, started on first use. Safe to call from many tests
/// at once (others block until it is up). Panics with the setup error if it cannot start.
pub fn pg() -> &'static PgServer {
    static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
    let server = SERVER.get_or_init(|| PgServer::launch().map_err(|e| e.to_string()));
    match server {
        Ok(server) => server,
        Err(e) => panic!("test PostgreSQL server could not start:\n{e}"),
    }
}

impl PgServer {
    fn launch() -> Result<PgServer, SupportError> {
        let root_dir = make_root_dir()?;
        watchdog::spawn(&root_dir)?;
        let password = format!("pg-{:016x}", rand::random::<u64>());
        let ca_cert = certs::write_localhost_cert(&root_dir, "server")?.ca;
        std::fs::create_dir(root_dir.join("sock"))
            .map_err(SupportError::io("cannot create socket dir"))?;
        write_file(&root_dir.join("pwfile"), &format!("{password}\n"))?;
        give_to_pg_user(&root_dir)?;
        let mut server = PgServer {
            host: "127.0.0.1".to_string(),
            port: 0,
            superuser: SUPERUSER.to_string(),
            superuser_password: password,
            data_dir: root_dir.join("data"),
            root_dir,
            ca_cert,
        };
        server.initdb()?;
        server.start_on_free_port()?;
        server.create_test_roles()?;
        Ok(server)
    }

    /// PEM file of the CA that signed the server certificate (and [`certs::proxy_cert`]).
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert
    }

    /// The server's TCP address (for `support::connect` / `support::connect_tls`).
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A fresh directory `name` inside the server's temp dir, removed by the watchdog with
    /// everything else, so tests that write files (certificates, configs) leave nothing behind.
    pub fn scratch_dir(&self, name: &str) -> PathBuf {
        let dir = self.root_dir.join("scratch").join(name);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create scratch dir {}: {e}", dir.display());
        }
        dir
    }

    /// Server log, useful when a test wants to print why the backend complained.
    pub fn log_path(&self) -> PathBuf {
        self.root_dir.join("postgres.log")
    }

    fn initdb(&self) -> Result<(), SupportError> {
        let pwfile = self.root_dir.join("pwfile");
        run(pg_command("initdb", &self.root_dir)
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-U", SUPERUSER, "--auth=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--encoding=UTF8", "--no-locale", "--no-sync"]))?;
        let include = format!(
            "\ninclude '{}'\n",
            self.root_dir.join("pgferry.conf").display()
        );
        append_file(&self.data_dir.join("postgresql.conf"), &include)?;
        write_file(&self.root_dir.join("pgferry.conf"), &self.settings())?;
        write_file(&self.data_dir.join("pg_hba.conf"), HBA)
    }

    fn settings(&self) -> String {
        let root = self.root_dir.display();
        format!(
            "listen_addresses = '127.0.0.1'\n\
             include '{root}/port.conf'\n\
             unix_socket_directories = '{root}/sock'\n\
             password_encryption = 'scram-sha-256'\n\
             ssl = on\n\
             ssl_cert_file = '{root}/server.crt'\n\
             ssl_key_file = '{root}/server.key'\n\
             max_connections = 200\n\
             shared_buffers = 16MB\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n"
        )
    }

    /// Picks a free port and starts; retries with another port if someone else took it.
    fn start_on_free_port(&mut self) -> Result<(), SupportError> {
        let log = self.log_path();
        self.port = start_on_free_port(&log, |port| {
            write_file(
                &self.root_dir.join("port.conf"),
                &format!("port = {port}\n"),
            )?;
            self.start()
        })?;
        Ok(())
    }

    fn pg_ctl(&self, action: &str, extra: &[&str]) -> Result<(), SupportError> {
        // `-l` matters for restart too: without it the postmaster would inherit our pipes.
        run(pg_command("pg_ctl", &self.root_dir)
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60"])
            .args(extra)
            .arg(action))
        .map(drop)
    }

    /// Starts a stopped server (after [`PgServer::stop`]); returns once it accepts connections.
    pub fn start(&self) -> Result<(), SupportError> {
        self.pg_ctl("start", &[])
    }

    /// Stops the server (fast mode: sessions are terminated) for backend-down tests.
    pub fn stop(&self) -> Result<(), SupportError> {
        self.pg_ctl("stop", &["-m", "fast"])
    }

    /// Restarts the server; every existing backend connection is terminated.
    pub fn restart(&self) -> Result<(), SupportError> {
        self.pg_ctl("restart", &["-m", "fast"])
    }

    fn create_test_roles(&self) -> Result<(), SupportError> {
        let mut psql = std::process::Command::new(super::pg_bin("psql"));
        psql.env("PGPASSWORD", &self.superuser_password)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.conn_string(SUPERUSER, "", "postgres"))
            .current_dir(&self.root_dir);
        for sql in SETUP_SQL {
            psql.args(["-c", sql]);
        }
        run(&mut psql).map(drop)
    }

    /// libpq/tokio-postgres key-value connection string to this server, without TLS.
    /// An empty password is left out (then PGPASSWORD applies).
    pub fn conn_string(&self, user: &str, password: &str, db: &str) -> String {
        let mut s = format!(
            "host={} port={} user={user} dbname={db} sslmode=disable",
            self.host, self.port
        );
        if !password.is_empty() {
            s.push_str(&format!(" password={password}"));
        }
        s
    }

    /// Connects straight to the backend (no proxy, no TLS), for asserting on server state.
    pub async fn try_connect_direct(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.conn_string(user, password, db), NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Like [`PgServer::try_connect_direct`], panicking with context on failure.
    pub async fn connect_direct(&self, user: &str, password: &str, db: &str) -> Client {
        match self.try_connect_direct(user, password, db).await {
            Ok(client) => client,
            Err(e) => panic!("direct connection as {user} to {db} failed: {e:?}"),
        }
    }

    /// Superuser connection to the `postgres` database (pg_stat_activity checks and the like).
    pub async fn superuser_client(&self) -> Client {
        self.connect_direct(SUPERUSER, &self.superuser_password, "postgres")
            .await
    }
}

/// Only TCP on loopback, SCRAM only; TLS optional so tests can use either.
const HBA: &str = "hostssl all all 127.0.0.1/32 scram-sha-256\n\
                   host all all 127.0.0.1/32 scram-sha-256\n";

/// Roles and database every test may rely on (see `super::APP_USER` and friends).
const SETUP_SQL: &[&str] = &[
    "CREATE ROLE app LOGIN PASSWORD 'app-secret'",
    "CREATE DATABASE appdb OWNER app",
    "CREATE ROLE other LOGIN PASSWORD 'other-secret'",
];

fn make_root_dir() -> Result<PathBuf, SupportError> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("pgferry-test-{}-{n}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(SupportError::io("cannot clear old temp dir"))?;
    }
    std::fs::create_dir_all(&dir).map_err(SupportError::io("cannot create temp dir"))?;
    Ok(dir)
}

fn write_file(path: &Path, text: &str) -> Result<(), SupportError> {
    std::fs::write(path, text).map_err(SupportError::io(format!("cannot write {}", path.display())))
}

fn append_file(path: &Path, text: &str) -> Result<(), SupportError> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(SupportError::io(format!(
            "cannot append to {}",
            path.display()
        )))
}
