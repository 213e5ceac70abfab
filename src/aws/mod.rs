//! AWS request signing for RDS IAM database authentication (issue 13 §2).
//!
//! RDS accepts, as the password of a user granted `rds_iam`, a short-lived token: a SigV4
//! presigned URL for the `rds-db:connect` action. [`rds_token::generate`] builds it from
//! explicit inputs (including the time, so it is testable); [`credentials`] reads the caller's
//! keys from the environment; [`command`] is `pgferry rds-token`.
//!
//! SigV4 is hand-written on the `sha2` and `hmac` crates pgferry already uses for SCRAM rather
//! than taken from the AWS SDK's `aws-sigv4` + `aws-credential-types` (1.6 / 1.3): those pull
//! 53 crates, 19 of them new to pgferry (the aws-smithy-* runtime, `time`, `futures-util`,
//! SIMD base64...), about 19 s of clean debug build on 2 cores, while presigning one GET with
//! one signed header is ~200 lines here. It is checked against AWS's published SigV4 examples
//! (unit tests) and byte for byte against botocore (tests/rds_token.rs).

pub mod command;
pub mod credentials;
pub mod rds_token;
pub mod sigv4;
pub mod time;
