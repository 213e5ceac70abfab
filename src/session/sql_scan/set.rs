//! `SET`, `RESET` and `set_config(...)`: which session parameters a statement changes, in the
//! form the proxy can replay on another backend (`SET name TO value`).

use super::lexer::{Kind, Lexer, Token};
use super::{lower, PinReason, SessionEffect};

/// Parameters that change the session's identity: never replayed, always pinned.
const IDENTITY_PARAMS: [&str; 2] = ["role", "session_authorization"];

/// Handles the tokens after `SET`, pushing what the statement changes at session level.
pub(super) fn set_stmt(src: &[u8], mut toks: Lexer, out: &mut Vec<SessionEffect>) {
    let Some(mut tok) = toks.next() else { return };
    if tok.is_kw(src, "local") {
        return;
    }
    if tok.is_kw(src, "session") {
        let Some(next) = toks.next() else { return };
        if next.is_kw(src, "characteristics") {
            return session_characteristics(src, toks, out);
        }
        tok = next;
    }
    let mut buf = [0u8; 32];
    let special = |name: &str, skip: usize, toks: &mut Lexer| {
        let mut rest = toks.clone().skip(skip);
        let value = raw_value(src, &mut rest).unwrap_or_else(|| "DEFAULT".to_owned());
        Some(set(name, value))
    };
    let effect = match as_keyword(src, tok, &toks, &mut buf) {
        b"transaction" | b"constraints" => None,
        b"role" | b"authorization" => Some(SessionEffect::Pin(PinReason::SetRole)),
        b"time" if next_is(src, &toks, "zone") => {
            special("timezone", 1, &mut toks).map(time_zone_local)
        }
        b"names" => special("client_encoding", 0, &mut toks),
        b"schema" => special("search_path", 0, &mut toks),
        b"xml" if next_is(src, &toks, "option") => special("xmloption", 1, &mut toks),
        _ => generic_set(src, tok, toks),
    };
    out.extend(effect);
}

/// `tok` lowercased when it is used as a keyword (`SET TIME ZONE`, `RESET ALL`, ...); empty
/// when it starts a parameter name instead (`SET time.x = 1`, `SET names TO ...`).
fn as_keyword<'b>(src: &[u8], tok: Token, toks: &Lexer, buf: &'b mut [u8; 32]) -> &'b [u8] {
    let name_syntax = toks
        .clone()
        .next()
        .is_some_and(|t| matches!(t.kind, Kind::Punct(b'.' | b'=')) || t.is_kw(src, "to"));
    match name_syntax {
        true => &[],
        false => lower(tok, src, buf),
    }
}

fn next_is(src: &[u8], toks: &Lexer, kw: &str) -> bool {
    toks.clone().next().is_some_and(|t| t.is_kw(src, kw))
}

/// `SET TIME ZONE LOCAL` means the default; `SET timezone TO LOCAL` would not.
fn time_zone_local(effect: SessionEffect) -> SessionEffect {
    match effect {
        SessionEffect::Set { name, value } if value.eq_ignore_ascii_case("local") => {
            SessionEffect::Set {
                name,
                value: "DEFAULT".to_owned(),
            }
        }
        other => other,
    }
}

/// `SET name {TO|=} value`.
fn generic_set(src: &[u8], first: Token, mut toks: Lexer) -> Option<SessionEffect> {
    let name = dotted_name(src, first, &mut toks)?;
    let op = toks.next()?;
    if !(op.kind == Kind::Punct(b'=') || op.is_kw(src, "to")) {
        return None;
    }
    let value = raw_value(src, &mut toks)?;
    Some(set(&name, value))
}

fn set(name: &str, value: String) -> SessionEffect {
    if IDENTITY_PARAMS.contains(&name) {
        return SessionEffect::Pin(PinReason::SetRole);
    }
    SessionEffect::Set {
        name: name.to_owned(),
        value,
    }
}

/// The remaining tokens' source text, from the first token's start to the last one's end.
fn raw_value(src: &[u8], toks: &mut dyn Iterator<Item = Token>) -> Option<String> {
    let first = toks.next()?;
    let end = toks.last().map_or(first.end, |t| t.end);
    let text = std::str::from_utf8(src.get(first.start..end)?).ok()?;
    Some(text.to_owned())
}

/// A parameter name, `a` or `a.b` (each part unquoted → lowercased, or quoted → verbatim).
fn dotted_name(src: &[u8], first: Token, toks: &mut Lexer) -> Option<String> {
    let mut name = ident(src, first)?;
    while toks
        .clone()
        .next()
        .is_some_and(|t| t.kind == Kind::Punct(b'.'))
    {
        toks.next();
        name.push('.');
        name.push_str(&ident(src, toks.next()?)?);
    }
    Some(name)
}

/// The name an identifier token denotes: unquoted → ASCII-lowercased, `"quoted"` → as written
/// (with `""` unescaped); `None` for other tokens and names that are not UTF-8.
pub(super) fn ident(src: &[u8], tok: Token) -> Option<String> {
    let text = std::str::from_utf8(tok.text(src)).ok()?;
    match tok.kind {
        Kind::Word => Some(text.to_ascii_lowercase()),
        Kind::QuotedIdent => Some(text.get(1..)?.strip_suffix('"')?.replace("\"\"", "\"")),
        _ => None,
    }
}

/// Handles the tokens after `RESET`.
pub(super) fn reset_stmt(src: &[u8], mut toks: Lexer) -> Option<SessionEffect> {
    let tok = toks.next()?;
    let mut buf = [0u8; 32];
    let name = match as_keyword(src, tok, &toks, &mut buf) {
        b"all" => return Some(SessionEffect::ResetAll),
        b"transaction" => return None,
        b"time" if next_is(src, &toks, "zone") => "timezone".to_owned(),
        b"session" => "session_authorization".to_owned(),
        _ => dotted_name(src, tok, &mut toks)?,
    };
    Some(SessionEffect::Reset { name })
}

/// `SET SESSION CHARACTERISTICS AS TRANSACTION mode [, ...]` sets the session defaults for
/// new transactions, i.e. the `default_transaction_*` parameters.
fn session_characteristics(src: &[u8], toks: Lexer, out: &mut Vec<SessionEffect>) {
    let mut words = toks.skip(2).filter(|t| t.kind == Kind::Word);
    while let Some(word) = words.next() {
        let mut buf = [0u8; 32];
        let (name, value) = match lower(word, src, &mut buf) {
            b"isolation" => match isolation_level(src, &mut words) {
                Some(level) => ("default_transaction_isolation", format!("'{level}'")),
                None => return,
            },
            b"read" if words.next().is_some_and(|t| t.is_kw(src, "only")) => {
                ("default_transaction_read_only", "on".to_owned())
            }
            b"read" => ("default_transaction_read_only", "off".to_owned()),
            b"deferrable" => ("default_transaction_deferrable", "on".to_owned()),
            b"not" => {
                words.next();
                ("default_transaction_deferrable", "off".to_owned())
            }
            _ => continue,
        };
        out.push(set(name, value));
    }
}

/// `LEVEL {SERIALIZABLE | REPEATABLE READ | READ COMMITTED | READ UNCOMMITTED}`.
fn isolation_level(src: &[u8], words: &mut impl Iterator<Item = Token>) -> Option<&'static str> {
    words.next(); // LEVEL
    let mut buf = [0u8; 32];
    match lower(words.next()?, src, &mut buf) {
        b"serializable" => Some("serializable"),
        b"repeatable" => words.next().map(|_| "repeatable read"),
        b"read" if words.next()?.is_kw(src, "committed") => Some("read committed"),
        b"read" => Some("read uncommitted"),
        _ => None,
    }
}

/// `set_config('name', value, false)` (arguments right after the `(`): a session-level SET.
/// Reported only when the name is a plain literal and `is_local` the literal `false`; the value
/// must be a literal too unless the name is an identity parameter (which pins regardless).
pub(super) fn set_config(src: &[u8], mut args: Lexer) -> Option<SessionEffect> {
    let name = plain_literal(src, args.next()?)?.to_ascii_lowercase();
    let value = after_punct(&mut args, b',')?;
    let is_local = after_punct(&mut args, b',')?;
    let close = args.next()?;
    if !is_local.is_kw(src, "false") || close.kind != Kind::Punct(b')') {
        return None;
    }
    if IDENTITY_PARAMS.contains(&name.as_str()) {
        return Some(SessionEffect::Pin(PinReason::SetRole));
    }
    if value.kind != Kind::Str {
        return None;
    }
    let value = std::str::from_utf8(value.text(src)).ok()?;
    Some(set(&name, value.to_owned()))
}

/// Consumes the punctuation `p` and returns the token after it.
fn after_punct(args: &mut Lexer, p: u8) -> Option<Token> {
    (args.next()?.kind == Kind::Punct(p)).then(|| args.next())?
}

/// The contents of a `'...'` literal (not `E'...'` or dollar-quoted).
fn plain_literal(src: &[u8], tok: Token) -> Option<String> {
    let text = std::str::from_utf8(tok.text(src)).ok()?;
    let inner = text.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(inner.replace("''", "'"))
}
