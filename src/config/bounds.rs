//! The accepted ranges of integer settings, shared by the file conversion, validation and
//! the per-user/per-database limit checks.

use super::error::range_reason;

/// Inclusive integer bounds shared by file conversion and validation.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub min: i64,
    pub max: i64,
}

impl Bounds {
    /// `Some(reason)` when `v` is out of bounds.
    pub fn reason(self, v: i64) -> Option<String> {
        range_reason(self.min, self.max, v)
    }
}

pub const PORT: Bounds = Bounds {
    min: 1,
    max: 65_535,
};
pub const POOL_SIZE: Bounds = Bounds {
    min: 1,
    max: 10_000,
};
pub const MIN_POOL_SIZE: Bounds = Bounds {
    min: 0,
    max: 10_000,
};
pub const MAX_CLIENT_CONNECTIONS: Bounds = Bounds {
    min: 1,
    max: 1_000_000,
};
/// All pools of one database together.
pub const MAX_DB_CONNECTIONS: Bounds = Bounds {
    min: 1,
    max: 1_000_000,
};
pub const MAX_MESSAGE_SIZE: Bounds = Bounds {
    min: 4_096,
    max: 1 << 30,
};
pub const MAX_STARTUP_PACKET_SIZE: Bounds = Bounds {
    min: 1_024,
    max: 1 << 20,
};
pub const MAX_STARTUP_PARAMETERS: Bounds = Bounds { min: 1, max: 1_000 };
/// Per client and per backend connection alike.
pub const MAX_PREPARED_STATEMENTS: Bounds = Bounds {
    min: 1,
    max: 100_000,
};
pub const MAX_CACHED_STATEMENTS: Bounds = Bounds {
    min: 1,
    max: 10_000_000,
};
/// 0 = one per core; more than 1024 threads is a typo, not a tuning.
pub const WORKER_THREADS: Bounds = Bounds { min: 0, max: 1_024 };
