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

/// Connections are boxed: bb8 moves a connection in and out of its idle queue and through
/// several futures on every checkout and checkin, and moving a pointer is cheaper than moving
/// the ~300-byte `ServerConn` (measured: fewer instructions per transaction, see
/// benches/PROFILE.md, "Instruction counts per change").
impl bb8::ManageConnection for ServerManager {
    type Connection = Box<ServerConn>;
    type Error = ServerError;

    fn connect(&self) -> impl Future<Output = Result<Box<ServerConn>, ServerError>> + Send {
        let target = Arc::clone(&self.target);
        async move { ServerConn::connect(&target).await.map(Box::new) }
    }

    async fn is_valid(&self, conn: &mut Box<ServerConn>) -> Result<(), ServerError> {
        if !conn.is_clean() {
            return Err(ServerError::Protocol("connection is not idle".to_string()));
        }
        if conn.last_used.elapsed() < HEALTH_CHECK_AFTER_IDLE {
            return Ok(());
        }
        conn.ping(&self.target).await
    }

    fn has_broken(&self, conn: &mut Box<ServerConn>) -> bool {
        !conn.is_clean()
    }
}
