//! Error texts that name the client's statements, not pgferry's.
//!
//! The backend only knows the shared server names `pgf_<n>`, so its errors say e.g. `bind
//! message supplies 1 parameters, but prepared statement "pgf_3" requires 2`. A direct
//! connection would name the client's own statement; a client (or its log) must never see a
//! name it did not choose. PostgreSQL quotes statement names in its texts (`"name"`), so every
//! quoted `"pgf_<digits>"` in an ErrorResponse is replaced by the client's name for that
//! statement. Runs on the error path only, and copies nothing unless such a name is present.

use bytes::{BufMut, Bytes, BytesMut};

use super::client_map::ClientStatements;
use crate::protocol::frame::HEADER_LEN;
use crate::server::StatementId;

const QUOTED_PREFIX: &[u8] = b"\"pgf_";

/// The ErrorResponse `frame` (tag, length, body) with every quoted server statement name the
/// client knows replaced by the client's name; `None` when nothing needs replacing.
pub fn name_client_statements(frame: &[u8], client: &ClientStatements) -> Option<Bytes> {
    let body = frame.get(HEADER_LEN..)?;
    let mut out: Option<BytesMut> = None;
    let mut copied = 0;
    let mut at = 0;
    while let Some(found) = find(&body[at..], QUOTED_PREFIX) {
        let start = at + found;
        at = start + QUOTED_PREFIX.len();
        let Some((id, end)) = server_name_at(body, start) else {
            continue;
        };
        let Some(name) = client.name_of(id) else {
            continue;
        };
        let buf = out.get_or_insert_with(|| BytesMut::with_capacity(frame.len() + 64));
        buf.put_slice(&body[copied..start + 1]);
        buf.put_slice(name);
        copied = end; // the closing quote is copied with the rest
        at = end;
    }
    let mut rewritten = out?;
    rewritten.put_slice(&body[copied..]);
    let len = i32::try_from(rewritten.len() + 4).ok()?;
    let mut framed = BytesMut::with_capacity(HEADER_LEN + rewritten.len());
    framed.put_u8(frame[0]);
    framed.put_i32(len);
    framed.put_slice(&rewritten);
    Some(framed.freeze())
}

/// `body[start..]` begins with `"pgf_<digits>"`: the statement and the index of the closing
/// quote.
fn server_name_at(body: &[u8], start: usize) -> Option<(StatementId, usize)> {
    let digits_from = start + QUOTED_PREFIX.len();
    let digits = body.get(digits_from..)?;
    let count = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if count == 0 || digits.get(count) != Some(&b'"') {
        return None;
    }
    let number = std::str::from_utf8(&digits[..count]).ok()?.parse().ok()?;
    Some((StatementId(number), digits_from + count))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::cache::StatementCache;
    use super::super::client_map::Named;
    use super::*;
    use crate::protocol::messages::{error_response, Severity};

    fn error(message: &str) -> Bytes {
        let mut buf = BytesMut::new();
        error_response(&mut buf, Severity::Error, "08P01", message);
        buf.freeze()
    }

    fn client_with(name: &str, cache: &StatementCache, query: &str) -> (ClientStatements, u64) {
        let statement = cache.get_or_insert(query.as_bytes(), &[], false).unwrap();
        let id = statement.id.0;
        let mut client = ClientStatements::new(10);
        let named = Named {
            statement: Arc::clone(&statement),
            generation: 0,
        };
        client.register(name.as_bytes(), named).unwrap();
        (client, id)
    }

    #[test]
    fn server_names_become_client_names_and_the_length_follows() {
        let cache = StatementCache::new(10);
        let (client, id) = client_with("my_stmt", &cache, "SELECT $1");
        let server = format!(
            "bind message supplies 1 parameters, but prepared statement \"pgf_{id}\" requires 2"
        );
        let rewritten = name_client_statements(&error(&server), &client).unwrap();
        let expected = error(
            "bind message supplies 1 parameters, but prepared statement \"my_stmt\" requires 2",
        );
        assert_eq!(rewritten, expected);
    }

    #[test]
    fn unrelated_or_unknown_names_are_left_alone() {
        let cache = StatementCache::new(10);
        let (client, id) = client_with("s", &cache, "SELECT 1");
        let unknown = id + 1000;
        for text in [
            "syntax error at or near \"pgf\"".to_string(),
            format!("prepared statement \"pgf_{unknown}\" does not exist"),
            format!("relation \"pgf_{id}x\" does not exist"),
            format!("column pgf_{id} does not exist"),
        ] {
            assert_eq!(name_client_statements(&error(&text), &client), None);
        }
    }

    #[test]
    fn every_occurrence_is_replaced() {
        let cache = StatementCache::new(10);
        let (client, id) = client_with("a", &cache, "SELECT 1");
        let text = format!("\"pgf_{id}\" and \"pgf_{id}\" and \"pgf_\"");
        let rewritten = name_client_statements(&error(&text), &client).unwrap();
        assert_eq!(rewritten, error("\"a\" and \"a\" and \"pgf_\""));
    }
}
