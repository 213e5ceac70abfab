//! The parking lot: where long-idle client sessions wait outside the async runtime.
//!
//! A session waiting in the runtime costs a task (384 B), a reactor registration (256 B), its
//! wait future and its timer, on top of its state. Serverless fleets leave thousands of clients
//! idle for minutes (frozen Lambda containers keep their sockets open), so a session that stayed
//! silent for a park period (`limits.client_park_after`, see [`super::signal`]) hands itself to
//! the lot instead: what remains is its `Relay`, a slot here, and its socket in the lot's own
//! epoll set, which one task watches for all of them.
//!
//! The lot resumes a session (a new task, its socket back in the runtime) when its socket turns
//! readable (the client sent something, closed or reset), when its `client_idle_timeout` ran
//! out (checked at each park tick: the session then ends with 57P05, as it would have in the
//! runtime, at most one park period late), and, all at once, when shutdown begins.
//!
//! TLS sessions park too: the lot keeps their rustls state (keys) beside the socket.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Token};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use super::relay::Relay;
use super::SessionContext;
use crate::metrics::Metrics;
use crate::stream::ParkedSocket;

/// Events taken from the lot's epoll set per poll.
const EVENTS_PER_POLL: usize = 256;

/// Parked sessions, shared by every session of a proxy (see the module docs).
pub struct ParkingLot {
    /// `None` when parking is disabled: every [`ParkingLot::park`] is refused.
    shared: Option<Shared>,
}

struct Shared {
    registry: mio::Registry,
    slots: Mutex<Slots>,
    metrics: Arc<Metrics>,
}

/// Parked sessions by epoll token (the slot index).
#[derive(Default)]
struct Slots {
    entries: Vec<Option<Parked>>,
    free: Vec<usize>,
    /// Shutdown began: sessions are resumed, none is parked any more.
    closed: bool,
}

struct Parked {
    relay: Box<Relay>,
    socket: ParkedSocket,
    /// When the session's `client_idle_timeout` runs out, if one applies.
    deadline: Option<Instant>,
}

/// The lot's epoll instance, for [`serve`] (the task that watches it).
pub struct LotPoll(mio::Poll);

impl ParkingLot {
    /// A lot and the epoll instance [`serve`] must watch; a disabled lot (and no poll) when
    /// `enabled` is false.
    pub fn new(enabled: bool, metrics: &Arc<Metrics>) -> io::Result<(Self, Option<LotPoll>)> {
        if !enabled {
            return Ok((ParkingLot { shared: None }, None));
        }
        let poll = mio::Poll::new()?;
        let shared = Shared {
            registry: poll.registry().try_clone()?,
            slots: Mutex::new(Slots::default()),
            metrics: Arc::clone(metrics),
        };
        Ok((
            ParkingLot {
                shared: Some(shared),
            },
            Some(LotPoll(poll)),
        ))
    }

    /// Parks an idle session; hands it back when it cannot be parked (parking disabled, TLS
    /// bytes in flight, shutdown began, or the socket could not be registered), and the
    /// session then goes on waiting in the runtime.
    pub(super) fn park(&self, mut relay: Box<Relay>) -> Result<(), Box<Relay>> {
        let Some(shared) = &self.shared else {
            return Err(relay);
        };
        let mut slots = lock(&shared.slots);
        if slots.closed {
            return Err(relay);
        }
        let Some(socket) = relay.client.detach() else {
            return Err(relay);
        };
        let index = slots.free.pop().unwrap_or(slots.entries.len());
        let token = Token(index);
        let registered =
            shared
                .registry
                .register(&mut SourceFd(&socket.raw_fd()), token, Interest::READABLE);
        if let Err(error) = registered {
            tracing::debug!(%error, "idle client not parked");
            slots.free.push(index);
            relay.client = socket.reattach();
            return Err(relay);
        }
        // Only now: a session handed back keeps its timer, so its idle timeout does not restart.
        let deadline = relay.prepare_to_park();
        let parked = Some(Parked {
            relay,
            socket,
            deadline,
        });
        match slots.entries.get_mut(index) {
            Some(slot) => *slot = parked,
            None => slots.entries.push(parked),
        }
        shared.metrics.clients_parked(1);
        Ok(())
    }

    /// Takes the session parked under `token` out of the lot (`None` if the slot is empty).
    fn take(&self, token: Token) -> Option<Parked> {
        let shared = self.shared.as_ref()?;
        let mut slots = lock(&shared.slots);
        let parked = slots.entries.get_mut(token.0)?.take()?;
        slots.free.push(token.0);
        shared.leave(&parked);
        Some(parked)
    }

    /// Takes out every session whose idle timeout ran out by `now`.
    fn take_expired(&self, now: Instant) -> Vec<Parked> {
        self.take_where(|p| p.deadline.is_some_and(|d| d <= now))
    }

    /// Takes out every session an administrator killed (KILL, KILL_CLIENT).
    fn take_killed(&self) -> Vec<Parked> {
        self.take_where(|p| p.relay.cancel.killed().is_some())
    }

    fn take_where(&self, mut pick: impl FnMut(&Parked) -> bool) -> Vec<Parked> {
        let Some(shared) = &self.shared else {
            return Vec::new();
        };
        let mut slots = lock(&shared.slots);
        let Slots { entries, free, .. } = &mut *slots;
        let mut taken = Vec::new();
        for (index, slot) in entries.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(&mut pick) {
                if let Some(parked) = slot.take() {
                    free.push(index);
                    shared.leave(&parked);
                    taken.push(parked);
                }
            }
        }
        taken
    }

    /// Refuses parking from now on and takes out every parked session (shutdown).
    fn close(&self) -> Vec<Parked> {
        let Some(shared) = &self.shared else {
            return Vec::new();
        };
        let mut slots = lock(&shared.slots);
        slots.closed = true;
        slots.free.clear();
        let all: Vec<Parked> = slots.entries.drain(..).flatten().collect();
        for parked in &all {
            shared.leave(parked);
        }
        all
    }
}

impl Shared {
    /// Bookkeeping of a session leaving the lot: out of the epoll set and the gauge.
    fn leave(&self, parked: &Parked) {
        let fd = parked.socket.raw_fd();
        if let Err(error) = self.registry.deregister(&mut SourceFd(&fd)) {
            tracing::debug!(%error, "parked client socket not deregistered");
        }
        self.metrics.clients_parked(-1);
    }
}

/// A poisoned lock only means another thread panicked while holding it; the slots stay
/// consistent (every update is a single assignment), so parking goes on.
fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    slots
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Gives a session back to the runtime in a task of its own: to serve its client, or to end
/// it with the idle-session timeout.
fn resume(parked: Parked, timed_out: bool) {
    let Parked {
        mut relay, socket, ..
    } = parked;
    relay.client = socket.reattach();
    if timed_out {
        tokio::spawn(relay.end_idle());
    } else {
        tokio::spawn(relay.run());
    }
}

/// Watches the lot until shutdown begins: resumes sessions whose socket turned readable, ends
/// those whose idle timeout ran out (at each park tick), then resumes every session left so
/// each sees the shutdown and says goodbye.
pub async fn serve(ctx: Arc<SessionContext>, poll: LotPoll) {
    let lot = &ctx.parking;
    // SAFETY: `mio::Poll` owns its epoll descriptor for its whole life and always reports
    // that same descriptor; the `AsyncFd` owns the `Poll`, so the descriptor outlives it.
    let registered =
        unsafe { AsyncFd::register_with_interest(poll.0, tokio::io::Interest::READABLE) };
    match registered {
        Ok(mut poll) => watch(lot, &mut poll, ctx.signals.clone()).await,
        Err(error) => tracing::warn!(%error, "parking lot unavailable; idle clients stay"),
    }
    for parked in lot.close() {
        resume(parked, false);
    }
}

async fn watch(
    lot: &ParkingLot,
    poll: &mut AsyncFd<mio::Poll>,
    mut signals: tokio::sync::watch::Receiver<super::signal::SessionSignal>,
) {
    let mut events = mio::Events::with_capacity(EVENTS_PER_POLL);
    let mut kills = signals.borrow().kills;
    loop {
        tokio::select! {
            ready = poll.readable_mut() => {
                let Ok(mut guard) = ready else { return };
                match guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        tracing::warn!(%error, "parking lot poll failed");
                        return;
                    }
                }
                // A full batch may leave events behind: stay ready and poll again.
                if events.iter().count() < EVENTS_PER_POLL {
                    guard.clear_ready();
                }
                for event in &events {
                    if let Some(parked) = lot.take(event.token()) {
                        resume(parked, false);
                    }
                }
            }
            changed = signals.changed() => {
                let signal = *signals.borrow_and_update();
                if changed.is_err() || signal.draining || signal.closing {
                    return;
                }
                for parked in lot.take_expired(Instant::now()) {
                    resume(parked, true);
                }
                if signal.kills != kills {
                    kills = signal.kills;
                    // Back in the runtime, the session sees its kill order and ends.
                    for parked in lot.take_killed() {
                        resume(parked, false);
                    }
                }
            }
        }
    }
}
