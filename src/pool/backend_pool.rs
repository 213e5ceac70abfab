//! One pool of backend connections for a (database, user): checkout, checks before reuse, and
//! opening connections.
//!
//! The places and the FIFO hand-off are in [`super::slots`]; this layer decides whether an idle
//! connection is still usable, opens new ones inline in the checking-out client's task (so a
//! connect error reaches that client, and every waiting one, with its own SQLSTATE), and bounds
//! the wait by `query_wait_timeout`.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::AsyncRead;

use tokio::sync::Notify;

use super::baseline::Baseline;
use super::gate::Gate;
use super::generation::Generations;
use super::settings::LiveSettings;
use super::slots::{ConnectFailure, DbCap, Grant, Lent, PoolConn, Slot, Slots, Take};
use crate::config::{DatabaseConfig, Limits, PoolSettings};
use crate::metrics::{PoolMetrics, PoolState};
use crate::protocol::sqlstate;
use crate::server::shown::ServerList;
use crate::server::{BackendTarget, ServerConn, ServerError};

/// Connections idle at least this long are pinged on checkout; fresher ones are trusted, so a
/// busy pool pays no round trip per checkout.
pub const HEALTH_CHECK_AFTER_IDLE: Duration = Duration::from_secs(30);

/// Why no backend connection could be handed out.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CheckoutError {
    #[error("no backend connection available within {} s (pool of {pool_size} for database \"{database}\" is busy)", .waited.as_secs_f64())]
    Exhausted {
        database: String,
        pool_size: u32,
        waited: Duration,
    },
    #[error("no backend connection available within {} s (database \"{database}\" is at its max_db_connections = {cap}, shared by all its pools)", .waited.as_secs_f64())]
    DatabaseCapReached {
        database: String,
        cap: u32,
        waited: Duration,
    },
    #[error("{message}")]
    Backend {
        sqlstate: &'static str,
        message: String,
    },
    /// PAUSE (or KILL) held the database for the client's whole `query_wait_timeout`.
    #[error("database \"{database}\" is paused by an administrator (pgferry PAUSE) and stayed paused for the whole query_wait_timeout ({} s)", .waited.as_secs_f64())]
    Paused { database: String, waited: Duration },
    /// KILL dropped the clients waiting for a connection.
    #[error("terminating connection: database \"{database}\" was killed by an administrator (pgferry KILL)")]
    Killed { database: String },
    /// A reload removed the pool's database (or its user) from the configuration.
    #[error(
        "terminating connection: database \"{database}\" was removed from pgferry's configuration"
    )]
    Retired { database: String },
}

impl CheckoutError {
    /// The SQLSTATE the client receives.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            CheckoutError::Exhausted { .. } | CheckoutError::DatabaseCapReached { .. } => {
                sqlstate::TOO_MANY_CONNECTIONS
            }
            CheckoutError::Backend { sqlstate, .. } => sqlstate,
            CheckoutError::Paused { .. } => sqlstate::CANNOT_CONNECT_NOW,
            CheckoutError::Killed { .. } | CheckoutError::Retired { .. } => {
                sqlstate::ADMIN_SHUTDOWN
            }
        }
    }
}

impl From<ConnectFailure> for CheckoutError {
    fn from(failure: ConnectFailure) -> Self {
        CheckoutError::Backend {
            sqlstate: failure.sqlstate,
            message: failure.message,
        }
    }
}

/// A borrowed backend connection and its place in the pool. `give_back()` returns it for reuse
/// (if clean); dropping it closes the connection.
pub type Checkout = Lent<Box<ServerConn>>;

/// The `max_db_connections` cap shared by the pools of one database.
pub type DatabaseCap = DbCap<Box<ServerConn>>;

/// Connections are boxed: the pool moves them in and out of its idle list and through the
/// hand-off channel, and moving a pointer is cheaper than moving the ~300-byte `ServerConn`.
impl PoolConn for Box<ServerConn> {
    /// A connection a RECONNECT marked is not reused: the pool closes it on give-back.
    fn is_clean(&self) -> bool {
        ServerConn::is_clean(self) && !self.close_needed()
    }
    fn created(&self) -> Instant {
        self.created
    }
    fn last_used(&self) -> Instant {
        self.last_used
    }
}

/// Pool of one (database, backend user).
pub struct BackendPool {
    pub database: String,
    pub user: String,
    /// Mirrors the places' size for the checkout loop's bound (read relaxed, no lock).
    size: AtomicU32,
    pub metrics: PoolMetrics,
    /// Mode, timeouts and target: what a reload changes in place.
    pub(super) settings: LiveSettings,
    /// Set when a reload removed this pool: checkouts are refused, sessions end.
    retired: AtomicBool,
    pub(super) slots: Arc<Slots<Box<ServerConn>>>,
    baseline: RwLock<Option<Arc<Baseline>>>,
    /// Sessions pinned to a backend of this pool (for `pgferry_pool_pinned_connections`).
    pinned: AtomicI64,
    /// Whether the task ending overdue waits runs (started by the first wait).
    expiry_started: AtomicBool,
    /// Connections being opened (connect, TLS, login), for `pgferry_server_connections`.
    connecting: AtomicU32,
    /// Set when a checkout succeeds; the health probe takes it instead of logging in itself.
    served: AtomicBool,
    /// PAUSE / KILL hold new checkouts here (see [`super::control`]).
    pub(super) gate: Gate,
    /// RECONNECT marks the connections opened so far to close when released.
    pub(super) generations: Generations,
    /// The open connections, for the admin console's SHOW SERVERS.
    pub servers: ServerList,
}

impl BackendPool {
    /// An empty pool; [`BackendPool::start_upkeep`] opens `min_pool_size` connections and keeps
    /// the idle ones within `server_idle_timeout` / `server_lifetime`.
    pub fn new(
        db: &DatabaseConfig,
        target: Arc<BackendTarget>,
        limits: &Limits,
        metrics: PoolMetrics,
    ) -> Self {
        let settings = PoolSettings {
            pool_size: db.pool_size,
            pool_mode: db.pool_mode,
        };
        Self::with_settings(db, settings, None, target, limits, metrics)
    }

    /// [`BackendPool::new`] with the size and mode of its user (`users[]` overrides) and the
    /// database's cap, if it has `max_db_connections`.
    pub fn with_settings(
        db: &DatabaseConfig,
        settings: PoolSettings,
        cap: Option<Arc<DatabaseCap>>,
        target: Arc<BackendTarget>,
        limits: &Limits,
        metrics: PoolMetrics,
    ) -> Self {
        let lifetime = (!db.server_lifetime.is_zero()).then_some(db.server_lifetime);
        BackendPool {
            database: db.name.clone(),
            user: target.user.clone(),
            size: AtomicU32::new(settings.pool_size),
            metrics,
            settings: LiveSettings::new(db, limits, settings.pool_mode, target),
            retired: AtomicBool::new(false),
            slots: Slots::capped(settings.pool_size, lifetime, cap),
            baseline: RwLock::new(None),
            pinned: AtomicI64::new(0),
            expiry_started: AtomicBool::new(false),
            connecting: AtomicU32::new(0),
            served: AtomicBool::new(false),
            gate: Gate::default(),
            generations: Generations::default(),
            servers: ServerList::default(),
        }
    }

    /// Borrows a connection: an idle one (checked first), else a new one if the pool has room,
    /// else the next one returned, waiting in FIFO order at most `query_wait_timeout`.
    /// While PAUSE or KILL holds the pool, the client first waits at the gate (the same
    /// `query_wait_timeout` bounds both waits together).
    pub async fn checkout(&self) -> Result<Checkout, CheckoutError> {
        if self.is_retired() {
            return Err(self.retired_error());
        }
        let started = Instant::now();
        let checkout = loop {
            if self.gate.is_held() {
                self.pass_gate(started).await?;
            }
            let checkout = self.acquire(started).await?;
            if !self.gate.is_held() {
                break checkout;
            }
            // Held while this client was served: PAUSE counts the connection as in use
            // until it is back, so hand it back unused and wait like the others.
            checkout.give_back();
        };
        self.metrics.observe_checkout_wait(started.elapsed());
        // Read first: the flag is written once per health-probe round, not per checkout.
        if !self.served.load(Ordering::Relaxed) {
            self.served.store(true, Ordering::Relaxed);
        }
        Ok(checkout)
    }

    /// True if a client got a connection since the last call: the backend serves, so the
    /// health probe needs no login of its own.
    pub fn take_served(&self) -> bool {
        self.served.swap(false, Ordering::Relaxed)
    }

    /// Logs in to the backend as this pool does, then closes the connection, all within
    /// `timeout`: the health probe for a pool that served nobody lately. A TCP connect is not
    /// enough, as a backend can accept connections and still refuse or never complete logins.
    pub async fn probe_login(&self, timeout: Duration) -> Result<(), ServerError> {
        let login_and_leave = async {
            let mut conn = ServerConn::connect_shared(&self.target()).await?;
            conn.terminate().await;
            Ok(())
        };
        tokio::time::timeout(timeout, login_and_leave)
            .await
            .map_err(|_| ServerError::Timeout {
                addr: self.target().addr(),
                after: timeout,
            })?
    }

    async fn acquire(&self, started: Instant) -> Result<Checkout, CheckoutError> {
        // Each unusable idle connection is closed and the next grant taken; at most the whole
        // pool can be unusable, so this loop is bounded by the pool size.
        for _ in 0..=self.size() {
            match self.next_grant(started).await? {
                Grant::Conn(mut lent) => match self.unusable(&mut lent.conn, started).await {
                    Some(reason) => self.metrics.discarded(reason),
                    None => return Ok(lent),
                },
                Grant::Open(slot) => return self.open(slot).await.map_err(CheckoutError::from),
                Grant::Failed(failure) => return Err(failure.into()),
                Grant::Expired => {
                    self.metrics.checkout_timeout();
                    return Err(self.exhausted());
                }
            }
        }
        Err(CheckoutError::Backend {
            sqlstate: sqlstate::CONNECTION_FAILURE,
            message: format!(
                "no usable connection to backend \"{}\" ({})",
                self.database,
                self.target().addr()
            ),
        })
    }

    /// What the pool grants now, or after waiting this client's turn (the expiry task sends
    /// [`Grant::Expired`] when `query_wait_timeout` runs out first).
    async fn next_grant(&self, started: Instant) -> Result<Grant<Box<ServerConn>>, CheckoutError> {
        match self
            .slots
            .take(started + self.settings.query_wait_timeout())
        {
            Take::Now(grant) => Ok(grant),
            Take::Queued(receiver) => {
                self.ensure_expiry();
                // The sender is dropped unanswered only if the pool itself is gone.
                receiver.await.map_err(|_| self.exhausted())
            }
        }
    }

    /// Starts the task that ends waits at their deadline, with the pool's first wait: a pool
    /// whose clients never queue never runs it, and no wait can outlive its deadline.
    fn ensure_expiry(&self) {
        if !self.expiry_started.swap(true, Ordering::Relaxed) {
            let wake = self.slots.queue_started();
            tokio::spawn(expire_waits(Arc::downgrade(&self.slots), wake));
        }
    }

    fn exhausted(&self) -> CheckoutError {
        // Rare path: the pool's lock is fine here. With room in the pool, the cap held it up.
        if let Some(cap) = self
            .slots
            .cap()
            .filter(|_| self.slots.occupancy().open < self.size())
        {
            return CheckoutError::DatabaseCapReached {
                database: self.database.clone(),
                cap: cap.limit(),
                waited: self.settings.query_wait_timeout(),
            };
        }
        CheckoutError::Exhausted {
            database: self.database.clone(),
            pool_size: self.size(),
            waited: self.settings.query_wait_timeout(),
        }
    }

    /// Why an idle connection must not be reused, if it must not.
    async fn unusable(&self, conn: &mut ServerConn, now: Instant) -> Option<&'static str> {
        if self.slots.outlived(conn.created, now) {
            return Some("lifetime");
        }
        if conn.close_needed() {
            return Some("reconnect");
        }
        if is_stale(conn).await {
            return Some("stale");
        }
        let idle_for = now.saturating_duration_since(conn.last_used);
        if idle_for >= HEALTH_CHECK_AFTER_IDLE
            && conn.ping(&Arc::clone(&conn.target)).await.is_err()
        {
            return Some("stale");
        }
        None
    }

    /// Opens a connection in `slot`. On failure every waiting client is told the error too,
    /// then the place is freed.
    async fn open(&self, slot: Slot<Box<ServerConn>>) -> Result<Checkout, ConnectFailure> {
        let connecting = Connecting::count(&self.connecting);
        let generation = self.generations.current();
        let connected = ServerConn::connect_shared(&self.target()).await;
        drop(connecting);
        match connected {
            Ok(mut conn) => {
                conn.shown.set_generation(&generation);
                conn.generation = Some(generation);
                self.metrics.server_connected();
                self.remember_baseline(&conn);
                self.servers.add(&conn.shown);
                Ok(slot.fill(Box::new(conn)))
            }
            Err(error) => {
                let failure = self.connect_failed(&error);
                self.slots.fail_waiters(&failure);
                drop(slot);
                Err(failure)
            }
        }
    }

    fn connect_failed(&self, error: &ServerError) -> ConnectFailure {
        tracing::warn!(database = %self.database, %error, "backend connection failed");
        self.metrics.server_connect_error();
        // The same code at the first login and at every later checkout: the backend's own
        // reason when it refused the login, a connection failure otherwise.
        ConnectFailure {
            sqlstate: sqlstate::login_refusal(error.sqlstate())
                .unwrap_or(sqlstate::CONNECTION_FAILURE),
            message: error.client_message(&self.database),
        }
    }

    /// Starts the background upkeep of this pool: warm connections up to `min_pool_size` and
    /// close idle ones past `server_idle_timeout` or `server_lifetime`. It ends with the pool.
    /// (Waits that run out are ended by the expiry task, which the first wait starts.)
    pub fn start_upkeep(self: &Arc<Self>) {
        tokio::spawn(upkeep(Arc::downgrade(self)));
    }

    /// How often upkeep runs with the settings now in force.
    fn upkeep_period(&self) -> Duration {
        upkeep_period(self.settings.idle_timeout(), self.slots.max_lifetime())
    }

    /// One round of upkeep: close what aged out, then open what `min_pool_size` lacks (one at a
    /// time, so a down backend costs one failed attempt per round). The background task runs it
    /// every period; tests call it directly to observe a round deterministically.
    pub async fn tend(&self) {
        let now = Instant::now();
        let min_idle = self.settings.min_idle();
        for conn in self.slots.reap(now, self.settings.idle_timeout(), min_idle) {
            let reason = if self.slots.outlived(conn.created, now) {
                "lifetime"
            } else {
                "idle_timeout"
            };
            self.metrics.discarded(reason);
        }
        while self.slots.occupancy().idle < min_idle && !self.is_retired() {
            let Some(slot) = self.slots.take_free_place() else {
                return;
            };
            match self.open(slot).await {
                Ok(checkout) => checkout.give_back(),
                Err(_) => return,
            }
        }
    }

    /// A session of this pool became pinned (`+1`) or unpinned (`-1`).
    pub fn pinned_sessions_changed(&self, delta: i64) {
        self.pinned.fetch_add(delta, Ordering::Relaxed);
    }

    fn remember_baseline(&self, conn: &ServerConn) {
        let known = self.baseline.read().map(|b| b.is_some()).unwrap_or(true);
        if !known {
            if let Ok(mut baseline) = self.baseline.write() {
                baseline.get_or_insert_with(|| Arc::new(Baseline::from(conn.params.clone())));
            }
        }
    }

    /// ParameterStatus values of a fresh backend connection (server_version, encodings, ...),
    /// reported to clients at login; `None` until the first connection was made.
    pub fn baseline_params(&self) -> Option<Arc<Baseline>> {
        self.baseline.read().ok().and_then(|b| b.clone())
    }

    /// Pool occupancy, read at scrape time.
    pub fn state(&self) -> PoolState {
        let occupancy = self.slots.occupancy();
        PoolState {
            database: self.database.clone(),
            user: self.user.clone(),
            max_size: self.size(),
            connections: occupancy.open,
            connecting: self.connecting.load(Ordering::Relaxed),
            idle: occupancy.idle,
            waiting: occupancy.waiting + self.gate.waiting(),
            pinned: u32::try_from(self.pinned.load(Ordering::Relaxed)).unwrap_or(0),
            paused: self.gate.is_held(),
            oldest_wait: self.oldest_wait(),
        }
    }
}

/// Counts one connection being opened for as long as it lives (the opening client may be
/// dropped mid-login, e.g. when it disconnects).
struct Connecting<'a>(&'a AtomicU32);

impl<'a> Connecting<'a> {
    fn count(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Connecting(counter)
    }
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection is stale if the backend sent something (a FATAL before closing, as on a restart
/// or failover) or closed while it sat idle. The check is one non-blocking read attempt per
/// checkout (no syscall when the socket has not become readable), and judges each connection on
/// its own evidence.
async fn is_stale(conn: &mut ServerConn) -> bool {
    if !conn.read_buf.is_empty() {
        return true;
    }
    let mut probe = [0u8; 1];
    poll_fn(|cx| {
        let mut buf = tokio::io::ReadBuf::new(&mut probe);
        match std::pin::Pin::new(&mut conn.stream).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Ready(false),
            Poll::Ready(_) => Poll::Ready(true),
        }
    })
    .await
}

/// How often upkeep runs: often enough to honour the shorter of the two timeouts within half
/// of it, and at least every 30 s (to restore `min_pool_size` after a backend outage).
fn upkeep_period(idle_timeout: Option<Duration>, lifetime: Option<Duration>) -> Duration {
    [idle_timeout, lifetime]
        .into_iter()
        .flatten()
        .map(|d| d / 2)
        .fold(Duration::from_secs(30), Duration::min)
        .max(Duration::from_millis(100))
}

async fn upkeep(pool: Weak<BackendPool>) {
    loop {
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.tend().await;
        let period = pool.upkeep_period();
        drop(pool);
        tokio::time::sleep(period).await;
    }
}

/// Ends waits at their deadline, head of the queue first: one timer for the whole pool instead
/// of one per waiting client. It sleeps until the head's deadline, or until a client queues
/// behind nobody; it holds no reference to the places while it sleeps, and ends when they are
/// dropped (their `Drop` wakes it).
async fn expire_waits(slots: Weak<Slots<Box<ServerConn>>>, wake: Arc<Notify>) {
    loop {
        let Some(next) = slots.upgrade().map(|s| s.expire(Instant::now())) else {
            return;
        };
        match next {
            Some(deadline) => tokio::select! {
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
                () = wake.notified() => {}
            },
            None => wake.notified().await,
        }
    }
}

mod limits;
mod reload;

pub use reload::Reconfigure;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upkeep_runs_within_half_the_shorter_timeout_and_at_least_every_30_s() {
        let s = Duration::from_secs;
        assert_eq!(upkeep_period(None, None), s(30));
        assert_eq!(upkeep_period(Some(s(600)), Some(s(3600))), s(30));
        assert_eq!(upkeep_period(Some(s(4)), Some(s(3600))), s(2));
        assert_eq!(upkeep_period(None, Some(s(10))), s(5));
        assert_eq!(
            upkeep_period(Some(Duration::from_millis(50)), None),
            Duration::from_millis(100)
        );
    }
}
