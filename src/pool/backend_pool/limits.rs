//! A pool's size as it changes live (config reload) and the age of its longest wait.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::BackendPool;

impl BackendPool {
    /// The most backend connections this pool may hold.
    pub fn size(&self) -> u32 {
        self.size.load(Ordering::Relaxed)
    }

    /// Changes the pool's size live (config reload). Growing lets waiting clients open
    /// connections at once; shrinking closes idle connections beyond the new size now and
    /// borrowed ones when they are given back, never mid-transaction.
    pub fn resize(&self, pool_size: u32) {
        self.size.store(pool_size, Ordering::Relaxed);
        self.slots.resize(pool_size);
    }

    /// How long the longest-waiting client has waited, zero if none (read at scrape time from
    /// the queue: waits cost nothing extra). A client that queued again after a discarded
    /// connection counts from its latest deadline, so this may underestimate its wait.
    pub fn oldest_wait(&self) -> Duration {
        let Some(deadline) = self.slots.oldest_deadline() else {
            return Duration::ZERO;
        };
        let queued = deadline.checked_sub(self.settings.query_wait_timeout());
        queued.map_or(Duration::ZERO, |q| {
            Instant::now().saturating_duration_since(q)
        })
    }
}
