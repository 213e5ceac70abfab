//! RDS's default `max_connections` for PostgreSQL, from an estimate of `DBInstanceClassMemory`.
//!
//! The default parameter group sets `max_connections = LEAST({DBInstanceClassMemory/9531392},
//! 5000)` (AWS Prescriptive Guidance, "Tuning PostgreSQL parameters: max_connections";
//! Amazon RDS User Guide, "Maximum number of database connections"). `DBInstanceClassMemory` is
//! not the nominal RAM: RDS subtracts what the OS and its own agents keep, and AWS does not
//! publish the amount. We estimate it from observed defaults:
//!
//! * RDS MySQL's default is `{DBInstanceClassMemory/12582880}` on the same variable, and its
//!   observed values (tritoneco.com, "max_connections at AWS RDS MySQL instance sizes", 2015:
//!   t2.micro 66, t2.small 150, t2.medium 312, t2.large 648, m4.large 648, m4.xlarge 1320,
//!   r3.large 1258, r3.xlarge 2540) pin `DBInstanceClassMemory` to within 12 MiB per class;
//! * the commonly reported PostgreSQL value for 1 GiB classes (87, e.g. db.t3.micro) and the
//!   Aurora PostgreSQL guide's db.r4.large (15.25 GiB) example of 1660 agree with those.
//!
//! The reserve grows slowly with memory: about 230 MiB plus 1.75 % of the nominal RAM fits every
//! point above within 2.5 % (see the tests), which is far inside the headroom `sizing` applies.
//!
//! Aurora Serverless v2 derives `max_connections` from the cluster's *maximum* ACU (Aurora User
//! Guide, "Maximum connections for Aurora Serverless v2"; re:Post article "Working of
//! max_connections for Amazon Aurora PostgreSQL Serverless"): 189 at 1 ACU, 3360 at 16 ACUs,
//! 5000 from 32 ACUs, and capped at 2000 when the minimum capacity is 0 or 0.5 ACU. The two
//! documented points lie on a line (max_connections = 211.4 × ACU − 22.4), which we use between
//! and beyond them.

/// The divisor in RDS's PostgreSQL default: one connection per 9531392 bytes of memory.
pub const BYTES_PER_CONNECTION: u64 = 9_531_392;
/// RDS's ceiling on the default `max_connections`.
pub const DEFAULT_CEILING: u64 = 5000;
/// Aurora Serverless v2's ceiling when the minimum capacity is below 1 ACU.
pub const SERVERLESS_LOW_MIN_CEILING: u64 = 2000;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Fixed part of the memory RDS keeps for itself (fitted, see the module doc).
const RESERVE_BASE_MIB: u64 = 230;
/// Proportional part, in basis points of nominal memory (fitted, see the module doc).
const RESERVE_BASIS_POINTS: u64 = 175;

/// Estimated `DBInstanceClassMemory` of a provisioned class with `nominal_gib` of RAM.
pub fn provisioned_class_memory(nominal_gib: u32) -> u64 {
    class_memory_of_mib(u64::from(nominal_gib) * 1024)
}

/// The reserve model on MiB, so that classes with fractional GiB (r3/r4) can be checked too.
fn class_memory_of_mib(nominal_mib: u64) -> u64 {
    let reserve_mib = RESERVE_BASE_MIB + nominal_mib * RESERVE_BASIS_POINTS / 10_000;
    nominal_mib.saturating_sub(reserve_mib) * MIB
}

/// Estimated `DBInstanceClassMemory` of Aurora Serverless v2 at `max_half_acus` half-ACUs
/// (ACUs come in steps of 0.5): the memory that reproduces the documented connection counts.
pub fn serverless_class_memory(max_half_acus: u32) -> u64 {
    // connections = 211.4 × ACU − 22.4 = (1057 × half-ACUs − 224) / 10
    let tenths = (1057 * u64::from(max_half_acus)).saturating_sub(224);
    tenths * BYTES_PER_CONNECTION / 10
}

/// Nominal memory of `half_acus` half-ACUs (1 ACU is 2 GiB), in bytes.
pub fn serverless_nominal_bytes(half_acus: u32) -> u64 {
    u64::from(half_acus) * GIB
}

/// RDS's default: `LEAST(DBInstanceClassMemory / 9531392, ceiling)`.
pub fn default_max_connections(class_memory: u64, ceiling: u64) -> u64 {
    (class_memory / BYTES_PER_CONNECTION).min(ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RDS MySQL's default divides the same DBInstanceClassMemory by this.
    const MYSQL_BYTES_PER_CONNECTION: u64 = 12_582_880;

    /// (nominal GiB × 4, observed MySQL default) — tritoneco.com 2015 (see module doc).
    const MYSQL_OBSERVED: &[(u32, u64)] = &[
        (4, 66),
        (8, 150),
        (16, 312),
        (32, 648),
        (64, 1320),
        (61, 1258),
        (122, 2540),
    ];

    fn quarter_gib_memory(quarters: u32) -> u64 {
        class_memory_of_mib(u64::from(quarters) * 256)
    }

    fn assert_within(estimate: u64, observed: u64, what: &str) {
        let tolerance = (observed * 25 / 1000).max(3);
        assert!(
            estimate.abs_diff(observed) <= tolerance,
            "{what}: estimated {estimate}, observed {observed}, tolerance {tolerance}"
        );
    }

    #[test]
    fn provisioned_estimate_matches_every_observed_class_within_tolerance() {
        for &(quarters, mysql) in MYSQL_OBSERVED {
            let observed_memory = mysql * MYSQL_BYTES_PER_CONNECTION;
            let observed_pg = observed_memory / BYTES_PER_CONNECTION;
            let estimated_pg = quarter_gib_memory(quarters) / BYTES_PER_CONNECTION;
            assert_within(
                estimated_pg,
                observed_pg,
                &format!("{} GiB", quarters as f64 / 4.0),
            );
        }
        assert_eq!(quarter_gib_memory(8), provisioned_class_memory(2));
    }

    #[test]
    fn one_gib_class_gives_the_reported_postgres_default() {
        let estimate = default_max_connections(provisioned_class_memory(1), DEFAULT_CEILING);
        assert_within(estimate, 87, "1 GiB (db.t3.micro)");
    }

    #[test]
    fn aurora_r4_large_example_is_reproduced() {
        let estimate = default_max_connections(quarter_gib_memory(61), DEFAULT_CEILING);
        assert_within(estimate, 1660, "db.r4.large");
    }

    #[test]
    fn class_memory_is_below_nominal_and_grows() {
        let mut previous = 0;
        for gib in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1536] {
            let memory = provisioned_class_memory(gib);
            assert!(memory < u64::from(gib) * GIB && memory > previous);
            previous = memory;
        }
    }

    #[test]
    fn serverless_documented_points() {
        let at = |half| default_max_connections(serverless_class_memory(half), DEFAULT_CEILING);
        assert_eq!(at(2), 189);
        assert_eq!(at(32), 3360);
        assert_eq!(at(64), 5000);
        assert_eq!(at(512), 5000);
    }

    #[test]
    fn ceiling_applies() {
        assert_eq!(default_max_connections(u64::MAX, DEFAULT_CEILING), 5000);
        assert_eq!(default_max_connections(BYTES_PER_CONNECTION * 7, 5000), 7);
    }
}
