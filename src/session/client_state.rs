//! The client-connection gauge by state (idle / active / waiting), kept exact by moving one
//! session between states and leaving its state on drop.

use std::sync::Arc;

use crate::metrics::Metrics;

/// What a client is doing, as Prometheus sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Logged in, no backend held.
    Idle,
    /// Holding a backend.
    Active,
    /// Waiting for a backend.
    Waiting,
}

/// One session's contribution to `pgferry_client_connections{state}`.
pub struct ClientGauge {
    metrics: Arc<Metrics>,
    state: ClientState,
}

impl ClientGauge {
    /// Counts a new logged-in client as idle.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        metrics.client_state_gauge(ClientState::Idle).inc();
        ClientGauge { metrics, state: ClientState::Idle }
    }

    /// Moves this client to `state`.
    pub fn set(&mut self, state: ClientState) {
        if state != self.state {
            self.metrics.client_state_gauge(self.state).dec();
            self.metrics.client_state_gauge(state).inc();
            self.state = state;
        }
    }
}

impl Drop for ClientGauge {
    fn drop(&mut self) {
        self.metrics.client_state_gauge(self.state).dec();
    }
}
