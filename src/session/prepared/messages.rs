//! Decoding and rewriting of the extended-protocol messages that carry statement names
//! (Parse, Bind, Describe, Close), plus builders for the replies pgferry synthesizes.
//!
//! Every decoder works on ONE isolated frame (`tag + i32 length + body`, already cut out of the
//! stream) and never looks past it: a malformed frame is an [`MsgError`], never a panic and never
//! a read into the next message. Bind parameters are not decoded at all (pgwire's Bind decoder
//! reads past its frame): only the two leading name strings are split off and the rest of the
//! body is copied verbatim.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::protocol::frame::HEADER_LEN;
use crate::protocol::messages::{error_response, ready_for_query, Severity};

/// SQLSTATE PostgreSQL uses when a Parse reuses a live statement name.
pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
/// SQLSTATE PostgreSQL uses for Bind/Describe of an unknown statement name.
pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
/// SQLSTATE chosen for "this client has too many prepared statements": the limit is a pgferry
/// configuration setting, which is what `configuration_limit_exceeded` describes.
pub const CONFIGURATION_LIMIT_EXCEEDED: &str = "53400";

/// Statement name pgferry never creates on a server (server names are `pgf_<digits>`), so a
/// Describe of it is guaranteed to fail. See [`poison_frame`].
const NEVER_PREPARED: &[u8] = b"pgferry.never_prepared";

/// Why a client frame could not be decoded or a frame could not be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MsgError {
    #[error("expected a '{}' message, got '{}'", char::from(*expected), char::from(*found))]
    WrongTag { expected: u8, found: u8 },
    #[error("message length does not match the frame")]
    BadLength,
    #[error("string is not NUL-terminated")]
    UnterminatedString,
    #[error("message body is truncated")]
    Truncated,
    #[error("unexpected bytes after the message body")]
    TrailingBytes,
    #[error("invalid Describe/Close target kind {0:#04x}")]
    BadKind(u8),
    #[error("message would exceed the protocol's length limit")]
    TooLong,
}

/// Cursor over one message body; every read is bounds-checked.
struct Body<'a> {
    rest: &'a [u8],
}

impl<'a> Body<'a> {
    fn cstr(&mut self) -> Result<&'a [u8], MsgError> {
        let end = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(MsgError::UnterminatedString)?;
        let (text, rest) = self.rest.split_at(end);
        self.rest = rest.get(1..).unwrap_or_default();
        Ok(text)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], MsgError> {
        let head = self.rest.get(..N).ok_or(MsgError::Truncated)?;
        let array = <[u8; N]>::try_from(head).map_err(|_| MsgError::Truncated)?;
        self.rest = self.rest.get(N..).unwrap_or_default();
        Ok(array)
    }

    fn finish(&self) -> Result<(), MsgError> {
        match self.rest.is_empty() {
            true => Ok(()),
            false => Err(MsgError::TrailingBytes),
        }
    }
}

/// Checks the tag and length header of an isolated frame and returns its body.
fn body_of(frame: &[u8], tag: u8) -> Result<Body<'_>, MsgError> {
    let header = frame.get(..HEADER_LEN).ok_or(MsgError::BadLength)?;
    if header[0] != tag {
        return Err(MsgError::WrongTag {
            expected: tag,
            found: header[0],
        });
    }
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    match usize::try_from(len) {
        Ok(len) if len >= 4 && len == frame.len() - 1 => Ok(Body {
            rest: &frame[HEADER_LEN..],
        }),
        _ => Err(MsgError::BadLength),
    }
}

/// Frame builder: writes the tag and a length placeholder, patched by [`Frame::finish`].
struct Frame(BytesMut);

impl Frame {
    fn new(tag: u8, capacity: usize) -> Self {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + capacity);
        buf.put_u8(tag);
        buf.put_i32(0);
        Frame(buf)
    }

    fn cstr(&mut self, text: &[u8]) -> &mut Self {
        self.0.put_slice(text);
        self.0.put_u8(0);
        self
    }

    fn finish(mut self) -> Result<Bytes, MsgError> {
        let len = i32::try_from(self.0.len() - 1).map_err(|_| MsgError::TooLong)?;
        self.0[1..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        Ok(self.0.freeze())
    }
}

/// A decoded Parse message. Strings are raw bytes in the client encoding (not necessarily
/// UTF-8); the cache compares them byte for byte, exactly as the server would see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMsg<'a> {
    /// Client's statement name; empty for the unnamed statement.
    pub name: &'a [u8],
    pub query: &'a [u8],
    /// Declared parameter type OIDs (0 = unspecified), in order.
    pub param_oids: Vec<u32>,
}

/// Decodes a Parse ('P') frame.
pub fn parse_parse(frame: &[u8]) -> Result<ParseMsg<'_>, MsgError> {
    let mut body = body_of(frame, b'P')?;
    let name = body.cstr()?;
    let query = body.cstr()?;
    // PostgreSQL reads the count as unsigned (up to 65535 types); so does pgferry, so it never
    // refuses a Parse that PostgreSQL would accept.
    let count = usize::from(u16::from_be_bytes(body.take::<2>()?));
    let param_oids = (0..count)
        .map(|_| body.take::<4>().map(u32::from_be_bytes))
        .collect::<Result<Vec<_>, _>>()?;
    body.finish()?;
    Ok(ParseMsg {
        name,
        query,
        param_oids,
    })
}

/// Builds a Parse frame (used with the server-side `pgf_<n>` name).
pub fn build_parse(name: &[u8], query: &[u8], oids: &[u32]) -> Result<Bytes, MsgError> {
    let count = u16::try_from(oids.len()).map_err(|_| MsgError::TooLong)?;
    let mut frame = Frame::new(b'P', name.len() + query.len() + 4 + 4 * oids.len());
    frame.cstr(name).cstr(query);
    frame.0.put_u16(count);
    oids.iter().for_each(|oid| frame.0.put_u32(*oid));
    frame.finish()
}

/// The names at the front of a Bind ('B') frame; parameters are deliberately not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindNames<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
}

fn split_bind(frame: &[u8]) -> Result<(BindNames<'_>, &[u8]), MsgError> {
    let mut body = body_of(frame, b'B')?;
    let portal = body.cstr()?;
    let statement = body.cstr()?;
    Ok((BindNames { portal, statement }, body.rest))
}

/// Decodes the portal and statement names of a Bind frame.
pub fn parse_bind(frame: &[u8]) -> Result<BindNames<'_>, MsgError> {
    split_bind(frame).map(|(names, _)| names)
}

/// Rebuilds a Bind frame with another statement name; portal and parameters are kept verbatim.
pub fn rewrite_bind(frame: &[u8], statement: &[u8]) -> Result<Bytes, MsgError> {
    let (names, rest) = split_bind(frame)?;
    let mut out = Frame::new(b'B', names.portal.len() + statement.len() + 2 + rest.len());
    out.cstr(names.portal).cstr(statement);
    out.0.put_slice(rest);
    out.finish()
}

/// What a Describe or Close refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Statement,
    Portal,
}

impl TargetKind {
    fn byte(self) -> u8 {
        match self {
            TargetKind::Statement => b'S',
            TargetKind::Portal => b'P',
        }
    }
}

/// The body of a Describe ('D') or Close ('C') frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub kind: TargetKind,
    pub name: &'a [u8],
}

/// Decodes a Describe (`tag = b'D'`) or Close (`tag = b'C'`) frame.
pub fn parse_target(frame: &[u8], tag: u8) -> Result<Target<'_>, MsgError> {
    let mut body = body_of(frame, tag)?;
    let kind = match body.take::<1>()? {
        [b'S'] => TargetKind::Statement,
        [b'P'] => TargetKind::Portal,
        [other] => return Err(MsgError::BadKind(other)),
    };
    let name = body.cstr()?;
    body.finish()?;
    Ok(Target { kind, name })
}

/// Builds a Describe or Close frame.
pub fn build_target(tag: u8, kind: TargetKind, name: &[u8]) -> Result<Bytes, MsgError> {
    let mut frame = Frame::new(tag, name.len() + 2);
    frame.0.put_u8(kind.byte());
    frame.cstr(name);
    frame.finish()
}

/// Rebuilds a Describe frame with another name (same kind).
pub fn rewrite_describe(frame: &[u8], name: &[u8]) -> Result<Bytes, MsgError> {
    let target = parse_target(frame, b'D')?;
    build_target(b'D', target.kind, name)
}

/// Close of a server-side statement (evictions, stale plans); its CloseComplete is swallowed.
pub fn build_close_statement(name: &[u8]) -> Result<Bytes, MsgError> {
    build_target(b'C', TargetKind::Statement, name)
}

/// CommandComplete `DEALLOCATE` + ReadyForQuery(`status`): the reply to a SQL-level
/// `DEALLOCATE name` of a protocol-level name, answered by pgferry.
pub fn deallocate_complete(status: u8) -> Bytes {
    let mut buf = BytesMut::with_capacity(22);
    buf.put_slice(b"C\0\0\0\x0fDEALLOCATE\0");
    ready_for_query(&mut buf, status);
    buf.freeze()
}

/// CloseComplete, synthesized for a client's Close of a named statement.
pub fn close_complete() -> Bytes {
    Bytes::from_static(b"3\0\0\0\x04")
}

fn error(sqlstate: &str, message: &str) -> Bytes {
    let mut buf = BytesMut::new();
    error_response(&mut buf, Severity::Error, sqlstate, message);
    buf.freeze()
}

/// The error PostgreSQL sends when a Parse reuses a live statement name.
pub fn duplicate_statement_error(name: &[u8]) -> Bytes {
    let name = String::from_utf8_lossy(name);
    let message = format!("prepared statement \"{name}\" already exists");
    error(DUPLICATE_PREPARED_STATEMENT, &message)
}

/// The error PostgreSQL sends for Bind/Describe of a statement name that does not exist.
pub fn missing_statement_error(name: &[u8]) -> Bytes {
    let name = String::from_utf8_lossy(name);
    let message = format!("prepared statement \"{name}\" does not exist");
    error(INVALID_SQL_STATEMENT_NAME, &message)
}

/// The error for a client exceeding pgferry's per-client prepared statement limit.
pub fn too_many_statements_error(limit: usize) -> Bytes {
    let message = format!(
        "too many prepared statements (pgferry allows {limit} per client); close unused ones"
    );
    error(CONFIGURATION_LIMIT_EXCEEDED, &message)
}

/// A frame that makes the server fail exactly where pgferry answers a client message with an
/// error, so the server also skips to the next Sync and aborts an open transaction, as
/// PostgreSQL would have. The relay forwards it in place of the client's message and replaces
/// the server's ErrorResponse to it with pgferry's own.
pub fn poison_frame() -> Bytes {
    // Infallible in practice: the name is a short constant.
    build_target(b'D', TargetKind::Statement, NEVER_PREPARED).unwrap_or_default()
}

#[cfg(test)]
#[path = "messages_tests.rs"]
mod tests;
