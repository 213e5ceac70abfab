//! The arithmetic from a server's `max_connections` to one pool's `pool_size`.
//!
//! Every step rounds down: the sum of all pools over all replicas must never exceed what the
//! server accepts, or the last pgferry to connect gets `53300 too_many_connections`.

use serde::Serialize;
use thiserror::Error;

/// PostgreSQL's default `superuser_reserved_connections`.
pub const SUPERUSER_RESERVED: u64 = 3;
/// RDS's default `rds.rds_superuser_reserved_connections` (slots for the rds_superuser role,
/// i.e. the master user; Aurora PostgreSQL and RDS PostgreSQL both set it).
pub const RDS_SUPERUSER_RESERVED: u64 = 2;

/// What the user asked for, besides the class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// pgferry replicas sharing the server (each gets an equal share).
    pub replicas: u64,
    /// Pools per replica: one per user when databases have no `backend_user`.
    pub pools: u64,
    /// Extra slots kept free for migrations, admin sessions, other services.
    pub reserved: u64,
    /// Share of the remaining slots pgferry may use, 1–100.
    pub percent: u64,
}

/// Each step of the computation, kept so output can show the arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The server's `max_connections`.
    pub max_connections: u64,
    /// `superuser_reserved_connections`.
    pub superuser_reserved: u64,
    /// `rds.rds_superuser_reserved_connections`.
    pub rds_superuser_reserved: u64,
    /// `--reserved`.
    pub extra_reserved: u64,
    /// `max_connections` minus all reserved slots.
    pub available: u64,
    /// `--percent`.
    pub percent: u64,
    /// `available × percent / 100`: what all pgferry replicas together may open.
    pub budget: u64,
    /// `--replicas`.
    pub replicas: u64,
    /// `budget / replicas`: one replica's share, its `max_db_connections`.
    pub per_replica: u64,
    /// `--users`: pools per replica.
    pub pools: u64,
    /// `per_replica / pools`: each pool's `pool_size`.
    pub pool_size: u64,
}

/// A request that cannot give every pool at least one connection.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BudgetError {
    /// A divisor or the percentage is out of range.
    #[error("{what} must be {range}, got {value}")]
    OutOfRange {
        what: &'static str,
        range: &'static str,
        value: u64,
    },
    /// Reserved slots leave nothing for pgferry.
    #[error("{reserved} reserved connections (3 superuser + 2 rds_superuser + {extra} --reserved) leave nothing of max_connections {max}")]
    NothingLeft { reserved: u64, extra: u64, max: u64 },
    /// The share is smaller than the number of pools.
    #[error("{per_replica} connections per replica ({budget} budget / {replicas} replicas) cannot give each of {pools} pools one connection; lower --reserved, --replicas or --users, or raise --percent")]
    PoolSizeZero {
        budget: u64,
        replicas: u64,
        per_replica: u64,
        pools: u64,
    },
}

impl Request {
    fn check(&self) -> Result<(), BudgetError> {
        let range = |what, range, value, ok: bool| match ok {
            true => Ok(()),
            false => Err(BudgetError::OutOfRange { what, range, value }),
        };
        range(
            "--replicas",
            "at least 1",
            self.replicas,
            self.replicas >= 1,
        )?;
        range("--users", "at least 1", self.pools, self.pools >= 1)?;
        let percent_ok = (1..=100).contains(&self.percent);
        range("--percent", "between 1 and 100", self.percent, percent_ok)
    }
}

/// Divides `max_connections` as `request` asks, or says why it cannot.
pub fn plan(max_connections: u64, request: Request) -> Result<Plan, BudgetError> {
    request.check()?;
    let reserved = SUPERUSER_RESERVED + RDS_SUPERUSER_RESERVED + request.reserved;
    let available = max_connections
        .checked_sub(reserved)
        .filter(|left| *left > 0)
        .ok_or(BudgetError::NothingLeft {
            reserved,
            extra: request.reserved,
            max: max_connections,
        })?;
    let budget = available * request.percent / 100;
    let per_replica = budget / request.replicas;
    let pool_size = per_replica / request.pools;
    if pool_size == 0 {
        return Err(BudgetError::PoolSizeZero {
            budget,
            replicas: request.replicas,
            per_replica,
            pools: request.pools,
        });
    }
    Ok(Plan {
        max_connections,
        superuser_reserved: SUPERUSER_RESERVED,
        rds_superuser_reserved: RDS_SUPERUSER_RESERVED,
        extra_reserved: request.reserved,
        available,
        percent: request.percent,
        budget,
        replicas: request.replicas,
        per_replica,
        pools: request.pools,
        pool_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(replicas: u64, pools: u64, reserved: u64, percent: u64) -> Request {
        Request {
            replicas,
            pools,
            reserved,
            percent,
        }
    }

    #[test]
    fn worked_example() {
        // 405 - (3 + 2 + 10) = 390; 80 % = 312; / 3 = 104; / 2 = 52
        let plan = plan(405, request(3, 2, 10, 80)).unwrap();
        assert_eq!(plan.available, 390);
        assert_eq!(plan.budget, 312);
        assert_eq!(plan.per_replica, 104);
        assert_eq!(plan.pool_size, 52);
    }

    #[test]
    fn every_step_rounds_down_and_never_overcommits() {
        for max in [6, 50, 87, 189, 405, 1660, 5000] {
            for (replicas, pools) in [(1, 1), (3, 2), (7, 3)] {
                if let Ok(p) = plan(max, request(replicas, pools, 4, 73)) {
                    assert!(p.pool_size * pools * replicas <= p.budget);
                    assert!(p.budget + 5 + 4 <= max);
                }
            }
        }
    }

    #[test]
    fn reserved_at_or_above_max_is_an_error() {
        let error = plan(87, request(1, 1, 82, 80)).unwrap_err();
        assert_eq!(
            error,
            BudgetError::NothingLeft {
                reserved: 87,
                extra: 82,
                max: 87
            }
        );
        assert!(plan(87, request(1, 1, 500, 80)).is_err());
    }

    #[test]
    fn too_many_pools_is_an_error() {
        let error = plan(87, request(10, 10, 10, 80)).unwrap_err();
        assert!(matches!(
            error,
            BudgetError::PoolSizeZero {
                per_replica: 5,
                pools: 10,
                ..
            }
        ));
    }

    #[test]
    fn out_of_range_arguments() {
        assert!(matches!(
            plan(405, request(0, 1, 0, 80)),
            Err(BudgetError::OutOfRange {
                what: "--replicas",
                ..
            })
        ));
        assert!(matches!(
            plan(405, request(1, 0, 0, 80)),
            Err(BudgetError::OutOfRange {
                what: "--users",
                ..
            })
        ));
        assert!(matches!(
            plan(405, request(1, 1, 0, 0)),
            Err(BudgetError::OutOfRange {
                what: "--percent",
                ..
            })
        ));
        assert!(matches!(
            plan(405, request(1, 1, 0, 101)),
            Err(BudgetError::OutOfRange {
                what: "--percent",
                ..
            })
        ));
        assert!(plan(405, request(1, 1, 0, 100)).is_ok());
    }
}
