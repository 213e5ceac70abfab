//! Builders for the messages pgferry sends on its own behalf (errors, authentication requests,
//! the post-login parameter burst). Encoding is delegated to pgwire's message types; pgwire's
//! decoders are not used because they read past frame ends on malformed input.

use bytes::{BufMut, BytesMut};
use pgwire::messages::response::{ErrorResponse, NoticeResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};
use pgwire::messages::Message;

/// Severity of an ErrorResponse: FATAL ends the session, ERROR does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// Appends `message`'s encoding to `buf`. Encoding only fails for messages beyond pgwire's size
/// limits, which pgferry never builds; such a failure is logged rather than panicking.
fn put<M: Message>(buf: &mut BytesMut, message: &M) {
    if let Err(error) = message.encode(buf) {
        tracing::error!(%error, "failed to encode a protocol message");
    }
}

/// ErrorResponse with severity, SQLSTATE and human message, as PostgreSQL formats it.
pub fn error_response(buf: &mut BytesMut, severity: Severity, sqlstate: &str, message: &str) {
    put(
        buf,
        &ErrorResponse::new(fields(severity.as_str(), sqlstate, message)),
    );
}

/// The fields PostgreSQL always sends: severity (localized and not), SQLSTATE, message.
fn fields(severity: &str, sqlstate: &str, message: &str) -> Vec<(u8, String)> {
    vec![
        (b'S', severity.to_string()),
        (b'V', severity.to_string()),
        (b'C', sqlstate.to_string()),
        (b'M', message.to_string()),
    ]
}

/// NoticeResponse with severity WARNING (SQLSTATE 01000), for things the client should know
/// but that do not fail its statement.
pub fn warning(buf: &mut BytesMut, message: &str) {
    put(
        buf,
        &NoticeResponse::new(fields("WARNING", "01000", message)),
    );
}

/// ReadyForQuery with the given transaction status byte (`I`, `T` or `E`).
pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let status = match status {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    put(buf, &ReadyForQuery::new(status));
}

/// AuthenticationOk.
pub fn auth_ok(buf: &mut BytesMut) {
    put(buf, &Authentication::Ok);
}

/// AuthenticationSASL offering SCRAM-SHA-256 (no channel binding variant).
pub fn auth_sasl(buf: &mut BytesMut) {
    put(
        buf,
        &Authentication::SASL(vec!["SCRAM-SHA-256".to_string()]),
    );
}

/// AuthenticationSASLContinue carrying the server-first-message.
pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    put(
        buf,
        &Authentication::SASLContinue(bytes::Bytes::copy_from_slice(data)),
    );
}

/// AuthenticationSASLFinal carrying the server-final-message.
pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    put(
        buf,
        &Authentication::SASLFinal(bytes::Bytes::copy_from_slice(data)),
    );
}

/// AuthenticationMD5Password with a 4-byte salt.
pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    put(buf, &Authentication::MD5Password(salt.to_vec()));
}

/// ParameterStatus(name, value).
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    put(
        buf,
        &ParameterStatus::new(name.to_string(), value.to_string()),
    );
}

/// BackendKeyData with the proxy-issued cancel key.
pub fn backend_key_data(buf: &mut BytesMut, process_id: i32, secret: i32) {
    put(
        buf,
        &BackendKeyData::new(process_id, SecretKey::I32(secret)),
    );
}

/// NegotiateProtocolVersion: we speak 3.0 and none of the `_pq_` options the client asked for.
pub fn negotiate_protocol_version(buf: &mut BytesMut, unsupported_options: Vec<String>) {
    put(buf, &NegotiateProtocolVersion::new(0, unsupported_options));
}

/// A simple Query message (used for statements the proxy injects, like ROLLBACK).
pub fn query(buf: &mut BytesMut, sql: &str) {
    put_text_message(buf, b'Q', sql);
}

/// A frontend message whose body is one NUL-terminated string.
fn put_text_message(buf: &mut BytesMut, tag: u8, text: &str) {
    buf.put_u8(tag);
    buf.put_i32((4 + text.len() + 1) as i32);
    buf.put_slice(text.as_bytes());
    buf.put_u8(0);
}

/// Sync: closes an extended-protocol batch the client left open.
pub fn sync(buf: &mut BytesMut) {
    buf.put_slice(&[b'S', 0, 0, 0, 4]);
}

/// CopyFail: aborts a COPY FROM STDIN the client abandoned.
pub fn copy_fail(buf: &mut BytesMut, reason: &str) {
    put_text_message(buf, b'f', reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_layout_matches_postgres() {
        let mut buf = BytesMut::new();
        error_response(&mut buf, Severity::Fatal, "28P01", "bad");
        let expected: &[u8] = b"E\0\0\0\x1fSFATAL\0VFATAL\0C28P01\0Mbad\0\0";
        assert_eq!(&buf[..], expected);
    }

    #[test]
    fn ready_for_query_and_query_layouts() {
        let mut buf = BytesMut::new();
        ready_for_query(&mut buf, b'T');
        query(&mut buf, "ROLLBACK");
        assert_eq!(&buf[..], b"Z\0\0\0\x05TQ\0\0\0\x0dROLLBACK\0");
    }

    #[test]
    fn auth_messages_layout() {
        let mut buf = BytesMut::new();
        auth_sasl(&mut buf);
        assert_eq!(&buf[..], b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0");
        buf.clear();
        auth_ok(&mut buf);
        assert_eq!(&buf[..], b"R\0\0\0\x08\0\0\0\0");
        buf.clear();
        backend_key_data(&mut buf, 7, -1);
        assert_eq!(&buf[..], b"K\0\0\0\x0c\0\0\0\x07\xff\xff\xff\xff");
    }
}
