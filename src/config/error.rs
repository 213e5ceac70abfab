//! The one error type of the config module.
//!
//! Every message names where the problem is (`<file>: <key>: <reason>`), because the person
//! reading it is an operator staring at a config file or a command line, not at Rust code.

use std::ops::Range;

/// Why a configuration could not be loaded or is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax error, wrong value type or unknown key, located by line and column (1-based).
    #[error("{file}: line {line}, column {column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value that parsed but is not acceptable. `key` is a path such as `databases[1].pool_size`
    /// (array indices are 0-based, in file order).
    #[error("{file}: {key}: {reason}")]
    Invalid {
        file: String,
        key: String,
        reason: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(file: &str, key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: file.to_string(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Converts a toml/serde error into [`ConfigError::Syntax`], turning its byte span in `text`
    /// into a line and column so the message fits on one line.
    pub(crate) fn from_toml(file: &str, text: &str, err: &toml::de::Error) -> Self {
        let (line, column) = err.span().map_or((1, 1), |span| line_col(text, span));
        let message = err.message().trim().replace('\n', " ");
        ConfigError::Syntax {
            file: file.to_string(),
            line,
            column,
            message,
        }
    }
}

/// 1-based line and column (in characters) of the start of `span` in `text`.
fn line_col(text: &str, span: Range<usize>) -> (usize, usize) {
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// A range check shared by file conversion and validation so both report the same bounds.
pub(crate) fn range_reason(min: i64, max: i64, got: i64) -> Option<String> {
    (got < min || got > max).then(|| format!("must be between {min} and {max}, got {got}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0..1), (1, 1));
        assert_eq!(line_col(text, 6..8), (2, 1));
        assert_eq!(line_col(text, 11..12), (2, 6));
        assert_eq!(line_col(text, 999..1000), (3, 1));
    }

    #[test]
    fn display_formats() {
        let e = ConfigError::invalid("pgferry.toml", "databases[1].pool_size", "bad");
        assert_eq!(e.to_string(), "pgferry.toml: databases[1].pool_size: bad");
        assert_eq!(
            range_reason(1, 10, 0).as_deref(),
            Some("must be between 1 and 10, got 0")
        );
        assert_eq!(range_reason(1, 10, 10), None);
    }
}
