//! The ordered queue of responses the backend still owes.
//!
//! Every request that ends in a ReadyForQuery (a simple Query, a Sync, a FunctionCall) — from
//! the client or injected by pgferry — gets an entry, in the order it was sent. Each entry says
//! what to do with the backend's answers: forward them to the client, or swallow them (pgferry's
//! own statements). Replies pgferry produces itself are queued as `Synthesize` entries so they
//! reach the client exactly where PostgreSQL would have put them.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

/// What happens to backend messages belonging to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Forward,
    Swallow,
}

#[derive(Debug)]
enum Expect {
    Reply { route: Route, since: Instant },
    Synthesize(Bytes),
}

/// A completed request: how it was routed and when it was sent (for latency metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    pub route: Route,
    pub since: Instant,
}

/// Outstanding requests on one backend connection, oldest first.
#[derive(Debug, Default)]
pub struct ExpectQueue {
    items: VecDeque<Expect>,
}

impl ExpectQueue {
    /// A request whose answers go to the client.
    pub fn push_forward(&mut self) {
        self.items.push_back(Expect::Reply {
            route: Route::Forward,
            since: Instant::now(),
        });
    }

    /// A request injected by pgferry whose answers the client must never see.
    pub fn push_swallow(&mut self) {
        self.items.push_back(Expect::Reply {
            route: Route::Swallow,
            since: Instant::now(),
        });
    }

    /// A reply pgferry produces itself, due once everything before it is answered.
    pub fn push_synthesized(&mut self, reply: Bytes) {
        self.items.push_back(Expect::Synthesize(reply));
    }

    /// Routing for backend messages arriving now. Messages with no entry (responses to an
    /// extended-protocol batch flushed before its Sync) belong to the client.
    pub fn current_route(&self) -> Route {
        match self.items.front() {
            Some(Expect::Reply { route, .. }) => *route,
            _ => Route::Forward,
        }
    }

    /// A ReadyForQuery arrived: the oldest reply entry is complete.
    pub fn complete(&mut self) -> Option<Completed> {
        match self.items.pop_front()? {
            Expect::Reply { route, since } => Some(Completed { route, since }),
            Expect::Synthesize(reply) => {
                // Synthesized entries are drained as soon as they reach the front; keep it.
                self.items.push_front(Expect::Synthesize(reply));
                None
            }
        }
    }

    /// Synthesized replies that are now due, in order.
    pub fn take_due(&mut self) -> Vec<Bytes> {
        let mut due = Vec::new();
        while let Some(Expect::Synthesize(_)) = self.items.front() {
            if let Some(Expect::Synthesize(reply)) = self.items.pop_front() {
                due.push(reply);
            }
        }
        due
    }

    /// Requests still unanswered.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing outstanding.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Forgets everything (the connection is being salvaged or dropped).
    pub fn clear(&mut self) {
        self.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_in_order_and_defaults_to_forward() {
        let mut q = ExpectQueue::default();
        assert_eq!(q.current_route(), Route::Forward);
        q.push_swallow();
        q.push_forward();
        assert_eq!(q.current_route(), Route::Swallow);
        assert_eq!(q.complete().map(|c| c.route), Some(Route::Swallow));
        assert_eq!(q.current_route(), Route::Forward);
        assert_eq!(q.complete().map(|c| c.route), Some(Route::Forward));
        assert!(q.is_empty());
        assert_eq!(q.complete(), None);
    }

    #[test]
    fn synthesized_replies_wait_for_earlier_entries() {
        let mut q = ExpectQueue::default();
        q.push_forward();
        q.push_synthesized(Bytes::from_static(b"1"));
        q.push_synthesized(Bytes::from_static(b"2"));
        q.push_forward();
        assert!(q.take_due().is_empty());
        assert!(q.complete().is_some());
        assert_eq!(
            q.take_due(),
            vec![Bytes::from_static(b"1"), Bytes::from_static(b"2")]
        );
        assert_eq!(q.len(), 1);
    }
}
