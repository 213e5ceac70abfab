//! Legacy md5 password authentication (`AuthenticationMD5Password`), for old drivers.
//!
//! pg_authid stores `md5` + hex(md5(password ‖ user)); the client answers a 4-byte salt with
//! `md5` + hex(md5(hex-of-stored-hash ‖ salt)). Knowing the stored hash is enough to log in,
//! which is why SCRAM is preferred; md5 is offered only for users with a plaintext password.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// Prefix of md5 hashes in pg_authid and of client responses.
const MD5_PREFIX: &str = "md5";

/// The md5 "secret" PostgreSQL would store for `user` with `password`.
pub fn md5_secret(user: &str, password: &str) -> String {
    format!(
        "{MD5_PREFIX}{}",
        md5_hex(&[password.as_bytes(), user.as_bytes()])
    )
}

/// Checks a client's PasswordMessage payload against a stored md5 secret and the salt sent in
/// AuthenticationMD5Password. A trailing NUL (the C string terminator) is accepted; the
/// comparison is constant time. A malformed stored secret never verifies.
pub fn verify_md5_response(md5_secret: &str, salt: [u8; 4], client_response: &[u8]) -> bool {
    let Some(stored_hex) = md5_secret.strip_prefix(MD5_PREFIX) else {
        return false;
    };
    if stored_hex.len() != 32 || !stored_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let response = client_response
        .strip_suffix(b"\0")
        .unwrap_or(client_response);
    let expected = format!("{MD5_PREFIX}{}", md5_hex(&[stored_hex.as_bytes(), &salt]));
    bool::from(expected.as_bytes().ct_eq(response))
}

/// Lower-case hex of md5 over the concatenation of `parts`.
fn md5_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Md5::new();
    parts.iter().for_each(|part| hasher.update(part));
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_matches_independent_computation() {
        let independent = format!("md5{:x}", Md5::digest(b"secretpostgres"));
        assert_eq!(md5_secret("postgres", "secret"), independent);
        // Computed with Python's hashlib.md5(b"secretpostgres").
        assert_eq!(
            md5_secret("postgres", "secret"),
            "md553f48b7c4b76a86ce72276c5755f217d"
        );
        // The widely published pg_authid value for user postgres / password postgres.
        assert_eq!(
            md5_secret("postgres", "postgres"),
            "md53175bce1d3201d16594cebf9d7eb3f9d"
        );
    }

    #[test]
    fn verifies_a_real_client_response() {
        let secret = md5_secret("postgres", "secret");
        let salt = [0x01, 0x02, 0xfe, 0xff];
        let response = postgres_protocol::authentication::md5_hash(b"postgres", b"secret", salt);
        assert!(verify_md5_response(&secret, salt, response.as_bytes()));
        let with_nul = [response.as_bytes(), b"\0"].concat();
        assert!(verify_md5_response(&secret, salt, &with_nul));
    }

    #[test]
    fn rejects_wrong_inputs() {
        let secret = md5_secret("postgres", "secret");
        let salt = [1, 2, 3, 4];
        let wrong_pw = postgres_protocol::authentication::md5_hash(b"postgres", b"nope", salt);
        assert!(!verify_md5_response(&secret, salt, wrong_pw.as_bytes()));
        let right = postgres_protocol::authentication::md5_hash(b"postgres", b"secret", salt);
        assert!(!verify_md5_response(
            &secret,
            [4, 3, 2, 1],
            right.as_bytes()
        ));
        assert!(!verify_md5_response(&secret, salt, &right.as_bytes()[..34]));
        assert!(!verify_md5_response(&secret, salt, b""));
        assert!(!verify_md5_response("md5short", salt, right.as_bytes()));
        assert!(!verify_md5_response(
            "SCRAM-SHA-256$x",
            salt,
            right.as_bytes()
        ));
    }
}
