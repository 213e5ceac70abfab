//! Registration of a logged-in client with the admin console's registry (rare path: login).

use std::net::SocketAddr;
use std::sync::Arc;

use super::SessionContext;
use crate::admin::registry::{ClientEntry, NewClient};
use crate::metrics::ClientState;
use crate::pool::BackendPool;
use crate::protocol::startup::StartupParams;
use crate::stream::ClientStream;

/// The socket facts the console shows, read once at login (two getsockname-like calls).
pub(crate) struct StreamFacts {
    pub peer: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub tls: bool,
}

impl StreamFacts {
    pub(crate) fn of(stream: &ClientStream) -> Self {
        StreamFacts {
            peer: stream.peer_addr().ok(),
            local: stream.local_addr().ok(),
            tls: stream.is_tls(),
        }
    }
}

/// The user's name as the user store holds it (one allocation per configured user, not per
/// client); a user a reload just removed gets its own copy.
fn shared_name(ctx: &SessionContext, user: &str) -> Arc<str> {
    match ctx.live.load().users.get(user) {
        Some(auth) => Arc::clone(&auth.name),
        None => user.into(),
    }
}

/// The console name a console client asked for, as a static name.
fn console_name(database: &str) -> &'static str {
    use crate::config::{RESERVED_DATABASE, RESERVED_DATABASE_ALIAS};
    if database == RESERVED_DATABASE_ALIAS {
        RESERVED_DATABASE_ALIAS
    } else {
        RESERVED_DATABASE
    }
}

/// Registers a logged-in client with the console registry; the entry also counts it in
/// `pgferry_client_connections` (idle at first).
pub(crate) fn register(
    ctx: &SessionContext,
    facts: &StreamFacts,
    startup: &StartupParams,
    pool: Option<Arc<BackendPool>>,
    id: i32,
) -> ClientEntry {
    let application_name = startup
        .params
        .iter()
        .find(|(name, _)| name == "application_name")
        .map_or_else(String::new, |(_, value)| value.clone());
    let new = NewClient {
        id,
        user: shared_name(ctx, &startup.user),
        console: pool.is_none().then(|| console_name(&startup.database)),
        pool,
        peer: facts.peer,
        local: facts.local,
        tls: facts.tls,
        application_name,
    };
    ctx.registry
        .register(new)
        .with_gauge(ctx.metrics.client_session(ClientState::Idle))
}
