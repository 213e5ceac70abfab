//! What every session watches besides its sockets: the proxy's shutdown phases and the park
//! clock, in one watch channel, so a waiting session registers one waiter (not one per signal)
//! and a session holds one receiver.

use std::time::Duration;

use tokio::sync::watch;

/// The state sessions watch. Shutdown phases only ever advance; `park_epoch` counts ticks of
/// the park clock (every `limits.client_park_after`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionSignal {
    /// Shutdown began: idle sessions end, sessions inside a transaction may finish it.
    pub draining: bool,
    /// `shutdown_timeout` is over: every session ends now.
    pub closing: bool,
    /// Ticks of the park clock; an idle wait that saw two ticks parks its session.
    pub park_epoch: u32,
    /// Bumped by KILL and KILL_CLIENT after they marked their victims (see
    /// `CancelSlot::killed`): every session looks at its own mark once, nothing per
    /// transaction.
    pub kills: u32,
    /// Reloads that removed pools: each wakes the sessions, and those of a removed pool end
    /// once they are outside a transaction.
    pub retire_epoch: u32,
}

impl SessionSignal {
    /// True once an idle wait that began at `epoch` has lasted at least one full tick period
    /// (it saw two ticks): between one and two periods of silence.
    pub fn parks_wait_from(&self, epoch: u32) -> bool {
        self.park_epoch.wrapping_sub(epoch) >= 2
    }
}

/// The sending side, kept by the proxy; sessions get receivers from [`SignalSender::subscribe`].
pub type SignalSender = watch::Sender<SessionSignal>;

/// Advances the park clock every `period` until shutdown begins. Nothing runs when `period` is
/// zero (parking disabled). One tick wakes every waiting session once per period, which is a
/// few thousand cheap wakeups per period for a proxy with thousands of idle clients.
pub async fn run_park_clock(signals: SignalSender, period: Duration) {
    if period.is_zero() {
        return;
    }
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut draining = false;
        signals.send_modify(|signal| {
            draining = signal.draining;
            if !draining {
                signal.park_epoch = signal.park_epoch.wrapping_add(1);
            }
        });
        if draining || signals.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_parks_after_two_ticks_even_across_wraparound() {
        let at = |park_epoch| SessionSignal {
            park_epoch,
            ..SessionSignal::default()
        };
        assert!(!at(5).parks_wait_from(5));
        assert!(!at(6).parks_wait_from(5));
        assert!(at(7).parks_wait_from(5));
        assert!(at(1).parks_wait_from(u32::MAX));
        assert!(!at(0).parks_wait_from(u32::MAX));
    }

    #[tokio::test]
    async fn the_clock_ticks_until_shutdown_begins() {
        let (tx, mut rx) = watch::channel(SessionSignal::default());
        let clock = tokio::spawn(run_park_clock(tx.clone(), Duration::from_millis(10)));
        rx.changed().await.expect("first tick");
        assert_eq!(rx.borrow_and_update().park_epoch, 1);
        rx.changed().await.expect("second tick");
        assert_eq!(rx.borrow_and_update().park_epoch, 2);
        tx.send_modify(|s| s.draining = true);
        let stopped_at = rx.borrow_and_update().park_epoch;
        clock.await.expect("the clock stops after shutdown began");
        assert_eq!(
            rx.borrow().park_epoch,
            stopped_at,
            "no tick after shutdown began"
        );
    }
}
