//! The process-wide statement cache: one server-side name per distinct (query text, parameter
//! type OIDs), shared by every client and every backend connection.
//!
//! Sharing the name is what lets a Parse from one client be answered locally on a backend that
//! another client already prepared the statement on. Entries are handed out as
//! `Arc<CachedStatement>`; the client name maps hold those Arcs, so an entry's strong count tells
//! whether any client still uses it. When the cache grows past its limit, entries only the cache
//! holds are dropped; entries in use are never dropped, so the cache can exceed its limit by at
//! most what clients hold (itself bounded by clients × per-client limit).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

pub use crate::server::StatementId;

use super::messages::{build_close_statement, build_parse, MsgError};

/// Source of server-side statement numbers, unique for the life of the process (across pools,
/// so a backend connection can never see two meanings of one name).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One distinct statement as the servers know it.
#[derive(Debug)]
pub struct CachedStatement {
    pub id: StatementId,
    /// `pgf_<n>`, the name used on every backend connection.
    pub server_name: Box<[u8]>,
    pub query: Box<[u8]>,
    pub oids: Box<[u32]>,
    /// The Parse frame that prepares this statement on a server, built once and reused for
    /// every backend it is sent to.
    pub parse_frame_for_server: Bytes,
    /// The Close frame of that server statement (sent before every client Parse of a text
    /// already prepared on the backend), built once too.
    pub close_frame_for_server: Bytes,
    /// One clone per backend connection that prepared it (see `ServerPrepared::hold`):
    /// `strong_count - 1` is that number, for SHOW PREPARED.
    pub copies: Arc<()>,
    /// The text is `DEALLOCATE ALL` or `DISCARD ALL`: executing it drops every prepared
    /// statement of the session (see `planner::reset_statements`).
    pub resets_statements: bool,
    /// Bumped each time a backend refused the statement with `0A000 cached plan must not
    /// change result type` (a schema change): a client name parsed at a newer generation than
    /// a backend's copy gets that copy prepared again. See `ServerPrepared`.
    generation: AtomicU64,
}

impl CachedStatement {
    fn new(query: &[u8], oids: &[u32], resets_statements: bool) -> Result<Self, MsgError> {
        let id = StatementId(NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let server_name = id.to_string().into_bytes().into_boxed_slice();
        let parse_frame_for_server = build_parse(&server_name, query, oids)?;
        let close_frame_for_server = build_close_statement(&server_name)?;
        Ok(CachedStatement {
            id,
            server_name,
            query: query.into(),
            oids: oids.into(),
            parse_frame_for_server,
            close_frame_for_server,
            copies: Arc::new(()),
            resets_statements,
            generation: AtomicU64::new(0),
        })
    }

    /// How many backend connections hold this statement now.
    pub fn backends(&self) -> usize {
        Arc::strong_count(&self.copies).saturating_sub(1)
    }

    /// The current generation (see the field's doc).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// A backend refused this statement's plan (0A000): every copy prepared so far may be
    /// stale. Rare path (an error).
    pub fn schema_changed(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    fn matches(&self, query: &[u8], oids: &[u32]) -> bool {
        *self.query == *query && *self.oids == *oids
    }
}

struct Inner {
    /// Buckets by hash of (query, oids), compared exactly inside, so a lookup needs no owned key.
    buckets: HashMap<u64, Vec<Arc<CachedStatement>>>,
    len: usize,
    /// Size at which the next sweep of unused entries runs.
    sweep_at: usize,
}

/// The shared cache. Critical sections are a hash lookup or one insertion; the occasional sweep
/// of unused entries is amortized (it runs again only after the cache grows by another
/// eighth of its limit).
pub struct StatementCache {
    inner: Mutex<Inner>,
    hasher: RandomState,
    /// `pooling.max_cached_statements`; a reload may change it.
    max_entries: AtomicUsize,
}

impl StatementCache {
    /// A cache that starts dropping unused entries beyond `max_entries`.
    pub fn new(max_entries: usize) -> Self {
        StatementCache {
            inner: Mutex::new(Inner {
                buckets: HashMap::new(),
                len: 0,
                sweep_at: max_entries.max(1),
            }),
            hasher: RandomState::new(),
            max_entries: AtomicUsize::new(max_entries.max(1)),
        }
    }

    /// A reload changed `pooling.max_cached_statements`: the next insertion sweeps to it.
    pub fn set_max_entries(&self, max_entries: usize) {
        let max_entries = max_entries.max(1);
        self.max_entries.store(max_entries, Ordering::Relaxed);
        self.lock().sweep_at = max_entries;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated in a harmful way.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn hash(&self, query: &[u8], oids: &[u32]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        query.hash(&mut hasher);
        oids.hash(&mut hasher);
        hasher.finish()
    }

    /// The entry for exactly this query text and parameter types, created on first use.
    /// `resets_statements` (what the lexical scan says of the text, hence the same for every
    /// caller) is recorded when the entry is created.
    pub fn get_or_insert(
        &self,
        query: &[u8],
        oids: &[u32],
        resets_statements: bool,
    ) -> Result<Arc<CachedStatement>, MsgError> {
        let hash = self.hash(query, oids);
        let mut inner = self.lock();
        let found = inner
            .buckets
            .get(&hash)
            .and_then(|bucket| bucket.iter().find(|s| s.matches(query, oids)));
        if let Some(statement) = found {
            return Ok(Arc::clone(statement));
        }
        let statement = Arc::new(CachedStatement::new(query, oids, resets_statements)?);
        inner.maybe_sweep(self.max_entries.load(Ordering::Relaxed));
        inner
            .buckets
            .entry(hash)
            .or_default()
            .push(Arc::clone(&statement));
        inner.len += 1;
        Ok(statement)
    }

    /// Every cached statement, ordered by id, for the admin console's SHOW PREPARED (rare
    /// path: one lock, a copy of the Arcs).
    pub fn entries(&self) -> Vec<Arc<CachedStatement>> {
        let mut entries: Vec<_> = self.lock().buckets.values().flatten().cloned().collect();
        entries.sort_by_key(|s| s.id);
        entries
    }

    /// Number of entries currently cached.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// The cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Drops entries no client holds once the cache reached its sweep size. Strong count 1 means
    /// only this map holds the Arc; new holders can only appear through this locked map.
    fn maybe_sweep(&mut self, max_entries: usize) {
        if self.len < self.sweep_at {
            return;
        }
        self.buckets.retain(|_, bucket| {
            bucket.retain(|s| Arc::strong_count(s) > 1);
            !bucket.is_empty()
        });
        self.len = self.buckets.values().map(Vec::len).sum();
        self.sweep_at = max_entries.max(self.len + max_entries / 8 + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_and_types_share_one_server_name() {
        let cache = StatementCache::new(10);
        let a = cache.get_or_insert(b"SELECT $1", &[23], false).unwrap();
        let b = cache.get_or_insert(b"SELECT $1", &[23], false).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.server_name, format!("pgf_{}", a.id.0).into_bytes().into());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn different_types_or_text_are_different_entries() {
        let cache = StatementCache::new(10);
        let int4 = cache.get_or_insert(b"SELECT $1", &[23], false).unwrap();
        let int8 = cache.get_or_insert(b"SELECT $1", &[20], false).unwrap();
        let other = cache.get_or_insert(b"SELECT $1 ", &[23], false).unwrap();
        assert_ne!(int4.id, int8.id);
        assert_ne!(int4.id, other.id);
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn parse_frame_for_server_uses_the_server_name() {
        let cache = StatementCache::new(10);
        let s = cache.get_or_insert(b"SELECT 1", &[], false).unwrap();
        let expected = build_parse(&s.server_name, b"SELECT 1", &[]).unwrap();
        assert_eq!(s.parse_frame_for_server, expected);
    }

    #[test]
    fn concurrent_sessions_get_the_same_entry() {
        let cache = StatementCache::new(10);
        let ids: Vec<StatementId> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        cache
                            .get_or_insert(b"SELECT now()", &[], false)
                            .map(|s| s.id)
                    })
                })
                .collect();
            workers
                .into_iter()
                .filter_map(|w| w.join().ok().and_then(Result::ok))
                .collect()
        });
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().all(|id| *id == ids[0]));
    }

    #[test]
    fn only_unused_entries_are_evicted() {
        let cache = StatementCache::new(2);
        let kept = cache.get_or_insert(b"kept", &[], false).unwrap();
        drop(cache.get_or_insert(b"unused", &[], false).unwrap());
        let third = cache.get_or_insert(b"third", &[], false).unwrap();
        assert_eq!(cache.len(), 2);
        assert!(Arc::ptr_eq(
            &kept,
            &cache.get_or_insert(b"kept", &[], false).unwrap()
        ));
        assert!(Arc::ptr_eq(
            &third,
            &cache.get_or_insert(b"third", &[], false).unwrap()
        ));
        let again = cache.get_or_insert(b"unused", &[], false).unwrap();
        assert_ne!(again.id, kept.id);
        assert_ne!(again.id, third.id);
    }

    #[test]
    fn entries_in_use_are_never_evicted() {
        let cache = StatementCache::new(1);
        let held: Vec<_> = (0..5)
            .map(|i| {
                cache
                    .get_or_insert(format!("q{i}").as_bytes(), &[], false)
                    .unwrap()
            })
            .collect();
        assert_eq!(cache.len(), 5);
        for (i, s) in held.iter().enumerate() {
            let again = cache
                .get_or_insert(format!("q{i}").as_bytes(), &[], false)
                .unwrap();
            assert!(Arc::ptr_eq(s, &again));
        }
    }
}
