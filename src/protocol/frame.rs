//! Frame scanning for the relay hot path.
//!
//! Every regular protocol message is `tag (1 byte) + length (4 bytes, includes itself) + body`.
//! The relay only looks at headers: frames whose body the proxy must read are reported whole
//! once buffered; all other frames are passed through in pieces as bytes arrive, so a 100 MB
//! DataRow or COPY stream is never buffered or copied.

use thiserror::Error;

/// Bytes in a message header (tag + length).
pub const HEADER_LEN: usize = 5;

/// A message header: the tag and the total frame length including the tag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub tag: u8,
    /// Total bytes of the frame on the wire: 1 (tag) + the length field's value.
    pub total_len: usize,
}

/// A stream that cannot be framed: the peer is not speaking the protocol, or oversteps limits.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid message length {len} for message type '{}'", char::from(*tag))]
    BadLength { tag: u8, len: i64 },
    #[error("message of type '{}' is {len} bytes, more than the limit of {max} bytes", char::from(*tag))]
    TooLarge { tag: u8, len: usize, max: usize },
}

/// Reads the header at the start of `buf`, if five bytes are there.
pub fn peek_header(buf: &[u8], max_len: usize) -> Result<Option<FrameHeader>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let tag = header[0];
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if len < 4 {
        return Err(FrameError::BadLength {
            tag,
            len: len.into(),
        });
    }
    let total_len = len as usize + 1;
    if total_len > max_len {
        return Err(FrameError::TooLarge {
            tag,
            len: total_len,
            max: max_len,
        });
    }
    Ok(Some(FrameHeader { tag, total_len }))
}

/// What the scanner found at the current position of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The next `len` bytes pass through untouched; `header` is set when they start a new frame.
    Pass {
        len: usize,
        header: Option<FrameHeader>,
    },
    /// A complete frame the caller asked to see is at the current position.
    Frame(FrameHeader),
    /// Nothing more can be decided until more bytes arrive.
    NeedMore,
}

/// Per-direction scanner state: how much of a pass-through frame is still to come.
#[derive(Debug, Default)]
pub struct FrameScanner {
    passthrough_left: usize,
}

impl FrameScanner {
    /// A scanner positioned at a frame boundary.
    pub fn new() -> Self {
        FrameScanner::default()
    }

    /// True when the scanner is at a frame boundary (no partial pass-through pending).
    pub fn at_boundary(&self) -> bool {
        self.passthrough_left == 0
    }

    /// Looks at `buf` (the unprocessed bytes) and says what comes next.
    ///
    /// `wants_body(tag)` selects frames the caller needs whole; it should be cheap (a match).
    /// The caller must consume exactly `len` bytes after `Pass`, or `total_len` after `Frame`.
    pub fn next(
        &mut self,
        buf: &[u8],
        max_len: usize,
        wants_body: impl Fn(u8) -> bool,
    ) -> Result<Scan, FrameError> {
        if self.passthrough_left > 0 {
            return Ok(self.pass(buf.len(), None));
        }
        let Some(header) = peek_header(buf, max_len)? else {
            return Ok(Scan::NeedMore);
        };
        if wants_body(header.tag) {
            if buf.len() >= header.total_len {
                return Ok(Scan::Frame(header));
            }
            return Ok(Scan::NeedMore);
        }
        self.passthrough_left = header.total_len;
        Ok(self.pass(buf.len(), Some(header)))
    }

    fn pass(&mut self, available: usize, header: Option<FrameHeader>) -> Scan {
        let len = self.passthrough_left.min(available);
        if len == 0 {
            return Scan::NeedMore;
        }
        self.passthrough_left -= len;
        Scan::Pass { len, header }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protocol::test_frame as frame;

    #[test]
    fn passes_uninteresting_frames_and_stops_at_wanted_ones() {
        let mut buf = frame(b'D', b"row-data");
        buf.extend(frame(b'Z', b"I"));
        let mut s = FrameScanner::new();
        let wants = |t| t == b'Z';
        assert_eq!(
            s.next(&buf, 1 << 20, wants).unwrap(),
            Scan::Pass {
                len: 13,
                header: Some(FrameHeader {
                    tag: b'D',
                    total_len: 13
                })
            }
        );
        assert_eq!(
            s.next(&buf[13..], 1 << 20, wants).unwrap(),
            Scan::Frame(FrameHeader {
                tag: b'Z',
                total_len: 6
            })
        );
    }

    #[test]
    fn streams_a_large_frame_in_pieces() {
        let big = frame(b'd', &[7u8; 100]);
        let mut s = FrameScanner::new();
        let first = s.next(&big[..40], 1 << 20, |_| false).unwrap();
        assert_eq!(
            first,
            Scan::Pass {
                len: 40,
                header: Some(FrameHeader {
                    tag: b'd',
                    total_len: 105
                })
            }
        );
        assert!(!s.at_boundary());
        assert_eq!(s.next(&[], 1 << 20, |_| false).unwrap(), Scan::NeedMore);
        assert_eq!(
            s.next(&big[40..], 1 << 20, |_| false).unwrap(),
            Scan::Pass {
                len: 65,
                header: None
            }
        );
        assert!(s.at_boundary());
    }

    #[test]
    fn waits_for_whole_wanted_frame() {
        let z = frame(b'Z', b"T");
        let mut s = FrameScanner::new();
        assert_eq!(s.next(&z[..5], 100, |_| true).unwrap(), Scan::NeedMore);
        assert_eq!(s.next(&z[..3], 100, |_| true).unwrap(), Scan::NeedMore);
    }

    #[test]
    fn rejects_bad_and_oversized_lengths() {
        let mut s = FrameScanner::new();
        assert_eq!(
            s.next(&[b'Q', 0, 0, 0, 3], 100, |_| false),
            Err(FrameError::BadLength { tag: b'Q', len: 3 })
        );
        assert_eq!(
            s.next(&[b'Q', 0xff, 0xff, 0xff, 0xff], 100, |_| false),
            Err(FrameError::BadLength { tag: b'Q', len: -1 })
        );
        assert_eq!(
            s.next(&frame(b'Q', &[1; 200]), 100, |_| false),
            Err(FrameError::TooLarge {
                tag: b'Q',
                len: 205,
                max: 100
            })
        );
    }
}
