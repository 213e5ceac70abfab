//! Cheap lexical classification of client SQL (simple Query and Parse text) for transaction
//! pooling: which statements leave state on the backend that outlives the transaction (and so
//! must pin the client to its backend), which change session parameters that the proxy replays
//! on checkout, and which provably clear such state.
//!
//! This is deliberately not a SQL parser. The text is tokenized the way PostgreSQL's lexer
//! finds token boundaries (comments, `'...'`, `E'...'`, `$tag$...$tag$` and `"..."` are skipped
//! as units), split on top-level `;`, and each statement is judged by its leading keywords plus
//! the function calls anywhere in it. Known limits, all erring towards "no effect" only where
//! pinning is impossible to decide lexically:
//! - `standard_conforming_strings = on` is assumed (backslash escapes only in `E'...'`).
//! - Calls hidden in function bodies or dynamic SQL are not seen; `DO $$...$$` bodies are
//!   scanned (best effort, up to [`MAX_DO_DEPTH`] levels), `DO '...'` bodies are not.
//! - `set_config(name, value, false)` is reported only when name and value are literals.
//! - Names and values that are not valid UTF-8 (non-UTF-8 client encodings) are not reported.
//! - Text with an unterminated literal or block comment is a syntax error in PostgreSQL, which
//!   rejects the whole string before running anything, so it yields no effects at all.

#[cfg(test)]
mod fast_path_tests;
mod lexer;
mod prefilter;
#[cfg(test)]
mod random_text;
mod set;
#[cfg(test)]
mod tests;

use lexer::{Kind, Lexer, Token};
use prefilter::Found;

/// Why a client had to be pinned to its backend; the string form is the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PinReason {
    /// Session-level `pg_advisory_lock`/`pg_try_advisory_lock` (and `_shared`).
    AdvisoryLock,
    /// `LISTEN channel`.
    Listen,
    /// `CREATE TEMP TABLE/VIEW/SEQUENCE` (tables without `ON COMMIT DROP`), `SELECT ... INTO TEMP`.
    TempTable,
    /// `DECLARE ... CURSOR WITH HOLD`.
    CursorWithHold,
    /// SQL-level `PREPARE name AS ...` (not `PREPARE TRANSACTION`).
    SqlPrepare,
    /// `LOAD 'library'`.
    Load,
    /// `SET ROLE`, `SET SESSION AUTHORIZATION` (or the `role`/`session_authorization`
    /// parameters): an identity change must never leak to another client, and `RESET ALL`
    /// does not undo it, so it is not replayed like ordinary parameters.
    SetRole,
}

impl PinReason {
    /// Label value for `pgferry_pinned_sessions{reason}` and the pin counter.
    pub fn as_str(&self) -> &'static str {
        match self {
            PinReason::AdvisoryLock => "advisory_lock",
            PinReason::Listen => "listen",
            PinReason::TempTable => "temp_table",
            PinReason::CursorWithHold => "cursor_with_hold",
            PinReason::SqlPrepare => "sql_prepare",
            PinReason::Load => "load",
            PinReason::SetRole => "set_role",
        }
    }
}

/// A session-level consequence of one statement, as far as the lexical scan can tell.
/// Whether it takes effect (e.g. only outside a transaction, or if the transaction commits)
/// is the caller's business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEffect {
    /// The statement creates state that cannot be replayed on another backend.
    Pin(PinReason),
    /// Session-level `SET [SESSION] name {TO|=} value` (also `SET TIME ZONE`, `SET NAMES`,
    /// `SET SCHEMA`, `SET XML OPTION`, `SET SESSION CHARACTERISTICS`, `set_config(.., false)`).
    /// `name` is lowercased unless it was a quoted identifier; `value` is the raw SQL text of
    /// the value (from its first to its last token, e.g. `'UTC'`, `a, "B"`, `DEFAULT`), ready to
    /// be replayed as `SET name TO value`.
    Set { name: String, value: String },
    /// `RESET name` (name normalised as for `Set`).
    Reset { name: String },
    /// `RESET ALL`.
    ResetAll,
    /// `DISCARD ALL`: clears every kind of session state.
    DiscardAll,
    /// `DISCARD TEMP`: drops the session's temporary objects.
    DiscardTemp,
    /// `DEALLOCATE [PREPARE] ALL`: drops every SQL-level and protocol-level prepared statement.
    DeallocateAll,
    /// `DEALLOCATE [PREPARE] name`: drops one prepared statement, SQL-level or protocol-level
    /// (PostgreSQL keeps both in one namespace; pgx deallocates its cached statements this
    /// way). `name` is lowercased unless it was a quoted identifier.
    Deallocate { name: String },
    /// `UNLISTEN *`.
    UnlistenAll,
    /// `CLOSE ALL`: closes every cursor, including held ones.
    CloseAll,
    /// A call of `pg_advisory_unlock_all()`.
    AdvisoryUnlockAll,
    /// `BEGIN` / `START TRANSACTION`: later effects wait for the transaction's end.
    TransactionStart,
    /// `COMMIT` / `END` (`commit: true`) or `ROLLBACK` / `ABORT` (`false`); not savepoints or
    /// two-phase commit. Only reported in text that has other effects.
    TransactionEnd { commit: bool },
}

/// How deep `DO $$ ... $$` bodies are scanned recursively (bounds work on crafted input).
pub const MAX_DO_DEPTH: usize = 2;

/// Classifies `sql` (one Query or Parse text, without its NUL terminator) and returns the
/// effects of its statements in order; empty (without allocating) for ordinary statements.
/// Never panics, whatever the bytes.
pub fn scan(sql: &[u8]) -> Vec<SessionEffect> {
    scan_with(sql, prefilter::find(sql))
}

/// [`scan`] given the trigger words present in `sql` (a superset of them gives the same result,
/// only slower).
fn scan_with(sql: &[u8], found: Found) -> Vec<SessionEffect> {
    if found.is_empty() {
        return Vec::new();
    }
    let effects = scan_text(sql, 0, found);
    // Transaction control matters only around other effects.
    let control = |e: &SessionEffect| {
        matches!(
            e,
            SessionEffect::TransactionStart | SessionEffect::TransactionEnd { .. }
        )
    };
    if effects.iter().all(control) {
        return Vec::new();
    }
    effects
}

/// Splits `sql` into statements and analyzes each; `found` covers every trigger in `sql`.
fn scan_text(sql: &[u8], depth: usize, found: Found) -> Vec<SessionEffect> {
    let mut out = Vec::new();
    let mut lex = Lexer::new(sql);
    loop {
        let start = lex.pos();
        let (mut end, mut more) = (None, false);
        for tok in lex.by_ref() {
            if tok.kind == Kind::Punct(b';') {
                more = true;
                break;
            }
            end = Some(tok.end);
        }
        if let Some(stmt) = end.and_then(|end| sql.get(start..end)) {
            analyze(stmt, depth, found, &mut out);
        }
        if !more {
            break;
        }
    }
    if lex.unterminated {
        out.clear();
    }
    out
}

/// Lowercases a keyword-sized unquoted word into `buf`; anything else gives an empty slice.
fn lower<'b>(tok: Token, src: &[u8], buf: &'b mut [u8; 32]) -> &'b [u8] {
    let text = tok.text(src);
    match buf.get_mut(..text.len()) {
        Some(dst) if tok.kind == Kind::Word => {
            dst.copy_from_slice(text);
            dst.make_ascii_lowercase();
            dst
        }
        _ => &[],
    }
}

/// Judges one statement (no `;`) by its leading keywords, then by its function calls; checks
/// whose trigger word is not in `found` are skipped (they could not match).
fn analyze(src: &[u8], depth: usize, found: Found, out: &mut Vec<SessionEffect>) {
    let mut toks = Lexer::new(src);
    let Some(mut first) = toks.next() else { return };
    if depth > 0 && first.is_kw(src, "begin") {
        // PL/pgSQL block start: look at the statement after it.
        let Some(next) = toks.next() else { return };
        first = next;
    }
    let mut buf = [0u8; 32];
    let next_is = |kw: &str| toks.clone().next().is_some_and(|t| t.is_kw(src, kw));
    let pin_if = |cond: bool, reason| cond.then_some(SessionEffect::Pin(reason));
    let into_temp = |toks| found.any_of(Found::TEMP) && select_into_temp(src, toks);
    let effect = match lower(first, src, &mut buf) {
        b"set" => {
            set::set_stmt(src, toks, out);
            None
        }
        b"reset" => set::reset_stmt(src, toks),
        b"listen" => pin_if(true, PinReason::Listen),
        b"load" => pin_if(true, PinReason::Load),
        b"prepare" => pin_if(prepare_pins(src, toks), PinReason::SqlPrepare),
        b"declare" => pin_if(declare_pins(src, toks), PinReason::CursorWithHold),
        b"create" => pin_if(create_pins(src, toks), PinReason::TempTable),
        b"select" | b"with" => pin_if(into_temp(toks), PinReason::TempTable),
        b"unlisten" => unlisten_all(toks).then_some(SessionEffect::UnlistenAll),
        b"discard" if next_is("all") => Some(SessionEffect::DiscardAll),
        b"discard" if next_is("temp") || next_is("temporary") => Some(SessionEffect::DiscardTemp),
        b"deallocate" => deallocate(src, toks),
        b"close" if next_is("all") => Some(SessionEffect::CloseAll),
        // Transaction control only at top level (DO bodies have PL/pgSQL BEGIN ... END).
        b"begin" if depth == 0 => Some(SessionEffect::TransactionStart),
        b"start" if depth == 0 && next_is("transaction") => Some(SessionEffect::TransactionStart),
        b"commit" | b"end" if depth == 0 && !next_is("prepared") => {
            Some(SessionEffect::TransactionEnd { commit: true })
        }
        b"rollback" | b"abort" if depth == 0 && !next_is("prepared") && !next_is("to") => {
            Some(SessionEffect::TransactionEnd { commit: false })
        }
        b"do" if depth < MAX_DO_DEPTH => {
            scan_do(src, toks, depth, found, out);
            None
        }
        _ if first.kind == Kind::Punct(b'(') => pin_if(into_temp(toks), PinReason::TempTable),
        _ => None,
    };
    out.extend(effect);
    if found.any_of(Found::CALLS) {
        scan_calls(src, out);
    }
}

/// `PREPARE name ...` pins; `PREPARE TRANSACTION 'gid'` (two-phase commit) does not.
fn prepare_pins(src: &[u8], mut toks: Lexer) -> bool {
    match (toks.next(), toks.next()) {
        (Some(t), Some(gid)) if t.is_kw(src, "transaction") => gid.kind != Kind::Str,
        (name, _) => name.is_some(),
    }
}

/// `DECLARE name [options] CURSOR [WITH HOLD] FOR ...`: looks for `WITH HOLD` anywhere before
/// `FOR`, so option order does not matter; `WITHOUT HOLD` does not pin.
fn declare_pins(src: &[u8], mut toks: Lexer) -> bool {
    toks.next(); // the cursor name
    let mut after_with = false;
    for tok in toks {
        if tok.is_kw(src, "for") {
            return false;
        }
        if after_with && tok.is_kw(src, "hold") {
            return true;
        }
        after_with = tok.is_kw(src, "with");
    }
    false
}

/// `CREATE [OR REPLACE] [GLOBAL|LOCAL] {TEMP|TEMPORARY} object ...`; a table with
/// `ON COMMIT DROP` disappears at commit and does not pin.
fn create_pins(src: &[u8], mut toks: Lexer) -> bool {
    let mut tok = toks.next();
    if tok.is_some_and(|t| t.is_kw(src, "or")) {
        toks.next(); // REPLACE
        tok = toks.next();
    }
    if tok.is_some_and(|t| t.is_kw(src, "global") || t.is_kw(src, "local")) {
        tok = toks.next();
    }
    if !tok.is_some_and(|t| is_temp(src, t)) {
        return false;
    }
    let is_table = toks.next().is_some_and(|t| t.is_kw(src, "table"));
    !(is_table && has_sequence(src, toks, &["on", "commit", "drop"]))
}

fn is_temp(src: &[u8], tok: Token) -> bool {
    tok.is_kw(src, "temp") || tok.is_kw(src, "temporary")
}

/// True if the keywords `words` appear consecutively somewhere in `toks`.
fn has_sequence(src: &[u8], mut toks: Lexer, words: &[&str]) -> bool {
    while let Some(tok) = toks.next() {
        let mut rest = toks.clone();
        if words.split_first().is_some_and(|(head, tail)| {
            tok.is_kw(src, head)
                && tail
                    .iter()
                    .all(|w| rest.next().is_some_and(|t| t.is_kw(src, w)))
        }) {
            return true;
        }
    }
    false
}

/// `SELECT ... INTO [GLOBAL|LOCAL] {TEMP|TEMPORARY} ...` (but not `INSERT INTO temp`, where
/// `temp` is a table name).
fn select_into_temp(src: &[u8], mut toks: Lexer) -> bool {
    let mut prev: Option<Token> = None;
    while let Some(tok) = toks.next() {
        let inserting = prev.is_some_and(|p| p.is_kw(src, "insert") || p.is_kw(src, "merge"));
        if tok.is_kw(src, "into") && !inserting {
            let mut rest = toks.clone();
            let mut target = rest.next();
            if target.is_some_and(|t| t.is_kw(src, "global") || t.is_kw(src, "local")) {
                target = rest.next();
            }
            if target.is_some_and(|t| is_temp(src, t)) {
                return true;
            }
        }
        prev = Some(tok);
    }
    false
}

fn unlisten_all(mut toks: Lexer) -> bool {
    toks.next().is_some_and(|t| t.kind == Kind::Punct(b'*'))
}

/// `DEALLOCATE [PREPARE] {ALL | name}`.
fn deallocate(src: &[u8], mut toks: Lexer) -> Option<SessionEffect> {
    let mut tok = toks.next()?;
    if tok.is_kw(src, "prepare") {
        tok = toks.next()?;
    }
    if tok.is_kw(src, "all") {
        return Some(SessionEffect::DeallocateAll);
    }
    if toks.next().is_some() {
        return None;
    }
    set::ident(src, tok).map(|name| SessionEffect::Deallocate { name })
}

/// `DO [LANGUAGE x] $tag$ body $tag$`: the body runs now, so it is scanned like top-level SQL.
fn scan_do(src: &[u8], toks: Lexer, depth: usize, found: Found, out: &mut Vec<SessionEffect>) {
    let Some(body) = toks
        .filter(|t| t.kind == Kind::Str)
        .find_map(|t| dollar_body(t.text(src)))
    else {
        return;
    };
    out.extend(scan_text(body, depth + 1, found));
}

/// The contents of a complete `$tag$...$tag$` literal.
fn dollar_body(text: &[u8]) -> Option<&[u8]> {
    let rest = text.strip_prefix(b"$")?;
    let tag_len = rest.iter().position(|&b| b == b'$')? + 2;
    text.get(tag_len..text.len().checked_sub(tag_len)?)
}

/// Effects of function calls anywhere in the statement (`name(` with `name` an unquoted or
/// quoted identifier, whatever its schema qualification).
fn scan_calls(src: &[u8], out: &mut Vec<SessionEffect>) {
    let mut toks = Lexer::new(src);
    let mut prev: Option<Token> = None;
    while let Some(tok) = toks.next() {
        if let (Some(name), Kind::Punct(b'(')) = (prev, tok.kind) {
            out.extend(call_effect(src, name, toks.clone()));
        }
        prev = Some(tok);
    }
}

fn call_effect(src: &[u8], name: Token, args: Lexer) -> Option<SessionEffect> {
    let mut buf = [0u8; 32];
    let name = match name.kind {
        Kind::QuotedIdent => name.text(src).get(1..)?.strip_suffix(b"\"")?,
        _ => lower(name, src, &mut buf),
    };
    match name {
        b"pg_advisory_lock"
        | b"pg_advisory_lock_shared"
        | b"pg_try_advisory_lock"
        | b"pg_try_advisory_lock_shared" => Some(SessionEffect::Pin(PinReason::AdvisoryLock)),
        b"pg_advisory_unlock_all" => Some(SessionEffect::AdvisoryUnlockAll),
        b"set_config" => set::set_config(src, args),
        _ => None,
    }
}
