//! One cheap pass over the raw SQL bytes that tells which trigger words occur anywhere in them
//! (ASCII case-insensitively, inside literals and comments too). Every statement the scanner
//! reports contains one of these words, so text without any of them is never lexed, and the
//! scanner skips the per-statement checks whose word is absent.
//!
//! The pass looks at every 3-byte window through three 256-entry tables (`MASKS[p][b]`: the
//! triggers whose byte `p` is `b`, either case); only a window that starts some trigger is
//! compared in full. That is exact: a trigger present at `i` always survives its window.

/// Substrings (lowercase, ASCII letters and `_` only, at least 3 bytes) that the scanner's
/// decisions depend on. `set_config` is implied by `set` for "anything at all?", but has its
/// own bit so that statements with `SET` (every `UPDATE`) skip the function-call pass.
const TRIGGERS: [&[u8]; 11] = [
    b"advisory",
    b"set_config",
    b"temp",
    b"listen",
    b"hold",
    b"prepare",
    b"load",
    b"set",
    b"discard",
    b"dealloc",
    b"close",
];

/// The set of trigger words present in a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Found(u16);

impl Found {
    /// Every trigger: disables all skipping (the full scan, for tests and comparisons).
    #[cfg(test)]
    pub const ALL: Found = Found((1 << TRIGGERS.len()) - 1);
    /// Function calls with an effect (`pg_*advisory*`, `set_config`) need one of these.
    pub const CALLS: Found = Found(0b11);
    /// `... INTO TEMP[ORARY] ...` needs this one.
    pub const TEMP: Found = Found(0b100);

    /// True if no trigger occurs: the text has no session effect at all.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True if any of `words` occurs.
    pub fn any_of(self, words: Found) -> bool {
        self.0 & words.0 != 0
    }
}

const fn masks_at(pos: usize) -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut k = 0;
    while k < TRIGGERS.len() {
        let b = TRIGGERS[k][pos];
        table[b as usize] |= 1 << k;
        table[b.to_ascii_uppercase() as usize] |= 1 << k;
        k += 1;
    }
    table
}

static MASKS: [[u16; 256]; 3] = [masks_at(0), masks_at(1), masks_at(2)];

/// Which trigger words occur in `sql`.
pub(super) fn find(sql: &[u8]) -> Found {
    let mut found = 0u16;
    for (i, window) in sql.windows(3).enumerate() {
        let &[a, b, c] = window else { continue };
        let [m0, m1, m2] = &MASKS;
        let candidates = m0[usize::from(a)] & m1[usize::from(b)] & m2[usize::from(c)] & !found;
        if candidates != 0 {
            found |= confirm(sql.get(i..).unwrap_or_default(), candidates);
        }
    }
    Found(found)
}

/// The `candidates` that `rest` really starts with.
fn confirm(rest: &[u8], candidates: u16) -> u16 {
    let starts = |t: &[u8]| {
        rest.get(..t.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(t))
    };
    (0..TRIGGERS.len())
        .zip(TRIGGERS)
        .filter(|&(k, t)| candidates & (1 << k) != 0 && starts(t))
        .fold(0, |acc, (k, _)| acc | (1 << k))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious definition: a case-insensitive substring search per trigger.
    fn naive(sql: &[u8]) -> Found {
        let present = |t: &[u8]| sql.windows(t.len()).any(|w| w.eq_ignore_ascii_case(t));
        Found(
            (0..TRIGGERS.len())
                .zip(TRIGGERS)
                .filter(|&(_, t)| present(t))
                .fold(0, |acc, (k, _)| acc | (1 << k)),
        )
    }

    #[test]
    fn agrees_with_a_naive_search() {
        for sql in [
            "",
            "se",
            "set",
            "SeT",
            "xSETx",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 123;",
            "SELECT 1 OFFSET 5",
            "select PG_ADVISORY_LOCK(1)",
            "SELECT Set_Config('a', 'b', false)",
            "create TEMPORARY table t",
            "threshold upload closed_at deallocate discard prepared listening",
            "sesetset_confiset_config",
            "ttemtemp adadvisory",
            "\u{17f}et \u{212a}",
        ] {
            assert_eq!(find(sql.as_bytes()), naive(sql.as_bytes()), "{sql:?}");
        }
    }

    #[test]
    fn agrees_with_a_naive_search_on_random_text() {
        const ALPHABET: &[u8] = b"advisoryset_configtemplistenholdpreparloaddiscrdeallocclose";
        for bytes in super::super::random_text::random_texts(11, ALPHABET, 40, 20_000) {
            assert_eq!(find(&bytes), naive(&bytes), "{bytes:?}");
        }
    }

    #[test]
    fn ordinary_queries_have_no_triggers() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, now())",
            "SELECT \"users\".* FROM \"users\" WHERE \"users\".\"id\" = $1 LIMIT $2",
        ] {
            assert!(find(sql.as_bytes()).is_empty(), "{sql}");
        }
        assert!(find(b"UPDATE t SET a = 1").any_of(Found(1 << 7)));
        assert!(!find(b"UPDATE t SET a = 1").any_of(Found::CALLS));
        assert!(find(b"SELECT SET_CONFIG('a','b',false)").any_of(Found::CALLS));
        assert!(find(b"SELECT 1 INTO TEMP t").any_of(Found::TEMP));
    }
}
