//! Errors from reaching, securing and logging in to a backend.
//!
//! Each error maps to the SQLSTATE a client should see and to a message a human can act on,
//! because the pool hands backend failures back to clients as ordinary ErrorResponses.

use std::time::Duration;

/// Why a backend connection (or a cancel request to it) failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Name resolution or TCP connect failed for `addr` (`host:port`).
    #[error("could not connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// Connect + TLS + login (or a cancel / health check) did not finish in time.
    #[error("no answer from {addr} within {after:?}")]
    Timeout { addr: String, after: Duration },
    /// The TLS handshake failed (certificate rejected, protocol error, bad server name).
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
    /// The backend answered `N` to SSLRequest although the TLS mode requires encryption.
    #[error("backend refused TLS but tls_mode requires it")]
    TlsRefused,
    /// The backend sent an ErrorResponse; its own SQLSTATE and message are kept.
    #[error("backend error {sqlstate}: {message}")]
    Backend { sqlstate: String, message: String },
    /// The backend asked for an authentication method pgferry cannot perform.
    #[error("unsupported authentication: {0}")]
    UnsupportedAuth(String),
    /// The backend sent something that violates the protocol (or SCRAM verification failed).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The established connection failed while reading or writing.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl ServerError {
    /// The SQLSTATE a client should receive for this failure: the backend's own code when it
    /// sent one, otherwise the connection-exception class codes PostgreSQL clients understand.
    pub fn sqlstate(&self) -> &str {
        match self {
            ServerError::Backend { sqlstate, .. } => sqlstate,
            ServerError::Protocol(_) => "08P01",
            ServerError::UnsupportedAuth(_) => "28000",
            ServerError::Connect { .. }
            | ServerError::Timeout { .. }
            | ServerError::Tls(_)
            | ServerError::TlsRefused
            | ServerError::Io(_) => "08006",
        }
    }

    /// A message for the client naming the pgferry database whose backend failed, e.g.
    /// `backend "appdb" (10.0.0.5:5432) is unreachable: Connection refused`.
    pub fn client_message(&self, database: &str) -> String {
        match self {
            ServerError::Connect { addr, source } => {
                format!("backend \"{database}\" ({addr}) is unreachable: {source}")
            }
            ServerError::Timeout { addr, after } => {
                format!("backend \"{database}\" ({addr}) did not answer within {after:?}")
            }
            ServerError::Tls(e) => format!("TLS with backend \"{database}\" failed: {e}"),
            ServerError::TlsRefused => {
                format!("backend \"{database}\" refused TLS, which its tls_mode requires")
            }
            ServerError::Backend { message, .. } => format!("backend \"{database}\": {message}"),
            ServerError::UnsupportedAuth(what) => {
                format!("backend \"{database}\" requested unsupported authentication: {what}")
            }
            ServerError::Protocol(what) => {
                format!("backend \"{database}\" violated the protocol: {what}")
            }
            ServerError::Io(e) => format!("connection to backend \"{database}\" failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_errors_keep_their_sqlstate() {
        let err = ServerError::Backend {
            sqlstate: "57P03".into(),
            message: "the database system is starting up".into(),
        };
        assert_eq!(err.sqlstate(), "57P03");
        assert_eq!(
            err.client_message("appdb"),
            "backend \"appdb\": the database system is starting up"
        );
    }

    #[test]
    fn connection_failures_map_to_connection_exception() {
        let err = ServerError::Connect {
            addr: "10.0.0.5:5432".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            ),
        };
        assert_eq!(err.sqlstate(), "08006");
        assert_eq!(
            err.client_message("appdb"),
            "backend \"appdb\" (10.0.0.5:5432) is unreachable: connection refused"
        );
        assert_eq!(ServerError::Protocol("x".into()).sqlstate(), "08P01");
        assert_eq!(
            ServerError::UnsupportedAuth("GSS".into()).sqlstate(),
            "28000"
        );
        assert_eq!(ServerError::TlsRefused.sqlstate(), "08006");
    }
}
