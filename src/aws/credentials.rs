//! Credentials and region from the standard AWS environment variables.
//!
//! This is the first link of the AWS SDKs' default chain, the one Lambda and ECS tasks (and
//! `aws-vault exec`, `aws configure export-credentials`) provide. The rest of the chain
//! (shared config files, web identity, ECS container endpoint, EC2 IMDSv2) is not read yet.

use super::sigv4::Credentials;

/// Names of the variables read, for error messages and docs.
pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// The secret half of the key pair.
pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Present with temporary credentials.
pub const SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// The region variables, in the order the AWS SDKs consult them.
pub const REGION_VARIABLES: [&str; 2] = ["AWS_REGION", "AWS_DEFAULT_REGION"];

/// Credentials or region that the environment does not provide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Neither key variable is set.
    #[error(
        "no AWS credentials: set {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY} (and {SESSION_TOKEN} \
         for temporary credentials); other credential sources are not supported yet"
    )]
    Missing,
    /// One key variable is set without the other.
    #[error("incomplete AWS credentials: {present} is set but {missing} is not")]
    Incomplete {
        /// The variable that is set.
        present: &'static str,
        /// The variable that is missing.
        missing: &'static str,
    },
    /// No region on the command line nor in the environment.
    #[error("no AWS region: pass --region or set AWS_REGION or AWS_DEFAULT_REGION")]
    NoRegion,
}

/// Credentials from the variables `lookup` returns (empty counts as unset), so tests need not
/// touch the process environment.
pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Credentials, CredentialsError> {
    let get = |name: &str| lookup(name).filter(|value| !value.is_empty());
    match (get(ACCESS_KEY_ID), get(SECRET_ACCESS_KEY)) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token: get(SESSION_TOKEN),
        }),
        (None, None) => Err(CredentialsError::Missing),
        (Some(_), None) => Err(CredentialsError::Incomplete {
            present: ACCESS_KEY_ID,
            missing: SECRET_ACCESS_KEY,
        }),
        (None, Some(_)) => Err(CredentialsError::Incomplete {
            present: SECRET_ACCESS_KEY,
            missing: ACCESS_KEY_ID,
        }),
    }
}

/// The region: `explicit` if given, else AWS_REGION, else AWS_DEFAULT_REGION.
pub fn region(
    explicit: Option<&str>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, CredentialsError> {
    explicit
        .map(str::to_owned)
        .or_else(|| {
            REGION_VARIABLES
                .iter()
                .find_map(|name| lookup(name).filter(|value| !value.is_empty()))
        })
        .ok_or(CredentialsError::NoRegion)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn reads_keys_and_optional_session_token() {
        let plain = from_env(env(&[(ACCESS_KEY_ID, "A"), (SECRET_ACCESS_KEY, "S")])).unwrap();
        assert_eq!(
            (plain.access_key_id.as_str(), plain.session_token),
            ("A", None)
        );
        let temporary = from_env(env(&[
            (ACCESS_KEY_ID, "A"),
            (SECRET_ACCESS_KEY, "S"),
            (SESSION_TOKEN, "T"),
        ]))
        .unwrap();
        assert_eq!(temporary.session_token.as_deref(), Some("T"));
    }

    #[test]
    fn missing_or_half_credentials_name_the_variables() {
        assert_eq!(from_env(env(&[])), Err(CredentialsError::Missing));
        assert_eq!(
            from_env(env(&[(ACCESS_KEY_ID, ""), (SECRET_ACCESS_KEY, "")])),
            Err(CredentialsError::Missing)
        );
        let half = from_env(env(&[(ACCESS_KEY_ID, "A")])).unwrap_err();
        assert_eq!(
            half.to_string(),
            "incomplete AWS credentials: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"
        );
    }

    #[test]
    fn region_prefers_the_flag_then_aws_region() {
        let both = env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ]);
        assert_eq!(region(Some("ap-south-1"), &both).unwrap(), "ap-south-1");
        assert_eq!(region(None, &both).unwrap(), "eu-west-1");
        let fallback = env(&[("AWS_DEFAULT_REGION", "us-east-1")]);
        assert_eq!(region(None, fallback).unwrap(), "us-east-1");
        assert_eq!(region(None, env(&[])), Err(CredentialsError::NoRegion));
    }
}
