//! Just enough backend-message framing for login, health checks and cancel tests.
//!
//! The relay hot path frames messages itself; these helpers serve the few places where
//! pgferry talks to a backend on its own behalf. Frames are cut out whole before anything
//! decodes them, so a malformed message can never swallow the next one.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::ServerError;

/// Largest message accepted while pgferry itself is reading (login, health check). Real
/// control messages are tiny; this only stops a broken backend from exhausting memory.
pub const MAX_CONTROL_FRAME: usize = 1 << 20;

/// Total length (tag + length word + body) of the first frame in `buf`, once its header is in.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ServerError> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    match usize::try_from(len) {
        Ok(len) if (4..=MAX_CONTROL_FRAME).contains(&len) => Ok(Some(len + 1)),
        _ => Err(ServerError::Protocol(format!(
            "invalid length {len} for message '{}'",
            char::from(header[0]).escape_default()
        ))),
    }
}

/// Reads one whole frame, first from `buf` (bytes already received) and then from `stream`;
/// bytes past the frame stay in `buf`.
pub async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<BytesMut, ServerError> {
    loop {
        if let Some(len) = frame_len(buf)? {
            if buf.len() >= len {
                return Ok(buf.split_to(len));
            }
            buf.reserve(len - buf.len());
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(ServerError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "backend closed the connection",
            )));
        }
    }
}

/// The fields of an ErrorResponse / NoticeResponse that pgferry reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    /// SQLSTATE ('C' field); "XX000" if the backend omitted it.
    pub sqlstate: String,
    /// Primary message ('M' field).
    pub message: String,
}

impl ErrorFields {
    /// Decodes the body of an 'E' or 'N' frame (the frame without its 5-byte header).
    pub fn parse(body: &[u8]) -> ErrorFields {
        let mut fields = ErrorFields {
            sqlstate: "XX000".to_string(),
            message: String::new(),
        };
        let mut rest = body;
        while let Some((&kind, tail)) = rest.split_first() {
            if kind == 0 {
                break;
            }
            let Some((value, tail)) = split_cstr(tail) else {
                break;
            };
            match kind {
                b'C' => fields.sqlstate = String::from_utf8_lossy(value).into_owned(),
                b'M' => fields.message = String::from_utf8_lossy(value).into_owned(),
                _ => {}
            }
            rest = tail;
        }
        fields
    }

    /// Converts the fields into the error a failed login or health check reports.
    pub fn into_error(self) -> ServerError {
        ServerError::Backend {
            sqlstate: self.sqlstate,
            message: self.message,
        }
    }
}

/// Splits a NUL-terminated string off the front of `buf`.
pub fn split_cstr(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = buf.iter().position(|&b| b == 0)?;
    Some((&buf[..end], &buf[end + 1..]))
}

/// Decodes the list of NUL-terminated names ended by an empty name (SASL mechanisms).
pub fn cstr_list(mut buf: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    while let Some((name, rest)) = split_cstr(buf) {
        if name.is_empty() {
            break;
        }
        names.push(String::from_utf8_lossy(name).into_owned());
        buf = rest;
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields_are_decoded() {
        let body = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed\0\0";
        let fields = ErrorFields::parse(body);
        assert_eq!(fields.sqlstate, "28P01");
        assert_eq!(fields.message, "password authentication failed");
    }

    #[test]
    fn truncated_error_fields_do_not_panic() {
        let fields = ErrorFields::parse(b"C570");
        assert_eq!(fields.sqlstate, "XX000");
        assert_eq!(fields.message, "");
    }

    #[test]
    fn frame_lengths_are_bounded() {
        assert!(matches!(frame_len(b"Z\0\0"), Ok(None)));
        assert!(matches!(frame_len(b"Z\0\0\0\x05I"), Ok(Some(6))));
        assert!(frame_len(b"Z\0\0\0\x03").is_err());
        assert!(frame_len(b"Z\x7f\0\0\0").is_err());
        assert!(frame_len(b"Z\xff\xff\xff\xff").is_err());
    }

    #[test]
    fn sasl_mechanisms_are_listed() {
        let list = cstr_list(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        assert_eq!(list, vec!["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        assert!(cstr_list(b"unterminated").is_empty());
    }

    #[tokio::test]
    async fn read_frame_keeps_following_bytes() {
        let mut input: &[u8] = b"Z\0\0\0\x05IS\0\0";
        let mut buf = BytesMut::new();
        let frame = read_frame(&mut input, &mut buf).await;
        assert!(matches!(frame, Ok(ref f) if &f[..] == b"Z\0\0\0\x05I"));
        assert_eq!(&buf[..], b"S\0\0");
        assert!(read_frame(&mut input, &mut buf).await.is_err());
    }
}
