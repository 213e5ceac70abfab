//! What the control commands send besides acting on pools: the session signals (kills,
//! retirements after a reload) and the SHUTDOWN request the binary awaits. Kept apart from the
//! commands, which take the whole session context, so the context can own it without the two
//! modules depending on each other.

use tokio::sync::watch;

use crate::admin::command::ShutdownMode;
use crate::session::signal::SignalSender;

/// What control commands need besides the pools: the senders sessions and the binary watch.
pub struct Controls {
    signals: SignalSender,
    pub(super) shutdown: watch::Sender<Option<ShutdownMode>>,
}

impl Controls {
    /// Controls sending on the proxy's session signals.
    pub fn new(signals: SignalSender) -> Self {
        Controls {
            signals,
            shutdown: watch::channel(None).0,
        }
    }

    /// Resolves with the first SHUTDOWN requested through the console (the binary awaits it
    /// next to SIGTERM; see `ProxyHandle::shutdown_requested`).
    pub async fn shutdown_requested(&self) -> ShutdownMode {
        let mut requests = self.shutdown.subscribe();
        let mode = match requests.wait_for(Option::is_some).await {
            Ok(mode) => *mode,
            // Unreachable while `self` lives (it owns the sender).
            Err(_) => None,
        };
        mode.unwrap_or(ShutdownMode::Immediate)
    }

    /// Wakes every session so those of pools a reload removed end once they are outside a
    /// transaction.
    pub fn announce_retirements(&self) {
        self.signals
            .send_modify(|s| s.retire_epoch = s.retire_epoch.wrapping_add(1));
    }

    /// Wakes every session so the killed ones see their kill order.
    pub(super) fn wake_sessions(&self) {
        self.signals
            .send_modify(|s| s.kills = s.kills.wrapping_add(1));
    }
}
