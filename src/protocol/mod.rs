//! PostgreSQL wire protocol pieces the proxy needs: frame scanning on the hot path, the
//! startup packet, message builders for what pgferry answers itself, and decoders for the few
//! backend messages it must understand.

pub mod decode;
pub mod frame;
pub mod messages;
pub mod startup;

/// A frame `tag + length + body`, for tests of code that reads frames.
#[cfg(test)]
pub(crate) fn test_frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = vec![tag];
    frame.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

/// SQLSTATE codes pgferry emits itself, named so call sites read as intent.
pub mod sqlstate {
    /// Protocol violation: malformed or oversized messages.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// Connection failure: a backend that cannot be reached or died.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// Too many connections: client limit reached or no backend available in time.
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// Invalid authorization specification: TLS required, unknown role.
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// Wrong password.
    pub const INVALID_PASSWORD: &str = "28P01";
    /// Unknown database.
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    /// Feature not supported (protocol versions, options).
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// Object not in prerequisite state: RESUME of a database that is not paused, and such.
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    /// Undefined object: KILL_CLIENT of an id no client has.
    pub const UNDEFINED_OBJECT: &str = "42704";
    /// Admin shutdown: the proxy is stopping.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// config_file_error: a reload found the configuration file invalid.
    pub const CONFIG_FILE_ERROR: &str = "F0000";
    /// Cannot connect now: backend starting up or shutting down.
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    /// Idle-in-transaction session timeout (PostgreSQL's own code for it).
    pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
    /// Idle session timeout (PostgreSQL 14+ code).
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    /// Invalid byte sequence for an encoding (PostgreSQL's code for text that is not UTF-8).
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    /// Invalid parameter value: a startup parameter PostgreSQL would refuse.
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    /// Syntax error: an admin console statement that is not a console command.
    pub const SYNTAX_ERROR: &str = "42601";
    /// Insufficient privilege: a stats-only console user running a control command.
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";

    /// The codes a PostgreSQL server sends when it refuses a login (ProcessStartupPacket,
    /// InitPostgres, authentication), sorted for binary search.
    const LOGIN_REFUSALS: &[&str] = &[
        "08004", "08P01", "0A000", "22023", "28000", "28P01", "3D000", "42501", "53000", "53100",
        "53200", "53300", "55000", "57P01", "57P02", "57P03",
    ];

    /// `code` as a static string if it is one a backend refuses logins with, so the client
    /// gets the backend's own reason (57P03 starting up, 53300 too many connections, 28P01
    /// wrong password) rather than a generic connection failure. Other codes are `None`: the
    /// caller reports them as [`CONNECTION_FAILURE`].
    pub fn login_refusal(code: &str) -> Option<&'static str> {
        LOGIN_REFUSALS
            .binary_search(&code)
            .ok()
            .map(|i| LOGIN_REFUSALS[i])
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn login_refusals_are_sorted_and_found() {
            assert!(super::LOGIN_REFUSALS.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(super::login_refusal("57P03"), Some("57P03"));
            assert_eq!(super::login_refusal("53300"), Some("53300"));
            assert_eq!(super::login_refusal("XX000"), None);
        }
    }
}
