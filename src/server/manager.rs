//! The bb8 connection manager for one backend target.
//!
//! Connect errors are returned to bb8, which hands them to the pool's error sink; the pool
//! layer turns them into precise client errors (see `pool::failures`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{BackendTarget, ServerConn, ServerError};

/// Connections idle at least this long are pinged on checkout; fresher ones are trusted, so
/// `test_on_check_out` costs no round trip on a busy pool.
pub const HEALTH_CHECK_AFTER_IDLE: Duration = Duration::from_secs(30);

/// Opens, validates and judges connections to one [`BackendTarget`] for `bb8::Pool`.
pub struct ServerManager {
    target: Arc<BackendTarget>,
}

impl ServerManager {
    /// A manager for `target`.
    pub fn new(target: Arc<BackendTarget>) -> Self {
        ServerManager { target }
    }

    /// The backend this manager connects to (also needed to send cancel requests).
    pub fn target(&self) -> &Arc<BackendTarget> {
        &self.target
    }
}

impl fmt::Debug for ServerManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerManager")
            .field("database", &self.target.database)
            .field("addr", &self.target.addr())
            .field("user", &self.target.user)
            .finish_non_exhaustive()
    }
}

impl bb8::ManageConnection for ServerManager {
    type Connection = ServerConn;
    type Error = ServerError;

    fn connect(&self) -> impl Future<Output = Result<ServerConn, ServerError>> + Send {
        let target = Arc::clone(&self.target);
        async move { ServerConn::connect(&target).await }
    }

    async fn is_valid(&self, conn: &mut ServerConn) -> Result<(), ServerError> {
        if !conn.is_clean() {
            return Err(ServerError::Protocol("connection is not idle".to_string()));
        }
        if conn.last_used.elapsed() < HEALTH_CHECK_AFTER_IDLE {
            return Ok(());
        }
        conn.ping(&self.target).await
    }

    fn has_broken(&self, conn: &mut ServerConn) -> bool {
        !conn.is_clean()
    }
}
