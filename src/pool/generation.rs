//! Pool generations: RECONNECT (and a reload that changes a pool's target or login) closes
//! every connection opened before it, each when it is next released, never mid-transaction.
//!
//! Each connection carries a shared flag of the generation it was opened in (see
//! `ServerConn::generation`); RECONNECT sets the current generation's flag and starts a new
//! one. The pool keeps only weak references to old generations, so the connections still
//! marked close-needed are counted by their strong references (WAIT_CLOSE, SHOW SERVERS)
//! without the pool tracking connections one by one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

/// A generation's close-needed flag, shared by every connection opened in it.
pub type CloseNeeded = Arc<AtomicBool>;

struct State {
    current: CloseNeeded,
    /// Generations that were told to close; connections of theirs may still be open.
    retired: Vec<Weak<AtomicBool>>,
}

/// The generations of one pool.
pub struct Generations {
    state: Mutex<State>,
}

impl Default for Generations {
    fn default() -> Self {
        Generations {
            state: Mutex::new(State {
                current: CloseNeeded::default(),
                retired: Vec::new(),
            }),
        }
    }
}

impl Generations {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The flag a connection opened now carries (taken when the open starts, so a
    /// connection whose login straddles a RECONNECT counts as opened before it).
    pub fn current(&self) -> CloseNeeded {
        Arc::clone(&self.lock().current)
    }

    /// Marks every connection opened so far as close-needed and starts a new generation.
    pub fn bump(&self) {
        let mut state = self.lock();
        state.current.store(true, Ordering::Relaxed);
        let old = std::mem::take(&mut state.current);
        state.retired.retain(|g| g.strong_count() > 0);
        state.retired.push(Arc::downgrade(&old));
    }

    /// Connections still open that a RECONNECT marked to close.
    pub fn close_needed(&self) -> u32 {
        let mut state = self.lock();
        state.retired.retain(|g| g.strong_count() > 0);
        let open: usize = state.retired.iter().map(Weak::strong_count).sum();
        u32::try_from(open).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn must_close(flag: &Option<CloseNeeded>) -> bool {
        flag.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }

    #[test]
    fn a_bump_marks_the_connections_opened_before_it_and_counts_them_until_closed() {
        let generations = Generations::default();
        let first = Some(generations.current());
        let second = Some(generations.current());
        assert_eq!(generations.close_needed(), 0);
        generations.bump();
        let fresh = Some(generations.current());
        assert!(must_close(&first) && must_close(&second));
        assert!(!must_close(&fresh) && !must_close(&None));
        assert_eq!(generations.close_needed(), 2);
        drop(first);
        generations.bump();
        assert!(must_close(&fresh));
        assert_eq!(generations.close_needed(), 2, "one of each old generation");
        drop((second, fresh));
        assert_eq!(generations.close_needed(), 0);
    }
}
