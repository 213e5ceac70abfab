//! pgferry's own SHOWs about transaction-pooling state: pinned sessions and the shared cache
//! of named prepared statements.

use bytes::BytesMut;

use crate::admin::registry::format_time;
use crate::admin::result::{self, int4, text, Cell, Column};
use crate::session::SessionContext;

/// How much of a statement's text SHOW PREPARED shows.
const QUERY_PREFIX_CHARS: usize = 100;

const PINS: &[Column] = &[
    int4("client"),
    text("user"),
    text("database"),
    text("reasons"),
    text("since"),
];

/// SHOW PINS: every pinned client, its reasons (comma-separated, in the order they began)
/// and when the first began.
pub fn pins(ctx: &SessionContext, out: &mut BytesMut) {
    let rows: Vec<Vec<Cell>> = ctx
        .registry
        .clients()
        .iter()
        .filter_map(|c| {
            let pins = c.pins();
            let since = pins.iter().map(|(_, at)| *at).min()?;
            let reasons: Vec<&str> = pins.iter().map(|(r, _)| *r).collect();
            Some(vec![
                c.id.into(),
                (*c.user).into(),
                c.database().into(),
                reasons.join(",").into(),
                format_time(since).into(),
            ])
        })
        .collect();
    result::write_table(out, PINS, &rows);
}

const PREPARED: &[Column] = &[
    text("name"),
    text("query"),
    int4("clients"),
    int4("backends"),
];

/// SHOW PREPARED: the process-wide cache of named prepared statements: the server-side name,
/// the start of the text, how many client statement names map to it and how many backend
/// connections have it prepared now.
pub fn prepared(ctx: &SessionContext, out: &mut BytesMut) {
    let rows: Vec<Vec<Cell>> = ctx
        .statements
        .entries()
        .iter()
        .map(|s| {
            let text = String::from_utf8_lossy(&s.query);
            let prefix: String = text.chars().take(QUERY_PREFIX_CHARS).collect();
            // Held by the cache, by this listing, and by each client name using it.
            let clients = std::sync::Arc::strong_count(s).saturating_sub(2);
            let name = s.id.to_string().into();
            vec![name, prefix.into(), clients.into(), s.backends().into()]
        })
        .collect();
    result::write_table(out, PREPARED, &rows);
}
