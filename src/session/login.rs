//! Client authentication, done by pgferry itself before any backend is involved.
//!
//! SCRAM-SHA-256 by default (verifiers precomputed at startup, so a login costs a few HMACs);
//! md5 only where the configuration allows it. The database is checked before the password,
//! like PgBouncer, so a typo in the database name gets a precise 3D000.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::SessionContext;
use crate::auth::{verify_md5_response, ScramError, ScramExchange, UserAuth};
use crate::metrics::LoginResult;
use crate::protocol::decode;
use crate::protocol::frame::{peek_header, HEADER_LEN};
use crate::protocol::messages;
use crate::protocol::sqlstate;
use crate::protocol::startup::StartupParams;
use crate::stream::ClientStream;

/// Authentication messages are small; anything larger is an attack or a bug.
const MAX_AUTH_MESSAGE: usize = 16 * 1024;

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

/// Checks database and user, then runs the password exchange.
pub async fn authenticate<'a>(
    stream: &mut ClientStream,
    startup: &StartupParams,
    ctx: &'a SessionContext,
) -> Result<&'a UserAuth, LoginError> {
    if !ctx.pools.has_database(&startup.database) {
        let message = format!("database \"{}\" does not exist", startup.database);
        return Err(LoginError::refused(
            sqlstate::INVALID_CATALOG_NAME,
            message,
            LoginResult::UnknownDatabase,
        ));
    }
    let Some(user) = ctx.users.get(&startup.user) else {
        let message = format!("role \"{}\" does not exist", startup.user);
        return Err(LoginError::refused(
            sqlstate::INVALID_AUTHORIZATION,
            message,
            LoginResult::AuthFailed,
        ));
    };
    if ctx.config.auth.allow_md5 && user.md5.is_some() {
        md5_login(stream, user).await?;
    } else {
        scram_login(stream, user).await?;
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

async fn scram_login(stream: &mut ClientStream, user: &UserAuth) -> Result<(), LoginError> {
    let mut out = BytesMut::new();
    messages::auth_sasl(&mut out);
    send(stream, &out).await?;
    let first = read_password_message(stream).await?;
    let (mechanism, client_first) = decode::sasl_initial_response(&first).map_err(malformed)?;
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
    let final_frame = read_password_message(stream).await?;
    let server_final = exchange
        .client_final(decode::password_body(&final_frame))
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

async fn md5_login(stream: &mut ClientStream, user: &UserAuth) -> Result<(), LoginError> {
    let salt: [u8; 4] = rand::random();
    let mut out = BytesMut::new();
    messages::auth_md5(&mut out, salt);
    send(stream, &out).await?;
    let frame = read_password_message(stream).await?;
    let response = decode::password_body(&frame);
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

/// Reads one PasswordMessage-family frame ('p'), whole.
async fn read_password_message(stream: &mut ClientStream) -> Result<Vec<u8>, LoginError> {
    let mut frame = vec![0u8; HEADER_LEN];
    stream
        .read_exact(&mut frame)
        .await
        .map_err(|_| LoginError::Gone)?;
    let header = peek_header(&frame, MAX_AUTH_MESSAGE)
        .map_err(malformed)?
        .ok_or(LoginError::Gone)?;
    if header.tag != b'p' {
        let tag = char::from(header.tag);
        return Err(malformed(format!(
            "expected a password response, got message type '{tag}'"
        )));
    }
    frame.resize(header.total_len, 0);
    stream
        .read_exact(&mut frame[HEADER_LEN..])
        .await
        .map_err(|_| LoginError::Gone)?;
    Ok(frame)
}
