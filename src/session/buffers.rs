//! Read-buffer sizing shared by the relay and the reset path.

use bytes::BytesMut;

/// Reads reserve at least this much spare room so a burst is read in few syscalls.
const READ_CHUNK: usize = 16 * 1024;

/// Backend frames are trusted but still bounded (PostgreSQL's own limit is 1 GB).
pub(super) const MAX_BACKEND_MESSAGE: usize = 1 << 30;

/// Makes room for the next read so a burst is read with few syscalls.
pub(super) fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}
