//! AWS Signature Version 4, query-string ("presigned URL") form, for a GET signed on `host`.
//!
//! Follows AWS's SigV4 documentation and matches botocore's `SigV4QueryAuth` byte for byte:
//! the URL lists the operation's parameters in the caller's order, then the `X-Amz-*`
//! parameters (Algorithm, Credential, Date, Expires, SignedHeaders, Security-Token), then
//! `X-Amz-Signature`; the canonical query string is the same pairs, already encoded, sorted by
//! key then value; the only signed header is `host`. The payload hash is a choice
//! ([`Payload`]): S3 presigns with `UNSIGNED-PAYLOAD`, while botocore's generic query signer,
//! which RDS tokens use, hashes the empty body.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

use super::time::AmzDate;

type HmacSha256 = Hmac<Sha256>;

/// The caller's AWS credentials. A session token is present for temporary credentials
/// (assumed roles, Lambda, ECS) and must then travel with the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// AWS_ACCESS_KEY_ID: public, part of the credential scope.
    pub access_key_id: String,
    /// AWS_SECRET_ACCESS_KEY: only used to derive the signing key.
    pub secret_access_key: String,
    /// AWS_SESSION_TOKEN: sent as `X-Amz-Security-Token` when present.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    /// Never prints the secret or the session token (they end up in logs otherwise).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What the canonical request says about the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// The SHA-256 of an empty body: what botocore signs for RDS tokens (and SigV4 query
    /// signing outside S3).
    Empty,
    /// The literal `UNSIGNED-PAYLOAD`: S3 presigned URLs, whose body is unknown when signing.
    Unsigned,
}

impl Payload {
    fn hash(self) -> &'static str {
        match self {
            Payload::Empty => "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            Payload::Unsigned => "UNSIGNED-PAYLOAD",
        }
    }
}

/// One GET to presign: where it goes and what it asks for.
#[derive(Debug, Clone, Copy)]
pub struct PresignRequest<'a> {
    /// The URL's authority as the caller wrote it, e.g. `db.example.com:5432`.
    pub authority: &'a str,
    /// The `host` header value that is signed (lowercase host, port unless it is 443).
    pub host_header: &'a str,
    /// The absolute path, already normalised, e.g. `/`.
    pub path: &'a str,
    /// The operation's query parameters, unencoded, in URL order.
    pub params: &'a [(&'a str, &'a str)],
    /// The service name of the credential scope, e.g. `rds-db`.
    pub service: &'a str,
    /// The region of the credential scope, e.g. `eu-west-1`.
    pub region: &'a str,
    /// Seconds the signature stays valid (`X-Amz-Expires`).
    pub expires_seconds: u32,
    /// The payload hash of the canonical request.
    pub payload: Payload,
}

/// The presigned URL without its scheme: `authority path ? query & X-Amz-Signature=…`.
pub fn presign_get(request: &PresignRequest<'_>, credentials: &Credentials, at: AmzDate) -> String {
    let scope = format!(
        "{}/{}/{}/aws4_request",
        at.date(),
        request.region,
        request.service
    );
    let query = query_string(request, credentials, &scope, at);
    let canonical = format!(
        "GET\n{}\n{}\nhost:{}\n\nhost\n{}",
        encode_path(request.path),
        canonical_query(&query),
        request.host_header,
        request.payload.hash()
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{at}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(&credentials.secret_access_key, at, request);
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    format!(
        "{}{}?{query}&X-Amz-Signature={signature}",
        request.authority,
        encode_path(request.path)
    )
}

/// The URL's query without the signature: operation parameters, then the SigV4 parameters.
fn query_string(
    request: &PresignRequest<'_>,
    credentials: &Credentials,
    scope: &str,
    at: AmzDate,
) -> String {
    let credential = format!("{}/{scope}", credentials.access_key_id);
    let date = at.to_string();
    let expires = request.expires_seconds.to_string();
    let mut pairs: Vec<(&str, &str)> = request.params.to_vec();
    pairs.extend([
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", credential.as_str()),
        ("X-Amz-Date", date.as_str()),
        ("X-Amz-Expires", expires.as_str()),
        ("X-Amz-SignedHeaders", "host"),
    ]);
    if let Some(token) = &credentials.session_token {
        pairs.push(("X-Amz-Security-Token", token));
    }
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical query string: the encoded pairs sorted by key, then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
fn signing_key(secret: &str, at: AmzDate, request: &PresignRequest<'_>) -> Vec<u8> {
    let date_key = hmac(format!("AWS4{secret}").as_bytes(), at.date().as_bytes());
    let region_key = hmac(&date_key, request.region.as_bytes());
    let service_key = hmac(&region_key, request.service.as_bytes());
    hmac(&service_key, b"aws4_request")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// SigV4 URI encoding: every byte of the UTF-8 text except `A-Za-z0-9-._~` becomes `%XX`.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A path encoded segment by segment (slashes kept).
fn encode_path(path: &str) -> String {
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests;
