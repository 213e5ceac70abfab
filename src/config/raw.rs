//! The TOML file as written: every field optional, so defaults and precise errors are ours.
//!
//! serde only checks structure here (unknown keys are rejected with a line and column);
//! [`super::file`] turns these into the validated public types.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub listen: RawListen,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub pooling: RawPooling,
    #[serde(default)]
    pub runtime: RawRuntime,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub databases: Vec<RawDatabase>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub addr: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_client_connections: Option<i64>,
    pub max_message_size: Option<Human>,
    pub max_startup_packet_size: Option<Human>,
    pub max_startup_parameters: Option<i64>,
    pub login_timeout: Option<Human>,
    pub query_wait_timeout: Option<Human>,
    pub client_idle_timeout: Option<Human>,
    pub idle_transaction_timeout: Option<Human>,
    pub client_park_after: Option<Human>,
    pub server_reset_timeout: Option<Human>,
    pub shutdown_timeout: Option<Human>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub mode: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub allow_md5: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRuntime {
    pub worker_threads: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub users: Option<Vec<String>>,
    pub stats_users: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPooling {
    pub pinning: Option<String>,
    pub max_prepared_statements_per_client: Option<i64>,
    pub max_prepared_statements_per_server: Option<i64>,
    pub max_cached_statements: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub name: Option<String>,
    pub password: Option<String>,
    pub scram_secret: Option<String>,
    pub pool_size: Option<i64>,
    pub pool_mode: Option<String>,
    pub max_client_connections: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub name: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub dbname: Option<String>,
    pub backend_user: Option<String>,
    pub backend_password: Option<String>,
    pub pool_mode: Option<String>,
    pub pool_size: Option<i64>,
    pub min_pool_size: Option<i64>,
    pub connect_timeout: Option<Human>,
    pub server_idle_timeout: Option<Human>,
    pub server_lifetime: Option<Human>,
    pub tls_mode: Option<String>,
    pub tls_ca_file: Option<PathBuf>,
    pub max_db_connections: Option<i64>,
}

/// A duration or size as written: a bare integer or a string with a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Human {
    Int(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(HumanVisitor)
    }
}

struct HumanVisitor;

impl Visitor<'_> for HumanVisitor {
    type Value = Human;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number or a string with a unit such as \"5s\" or \"64MiB\"")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Human, E> {
        Ok(Human::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Human, E> {
        i64::try_from(v)
            .map(Human::Int)
            .map_err(|_| E::custom("number is too large"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Human, E> {
        Ok(Human::Text(v.to_string()))
    }
}
