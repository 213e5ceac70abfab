//! The RDS / Aurora instance classes pgferry knows, with their nominal memory.
//!
//! Memory comes from AWS's published DB instance class specifications ("Hardware specifications
//! for DB instance classes", Amazon RDS User Guide): burstable classes list their memory per
//! size; the general-purpose (m) families have 4 GiB per vCPU and the memory-optimised (r)
//! families 8 GiB per vCPU, with the vCPU count fixed by the size name. A table of families and
//! their sizes is shorter and easier to audit than one row per class.

use thiserror::Error;

/// Why a family exists in the table: printed so the user sees what kind of class they picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// t3 / t4g: CPU credits, small memory; the usual Lambda-backend dev/test class.
    Burstable,
    /// m families: 4 GiB per vCPU.
    GeneralPurpose,
    /// r families: 8 GiB per vCPU.
    MemoryOptimised,
}

impl Kind {
    /// Human name for output.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Burstable => "burstable",
            Kind::GeneralPurpose => "general purpose",
            Kind::MemoryOptimised => "memory optimised",
        }
    }
}

/// One instance family (`db.m6g`) and the sizes RDS offers in it.
struct Family {
    prefix: &'static str,
    kind: Kind,
    /// (size suffix, nominal memory in GiB).
    sizes: &'static [(&'static str, u32)],
}

/// Burstable sizes: memory is listed per size, not per vCPU.
const T_SIZES: &[(&str, u32)] = &[
    ("micro", 1),
    ("small", 2),
    ("medium", 4),
    ("large", 8),
    ("xlarge", 16),
    ("2xlarge", 32),
];

macro_rules! sized {
    ($per_vcpu:expr; $($size:literal => $vcpu:literal),+ $(,)?) => {
        &[$(($size, $vcpu * $per_vcpu)),+]
    };
}

const M_GRAVITON: &[(&str, u32)] = sized!(4; "large" => 2, "xlarge" => 4, "2xlarge" => 8,
    "4xlarge" => 16, "8xlarge" => 32, "12xlarge" => 48, "16xlarge" => 64);
const M5: &[(&str, u32)] = sized!(4; "large" => 2, "xlarge" => 4, "2xlarge" => 8,
    "4xlarge" => 16, "8xlarge" => 32, "12xlarge" => 48, "16xlarge" => 64, "24xlarge" => 96);
const M6I: &[(&str, u32)] = sized!(4; "large" => 2, "xlarge" => 4, "2xlarge" => 8,
    "4xlarge" => 16, "8xlarge" => 32, "12xlarge" => 48, "16xlarge" => 64, "24xlarge" => 96,
    "32xlarge" => 128);
const M7I: &[(&str, u32)] = sized!(4; "large" => 2, "xlarge" => 4, "2xlarge" => 8,
    "4xlarge" => 16, "8xlarge" => 32, "12xlarge" => 48, "16xlarge" => 64, "24xlarge" => 96,
    "48xlarge" => 192);
const R_GRAVITON: &[(&str, u32)] = sized!(8; "large" => 2, "xlarge" => 4, "2xlarge" => 8,
    "4xlarge" => 16, "8xlarge" => 32, "12xlarge" => 48, "16xlarge" => 64);
const R5: &[(&str, u32)] = sized!(8; "large" => 2, "xlarge" => 4, "2xlarge" => 8,
    "4xlarge" => 16, "8xlarge" => 32, "12xlarge" => 48, "16xlarge" => 64, "24xlarge" => 96);
const R6I: &[(&str, u32)] = sized!(8; "large" => 2, "xlarge" => 4, "2xlarge" => 8,
    "4xlarge" => 16, "8xlarge" => 32, "12xlarge" => 48, "16xlarge" => 64, "24xlarge" => 96,
    "32xlarge" => 128);
const R7I: &[(&str, u32)] = sized!(8; "large" => 2, "xlarge" => 4, "2xlarge" => 8,
    "4xlarge" => 16, "8xlarge" => 32, "12xlarge" => 48, "16xlarge" => 64, "24xlarge" => 96,
    "48xlarge" => 192);

const FAMILIES: &[Family] = &[
    Family {
        prefix: "db.t3",
        kind: Kind::Burstable,
        sizes: T_SIZES,
    },
    Family {
        prefix: "db.t4g",
        kind: Kind::Burstable,
        sizes: T_SIZES,
    },
    Family {
        prefix: "db.m5",
        kind: Kind::GeneralPurpose,
        sizes: M5,
    },
    Family {
        prefix: "db.m6g",
        kind: Kind::GeneralPurpose,
        sizes: M_GRAVITON,
    },
    Family {
        prefix: "db.m6i",
        kind: Kind::GeneralPurpose,
        sizes: M6I,
    },
    Family {
        prefix: "db.m7g",
        kind: Kind::GeneralPurpose,
        sizes: M_GRAVITON,
    },
    Family {
        prefix: "db.m7i",
        kind: Kind::GeneralPurpose,
        sizes: M7I,
    },
    Family {
        prefix: "db.r5",
        kind: Kind::MemoryOptimised,
        sizes: R5,
    },
    Family {
        prefix: "db.r6g",
        kind: Kind::MemoryOptimised,
        sizes: R_GRAVITON,
    },
    Family {
        prefix: "db.r6i",
        kind: Kind::MemoryOptimised,
        sizes: R6I,
    },
    Family {
        prefix: "db.r7g",
        kind: Kind::MemoryOptimised,
        sizes: R_GRAVITON,
    },
    Family {
        prefix: "db.r7i",
        kind: Kind::MemoryOptimised,
        sizes: R7I,
    },
];

/// The Aurora Serverless v2 instance class name (`aws rds ... --db-instance-class`).
pub const SERVERLESS: &str = "db.serverless";

/// A provisioned instance class found in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceClass {
    /// Family prefix, e.g. `db.t4g`.
    pub family: &'static str,
    /// Size suffix, e.g. `medium`.
    pub size: &'static str,
    /// Family kind.
    pub kind: Kind,
    /// Nominal memory from AWS's specification, GiB.
    pub memory_gib: u32,
}

/// A class name that is not in the table.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClassError {
    /// The family (`db.x2g`) is not known at all.
    #[error("unknown instance class {name:?}: known families are {families}, and {serverless} (Aurora Serverless v2, with --max-acu)", families = known_families(), serverless = SERVERLESS)]
    UnknownFamily { name: String },
    /// The family is known but not this size.
    #[error("unknown instance class {name:?}: {family} comes in {sizes}")]
    UnknownSize {
        name: String,
        family: &'static str,
        sizes: String,
    },
}

/// Comma-separated family names, for error messages and `--help`.
pub fn known_families() -> String {
    let names: Vec<String> = FAMILIES.iter().map(|f| format!("{}.*", f.prefix)).collect();
    names.join(", ")
}

/// Looks `name` up (case-insensitive, surrounding spaces ignored).
pub fn lookup(name: &str) -> Result<InstanceClass, ClassError> {
    let wanted = name.trim().to_ascii_lowercase();
    let (prefix, size) = wanted.rsplit_once('.').unwrap_or((wanted.as_str(), ""));
    let Some(family) = FAMILIES.iter().find(|f| f.prefix == prefix) else {
        return Err(ClassError::UnknownFamily {
            name: name.to_owned(),
        });
    };
    family
        .sizes
        .iter()
        .position(|(s, _)| *s == size)
        .map(|i| class_at(family, i))
        .ok_or_else(|| ClassError::UnknownSize {
            name: name.to_owned(),
            family: family.prefix,
            sizes: family
                .sizes
                .iter()
                .map(|(s, _)| *s)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

impl InstanceClass {
    /// Canonical name, e.g. `db.t4g.medium`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.family, self.size)
    }
}

fn class_at(family: &'static Family, index: usize) -> InstanceClass {
    let (size, memory_gib) = family.sizes[index];
    InstanceClass {
        family: family.prefix,
        size,
        kind: family.kind,
        memory_gib,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<InstanceClass> {
        FAMILIES
            .iter()
            .flat_map(|f| (0..f.sizes.len()).map(move |i| class_at(f, i)))
            .collect()
    }

    #[test]
    fn every_family_the_issue_names_is_present() {
        for prefix in [
            "db.t3", "db.t4g", "db.m5", "db.m6g", "db.m6i", "db.m7g", "db.m7i", "db.r5", "db.r6g",
            "db.r6i", "db.r7g", "db.r7i",
        ] {
            assert!(FAMILIES.iter().any(|f| f.prefix == prefix), "{prefix}");
            assert!(known_families().contains(prefix));
        }
    }

    #[test]
    fn sizes_grow_in_memory_within_each_family() {
        for family in FAMILIES {
            let memory: Vec<u32> = family.sizes.iter().map(|(_, gib)| *gib).collect();
            assert!(memory.windows(2).all(|w| w[0] < w[1]), "{}", family.prefix);
        }
    }

    #[test]
    fn published_memory_of_sample_classes() {
        let gib = |name| lookup(name).unwrap().memory_gib;
        assert_eq!(gib("db.t3.micro"), 1);
        assert_eq!(gib("db.t4g.medium"), 4);
        assert_eq!(gib("db.m5.large"), 8);
        assert_eq!(gib("db.m5.24xlarge"), 384);
        assert_eq!(gib("db.m6g.16xlarge"), 256);
        assert_eq!(gib("db.m7i.48xlarge"), 768);
        assert_eq!(gib("db.r5.large"), 16);
        assert_eq!(gib("db.r6g.xlarge"), 32);
        assert_eq!(gib("db.r6i.32xlarge"), 1024);
        assert_eq!(gib("db.r7i.48xlarge"), 1536);
        assert_eq!(all().len(), 92); // 2 × 6 burstable + 5 m + 5 r families
    }

    #[test]
    fn lookup_is_case_insensitive_and_errors_are_precise() {
        assert_eq!(lookup("DB.R7G.LARGE").unwrap().name(), "db.r7g.large");
        let unknown = lookup("db.x2g.large").unwrap_err().to_string();
        assert!(
            unknown.contains("db.t3.*") && unknown.contains("db.r7i.*"),
            "{unknown}"
        );
        assert!(unknown.contains("db.serverless"), "{unknown}");
        let size = lookup("db.t4g.huge").unwrap_err().to_string();
        assert!(
            size.contains("micro, small, medium, large, xlarge, 2xlarge"),
            "{size}"
        );
        assert!(matches!(lookup(""), Err(ClassError::UnknownFamily { .. })));
    }
}
