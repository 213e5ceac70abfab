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
        user: startup.user.clone(),
        database: startup.database.clone(),
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
