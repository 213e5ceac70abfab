//! SHOW POOLS, DATABASES, USERS, LISTS: configuration joined with live pool and client counts.

use std::sync::Arc;

use bytes::BytesMut;

use super::sorted_pools;
use crate::admin::registry::ClientInfo;
use crate::admin::result::{self, int4, text, Cell, Column};
use crate::metrics::ClientState;
use crate::pool::BackendPool;
use crate::session::SessionContext;

const POOLS: &[Column] = &[
    text("database"),
    text("user"),
    int4("cl_active"),
    int4("cl_waiting"),
    int4("cl_active_cancel_req"),
    int4("cl_waiting_cancel_req"),
    int4("sv_active"),
    int4("sv_active_cancel"),
    int4("sv_being_canceled"),
    int4("sv_idle"),
    int4("sv_used"),
    int4("sv_tested"),
    int4("sv_login"),
    int4("maxwait"),
    int4("maxwait_us"),
    text("pool_mode"),
    text("load_balance_hosts"),
];

/// SHOW POOLS: one row per (database, user) pool. PgBouncer counts idle logged-in clients as
/// `cl_active`, and so does pgferry; `maxwait` is the longest current wait for a connection.
pub fn pools(ctx: &SessionContext, out: &mut BytesMut) {
    let clients = ctx.registry.clients();
    let now_ms = ctx.registry.clock.precise_ms();
    let rows: Vec<Vec<Cell>> = sorted_pools(ctx)
        .iter()
        .map(|pool| {
            let state = pool.state();
            let mine = clients_of(&clients, pool);
            let waiting: Vec<_> = mine
                .iter()
                .map(|c| c.snapshot())
                .filter(|s| s.state == ClientState::Waiting)
                .collect();
            let max_wait_ms = waiting
                .iter()
                .map(|s| now_ms.saturating_sub(s.request_ms))
                .max()
                .unwrap_or(0);
            let active_servers = state
                .connections
                .saturating_sub(state.idle)
                .saturating_sub(state.connecting);
            vec![
                pool.database.as_str().into(),
                pool.user.as_str().into(),
                (mine.len() - waiting.len()).into(),
                waiting.len().into(),
                0.into(),
                0.into(),
                active_servers.into(),
                0.into(),
                0.into(),
                state.idle.into(),
                0.into(),
                0.into(),
                state.connecting.into(),
                (max_wait_ms / 1000).into(),
                (max_wait_ms % 1000 * 1000).into(),
                pool.mode().as_str().into(),
                Cell::Null,
            ]
        })
        .collect();
    result::write_table(out, POOLS, &rows);
}

fn clients_of<'a>(clients: &'a [Arc<ClientInfo>], pool: &Arc<BackendPool>) -> Vec<&'a ClientInfo> {
    clients
        .iter()
        .filter(|c| c.pool.as_ref().is_some_and(|p| Arc::ptr_eq(p, pool)))
        .map(|c| &**c)
        .collect()
}

const DATABASES: &[Column] = &[
    text("name"),
    text("host"),
    int4("port"),
    text("database"),
    text("force_user"),
    int4("pool_size"),
    int4("min_pool_size"),
    int4("reserve_pool_size"),
    int4("server_lifetime"),
    text("pool_mode"),
    text("load_balance_hosts"),
    int4("max_connections"),
    int4("current_connections"),
    int4("max_client_connections"),
    int4("current_client_connections"),
    int4("paused"),
    int4("disabled"),
];

/// SHOW DATABASES: one row per `[[databases]]` entry. `max_connections` is
/// `max_db_connections` (0: no cap), `max_client_connections` 0 (pgferry limits clients per
/// user, not per database), `paused` 1 while PAUSE or KILL holds it, `disabled` 0.
pub fn databases(ctx: &SessionContext, out: &mut BytesMut) {
    let clients = ctx.registry.clients();
    let pools = sorted_pools(ctx);
    let config = ctx.config();
    let rows: Vec<Vec<Cell>> = config
        .databases
        .iter()
        .map(|db| {
            let servers: u32 = pools
                .iter()
                .filter(|p| p.database == db.name)
                .map(|p| p.state().connections)
                .sum();
            let client_count = clients.iter().filter(|c| c.database() == db.name).count();
            vec![
                db.name.as_str().into(),
                db.host.as_str().into(),
                db.port.into(),
                db.dbname.as_str().into(),
                db.backend_user.as_deref().into(),
                db.pool_size.into(),
                db.min_pool_size.into(),
                0.into(),
                db.server_lifetime.as_secs().into(),
                db.pool_mode.as_str().into(),
                Cell::Null,
                db.max_db_connections.unwrap_or(0).into(),
                servers.into(),
                0.into(),
                client_count.into(),
                i32::from(crate::control::is_held(ctx, &db.name)).into(),
                0.into(),
            ]
        })
        .collect();
    result::write_table(out, DATABASES, &rows);
}

const USERS: &[Column] = &[
    text("name"),
    text("pool_size"),
    text("reserve_pool_size"),
    text("pool_mode"),
    int4("max_user_connections"),
    int4("current_connections"),
    int4("max_user_client_connections"),
    int4("current_client_connections"),
];

/// SHOW USERS: one row per `[[users]]` entry, with its overrides (`users[].pool_size`,
/// `pool_mode`; empty/NULL as in PgBouncer when none) and `max_client_connections` as
/// PgBouncer's `max_user_client_connections` (0: no limit). `max_user_connections` is 0:
/// pgferry caps server connections per pool and per database, not per user.
pub fn users(ctx: &SessionContext, out: &mut BytesMut) {
    let clients = ctx.registry.clients();
    let pools = sorted_pools(ctx);
    let config = ctx.config();
    let rows: Vec<Vec<Cell>> = config
        .users
        .iter()
        .map(|user| {
            let servers: u32 = pools
                .iter()
                .filter(|p| p.user == user.name)
                .map(|p| p.state().connections)
                .sum();
            let client_count = clients.iter().filter(|c| *c.user == user.name).count();
            let limits = user.limits;
            vec![
                user.name.as_str().into(),
                limits
                    .pool_size
                    .map_or_else(String::new, |n| n.to_string())
                    .into(),
                "".into(),
                limits.pool_mode.map(|m| m.as_str()).into(),
                0.into(),
                servers.into(),
                limits.max_client_connections.unwrap_or(0).into(),
                client_count.into(),
            ]
        })
        .collect();
    result::write_table(out, USERS, &rows);
}

/// SHOW LISTS: PgBouncer's internal list sizes, the ones pgferry has filled in, the rest 0.
pub fn lists(ctx: &SessionContext, out: &mut BytesMut) {
    let pools = sorted_pools(ctx);
    let servers: usize = pools.iter().map(|p| p.servers.live().len()).sum();
    let items: [(&str, usize); 14] = [
        ("databases", ctx.config().databases.len()),
        ("users", ctx.config().users.len()),
        ("peers", 0),
        ("pools", pools.len()),
        ("peer_pools", 0),
        ("free_clients", 0),
        ("used_clients", ctx.registry.client_count()),
        ("login_clients", 0),
        ("free_servers", 0),
        ("used_servers", servers),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ];
    let rows: Vec<Vec<Cell>> = items
        .iter()
        .map(|(name, n)| vec![(*name).into(), (*n).into()])
        .collect();
    result::write_table(out, &[text("list"), int4("items")], &rows);
}
