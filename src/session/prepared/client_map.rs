//! One client's protocol-level statement names, mapped to shared cache entries.
//!
//! This is the client's view of "what is prepared", independent of which backend it is on: it
//! survives checkouts, so a statement prepared in one transaction can be bound in the next one
//! on another backend. Holding the `Arc` keeps the cache entry alive (see the cache's eviction
//! rule). The unnamed statement is never stored here.

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;

use super::cache::CachedStatement;

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

/// A client's statement names.
#[derive(Debug)]
pub struct ClientStatements {
    names: HashMap<Box<[u8]>, Arc<CachedStatement>>,
    max: usize,
}

impl ClientStatements {
    /// An empty map allowing at most `max` live names.
    pub fn new(max: usize) -> Self {
        ClientStatements {
            names: HashMap::new(),
            max,
        }
    }

    /// Binds a new name; a live name cannot be rebound without a Close first (as in PostgreSQL).
    pub fn register(
        &mut self,
        name: &[u8],
        statement: Arc<CachedStatement>,
    ) -> Result<(), RegisterError> {
        if self.names.contains_key(name) {
            return Err(RegisterError::Duplicate);
        }
        if self.names.len() >= self.max {
            return Err(RegisterError::TooMany { limit: self.max });
        }
        self.names.insert(name.into(), statement);
        Ok(())
    }

    /// The statement a name refers to.
    pub fn get(&self, name: &[u8]) -> Option<&Arc<CachedStatement>> {
        self.names.get(name)
    }

    /// Forgets a name, returning what it referred to. A missing name is not an error (Close of
    /// an unknown statement succeeds in PostgreSQL).
    pub fn close(&mut self, name: &[u8]) -> Option<Arc<CachedStatement>> {
        self.names.remove(name)
    }

    /// Forgets a name only if it still refers to `statement` (used to undo a registration
    /// without disturbing a later re-registration).
    pub fn close_if(&mut self, name: &[u8], statement: &Arc<CachedStatement>) {
        if self
            .names
            .get(name)
            .is_some_and(|s| Arc::ptr_eq(s, statement))
        {
            self.names.remove(name);
        }
    }

    /// Forgets every name: `DEALLOCATE ALL`, `DISCARD ALL`.
    pub fn clear(&mut self) {
        self.names.clear();
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

    #[test]
    fn live_name_cannot_be_registered_twice_until_closed() {
        let cache = StatementCache::new(10);
        let s = cache.get_or_insert(b"SELECT 1", &[]).unwrap();
        let mut map = ClientStatements::new(10);
        map.register(b"a", Arc::clone(&s)).unwrap();
        assert_eq!(
            map.register(b"a", Arc::clone(&s)),
            Err(RegisterError::Duplicate)
        );
        assert!(Arc::ptr_eq(map.get(b"a").unwrap(), &s));
        assert!(map.close(b"a").is_some());
        assert!(map.close(b"a").is_none());
        map.register(b"a", s).unwrap();
    }

    #[test]
    fn limit_and_clear() {
        let cache = StatementCache::new(10);
        let s = cache.get_or_insert(b"SELECT 1", &[]).unwrap();
        let mut map = ClientStatements::new(2);
        map.register(b"a", Arc::clone(&s)).unwrap();
        map.register(b"b", Arc::clone(&s)).unwrap();
        assert_eq!(
            map.register(b"c", Arc::clone(&s)),
            Err(RegisterError::TooMany { limit: 2 })
        );
        map.clear();
        assert!(map.is_empty());
        map.register(b"c", s).unwrap();
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn close_if_only_removes_the_same_statement() {
        let cache = StatementCache::new(10);
        let one = cache.get_or_insert(b"SELECT 1", &[]).unwrap();
        let two = cache.get_or_insert(b"SELECT 2", &[]).unwrap();
        let mut map = ClientStatements::new(10);
        map.register(b"a", Arc::clone(&two)).unwrap();
        map.close_if(b"a", &one);
        assert!(map.get(b"a").is_some());
        map.close_if(b"a", &two);
        assert!(map.get(b"a").is_none());
    }
}
