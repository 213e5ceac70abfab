//! One pool of backend connections for a (database, user), with fair admission.
//!
//! bb8 waiters are not FIFO, so a FIFO semaphore with `pool_size` permits sits in front of
//! `get()`: whoever waited longest gets the next connection, and the wait is bounded by
//! `query_wait_timeout`. A checkout holds its permit until the connection is returned.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::AsyncRead;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::failures::{ConnectFailures, FailureSink};
use crate::config::{DatabaseConfig, Limits, PoolMode};
use crate::metrics::{PoolMetrics, PoolState};
use crate::protocol::sqlstate;
use crate::server::{BackendTarget, ServerConn, ServerManager};

/// Why no backend connection could be handed out.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CheckoutError {
    #[error("no backend connection available within {} s (pool of {pool_size} for database \"{database}\" is busy)", .waited.as_secs_f64())]
    Exhausted {
        database: String,
        pool_size: u32,
        waited: Duration,
    },
    #[error("{message}")]
    Backend { sqlstate: String, message: String },
}

impl CheckoutError {
    /// The SQLSTATE the client receives.
    pub fn sqlstate(&self) -> &str {
        match self {
            CheckoutError::Exhausted { .. } => sqlstate::TOO_MANY_CONNECTIONS,
            CheckoutError::Backend { sqlstate, .. } => sqlstate,
        }
    }
}

/// A borrowed backend connection plus the admission permit it occupies.
pub struct Checkout {
    pub conn: bb8::PooledConnection<'static, ServerManager>,
    _permit: OwnedSemaphorePermit,
}

/// Pool of one (database, backend user).
pub struct BackendPool {
    pub database: String,
    pub user: String,
    pub mode: PoolMode,
    pub size: u32,
    pub target: Arc<BackendTarget>,
    pub metrics: PoolMetrics,
    query_wait_timeout: Duration,
    admission: Arc<Semaphore>,
    inner: bb8::Pool<ServerManager>,
    failures: Arc<ConnectFailures>,
    baseline: RwLock<Option<Arc<HashMap<String, String>>>>,
    /// Clients currently waiting in `checkout` (for `pgferry_pool_waiting_clients`).
    waiting: AtomicU32,
    /// Sessions pinned to a backend of this pool (for `pgferry_pool_pinned_connections`).
    pinned: AtomicI64,
}

/// Counts a client as waiting for as long as it is alive.
struct Waiting<'a>(&'a AtomicU32);

impl<'a> Waiting<'a> {
    fn new(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BackendPool {
    /// Builds the bb8 pool (no connections are opened until needed or `min_pool_size` asks).
    pub fn new(
        db: &DatabaseConfig,
        target: Arc<BackendTarget>,
        limits: &Limits,
        metrics: PoolMetrics,
    ) -> Self {
        let failures = ConnectFailures::new(&db.name);
        let sink = FailureSink {
            failures: Arc::clone(&failures),
            metrics: metrics.clone(),
        };
        let inner = bb8::Pool::builder()
            .max_size(db.pool_size)
            .min_idle((db.min_pool_size > 0).then_some(db.min_pool_size))
            .connection_timeout(db.connect_timeout + Duration::from_millis(500))
            .idle_timeout((!db.server_idle_timeout.is_zero()).then_some(db.server_idle_timeout))
            .max_lifetime((!db.server_lifetime.is_zero()).then_some(db.server_lifetime))
            .retry_connection(false)
            .test_on_check_out(true)
            .error_sink(Box::new(sink))
            .build_unchecked(ServerManager::new(Arc::clone(&target)));
        BackendPool {
            database: db.name.clone(),
            user: target.user.clone(),
            mode: db.pool_mode,
            size: db.pool_size,
            target,
            metrics,
            query_wait_timeout: limits.query_wait_timeout,
            admission: Arc::new(Semaphore::new(db.pool_size as usize)),
            inner,
            failures,
            baseline: RwLock::new(None),
            waiting: AtomicU32::new(0),
            pinned: AtomicI64::new(0),
        }
    }

    /// Borrows a connection: waits (FIFO) at most `query_wait_timeout` for a free slot, then for
    /// bb8 to hand over an idle connection or open a new one.
    pub async fn checkout(&self) -> Result<Checkout, CheckoutError> {
        let started = Instant::now();
        let _waiting = Waiting::new(&self.waiting);
        let Some(permit) = self.admit().await else {
            self.metrics.checkout_timeout();
            return Err(CheckoutError::Exhausted {
                database: self.database.clone(),
                pool_size: self.size,
                waited: self.query_wait_timeout,
            });
        };
        let conn = self.get_connection(started).await?;
        self.metrics.observe_checkout_wait(started.elapsed());
        self.remember_baseline(&conn);
        Ok(Checkout {
            conn,
            _permit: permit,
        })
    }

    /// A free slot at once when there is one (no timer armed: the common case on a pool that
    /// keeps up), else the FIFO wait bounded by `query_wait_timeout`; `None` when it ran out.
    async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.admission).try_acquire_owned() {
            return Some(permit);
        }
        tokio::time::timeout(
            self.query_wait_timeout,
            Arc::clone(&self.admission).acquire_owned(),
        )
        .await
        .ok()
        .and_then(Result::ok)
    }

    async fn get_connection(
        &self,
        started: Instant,
    ) -> Result<bb8::PooledConnection<'static, ServerManager>, CheckoutError> {
        // Each stale connection found is closed and another one requested; at most the whole
        // pool can be stale, so this loop is bounded by the pool size.
        for _ in 0..=self.size {
            let outcome = tokio::select! {
                got = self.inner.get_owned() => got.ok(),
                () = self.failures.next_failure() => None,
            };
            let Some(mut conn) = outcome else {
                break;
            };
            if self.is_stale(&mut conn).await {
                conn.mark_dirty();
                self.metrics.discarded("stale");
                continue;
            }
            return Ok(conn);
        }
        Err(match self.failures.since(started) {
            Some(failure) => CheckoutError::Backend {
                sqlstate: failure.sqlstate,
                message: failure.message,
            },
            None => CheckoutError::Backend {
                sqlstate: sqlstate::CONNECTION_FAILURE.to_string(),
                message: format!(
                    "backend \"{}\" ({}:{}) did not accept a connection in time",
                    self.database, self.target.host, self.target.port
                ),
            },
        })
    }

    /// A connection is stale if the backend sent something (a FATAL before closing, as on a
    /// restart or failover) or closed while it sat idle. The check is one non-blocking read
    /// attempt per checkout, and judges each connection on its own evidence.
    async fn is_stale(&self, conn: &mut ServerConn) -> bool {
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

    /// A session of this pool became pinned (`+1`) or unpinned (`-1`).
    pub fn pinned_sessions_changed(&self, delta: i64) {
        self.pinned.fetch_add(delta, Ordering::Relaxed);
    }

    fn remember_baseline(&self, conn: &ServerConn) {
        let known = self.baseline.read().map(|b| b.is_some()).unwrap_or(true);
        if !known {
            if let Ok(mut baseline) = self.baseline.write() {
                baseline.get_or_insert_with(|| Arc::new(conn.params.clone()));
            }
        }
    }

    /// ParameterStatus values of a fresh backend connection (server_version, encodings, ...),
    /// reported to clients at login; `None` until the first connection was made.
    pub fn baseline_params(&self) -> Option<Arc<HashMap<String, String>>> {
        self.baseline.read().ok().and_then(|b| b.clone())
    }

    /// Pool occupancy, read at scrape time only (takes bb8's lock).
    pub fn state(&self) -> PoolState {
        let state = self.inner.state();
        PoolState {
            database: self.database.clone(),
            user: self.user.clone(),
            max_size: self.size,
            connections: state.connections,
            idle: state.idle_connections,
            waiting: self.waiting.load(Ordering::Relaxed),
            pinned: u32::try_from(self.pinned.load(Ordering::Relaxed)).unwrap_or(0),
        }
    }
}
