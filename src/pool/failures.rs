//! Backend connect failures, made visible to the clients waiting for a connection.
//!
//! bb8 hands connect errors only to its error sink and lets waiters time out. This sink
//! remembers the last error and wakes waiters at once, so a client facing a down backend gets a
//! precise `08006` naming the backend within milliseconds, not a generic timeout.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

use crate::metrics::PoolMetrics;
use crate::server::ServerError;

/// The last backend connect error of a pool, as the client will be told it.
#[derive(Debug, Clone)]
pub struct ConnectFailure {
    pub at: Instant,
    pub sqlstate: String,
    pub message: String,
}

/// Shared between the bb8 error sink and checkouts.
#[derive(Debug)]
pub struct ConnectFailures {
    database: String,
    last: Mutex<Option<ConnectFailure>>,
    notify: Notify,
}

impl ConnectFailures {
    pub fn new(database: &str) -> Arc<Self> {
        Arc::new(ConnectFailures {
            database: database.to_string(),
            last: Mutex::new(None),
            notify: Notify::new(),
        })
    }

    /// The most recent failure, if it happened after `since`.
    pub fn since(&self, since: Instant) -> Option<ConnectFailure> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref().filter(|f| f.at >= since).cloned()
    }

    /// Resolves when the next connect failure is recorded.
    pub async fn next_failure(&self) {
        self.notify.notified().await;
    }

    fn record(&self, error: &ServerError) {
        let failure = ConnectFailure {
            at: Instant::now(),
            sqlstate: error.sqlstate().to_string(),
            message: error.client_message(&self.database),
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(failure);
        self.notify.notify_waiters();
    }
}

/// bb8 error sink feeding [`ConnectFailures`], logs and metrics.
#[derive(Clone)]
pub struct FailureSink {
    pub failures: Arc<ConnectFailures>,
    pub metrics: PoolMetrics,
}

impl std::fmt::Debug for FailureSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureSink")
            .field("database", &self.failures.database)
            .finish()
    }
}

impl bb8::ErrorSink<ServerError> for FailureSink {
    fn sink(&self, error: ServerError) {
        tracing::warn!(database = %self.failures.database, %error, "backend connection failed");
        self.metrics.server_connect_error();
        self.failures.record(&error);
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<ServerError>> {
        Box::new(self.clone())
    }
}
