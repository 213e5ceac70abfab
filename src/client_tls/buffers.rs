//! The byte buffers of a client's TLS session, each holding memory only while it holds bytes.
//!
//! Idle clients are the many: a buffer that empties is freed, or kept as its worker thread's
//! spare for the next client that has bytes to move (as the plaintext read buffers of
//! `session::buffers` are), so an idle TLS client holds no buffer at all.

use std::cell::Cell;

use bytes::BytesMut;
use tokio::io::ReadBuf;

use crate::spare::Spare;

/// The largest TLS record on the wire: header, 16 KiB of plaintext and TLS 1.2's allowance
/// for expansion (TLS 1.3 needs less).
pub(super) const MAX_RECORD: usize = 5 + (1 << 14) + 2048;

/// Send buffers larger than this (grown for a big handshake message or write) are freed
/// rather than kept as a spare.
const MAX_SPARE: usize = 4 * MAX_RECORD;

thread_local! {
    static SPARE_IN_SLOT: Cell<Option<BytesMut>> = const { Cell::new(None) };
    /// One empty ciphertext send buffer per worker thread.
    static SPARE_OUT: Cell<Option<Vec<u8>>> = const { Cell::new(None) };
}

/// One empty ciphertext receive buffer per worker thread (see [`crate::spare`]).
static SPARE_IN: Spare = Spare::new(&SPARE_IN_SLOT, MAX_RECORD);

/// Makes room in the receive buffer for the next socket read (a whole record when the buffer
/// is fresh), taking the thread's spare when the buffer holds no memory.
pub(super) fn reserve_incoming(buf: &mut BytesMut) {
    if buf.capacity() == 0 {
        *buf = SPARE_IN.take();
    }
    if buf.capacity() - buf.len() < MAX_RECORD / 4 {
        buf.reserve(MAX_RECORD);
    }
}

/// Frees an empty receive buffer (into the thread's spare slot unless it grew large).
pub(super) fn release_incoming(buf: &mut BytesMut) {
    if !buf.is_empty() || buf.capacity() == 0 {
        return;
    }
    SPARE_IN.give_back(std::mem::take(buf));
}

/// Ciphertext waiting for the socket, in order; no memory while empty.
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    bytes: Vec<u8>,
    /// How much of `bytes` the socket has taken.
    sent: usize,
}

impl Outgoing {
    /// Bytes not yet sent.
    pub(super) fn pending(&self) -> &[u8] {
        self.bytes.get(self.sent..).unwrap_or_default()
    }

    /// True when nothing waits to be sent.
    pub(super) fn is_empty(&self) -> bool {
        self.pending().is_empty()
    }

    /// Records that the socket took `n` more bytes; frees the buffer once all are sent.
    pub(super) fn consume(&mut self, n: usize) {
        self.sent = self.sent.saturating_add(n).min(self.bytes.len());
        if self.sent == self.bytes.len() {
            self.release();
        }
    }

    fn release(&mut self) {
        let mut spare = std::mem::take(&mut self.bytes);
        self.sent = 0;
        spare.clear();
        if spare.capacity() != 0 && spare.capacity() <= MAX_SPARE {
            let _ = SPARE_OUT.try_with(|slot| slot.set(Some(spare)));
        }
    }

    /// Appends what `fill` writes, sized exactly: `fill` is first offered no room, and must
    /// then fail with the room it needs (`required`), as rustls's encoders do.
    pub(super) fn append<E>(
        &mut self,
        mut fill: impl FnMut(&mut [u8]) -> Result<usize, E>,
        required: impl Fn(&E) -> Option<usize>,
    ) -> Result<(), E> {
        let need = match fill(&mut []) {
            Ok(_) => return Ok(()),
            Err(e) => required(&e).ok_or(e)?,
        };
        if self.bytes.capacity() == 0 {
            self.bytes = SPARE_OUT
                .try_with(Cell::take)
                .ok()
                .flatten()
                .unwrap_or_default();
        }
        let start = self.bytes.len();
        self.bytes.resize(start + need, 0);
        let written = self.bytes.get_mut(start..).map(&mut fill);
        let kept = match &written {
            Some(Ok(n)) => start + n,
            _ => start,
        };
        self.bytes.truncate(kept);
        match written {
            Some(result) => result.map(drop),
            None => Ok(()),
        }
    }
}

/// Decrypted plaintext the reader has not taken yet (a record larger than its buffer, or one
/// that arrived while writing); no memory while empty.
#[derive(Debug, Default)]
pub(super) struct Stash {
    bytes: Vec<u8>,
    /// How much of `bytes` was delivered.
    taken: usize,
}

impl Stash {
    /// Keeps `bytes` after whatever is already waiting.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// True when no plaintext waits.
    pub(super) fn is_empty(&self) -> bool {
        self.taken >= self.bytes.len()
    }

    /// Moves waiting plaintext into `out`; false if there was none.
    pub(super) fn deliver(&mut self, out: &mut ReadBuf<'_>) -> bool {
        let waiting = self.bytes.get(self.taken..).unwrap_or_default();
        if waiting.is_empty() {
            return false;
        }
        let n = waiting.len().min(out.remaining());
        out.put_slice(&waiting[..n]);
        self.taken += n;
        if self.is_empty() {
            *self = Stash::default();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An encoder that needs exactly `len` bytes, like rustls's.
    fn encoder(len: usize) -> impl FnMut(&mut [u8]) -> Result<usize, usize> {
        move |out: &mut [u8]| match out.get_mut(..len) {
            Some(room) => {
                room.fill(7);
                Ok(len)
            }
            None => Err(len),
        }
    }

    #[test]
    fn outgoing_is_sized_exactly_and_freed_when_sent() {
        let mut out = Outgoing::default();
        assert!(out.append(encoder(10), |need| Some(*need)).is_ok());
        assert!(out.append(encoder(5), |need| Some(*need)).is_ok());
        assert_eq!(out.pending(), &[7u8; 15][..]);
        out.consume(12);
        assert_eq!(out.pending().len(), 3);
        out.consume(3);
        assert!(out.is_empty());
        assert_eq!(out.bytes.capacity(), 0, "an empty queue holds no memory");
    }

    #[test]
    fn outgoing_keeps_nothing_of_a_failed_encoder() {
        let mut out = Outgoing::default();
        let failed = out.append(|_: &mut [u8]| Err::<usize, &str>("broken"), |_| None);
        assert_eq!(failed, Err("broken"));
        assert!(out.is_empty());
    }

    #[test]
    fn stash_delivers_across_small_reads_then_frees() {
        let mut stash = Stash::default();
        stash.push(b"hello world");
        let mut room = [0u8; 6];
        let mut out = ReadBuf::new(&mut room);
        assert!(stash.deliver(&mut out));
        assert_eq!(out.filled(), b"hello ");
        let mut room = [0u8; 16];
        let mut out = ReadBuf::new(&mut room);
        assert!(stash.deliver(&mut out));
        assert_eq!(out.filled(), b"world");
        assert!(!stash.deliver(&mut out));
        assert_eq!(stash.bytes.capacity(), 0);
    }

    #[test]
    fn incoming_buffers_come_from_and_go_to_the_spare() {
        let mut buf = BytesMut::new();
        reserve_incoming(&mut buf);
        assert!(buf.capacity() >= MAX_RECORD);
        let first = buf.as_ptr();
        release_incoming(&mut buf);
        assert_eq!(buf.capacity(), 0);
        reserve_incoming(&mut buf);
        assert_eq!(buf.as_ptr(), first, "the spare is reused");
        buf.extend_from_slice(b"partial record");
        release_incoming(&mut buf);
        assert_eq!(&buf[..], b"partial record", "bytes are never dropped");
    }
}
