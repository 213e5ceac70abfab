//! Session parameters as a client sees them through pgferry, compared message by message with
//! the same session on a direct connection to PostgreSQL: `client_encoding` spellings at login
//! and after SET, and RESET / RESET ALL / DISCARD ALL returning to the client's own startup
//! values in both pool modes.

mod support;

use pgferry::config::PoolMode;
use support::transcript::{parameter_statuses, Login, Session};
use support::*;

async fn proxy(mode: PoolMode, pool_size: u32) -> pgferry::ProxyHandle {
    let mut config = proxy_config(pg());
    config.auth.allow_md5 = true;
    config.databases[0].pool_mode = mode;
    config.databases[0].pool_size = pool_size;
    start_proxy(config).await
}

async fn login(addr: std::net::SocketAddr, params: &[(&str, &str)]) -> Login {
    Session::login(addr, APP_USER, APP_PASSWORD, APP_DB, params).await
}

/// The whole login transcript (AuthenticationOk, ParameterStatus in order, BackendKeyData,
/// ReadyForQuery or the FATAL).
fn transcript(login: &Login) -> Vec<String> {
    match login {
        Login::Ok(_, messages) | Login::Refused(messages) => messages.clone(),
    }
}

const ENCODINGS: [&str; 9] = [
    "utf8",
    "UTF-8",
    "unicode",
    "UNICODE",
    "eucjp",
    "latin1",
    "sql_ascii",
    "WIN1252",
    "nonsense",
];

#[tokio::test]
async fn client_encoding_is_reported_by_its_canonical_name_like_postgres() {
    for mode in [PoolMode::Transaction, PoolMode::Session] {
        let handle = proxy(mode, 2).await;
        for encoding in ENCODINGS {
            let params = [("client_encoding", encoding)];
            let direct = login(pg().addr(), &params).await;
            let proxied = login(handle.client_addr(), &params).await;
            assert_eq!(
                transcript(&proxied),
                transcript(&direct),
                "{mode:?}: login with client_encoding={encoding}"
            );
            let (Login::Ok(mut direct, _), Login::Ok(mut proxied, _)) = (direct, proxied) else {
                continue;
            };
            for sql in [
                "SHOW client_encoding",
                "SET client_encoding = 'win-1252'",
                "SET client_encoding = 'nonsense'",
                "SELECT 1",
                "SET client_encoding = 'Unicode'",
                "RESET client_encoding",
                "SHOW client_encoding",
            ] {
                assert_eq!(
                    proxied.query(sql).await,
                    direct.query(sql).await,
                    "{mode:?}: {sql} after login with client_encoding={encoding}"
                );
            }
        }
    }
}

/// Startup values of every parameter kind: reported (DateStyle, TimeZone, IntervalStyle,
/// application_name) and not (statement_timeout, work_mem, search_path).
const OPTIONS: &str = "-c datestyle=SQL,\\ DMY -c timezone=Asia/Tokyo \
                       -c intervalstyle=postgres_verbose -c statement_timeout=5s \
                       -c work_mem=3MB -c search_path=public,pg_catalog";

const AS_PARAMS: [(&str, &str); 7] = [
    ("DateStyle", "SQL, DMY"),
    ("TimeZone", "Asia/Tokyo"),
    ("IntervalStyle", "postgres_verbose"),
    ("statement_timeout", "5s"),
    ("work_mem", "3MB"),
    ("search_path", "public,pg_catalog"),
    ("application_name", "fidelity"),
];

const PROBE: &str = "SELECT current_setting('DateStyle'), current_setting('TimeZone'), \
                     current_setting('IntervalStyle'), current_setting('statement_timeout'), \
                     current_setting('work_mem'), current_setting('search_path'), \
                     current_setting('application_name'), '2024-05-06'::date::text, \
                     '1 day 2 hours'::interval::text";

const SETS: &str = "SET datestyle = 'German'; SET timezone = 'America/New_York'; \
                    SET intervalstyle = 'iso_8601'; SET statement_timeout = '7s'; \
                    SET work_mem = '8MB'; SET application_name = 'changed'; \
                    SET search_path = pg_catalog";

/// Each statement separately; `PROBE` shows every setting.
const SCRIPT: &[&str] = &[
    PROBE,
    SETS,
    PROBE,
    "RESET datestyle",
    PROBE,
    "RESET statement_timeout",
    PROBE,
    "SET TIME ZONE DEFAULT",
    PROBE,
    "SET work_mem TO DEFAULT",
    PROBE,
    "RESET ALL",
    PROBE,
    SETS,
    "DISCARD ALL",
    PROBE,
    SETS,
    "BEGIN",
    "RESET ALL",
    PROBE,
    "ROLLBACK",
    PROBE,
    "BEGIN; SET LOCAL datestyle = 'Postgres'; RESET datestyle; COMMIT",
    PROBE,
    "BEGIN",
    "RESET ALL",
    "COMMIT",
    PROBE,
    SETS,
    "RESET ALL; SELECT 1/0",
    PROBE,
    "BEGIN",
    "SELECT 1/0",
    "RESET ALL",
    "ROLLBACK",
    PROBE,
    // Statements after the RESET in the same Query string see the backend's defaults: a
    // known limit (see `params::restore`), so the values are read by the next Query.
    "RESET search_path; RESET application_name",
    PROBE,
];

/// Runs `SCRIPT` through pgferry and directly with the same startup parameters, comparing
/// every reply message. In transaction mode a second client with no startup settings uses
/// the only backend between the statements (and must see none of the first client's).
async fn compare_script(mode: PoolMode, params: &[(&str, &str)]) {
    let handle = proxy(mode, 1).await;
    if mode == PoolMode::Session {
        // The backend the client gets was used (and reset) by a client with other settings.
        let (mut earlier, _) = login(handle.client_addr(), &[("options", "-c work_mem=5MB")])
            .await
            .session();
        earlier.query("SET datestyle = 'Postgres'").await;
    }
    let (mut direct, direct_login) = login(pg().addr(), params).await.session();
    let (mut proxied, proxied_login) = login(handle.client_addr(), params).await.session();
    // (Their order is compared in the client_encoding test.)
    assert_eq!(
        parameter_statuses(&proxied_login),
        parameter_statuses(&direct_login),
        "{mode:?}: login"
    );
    let mut other = match mode {
        PoolMode::Transaction => Some(login(handle.client_addr(), &[]).await.session().0),
        PoolMode::Session => None,
    };
    for sql in SCRIPT {
        let expected = direct.query(sql).await;
        let got = proxied.query(sql).await;
        assert_eq!(got, expected, "{mode:?} {params:?}: {sql}");
        if let (Some(other), Some("Z I")) = (other.as_mut(), got.last().map(String::as_str)) {
            assert_eq!(
                other
                    .query("SELECT current_setting('DateStyle'), current_setting('work_mem')")
                    .await,
                ["T", "D ISO, MDY|4MB", "C SELECT 1", "Z I"],
                "{mode:?}: the other client after {sql}"
            );
        }
    }
}

#[tokio::test]
async fn reset_returns_to_startup_options_in_transaction_mode() {
    let options = [("options", OPTIONS), ("application_name", "fidelity")];
    compare_script(PoolMode::Transaction, &options).await;
}

#[tokio::test]
async fn reset_returns_to_startup_parameters_in_transaction_mode() {
    compare_script(PoolMode::Transaction, &AS_PARAMS).await;
}

#[tokio::test]
async fn reset_returns_to_startup_options_in_session_mode() {
    let options = [("options", OPTIONS), ("application_name", "fidelity")];
    compare_script(PoolMode::Session, &options).await;
}

#[tokio::test]
async fn reset_returns_to_startup_parameters_in_session_mode() {
    compare_script(PoolMode::Session, &AS_PARAMS).await;
}

/// A client that pipelines its next Query behind a RESET gets it run after the restore, with
/// the replies and ParameterStatus in PostgreSQL's order.
#[tokio::test]
async fn statements_pipelined_behind_a_reset_see_the_startup_values() {
    let params = [("options", OPTIONS), ("application_name", "fidelity")];
    let pipeline = [SETS, "RESET ALL", "SHOW DateStyle", "DISCARD ALL", PROBE];
    for mode in [PoolMode::Transaction, PoolMode::Session] {
        let handle = proxy(mode, 1).await;
        let (mut direct, _) = login(pg().addr(), &params).await.session();
        let (mut proxied, _) = login(handle.client_addr(), &params).await.session();
        assert_eq!(
            proxied.pipeline(&pipeline).await,
            direct.pipeline(&pipeline).await,
            "{mode:?}"
        );
    }
}
