//! SHOW commands: each builds its table from live state at the moment it is asked.

mod pools;
mod sessions;
mod sockets;
mod stats;

use std::sync::Arc;

use bytes::BytesMut;

use super::command::Show;
use super::result::{self, text, Cell};
use crate::config::keys;
use crate::pool::BackendPool;
use crate::session::SessionContext;

/// What SHOW VERSION says: one column `version`, as exporters require.
pub const VERSION: &str = concat!("pgferry ", env!("CARGO_PKG_VERSION"));

/// Writes the answer to one SHOW (result set or notices, then CommandComplete `SHOW`).
pub fn run(what: Show, ctx: &Arc<SessionContext>, out: &mut BytesMut) {
    match what {
        Show::Help => help(out),
        Show::Version => result::write_table(out, &[text("version")], &[vec![VERSION.into()]]),
        Show::Config => config(ctx, out),
        Show::Pools => pools::pools(ctx, out),
        Show::Databases => pools::databases(ctx, out),
        Show::Users => pools::users(ctx, out),
        Show::Lists => pools::lists(ctx, out),
        Show::Clients => sockets::clients(ctx, out),
        Show::Servers => sockets::servers(ctx, out),
        Show::Stats => stats::stats(ctx, out),
        Show::StatsTotals => stats::totals(ctx, out),
        Show::StatsAverages => stats::averages(ctx, out),
        Show::Pins => sessions::pins(ctx, out),
        Show::Prepared => sessions::prepared(ctx, out),
    }
}

/// The pools ordered by database, then user (the registry is a hash map).
fn sorted_pools(ctx: &SessionContext) -> Vec<Arc<BackendPool>> {
    let mut pools: Vec<_> = ctx.live.load().pools.pools().cloned().collect();
    pools.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
    pools
}

/// SHOW CONFIG: key, value, default, changeable (PgBouncer's four columns).
fn config(ctx: &SessionContext, out: &mut BytesMut) {
    let columns = [
        text("key"),
        text("value"),
        text("default"),
        text("changeable"),
    ];
    let rows: Vec<Vec<Cell>> = keys::settings(&ctx.config())
        .into_iter()
        .map(|s| {
            let changeable = if s.changeable { "yes" } else { "no" };
            vec![
                s.key.into(),
                s.value.into(),
                s.default.into(),
                changeable.into(),
            ]
        })
        .collect();
    result::write_table(out, &columns, &rows);
}

/// The command list, as PgBouncer sends it: one NOTICE, then CommandComplete.
fn help(out: &mut BytesMut) {
    const USAGE: &str = "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\
        \n\tSHOW LISTS|PINS|PREPARED\
        \n\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES\
        \n\tRELOAD\
        \n\tPAUSE [<db>]\
        \n\tRESUME [<db>]\
        \n\tDISABLE <db>\
        \n\tENABLE <db>\
        \n\tRECONNECT [<db>]\
        \n\tKILL [<db>]\
        \n\tKILL_CLIENT <client_id>\
        \n\tSUSPEND\
        \n\tSHUTDOWN\
        \n\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\
        \n\tWAIT_CLOSE [<db>]";
    result::notice(out, "Console usage", USAGE);
    result::command_complete(out, "SHOW");
}
