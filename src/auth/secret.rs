//! SCRAM-SHA-256 verifiers in PostgreSQL's `pg_authid` format.
//!
//! A verifier holds what a server needs to check a SCRAM proof (StoredKey) and to prove itself
//! to the client (ServerKey), never the password. Deriving it costs one PBKDF2 run, which we do
//! once per user at startup so that every login costs only a handful of HMACs.
//!
//! Password normalisation: PostgreSQL runs SASLprep on the password before PBKDF2. We use the
//! raw UTF-8 bytes instead. The two agree for every ASCII password and for any password that
//! SASLprep leaves unchanged; a non-ASCII password that SASLprep would rewrite (e.g.
//! non-NFKC-normalised text, or mapped-to-nothing characters) yields a different verifier than
//! PostgreSQL's for the same text.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::digest::{Key, KeyInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Mechanism-name prefix of a verifier string (and the SASL mechanism we offer).
const PREFIX: &str = "SCRAM-SHA-256$";
/// Iteration count PostgreSQL uses by default (`scram_iterations`); also our default.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Salt length PostgreSQL generates.
const SALT_LEN: usize = 16;
/// SHA-256 output length: the size of StoredKey, ServerKey and a client proof.
pub(crate) const KEY_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Why a verifier string was rejected; each variant names the part that is wrong so that a
/// config error points the operator at the exact mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The string is not a SCRAM-SHA-256 verifier at all (e.g. an md5 hash or a password).
    #[error("does not start with \"SCRAM-SHA-256$\"")]
    BadPrefix,
    /// Separators are missing or misplaced.
    #[error("expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>")]
    BadLayout,
    /// The iteration count is not a decimal integer in 1..=4294967295.
    #[error("iteration count {0:?} is not an integer between 1 and 4294967295")]
    BadIterations(String),
    /// A field is not valid standard (padded) base64.
    #[error("{field} is not valid base64")]
    BadBase64 {
        /// `salt`, `StoredKey` or `ServerKey`.
        field: &'static str,
    },
    /// The salt decodes to zero bytes, which clients cannot use.
    #[error("salt is empty")]
    EmptySalt,
    /// A key does not decode to a SHA-256 sized value.
    #[error("{field} decodes to {len} bytes, expected 32")]
    WrongKeyLength {
        /// `StoredKey` or `ServerKey`.
        field: &'static str,
        /// Decoded length found.
        len: usize,
    },
}

/// A parsed SCRAM-SHA-256 verifier: everything the server side of a SCRAM login needs.
///
/// `Display` writes the exact `pg_authid` text, so a verifier round-trips through
/// [`ScramSecret::parse`] and can be pasted into PostgreSQL (`ALTER ROLE ... PASSWORD '...'`).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    pub(crate) iterations: u32,
    pub(crate) salt: Vec<u8>,
    pub(crate) stored_key: [u8; KEY_LEN],
    pub(crate) server_key: [u8; KEY_LEN],
}

impl ScramSecret {
    /// Parses `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`.
    pub fn parse(text: &str) -> Result<ScramSecret, SecretError> {
        let rest = text.strip_prefix(PREFIX).ok_or(SecretError::BadPrefix)?;
        let (params, keys) = rest.split_once('$').ok_or(SecretError::BadLayout)?;
        let (iterations, salt) = params.split_once(':').ok_or(SecretError::BadLayout)?;
        let (stored_key, server_key) = keys.split_once(':').ok_or(SecretError::BadLayout)?;
        let salt = decode_field(salt, "salt")?;
        if salt.is_empty() {
            return Err(SecretError::EmptySalt);
        }
        Ok(ScramSecret {
            iterations: parse_iterations(iterations)?,
            salt,
            stored_key: decode_key(stored_key, "StoredKey")?,
            server_key: decode_key(server_key, "ServerKey")?,
        })
    }

    /// Derives a verifier with a fresh random 16-byte salt (what PostgreSQL does on
    /// `ALTER ROLE ... PASSWORD`). Costs one PBKDF2 run of `iterations` rounds; an iteration
    /// count of 0 is treated as 1.
    pub fn from_password(password: &str, iterations: u32) -> ScramSecret {
        let salt: [u8; SALT_LEN] = rand::random();
        Self::from_password_with_salt(password, &salt, iterations)
    }

    /// Deterministic form of [`ScramSecret::from_password`] for tests, benchmarks and
    /// reproducing a known verifier. `salt` must be non-empty for the result to round-trip
    /// through `parse`; an iteration count of 0 is treated as 1.
    pub fn from_password_with_salt(password: &str, salt: &[u8], iterations: u32) -> ScramSecret {
        let iterations = iterations.max(1);
        let salted = pbkdf2_sha256(password.as_bytes(), salt, iterations);
        let client_key = hmac_sha256(&salted, &[b"Client Key"]);
        ScramSecret {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac_sha256(&salted, &[b"Server Key"]),
        }
    }

    /// PBKDF2 iteration count the client must run (sent as `i=`).
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Salt sent to the client (as `s=`).
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// Checks a client proof over `auth_message` (RFC 5802: ClientKey = proof XOR
    /// HMAC(StoredKey, AuthMessage); valid when SHA-256(ClientKey) == StoredKey, compared in
    /// constant time). On success returns the ServerSignature that proves to the client that
    /// we hold the verifier.
    pub(crate) fn verify_proof(
        &self,
        auth_message: &[u8],
        proof: &[u8; KEY_LEN],
    ) -> Option<[u8; KEY_LEN]> {
        let signature = hmac_sha256(&self.stored_key, &[auth_message]);
        let mut client_key = *proof;
        client_key
            .iter_mut()
            .zip(signature)
            .for_each(|(k, s)| *k ^= s);
        let stored_key: [u8; KEY_LEN] = Sha256::digest(client_key).into();
        if !bool::from(stored_key.ct_eq(&self.stored_key)) {
            return None;
        }
        Some(hmac_sha256(&self.server_key, &[auth_message]))
    }
}

impl fmt::Display for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

/// Keys are redacted: whoever holds StoredKey and ServerKey can impersonate this server.
impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .field("salt", &STANDARD.encode(&self.salt))
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// Accepts only plain decimal digits (no sign, no spaces), unlike `u32::from_str`.
fn parse_iterations(text: &str) -> Result<u32, SecretError> {
    let bad = || SecretError::BadIterations(text.to_string());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad()),
    }
}

fn decode_field(text: &str, field: &'static str) -> Result<Vec<u8>, SecretError> {
    STANDARD
        .decode(text)
        .map_err(|_| SecretError::BadBase64 { field })
}

fn decode_key(text: &str, field: &'static str) -> Result<[u8; KEY_LEN], SecretError> {
    let bytes = decode_field(text, field)?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| SecretError::WrongKeyLength { field, len })
}

/// HMAC-SHA-256 keyed with `key`, built without a fallible constructor: the key is
/// pre-processed exactly as RFC 2104 does (hashed if longer than a block, then zero-padded).
fn keyed_hmac(key: &[u8]) -> HmacSha256 {
    let mut block = Key::<HmacSha256>::default();
    if key.len() > block.len() {
        let digest = Sha256::digest(key);
        block.iter_mut().zip(digest).for_each(|(b, d)| *b = d);
    } else {
        block.iter_mut().zip(key).for_each(|(b, k)| *b = *k);
    }
    <HmacSha256 as KeyInit>::new(&block)
}

/// HMAC-SHA-256 of the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut mac = keyed_hmac(key);
    parts.iter().for_each(|part| mac.update(part));
    mac.finalize().into_bytes().into()
}

/// `Hi()` of RFC 5802, i.e. PBKDF2-HMAC-SHA-256 with a single output block.
///
/// The keyed HMAC state (inner and outer pads already absorbed) is computed once and cloned
/// per round, so each round costs two SHA-256 compressions instead of four.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; KEY_LEN] {
    let keyed = keyed_hmac(password);
    let mut first = keyed.clone();
    first.update(salt);
    first.update(&1u32.to_be_bytes());
    let mut round: [u8; KEY_LEN] = first.finalize().into_bytes().into();
    let mut result = round;
    for _ in 1..iterations {
        let mut mac = keyed.clone();
        mac.update(&round);
        round = mac.finalize().into_bytes().into();
        result.iter_mut().zip(round).for_each(|(r, u)| *r ^= u);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Salt of the RFC 7677 example; the expected verifier was computed independently with
    /// Python's hashlib.pbkdf2_hmac/hmac (the same RFC 5802 formulas PostgreSQL uses).
    const RFC_SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const PENCIL_SECRET: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
        WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    #[test]
    fn derives_the_reference_verifier() {
        let salt = STANDARD.decode(RFC_SALT_B64).unwrap();
        let secret = ScramSecret::from_password_with_salt("pencil", &salt, 4096);
        assert_eq!(secret.to_string(), PENCIL_SECRET);
    }

    #[test]
    fn parse_display_round_trip() {
        let parsed = ScramSecret::parse(PENCIL_SECRET).unwrap();
        assert_eq!(parsed.iterations(), 4096);
        assert_eq!(parsed.salt(), STANDARD.decode(RFC_SALT_B64).unwrap());
        assert_eq!(parsed.to_string(), PENCIL_SECRET);
        let fresh = ScramSecret::from_password("pw", 10);
        assert_eq!(fresh.salt().len(), SALT_LEN);
        assert_eq!(ScramSecret::parse(&fresh.to_string()).unwrap(), fresh);
    }

    #[test]
    fn random_salts_differ() {
        let a = ScramSecret::from_password("pw", 1);
        let b = ScramSecret::from_password("pw", 1);
        assert_ne!(a.salt(), b.salt());
        assert_ne!(a, b);
    }

    #[test]
    fn zero_iterations_become_one() {
        let a = ScramSecret::from_password_with_salt("pw", b"salt", 0);
        let b = ScramSecret::from_password_with_salt("pw", b"salt", 1);
        assert_eq!(a, b);
        assert_eq!(ScramSecret::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn debug_redacts_keys() {
        let secret = ScramSecret::parse(PENCIL_SECRET).unwrap();
        let debug = format!("{secret:?}");
        assert!(debug.contains("<redacted>"));
        assert!(!debug.contains("WG5d8oPm"));
    }

    #[test]
    fn parse_errors_are_precise() {
        let key = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=";
        let cases: Vec<(String, SecretError)> = vec![
            ("md5abc".into(), SecretError::BadPrefix),
            ("SCRAM-SHA-1$1:c2FsdA==$a:b".into(), SecretError::BadPrefix),
            ("SCRAM-SHA-256$4096".into(), SecretError::BadLayout),
            ("SCRAM-SHA-256$4096$a:b".into(), SecretError::BadLayout),
            (
                "SCRAM-SHA-256$4096:c2FsdA==$ab".into(),
                SecretError::BadLayout,
            ),
            (
                format!("SCRAM-SHA-256$0:c2FsdA==${key}:{key}"),
                SecretError::BadIterations("0".into()),
            ),
            (
                format!("SCRAM-SHA-256$+5:c2FsdA==${key}:{key}"),
                SecretError::BadIterations("+5".into()),
            ),
            (
                format!("SCRAM-SHA-256$99999999999:c2FsdA==${key}:{key}"),
                SecretError::BadIterations("99999999999".into()),
            ),
            (
                format!("SCRAM-SHA-256$1:c2F*dA==${key}:{key}"),
                SecretError::BadBase64 { field: "salt" },
            ),
            (
                format!("SCRAM-SHA-256$1:${key}:{key}"),
                SecretError::EmptySalt,
            ),
            (
                format!("SCRAM-SHA-256$1:c2FsdA==$!!:{key}"),
                SecretError::BadBase64 { field: "StoredKey" },
            ),
            (
                format!("SCRAM-SHA-256$1:c2FsdA==${key}:c2FsdA=="),
                SecretError::WrongKeyLength {
                    field: "ServerKey",
                    len: 4,
                },
            ),
            (
                format!("SCRAM-SHA-256$1:c2FsdA==${key}:{key}:x"),
                SecretError::BadBase64 { field: "ServerKey" },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(ScramSecret::parse(&text), Err(expected), "{text}");
        }
    }

    #[test]
    fn long_keys_are_hashed_like_rfc2104() {
        let long = [7u8; 100];
        let mut reference = <HmacSha256 as Mac>::new_from_slice(&long).unwrap();
        reference.update(b"msg");
        let expected: [u8; KEY_LEN] = reference.finalize().into_bytes().into();
        assert_eq!(hmac_sha256(&long, &[b"m", b"sg"]), expected);
    }
}
