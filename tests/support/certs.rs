//! A throwaway certificate authority for TLS tests.
//!
//! One CA per test process signs both the PostgreSQL server certificate and the proxy's listener
//! certificate, so a test client that trusts `ca.pem` can verify either hop, exactly as a real
//! deployment trusts one private CA (or the RDS bundle).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::cmd::SupportError;

/// The process-wide CA: its certificate (PEM) and the key that signs leaf certificates.
struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| match build_ca() {
        Ok(ca) => ca,
        Err(e) => panic!("cannot create the test CA: {e}"),
    })
}

fn build_ca() -> Result<TestCa, SupportError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "pgferry test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(TestCa {
        cert_pem: cert.pem(),
        issuer: Issuer::new(params, key),
    })
}

/// A leaf certificate and key in PEM, valid for `localhost` and `127.0.0.1`.
fn localhost_leaf() -> Result<(String, String), SupportError> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &test_ca().issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a PEM file with the given mode (0600 for keys: PostgreSQL rejects looser ones).
fn write_pem(path: &Path, pem: &str, mode: u32) -> Result<(), SupportError> {
    let what = format!("cannot write {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(SupportError::io(what.clone()))?;
    file.write_all(pem.as_bytes())
        .map_err(SupportError::io(what))
}

/// Paths of a certificate/key pair and of the CA that signed it.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// Leaf certificate (PEM).
    pub cert: PathBuf,
    /// Leaf private key (PKCS#8 PEM, mode 0600).
    pub key: PathBuf,
    /// The process-wide test CA certificate (PEM).
    pub ca: PathBuf,
}

/// Writes `<stem>.crt`, `<stem>.key` (0600) and `ca.pem` into `dir`.
pub fn write_localhost_cert(dir: &Path, stem: &str) -> Result<CertFiles, SupportError> {
    let (cert_pem, key_pem) = localhost_leaf()?;
    let files = CertFiles {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
        ca: dir.join("ca.pem"),
    };
    write_pem(&files.cert, &cert_pem, 0o644)?;
    write_pem(&files.key, &key_pem, 0o600)?;
    write_pem(&files.ca, &test_ca().cert_pem, 0o644)?;
    Ok(files)
}

/// Certificate for the proxy's own client listener (CN localhost, SAN localhost + 127.0.0.1),
/// signed by the same CA as the test PostgreSQL server. Returns (cert, key, ca) paths.
pub fn proxy_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    match write_localhost_cert(dir, "proxy") {
        Ok(files) => (files.cert, files.key, files.ca),
        Err(e) => panic!("cannot write the proxy certificate: {e}"),
    }
}

/// A tokio-postgres TLS connector that trusts only the CA in `ca_path` (ring provider, as the
/// proxy uses). Hostname/IP verification is on, so tests also prove the SANs are right.
pub fn tls_connector(ca_path: &Path) -> MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_path)
        .unwrap_or_else(|e| panic!("cannot read CA {}: {e}", ca_path.display()));
    for cert in certs {
        let cert = cert.unwrap_or_else(|e| panic!("bad PEM in {}: {e}", ca_path.display()));
        roots
            .add(cert)
            .unwrap_or_else(|e| panic!("bad CA certificate in {}: {e}", ca_path.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("rustls ring provider rejected default versions: {e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    MakeRustlsConnect::new(config)
}
