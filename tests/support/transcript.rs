//! A raw-protocol client that logs in with any startup parameters (SCRAM, md5 or trust) and
//! records every backend message as readable text, so a session through pgferry can be compared
//! message by message with the same session on a direct connection to PostgreSQL.

use std::net::SocketAddr;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::probe::read_message;

/// One backend message as text: `S name=value`, `C tag`, `D a|b`, `E severity code message`,
/// `Z status`; other messages by their type byte alone.
fn describe(tag: u8, body: &[u8]) -> String {
    let fields: Vec<String> = body
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).to_string())
        .collect();
    match tag {
        b'S' => format!(
            "S {}={}",
            fields[0],
            fields.get(1).cloned().unwrap_or_default()
        ),
        b'C' => format!("C {}", fields[0]),
        b'Z' => format!("Z {}", char::from(body[0])),
        b'E' | b'N' => {
            let field = |code: char| {
                fields
                    .iter()
                    .find(|f| f.starts_with(code))
                    .map(|f| f[1..].to_string())
                    .unwrap_or_default()
            };
            format!(
                "{} {} {} {}",
                char::from(tag),
                field('V'),
                field('C'),
                field('M')
            )
        }
        b'D' => data_row(body),
        other => char::from(other).to_string(),
    }
}

fn data_row(body: &[u8]) -> String {
    let count = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut pos = 2;
    let mut values = Vec::new();
    for _ in 0..count {
        let len = i32::from_be_bytes([body[pos], body[pos + 1], body[pos + 2], body[pos + 3]]);
        pos += 4;
        if len < 0 {
            values.push("NULL".to_string());
        } else {
            let len = len as usize;
            values.push(String::from_utf8_lossy(&body[pos..pos + len]).to_string());
            pos += len;
        }
    }
    format!("D {}", values.join("|"))
}

/// A logged-in raw session.
pub struct Session {
    stream: TcpStream,
}

/// How a login ended: a session with the messages after AuthenticationOk (ParameterStatus,
/// BackendKeyData, ReadyForQuery), or the messages that ended it.
pub enum Login {
    Ok(Session, Vec<String>),
    Refused(Vec<String>),
}

impl Login {
    /// The session, panicking with the transcript if the login was refused.
    pub fn session(self) -> (Session, Vec<String>) {
        match self {
            Login::Ok(session, messages) => (session, messages),
            Login::Refused(messages) => panic!("login refused: {messages:?}"),
        }
    }
}

impl Session {
    /// Logs in to `addr` as `user` with the startup parameters `params` (besides user and
    /// database). The transcript starts after authentication; BackendKeyData shows as `K`.
    pub async fn login(
        addr: SocketAddr,
        user: &str,
        password: &str,
        database: &str,
        params: &[(&str, &str)],
    ) -> Login {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut all = vec![("user", user), ("database", database)];
        all.extend_from_slice(params);
        let mut buf = BytesMut::new();
        frontend::startup_message(all, &mut buf).expect("startup message");
        stream.write_all(&buf).await.expect("send startup");
        let mut scram = None;
        let mut transcript = Vec::new();
        loop {
            let (tag, body) = read_message(&mut stream).await.expect("login message");
            if tag == b'R' {
                let kind = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                buf.clear();
                match kind {
                    0 => {
                        transcript.push("R 0".to_string());
                        continue;
                    }
                    5 => {
                        let salt = [body[4], body[5], body[6], body[7]];
                        let hash = postgres_protocol::authentication::md5_hash(
                            user.as_bytes(),
                            password.as_bytes(),
                            salt,
                        );
                        frontend::password_message(hash.as_bytes(), &mut buf).expect("md5");
                    }
                    10 => {
                        let exchange =
                            ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                        frontend::sasl_initial_response(
                            "SCRAM-SHA-256",
                            exchange.message(),
                            &mut buf,
                        )
                        .expect("sasl initial");
                        scram = Some(exchange);
                    }
                    11 => {
                        let exchange = scram.as_mut().expect("SASL started");
                        exchange.update(&body[4..]).expect("server-first");
                        frontend::sasl_response(exchange.message(), &mut buf).expect("sasl");
                    }
                    12 => {
                        let exchange = scram.as_mut().expect("SASL started");
                        exchange.finish(&body[4..]).expect("server-final");
                        continue;
                    }
                    other => panic!("unexpected authentication request {other}"),
                }
                stream.write_all(&buf).await.expect("send auth");
                continue;
            }
            transcript.push(describe(tag, &body));
            match tag {
                b'E' => return Login::Refused(transcript),
                b'Z' => return Login::Ok(Session { stream }, transcript),
                _ => {}
            }
        }
    }

    /// Runs `sql` as one simple Query; the transcript of its reply through ReadyForQuery.
    pub async fn query(&mut self, sql: &str) -> Vec<String> {
        self.pipeline(&[sql]).await
    }

    /// Sends each of `sqls` as a simple Query in one write, without waiting; the transcript
    /// of all replies through the last ReadyForQuery.
    pub async fn pipeline(&mut self, sqls: &[&str]) -> Vec<String> {
        let mut buf = BytesMut::new();
        for sql in sqls {
            frontend::query(sql, &mut buf).expect("query message");
        }
        self.stream.write_all(&buf).await.expect("send queries");
        let mut transcript = Vec::new();
        let mut ready = 0;
        while ready < sqls.len() {
            let (tag, body) = read_message(&mut self.stream)
                .await
                .expect("message before ReadyForQuery");
            transcript.push(describe(tag, &body));
            ready += usize::from(tag == b'Z');
        }
        transcript
    }
}

/// The messages of a login transcript that may legitimately differ between pgferry and
/// PostgreSQL (BackendKeyData values never show; the server-specific values are kept).
pub fn parameter_statuses(transcript: &[String]) -> Vec<String> {
    let mut statuses: Vec<String> = transcript
        .iter()
        .filter(|m| m.starts_with("S "))
        .cloned()
        .collect();
    statuses.sort();
    statuses
}
