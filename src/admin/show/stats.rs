//! SHOW STATS, STATS_TOTALS, STATS_AVERAGES: per-database sums of the pool counters the hot
//! path already keeps for Prometheus (times in microseconds, as PgBouncer reports them).
//!
//! Differences from PgBouncer: byte counts and prepared-statement counts are not kept per
//! pool (0), and averages are over the proxy's uptime rather than the last 15 s period.

use std::time::Duration;

use bytes::BytesMut;

use super::sorted_pools;
use crate::admin::result::{self, numeric, text, Cell, Column};
use crate::metrics::PoolTotals;
use crate::session::SessionContext;

/// SHOW STATS: database, the eleven `total_*`, then the eleven `avg_*` (PgBouncer 1.25).
const STATS: &[Column] = &[
    text("database"),
    numeric("total_server_assignment_count"),
    numeric("total_xact_count"),
    numeric("total_query_count"),
    numeric("total_received"),
    numeric("total_sent"),
    numeric("total_xact_time"),
    numeric("total_query_time"),
    numeric("total_wait_time"),
    numeric("total_client_parse_count"),
    numeric("total_server_parse_count"),
    numeric("total_bind_count"),
    numeric("avg_server_assignment_count"),
    numeric("avg_xact_count"),
    numeric("avg_query_count"),
    numeric("avg_recv"),
    numeric("avg_sent"),
    numeric("avg_xact_time"),
    numeric("avg_query_time"),
    numeric("avg_wait_time"),
    numeric("avg_client_parse_count"),
    numeric("avg_server_parse_count"),
    numeric("avg_bind_count"),
];

/// SHOW STATS_TOTALS.
const TOTALS: &[Column] = &[
    text("database"),
    numeric("server_assignment_count"),
    numeric("xact_count"),
    numeric("query_count"),
    numeric("bytes_received"),
    numeric("bytes_sent"),
    numeric("xact_time"),
    numeric("query_time"),
    numeric("wait_time"),
    numeric("client_parse_count"),
    numeric("server_parse_count"),
    numeric("bind_count"),
];

/// SHOW STATS_AVERAGES (PgBouncer names the last three `avg_*` here and the others plainly).
const AVERAGES: &[Column] = &[
    text("database"),
    numeric("server_assignment_count"),
    numeric("xact_count"),
    numeric("query_count"),
    numeric("bytes_received"),
    numeric("bytes_sent"),
    numeric("xact_time"),
    numeric("query_time"),
    numeric("wait_time"),
    numeric("avg_client_parse_count"),
    numeric("avg_server_parse_count"),
    numeric("avg_bind_count"),
];

/// Per database (in pool order): the summed totals.
fn per_database(ctx: &SessionContext) -> Vec<(String, PoolTotals)> {
    let mut out: Vec<(String, PoolTotals)> = Vec::new();
    for pool in sorted_pools(ctx) {
        let t = pool.metrics.totals();
        match out.last_mut() {
            Some((db, sum)) if *db == pool.database => add(sum, &t),
            _ => out.push((pool.database.clone(), t)),
        }
    }
    out
}

fn add(sum: &mut PoolTotals, t: &PoolTotals) {
    sum.checkouts += t.checkouts;
    sum.transactions += t.transactions;
    sum.queries += t.queries;
    sum.transaction_time += t.transaction_time;
    sum.query_time += t.query_time;
    sum.wait_time += t.wait_time;
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The eleven totals in PgBouncer's column order.
fn totals_row(t: &PoolTotals) -> [u64; 11] {
    [
        t.checkouts,
        t.transactions,
        t.queries,
        0,
        0,
        micros(t.transaction_time),
        micros(t.query_time),
        micros(t.wait_time),
        0,
        0,
        0,
    ]
}

/// PgBouncer's averages: counts per second, times per transaction / query / assignment.
fn averages_row(t: &PoolTotals, uptime: Duration) -> [u64; 11] {
    let per_second = |n: u64| {
        let ms = uptime.as_millis().max(1);
        u64::try_from(u128::from(n) * 1000 / ms).unwrap_or(u64::MAX)
    };
    let mean = |time: Duration, n: u64| micros(time).checked_div(n).unwrap_or(0);
    [
        per_second(t.checkouts),
        per_second(t.transactions),
        per_second(t.queries),
        0,
        0,
        mean(t.transaction_time, t.transactions),
        mean(t.query_time, t.queries),
        mean(t.wait_time, t.checkouts),
        0,
        0,
        0,
    ]
}

fn uptime(ctx: &SessionContext) -> Duration {
    Duration::from_millis(ctx.registry.clock.precise_ms())
}

/// SHOW STATS: totals then averages per database.
pub fn stats(ctx: &SessionContext, out: &mut BytesMut) {
    let uptime = uptime(ctx);
    let rows = rows(ctx, |t| {
        let mut values = totals_row(t).to_vec();
        values.extend(averages_row(t, uptime));
        values
    });
    result::write_table(out, STATS, &rows);
}

/// SHOW STATS_TOTALS: the totals per database.
pub fn totals(ctx: &SessionContext, out: &mut BytesMut) {
    let rows = rows(ctx, |t| totals_row(t).to_vec());
    result::write_table(out, TOTALS, &rows);
}

/// SHOW STATS_AVERAGES: the averages per database.
pub fn averages(ctx: &SessionContext, out: &mut BytesMut) {
    let uptime = uptime(ctx);
    let rows = rows(ctx, |t| averages_row(t, uptime).to_vec());
    result::write_table(out, AVERAGES, &rows);
}

fn rows(ctx: &SessionContext, values: impl Fn(&PoolTotals) -> Vec<u64>) -> Vec<Vec<Cell>> {
    per_database(ctx)
        .iter()
        .map(|(db, t)| {
            let numbers = values(t).into_iter().map(Cell::from);
            std::iter::once(db.as_str().into()).chain(numbers).collect()
        })
        .collect()
}
