//! Background reachability probe behind `/readyz` and `pgferry_backend_up`.
//!
//! Readiness must not depend on client traffic: a proxy that has served nobody yet should
//! still say whether its backends answer. A TCP connect every few seconds is enough to tell a
//! load balancer whether to send Lambdas here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::Config;
use crate::metrics::Metrics;

const PROBE_INTERVAL: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes every configured backend once, then keeps probing in the background; the returned
/// flag is true while any answers. The first round completes before this returns, so
/// `/readyz` is meaningful from the moment the proxy listens.
pub async fn spawn_health_checker(
    config: &Config,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Arc<AtomicBool> {
    let ready = Arc::new(AtomicBool::new(false));
    let backends: BTreeMap<String, (String, u16)> = config
        .databases
        .iter()
        .map(|d| (d.name.clone(), (d.host.clone(), d.port)))
        .collect();
    probe_all(&backends, &metrics, &ready).await;
    let flag = Arc::clone(&ready);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
            probe_all(&backends, &metrics, &flag).await;
        }
    });
    ready
}

async fn probe_all(
    backends: &BTreeMap<String, (String, u16)>,
    metrics: &Metrics,
    ready: &AtomicBool,
) {
    let mut any_up = false;
    for (database, (host, port)) in backends {
        let up = probe(host, *port).await;
        metrics.set_backend_up(database, up);
        any_up |= up;
    }
    ready.store(any_up, Ordering::Relaxed);
}

async fn probe(host: &str, port: u16) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}
