//! Quick mode: a complete configuration from one backend URL and a few flags, no file.
//!
//! Meant for "put pgferry in front of this database" in one command: the URL's user becomes the
//! only client user (same password), and pgferry logs in to the backend as that user.

use super::file::{MetricsListen, DEFAULT_LISTEN, DEFAULT_METRICS_LISTEN};
use super::*;
use url::{Host, Url};

/// Origin named in quick-mode errors.
pub(crate) const COMMAND_LINE: &str = "command line";

/// Inputs of [`Config::quick`]; `None` means "use the default".
#[derive(Debug, Clone, Default)]
pub struct QuickOptions {
    /// `postgres://USER:PASSWORD@HOST[:PORT]/DBNAME[?sslmode=..&sslrootcert=..]`.
    pub backend_url: String,
    /// Client listener (default 0.0.0.0:6432).
    pub listen: Option<SocketAddr>,
    /// Pool mode of the single database (default transaction).
    pub pool_mode: Option<PoolMode>,
    /// Pool size of the single database (default 20).
    pub pool_size: Option<u32>,
    /// Client-facing certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// Client-facing private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Client TLS mode; default `require` when cert and key are given, else `disable`.
    pub tls_mode: Option<ClientTlsMode>,
    /// Metrics listener (default 0.0.0.0:9930).
    pub metrics_listen: Option<MetricsListen>,
}

/// The parts of a backend URL pgferry uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackendUrl {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub tls_mode: BackendTlsMode,
    pub tls_ca_file: Option<PathBuf>,
}

impl Config {
    /// Builds and validates a single-database, single-user configuration from a backend URL.
    /// Errors name the origin `command line` and the key `--backend` for URL problems; the URL
    /// itself is never echoed (it contains a password).
    pub fn quick(opts: QuickOptions) -> Result<Config, ConfigError> {
        let config = Config::quick_unvalidated(&opts)?;
        config.validate_in(COMMAND_LINE)?;
        Ok(config)
    }

    pub(crate) fn quick_unvalidated(opts: &QuickOptions) -> Result<Config, ConfigError> {
        let url = parse_backend_url(&opts.backend_url)
            .map_err(|reason| ConfigError::invalid(COMMAND_LINE, "--backend", reason))?;
        let mut db = DatabaseConfig::new(&url.dbname, &url.host, url.port);
        db.pool_mode = opts.pool_mode.unwrap_or(db.pool_mode);
        db.pool_size = opts.pool_size.unwrap_or(db.pool_size);
        db.tls_mode = url.tls_mode;
        db.tls_ca_file = url.tls_ca_file;
        let has_cert = opts.tls_cert.is_some() && opts.tls_key.is_some();
        let default_tls = if has_cert {
            ClientTlsMode::Require
        } else {
            ClientTlsMode::Disable
        };
        let mut config = Config::minimal();
        config.listen.addr = opts.listen.unwrap_or(DEFAULT_LISTEN);
        config.metrics = opts
            .metrics_listen
            .unwrap_or(MetricsListen::Addr(DEFAULT_METRICS_LISTEN))
            .into();
        config.tls = ClientTls {
            mode: opts.tls_mode.unwrap_or(default_tls),
            cert_file: opts.tls_cert.clone(),
            key_file: opts.tls_key.clone(),
        };
        config.users = vec![UserConfig::new(&url.user, Credential::Plain(url.password))];
        config.databases = vec![db];
        Ok(config)
    }
}

const URL_SHAPE: &str = "expected postgres://USER:PASSWORD@HOST[:PORT]/DBNAME";

/// Parses a libpq-style URL; the error is a reason that never contains the password.
pub(crate) fn parse_backend_url(text: &str) -> Result<BackendUrl, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("invalid URL ({e}); {URL_SHAPE}"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "scheme must be postgres:// or postgresql://; {URL_SHAPE}"
        ));
    }
    let missing = |part: &str| format!("missing {part}; {URL_SHAPE}");
    let user = decode(url.username(), "user name")?;
    let password = decode(url.password().unwrap_or(""), "password")?;
    let host = match url.host() {
        Some(Host::Domain(d)) if !d.is_empty() => decode(d, "host")?,
        Some(Host::Ipv4(a)) => a.to_string(),
        Some(Host::Ipv6(a)) => a.to_string(),
        _ => String::new(),
    };
    let dbname = decode(url.path().trim_start_matches('/'), "database name")?;
    for (value, part) in [
        (&user, "user name"),
        (&password, "password"),
        (&host, "host"),
        (&dbname, "database name"),
    ] {
        if value.is_empty() {
            return Err(missing(part));
        }
    }
    if dbname.contains('/') {
        return Err(format!("database name must not contain '/'; {URL_SHAPE}"));
    }
    let port = match url.port() {
        Some(0) => return Err("port must be between 1 and 65535, got 0".to_string()),
        Some(p) => p,
        None => 5432,
    };
    let (tls_mode, tls_ca_file) = query_options(&url)?;
    Ok(BackendUrl {
        user,
        password,
        host,
        port,
        dbname,
        tls_mode,
        tls_ca_file,
    })
}

/// `sslmode` (default prefer) and `sslrootcert`; any other parameter is an error, not ignored.
fn query_options(url: &Url) -> Result<(BackendTlsMode, Option<PathBuf>), String> {
    let mut mode = BackendTlsMode::Prefer;
    let mut ca = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "sslmode" => mode = value.parse().map_err(|e| format!("sslmode: {e}"))?,
            "sslrootcert" => ca = Some(PathBuf::from(value.as_ref())),
            other => {
                return Err(format!(
                    "unsupported URL parameter {other:?} (supported: sslmode, sslrootcert)"
                ))
            }
        }
    }
    Ok((mode, ca))
}

/// Percent-decodes one URL component into UTF-8.
fn decode(text: &str, part: &str) -> Result<String, String> {
    let bad = || format!("invalid percent-encoding in {part}");
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hi = bytes.next().and_then(hex).ok_or_else(bad)?;
        let lo = bytes.next().and_then(hex).ok_or_else(bad)?;
        out.push(hi << 4 | lo);
    }
    String::from_utf8(out).map_err(|_| format!("{part} is not valid UTF-8 after percent-decoding"))
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}
