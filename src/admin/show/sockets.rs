//! SHOW CLIENTS and SHOW SERVERS: one row per connection, PgBouncer's 21 columns.
//!
//! `ptr` / `link` are not memory addresses here but stable names, `c<id>` for a client and
//! `s<id>` for a server connection, so the link between the two can be followed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::SystemTime;

use bytes::BytesMut;

use super::sorted_pools;
use crate::admin::registry::{format_time, ClientInfo};
use crate::admin::result::{self, int4, text, Cell, Column};
use crate::metrics::ClientState;
use crate::server::ServerInfo;
use crate::session::SessionContext;

const SOCKETS: &[Column] = &[
    text("type"),
    text("user"),
    text("database"),
    text("replication"),
    text("state"),
    text("addr"),
    int4("port"),
    text("local_addr"),
    int4("local_port"),
    text("connect_time"),
    text("request_time"),
    int4("wait"),
    int4("wait_us"),
    int4("close_needed"),
    text("ptr"),
    text("link"),
    int4("remote_pid"),
    text("tls"),
    text("application_name"),
    int4("prepared_statements"),
    int4("id"),
];

fn ip(addr: Option<SocketAddr>) -> Cell {
    addr.map_or(Cell::Null, |a| a.ip().to_string().into())
}

fn port(addr: Option<SocketAddr>) -> Cell {
    addr.map_or(Cell::Int(0), |a| a.port().into())
}

fn tls(on: bool) -> Cell {
    if on { "TLS" } else { "" }.into()
}

fn time(at: SystemTime) -> Cell {
    format_time(at).into()
}

/// SHOW CLIENTS: every logged-in client, console sessions included (as in PgBouncer).
pub fn clients(ctx: &SessionContext, out: &mut BytesMut) {
    let clock = &ctx.registry.clock;
    let now_ms = clock.precise_ms();
    let links = server_links(ctx);
    let rows: Vec<Vec<Cell>> = ctx
        .registry
        .clients()
        .iter()
        .map(|c| {
            let s = c.snapshot();
            let waited = match s.state {
                ClientState::Waiting => now_ms.saturating_sub(s.request_ms),
                _ => 0,
            };
            let state = match s.state {
                ClientState::Idle => "idle",
                ClientState::Active => "active",
                ClientState::Waiting => "waiting",
            };
            let link = links.get(&c.id).map_or(String::new(), |s| format!("s{s}"));
            client_row(c, state, clock.wall(s.request_ms), waited, link, s.prepared)
        })
        .collect();
    result::write_table(out, SOCKETS, &rows);
}

fn client_row(
    c: &ClientInfo,
    state: &str,
    request: SystemTime,
    waited_ms: u64,
    link: String,
    prepared: u32,
) -> Vec<Cell> {
    vec![
        "C".into(),
        (*c.user).into(),
        c.database().into(),
        "none".into(),
        state.into(),
        ip(c.peer),
        port(c.peer),
        ip(c.local),
        port(c.local),
        time(c.connected_at),
        time(request.max(c.connected_at)),
        (waited_ms / 1000).into(),
        (waited_ms % 1000 * 1000).into(),
        0.into(),
        format!("c{}", c.id).into(),
        link.into(),
        0.into(),
        tls(c.tls),
        (*c.application_name).into(),
        prepared.into(),
        c.id.into(),
    ]
}

/// Client id → the server connection it holds now.
fn server_links(ctx: &SessionContext) -> HashMap<i32, u64> {
    sorted_pools(ctx)
        .iter()
        .flat_map(|p| p.servers.live())
        .filter_map(|s| s.snapshot().client.map(|c| (c, s.id)))
        .collect()
}

/// SHOW SERVERS: every open backend connection, per pool. A connection lent to a client is
/// `active`, one in the pool `idle`; connections being opened are not listed yet (SHOW POOLS
/// counts them as `sv_login`).
pub fn servers(ctx: &SessionContext, out: &mut BytesMut) {
    let clock = &ctx.registry.clock;
    let mut rows = Vec::new();
    for pool in sorted_pools(ctx) {
        for server in pool.servers.live() {
            let s = server.snapshot();
            let (state, link) = match s.client {
                Some(client) => ("active", format!("c{client}")),
                None => ("idle", String::new()),
            };
            let request = clock.wall(s.request_ms).max(server.connected_at);
            rows.push(server_row(
                &server,
                &pool.user,
                &pool.database,
                state,
                request,
                link,
            ));
        }
    }
    result::write_table(out, SOCKETS, &rows);
}

fn server_row(
    s: &ServerInfo,
    user: &str,
    database: &str,
    state: &str,
    request: SystemTime,
    link: String,
) -> Vec<Cell> {
    vec![
        "S".into(),
        user.into(),
        database.into(),
        "none".into(),
        state.into(),
        ip(s.peer),
        port(s.peer),
        ip(s.local),
        port(s.local),
        time(s.connected_at),
        time(request),
        0.into(),
        0.into(),
        i32::from(s.close_needed()).into(),
        format!("s{}", s.id).into(),
        link.into(),
        s.remote_pid.into(),
        tls(s.tls),
        "".into(),
        0.into(),
        s.id.into(),
    ]
}
