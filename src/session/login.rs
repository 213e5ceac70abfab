//! Client authentication, done by pgferry itself before any backend is involved.
//!
//! SCRAM-SHA-256 by default (verifiers precomputed at startup, so a login costs a few HMACs);
//! md5 only where the configuration allows it. The database is checked before the password,
//! like PgBouncer, so a typo in the database name gets a precise 3D000.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::auth::{verify_md5_response, ScramError, ScramExchange, UserAuth};
use crate::live::Live;
use crate::metrics::LoginResult;
use crate::protocol::decode;
use crate::protocol::frame::{peek_header, HEADER_LEN};
use crate::protocol::messages;
use crate::protocol::sqlstate;
use crate::protocol::startup::{Inbox, StartupParams};
use crate::stream::ClientStream;

/// Authentication messages are small; anything larger is an attack or a bug.
const MAX_AUTH_MESSAGE: usize = 16 * 1024;

/// How far the read of a SASLInitialResponse may read ahead: a client sends nothing after it
/// before the server's answer, and libpq's is about 60 bytes.
const SASL_INITIAL_READ: usize = 256;

/// An md5 PasswordMessage: `md5`, 32 hex digits and the terminating NUL.
const MD5_RESPONSE_LEN: usize = HEADER_LEN + 36;

/// Why a login did not succeed; `Gone` means the client left (psql does that to prompt for a
/// password) and nothing needs to be said.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{message}")]
    Refused {
        sqlstate: &'static str,
        message: String,
        metric: LoginResult,
    },
    #[error("client closed the connection during authentication")]
    Gone,
}

impl LoginError {
    fn refused(sqlstate: &'static str, message: String, metric: LoginResult) -> Self {
        LoginError::Refused {
            sqlstate,
            message,
            metric,
        }
    }
}

/// Checks database and user, then runs the password exchange. Reads go through `inbox` (one
/// read per message where it arrived whole) and never read ahead of the last message: a client
/// that sends its first query without waiting finds it still in the socket for the relay.
pub async fn authenticate<'a>(
    stream: &mut ClientStream,
    inbox: &mut Inbox,
    startup: &StartupParams,
    live: &'a Live,
) -> Result<&'a UserAuth, LoginError> {
    let console = crate::admin::is_console_database(&startup.database);
    if !console && !live.pools.has_database(&startup.database) {
        let message = format!("database \"{}\" does not exist", startup.database);
        return Err(LoginError::refused(
            sqlstate::INVALID_CATALOG_NAME,
            message,
            LoginResult::UnknownDatabase,
        ));
    }
    let Some(user) = live.users.get(&startup.user) else {
        let message = format!("role \"{}\" does not exist", startup.user);
        return Err(LoginError::refused(
            sqlstate::INVALID_AUTHORIZATION,
            message,
            LoginResult::AuthFailed,
        ));
    };
    if live.config.auth.allow_md5 && user.md5.is_some() {
        md5_login(stream, inbox, user).await?;
    } else {
        scram_login(stream, inbox, user).await?;
    }
    Ok(user)
}

fn wrong_password(user: &UserAuth) -> LoginError {
    let message = format!("password authentication failed for user \"{}\"", user.name);
    LoginError::refused(sqlstate::INVALID_PASSWORD, message, LoginResult::AuthFailed)
}

fn malformed(what: impl std::fmt::Display) -> LoginError {
    LoginError::refused(
        sqlstate::PROTOCOL_VIOLATION,
        format!("invalid authentication message: {what}"),
        LoginResult::Error,
    )
}

async fn scram_login(
    stream: &mut ClientStream,
    inbox: &mut Inbox,
    user: &UserAuth,
) -> Result<(), LoginError> {
    let mut out = BytesMut::new();
    messages::auth_sasl(&mut out);
    send(stream, &out).await?;
    let first = read_password_message(stream, inbox, SASL_INITIAL_READ).await?;
    let (mechanism, client_first) = decode::sasl_initial_response(first).map_err(malformed)?;
    if mechanism != "SCRAM-SHA-256" {
        return Err(malformed(format!(
            "unsupported SASL mechanism \"{mechanism}\""
        )));
    }
    let mut exchange = ScramExchange::new(&user.scram);
    let server_first = exchange
        .client_first(client_first)
        .map_err(|e| scram_error(e, user))?;
    out.clear();
    messages::auth_sasl_continue(&mut out, &server_first);
    send(stream, &out).await?;
    let final_len = exchange.client_final_len().unwrap_or_default();
    let final_frame = read_password_message(stream, inbox, HEADER_LEN + final_len).await?;
    let server_final = exchange
        .client_final(decode::password_body(final_frame))
        .map_err(|e| scram_error(e, user))?;
    out.clear();
    messages::auth_sasl_final(&mut out, &server_final);
    send(stream, &out).await
}

fn scram_error(error: ScramError, user: &UserAuth) -> LoginError {
    match error {
        ScramError::InvalidProof => wrong_password(user),
        other => malformed(other),
    }
}

async fn md5_login(
    stream: &mut ClientStream,
    inbox: &mut Inbox,
    user: &UserAuth,
) -> Result<(), LoginError> {
    let salt: [u8; 4] = rand::random();
    let mut out = BytesMut::new();
    messages::auth_md5(&mut out, salt);
    send(stream, &out).await?;
    let frame = read_password_message(stream, inbox, MD5_RESPONSE_LEN).await?;
    let response = decode::password_body(frame);
    let response = response.strip_suffix(&[0]).unwrap_or(response);
    let secret = user.md5.as_deref().unwrap_or_default();
    if verify_md5_response(secret, salt, response) {
        Ok(())
    } else {
        Err(wrong_password(user))
    }
}

async fn send(stream: &mut ClientStream, bytes: &[u8]) -> Result<(), LoginError> {
    stream.write_all(bytes).await.map_err(|_| LoginError::Gone)
}

/// Reads one PasswordMessage-family frame ('p'), whole. The first read may take up to
/// `read_ahead` bytes (frame included); the rest of a longer frame is read exactly.
async fn read_password_message<'a>(
    stream: &mut ClientStream,
    inbox: &'a mut Inbox,
    read_ahead: usize,
) -> Result<&'a [u8], LoginError> {
    let gone = |_| LoginError::Gone;
    inbox
        .fill(stream, HEADER_LEN, read_ahead)
        .await
        .map_err(gone)?;
    let header = peek_header(inbox.pending(), MAX_AUTH_MESSAGE)
        .map_err(malformed)?
        .ok_or(LoginError::Gone)?;
    if header.tag != b'p' {
        let tag = char::from(header.tag);
        return Err(malformed(format!(
            "expected a password response, got message type '{tag}'"
        )));
    }
    let len = header.total_len;
    inbox.fill(stream, len, len).await.map_err(gone)?;
    Ok(inbox.take(len))
}
