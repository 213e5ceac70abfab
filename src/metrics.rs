//! Prometheus metrics: one private registry and pre-resolved handles for the hot path.
//!
//! Design rules (DESIGN.md principle 7, CRATES.md):
//! - every name starts with `pgferry_`;
//! - callers update metrics per transaction or per connection event, never per message;
//! - label values are resolved once (per pool, per enum variant) so hot-path updates are plain
//!   atomic adds with no hashing or allocation;
//! - pool state (which needs the pool's lock) is read only when Prometheus scrapes, in
//!   [`Metrics::encode`].

mod pool;
mod reload;

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use pool::{PoolGauges, PoolVecs};
pub use pool::{PoolMetrics, PoolState, PoolStateSource, PoolTotals};
pub use reload::ReloadMetrics;

#[cfg(target_os = "linux")]
use prometheus::process_collector::ProcessCollector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// SQLSTATE classes defined by PostgreSQL (Appendix A), sorted for binary search. Anything
/// else (custom `RAISE SQLSTATE`, malformed codes) is counted as `other`, which keeps the
/// number of series bounded whatever backends send.
const ERROR_CLASSES: &[&str] = &[
    "00", "01", "02", "03", "08", "09", "0A", "0B", "0F", "0L", "0P", "0Z", "20", "21", "22", "23",
    "24", "25", "26", "27", "28", "2B", "2D", "2F", "34", "38", "39", "3B", "3D", "3F", "40", "42",
    "44", "53", "54", "55", "57", "58", "72", "F0", "HV", "P0", "XX",
];
const OTHER_CLASS: &str = "other";

/// What a client session is doing, for `pgferry_client_connections{state}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Connected, between transactions, holding no backend.
    Idle,
    /// Holding a backend (inside a transaction or pinned).
    Active,
    /// Queued for a backend connection.
    Waiting,
}

/// Why a client connection was refused before login completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// `max_client_conn` reached.
    MaxClients,
    /// Plaintext client while TLS is mandatory.
    TlsRequired,
    /// Malformed or unsupported startup packet.
    BadStartup,
    /// Startup/auth did not finish within the login timeout.
    LoginTimeout,
    /// The user's `users[].max_client_connections` reached.
    MaxUserClients,
}

/// Outcome of a client login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    /// Authenticated and attached to a pool.
    Ok,
    /// Wrong password / failed SCRAM / certificate refused.
    AuthFailed,
    /// The requested database is not configured.
    UnknownDatabase,
    /// Any other failure (I/O, protocol, internal).
    Error,
}

/// How the client started TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsKind {
    /// Classic `SSLRequest` then handshake.
    SslRequest,
    /// PostgreSQL 17 direct TLS (ALPN `postgresql`).
    Direct,
}

/// Every metric pgferry exports, shared as `Arc<Metrics>` by all tasks.
pub struct Metrics {
    registry: Registry,
    /// Indexed by `ClientState as usize`.
    clients: Arc<[IntGauge; 3]>,
    clients_total: IntCounter,
    clients_parked: IntGauge,
    rejected: [IntCounter; 5],
    logins: [IntCounter; 4],
    /// Indexed by `[TlsKind as usize][failed as usize]`.
    tls: [[IntCounter; 2]; 2],
    /// One per [`ERROR_CLASSES`] entry, then `other`.
    errors: Vec<IntCounter>,
    client_bytes_received: IntCounter,
    client_bytes_sent: IntCounter,
    pool_vecs: PoolVecs,
    pool_gauges: PoolGauges,
    /// Also serializes scrapes: held across pool gauge refresh and gather.
    pool_source: Mutex<Option<Weak<dyn PoolStateSource>>>,
    backend_up: IntGaugeVec,
    pinned_sessions: IntGaugeVec,
    /// Configuration reloads (see [`ReloadMetrics`]).
    pub reload: ReloadMetrics,
}

/// Counts one client session in exactly one state of `pgferry_client_connections` for as
/// long as it lives; dropping it (session end, unwinding) removes the count, so the gauge
/// cannot drift whatever path ends the session.
pub struct ClientStateGuard {
    gauges: Arc<[IntGauge; 3]>,
    state: ClientState,
}

impl ClientStateGuard {
    /// Moves the session to `state` (no-op if already there).
    pub fn set(&mut self, state: ClientState) {
        if state != self.state {
            self.gauges[self.state as usize].dec();
            self.gauges[state as usize].inc();
            self.state = state;
        }
    }

    /// The state currently counted.
    pub fn state(&self) -> ClientState {
        self.state
    }
}

impl Drop for ClientStateGuard {
    fn drop(&mut self) {
        self.gauges[self.state as usize].dec();
    }
}

/// (name, help) of one metric family.
type Def = (&'static str, &'static str);
const POOL: &[&str] = &["database", "user"];
const POOL_REASON: &[&str] = &["database", "user", "reason"];

/// Every metric family, as one table so names can be reviewed together.
#[rustfmt::skip]
pub(crate) mod def {
    use super::Def;
    pub const CLIENTS: Def = ("pgferry_client_connections", "Client connections by state");
    pub const PARKED: Def = ("pgferry_client_connections_parked", "Idle clients parked");
    pub const CLIENTS_TOTAL: Def = ("pgferry_client_connections_total", "Client connections accepted");
    pub const REJECTED: Def = ("pgferry_client_connections_rejected_total", "Refused before login");
    pub const LOGINS: Def = ("pgferry_client_logins_total", "Client login attempts by result");
    pub const TLS: Def = ("pgferry_tls_handshakes_total", "Client TLS handshakes");
    pub const ERRORS: Def = ("pgferry_errors_total", "ErrorResponses sent, by SQLSTATE class");
    pub const BYTES_IN: Def = ("pgferry_client_bytes_received_total", "Bytes read from clients");
    pub const BYTES_OUT: Def = ("pgferry_client_bytes_sent_total", "Bytes written to clients");
    pub const BACKEND_UP: Def = ("pgferry_backend_up", "1 if the database's backend serves logins");
    pub const PINNED_SESSIONS: Def = ("pgferry_pinned_sessions", "Sessions pinned to a backend, by reason");
    pub const WAIT: Def = ("pgferry_pool_checkout_wait_seconds", "Wait for a server connection");
    pub const TXNS: Def = ("pgferry_transactions_total", "Transactions served");
    pub const TXN_TIME: Def = ("pgferry_transaction_duration_seconds", "Server held per txn");
    pub const QUERIES: Def = ("pgferry_queries_total", "Request rounds ending in ReadyForQuery");
    pub const QUERY_TIME: Def = ("pgferry_query_duration_seconds", "Time until ReadyForQuery");
    pub const TIMEOUTS: Def = ("pgferry_pool_checkout_timeouts_total", "Gave up waiting");
    pub const CONNECT_ERRS: Def = ("pgferry_server_connect_errors_total", "Failed backend connects");
    pub const DISCARDED: Def = ("pgferry_server_connections_discarded_total", "Closed, not reused");
    pub const PINS: Def = ("pgferry_client_pins_total", "Clients pinned to a backend, by reason");
    pub const POOL_MAX: Def = ("pgferry_pool_max_connections", "Configured pool size");
    pub const SERVERS: Def = ("pgferry_server_connections", "Open server connections by state");
    pub const WAITING: Def = ("pgferry_pool_waiting_clients", "Clients queued for a server");
    pub const PINNED: Def = ("pgferry_pool_pinned_connections", "Server connections held pinned");
    pub const PAUSED: Def = ("pgferry_paused", "1 while PAUSE or KILL holds the database's new work");
    pub const OLDEST_WAIT: Def = ("pgferry_pool_oldest_wait_seconds", "Wait of the longest-waiting client");
    pub const CONNECTS: Def = ("pgferry_server_connects_total", "Backend connection attempts by result");
    pub const BUILD_INFO: Def = ("pgferry_build_info", "Always 1; the version is a label");
}
use def::*;

/// Registers `metric` and hands it back. Failure means a malformed constant definition in
/// this file; every unit test constructs [`Metrics`], so such a bug cannot ship.
fn reg<C>(registry: &Registry, metric: prometheus::Result<C>) -> C
where
    C: prometheus::core::Collector + Clone + 'static,
{
    let registered = metric.and_then(|m| registry.register(Box::new(m.clone())).map(|()| m));
    #[allow(clippy::expect_used)]
    registered.expect("static metric definitions are valid and unique")
}

/// Hands back metrics a submodule registered itself; failure has the same cause as in
/// [`reg`] (a malformed or duplicate constant definition), caught by every unit test.
fn registered<M>(metrics: prometheus::Result<M>) -> M {
    #[allow(clippy::expect_used)]
    metrics.expect("static metric definitions are valid and unique")
}

fn counter_vec(r: &Registry, (name, help): Def, labels: &[&str]) -> IntCounterVec {
    reg(r, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge_vec(r: &Registry, (name, help): Def, labels: &[&str]) -> IntGaugeVec {
    reg(r, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn histogram_vec(r: &Registry, (name, help): Def, buckets: &[f64]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    reg(r, HistogramVec::new(opts, POOL))
}

fn counter(r: &Registry, (name, help): Def) -> IntCounter {
    reg(r, IntCounter::new(name, help))
}

/// Resolves one series per value of a single-label family, in the order given.
fn resolve<M, const N: usize>(vec: &prometheus::core::MetricVec<M>, values: [&str; N]) -> [M::M; N]
where
    M: prometheus::core::MetricVecBuilder,
{
    values.map(|v| vec.with_label_values(&[v]))
}

impl Metrics {
    /// Builds the private registry with every pgferry metric (plus the process collector on
    /// Linux: CPU, RSS, open fds).
    pub fn new() -> Arc<Metrics> {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        if let Err(e) = r.register(Box::new(ProcessCollector::for_self())) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
        let clients = gauge_vec(&r, CLIENTS, &["state"]);
        let rejected = counter_vec(&r, REJECTED, &["reason"]);
        let reasons = [
            "max_clients",
            "tls_required",
            "bad_startup",
            "login_timeout",
            "max_user_clients",
        ];
        let logins = counter_vec(&r, LOGINS, &["result"]);
        let tls = counter_vec(&r, TLS, &["result", "kind"]);
        let errors = counter_vec(&r, ERRORS, &["class"]);
        let classes = ERROR_CLASSES.iter().chain([&OTHER_CLASS]);
        gauge_vec(&r, BUILD_INFO, &["version"])
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Arc::new(Metrics {
            clients: Arc::new(resolve(&clients, ["idle", "active", "waiting"])),
            clients_total: counter(&r, CLIENTS_TOTAL),
            clients_parked: reg(&r, IntGauge::new(PARKED.0, PARKED.1)),
            rejected: resolve(&rejected, reasons),
            logins: resolve(&logins, ["ok", "auth_failed", "unknown_database", "error"]),
            tls: ["sslrequest", "direct"]
                .map(|kind| ["ok", "error"].map(|res| tls.with_label_values(&[res, kind]))),
            errors: classes.map(|c| errors.with_label_values(&[*c])).collect(),
            client_bytes_received: counter(&r, BYTES_IN),
            client_bytes_sent: counter(&r, BYTES_OUT),
            pool_vecs: PoolVecs::new(&r),
            pool_gauges: PoolGauges::new(&r),
            pool_source: Mutex::new(None),
            backend_up: gauge_vec(&r, BACKEND_UP, &["database"]),
            pinned_sessions: gauge_vec(&r, PINNED_SESSIONS, &["reason"]),
            reload: registered(ReloadMetrics::new(&r)),
            registry: r,
        })
    }

    /// Starts counting a new client session in `initial` state; see [`ClientStateGuard`].
    pub fn client_session(&self, initial: ClientState) -> ClientStateGuard {
        self.clients[initial as usize].inc();
        let gauges = Arc::clone(&self.clients);
        ClientStateGuard {
            gauges,
            state: initial,
        }
    }

    /// Idle clients were parked (`delta > 0`) or resumed / ended while parked (`delta < 0`).
    pub fn clients_parked(&self, delta: i64) {
        self.clients_parked.add(delta);
    }

    /// A client TCP connection was accepted.
    pub fn client_accepted(&self) {
        self.clients_total.inc();
    }

    /// A client connection was refused before login.
    pub fn client_rejected(&self, reason: RejectReason) {
        self.rejected[reason as usize].inc();
    }

    /// A client login attempt ended with `result`.
    pub fn login(&self, result: LoginResult) {
        self.logins[result as usize].inc();
    }

    /// A client TLS handshake finished (`ok = false` on any handshake error).
    pub fn tls_handshake(&self, kind: TlsKind, ok: bool) {
        self.tls[kind as usize][usize::from(!ok)].inc();
    }

    /// Counts one ErrorResponse sent to a client by its SQLSTATE class (first two characters).
    /// Does not allocate; unknown or malformed codes count as class `other`.
    pub fn count_error(&self, sqlstate: &str) {
        let idx = error_class_index(sqlstate).unwrap_or(ERROR_CLASSES.len());
        if let Some(counter) = self.errors.get(idx) {
            counter.inc();
        }
    }

    /// Adds a batch of bytes read from a client.
    pub fn add_client_bytes_received(&self, bytes: u64) {
        self.client_bytes_received.inc_by(bytes);
    }

    /// Adds a batch of bytes written to a client.
    pub fn add_client_bytes_sent(&self, bytes: u64) {
        self.client_bytes_sent.inc_by(bytes);
    }

    /// Resolves the handles for one pool; call once when the pool is created. Calling it
    /// again for the same pair returns handles to the same series.
    pub fn pool(&self, database: &str, user: &str) -> PoolMetrics {
        self.pool_vecs.resolve(database, user)
    }

    /// A session gained (`+1`) or lost (`-1`) a pin for `reason` (pins are rare: the label
    /// lookup per call is fine).
    pub fn pinned_session(&self, reason: &str, delta: i64) {
        self.pinned_sessions.with_label_values(&[reason]).add(delta);
    }

    /// Records whether `database`'s backend is reachable (the health checker's verdict).
    pub fn set_backend_up(&self, database: &str, up: bool) {
        self.backend_up
            .with_label_values(&[database])
            .set(i64::from(up));
    }

    /// A reload removed `database`: its `pgferry_backend_up` series goes away.
    pub fn forget_backend(&self, database: &str) {
        let _ = self.backend_up.remove_label_values(&[database]);
    }

    /// Installs the scrape-time pool state source. `Weak` because the pool registry itself
    /// holds `Arc<Metrics>`: a strong reference would form a cycle, and once the registry is
    /// dropped its pools must vanish from the output rather than be kept alive by metrics.
    pub fn set_pool_source(&self, source: Weak<dyn PoolStateSource>) {
        *lock(&self.pool_source) = Some(source);
    }

    /// Prometheus text exposition (format 0.0.4) of every metric, pool gauges read fresh.
    pub fn encode(&self) -> String {
        // Hold the source lock across refresh and gather so concurrent scrapes never see a
        // half-rebuilt set of pool series.
        let source = lock(&self.pool_source);
        self.pool_gauges
            .refresh(source.as_ref().and_then(Weak::upgrade));
        let families = self.registry.gather();
        drop(source);
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// Locks ignoring poisoning: the guarded data stays valid even if a holder panicked.
fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Index of the SQLSTATE's class in [`ERROR_CLASSES`]; `None` if unknown or malformed.
fn error_class_index(sqlstate: &str) -> Option<usize> {
    let class = sqlstate.as_bytes().get(..2)?.to_ascii_uppercase();
    ERROR_CLASSES
        .binary_search_by(|c| c.as_bytes().cmp(&class))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value of the sample line `series` (name plus rendered labels) in `text`, if present.
    pub(super) fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    #[test]
    fn client_counters_appear_with_their_values() {
        let m = Metrics::new();
        m.client_accepted();
        m.client_accepted();
        m.client_rejected(RejectReason::LoginTimeout);
        m.client_rejected(RejectReason::MaxUserClients);
        m.login(LoginResult::UnknownDatabase);
        m.tls_handshake(TlsKind::Direct, false);
        m.tls_handshake(TlsKind::SslRequest, true);
        m.add_client_bytes_received(100);
        m.add_client_bytes_received(23);
        m.add_client_bytes_sent(7);
        let t = m.encode();
        let expected = [
            ("pgferry_client_connections_total", 2.0),
            (
                "pgferry_client_connections_rejected_total{reason=\"login_timeout\"}",
                1.0,
            ),
            (
                "pgferry_client_connections_rejected_total{reason=\"max_clients\"}",
                0.0,
            ),
            (
                "pgferry_client_logins_total{result=\"unknown_database\"}",
                1.0,
            ),
            ("pgferry_client_logins_total{result=\"ok\"}", 0.0),
            (
                "pgferry_tls_handshakes_total{kind=\"direct\",result=\"error\"}",
                1.0,
            ),
            (
                "pgferry_tls_handshakes_total{kind=\"direct\",result=\"ok\"}",
                0.0,
            ),
            (
                "pgferry_tls_handshakes_total{kind=\"sslrequest\",result=\"ok\"}",
                1.0,
            ),
            ("pgferry_client_bytes_received_total", 123.0),
            ("pgferry_client_bytes_sent_total", 7.0),
            (
                "pgferry_client_connections_rejected_total{reason=\"max_user_clients\"}",
                1.0,
            ),
            (
                concat!(
                    "pgferry_build_info{version=\"",
                    env!("CARGO_PKG_VERSION"),
                    "\"}"
                ),
                1.0,
            ),
        ];
        for (series, value) in expected {
            assert_eq!(sample(&t, series), Some(value), "{series}");
        }
    }

    #[test]
    fn client_state_guard_moves_and_releases_its_count() {
        let m = Metrics::new();
        let state = |st: &str| {
            let series = format!("pgferry_client_connections{{state=\"{st}\"}}");
            sample(&m.encode(), &series)
        };
        let mut a = m.client_session(ClientState::Idle);
        let _b = m.client_session(ClientState::Idle);
        a.set(ClientState::Waiting);
        a.set(ClientState::Active);
        a.set(ClientState::Active);
        assert_eq!(a.state(), ClientState::Active);
        assert_eq!(state("idle"), Some(1.0));
        assert_eq!(state("active"), Some(1.0));
        assert_eq!(state("waiting"), Some(0.0));
        drop(a);
        assert_eq!(state("active"), Some(0.0));
        assert_eq!(state("idle"), Some(1.0));
    }

    #[test]
    fn error_classes_bucket_by_first_two_chars() {
        assert_eq!(
            error_class_index("28P01").map(|i| ERROR_CLASSES[i]),
            Some("28")
        );
        assert_eq!(
            error_class_index("0a000").map(|i| ERROR_CLASSES[i]),
            Some("0A")
        );
        assert_eq!(
            error_class_index("XX000").map(|i| ERROR_CLASSES[i]),
            Some("XX")
        );
        for bad in ["", "5", "ZZ999", "é9", "99"] {
            assert_eq!(error_class_index(bad), None, "{bad:?}");
        }
        let m = Metrics::new();
        for code in ["53300", "53300", "57P01", "ZZ001", "", "\u{fffd}"] {
            m.count_error(code);
        }
        let t = m.encode();
        let class = |c: &str| sample(&t, &format!("pgferry_errors_total{{class=\"{c}\"}}"));
        assert_eq!(class("53"), Some(2.0));
        assert_eq!(class("57"), Some(1.0));
        assert_eq!(class("other"), Some(3.0));
        assert_eq!(class("42"), Some(0.0));
    }

    #[test]
    fn error_class_table_is_sorted_for_binary_search() {
        assert!(ERROR_CLASSES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn backend_up_tracks_the_last_verdict() {
        let m = Metrics::new();
        m.set_backend_up("app", true);
        m.set_backend_up("app", false);
        m.set_backend_up("other", true);
        let t = m.encode();
        assert_eq!(
            sample(&t, "pgferry_backend_up{database=\"app\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&t, "pgferry_backend_up{database=\"other\"}"),
            Some(1.0)
        );
    }

    #[test]
    fn every_family_is_prefixed_and_process_metrics_are_present() {
        let t = Metrics::new().encode();
        for line in t.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.trim_start_matches("# TYPE ");
            assert!(
                name.starts_with("pgferry_") || name.starts_with("process_"),
                "{line}"
            );
        }
        #[cfg(target_os = "linux")]
        assert!(t.contains("process_resident_memory_bytes"));
    }
}
