//! rustls configurations for both sides of the proxy.
//!
//! Clients reach pgferry over TLS (SSLRequest or PostgreSQL 17 direct TLS, which requires the
//! ALPN protocol `postgresql`); pgferry reaches its backends (typically RDS) over TLS according
//! to libpq's `sslmode` semantics. Every configuration is built with the `ring` provider
//! explicitly, so nothing depends on a process-wide default provider being installed.
//!
//! ring rather than aws-lc-rs: measured, aws-lc-rs makes the server side of a handshake about
//! 23 µs cheaper (faster X25519; `cargo bench --bench hot_paths -- tls` gives ~92 µs with
//! ring), about 5 % of pgferry's CPU per new TLS client, which is mostly kernel and runtime
//! time. Not worth a C library that costs over a minute of CPU per cold build.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::version::{TLS12, TLS13};
use rustls::{CipherSuite, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::BackendTlsMode;

/// The ALPN protocol name PostgreSQL 17+ uses for direct TLS connections.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Why a TLS configuration could not be built; each variant names the file involved so an
/// operator can fix the config without guessing.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// A certificate file parsed but contained no certificate.
    #[error("no certificate found in {0}")]
    NoCertificates(PathBuf),
    /// A CA certificate could not be added to the trust store.
    #[error("invalid CA certificate in {path}: {reason}")]
    BadCaCertificate { path: PathBuf, reason: String },
    /// verify-ca / verify-full was requested without a CA bundle (webpki roots cannot verify RDS).
    #[error("backend tls_mode {0:?} needs tls_ca_file (e.g. the RDS global-bundle.pem)")]
    MissingCaFile(BackendTlsMode),
    /// rustls refused the certificate/key pair or the verifier configuration.
    #[error("invalid TLS configuration ({context}): {reason}")]
    Invalid { context: String, reason: String },
}

/// The crypto provider every configuration uses; built per call, never installed globally.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The provider of the client listener: AES-128-GCM suites first (the server's order wins).
///
/// OpenSSL clients (libpq) list AES-256-GCM-SHA384 first; its SHA-384 key schedule and
/// transcript hash run on SHA-512 blocks, which have no hardware support, and a handshake hashes
/// about a hundred of them. AES-128-GCM with SHA-256 is the suite every TLS 1.3 peer must
/// implement and is no weaker in practice; the other suites remain for clients without it.
fn server_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| !is_aes_128_gcm(suite.suite()));
    Arc::new(provider)
}

fn is_aes_128_gcm(suite: CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    )
}

/// Builds the client-listener configuration from a PEM chain and key.
///
/// ALPN `postgresql` is advertised: direct-TLS clients must offer it, while SSLRequest clients
/// that offer no ALPN at all are still accepted (rustls only rejects mismatching offers).
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::Pem {
        what: "private key",
        path: key_file.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(server_provider())
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(|e| invalid("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            invalid(
                &format!("{} / {}", cert_file.display(), key_file.display()),
                e,
            )
        })?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    config.ignore_client_order = true;
    skip_resumption(&mut config);
    Ok(Arc::new(config))
}

/// Turns off TLS session resumption on the client listener.
///
/// libpq never resumes a TLS session, and a serverless client starts with an empty cache
/// anyway, so the tickets rustls sends after every TLS 1.3 handshake (two by default, each an
/// encrypted record, a cache insertion under a lock and a write) and the shared session cache
/// only cost CPU and memory per connection.
fn skip_resumption(config: &mut rustls::ServerConfig) {
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
}

/// Builds the configuration used to reach backends, following libpq's `sslmode`.
///
/// `Disable` → `None`. `Prefer`/`Require` encrypt without authenticating the server (handshake
/// signatures are still checked). `VerifyCa` checks the chain against `ca_file` but not the
/// host name; `VerifyFull` checks both. The verify modes require `ca_file`.
pub fn client_config(
    mode: BackendTlsMode,
    ca_file: Option<&Path>,
) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        BackendTlsMode::Disable => return Ok(None),
        BackendTlsMode::Prefer | BackendTlsMode::Require => {
            Arc::new(ChainOnlyVerifier::new(None, &provider))
        }
        BackendTlsMode::VerifyCa => {
            let roots = load_roots(mode, ca_file)?;
            Arc::new(ChainOnlyVerifier::new(Some(roots), &provider))
        }
        BackendTlsMode::VerifyFull => {
            let roots = load_roots(mode, ca_file)?;
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| invalid("backend CA verifier", e))?
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(|e| invalid("protocol versions", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

fn invalid(context: &str, err: impl fmt::Display) -> TlsError {
    TlsError::Invalid {
        context: context.to_string(),
        reason: err.to_string(),
    }
}

/// Reads every certificate of a PEM file, failing if there is none.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |e: rustls::pki_types::pem::Error| TlsError::Pem {
        what: "certificates",
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates(path.to_path_buf()));
    }
    Ok(certs)
}

/// Loads the CA bundle a verify-* mode needs into a trust store.
fn load_roots(
    mode: BackendTlsMode,
    ca_file: Option<&Path>,
) -> Result<Arc<RootCertStore>, TlsError> {
    let path = ca_file.ok_or(TlsError::MissingCaFile(mode))?;
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::BadCaCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// Server verifier for `require` (no roots: any certificate) and `verify-ca` (chain checked
/// against the CA bundle, host name ignored). Handshake signatures are always verified, so the
/// peer must at least hold the key of the certificate it presents.
#[derive(Debug)]
struct ChainOnlyVerifier {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ChainOnlyVerifier {
    fn new(roots: Option<Arc<RootCertStore>>, provider: &CryptoProvider) -> Self {
        ChainOnlyVerifier {
            roots,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disable_needs_no_config() {
        assert!(matches!(
            client_config(BackendTlsMode::Disable, None),
            Ok(None)
        ));
    }

    #[test]
    fn require_builds_without_ca() {
        assert!(matches!(
            client_config(BackendTlsMode::Require, None),
            Ok(Some(_))
        ));
        assert!(matches!(
            client_config(BackendTlsMode::Prefer, None),
            Ok(Some(_))
        ));
    }

    #[test]
    fn verify_modes_need_a_ca_file() {
        for mode in [BackendTlsMode::VerifyCa, BackendTlsMode::VerifyFull] {
            let err = client_config(mode, None).err();
            assert!(matches!(err, Some(TlsError::MissingCaFile(m)) if m == mode));
        }
    }

    #[test]
    fn missing_files_are_named() {
        let path = Path::new("/nonexistent/pgferry-ca.pem");
        let msg = match client_config(BackendTlsMode::VerifyCa, Some(path)) {
            Err(e) => e.to_string(),
            Ok(_) => String::from("unexpected success"),
        };
        assert!(msg.contains("/nonexistent/pgferry-ca.pem"), "{msg}");
        let msg = match server_config(path, path) {
            Err(e) => e.to_string(),
            Ok(_) => String::from("unexpected success"),
        };
        assert!(msg.contains("/nonexistent/pgferry-ca.pem"), "{msg}");
    }

    #[test]
    fn server_config_loads_pem_and_advertises_alpn() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]);
        let Ok(cert) = cert else {
            panic!("rcgen failed");
        };
        let dir = std::env::temp_dir().join(format!("pgferry-tls-unit-{}", std::process::id()));
        let written = std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(dir.join("c.pem"), cert.cert.pem()))
            .and_then(|_| std::fs::write(dir.join("k.pem"), cert.signing_key.serialize_pem()));
        assert!(written.is_ok(), "{written:?}");
        let config = server_config(&dir.join("c.pem"), &dir.join("k.pem"));
        let swapped = server_config(&dir.join("k.pem"), &dir.join("c.pem"));
        let _ = std::fs::remove_dir_all(&dir);
        let Ok(config) = config else {
            panic!("server_config failed: {:?}", config.err());
        };
        assert_eq!(config.alpn_protocols, vec![ALPN_POSTGRESQL.to_vec()]);
        assert!(matches!(
            swapped,
            Err(TlsError::NoCertificates(_) | TlsError::Pem { .. })
        ));
    }
}
