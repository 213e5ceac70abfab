//! A private PostgreSQL server for tests that change a whole server's state (shut it down,
//! hold it in a state that refuses logins) without disturbing the shared one of [`super::pg`].
//! Trust authentication on loopback, no TLS: such tests are about the server's state, not
//! about logging in. Costs an initdb (~1-2 s); the watchdog removes it with the test process.

use std::path::PathBuf;

use super::cmd::{give_to_pg_user, pg_command, run, start_on_free_port, SupportError};
use super::watchdog;

/// Superuser of a private server (trust auth: any password is accepted).
pub const PRIVATE_SUPERUSER: &str = "postgres";

/// A running private PostgreSQL server.
#[derive(Debug)]
pub struct PrivatePg {
    /// Loopback port it listens on.
    pub port: u16,
    root_dir: PathBuf,
}

impl PrivatePg {
    /// Creates and starts a server; `name` keeps the temp dirs of one test binary apart.
    pub fn launch(name: &str) -> Result<PrivatePg, SupportError> {
        let root_dir = std::env::temp_dir().join(format!(
            "pgferry-test-{}-private-{name}",
            std::process::id()
        ));
        if root_dir.exists() {
            std::fs::remove_dir_all(&root_dir)
                .map_err(SupportError::io("cannot clear old temp dir"))?;
        }
        std::fs::create_dir_all(&root_dir).map_err(SupportError::io("cannot create temp dir"))?;
        watchdog::spawn(&root_dir)?;
        give_to_pg_user(&root_dir)?;
        let mut server = PrivatePg { port: 0, root_dir };
        run(pg_command("initdb", &server.root_dir)
            .arg("-D")
            .arg(server.data_dir())
            .args(["-U", PRIVATE_SUPERUSER, "--auth=trust"])
            .args(["--encoding=UTF8", "--no-locale", "--no-sync"]))?;
        server.start_on_free_port()?;
        Ok(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.root_dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.root_dir.join("postgres.log")
    }

    /// The server's TCP address.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn start_on_free_port(&mut self) -> Result<(), SupportError> {
        let log = self.log_path();
        self.port = start_on_free_port(&log, |port| {
            let options = format!(
                "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' \
                 -c shared_buffers=16MB -c fsync=off -c max_connections=20"
            );
            self.pg_ctl("start", &["-w", "-o", &options])
        })?;
        Ok(())
    }

    fn pg_ctl(&self, action: &str, extra: &[&str]) -> Result<(), SupportError> {
        run(pg_command("pg_ctl", &self.root_dir)
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-t", "60"])
            .args(extra)
            .arg(action))
        .map(drop)
    }

    /// Asks for a smart shutdown and returns at once: the server refuses new logins with
    /// `57P03 the database system is shutting down` while its sessions go on.
    pub fn begin_smart_shutdown(&self) -> Result<(), SupportError> {
        self.pg_ctl("stop", &["-m", "smart", "-W"])
    }

    /// Stops the server at once (its sessions are killed).
    pub fn stop_now(&self) -> Result<(), SupportError> {
        self.pg_ctl("stop", &["-m", "immediate", "-w"])
    }
}
