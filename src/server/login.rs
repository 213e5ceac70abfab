//! Backend login: StartupMessage, authentication, then ParameterStatus/BackendKeyData until
//! the first ReadyForQuery.
//!
//! pgferry logs in as a configured backend user, so it performs the client side of cleartext,
//! md5 and SCRAM-SHA-256. Any ErrorResponse ends the login with the backend's own SQLSTATE.

use std::collections::HashMap;
use std::io;

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::wire::{self, ErrorFields};
use super::{BackendKey, BackendTarget, ServerError};

/// What a successful login leaves behind for the connection.
pub(super) struct LoginOutcome {
    pub params: HashMap<String, String>,
    pub key: BackendKey,
    /// Bytes received after ReadyForQuery (normally none).
    pub leftover: BytesMut,
}

/// A backend message seen during login; SASL mechanism lists are decoded here because
/// postgres-protocol exposes them only through an iterator trait pgferry does not depend on.
enum LoginMsg {
    Sasl(Vec<String>),
    Other(Message),
}

/// Runs the whole login on an established stream.
pub(super) async fn login<S>(
    stream: &mut S,
    target: &BackendTarget,
) -> Result<LoginOutcome, ServerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(4096);
    send(stream, |out| {
        let mut params = vec![
            ("user", target.user.as_str()),
            ("database", target.dbname.as_str()),
        ];
        params.extend(
            target
                .startup_params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        frontend::startup_message(params, out)
    })
    .await?;
    authenticate(stream, &mut buf, target).await?;
    let (params, key) = await_ready(stream, &mut buf).await?;
    Ok(LoginOutcome {
        params,
        key,
        leftover: buf,
    })
}

/// Answers authentication requests until AuthenticationOk.
async fn authenticate<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    target: &BackendTarget,
) -> Result<(), ServerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match recv(stream, buf).await? {
            LoginMsg::Other(Message::AuthenticationOk) => return Ok(()),
            LoginMsg::Other(Message::AuthenticationCleartextPassword) => {
                let password = password(target)?;
                send(stream, |out| {
                    frontend::password_message(password.as_bytes(), out)
                })
                .await?;
            }
            LoginMsg::Other(Message::AuthenticationMd5Password(body)) => {
                let hash = md5_hash(
                    target.user.as_bytes(),
                    password(target)?.as_bytes(),
                    body.salt(),
                );
                send(stream, |out| {
                    frontend::password_message(hash.as_bytes(), out)
                })
                .await?;
            }
            LoginMsg::Sasl(mechanisms) => scram(stream, buf, target, &mechanisms).await?,
            LoginMsg::Other(other) => return Err(unexpected_auth(&other)),
        }
    }
}

/// Performs SCRAM-SHA-256 (without channel binding) and verifies the server's signature.
async fn scram<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    target: &BackendTarget,
    mechanisms: &[String],
) -> Result<(), ServerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
        return Err(ServerError::UnsupportedAuth(format!(
            "SASL mechanisms {mechanisms:?}"
        )));
    }
    let mut scram = ScramSha256::new(password(target)?.as_bytes(), ChannelBinding::unsupported());
    send(stream, |out| {
        frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), out)
    })
    .await?;
    let LoginMsg::Other(Message::AuthenticationSaslContinue(body)) = recv(stream, buf).await?
    else {
        return Err(protocol("expected AuthenticationSASLContinue"));
    };
    scram
        .update(body.data())
        .map_err(|e| protocol(&format!("SCRAM server-first message: {e}")))?;
    send(stream, |out| frontend::sasl_response(scram.message(), out)).await?;
    let LoginMsg::Other(Message::AuthenticationSaslFinal(body)) = recv(stream, buf).await? else {
        return Err(protocol("expected AuthenticationSASLFinal"));
    };
    scram
        .finish(body.data())
        .map_err(|e| protocol(&format!("SCRAM server signature rejected: {e}")))
}

/// Collects ParameterStatus and BackendKeyData until ReadyForQuery.
async fn await_ready<S>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<(HashMap<String, String>, BackendKey), ServerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut params = HashMap::new();
    let mut key = BackendKey::default();
    loop {
        match recv(stream, buf).await? {
            LoginMsg::Other(Message::ParameterStatus(body)) => {
                let name = body.name().map_err(|e| protocol(&e.to_string()))?;
                let value = body.value().map_err(|e| protocol(&e.to_string()))?;
                params.insert(name.to_string(), value.to_string());
            }
            LoginMsg::Other(Message::BackendKeyData(body)) => {
                key = BackendKey {
                    process_id: body.process_id(),
                    secret_key: body.secret_key(),
                };
            }
            LoginMsg::Other(Message::NoticeResponse(_)) => {}
            LoginMsg::Other(Message::ReadyForQuery(_)) => return Ok((params, key)),
            _ => return Err(protocol("unexpected message before ReadyForQuery")),
        }
    }
}

/// Reads one message; an ErrorResponse becomes `ServerError::Backend`.
async fn recv<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<LoginMsg, ServerError> {
    let mut frame = wire::read_frame(stream, buf).await?;
    let body = frame.get(5..).unwrap_or_default();
    match frame.first() {
        Some(b'E') => return Err(ErrorFields::parse(body).into_error()),
        Some(b'R') if body.get(..4) == Some(&10i32.to_be_bytes()[..]) => {
            return Ok(LoginMsg::Sasl(wire::cstr_list(
                body.get(4..).unwrap_or_default(),
            )));
        }
        _ => {}
    }
    match Message::parse(&mut frame) {
        Ok(Some(message)) => Ok(LoginMsg::Other(message)),
        Ok(None) => Err(protocol("truncated message")),
        Err(e) => Err(protocol(&e.to_string())),
    }
}

/// Encodes one frontend message and writes it out.
async fn send<S, F>(stream: &mut S, encode: F) -> Result<(), ServerError>
where
    S: AsyncWrite + Unpin,
    F: FnOnce(&mut BytesMut) -> io::Result<()>,
{
    let mut out = BytesMut::new();
    encode(&mut out).map_err(|e| protocol(&format!("cannot encode message: {e}")))?;
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(())
}

fn password(target: &BackendTarget) -> Result<&str, ServerError> {
    target.password.as_deref().ok_or_else(|| {
        ServerError::UnsupportedAuth(format!(
            "backend requested a password for user \"{}\" but none is configured",
            target.user
        ))
    })
}

fn unexpected_auth(message: &Message) -> ServerError {
    let method = match message {
        Message::AuthenticationGss | Message::AuthenticationGssContinue(_) => "GSSAPI",
        Message::AuthenticationKerberosV5 => "Kerberos V5",
        Message::AuthenticationScmCredential => "SCM credentials",
        Message::AuthenticationSspi => "SSPI",
        _ => return protocol("unexpected message during authentication"),
    };
    ServerError::UnsupportedAuth(method.to_string())
}

fn protocol(what: &str) -> ServerError {
    ServerError::Protocol(what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendTlsMode;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    fn target() -> BackendTarget {
        BackendTarget {
            database: "appdb".into(),
            host: "localhost".into(),
            port: 5432,
            dbname: "appdb".into(),
            user: "app".into(),
            password: Some("pw".into()),
            tls_mode: BackendTlsMode::Disable,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            startup_params: Vec::new(),
            max_prepared_statements: 100,
        }
    }

    /// Plays a backend that answers the StartupMessage with `reply`.
    async fn login_against(reply: &'static [u8]) -> Result<LoginOutcome, ServerError> {
        let (mut ours, mut theirs) = tokio::io::duplex(4096);
        let backend = tokio::spawn(async move {
            let mut startup = [0u8; 512];
            let _ = theirs.read(&mut startup).await;
            let _ = theirs.write_all(reply).await;
        });
        let result = login(&mut ours, &target()).await;
        let _ = backend.await;
        result
    }

    #[tokio::test]
    async fn startup_errors_keep_the_backend_sqlstate() {
        let reply = b"E\0\0\0\x37SFATAL\0C57P03\0Mthe database system is starting up\0\0";
        match login_against(reply).await {
            Err(ServerError::Backend { sqlstate, message }) => {
                assert_eq!(sqlstate, "57P03");
                assert_eq!(message, "the database system is starting up");
            }
            other => panic!("unexpected: {:?}", other.err()),
        }
    }

    #[tokio::test]
    async fn trust_login_collects_params_key_and_leftover() {
        let reply = b"R\0\0\0\x08\0\0\0\0S\0\0\0\x19client_encoding\0UTF8\0\
                      K\0\0\0\x0c\0\0\0\x07\0\0\0\x09Z\0\0\0\x05IN";
        let Ok(outcome) = login_against(reply).await else {
            panic!("login failed");
        };
        assert_eq!(
            outcome.params.get("client_encoding").map(String::as_str),
            Some("UTF8")
        );
        assert_eq!(
            outcome.key,
            BackendKey {
                process_id: 7,
                secret_key: 9
            }
        );
        assert_eq!(&outcome.leftover[..], b"N");
    }

    #[tokio::test]
    async fn unsupported_methods_are_named() {
        let reply = b"R\0\0\0\x08\0\0\0\x07";
        let err = login_against(reply).await.err();
        assert!(
            matches!(err, Some(ServerError::UnsupportedAuth(ref m)) if m == "GSSAPI"),
            "{err:?}"
        );
    }
}
