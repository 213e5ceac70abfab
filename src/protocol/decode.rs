//! Decoders for the few messages the proxy must read, each over one isolated frame
//! (`tag + length + body`, already cut out of the stream), so malformed input can never make a
//! decoder read a neighbouring message.

use thiserror::Error;

use super::frame::HEADER_LEN;

/// A frame whose body does not match its declared type.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed '{}' message: {reason}", char::from(*tag))]
pub struct DecodeError {
    pub tag: u8,
    pub reason: &'static str,
}

fn body(frame: &[u8]) -> &[u8] {
    frame.get(HEADER_LEN..).unwrap_or_default()
}

/// Splits a NUL-terminated string off the front of `bytes`.
pub fn take_cstr(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let end = bytes.iter().position(|&b| b == 0)?;
    let text = std::str::from_utf8(&bytes[..end]).ok()?;
    Some((text, &bytes[end + 1..]))
}

/// Transaction status byte of a ReadyForQuery frame.
pub fn ready_status(frame: &[u8]) -> Result<u8, DecodeError> {
    match body(frame) {
        [status @ (b'I' | b'T' | b'E')] => Ok(*status),
        _ => Err(DecodeError {
            tag: b'Z',
            reason: "status must be one byte I, T or E",
        }),
    }
}

/// Name and value of a ParameterStatus frame. Values such as application_name arrive in the
/// client's encoding, so they are decoded lossily rather than refused.
pub fn parameter_status(frame: &[u8]) -> Result<(String, String), DecodeError> {
    let err = |reason| DecodeError { tag: b'S', reason };
    let (name, rest) = take_cbytes(body(frame)).ok_or(err("expected two strings"))?;
    let (value, _) = take_cbytes(rest).ok_or(err("missing value"))?;
    Ok((lossy(name), lossy(value)))
}

/// Splits a NUL-terminated byte string off the front of `bytes`, whatever its encoding.
fn take_cbytes(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == 0)?;
    Some((&bytes[..end], &bytes[end + 1..]))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The fields of an ErrorResponse/NoticeResponse that pgferry uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorFields {
    pub severity: String,
    pub sqlstate: String,
    pub message: String,
}

/// Reads severity, SQLSTATE and message out of an ErrorResponse or NoticeResponse frame.
/// Message text is in the client's encoding (LATIN1, SJIS, ...) and is decoded lossily, for
/// logs only; the SQLSTATE is ASCII.
pub fn error_fields(frame: &[u8]) -> Result<ErrorFields, DecodeError> {
    let tag = frame.first().copied().unwrap_or(b'E');
    let mut fields = ErrorFields::default();
    let mut rest = body(frame);
    while let Some((&code, after)) = rest.split_first() {
        if code == 0 {
            return Ok(fields);
        }
        let (value, next) = take_cbytes(after).ok_or(DecodeError {
            tag,
            reason: "unterminated field",
        })?;
        match code {
            b'V' => fields.severity = lossy(value),
            b'S' if fields.severity.is_empty() => fields.severity = lossy(value),
            b'C' => fields.sqlstate = lossy(value),
            b'M' => fields.message = lossy(value),
            _ => {}
        }
        rest = next;
    }
    Err(DecodeError {
        tag,
        reason: "missing terminator",
    })
}

/// SASLInitialResponse: the mechanism name and the client-first-message.
pub fn sasl_initial_response(frame: &[u8]) -> Result<(&str, &[u8]), DecodeError> {
    let err = |reason| DecodeError { tag: b'p', reason };
    let (mechanism, rest) = take_cstr(body(frame)).ok_or(err("missing mechanism"))?;
    let (len_bytes, data) = rest.split_first_chunk::<4>().ok_or(err("missing length"))?;
    let len = i32::from_be_bytes(*len_bytes);
    if len < 0 || len as usize != data.len() {
        return Err(err("length does not match the data"));
    }
    Ok((mechanism, data))
}

/// SASLResponse / PasswordMessage payload: the whole body.
pub fn password_body(frame: &[u8]) -> &[u8] {
    body(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protocol::test_frame as frame;

    #[test]
    fn decodes_ready_status() {
        assert_eq!(ready_status(&frame(b'Z', b"T")), Ok(b'T'));
        assert!(ready_status(&frame(b'Z', b"")).is_err());
        assert!(ready_status(&frame(b'Z', b"X")).is_err());
    }

    #[test]
    fn decodes_parameter_status() {
        assert_eq!(
            parameter_status(&frame(b'S', b"TimeZone\0UTC\0")),
            Ok(("TimeZone".to_string(), "UTC".to_string()))
        );
        assert!(parameter_status(&frame(b'S', b"TimeZone\0UTC")).is_err());
        let latin1 = parameter_status(&frame(b'S', b"application_name\0caf\xe9\0")).unwrap();
        assert_eq!(latin1.1, "caf\u{fffd}");
    }

    #[test]
    fn decodes_error_fields_and_rejects_truncation() {
        let f = frame(
            b'E',
            b"SERROR\0VERROR\0C42P01\0Mrelation \"x\" does not exist\0\0",
        );
        let fields = error_fields(&f).unwrap();
        assert_eq!(fields.sqlstate, "42P01");
        assert_eq!(fields.severity, "ERROR");
        assert_eq!(fields.message, "relation \"x\" does not exist");
        assert!(error_fields(&frame(b'E', b"SERROR\0C42")).is_err());
        let latin1 = error_fields(&frame(b'E', b"SERROR\0C22P02\0Minvalid \xe9\0\0")).unwrap();
        assert_eq!(
            (latin1.sqlstate.as_str(), latin1.message.as_str()),
            ("22P02", "invalid \u{fffd}")
        );
        assert!(error_fields(&frame(b'E', b"SERROR\0")).is_err());
    }

    #[test]
    fn decodes_sasl_initial_response() {
        let f = frame(b'p', b"SCRAM-SHA-256\0\0\0\0\x03abc");
        assert_eq!(
            sasl_initial_response(&f),
            Ok(("SCRAM-SHA-256", &b"abc"[..]))
        );
        assert!(sasl_initial_response(&frame(b'p', b"SCRAM-SHA-256\0\0\0\0\x09abc")).is_err());
        assert!(sasl_initial_response(&frame(b'p', b"SCRAM")).is_err());
    }
}
