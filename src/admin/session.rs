//! One console session: the welcome, then a loop reading simple-protocol Queries.
//!
//! Deliberately separate from the relay: a console session has no pool, no backend, no
//! prepared statements, so none of the relay's per-transaction machinery is involved.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

use super::command::{self, Command};
use super::registry::ClientEntry;
use super::{control, result, show, Access};
use crate::metrics::{ClientState, LoginResult};
use crate::protocol::frame::peek_header;
use crate::protocol::messages::{self, Severity};
use crate::protocol::sqlstate;
use crate::protocol::startup::StartupParams;
use crate::session::SessionContext;
use crate::stream::ClientStream;

/// Console queries are short commands; a larger message is not a console command.
const MAX_CONSOLE_MESSAGE: usize = 64 * 1024;

/// The first bytes of a read; grows only for a long Query.
const READ_CAPACITY: usize = 1024;

/// What the console replied with `server_version`: our version, marked the way PgBouncer
/// marks its own (`1.25.2/bouncer`), so nobody mistakes the console for a PostgreSQL server.
const SERVER_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "/pgferry");

/// Serves an authenticated console client until it leaves or the proxy shuts down.
/// `early` holds whatever the client sent behind its login.
pub async fn serve(
    mut stream: ClientStream,
    startup: StartupParams,
    access: Access,
    ctx: &Arc<SessionContext>,
    admission: OwnedSemaphorePermit,
    early: BytesMut,
) {
    let cancel = ctx.cancel.register();
    let id = cancel.key().process_id;
    let mut out = BytesMut::with_capacity(READ_CAPACITY);
    welcome(
        &mut out,
        &startup,
        cancel.key().process_id,
        cancel.key().secret_key,
    );
    if stream.write_all(&out).await.is_err() {
        return;
    }
    ctx.metrics.login(LoginResult::Ok);
    let facts = crate::session::StreamFacts::of(&stream);
    let entry = crate::session::register(ctx, &facts, &startup, None, id);
    tracing::info!(client = id, user = %startup.user, ?access, "admin console session opened");
    let mut console = Console {
        ctx: Arc::clone(ctx),
        stream,
        input: early,
        out,
        access,
        skipping_to_sync: false,
        entry,
    };
    console.run().await;
    tracing::info!(client = id, "admin console session closed");
    drop(admission);
}

/// AuthenticationOk, the parameters PgBouncer's console reports, BackendKeyData, ReadyForQuery.
fn welcome(out: &mut BytesMut, startup: &StartupParams, process_id: i32, secret: i32) {
    out.clear();
    messages::auth_ok(out);
    let application_name = startup
        .params
        .iter()
        .find(|(name, _)| name == "application_name")
        .map_or("", |(_, value)| value.as_str());
    for (name, value) in [
        ("application_name", application_name),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("integer_datetimes", "on"),
        ("is_superuser", "on"),
        ("server_encoding", "UTF8"),
        ("server_version", SERVER_VERSION),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "UTC"),
    ] {
        messages::parameter_status(out, name, value);
    }
    messages::backend_key_data(out, process_id, secret);
    messages::ready_for_query(out, b'I');
}

/// Why the loop stopped reading.
enum End {
    /// Terminate, EOF, I/O error or shutdown: nothing more to say.
    Quiet,
    /// A protocol violation: FATAL with this message.
    Fatal(String),
}

struct Console {
    ctx: Arc<SessionContext>,
    stream: ClientStream,
    input: BytesMut,
    out: BytesMut,
    access: Access,
    /// After an extended-protocol message: everything up to Sync is discarded, as PostgreSQL
    /// does after an error in an extended-protocol batch.
    skipping_to_sync: bool,
    /// The console's own registration (SHOW CLIENTS lists console sessions too, as PgBouncer
    /// does); also counts it in `pgferry_client_connections` like any client.
    entry: ClientEntry,
}

impl Console {
    async fn run(&mut self) {
        let end = loop {
            match self.next_frame().await {
                Ok(Some((tag, body))) => {
                    if let Err(end) = self.handle(tag, body).await {
                        break end;
                    }
                }
                Ok(None) => break End::Quiet,
                Err(end) => break end,
            }
        };
        if let End::Fatal(message) = end {
            self.out.clear();
            let code = sqlstate::PROTOCOL_VIOLATION;
            self.ctx.metrics.count_error(code);
            messages::error_response(&mut self.out, Severity::Fatal, code, &message);
            let _ = self.stream.write_all(&self.out).await;
        }
    }

    /// The next whole message, `None` at EOF or shutdown.
    async fn next_frame(&mut self) -> Result<Option<(u8, BytesMut)>, End> {
        let mut signals = self.ctx.signals.clone();
        loop {
            let header = peek_header(&self.input, MAX_CONSOLE_MESSAGE)
                .map_err(|e| End::Fatal(e.to_string()))?;
            if let Some(header) = header {
                if self.input.len() >= header.total_len {
                    let mut frame = self.input.split_to(header.total_len);
                    frame.advance(5);
                    return Ok(Some((header.tag, frame)));
                }
            }
            if self.input.capacity() == self.input.len() {
                self.input.reserve(READ_CAPACITY);
            }
            let signal = *signals.borrow_and_update();
            if signal.draining || signal.closing {
                return Ok(None);
            }
            tokio::select! {
                read = self.stream.read_buf(&mut self.input) => match read {
                    Ok(0) | Err(_) => return Ok(None),
                    Ok(_) => {}
                },
                changed = signals.changed() => if changed.is_err() {
                    return Ok(None);
                },
            }
        }
    }

    async fn handle(&mut self, tag: u8, body: BytesMut) -> Result<(), End> {
        self.out.clear();
        match tag {
            b'X' => return Err(End::Quiet),
            b'S' => {
                self.skipping_to_sync = false;
                messages::ready_for_query(&mut self.out, b'I');
            }
            _ if self.skipping_to_sync => return Ok(()),
            b'Q' => self.query(&body).await?,
            b'P' | b'B' | b'E' | b'D' | b'C' | b'H' => self.refuse_extended(),
            other => {
                let tag = char::from(other);
                return Err(End::Fatal(format!(
                    "unexpected message type '{tag}' for the admin console"
                )));
            }
        }
        self.flush().await
    }

    /// 0A000, not PgBouncer's 08P01 and disconnect: the message is valid protocol, only the
    /// feature is missing (PostgreSQL's code for that), and skipping to Sync keeps the session
    /// usable for a driver that falls back to simple queries.
    fn refuse_extended(&mut self) {
        self.skipping_to_sync = true;
        self.error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "extended query protocol not supported by the admin console; use simple queries \
             (psql, or simple_query in drivers)",
        );
    }

    async fn query(&mut self, body: &[u8]) -> Result<(), End> {
        let text = body.strip_suffix(&[0]).unwrap_or(body);
        let Ok(text) = std::str::from_utf8(text) else {
            self.error(
                sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                "invalid byte sequence for encoding \"UTF8\"",
            );
            messages::ready_for_query(&mut self.out, b'I');
            return Ok(());
        };
        let statements = command::statements(text);
        if statements.is_empty() {
            result::empty_query(&mut self.out);
        }
        for statement in statements {
            if !self.statement(statement).await {
                break;
            }
        }
        messages::ready_for_query(&mut self.out, b'I');
        Ok(())
    }

    /// Runs one statement; false when it failed (the rest of the Query is skipped, as
    /// PostgreSQL does).
    async fn statement(&mut self, statement: &str) -> bool {
        let command = match command::parse(statement) {
            Ok(command) => command,
            Err(error) => {
                self.error(sqlstate::SYNTAX_ERROR, &error.to_string());
                return false;
            }
        };
        tracing::debug!(command = statement.trim(), "admin console command");
        match command {
            Command::Show(what) => show::run(what, &self.ctx, &mut self.out),
            control if self.access != Access::Admin => {
                let message = format!(
                    "permission denied for {}: only users listed in admin.users may run \
                     control commands (this user is in admin.stats_users)",
                    control.name()
                );
                self.error(sqlstate::INSUFFICIENT_PRIVILEGE, &message);
                return false;
            }
            control => {
                let clock = Arc::clone(&self.ctx.registry.clock);
                self.entry.set(ClientState::Active, &clock);
                let before = self.out.len();
                control::run(control, &self.ctx, &mut self.out).await;
                self.entry.set(ClientState::Idle, &clock);
                return self.out.get(before) != Some(&b'E');
            }
        }
        true
    }

    fn error(&mut self, code: &str, message: &str) {
        self.ctx.metrics.count_error(code);
        messages::error_response(&mut self.out, Severity::Error, code, message);
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.stream
            .write_all(&self.out)
            .await
            .map_err(|_| End::Quiet)
    }
}
