//! `max_client_connections`: the places client sessions hold for their whole life.
//!
//! A FIFO semaphore with one permit per allowed client; the accept loop takes one without
//! waiting (a client over the limit is refused with 53300, not queued). A reload may raise the
//! limit (permits are added at once) or lower it (the excess is withdrawn as sessions end, so
//! no connected client is ever dropped for it).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The client-session places of one proxy.
pub struct Admission {
    places: Arc<Semaphore>,
    /// The configured limit now (what the places converge to).
    limit: AtomicU32,
}

impl Admission {
    /// Places for `limit` clients.
    pub fn new(limit: usize) -> Self {
        let limit = clamp(limit);
        Admission {
            places: Arc::new(Semaphore::new(limit as usize)),
            limit: AtomicU32::new(limit),
        }
    }

    /// A place for a new client, if one is free.
    pub fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.places).try_acquire_owned().ok()
    }

    /// The limit now in force.
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Applies a reloaded limit. Raising adds places at once; lowering withdraws the free
    /// places it can now and the rest as sessions end (in the background), never by dropping
    /// a client.
    pub fn set_limit(&self, limit: usize) {
        let new = clamp(limit);
        let old = self.limit.swap(new, Ordering::Relaxed);
        if new > old {
            self.places.add_permits((new - old) as usize);
            return;
        }
        let excess = old - new;
        let withdrawn = self.places.forget_permits(excess as usize) as u32;
        let rest = excess - withdrawn;
        if rest > 0 {
            let places = Arc::clone(&self.places);
            tokio::spawn(async move {
                if let Ok(permits) = places.acquire_many_owned(rest).await {
                    permits.forget();
                }
            });
        }
    }

    /// Waits, without a bound, until every session has ended (SHUTDOWN WAIT_FOR_CLIENTS).
    pub async fn wait_all_ended_unbounded(&self) {
        let all = self.limit();
        drop(self.places.acquire_many(all).await);
    }

    /// Waits until every session has ended, at most `limit`; true if they all did.
    pub async fn wait_all_ended(&self, limit: Duration) -> bool {
        let all = self.limit();
        tokio::time::timeout(limit, self.places.acquire_many(all))
            .await
            .is_ok()
    }
}

fn clamp(limit: usize) -> u32 {
    // The semaphore's own maximum is far above any sensible client limit.
    u32::try_from(limit)
        .unwrap_or(u32::MAX)
        .min(Semaphore::MAX_PERMITS as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_raised_limit_admits_more_and_a_lowered_one_waits_for_sessions_to_end() {
        let admission = Admission::new(2);
        let first = admission.try_admit();
        let second = admission.try_admit();
        assert!(first.is_some() && second.is_some());
        assert!(admission.try_admit().is_none());
        admission.set_limit(3);
        let third = admission.try_admit();
        assert!(third.is_some());
        admission.set_limit(1);
        drop(third);
        drop(second);
        // Both freed places are withdrawn (one at once, one by the background task).
        tokio::task::yield_now().await;
        assert!(admission.try_admit().is_none());
        drop(first);
        let again = admission.try_admit();
        assert!(again.is_some(), "the one remaining place comes free");
        assert!(admission.try_admit().is_none());
    }
}
