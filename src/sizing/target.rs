//! What the user sized for: a provisioned class from the table, or Aurora Serverless v2 with a
//! capacity range; both reduce to an estimated `DBInstanceClassMemory` and `max_connections`.

use super::classes::{self, ClassError, SERVERLESS};
use super::memory;
use serde::Serialize;
use thiserror::Error;

/// ACUs, stored as half-ACUs because Aurora accepts capacities in steps of 0.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acu(pub u32);

/// Largest maximum capacity Aurora Serverless v2 accepts (recent versions), in ACUs.
const MAX_ACU: u32 = 256;

impl Acu {
    /// Parses `8`, `8.0` or `8.5` (clap value parser): Aurora's own steps, 0 to 256.
    pub fn parse(text: &str) -> Result<Acu, String> {
        let invalid = || {
            format!("{text:?} is not an ACU value: use a number from 0 to {MAX_ACU} in steps of 0.5 (e.g. 0.5, 8, 16.5)")
        };
        let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), "0"));
        let whole: u32 = whole.parse().map_err(|_| invalid())?;
        let half = match fraction {
            "0" | "00" => 0,
            "5" | "50" => 1,
            _ => return Err(invalid()),
        };
        if whole > MAX_ACU || (whole == MAX_ACU && half == 1) {
            return Err(invalid());
        }
        Ok(Acu(whole * 2 + half))
    }

    fn text(self) -> String {
        match self.0 % 2 {
            0 => format!("{}", self.0 / 2),
            _ => format!("{}.5", self.0 / 2),
        }
    }
}

/// The class or capacity `--instance-class` (and `--min-acu`/`--max-acu`) describe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// `db.t4g.medium`, or `db.serverless` with its capacity range.
    pub instance_class: String,
    /// `burstable`, `general purpose`, `memory optimised` or `Aurora Serverless v2`.
    pub kind: &'static str,
    /// Nominal memory (at the maximum capacity for serverless), bytes.
    pub memory_bytes: u64,
    /// Estimated `DBInstanceClassMemory`, bytes.
    pub class_memory_bytes: u64,
    /// RDS's default `max_connections` for this target.
    pub max_connections: u64,
}

/// Arguments that name no sizable target.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    /// Not in the table.
    #[error(transparent)]
    Class(#[from] ClassError),
    /// `db.serverless` without its maximum capacity.
    #[error("{SERVERLESS} needs --max-acu (its max_connections follows the maximum capacity), e.g. --instance-class {SERVERLESS} --max-acu 16")]
    MissingMaxAcu,
    /// ACUs given for a provisioned class.
    #[error("--min-acu/--max-acu only apply to --instance-class {SERVERLESS}, not {0}")]
    AcuForProvisioned(String),
    /// Range the wrong way round or below Aurora's smallest maximum.
    #[error("invalid capacity range: --max-acu must be at least 1 and at least --min-acu (got min {min}, max {max})")]
    BadRange { min: String, max: String },
}

/// Resolves the command-line description to a target.
pub fn resolve(class: &str, min: Option<Acu>, max: Option<Acu>) -> Result<Target, TargetError> {
    if class.trim().eq_ignore_ascii_case(SERVERLESS) {
        return serverless(min, max.ok_or(TargetError::MissingMaxAcu)?);
    }
    if min.is_some() || max.is_some() {
        return Err(TargetError::AcuForProvisioned(class.to_owned()));
    }
    let found = classes::lookup(class)?;
    let class_memory = memory::provisioned_class_memory(found.memory_gib);
    Ok(Target {
        instance_class: found.name(),
        kind: found.kind.label(),
        memory_bytes: u64::from(found.memory_gib) << 30,
        class_memory_bytes: class_memory,
        max_connections: memory::default_max_connections(class_memory, memory::DEFAULT_CEILING),
    })
}

/// Aurora Serverless v2 sized by its maximum capacity; a minimum below 1 ACU lowers the ceiling.
/// Without `--min-acu` we assume 0.5 ACU, Aurora's usual minimum, because it gives the lower
/// (never overcommitting) ceiling; the output shows the range assumed.
fn serverless(min: Option<Acu>, max: Acu) -> Result<Target, TargetError> {
    let min = min.unwrap_or(Acu(1));
    if max < Acu(2) || min > max {
        return Err(TargetError::BadRange {
            min: min.text(),
            max: max.text(),
        });
    }
    let ceiling = match min < Acu(2) {
        true => memory::SERVERLESS_LOW_MIN_CEILING,
        false => memory::DEFAULT_CEILING,
    };
    let class_memory = memory::serverless_class_memory(max.0);
    Ok(Target {
        instance_class: format!("{SERVERLESS} ({}-{} ACU)", min.text(), max.text()),
        kind: "Aurora Serverless v2",
        memory_bytes: memory::serverless_nominal_bytes(max.0),
        class_memory_bytes: class_memory,
        max_connections: memory::default_max_connections(class_memory, ceiling),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acu(text: &str) -> Acu {
        Acu::parse(text).unwrap()
    }

    #[test]
    fn acu_values_parse_in_half_steps() {
        assert_eq!(acu("0.5"), Acu(1));
        assert_eq!(acu("16"), Acu(32));
        assert_eq!(acu("8.5"), Acu(17));
        assert_eq!(acu("256"), Acu(512));
        for bad in ["", "x", "8.25", "-1", "257", "256.5", "1e3"] {
            assert!(Acu::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serverless_follows_the_documented_table() {
        let max = |min: &str, max: &str| {
            resolve("db.serverless", Some(acu(min)), Some(acu(max)))
                .unwrap()
                .max_connections
        };
        assert_eq!(max("0.5", "1"), 189);
        assert_eq!(max("1", "16"), 3360);
        assert_eq!(max("0.5", "16"), 2000);
        assert_eq!(max("1", "32"), 5000);
        assert_eq!(max("2", "128"), 5000);
        let default_min = resolve("db.serverless", None, Some(acu("16"))).unwrap();
        assert_eq!(default_min.max_connections, 2000);
        assert_eq!(default_min.instance_class, "db.serverless (0.5-16 ACU)");
    }

    #[test]
    fn serverless_errors() {
        assert_eq!(
            resolve("db.serverless", None, None),
            Err(TargetError::MissingMaxAcu)
        );
        assert!(matches!(
            resolve("db.serverless", Some(acu("8")), Some(acu("4"))),
            Err(TargetError::BadRange { .. })
        ));
        assert!(matches!(
            resolve("db.t3.micro", None, Some(acu("4"))),
            Err(TargetError::AcuForProvisioned(_))
        ));
    }

    #[test]
    fn provisioned_class_resolves() {
        let target = resolve(" DB.T4G.Medium ", None, None).unwrap();
        assert_eq!(target.instance_class, "db.t4g.medium");
        assert_eq!(target.memory_bytes, 4 << 30);
        assert!(target.max_connections > 380 && target.max_connections < 430);
    }
}
