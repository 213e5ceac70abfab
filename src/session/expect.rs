//! The ordered queue of responses the backend still owes, one entry per client request.
//!
//! Every frontend message that gets a reply — Parse, Bind, Describe, Execute, Close, Sync, a
//! simple Query, a FunctionCall — from the client or injected by pgferry, gets an entry, in the
//! order it was sent. Each entry says what to do with the backend's reply: forward it to the
//! client or swallow it (pgferry's own messages). Replies pgferry produces itself are queued as
//! `Synthesize` entries so they reach the client exactly where PostgreSQL would have put them.
//!
//! Completion follows the protocol: ParseComplete, BindComplete, CloseComplete, NoData or
//! RowDescription (Describe), CommandComplete / EmptyQueryResponse / PortalSuspended (Execute),
//! ReadyForQuery (Sync, Query, FunctionCall). An ErrorResponse to an extended-protocol message
//! makes the backend skip everything up to the next Sync — every kind of message, a simple
//! Query or FunctionCall included — so those entries are dropped too. When no Sync is queued yet
//! the queue remembers that the backend is skipping: requests sent before the client's next Sync
//! get no entry at all (and synthesized replies are not sent), exactly as PostgreSQL answers
//! them with nothing.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

/// What happens to backend messages belonging to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Forward,
    Swallow,
}

/// The kind of request an entry stands for, which decides what completes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Parse,
    Bind,
    DescribeStatement,
    DescribePortal,
    Execute,
    Close,
    Sync,
    Query,
    FunctionCall,
}

impl Request {
    /// The request a client message of type `tag` makes; `None` for messages without a reply
    /// (Flush, CopyData, CopyDone, CopyFail, Terminate). `describe_kind` is the first body byte of
    /// a Describe ('S' statement or 'P' portal).
    pub fn of_client_message(tag: u8, describe_kind: Option<u8>) -> Option<Request> {
        Some(match tag {
            b'P' => Request::Parse,
            b'B' => Request::Bind,
            b'D' if describe_kind == Some(b'S') => Request::DescribeStatement,
            b'D' => Request::DescribePortal,
            b'E' => Request::Execute,
            b'C' => Request::Close,
            b'S' => Request::Sync,
            b'Q' => Request::Query,
            b'F' => Request::FunctionCall,
            _ => return None,
        })
    }

    /// Requests answered by ReadyForQuery.
    pub fn ends_with_ready(self) -> bool {
        matches!(self, Request::Sync | Request::Query | Request::FunctionCall)
    }

    /// True if a backend message of type `tag` is the last reply to this request.
    fn completed_by(self, tag: u8) -> bool {
        match self {
            Request::Parse => tag == b'1',
            Request::Bind => tag == b'2',
            Request::Close => tag == b'3',
            Request::DescribeStatement | Request::DescribePortal => matches!(tag, b'T' | b'n'),
            Request::Execute => matches!(tag, b'C' | b'I' | b's'),
            Request::Sync | Request::Query | Request::FunctionCall => tag == b'Z',
        }
    }
}

/// A request awaiting its reply.
#[derive(Debug, Clone)]
pub struct Pending<A> {
    pub request: Request,
    pub route: Route,
    pub since: Instant,
    /// What the session must do when the reply arrives (statement bookkeeping, SET tracking).
    pub action: A,
}

#[derive(Debug)]
enum Entry<A> {
    Reply(Pending<A>),
    Synthesize(Bytes, A),
}

/// Route of a backend message of type `tag` while `front` is the oldest request.
fn route_for<A>(front: &Pending<A>, tag: u8) -> Route {
    match (front.route, tag) {
        // Notifications are for the client whoever's request is running; errors of an
        // injected Parse explain why the client's own next message fails.
        (Route::Swallow, b'A') => Route::Forward,
        (Route::Swallow, b'E') if front.request == Request::Parse => Route::Forward,
        (route, _) => route,
    }
}

/// How a backend message relates to the queue.
#[derive(Debug)]
pub struct Outcome<A> {
    /// Where the message goes.
    pub route: Route,
    /// The request this message finished (on an error: the failed request). One at most, so
    /// the hot path allocates nothing per message.
    pub completed: Option<Pending<A>>,
    /// True when the message is an ErrorResponse that failed `completed`.
    pub failed: bool,
    /// Actions of requests that ended without a reply of their own, in queue order: after an
    /// extended-protocol error, every later request and synthesized reply up to the next Sync
    /// (the backend skips them). Empty, and unallocated, otherwise.
    pub skipped: Vec<A>,
}

impl<A> Outcome<A> {
    fn routed(route: Route) -> Self {
        Outcome {
            route,
            completed: None,
            failed: false,
            skipped: Vec::new(),
        }
    }
}

/// Outstanding requests on one backend connection, oldest first. `A` is the per-request action
/// the session attaches.
#[derive(Debug)]
pub struct ExpectQueue<A> {
    items: VecDeque<Entry<A>>,
    /// An extended-protocol request failed and no Sync was queued behind it: the backend
    /// discards every message until the client's next Sync (the queue is then empty).
    skipping: bool,
}

impl<A> Default for ExpectQueue<A> {
    fn default() -> Self {
        ExpectQueue {
            items: VecDeque::new(),
            skipping: false,
        }
    }
}

impl<A> ExpectQueue<A> {
    /// A request whose reply goes `route`. While the backend skips to the next Sync, any
    /// other request gets no reply: it is not queued and its action comes back (to be undone).
    #[must_use = "a skipped request's action must be undone"]
    pub fn push(&mut self, request: Request, route: Route, action: A) -> Option<A> {
        if self.skipping {
            if request != Request::Sync {
                return Some(action);
            }
            self.skipping = false;
        }
        self.items.push_back(Entry::Reply(Pending {
            request,
            route,
            since: Instant::now(),
            action,
        }));
        None
    }

    /// A reply pgferry produces itself, due once everything before it is answered; `action`
    /// is handed back if the reply is dropped because an earlier request failed (later, from
    /// [`Self::on_backend_message`], or now, when the backend already skips to Sync).
    #[must_use = "a dropped reply's action must be undone"]
    pub fn push_synthesized(&mut self, reply: Bytes, action: A) -> Option<A> {
        if self.skipping {
            return Some(action);
        }
        self.items.push_back(Entry::Synthesize(reply, action));
        None
    }

    /// True while the backend discards everything up to the client's next Sync (an
    /// extended-protocol request failed and no Sync was sent after it yet).
    pub fn is_skipping(&self) -> bool {
        self.skipping
    }

    /// The action of the oldest outstanding request (to record an error on it, or to find the
    /// reply that replaces the backend's error).
    pub fn front_action_mut(&mut self) -> Option<&mut A> {
        match self.items.front_mut() {
            Some(Entry::Reply(pending)) => Some(&mut pending.action),
            _ => None,
        }
    }

    /// The route a backend message of type `tag` would take now, without completing anything.
    pub fn route_of_next(&self, tag: u8) -> Route {
        match self.front() {
            None => Route::Forward,
            Some(front) => route_for(front, tag),
        }
    }

    fn front(&self) -> Option<&Pending<A>> {
        match self.items.front() {
            Some(Entry::Reply(pending)) => Some(pending),
            _ => None,
        }
    }

    /// Classifies a backend message by its type byte and completes the requests it answers.
    pub fn on_backend_message(&mut self, tag: u8) -> Outcome<A> {
        let Some(front) = self.front() else {
            return Outcome::routed(Route::Forward);
        };
        let (request, route) = (front.request, route_for(front, tag));
        let mut outcome = Outcome::routed(route);
        if tag == b'Z' {
            self.complete_through_ready(&mut outcome);
        } else if tag == b'E' && !request.ends_with_ready() {
            outcome.failed = true;
            self.complete_skipping_to_sync(&mut outcome);
        } else if request.completed_by(tag) {
            outcome.completed = self.pop_reply();
        }
        outcome
    }

    fn pop_reply(&mut self) -> Option<Pending<A>> {
        match self.items.pop_front()? {
            Entry::Reply(pending) => Some(pending),
            synthesized @ Entry::Synthesize(..) => {
                self.items.push_front(synthesized);
                None
            }
        }
    }

    /// ReadyForQuery ends the oldest Sync/Query/FunctionCall and anything still before it.
    fn complete_through_ready(&mut self, outcome: &mut Outcome<A>) {
        while let Some(entry) = self.items.pop_front() {
            if let Entry::Reply(pending) = entry {
                if pending.request.ends_with_ready() {
                    outcome.route = pending.route;
                    outcome.completed = Some(pending);
                    return;
                }
                outcome.skipped.push(pending.action);
            }
        }
    }

    /// An extended-protocol error: the failed request is done and the backend ignores every
    /// message up to the next Sync, whose ReadyForQuery will still come. Without a queued Sync
    /// the backend keeps skipping whatever the client sends until its next Sync.
    fn complete_skipping_to_sync(&mut self, outcome: &mut Outcome<A>) {
        outcome.completed = self.pop_reply();
        loop {
            match self.items.pop_front() {
                Some(Entry::Reply(p)) if p.request == Request::Sync => {
                    self.items.push_front(Entry::Reply(p));
                    return;
                }
                Some(Entry::Reply(pending)) => outcome.skipped.push(pending.action),
                Some(Entry::Synthesize(_, action)) => outcome.skipped.push(action),
                None => {
                    self.skipping = true;
                    return;
                }
            }
        }
    }

    /// Removes Sync entries behind the oldest request when that request is an Execute that
    /// started COPY FROM STDIN (the backend ignores those Syncs).
    pub fn drop_pending_syncs(&mut self) {
        if self.front().map(|f| f.request) != Some(Request::Execute) {
            return;
        }
        let mut first = true;
        self.items.retain(|entry| {
            let keep = first || !matches!(entry, Entry::Reply(p) if p.request == Request::Sync);
            first = false;
            keep
        });
    }

    /// Synthesized replies that are now due (everything before them is answered), in order.
    pub fn take_due(&mut self) -> Vec<Bytes> {
        let mut due = Vec::new();
        while let Some(Entry::Synthesize(..)) = self.items.front() {
            if let Some(Entry::Synthesize(reply, _)) = self.items.pop_front() {
                due.push(reply);
            }
        }
        due
    }

    /// When the oldest outstanding client request (one whose reply is forwarded) was sent:
    /// the start of the transaction that follows one just finished, when the client pipelined.
    pub fn oldest_forwarded_since(&self) -> Option<Instant> {
        self.items.iter().find_map(|entry| match entry {
            Entry::Reply(pending) if pending.route == Route::Forward => Some(pending.since),
            _ => None,
        })
    }

    /// Entries still unanswered (synthesized ones included).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing outstanding.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops every synthesized reply (the client is gone) and returns how many requests remain.
    pub fn forget_synthesized(&mut self) -> usize {
        self.items.retain(|e| matches!(e, Entry::Reply(_)));
        self.items.len()
    }
}

#[cfg(test)]
mod tests;
