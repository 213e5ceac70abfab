//! Client authentication: pgferry verifies clients itself, against users from its config.
//!
//! Pure logic, no I/O: the session code moves SASL / password payloads between the wire and
//! [`ScramExchange`] / [`verify_md5_response`], looking users up in a [`UserStore`] built once
//! at startup (so every PBKDF2 run happens before the first client connects).

mod md5;
mod scram;
mod secret;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::config::{Credential, UserConfig};

pub use self::md5::{md5_secret, verify_md5_response};
pub use self::scram::{ScramError, ScramExchange, SCRAM_SHA_256};
pub use self::secret::{ScramSecret, SecretError, DEFAULT_ITERATIONS};

/// A config problem with one user; names the user so the operator can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// A user entry has an empty name.
    #[error("user #{index}: name is empty")]
    EmptyName {
        /// Zero-based position in the `users` list.
        index: usize,
    },
    /// Two entries share a name; which credential wins would be arbitrary.
    #[error("user {name:?} is defined more than once")]
    DuplicateUser {
        /// The repeated name.
        name: String,
    },
    /// An empty plaintext password; PostgreSQL never accepts one either.
    #[error("user {name:?}: password is empty")]
    EmptyPassword {
        /// The user.
        name: String,
    },
    /// A `scram_secret` that does not parse.
    #[error("user {name:?}: invalid SCRAM secret: {source}")]
    BadScramSecret {
        /// The user.
        name: String,
        /// What is wrong with the secret.
        source: SecretError,
    },
}

/// Everything needed to authenticate one user, precomputed at startup.
#[derive(Clone)]
pub struct UserAuth {
    /// Role name, matched exactly (case-sensitive) against the startup packet's `user`;
    /// shared, so the admin console's record of each logged-in client needs no copy.
    pub name: Arc<str>,
    /// SCRAM-SHA-256 verifier (always available).
    pub scram: ScramSecret,
    /// `md5...` secret; only when the config holds a plaintext password.
    pub md5: Option<String>,
    /// The plaintext password, kept so the proxy can log in to the backend as this user.
    pub plaintext: Option<String>,
}

/// Redacts the plaintext password and the md5 secret (which is password-equivalent).
impl fmt::Debug for UserAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |present: bool| if present { "<redacted>" } else { "<none>" };
        f.debug_struct("UserAuth")
            .field("name", &self.name)
            .field("scram", &self.scram)
            .field("md5", &redact(self.md5.is_some()))
            .field("plaintext", &redact(self.plaintext.is_some()))
            .finish()
    }
}

impl UserAuth {
    fn from_config(user: &UserConfig) -> Result<UserAuth, AuthConfigError> {
        let name = user.name.clone();
        match &user.credential {
            Credential::Plain(password) if password.is_empty() => {
                Err(AuthConfigError::EmptyPassword { name })
            }
            Credential::Plain(password) => Ok(UserAuth {
                scram: ScramSecret::from_password(password, DEFAULT_ITERATIONS),
                md5: Some(md5_secret(&name, password)),
                plaintext: Some(password.clone()),
                name: name.as_str().into(),
            }),
            Credential::ScramSecret(text) => match ScramSecret::parse(text) {
                Ok(scram) => Ok(UserAuth {
                    name: name.as_str().into(),
                    scram,
                    md5: None,
                    plaintext: None,
                }),
                Err(source) => Err(AuthConfigError::BadScramSecret { name, source }),
            },
        }
    }
}

/// The configured users, keyed by name; immutable after construction.
#[derive(Debug, Clone, Default)]
pub struct UserStore {
    users: HashMap<String, UserAuth>,
}

impl UserStore {
    /// Validates the users and precomputes their verifiers (one PBKDF2 run per plaintext
    /// password). Fails on the first invalid entry.
    pub fn from_config(users: &[UserConfig]) -> Result<UserStore, AuthConfigError> {
        let mut map = HashMap::with_capacity(users.len());
        for (index, user) in users.iter().enumerate() {
            if user.name.is_empty() {
                return Err(AuthConfigError::EmptyName { index });
            }
            if map.contains_key(&user.name) {
                let name = user.name.clone();
                return Err(AuthConfigError::DuplicateUser { name });
            }
            map.insert(user.name.clone(), UserAuth::from_config(user)?);
        }
        Ok(UserStore { users: map })
    }

    /// Looks up a user by exact name.
    pub fn get(&self, name: &str) -> Option<&UserAuth> {
        self.users.get(name)
    }

    /// Number of configured users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when no users are configured (every login will fail).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// A pg_authid-format SCRAM-SHA-256 verifier for `password` (default iterations, random
/// salt): what `pgferry hash-password` prints for use as a `scram_secret` in config.
pub fn hash_password(password: &str) -> String {
    ScramSecret::from_password(password, DEFAULT_ITERATIONS).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// Drives a full login with postgres-protocol's client (the one tokio-postgres uses).
    fn login(secret: &ScramSecret, password: &str, cb: ChannelBinding) -> Result<(), ScramError> {
        let mut client = ScramSha256::new(password.as_bytes(), cb);
        let mut server = ScramExchange::new(secret);
        let server_first = server.client_first(client.message())?;
        client
            .update(&server_first)
            .expect("client accepts server-first");
        let server_final = server.client_final(client.message())?;
        client
            .finish(&server_final)
            .expect("client verifies server signature");
        Ok(())
    }

    fn user(name: &str, credential: Credential) -> UserConfig {
        UserConfig::new(name, credential)
    }

    fn plain(name: &str, pw: &str) -> UserConfig {
        user(name, Credential::Plain(pw.to_string()))
    }

    #[test]
    fn builds_plain_and_scram_users() {
        let hashed = hash_password("s3cret");
        let store = UserStore::from_config(&[
            plain("alice", "pw"),
            user("bob", Credential::ScramSecret(hashed.clone())),
        ])
        .unwrap();
        assert_eq!(store.len(), 2);
        let alice = store.get("alice").unwrap();
        assert_eq!(
            alice.md5.as_deref(),
            Some(md5_secret("alice", "pw").as_str())
        );
        assert_eq!(alice.plaintext.as_deref(), Some("pw"));
        assert_eq!(alice.scram.iterations(), DEFAULT_ITERATIONS);
        let expected = ScramSecret::from_password_with_salt("pw", alice.scram.salt(), 4096);
        assert_eq!(alice.scram, expected);
        let bob = store.get("bob").unwrap();
        assert_eq!(bob.scram.to_string(), hashed);
        assert!(bob.md5.is_none() && bob.plaintext.is_none());
        assert!(store.get("Alice").is_none());
        assert!(!format!("{alice:?}").contains("\"pw\""));
    }

    #[test]
    fn scram_login_end_to_end_with_postgres_protocol_client() {
        let long = "x".repeat(100); // longer than an HMAC block: the key gets hashed
        let store = UserStore::from_config(&[
            plain("alice", "correct horse"),
            user("bob", Credential::ScramSecret(hash_password("battery"))),
            plain("carol", &long),
        ])
        .unwrap();
        let scram = |name: &str| &store.get(name).unwrap().scram;
        // postgres-protocol sends `y,,` for unrequested and `n,,` for unsupported.
        login(
            scram("alice"),
            "correct horse",
            ChannelBinding::unrequested(),
        )
        .unwrap();
        login(
            scram("alice"),
            "correct horse",
            ChannelBinding::unsupported(),
        )
        .unwrap();
        login(scram("bob"), "battery", ChannelBinding::unrequested()).unwrap();
        login(scram("carol"), &long, ChannelBinding::unsupported()).unwrap();
        let wrong = login(scram("alice"), "battery", ChannelBinding::unrequested());
        assert_eq!(wrong, Err(ScramError::InvalidProof));
        let wrong = login(scram("bob"), "", ChannelBinding::unsupported());
        assert_eq!(wrong, Err(ScramError::InvalidProof));
    }

    #[test]
    fn hash_password_round_trips_and_verifies() {
        let hashed = hash_password("pw");
        let secret = ScramSecret::parse(&hashed).unwrap();
        assert_eq!(secret.iterations(), 4096);
        assert_eq!(secret.salt().len(), 16);
        let same = ScramSecret::from_password_with_salt("pw", secret.salt(), 4096);
        assert_eq!(secret, same);
        assert_ne!(hash_password("pw"), hashed);
    }

    #[test]
    fn config_errors_name_the_user() {
        let err = |users: &[UserConfig]| UserStore::from_config(users).unwrap_err();
        assert_eq!(
            err(&[plain("a", "x"), plain("", "x")]),
            AuthConfigError::EmptyName { index: 1 }
        );
        let dup = err(&[plain("a", "x"), plain("a", "y")]);
        assert_eq!(dup.to_string(), "user \"a\" is defined more than once");
        let empty = err(&[plain("a", "")]);
        assert_eq!(empty, AuthConfigError::EmptyPassword { name: "a".into() });
        let bad = err(&[user("carol", Credential::ScramSecret("md5abc".into()))]);
        assert_eq!(
            bad.to_string(),
            "user \"carol\": invalid SCRAM secret: does not start with \"SCRAM-SHA-256$\""
        );
        assert!(UserStore::from_config(&[]).unwrap().is_empty());
    }
}
