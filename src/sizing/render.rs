//! How a sizing result is shown: a table with the arithmetic and a config snippet for people,
//! one JSON object for scripts.

use super::budget::Plan;
use super::target::Target;
use serde::Serialize;
use std::fmt::Write;

/// Everything `pgferry sizing` computed; `--json` prints exactly this.
#[derive(Debug, Serialize)]
pub struct Report {
    /// What was sized.
    pub target: Target,
    /// How the connections were divided.
    pub plan: Plan,
    /// The ready-to-paste `[[databases]]` snippet.
    pub config_snippet: String,
}

impl Report {
    /// Bundles a target and its plan with the snippet derived from them.
    pub fn new(target: Target, plan: Plan) -> Report {
        let config_snippet = snippet(&target, &plan);
        Report {
            target,
            plan,
            config_snippet,
        }
    }

    /// The human-readable report.
    pub fn human(&self) -> String {
        let (t, p) = (&self.target, &self.plan);
        let mut out = String::new();
        let mut row = |label: &str, value: String| {
            let _ = writeln!(out, "{label:<34} {value}");
        };
        row(
            "instance class",
            format!("{} ({})", t.instance_class, t.kind),
        );
        row("memory", gib(t.memory_bytes));
        row(
            "DBInstanceClassMemory (estimated)",
            gib(t.class_memory_bytes),
        );
        row("default max_connections", t.max_connections.to_string());
        row(
            "superuser_reserved_connections",
            format!("- {}", p.superuser_reserved),
        );
        row(
            "rds.rds_superuser_reserved_conn.",
            format!("- {}", p.rds_superuser_reserved),
        );
        row("reserved (--reserved)", format!("- {}", p.extra_reserved));
        row("available", p.available.to_string());
        row(
            "budget",
            format!("{} ({} % of {})", p.budget, p.percent, p.available),
        );
        row(
            "per replica (max_db_connections)",
            format!("{} ({} / {} replicas)", p.per_replica, p.budget, p.replicas),
        );
        row(
            "per pool (pool_size)",
            format!("{} ({} / {} pools)", p.pool_size, p.per_replica, p.pools),
        );
        out.push('\n');
        out.push_str(&self.config_snippet);
        out
    }

    /// The report as one line of JSON.
    pub fn json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn snippet(t: &Target, p: &Plan) -> String {
    format!(
        "# pgferry sizing for {class}: max_connections {max} - {reserved} reserved = {available};\n\
         # {percent} % = {budget}; / {replicas} replicas = {per_replica}; / {pools} pools = {pool}\n\
         # (one pool per user; a database with backend_user has a single pool: --users 1)\n\
         [[databases]]\n\
         name = \"app\"        # your database\n\
         host = \"...\"        # your RDS endpoint\n\
         pool_size = {pool}\n\
         max_db_connections = {per_replica}\n",
        class = t.instance_class,
        max = p.max_connections,
        reserved = p.superuser_reserved + p.rds_superuser_reserved + p.extra_reserved,
        available = p.available,
        percent = p.percent,
        budget = p.budget,
        replicas = p.replicas,
        per_replica = p.per_replica,
        pools = p.pools,
        pool = p.pool_size,
    )
}
