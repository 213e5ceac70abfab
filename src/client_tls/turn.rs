//! One turn of rustls's unbuffered state machine: what each state it reports means for the
//! read, write, close or handshake under way.

use rustls::server::ServerConnectionData;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, WriteTraffic};
use tokio::io::ReadBuf;

use super::buffers::{Outgoing, Stash};
use super::ClientTlsError;

/// What the caller wants from one turn of the rustls state machine.
pub(super) enum Want<'a, 'b> {
    /// Stop once the handshake is done.
    Handshake,
    /// Application data, into this buffer.
    Read(&'a mut ReadBuf<'b>),
    /// Encrypt this plaintext.
    Write(&'a [u8]),
    /// Queue a close_notify alert.
    Close,
}

/// The outcome of one turn.
pub(super) enum Step {
    /// rustls moved on (encoded a record, stashed data...): turn again.
    Progress,
    /// The wish was fulfilled (for `Write`, this many bytes were encrypted).
    Done(usize),
    /// rustls needs more ciphertext from the peer.
    NeedInput,
    /// The session is closed in both directions.
    Closed,
}

/// Acts on one state rustls reached (see `ClientTls::step`).
pub(super) fn on_state(
    state: ConnectionState<'_, '_, ServerConnectionData>,
    want: Want<'_, '_>,
    outgoing: &mut Outgoing,
    stash: &mut Stash,
    peer_closed: &mut bool,
    discard: &mut usize,
) -> Result<Step, ClientTlsError> {
    match state {
        // During the handshake, application data right behind it waits in rustls.
        ConnectionState::ReadTraffic(_) if matches!(want, Want::Handshake) => Ok(Step::Done(0)),
        ConnectionState::ReadTraffic(mut traffic) => match traffic.next_record() {
            Some(record) => {
                let record = record?;
                *discard += record.discard;
                Ok(deliver(record.payload, want, stash))
            }
            None => Ok(Step::Progress),
        },
        ConnectionState::EncodeTlsData(mut data) => {
            outgoing.append(|out| data.encode(out), encode_room)?;
            Ok(Step::Progress)
        }
        // The caller sends `outgoing` before it waits for the peer.
        ConnectionState::TransmitTlsData(data) => {
            data.done();
            Ok(Step::Progress)
        }
        ConnectionState::WriteTraffic(traffic) => write_traffic(traffic, want, outgoing),
        ConnectionState::BlockedHandshake => Ok(Step::NeedInput),
        ConnectionState::PeerClosed => {
            *peer_closed = true;
            Ok(Step::Progress)
        }
        ConnectionState::Closed => Ok(Step::Closed),
        other => Err(ClientTlsError::UnexpectedState(format!("{other:?}"))),
    }
}

/// Hands a decrypted record to the reader's buffer (the rest to the stash), or stashes it.
fn deliver(payload: &[u8], want: Want<'_, '_>, stash: &mut Stash) -> Step {
    match want {
        Want::Read(buf) if stash.is_empty() && !payload.is_empty() => {
            let (now, later) = payload.split_at(payload.len().min(buf.remaining()));
            buf.put_slice(now);
            stash.push(later);
            Step::Done(now.len())
        }
        _ => {
            stash.push(payload);
            Step::Progress
        }
    }
}

/// The handshake is done and nothing is left to read: encrypt, close, or wait for the peer.
fn write_traffic(
    mut traffic: WriteTraffic<'_, ServerConnectionData>,
    want: Want<'_, '_>,
    outgoing: &mut Outgoing,
) -> Result<Step, ClientTlsError> {
    match want {
        Want::Handshake => Ok(Step::Done(0)),
        Want::Read(_) => Ok(Step::NeedInput),
        Want::Write(data) => {
            outgoing.append(|out| traffic.encrypt(data, out), encrypt_room)?;
            Ok(Step::Done(data.len()))
        }
        Want::Close => {
            outgoing.append(|out| traffic.queue_close_notify(out), encrypt_room)?;
            Ok(Step::Done(0))
        }
    }
}

pub(super) fn encode_room(error: &EncodeError) -> Option<usize> {
    match error {
        EncodeError::InsufficientSize(size) => Some(size.required_size),
        _ => None,
    }
}

fn encrypt_room(error: &EncryptError) -> Option<usize> {
    match error {
        EncryptError::InsufficientSize(size) => Some(size.required_size),
        _ => None,
    }
}
