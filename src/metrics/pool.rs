//! Per-pool metrics: handles resolved once per (database, user) pool for the hot path, and
//! the scrape-time gauges fed by a [`PoolStateSource`] (reading the pool state takes the pool
//! mutex, so it is read only when Prometheus scrapes).

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use super::def::*;
use super::{counter_vec, gauge_vec, histogram_vec, reg, POOL, POOL_REASON};

/// Pool checkout wait buckets: 50µs (warm idle connection) up to 10s (exhausted pool).
const WAIT_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
/// Transaction / query duration buckets: 100µs up to one minute.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// One pool's state as read at scrape time; produced by the pool registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolState {
    /// Database name the pool serves (as clients name it).
    pub database: String,
    /// User the pool logs in as.
    pub user: String,
    /// Configured maximum number of server connections.
    pub max_size: u32,
    /// Server connections currently open or being opened (idle + in use + connecting).
    pub connections: u32,
    /// Server connections being opened (TCP, TLS, login): state `opening`, not yet usable,
    /// so not `active`.
    pub connecting: u32,
    /// Open server connections sitting idle in the pool.
    pub idle: u32,
    /// Clients queued waiting for a connection.
    pub waiting: u32,
    /// Server connections held by pinned (session-mode) clients.
    pub pinned: u32,
    /// PAUSE or KILL holds the pool's new checkouts (admin console).
    pub paused: bool,
    /// How long the longest-waiting client has waited (zero if none).
    pub oldest_wait: Duration,
}

/// Something that can list pool states when Prometheus scrapes (the pool registry).
/// Implementations may take locks; they are called once per scrape, never on the hot path.
pub trait PoolStateSource: Send + Sync {
    /// Current state of every live pool.
    fn pool_states(&self) -> Vec<PoolState>;
}

/// Pre-resolved metric handles for one (database, user) pool. Cheap to clone (one `Arc`);
/// every method is a few atomic operations, except the rare-event `discarded` / `pinned`,
/// which resolve their `reason` label per call.
#[derive(Clone)]
pub struct PoolMetrics(Arc<PoolHandles>);

struct PoolHandles {
    labels: [String; 2],
    checkout_wait: Histogram,
    transactions: IntCounter,
    transaction_duration: Histogram,
    queries: IntCounter,
    query_duration: Histogram,
    checkout_timeouts: IntCounter,
    connect_errors: IntCounter,
    /// `pgferry_server_connects_total{result="ok"}`, then `"error"`.
    connects: [IntCounter; 2],
    discarded: IntCounterVec,
    pins: IntCounterVec,
}

impl PoolMetrics {
    /// A backend connection was opened and logged in.
    pub fn server_connected(&self) {
        self.0.connects[0].inc();
    }

    /// Time a client waited for a server connection (successful checkouts).
    pub fn observe_checkout_wait(&self, wait: Duration) {
        self.0.checkout_wait.observe(wait.as_secs_f64());
    }

    /// A transaction ended (checkin after ReadyForQuery `I`); `duration` is checkout to checkin.
    pub fn transaction_finished(&self, duration: Duration) {
        self.0.transactions.inc();
        self.0.transaction_duration.observe(duration.as_secs_f64());
    }

    /// A request/response round ended with ReadyForQuery.
    pub fn query_finished(&self, duration: Duration) {
        self.0.queries.inc();
        self.0.query_duration.observe(duration.as_secs_f64());
    }

    /// A client gave up waiting for a server connection (pool exhausted past the timeout).
    pub fn checkout_timeout(&self) {
        self.0.checkout_timeouts.inc();
    }

    /// Opening or logging in a backend connection failed.
    pub fn server_connect_error(&self) {
        self.0.connect_errors.inc();
        self.0.connects[1].inc();
    }

    /// A server connection was closed instead of returned to the pool (e.g. `"broken"`,
    /// `"rollback_timeout"`, `"idle_timeout"`). Keep reasons to a small fixed set.
    pub fn discarded(&self, reason: &'static str) {
        self.with_reason(&self.0.discarded, reason).inc();
    }

    /// A client was pinned to its backend (e.g. `"advisory_lock"`, `"listen"`, `"temp_table"`).
    pub fn pinned(&self, reason: &'static str) {
        self.with_reason(&self.0.pins, reason).inc();
    }

    /// The pool's running totals, for the admin console's SHOW STATS (rare path: reads the
    /// counters and histogram sums the hot path already maintains).
    pub fn totals(&self) -> PoolTotals {
        let h = &self.0;
        PoolTotals {
            checkouts: h.checkout_wait.get_sample_count(),
            transactions: h.transactions.get(),
            queries: h.queries.get(),
            transaction_time: seconds(h.transaction_duration.get_sample_sum()),
            query_time: seconds(h.query_duration.get_sample_sum()),
            wait_time: seconds(h.checkout_wait.get_sample_sum()),
        }
    }

    fn with_reason(&self, vec: &IntCounterVec, reason: &str) -> IntCounter {
        let [db, user] = &self.0.labels;
        vec.with_label_values(&[db.as_str(), user.as_str(), reason])
    }
}

/// Running totals of one pool since it was created (see [`PoolMetrics::totals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PoolTotals {
    /// Successful checkouts (PgBouncer's server_assignment_count).
    pub checkouts: u64,
    pub transactions: u64,
    pub queries: u64,
    pub transaction_time: Duration,
    pub query_time: Duration,
    /// Time clients spent waiting for a checkout.
    pub wait_time: Duration,
}

fn seconds(sum: f64) -> Duration {
    Duration::try_from_secs_f64(sum).unwrap_or_default()
}

/// Labelled pool families; kept so [`Metrics::pool`] can resolve new label sets.
pub(super) struct PoolVecs {
    checkout_wait: HistogramVec,
    transactions: IntCounterVec,
    transaction_duration: HistogramVec,
    queries: IntCounterVec,
    query_duration: HistogramVec,
    checkout_timeouts: IntCounterVec,
    connect_errors: IntCounterVec,
    connects: IntCounterVec,
    discarded: IntCounterVec,
    pins: IntCounterVec,
}

impl PoolVecs {
    pub(super) fn new(r: &Registry) -> PoolVecs {
        PoolVecs {
            checkout_wait: histogram_vec(r, WAIT, WAIT_BUCKETS),
            transactions: counter_vec(r, TXNS, POOL),
            transaction_duration: histogram_vec(r, TXN_TIME, DURATION_BUCKETS),
            queries: counter_vec(r, QUERIES, POOL),
            query_duration: histogram_vec(r, QUERY_TIME, DURATION_BUCKETS),
            checkout_timeouts: counter_vec(r, TIMEOUTS, POOL),
            connect_errors: counter_vec(r, CONNECT_ERRS, POOL),
            connects: counter_vec(r, CONNECTS, &["database", "user", "result"]),
            discarded: counter_vec(r, DISCARDED, POOL_REASON),
            pins: counter_vec(r, PINS, POOL_REASON),
        }
    }

    pub(super) fn resolve(&self, database: &str, user: &str) -> PoolMetrics {
        let l = [database, user];
        PoolMetrics(Arc::new(PoolHandles {
            labels: l.map(str::to_owned),
            checkout_wait: self.checkout_wait.with_label_values(&l),
            transactions: self.transactions.with_label_values(&l),
            transaction_duration: self.transaction_duration.with_label_values(&l),
            queries: self.queries.with_label_values(&l),
            query_duration: self.query_duration.with_label_values(&l),
            checkout_timeouts: self.checkout_timeouts.with_label_values(&l),
            connect_errors: self.connect_errors.with_label_values(&l),
            connects: ["ok", "error"]
                .map(|result| self.connects.with_label_values(&[database, user, result])),
            discarded: self.discarded.clone(),
            pins: self.pins.clone(),
        }))
    }
}

/// Scrape-time pool gauges, rebuilt from the [`PoolStateSource`] on every encode.
pub(super) struct PoolGauges {
    max: IntGaugeVec,
    servers: IntGaugeVec,
    waiting: IntGaugeVec,
    pinned: IntGaugeVec,
    /// Per database: 1 when any of its pools is held.
    paused: IntGaugeVec,
    oldest_wait: GaugeVec,
}

impl PoolGauges {
    pub(super) fn new(r: &Registry) -> PoolGauges {
        PoolGauges {
            max: gauge_vec(r, POOL_MAX, POOL),
            servers: gauge_vec(r, SERVERS, &["database", "user", "state"]),
            waiting: gauge_vec(r, WAITING, POOL),
            pinned: gauge_vec(r, PINNED, POOL),
            paused: gauge_vec(r, PAUSED, &["database"]),
            oldest_wait: reg(
                r,
                GaugeVec::new(Opts::new(OLDEST_WAIT.0, OLDEST_WAIT.1), POOL),
            ),
        }
    }

    /// Replaces every pool series with the source's current view (nothing if the source is
    /// gone), so pools that disappeared leave no stale series.
    pub(super) fn refresh(&self, source: Option<Arc<dyn PoolStateSource>>) {
        for vec in [
            &self.max,
            &self.servers,
            &self.waiting,
            &self.pinned,
            &self.paused,
        ] {
            vec.reset();
        }
        self.oldest_wait.reset();
        for p in source.map(|s| s.pool_states()).unwrap_or_default() {
            let (db, user) = (p.database.as_str(), p.user.as_str());
            let active = p.connections.saturating_sub(p.idle + p.connecting);
            self.max
                .with_label_values(&[db, user])
                .set(p.max_size.into());
            self.waiting
                .with_label_values(&[db, user])
                .set(p.waiting.into());
            self.pinned
                .with_label_values(&[db, user])
                .set(p.pinned.into());
            let paused = self.paused.with_label_values(&[db]);
            paused.set(paused.get().max(i64::from(p.paused)));
            self.oldest_wait
                .with_label_values(&[db, user])
                .set(p.oldest_wait.as_secs_f64());
            self.servers
                .with_label_values(&[db, user, "idle"])
                .set(p.idle.into());
            self.servers
                .with_label_values(&[db, user, "active"])
                .set(active.into());
            self.servers
                .with_label_values(&[db, user, "opening"])
                .set(p.connecting.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, Weak};

    use super::*;
    use crate::metrics::tests::sample;
    use crate::metrics::Metrics;

    struct FakePools(Mutex<Vec<PoolState>>);

    impl PoolStateSource for FakePools {
        fn pool_states(&self) -> Vec<PoolState> {
            self.0.lock().map(|v| v.clone()).unwrap_or_default()
        }
    }

    fn state(database: &str, connections: u32, idle: u32) -> PoolState {
        PoolState {
            database: database.into(),
            user: "app".into(),
            max_size: 20,
            connections,
            connecting: 1,
            idle,
            waiting: 3,
            pinned: 1,
            paused: false,
            oldest_wait: Duration::from_millis(1500),
        }
    }

    #[test]
    fn pool_handles_count_into_labelled_series() {
        let m = Metrics::new();
        let p = m.pool("shop", "app");
        let again = m.pool("shop", "app");
        p.transaction_finished(Duration::from_millis(3));
        again.transaction_finished(Duration::from_millis(40));
        p.query_finished(Duration::from_micros(500));
        p.observe_checkout_wait(Duration::from_micros(60));
        p.checkout_timeout();
        p.server_connect_error();
        p.discarded("broken");
        p.discarded("broken");
        p.pinned("listen");
        let t = m.encode();
        let expected = [
            ("pgferry_transactions_total{POOL}", 2.0),
            ("pgferry_transaction_duration_seconds_count{POOL}", 2.0),
            (
                "pgferry_transaction_duration_seconds_bucket{POOL,le=\"0.005\"}",
                1.0,
            ),
            ("pgferry_queries_total{POOL}", 1.0),
            (
                "pgferry_pool_checkout_wait_seconds_bucket{POOL,le=\"0.00005\"}",
                0.0,
            ),
            (
                "pgferry_pool_checkout_wait_seconds_bucket{POOL,le=\"0.0001\"}",
                1.0,
            ),
            ("pgferry_pool_checkout_timeouts_total{POOL}", 1.0),
            ("pgferry_server_connect_errors_total{POOL}", 1.0),
            (
                "pgferry_server_connects_total{database=\"shop\",result=\"error\",USER}",
                1.0,
            ),
            (
                "pgferry_server_connects_total{database=\"shop\",result=\"ok\",USER}",
                0.0,
            ),
            (
                "pgferry_server_connections_discarded_total{REASON=\"broken\",USER}",
                2.0,
            ),
            ("pgferry_client_pins_total{REASON=\"listen\",USER}", 1.0),
        ];
        for (pattern, value) in expected {
            let series = pattern
                .replace("POOL", "database=\"shop\",user=\"app\"")
                .replace("REASON=", "database=\"shop\",reason=")
                .replace("USER", "user=\"app\"");
            assert_eq!(sample(&t, &series), Some(value), "{series}");
        }
    }

    #[test]
    fn pool_source_series_follow_the_live_pools() {
        let m = Metrics::new();
        let pools = Arc::new(FakePools(Mutex::new(vec![
            state("a", 5, 2),
            state("b", 1, 1),
        ])));
        let dyn_pools: Arc<dyn PoolStateSource> = pools.clone();
        m.set_pool_source(Arc::downgrade(&dyn_pools));
        let t = m.encode();
        let servers = |t: &str, db: &str, st: &str| {
            let l = format!("{{database=\"{db}\",state=\"{st}\",user=\"app\"}}");
            sample(t, &format!("pgferry_server_connections{l}"))
        };
        assert_eq!(servers(&t, "a", "active"), Some(2.0));
        assert_eq!(servers(&t, "a", "idle"), Some(2.0));
        assert_eq!(servers(&t, "a", "opening"), Some(1.0));
        assert_eq!(servers(&t, "b", "active"), Some(0.0));
        let pool = |name: &str| format!("{name}{{database=\"a\",user=\"app\"}}");
        assert_eq!(
            sample(&t, &pool("pgferry_pool_max_connections")),
            Some(20.0)
        );
        assert_eq!(sample(&t, &pool("pgferry_pool_waiting_clients")), Some(3.0));
        assert_eq!(
            sample(&t, &pool("pgferry_pool_oldest_wait_seconds")),
            Some(1.5)
        );
        assert_eq!(
            sample(&t, &pool("pgferry_pool_pinned_connections")),
            Some(1.0)
        );

        pools
            .0
            .lock()
            .map(|mut v| v.retain(|p| p.database == "a"))
            .ok();
        let t = m.encode();
        assert_eq!(servers(&t, "a", "idle"), Some(2.0));
        assert!(!t.contains("database=\"b\""), "stale pool series:\n{t}");

        drop((pools, dyn_pools));
        let t = m.encode();
        assert!(
            !t.contains("pgferry_server_connections{"),
            "source gone:\n{t}"
        );
        assert!(!t.contains("pgferry_pool_max_connections{"));
    }

    #[test]
    fn no_source_installed_means_no_pool_series() {
        let m = Metrics::new();
        m.set_pool_source(Weak::<FakePools>::new());
        assert!(!m.encode().contains("pgferry_pool_waiting_clients"));
    }
}
