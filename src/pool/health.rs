//! Background probe behind `/readyz` and `pgferry_backend_up`.
//!
//! Readiness must not depend on client traffic: a proxy that has served nobody yet should
//! still say whether its backends serve. A TCP connect is not enough: a backend that accepts
//! connections but refuses logins (wrong backend password, too many connections, recovery) or
//! never completes them (a hung server) cannot serve a single query. So a database is up when
//! one of its pools handed out a connection since the last round, or else when a real login
//! (as that pool's user, closed at once) succeeds within the probe timeout: an idle proxy costs
//! the backend one short login per database every few seconds, a busy one none.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{BackendPool, PoolRegistry};
use crate::metrics::Metrics;
use crate::protocol::sqlstate;

const PROBE_INTERVAL: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What is probed for one configured database.
struct Probed {
    host: String,
    port: u16,
    /// Its pools, by user name; empty if no user has a backend login for it.
    pools: Vec<Arc<BackendPool>>,
}

/// Where the health probe finds the pools to probe: the registry in force now, which a
/// reload may replace between two rounds.
pub type RegistrySource = Arc<dyn Fn() -> Arc<PoolRegistry> + Send + Sync>;

/// Probes every configured backend once, then keeps probing in the background; the returned
/// flag is true while any serves. The first round completes before this returns, so
/// `/readyz` is meaningful from the moment the proxy listens. Each round probes the databases
/// configured at that moment, so a reload's added and removed databases are followed.
pub async fn spawn_health_checker(
    registry: RegistrySource,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Arc<AtomicBool> {
    let ready = Arc::new(AtomicBool::new(false));
    let mut verdicts = BTreeMap::new();
    probe_all(&registry(), &mut verdicts, &metrics, &ready).await;
    let flag = Arc::clone(&ready);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
            probe_all(&registry(), &mut verdicts, &metrics, &flag).await;
        }
    });
    ready
}

/// What is probed for each database configured now.
fn probed(registry: &PoolRegistry) -> BTreeMap<String, Probed> {
    registry
        .databases()
        .map(|d| {
            let probed = Probed {
                host: d.host.clone(),
                port: d.port,
                pools: registry.pools_for(&d.name),
            };
            (d.name.clone(), probed)
        })
        .collect()
}

/// One round over every database; each probe is bounded by [`PROBE_TIMEOUT`]. `verdicts`
/// keeps the last verdict per database, so only changes are logged; a database no longer
/// configured loses its verdict and its `pgferry_backend_up` series.
async fn probe_all(
    registry: &PoolRegistry,
    verdicts: &mut BTreeMap<String, bool>,
    metrics: &Metrics,
    ready: &AtomicBool,
) {
    let backends = probed(registry);
    verdicts.retain(|database, _| {
        let configured = backends.contains_key(database);
        if !configured {
            metrics.forget_backend(database);
        }
        configured
    });
    let mut any_up = false;
    for (database, probed) in &backends {
        let verdict = probe(probed).await;
        let up = verdict.is_ok();
        if verdicts.insert(database.clone(), up) != Some(up) {
            match &verdict {
                Ok(()) => tracing::info!(database = %database, "backend is up"),
                Err(error) => tracing::warn!(database = %database, %error, "backend is down"),
            }
        }
        metrics.set_backend_up(database, up);
        any_up |= up;
    }
    ready.store(any_up, Ordering::Relaxed);
}

/// Up if a pool served a client since the last round, else if a login succeeds. A server that
/// refuses the probe only because it is full (53300) while the pool holds connections to it is
/// up: pools sized to the server's whole budget would otherwise take every idle replica out of
/// service. A database without pools (no user has a backend login for it) can only be checked
/// for reachability.
async fn probe(probed: &Probed) -> Result<(), String> {
    // Every pool's flag is taken, so none carries a stale "served" into the next round.
    let served = probed
        .pools
        .iter()
        .fold(false, |served, pool| pool.take_served() | served);
    if served {
        return Ok(());
    }
    let Some(pool) = probed.pools.first() else {
        return tcp_probe(&probed.host, probed.port).await;
    };
    match pool.probe_login(PROBE_TIMEOUT).await {
        Ok(()) => Ok(()),
        Err(error)
            if error.sqlstate() == sqlstate::TOO_MANY_CONNECTIONS
                && pool.state().connections > 0 =>
        {
            Ok(())
        }
        Err(error) => Err(error.to_string()),
    }
}

async fn tcp_probe(host: &str, port: u16) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!("could not connect to {host}:{port}: {error}")),
        Err(_) => Err(format!(
            "no answer from {host}:{port} within {PROBE_TIMEOUT:?}"
        )),
    }
}
