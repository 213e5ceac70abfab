//! `pgferry rds-token`: print an RDS IAM authentication token, like
//! `aws rds generate-db-auth-token`, without needing the AWS CLI in the image.

use std::process::ExitCode;

use clap::Args;

use super::credentials::{self, CredentialsError};
use super::rds_token::{self, TokenError, TokenRequest};
use super::time::{AmzDate, TimestampError};

/// Arguments of `pgferry rds-token`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RdsTokenArgs {
    /// The RDS endpoint (DNS name) clients connect to.
    #[arg(long, value_name = "HOST")]
    pub host: String,
    /// The endpoint's port.
    #[arg(long, value_name = "PORT", default_value_t = 5432)]
    pub port: u16,
    /// The database user, granted the rds_iam role.
    #[arg(long, value_name = "USER")]
    pub user: String,
    /// The endpoint's region [default: AWS_REGION, else AWS_DEFAULT_REGION].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Sign as of this UTC time (YYYYMMDDTHHMMSSZ) instead of now: reproducible tokens for
    /// tests and comparisons with other signers. Hidden: a token from the past is useless.
    #[arg(long, value_name = "TIME", hide = true)]
    pub timestamp: Option<String>,
}

/// Why no token was printed.
#[derive(Debug, thiserror::Error)]
pub enum RdsTokenError {
    /// Credentials or region missing from the environment.
    #[error(transparent)]
    Environment(#[from] CredentialsError),
    /// The --timestamp value is malformed.
    #[error(transparent)]
    Timestamp(#[from] TimestampError),
    /// Host, port, user or region are unusable.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Runs the command: the token on stdout, or an error on stderr and exit status 2.
pub fn run(args: &RdsTokenArgs) -> ExitCode {
    match token(args, |name| std::env::var(name).ok()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("pgferry rds-token: {error}");
            ExitCode::from(2)
        }
    }
}

/// The token `args` ask for, reading the environment through `lookup`.
pub fn token(
    args: &RdsTokenArgs,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, RdsTokenError> {
    let at = match &args.timestamp {
        Some(text) => AmzDate::parse(text)?,
        None => AmzDate::now(),
    };
    let region = credentials::region(args.region.as_deref(), &lookup)?;
    let credentials = credentials::from_env(&lookup)?;
    let request = TokenRequest {
        host: &args.host,
        port: args.port,
        user: &args.user,
        region: &region,
    };
    Ok(rds_token::generate(&request, &credentials, at)?)
}
