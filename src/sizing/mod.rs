//! `pgferry sizing`: how large each pool may be in front of a given RDS / Aurora instance class.
//!
//! RDS derives `max_connections` from the instance's memory; every pgferry replica and every
//! pool shares that budget with superuser slots and the operator's own sessions. This command
//! does the division offline, before deploying, and prints the arithmetic so it can be checked.

mod budget;
mod classes;
mod memory;
mod render;
mod target;

use budget::{BudgetError, Request};
use clap::Args;
use render::Report;
use std::process::ExitCode;
use target::{Acu, TargetError};
use thiserror::Error;

/// Arguments of `pgferry sizing`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SizingArgs {
    /// RDS instance class (db.t3.*, db.t4g.*, db.m5/m6g/m6i/m7g/m7i.*, db.r5/r6g/r6i/r7g/r7i.*)
    /// or db.serverless (Aurora Serverless v2, with --max-acu).
    #[arg(long, value_name = "CLASS")]
    pub instance_class: String,
    /// Aurora Serverless v2 maximum capacity in ACUs (1 ACU = 2 GiB), steps of 0.5.
    #[arg(long, value_name = "ACU", value_parser = Acu::parse)]
    pub max_acu: Option<Acu>,
    /// Aurora Serverless v2 minimum capacity in ACUs [default: 0.5]; below 1, Aurora caps
    /// max_connections at 2000.
    #[arg(long, value_name = "ACU", value_parser = Acu::parse)]
    pub min_acu: Option<Acu>,
    /// pgferry replicas sharing the database.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub replicas: u64,
    /// Pools per replica: one per user (databases without backend_user).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub users: u64,
    /// Connections kept free for migrations, admin sessions and other clients.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub reserved: u64,
    /// Share of the remaining connections pgferry may use, 1-100.
    #[arg(long, value_name = "PERCENT", default_value_t = 80)]
    pub percent: u64,
    /// Print one JSON object instead of the table (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// Why no pool size could be computed.
#[derive(Debug, Error)]
pub enum SizingError {
    /// The class or capacity is not usable.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The numbers leave no connection for a pool.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// Serialising the report failed (not expected for plain numbers and strings).
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Computes the report text (human or JSON) for `args`.
pub fn report(args: &SizingArgs) -> Result<String, SizingError> {
    let target = target::resolve(&args.instance_class, args.min_acu, args.max_acu)?;
    let request = Request {
        replicas: args.replicas,
        pools: args.users,
        reserved: args.reserved,
        percent: args.percent,
    };
    let plan = budget::plan(target.max_connections, request)?;
    let report = Report::new(target, plan);
    match args.json {
        true => Ok(report.json()? + "\n"),
        false => Ok(report.human()),
    }
}

/// Runs the command: the report on stdout, or the error on stderr with exit code 2 (a usage
/// error, like clap's own).
pub fn main(args: &SizingArgs) -> ExitCode {
    match report(args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
