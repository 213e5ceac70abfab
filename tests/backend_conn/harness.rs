//! ===== Self-contained PostgreSQL test harness (to be moved into tests/support) =====
//!
//! Starts a throwaway PostgreSQL 15 cluster owned by the `postgres` OS user (tests run as
//! root): SCRAM by default, an md5 role and a cleartext-password role, TLS with a certificate
//! for `localhost` signed by a generated CA. The cluster is stopped when [`TestPg`] drops,
//! also when a test panics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Role names and passwords created in the test cluster.
pub const SCRAM_USER: (&str, &str) = ("scram_user", "scram-secret");
pub const MD5_USER: (&str, &str) = ("md5_user", "md5-secret");
pub const CLEAR_USER: (&str, &str) = ("clear_user", "clear-secret");

/// A running test cluster; dropping it stops the server and deletes its files.
pub struct TestPg {
    pub dir: PathBuf,
    pub port: u16,
    /// PEM of the CA that signed the server certificate (SAN: localhost only).
    pub ca_file: PathBuf,
    /// PEM of an unrelated CA.
    pub wrong_ca_file: PathBuf,
}

impl TestPg {
    /// initdb, configure TLS and auth, start, create the test roles.
    pub fn start() -> TestPg {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("pgferry-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create test dir");
        let pg = TestPg {
            port: free_port(),
            ca_file: dir.join("ca.pem"),
            wrong_ca_file: dir.join("wrong-ca.pem"),
            dir,
        };
        run(
            "chown",
            &["postgres:postgres", pg.dir.to_str().expect("utf-8 path")],
        );
        let data = pg.data_path().to_string_lossy().into_owned();
        pg.pg_cmd(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        pg.write_tls_files();
        pg.write_config();
        let log = pg.dir.join("postgres.log");
        pg.pg_cmd(
            "pg_ctl",
            &[
                "-w",
                "-D",
                &data,
                "-l",
                log.to_str().expect("utf-8 path"),
                "start",
            ],
        );
        pg.create_roles();
        pg
    }

    fn data_path(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs a PostgreSQL binary as the `postgres` user.
    fn pg_cmd(&self, bin: &str, args: &[&str]) {
        let program = format!("{PG_BIN}/{bin}");
        let mut all = vec!["-u", "postgres", "--", program.as_str()];
        all.extend_from_slice(args);
        run("runuser", &all);
    }

    fn psql(&self, statements: &[&str]) {
        let port = self.port.to_string();
        let host = self.dir.to_string_lossy().into_owned();
        let mut args = vec![
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &host,
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "postgres",
        ];
        for statement in statements {
            args.push("-c");
            args.push(statement);
        }
        self.pg_cmd("psql", &args);
    }

    fn write_tls_files(&self) {
        let (ca, ca_pem) = make_ca("pgferry test CA");
        let (_, wrong_pem) = make_ca("unrelated CA");
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca).expect("sign server cert");
        std::fs::write(&self.ca_file, ca_pem).expect("write ca");
        std::fs::write(&self.wrong_ca_file, wrong_pem).expect("write wrong ca");
        let data = self.data_path();
        std::fs::write(data.join("server.crt"), cert.pem()).expect("write cert");
        std::fs::write(data.join("server.key"), key.serialize_pem()).expect("write key");
        for file in ["server.crt", "server.key"] {
            let path = data.join(file);
            let path = path.to_str().expect("utf-8 path");
            run("chown", &["postgres:postgres", path]);
            run("chmod", &["600", path]);
        }
    }

    fn write_config(&self) {
        let data = self.data_path();
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             fsync = off\nmax_connections = 40\n",
            self.port,
            self.dir.display()
        );
        append(&data.join("postgresql.conf"), &conf);
        let hba = format!(
            "local all all trust\nhost all {} 127.0.0.1/32 md5\nhost all {} 127.0.0.1/32 password\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
            MD5_USER.0, CLEAR_USER.0
        );
        std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    fn create_roles(&self) {
        let scram = format!(
            "CREATE ROLE {} LOGIN SUPERUSER PASSWORD '{}'",
            SCRAM_USER.0, SCRAM_USER.1
        );
        let md5 = format!("CREATE ROLE {} LOGIN PASSWORD '{}'", MD5_USER.0, MD5_USER.1);
        let clear = format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}'",
            CLEAR_USER.0, CLEAR_USER.1
        );
        self.psql(&[&scram, "SET password_encryption = 'md5'", &md5, &clear]);
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        let data = self.data_path().to_string_lossy().into_owned();
        let program = format!("{PG_BIN}/pg_ctl");
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &program,
                "-D",
                &data,
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed CA: its issuer (to sign with) and its certificate PEM.
fn make_ca(name: &str) -> (CertifiedIssuer<'static, KeyPair>, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key"))
        .expect("ca cert");
    let pem = issuer.pem();
    (issuer, pem)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
    listener.local_addr().expect("local addr").port()
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("spawn command");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open config");
    file.write_all(text.as_bytes()).expect("append config");
}
// ===== end of harness =====
