//! pgferry: a PostgreSQL connection-pooling proxy for serverless workloads.
//!
//! The library is what the binary and the tests share: [`Proxy::start`] runs a complete proxy
//! in-process from a [`config::Config`] and returns a [`ProxyHandle`] (bound addresses,
//! shutdown), so end-to-end tests exercise exactly the code the binary runs.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod aws;
pub mod cancel;
pub mod client_tls;
pub mod config;
pub mod control;
pub mod http;
pub mod live;
pub mod metrics;
pub mod pool;
pub mod protocol;
pub mod reload;
pub mod server;
pub mod session;
pub mod sizing;
mod spare;
pub mod stream;
pub mod tls;

mod proxy;

pub use proxy::{Proxy, ProxyHandle, StartError};
