//! Read-buffer sizing shared by the relay and the reset path, and the client read that holds a
//! buffer only while bytes are waiting in it.

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::spare::Spare;

/// Reads reserve at least this much spare room so a burst is read in few syscalls.
const READ_CHUNK: usize = 16 * 1024;

/// Backend frames are trusted but still bounded (PostgreSQL's own limit is 1 GB).
pub(super) const MAX_BACKEND_MESSAGE: usize = 1 << 30;

thread_local! {
    static SPARE_SLOT: Cell<Option<BytesMut>> = const { Cell::new(None) };
}

/// One empty read buffer per worker thread, handed from a client that starts waiting to the
/// next one that has bytes to read (see [`crate::spare`]).
static SPARE: Spare = Spare::new(&SPARE_SLOT, READ_CHUNK);

/// Makes room for the next read so a burst is read with few syscalls.
pub(super) fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}

/// Reads from the client into `buf` like `read_buf`, but an empty `buf` is handed back to the
/// thread's spare slot while the client has nothing to send, and taken (or allocated) again
/// once it polls for more: a waiting client keeps no buffer at all. A partial message stays.
pub(super) async fn read_client<R>(client: &mut R, buf: &mut BytesMut) -> std::io::Result<usize>
where
    R: AsyncRead + Unpin,
{
    std::future::poll_fn(|cx| poll_read_client(cx, client, buf)).await
}

fn poll_read_client<R>(
    cx: &mut Context<'_>,
    client: &mut R,
    buf: &mut BytesMut,
) -> Poll<std::io::Result<usize>>
where
    R: AsyncRead + Unpin,
{
    if buf.capacity() == 0 {
        *buf = SPARE.take();
    }
    reserve(buf);
    // `read_buf` keeps no state between polls, so a fresh one per poll is equivalent.
    let polled = pin!(client.read_buf(buf)).poll(cx);
    if polled.is_pending() && buf.is_empty() {
        SPARE.give_back(std::mem::take(buf));
    }
    polled
}

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// One poll of a client read, whatever its outcome.
    async fn poll_once<R: AsyncRead + Unpin>(
        client: &mut R,
        buf: &mut BytesMut,
    ) -> Poll<std::io::Result<usize>> {
        std::future::poll_fn(|cx| Poll::Ready(poll_read_client(cx, client, buf))).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiting_reader_holds_no_buffer_and_reuses_the_spare() {
        let (mut client, mut proxy) = tokio::io::duplex(64);
        let mut buf = BytesMut::new();
        client.write_all(b"hello").await.unwrap();
        assert_eq!(read_client(&mut proxy, &mut buf).await.unwrap(), 5);
        assert_eq!(&buf[..], b"hello");
        let first = buf.as_ptr();
        buf.advance(5);
        // Nothing to read: the empty buffer goes to the spare slot while the read waits.
        let waiting = poll_once(&mut proxy, &mut buf).await;
        assert!(waiting.is_pending());
        assert_eq!(buf.capacity(), 0, "a waiting client holds no buffer");
        client.write_all(b"again").await.unwrap();
        assert_eq!(read_client(&mut proxy, &mut buf).await.unwrap(), 5);
        assert_eq!(
            buf.as_ptr(),
            first,
            "the spare buffer is reused, not reallocated"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_partial_message_stays_while_waiting() {
        let (mut client, mut proxy) = tokio::io::duplex(64);
        let mut buf = BytesMut::new();
        client.write_all(b"par").await.unwrap();
        assert_eq!(read_client(&mut proxy, &mut buf).await.unwrap(), 3);
        let waiting = poll_once(&mut proxy, &mut buf).await;
        assert!(waiting.is_pending());
        assert_eq!(&buf[..], b"par");
    }
}
