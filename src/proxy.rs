//! Proxy assembly: binds listeners, wires pools, metrics and sessions together.

use std::net::SocketAddr;

use crate::config::Config;

/// Why the proxy could not start (bad TLS files, ports in use, invalid users).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

/// Entry point for running pgferry in-process.
pub struct Proxy;

/// A running proxy: its bound addresses and a way to stop it.
pub struct ProxyHandle {
    client_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
}

impl Proxy {
    /// Binds the listeners and starts serving; returns once the proxy accepts connections.
    pub async fn start(config: Config) -> Result<ProxyHandle, StartError> {
        let _ = config;
        Err(StartError::Invalid("not yet implemented".into()))
    }
}

impl ProxyHandle {
    /// Address clients connect to (useful when the config asked for port 0).
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }
    /// Address of the metrics/health HTTP endpoint, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }
    /// Stops accepting, lets sessions finish within the shutdown timeout, closes pools.
    pub async fn shutdown(self) {}
}
