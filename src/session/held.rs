//! A backend connection while a client holds it, with the protocol state the relay tracks.

use std::time::Instant;

use bytes::Bytes;

use crate::pool::Checkout;
use crate::protocol::frame::FrameScanner;
use crate::server::{ServerConn, StatementId};
use crate::session::prepared::Undo;
use crate::session::sql_scan::SessionEffect;

use super::expect::{ExpectQueue, Request, Route};
use super::reports::{HeldReport, Reports};

/// A borrowed backend plus what the proxy knows about the conversation on it.
pub struct Held {
    pub checkout: Checkout,
    /// Scanner over the backend's byte stream.
    pub scan: FrameScanner,
    /// Requests still awaiting their replies.
    pub queue: ExpectQueue<Action>,
    /// Last ReadyForQuery status: `I` idle, `T` in transaction, `E` failed transaction.
    pub status: u8,
    /// Extended-protocol messages were sent since the last Sync.
    pub unsynced: bool,
    /// The backend asked for COPY data (CopyInResponse) and the client has not yet sent
    /// CopyDone/CopyFail. PostgreSQL ignores Sync and Flush in this state.
    pub copy_in: bool,
    /// Route of the backend frame currently streaming through.
    pub frame_route: Route,
    /// Start of the current transaction, if one is open.
    pub transaction_started: Option<Instant>,
    /// Session effects of statements inside the open transaction, applied if it commits.
    pub transaction_effects: Vec<SessionEffect>,
    /// Whether the last CommandComplete was `COMMIT` (tracked while effects wait on it).
    pub last_was_commit: bool,
    /// Server statement used by the last Bind, for `0A000 cached plan must not change result
    /// type` on the Execute after it.
    pub last_bound: Option<StatementId>,
    /// The backend sent the client a FATAL (or PANIC) error: it is ending the connection, and
    /// the client already knows why.
    pub ended_by_backend: bool,
    /// The last Bind was of `DEALLOCATE ALL` / `DISCARD ALL`: the undo of the statements it
    /// dropped, handed to the next Execute (which runs it and may fail).
    pub reset_at_execute: Option<Box<Undo>>,
    /// Outstanding requests whose reports are held back or folded (see `session::reports`);
    /// zero almost always, which keeps that path off every other ReadyForQuery.
    pub folding: u32,
    /// ParameterStatus messages held back until the folded ReadyForQuery.
    pub held_reports: Vec<HeldReport>,
}

impl Held {
    /// Wraps a fresh checkout; the connection is marked dirty until proven idle again.
    pub fn new(mut checkout: Checkout) -> Self {
        checkout.conn.mark_dirty();
        Held {
            checkout,
            scan: FrameScanner::new(),
            queue: ExpectQueue::default(),
            status: b'I',
            unsynced: false,
            copy_in: false,
            frame_route: Route::Forward,
            transaction_started: None,
            transaction_effects: Vec::new(),
            last_was_commit: false,
            last_bound: None,
            ended_by_backend: false,
            reset_at_execute: None,
            folding: 0,
            held_reports: Vec::new(),
        }
    }

    /// Returns the backend to the pool if it was marked clean; otherwise closes it.
    pub fn give_back(self) {
        self.checkout.give_back();
    }

    /// The backend connection.
    pub fn conn(&mut self) -> &mut ServerConn {
        &mut self.checkout.conn
    }

    /// Nothing outstanding and outside any transaction: safe to hand to another client.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && !self.unsynced
            && !self.copy_in
            && self.status == b'I'
            && self.scan.at_boundary()
            && self.checkout.conn.read_buf.is_empty()
    }

    /// Records a client message that the relay is about to forward (`describe_kind`: first
    /// body byte of a Describe), with the action to run when its reply arrives. Returns the
    /// action back when the backend will skip the message (see [`Self::note_request`]).
    pub fn note_client_request(
        &mut self,
        tag: u8,
        describe_kind: Option<u8>,
        mut action: Action,
    ) -> Option<Action> {
        if tag == b'E' && self.reset_at_execute.is_some() {
            action.undo = self.reset_at_execute.take().map(|undo| *undo);
        }
        if matches!(tag, b'c' | b'f') {
            self.copy_in = false;
        }
        if self.copy_in && matches!(tag, b'S' | b'H') {
            return None; // ignored by the backend during copy-in: no reply will come
        }
        let request = Request::of_client_message(tag, describe_kind)?;
        self.note_request(request, Route::Forward, action)
    }

    /// The backend entered copy-in mode (CopyInResponse). Syncs the client pipelined behind the
    /// COPY's Execute reach the backend in copy-in mode and are ignored: drop their entries.
    pub fn enter_copy_in(&mut self) {
        self.copy_in = true;
        self.queue.drop_pending_syncs();
    }

    /// Queues the reply expectation of a request sent to the backend. While the backend skips
    /// to the next Sync after an error, a request other than Sync gets no reply: it is not
    /// queued and its action is returned, for the caller to undo.
    pub fn note_request(
        &mut self,
        request: Request,
        route: Route,
        action: Action,
    ) -> Option<Action> {
        let folds = action.reports != Reports::Direct;
        let skipped = self.queue.push(request, route, action);
        if skipped.is_some() {
            return skipped;
        }
        if route == Route::Forward && self.transaction_started.is_none() {
            self.transaction_started = Some(Instant::now());
        }
        if folds {
            self.folding += 1;
        }
        match request {
            Request::Sync => self.unsynced = false,
            Request::Query | Request::FunctionCall => {}
            _ => self.unsynced = true,
        }
        None
    }
}

/// What the session does when a request's reply arrives.
#[derive(Debug, Default)]
pub struct Action {
    /// Reverts prepared-statement bookkeeping if the backend fails or skips this request.
    pub undo: Option<Undo>,
    /// ErrorResponse the client gets instead of the backend's (a request pgferry poisoned on
    /// purpose so the backend fails, skips to Sync and aborts a transaction as PostgreSQL would).
    pub replace_error: Option<Bytes>,
    /// Session effects of a simple Query (SET, RESET, DISCARD ALL, ...), applied on success.
    pub effects: Vec<SessionEffect>,
    /// An ErrorResponse arrived while this (simple Query) request ran.
    pub failed: bool,
    /// How its ParameterStatus and ReadyForQuery replies reach the client.
    pub reports: Reports,
}

/// Message types a client may send once the session is established.
pub fn is_frontend_tag(tag: u8) -> bool {
    matches!(
        tag,
        b'B' | b'C' | b'd' | b'c' | b'f' | b'D' | b'E' | b'H' | b'F' | b'P' | b'Q' | b'S' | b'X'
    )
}
