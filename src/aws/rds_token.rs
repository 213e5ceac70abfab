//! RDS IAM database authentication tokens: what `aws rds generate-db-auth-token` prints.
//!
//! The token is a SigV4 presigned URL, without its scheme, for
//! `GET https://HOST:PORT/?Action=connect&DBUser=USER` in service `rds-db`, valid 15 minutes,
//! with the empty body's SHA-256 as payload hash (as botocore's `generate_db_auth_token`).
//! RDS checks it as the password of a user granted `rds_iam`. Inputs are checked here so a
//! typo gives a precise message instead of a token RDS rejects with "PAM authentication failed".

use super::sigv4::{presign_get, Credentials, Payload, PresignRequest};
use super::time::AmzDate;

/// How long a token is valid: RDS's fixed 15 minutes (botocore signs the same).
pub const TOKEN_LIFETIME_SECONDS: u32 = 900;

/// The SigV4 service name RDS IAM authentication is scoped to.
const SERVICE: &str = "rds-db";

/// What a token is for: the database endpoint and user, and the endpoint's region.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    /// The endpoint's DNS name (or IPv4 address, or `[IPv6]`), as clients connect to it.
    pub host: &'a str,
    /// The endpoint's port.
    pub port: u16,
    /// The database user (granted `rds_iam`).
    pub user: &'a str,
    /// The endpoint's AWS region, e.g. `eu-west-1`.
    pub region: &'a str,
}

/// An input no valid token can be made for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The host is empty or is not a DNS name, IPv4 address or bracketed IPv6 address.
    #[error(
        "invalid host {0:?}: expected a DNS name, an IPv4 address or a [bracketed] IPv6 address"
    )]
    Host(String),
    /// Port 0 cannot be connected to.
    #[error("invalid port 0: expected 1-65535")]
    Port,
    /// The user is empty.
    #[error("the database user is empty")]
    User,
    /// The region is empty or not of the form `eu-west-1`.
    #[error("invalid region {0:?}: expected an AWS region name such as eu-west-1")]
    Region(String),
}

/// The token for `request`, signed with `credentials` at time `at` (a parameter so the result
/// is reproducible; callers pass [`AmzDate::now`]).
pub fn generate(
    request: &TokenRequest<'_>,
    credentials: &Credentials,
    at: AmzDate,
) -> Result<String, TokenError> {
    check(request)?;
    let authority = format!("{}:{}", request.host, request.port);
    // The signed host header is lowercase and omits the port https implies (as botocore does).
    let host = request.host.to_ascii_lowercase();
    let host_header = if request.port == 443 {
        host
    } else {
        format!("{host}:{}", request.port)
    };
    let presign = PresignRequest {
        authority: &authority,
        host_header: &host_header,
        path: "/",
        params: &[("Action", "connect"), ("DBUser", request.user)],
        service: SERVICE,
        region: request.region,
        expires_seconds: TOKEN_LIFETIME_SECONDS,
        // Not UNSIGNED-PAYLOAD: botocore's RDSSigner hashes the empty body, and RDS accepts it.
        payload: Payload::Empty,
    };
    Ok(presign_get(&presign, credentials, at))
}

fn check(request: &TokenRequest<'_>) -> Result<(), TokenError> {
    if !valid_host(request.host) {
        return Err(TokenError::Host(request.host.to_owned()));
    }
    if request.port == 0 {
        return Err(TokenError::Port);
    }
    if request.user.is_empty() {
        return Err(TokenError::User);
    }
    let region_chars = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if request.region.is_empty() || !request.region.chars().all(region_chars) {
        return Err(TokenError::Region(request.region.to_owned()));
    }
    Ok(())
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let name_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    !host.is_empty() && host.chars().all(name_chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    fn request<'a>(host: &'a str, port: u16, user: &'a str) -> TokenRequest<'a> {
        TokenRequest {
            host,
            port,
            user,
            region: "us-east-1",
        }
    }

    fn at() -> AmzDate {
        AmzDate::parse("20150830T123600Z").unwrap()
    }

    #[test]
    fn token_matches_botocore_known_answer() {
        // botocore 1.43.11 generate_db_auth_token with the same inputs and a frozen clock
        // (tests/rds_token.rs compares many more cases live).
        let token = generate(
            &request("db.example.com", 5432, "app"),
            &credentials(),
            at(),
        );
        assert_eq!(
            token.unwrap(),
            "db.example.com:5432/?Action=connect&DBUser=app\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20150830T123600Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=40a8f2208bedeaa9386084480e0d11e7f3e4d8192e41c52c7c52b01de7c28849"
        );
    }

    #[test]
    fn session_token_is_encoded_before_the_signature() {
        let mut credentials = credentials();
        credentials.session_token = Some("tok/en+=".into());
        let token = generate(&request("h", 5432, "u"), &credentials, at()).unwrap();
        assert!(
            token.contains(
                "&X-Amz-SignedHeaders=host&X-Amz-Security-Token=tok%2Fen%2B%3D&X-Amz-Signature="
            ),
            "{token}"
        );
    }

    #[test]
    fn signature_depends_on_every_input() {
        let base = generate(&request("h", 5432, "u"), &credentials(), at()).unwrap();
        let signature = |token: &str| token.rsplit('=').next().unwrap_or("").to_owned();
        let others = [
            generate(&request("h", 5433, "u"), &credentials(), at()),
            generate(&request("h", 5432, "v"), &credentials(), at()),
            generate(&request("g", 5432, "u"), &credentials(), at()),
            generate(
                &request("h", 5432, "u"),
                &credentials(),
                AmzDate::from_unix(0),
            ),
        ];
        for other in others {
            assert_ne!(signature(&other.unwrap()), signature(&base));
        }
    }

    #[test]
    fn bad_inputs_are_named() {
        let creds = credentials();
        for host in ["", "db host", "db/x", "::1", "[nope]", "h@x"] {
            let error = generate(&request(host, 5432, "u"), &creds, at());
            assert_eq!(error, Err(TokenError::Host(host.into())));
        }
        assert_eq!(
            generate(&request("h", 0, "u"), &creds, at()),
            Err(TokenError::Port)
        );
        assert_eq!(
            generate(&request("h", 1, ""), &creds, at()),
            Err(TokenError::User)
        );
        let mut bad_region = request("h", 1, "u");
        bad_region.region = "EU west";
        assert_eq!(
            generate(&bad_region, &creds, at()),
            Err(TokenError::Region("EU west".into()))
        );
        assert!(generate(&request("[::1]", 1, "u"), &creds, at()).is_ok());
    }
}
