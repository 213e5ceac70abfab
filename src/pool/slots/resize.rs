//! Changing a pool's size while it runs.

use std::sync::Arc;

use super::{Grant, PoolConn, Slots};

impl<C: PoolConn> Slots<C> {
    /// Changes the pool's size live. Growing gives the new places to waiting clients at once
    /// (each opens a connection); shrinking closes idle connections beyond the new size now
    /// and borrowed ones when they come back.
    pub fn resize(self: &Arc<Self>, size: u32) {
        let mut state = self.lock();
        state.size = size;
        let mut surplus = Vec::new();
        while state.open > state.size && !state.idle.is_empty() {
            state.open -= 1;
            surplus.push(state.idle.remove(0));
        }
        drop(state);
        let closed = surplus.len() as u32;
        drop(surplus);
        self.return_to_cap(closed);
        self.serve_new_places();
    }

    /// Hands free places to waiting clients (after the pool grew).
    fn serve_new_places(self: &Arc<Self>) {
        loop {
            let mut state = self.lock();
            let has_room = state.open < state.size && !state.waiters.is_empty();
            if !has_room || self.cap.as_ref().is_some_and(|c| !c.try_take(true)) {
                return;
            }
            state.open += 1;
            if let Some(unused) = Slots::offer(&mut state, Grant::Open(self.armed_slot())) {
                unused.disarm();
                state.open -= 1;
                drop(state);
                self.return_to_cap(1);
                return;
            }
        }
    }
}
