//! Text names of the config enums, shared by the TOML file, the CLI and log/summary output.
//!
//! One table per enum keeps the spelling identical everywhere ("verify-full" in the file, on the
//! command line and in `check-config` output).

use super::{BackendTlsMode, ClientTlsMode, LogFormat, PinningMode, PoolMode};
use std::fmt;
use std::str::FromStr;

/// The error of the enums' `FromStr`: the rejected text and the accepted names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected one of {expected}, got {got:?}")]
pub struct UnknownName {
    /// What was written.
    pub got: String,
    /// Accepted names, quoted and comma-separated.
    pub expected: String,
}

macro_rules! named_enum {
    ($ty:ty, [$(($name:literal, $variant:expr)),+ $(,)?]) => {
        impl $ty {
            /// Every variant with its config/CLI name, in documentation order.
            pub const NAMES: &'static [(&'static str, $ty)] = &[$(($name, $variant)),+];

            /// The config/CLI name of this variant.
            pub fn as_str(self) -> &'static str {
                Self::NAMES.iter().find(|(_, v)| *v == self).map_or("?", |(n, _)| *n)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                Self::NAMES.iter().find(|(n, _)| *n == s).map(|(_, v)| *v).ok_or_else(|| {
                    let names: Vec<String> = Self::NAMES.iter().map(|(n, _)| format!("{n:?}")).collect();
                    UnknownName { got: s.to_string(), expected: names.join(", ") }
                })
            }
        }

        impl clap::ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($variant),+]
            }
            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(self.as_str()))
            }
        }
    };
}

named_enum!(
    PoolMode,
    [
        ("transaction", PoolMode::Transaction),
        ("session", PoolMode::Session)
    ]
);
named_enum!(
    ClientTlsMode,
    [
        ("disable", ClientTlsMode::Disable),
        ("allow", ClientTlsMode::Allow),
        ("require", ClientTlsMode::Require),
    ]
);
named_enum!(
    BackendTlsMode,
    [
        ("disable", BackendTlsMode::Disable),
        ("prefer", BackendTlsMode::Prefer),
        ("require", BackendTlsMode::Require),
        ("verify-ca", BackendTlsMode::VerifyCa),
        ("verify-full", BackendTlsMode::VerifyFull),
    ]
);
named_enum!(
    LogFormat,
    [("human", LogFormat::Human), ("json", LogFormat::Json)]
);
named_enum!(
    PinningMode,
    [
        ("pin", PinningMode::Pin),
        ("ignore", PinningMode::Ignore),
        ("error", PinningMode::Error),
    ]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_name() {
        for (name, mode) in BackendTlsMode::NAMES {
            assert_eq!(name.parse::<BackendTlsMode>(), Ok(*mode));
            assert_eq!(mode.to_string(), *name);
        }
        assert_eq!(ClientTlsMode::Require.as_str(), "require");
        assert_eq!(LogFormat::Json.as_str(), "json");
        for (name, mode) in PinningMode::NAMES {
            assert_eq!(name.parse::<PinningMode>(), Ok(*mode));
            assert_eq!(mode.to_string(), *name);
        }
        assert_eq!(PinningMode::NAMES.len(), 3);
    }

    #[test]
    fn unknown_name_lists_choices() {
        let err = "sesion".parse::<PoolMode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"expected one of "transaction", "session", got "sesion""#
        );
        let err = "Pin".parse::<PinningMode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"expected one of "pin", "ignore", "error", got "Pin""#
        );
    }
}
