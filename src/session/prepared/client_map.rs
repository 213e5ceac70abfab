//! One client's protocol-level statement names, mapped to shared cache entries.
//!
//! This is the client's view of "what is prepared", independent of which backend it is on: it
//! survives checkouts, so a statement prepared in one transaction can be bound in the next one
//! on another backend. Holding the `Arc` keeps the cache entry alive (see the cache's eviction
//! rule). The unnamed statement is never stored here.

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;

use super::cache::{CachedStatement, StatementId};

/// Why a name could not be registered; the relay answers with the matching ErrorResponse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RegisterError {
    /// The name is live: PostgreSQL answers 42P05 (`prepared statement "x" already exists`).
    #[error("prepared statement already exists")]
    Duplicate,
    /// The client reached its configured limit: answered with 53400.
    #[error("too many prepared statements (limit {limit})")]
    TooMany { limit: usize },
}

/// What one client name refers to.
#[derive(Debug, Clone)]
pub struct Named {
    pub statement: Arc<CachedStatement>,
    /// The statement's generation when the client parsed this name: a backend copy older than
    /// this may carry a plan from before a schema change and is prepared again before use.
    pub generation: u64,
}

/// A client's statement names.
#[derive(Debug)]
pub struct ClientStatements {
    names: HashMap<Box<[u8]>, Named>,
    max: usize,
    /// The client's last unnamed Parse was `DEALLOCATE ALL` / `DISCARD ALL` (the unnamed
    /// statement is never cached, so its Bind learns this here).
    unnamed_resets: bool,
}

impl ClientStatements {
    /// An empty map allowing at most `max` live names.
    pub fn new(max: usize) -> Self {
        ClientStatements {
            names: HashMap::new(),
            max,
            unnamed_resets: false,
        }
    }

    /// Binds a new name; a live name cannot be rebound without a Close first (as in PostgreSQL).
    pub fn register(&mut self, name: &[u8], named: Named) -> Result<(), RegisterError> {
        if self.names.contains_key(name) {
            return Err(RegisterError::Duplicate);
        }
        if self.names.len() >= self.max {
            return Err(RegisterError::TooMany { limit: self.max });
        }
        self.names.insert(name.into(), named);
        Ok(())
    }

    /// The statement a name refers to.
    pub fn get(&self, name: &[u8]) -> Option<&Named> {
        self.names.get(name)
    }

    /// Forgets a name, returning what it referred to. A missing name is not an error (Close of
    /// an unknown statement succeeds in PostgreSQL).
    pub fn close(&mut self, name: &[u8]) -> Option<Named> {
        self.names.remove(name)
    }

    /// Forgets a name only if it still refers to `statement` (used to undo a registration
    /// without disturbing a later re-registration).
    pub fn close_if(&mut self, name: &[u8], statement: &Arc<CachedStatement>) {
        if self
            .names
            .get(name)
            .is_some_and(|n| Arc::ptr_eq(&n.statement, statement))
        {
            self.names.remove(name);
        }
    }

    /// Forgets every name and hands them over, so that they can be [`Self::restore`]d if the
    /// statement that dropped them fails.
    pub fn take_all(&mut self) -> Vec<(Box<[u8]>, Named)> {
        self.names.drain().collect()
    }

    /// Brings back names taken by [`Self::take_all`]; a name registered again since keeps its
    /// newer meaning.
    pub fn restore(&mut self, names: Vec<(Box<[u8]>, Named)>) {
        for (name, named) in names {
            self.names.entry(name).or_insert(named);
        }
    }

    /// The client's name for server statement `id`, to put in error texts instead of
    /// `pgf_<n>` (error path only: a linear search). With several names for one statement the
    /// smallest is taken, so the choice is stable.
    pub fn name_of(&self, id: StatementId) -> Option<&[u8]> {
        self.names
            .iter()
            .filter(|(_, n)| n.statement.id == id)
            .map(|(name, _)| &**name)
            .min()
    }

    /// The cache entry of server statement `id`, if one of the client's names refers to it
    /// (error path only: a linear search).
    pub fn statement_by_id(&self, id: StatementId) -> Option<&Arc<CachedStatement>> {
        self.names
            .values()
            .map(|n| &n.statement)
            .find(|s| s.id == id)
    }

    /// Records what the client's latest unnamed Parse was.
    pub fn set_unnamed_resets(&mut self, resets: bool) {
        self.unnamed_resets = resets;
    }

    /// Whether the unnamed statement is `DEALLOCATE ALL` / `DISCARD ALL`.
    pub fn unnamed_resets(&self) -> bool {
        self.unnamed_resets
    }

    /// Number of live names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// No live names.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::cache::StatementCache;
    use super::*;

    fn named(cache: &StatementCache, query: &str) -> Named {
        let statement = cache.get_or_insert(query.as_bytes(), &[], false).unwrap();
        Named {
            statement,
            generation: 0,
        }
    }

    #[test]
    fn live_name_cannot_be_registered_twice_until_closed() {
        let cache = StatementCache::new(10);
        let s = named(&cache, "SELECT 1");
        let mut map = ClientStatements::new(10);
        map.register(b"a", s.clone()).unwrap();
        assert_eq!(map.register(b"a", s.clone()), Err(RegisterError::Duplicate));
        assert!(Arc::ptr_eq(&map.get(b"a").unwrap().statement, &s.statement));
        assert!(map.close(b"a").is_some());
        assert!(map.close(b"a").is_none());
        map.register(b"a", s).unwrap();
    }

    #[test]
    fn limit_and_clear() {
        let cache = StatementCache::new(10);
        let s = named(&cache, "SELECT 1");
        let mut map = ClientStatements::new(2);
        map.register(b"a", s.clone()).unwrap();
        map.register(b"b", s.clone()).unwrap();
        assert_eq!(
            map.register(b"c", s.clone()),
            Err(RegisterError::TooMany { limit: 2 })
        );
        map.take_all();
        assert!(map.is_empty());
        map.register(b"c", s).unwrap();
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn close_if_only_removes_the_same_statement() {
        let cache = StatementCache::new(10);
        let one = named(&cache, "SELECT 1");
        let two = named(&cache, "SELECT 2");
        let mut map = ClientStatements::new(10);
        map.register(b"a", two.clone()).unwrap();
        map.close_if(b"a", &one.statement);
        assert!(map.get(b"a").is_some());
        map.close_if(b"a", &two.statement);
        assert!(map.get(b"a").is_none());
    }

    #[test]
    fn restore_brings_back_taken_names_but_keeps_newer_ones() {
        let cache = StatementCache::new(10);
        let (one, two) = (named(&cache, "SELECT 1"), named(&cache, "SELECT 2"));
        let mut map = ClientStatements::new(10);
        map.register(b"a", one.clone()).unwrap();
        map.register(b"b", one.clone()).unwrap();
        let taken = map.take_all();
        assert!(map.is_empty());
        map.register(b"a", two.clone()).unwrap();
        map.restore(taken);
        assert_eq!(map.len(), 2);
        assert!(Arc::ptr_eq(
            &map.get(b"a").unwrap().statement,
            &two.statement
        ));
        assert!(Arc::ptr_eq(
            &map.get(b"b").unwrap().statement,
            &one.statement
        ));
    }

    #[test]
    fn name_of_a_server_statement_is_stable() {
        let cache = StatementCache::new(10);
        let one = named(&cache, "SELECT 1");
        let mut map = ClientStatements::new(10);
        map.register(b"zeta", one.clone()).unwrap();
        map.register(b"alpha", one.clone()).unwrap();
        assert_eq!(map.name_of(one.statement.id), Some(&b"alpha"[..]));
        assert_eq!(map.name_of(StatementId(u64::MAX)), None);
        assert!(map.statement_by_id(one.statement.id).is_some());
    }
}
