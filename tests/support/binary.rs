//! The real `pgferry` binary as a child process, for tests of what only the binary does
//! (signals, SHUTDOWN exiting the process, log output): its stderr lines are read on a thread
//! and waited for with a deadline, never slept on.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A running pgferry and the log lines it has written so far.
pub struct Pgferry {
    pub child: Child,
    lines: Receiver<String>,
    /// Lines read while waiting for others (shown when a wait fails).
    seen: Vec<String>,
}

impl Pgferry {
    /// Starts `pgferry ARGS` with human logs without colour and without RUST_LOG.
    pub fn spawn<I, S>(args: I) -> Pgferry
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run pgferry");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Pgferry {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next log line containing `needle`, within 20 s (panics with what was seen).
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "no log line with {needle:?}; seen:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Waits for "pgferry listening" and returns the client address it names.
    pub fn client_addr(&mut self) -> SocketAddr {
        let line = self.wait_for_line("pgferry listening");
        line.split("client_addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no client_addr in {line:?}"))
    }

    /// Sends `signal` (e.g. "-HUP") to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {signal} failed");
    }
}

impl Drop for Pgferry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
