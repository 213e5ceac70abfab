//! Proxy assembly: binds listeners, builds pools, metrics and TLS, and runs the accept loop.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::admission::Admission;
use crate::auth::UserStore;
use crate::cancel::CancelRegistry;
use crate::config::Config;
use crate::control::ShutdownMode;
use crate::live::{client_tls, Live, LiveState};
use crate::metrics::{Metrics, PoolStateSource};
use crate::pool::{spawn_health_checker, PoolRegistry, RegistrySource};
use crate::reload::{ReloadError, ReloadSummary, Reloader};
use crate::session::park::{self, LotPoll, ParkingLot};
use crate::session::signal::{self, SessionSignal, SignalSender};
use crate::session::{self, SessionContext};

/// Why the proxy could not start (bad TLS files, ports in use, invalid users).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Entry point for running pgferry in-process.
pub struct Proxy;

/// A running proxy: its bound addresses and a way to reload or stop it.
pub struct ProxyHandle {
    client_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    /// Stops the accept loop alone (SHUTDOWN WAIT_FOR_CLIENTS keeps metrics and health up).
    stop_accepting: watch::Sender<bool>,
    signals: SignalSender,
    ctx: Arc<SessionContext>,
}

impl Proxy {
    /// Validates the configuration, binds the listeners and starts serving; returns once the
    /// proxy accepts connections. Backends are not contacted: an unreachable database never
    /// prevents startup.
    pub async fn start(config: Config) -> Result<ProxyHandle, StartError> {
        Proxy::start_with(config, Reloader::default()).await
    }

    /// Like [`Proxy::start`], for a proxy that can reload: `reloader` says where the
    /// configuration comes from (the binary's file and flags).
    pub async fn start_with(config: Config, reloader: Reloader) -> Result<ProxyHandle, StartError> {
        config
            .validate()
            .map_err(|e| StartError::Invalid(e.to_string()))?;
        let config = Arc::new(config);
        let metrics = Metrics::new();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (signals_tx, signals_rx) = watch::channel(SessionSignal::default());
        let controls = crate::control::Controls::new(signals_tx.clone());
        let (ctx, lot_poll) = build_context(&config, &metrics, signals_rx, controls, reloader)?;
        let ctx = Arc::new(ctx);
        if let Some(poll) = lot_poll {
            tokio::spawn(park::serve(Arc::clone(&ctx), poll));
            let period = config.limits.client_park_after;
            tokio::spawn(signal::run_park_clock(signals_tx.clone(), period));
        }
        let pool_source: Arc<dyn PoolStateSource> = ctx.clone();
        metrics.set_pool_source(Arc::downgrade(&pool_source));
        let addr = config.listen.addr;
        let listener = crate::stream::bind_client_listener(addr)
            .map_err(|source| StartError::Bind { addr, source })?;
        let client_addr = local_addr(&listener, config.listen.addr)?;
        let live = Arc::downgrade(&ctx);
        let registry: RegistrySource = Arc::new(move || match live.upgrade() {
            Some(ctx) => Arc::clone(&ctx.live.load().pools),
            None => Arc::new(PoolRegistry::empty()),
        });
        let ready = spawn_health_checker(registry, Arc::clone(&metrics), shutdown_rx.clone()).await;
        let metrics_addr = match config.metrics.listen {
            Some(addr) => {
                let http = bind(addr).await?;
                let bound = local_addr(&http, addr)?;
                let readiness = Arc::new(move || ready.load(Ordering::Relaxed));
                tokio::spawn(crate::http::serve(
                    http,
                    Arc::clone(&metrics),
                    readiness,
                    shutdown_rx.clone(),
                ));
                Some(bound)
            }
            None => None,
        };
        let (stop_accepting, accepting_rx) = watch::channel(false);
        tokio::spawn(accept_loop(listener, Arc::clone(&ctx), accepting_rx));
        tracing::info!(%client_addr, ?metrics_addr, "pgferry listening");
        Ok(ProxyHandle {
            client_addr,
            metrics_addr,
            shutdown: shutdown_tx,
            stop_accepting,
            signals: signals_tx,
            ctx,
        })
    }
}

fn build_context(
    config: &Arc<Config>,
    metrics: &Arc<Metrics>,
    signals: watch::Receiver<SessionSignal>,
    control: crate::control::Controls,
    reloader: Reloader,
) -> Result<(SessionContext, Option<LotPoll>), StartError> {
    let invalid = |e: &dyn std::fmt::Display| StartError::Invalid(e.to_string());
    let users = UserStore::from_config(&config.users).map_err(|e| invalid(&e))?;
    let pools = PoolRegistry::build(config, metrics).map_err(|e| invalid(&e))?;
    let tls = client_tls(config).map_err(StartError::Invalid)?;
    let parking = !config.limits.client_park_after.is_zero();
    let (parking, lot_poll) = ParkingLot::new(parking, metrics)
        .map_err(|e| StartError::Invalid(format!("parking lot: {e}")))?;
    let ctx = SessionContext {
        live: LiveState::new(Live {
            config: Arc::clone(config),
            users,
            pools: Arc::new(pools),
            tls,
        }),
        cancel: CancelRegistry::new(),
        metrics: Arc::clone(metrics),
        statements: crate::session::prepared::StatementCache::new(
            config.pooling.max_cached_statements,
        ),
        signals,
        parking,
        control,
        registry: crate::admin::registry::Registry::new(),
        admission: Admission::new(config.limits.max_client_connections),
        reloader,
    };
    ctx.registry.clock.start();
    Ok((ctx, lot_poll))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })
}

/// Accepts clients until shutdown; each gets its own task. Clients beyond
/// `max_client_connections` are told 53300 after their startup packet, as PostgreSQL does.
async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<SessionContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        crate::stream::tune_accepted(&tcp);
        ctx.metrics.client_accepted();
        let ctx = Arc::clone(&ctx);
        match ctx.admission.try_admit() {
            Some(permit) => {
                tokio::spawn(session::run_client(tcp, peer, ctx, permit));
            }
            None => {
                tokio::spawn(reject_over_limit(tcp, ctx));
            }
        }
    }
}

async fn reject_over_limit(tcp: TcpStream, ctx: Arc<SessionContext>) {
    let config = ctx.config();
    let message = format!(
        "sorry, too many clients already (pgferry max_client_connections = {})",
        config.limits.max_client_connections
    );
    let limit = config.limits.login_timeout;
    let _ = tokio::time::timeout(limit, session::refuse_opening(tcp, &ctx, &message)).await;
}

impl ProxyHandle {
    /// Address clients connect to (useful when the config asked for port 0).
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Address of the metrics/health HTTP endpoint, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The shared metrics (tests read values directly as well as over HTTP).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.ctx.metrics
    }

    /// Re-reads the configuration (as SIGHUP does) and applies it without dropping a client;
    /// a rejected configuration changes nothing.
    pub async fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        crate::reload::reload(&self.ctx).await
    }

    /// The shared session context: the admin control calls ([`crate::control`]) take it,
    /// and tests use it to drive them without the console.
    pub fn context(&self) -> &Arc<SessionContext> {
        &self.ctx
    }

    /// Resolves with the first SHUTDOWN requested on the admin console; the binary awaits it
    /// next to SIGTERM and then calls [`ProxyHandle::shutdown_as`].
    pub async fn shutdown_requested(&self) -> ShutdownMode {
        self.ctx.control.shutdown_requested().await
    }

    /// Shuts down as SHUTDOWN `mode` asks. `Immediate` is [`ProxyHandle::shutdown`] (as on
    /// SIGTERM). `WaitForClients` first stops accepting and waits, without a bound, until
    /// every client has disconnected. `WaitForServers` first stops accepting, pauses every
    /// pool and waits until no server connection is borrowed, then resumes the held clients
    /// into the ordinary graceful shutdown.
    pub async fn shutdown_as(self, mode: ShutdownMode) {
        match mode {
            ShutdownMode::Immediate => {}
            ShutdownMode::WaitForClients => {
                let _ = self.stop_accepting.send(true);
                tracing::info!("SHUTDOWN WAIT_FOR_CLIENTS: waiting for every client to leave");
                self.ctx.admission.wait_all_ended_unbounded().await;
            }
            ShutdownMode::WaitForServers => {
                let _ = self.stop_accepting.send(true);
                tracing::info!("SHUTDOWN WAIT_FOR_SERVERS: waiting for server connections");
                let pools: Vec<_> = self.ctx.live.load().pools.pools().cloned().collect();
                for pool in &pools {
                    pool.pause();
                }
                crate::control::servers_released(&self.ctx).await;
                for pool in &pools {
                    pool.resume();
                }
            }
        }
        self.shutdown().await;
    }

    /// Stops accepting, tells idle clients the proxy is going away, lets sessions inside a
    /// transaction finish it (bounded by `shutdown_timeout`).
    pub async fn shutdown(self) {
        let _ = self.stop_accepting.send(true);
        let _ = self.shutdown.send(true);
        self.signals.send_modify(|signal| signal.draining = true);
        let limits = self.ctx.config().limits.clone();
        if !self
            .ctx
            .admission
            .wait_all_ended(limits.shutdown_timeout)
            .await
        {
            tracing::warn!("shutdown timeout: closing remaining sessions");
            self.signals.send_modify(|signal| signal.closing = true);
            let reset = limits.server_reset_timeout;
            self.ctx.admission.wait_all_ended(reset).await;
        }
    }
}
