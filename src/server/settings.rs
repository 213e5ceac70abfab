//! A backend's record of its session settings, with a version that makes "nothing changed since
//! the last check" an integer comparison.
//!
//! Every transaction borrows a backend and must first bring its settings in line with the
//! client's (see `session::ClientParams`). Computing that difference means looking up every
//! session parameter in several maps, yet almost always nothing differs. [`VersionedMap`] gives
//! each content state a process-unique version, and [`Alignment`] remembers the versions a
//! backend was last found to match, so the full comparison only runs after something changed.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Source of versions; never reused, so equal versions mean equal contents.
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

/// A version no other state of any [`VersionedMap`] has had.
fn fresh_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

/// A name → value map whose every change gets a new process-unique version.
///
/// Reads go through `Deref` to the plain `HashMap` (so `.get`, `.iter` and `.clone()` work as
/// before); changes only through the methods below, each of which renews the version when the
/// contents actually change. Deliberately neither `Clone` nor `DerefMut`: a copy sharing a
/// version could later diverge under it, and a mutable borrow would change it silently.
#[derive(Debug)]
pub struct VersionedMap {
    map: HashMap<String, String>,
    version: u64,
}

impl VersionedMap {
    /// Identifies the current contents: it changes whenever they do, and no other map state
    /// (of this or any other map) ever has the same value.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Sets `name` to `value`, returning the previous value (like `HashMap::insert`).
    pub fn insert(&mut self, name: String, value: String) -> Option<String> {
        if self.map.get(&name) == Some(&value) {
            return Some(value);
        }
        self.version = fresh_version();
        self.map.insert(name, value)
    }

    /// Removes `name`, returning its value (like `HashMap::remove`).
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let removed = self.map.remove(name);
        if removed.is_some() {
            self.version = fresh_version();
        }
        removed
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        if !self.map.is_empty() {
            self.map.clear();
            self.version = fresh_version();
        }
    }
}

impl Default for VersionedMap {
    fn default() -> Self {
        HashMap::new().into()
    }
}

impl From<HashMap<String, String>> for VersionedMap {
    fn from(map: HashMap<String, String>) -> Self {
        VersionedMap {
            map,
            version: fresh_version(),
        }
    }
}

impl Deref for VersionedMap {
    type Target = HashMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

/// The state a backend was last verified to match: the client's settings (as an exact encoding,
/// see `session::ClientParams`) and the versions of the backend's two maps at that moment.
///
/// Clients are compared by the content of their settings, never by identity or address: any
/// client whose encoding is equal needs exactly the same statements, i.e. none. Only a check
/// that found nothing to do is recorded (not one that sent SQL, which may fail or change
/// reported parameters), so a matching stamp means a full comparison would again find nothing.
#[derive(Debug, Default)]
pub struct Alignment(Option<Stamp>);

#[derive(Debug)]
struct Stamp {
    settings: Arc<str>,
    params: u64,
    applied: u64,
}

impl Alignment {
    /// True if the backend was found in line with client settings `settings` and neither
    /// `params` nor `applied` changed since.
    pub fn holds(
        &self,
        settings: &Arc<str>,
        params: &VersionedMap,
        applied: &VersionedMap,
    ) -> bool {
        self.0.as_ref().is_some_and(|stamp| {
            stamp.params == params.version()
                && stamp.applied == applied.version()
                && (Arc::ptr_eq(&stamp.settings, settings) || stamp.settings == *settings)
        })
    }

    /// Records the outcome of a full comparison: `in_line` when it found nothing to do.
    pub fn record(
        &mut self,
        in_line: bool,
        settings: &Arc<str>,
        params: &VersionedMap,
        applied: &VersionedMap,
    ) {
        self.0 = in_line.then(|| Stamp {
            settings: Arc::clone(settings),
            params: params.version(),
            applied: applied.version(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> VersionedMap {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>()
            .into()
    }

    #[test]
    fn version_changes_only_with_the_contents() {
        let mut m = map(&[("TimeZone", "UTC")]);
        let v0 = m.version();
        assert_eq!(
            m.insert("TimeZone".into(), "UTC".into()),
            Some("UTC".into())
        );
        assert_eq!(m.remove("DateStyle"), None);
        assert_eq!(m.version(), v0, "no change, same version");
        m.insert("TimeZone".into(), "Asia/Tokyo".into());
        let v1 = m.version();
        assert_ne!(v1, v0);
        assert_eq!(m.get("TimeZone").map(String::as_str), Some("Asia/Tokyo"));
        m.remove("TimeZone");
        assert_ne!(m.version(), v1);
        let v2 = m.version();
        m.clear();
        assert_eq!(m.version(), v2, "already empty");
    }

    #[test]
    fn distinct_maps_never_share_a_version() {
        let a = VersionedMap::default();
        let b = VersionedMap::default();
        let mut c = map(&[("a", "1")]);
        c.clear();
        assert_ne!(a.version(), b.version());
        assert_ne!(a.version(), c.version());
    }

    #[test]
    fn alignment_holds_until_a_version_or_the_settings_change() {
        let mut params = map(&[("TimeZone", "UTC")]);
        let applied = VersionedMap::default();
        let settings: Arc<str> = Arc::from("+pgbench\0");
        let mut aligned = Alignment::default();
        assert!(!aligned.holds(&settings, &params, &applied));
        aligned.record(true, &settings, &params, &applied);
        assert!(aligned.holds(&settings, &params, &applied));
        assert!(
            aligned.holds(&Arc::from("+pgbench\0"), &params, &applied),
            "another client with the same settings"
        );
        assert!(!aligned.holds(&Arc::from("+psql\0"), &params, &applied));
        params.insert("TimeZone".into(), "Asia/Tokyo".into());
        assert!(!aligned.holds(&settings, &params, &applied));
        aligned.record(false, &settings, &params, &applied);
        assert!(
            !aligned.holds(&settings, &params, &applied),
            "SQL sent: not verified"
        );
    }
}
