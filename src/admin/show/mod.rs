//! SHOW commands: each builds its table from live state at the moment it is asked.

use std::sync::Arc;

use bytes::BytesMut;

use super::command::Show;
use super::result::{self, text};
use crate::session::SessionContext;

/// What SHOW VERSION says: one column `version`, as exporters require.
pub const VERSION: &str = concat!("pgferry ", env!("CARGO_PKG_VERSION"));

/// Writes the answer to one SHOW (result set or notices, then CommandComplete `SHOW`).
pub fn run(what: Show, ctx: &Arc<SessionContext>, out: &mut BytesMut) {
    let _ = ctx;
    match what {
        Show::Help => help(out),
        Show::Version => result::write_table(out, &[text("version")], &[vec![VERSION.into()]]),
        _ => result::write_table(out, &[], &[]),
    }
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
