//! Per-thread spare byte buffers: an empty buffer handed from a connection that starts waiting
//! to the next one that has bytes to move.
//!
//! Idle clients are the many, so neither the plaintext read of a session nor the ciphertext
//! receive of a TLS session holds a buffer while it waits; a busy worker thread still pays no
//! malloc and free per message, because the buffer goes round through its spare slot.

use std::cell::Cell;
use std::thread::LocalKey;

use bytes::BytesMut;

/// One kind of spare buffer: its thread-local slot and the size buffers are made with.
/// Buffers that grew beyond four times that size (for one big message) are freed, not kept.
pub struct Spare {
    slot: &'static LocalKey<Cell<Option<BytesMut>>>,
    size: usize,
}

impl Spare {
    /// A kind of spare kept in `slot` (a `thread_local!` of its own), made `size` bytes big.
    pub const fn new(slot: &'static LocalKey<Cell<Option<BytesMut>>>, size: usize) -> Self {
        Spare { slot, size }
    }

    /// The thread's spare buffer, or a new one.
    pub fn take(&self) -> BytesMut {
        self.slot
            .try_with(Cell::take)
            .ok()
            .flatten()
            .unwrap_or_else(|| BytesMut::with_capacity(self.size))
    }

    /// Keeps an empty buffer as the thread's spare (replacing any), unless it grew large.
    pub fn give_back(&self, mut buf: BytesMut) {
        buf.clear();
        // Reclaims the room consumed bytes took at the front, so the size check is honest.
        buf.reserve(self.size);
        if buf.capacity() <= 4 * self.size {
            let _ = self.slot.try_with(|slot| slot.set(Some(buf)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SLOT: Cell<Option<BytesMut>> = const { Cell::new(None) };
    }
    static SPARE: Spare = Spare::new(&SLOT, 1024);

    #[test]
    fn a_given_back_buffer_is_taken_again_and_large_ones_are_freed() {
        let buf = SPARE.take();
        assert!(buf.capacity() >= 1024);
        let first = buf.as_ptr();
        SPARE.give_back(buf);
        assert_eq!(SPARE.take().as_ptr(), first, "the spare is reused");
        SPARE.give_back(BytesMut::with_capacity(8 * 1024));
        assert!(
            SLOT.with(Cell::take).is_none(),
            "a large buffer is not kept"
        );
    }
}
