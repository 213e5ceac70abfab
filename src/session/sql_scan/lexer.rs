//! Allocation-free tokenizer for the SQL scanner: it only has to find token boundaries the way
//! PostgreSQL's lexer does, so that keywords hidden in comments, string literals, dollar-quoted
//! bodies and quoted identifiers are never mistaken for real ones.

/// What a token is; literal contents are never interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Unquoted identifier or keyword (ASCII letters, `_`, digits, `$`, any byte >= 0x80).
    Word,
    /// `"..."` identifier, quotes included in the token span.
    QuotedIdent,
    /// `'...'`, `E'...'` or `$tag$...$tag$` literal, delimiters included in the span.
    Str,
    /// Numeric literal.
    Number,
    /// `$1`-style parameter.
    Param,
    /// Any other single byte (`;`, `(`, `,`, `=`, `*`, ...).
    Punct(u8),
}

/// One token: its kind and byte span in the lexed text.
#[derive(Clone, Copy, Debug)]
pub(super) struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

impl Token {
    /// The token's bytes in `src` (empty if the span does not fit, which cannot happen for
    /// tokens produced from the same `src`).
    pub fn text<'a>(&self, src: &'a [u8]) -> &'a [u8] {
        src.get(self.start..self.end).unwrap_or_default()
    }

    /// True if this is the unquoted keyword `kw` (ASCII case-insensitive).
    pub fn is_kw(&self, src: &[u8], kw: &str) -> bool {
        self.kind == Kind::Word && self.text(src).eq_ignore_ascii_case(kw.as_bytes())
    }
}

/// Cursor over `src`; cloning it gives free look-ahead.
#[derive(Clone)]
pub(super) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    /// Set when a quoted token or block comment runs to the end of the input (a syntax error).
    pub unterminated: bool,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src` (a whole text, or one statement cut at token bounds).
    pub fn new(src: &'a [u8]) -> Self {
        Lexer {
            src,
            pos: 0,
            unterminated: false,
        }
    }

    /// Byte offset of the next unread byte.
    pub fn pos(&self) -> usize {
        self.pos
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.pos + ahead).copied()
    }

    fn skip_trivia(&mut self) {
        while let Some(b) = self.peek(0) {
            match (b, self.peek(1)) {
                (b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c, _) => self.pos += 1,
                (b'-', Some(b'-')) => self.skip_line_comment(),
                (b'/', Some(b'*')) => self.skip_block_comment(),
                _ => return,
            }
        }
    }

    fn skip_line_comment(&mut self) {
        let rest = self.src.get(self.pos..).unwrap_or_default();
        self.pos += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    }

    /// Block comments nest in PostgreSQL.
    fn skip_block_comment(&mut self) {
        self.pos += 2;
        let mut depth = 1usize;
        while depth > 0 {
            match (self.peek(0), self.peek(1)) {
                (None, _) => {
                    self.unterminated = true;
                    return;
                }
                (Some(b'/'), Some(b'*')) => (depth, self.pos) = (depth + 1, self.pos + 2),
                (Some(b'*'), Some(b'/')) => (depth, self.pos) = (depth - 1, self.pos + 2),
                _ => self.pos += 1,
            }
        }
    }

    /// Skips a body quoted by `quote` (opening quote already consumed); a doubled quote is an
    /// escaped quote, and with `backslash` a backslash escapes the next byte.
    fn skip_quoted(&mut self, quote: u8, backslash: bool) {
        while let Some(b) = self.peek(0) {
            let escaped = backslash && b == b'\\';
            if escaped || (b == quote && self.peek(1) == Some(quote)) {
                self.pos += 2;
            } else {
                self.pos += 1;
                if b == quote {
                    return;
                }
            }
        }
        self.pos = self.src.len();
        self.unterminated = true;
    }

    fn skip_while(&mut self, pred: impl Fn(u8) -> bool) {
        while self.peek(0).is_some_and(&pred) {
            self.pos += 1;
        }
    }

    /// At a `$`: a parameter, a dollar-quoted literal, or a lone `$`.
    fn dollar(&mut self) -> Kind {
        let start = self.pos;
        self.pos += 1;
        if self.peek(0).is_some_and(|b| b.is_ascii_digit()) {
            self.skip_while(|b| b.is_ascii_digit());
            return Kind::Param;
        }
        self.skip_while(is_tag_byte);
        if self.peek(0) != Some(b'$') {
            self.pos = start + 1;
            return Kind::Punct(b'$');
        }
        self.pos += 1;
        let tag = self.src.get(start..self.pos).unwrap_or_default();
        self.skip_dollar_body(tag);
        Kind::Str
    }

    /// Finds the closing tag. A candidate match can only extend up to the next `$` in the body
    /// (tags contain no inner `$`), so trying every `$` position stays linear overall.
    fn skip_dollar_body(&mut self, tag: &[u8]) {
        let body = self.src.get(self.pos..).unwrap_or_default();
        let mut dollars = body.iter().enumerate().filter(|(_, &b)| b == b'$');
        match dollars.find(|&(i, _)| body.get(i..).is_some_and(|r| r.starts_with(tag))) {
            Some((i, _)) => self.pos += i + tag.len(),
            None => {
                self.pos = self.src.len();
                self.unterminated = true;
            }
        }
    }

    /// An identifier; `E'...'` (single letter E right before a quote) is an escape string.
    fn word(&mut self) -> Kind {
        let start = self.pos;
        self.skip_while(is_ident_byte);
        let escape = self.pos == start + 1 && matches!(self.src.get(start), Some(b'e' | b'E'));
        if escape && self.peek(0) == Some(b'\'') {
            self.pos += 1;
            self.skip_quoted(b'\'', true);
            return Kind::Str;
        }
        Kind::Word
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        self.skip_trivia();
        let start = self.pos;
        let b = self.peek(0)?;
        let kind = match b {
            b'\'' | b'"' => {
                self.pos += 1;
                self.skip_quoted(b, false);
                if b == b'"' {
                    Kind::QuotedIdent
                } else {
                    Kind::Str
                }
            }
            b'$' => self.dollar(),
            b'0'..=b'9' => {
                self.skip_while(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
                Kind::Number
            }
            b if is_ident_start(b) => self.word(),
            _ => {
                self.pos += 1;
                Kind::Punct(b)
            }
        };
        Some(Token {
            kind,
            start,
            end: self.pos,
        })
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_byte(b: u8) -> bool {
    is_tag_byte(b) || b == b'$'
}

fn is_tag_byte(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}
