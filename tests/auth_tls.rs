//! Client authentication and TLS negotiation: SCRAM and md5, wrong passwords, unknown
//! databases and roles, TLS required, direct TLS with ALPN, and plaintext injected behind an
//! SSLRequest (CVE-2021-23214).

mod support;

use std::sync::Arc;

use pgferry::config::{ClientTlsMode, Config, Credential, UserConfig};
use support::probe::*;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn tls_config(dir: &std::path::Path, mode: ClientTlsMode) -> (Config, std::path::PathBuf) {
    let (cert, key, ca) = proxy_cert(dir);
    let mut config = proxy_config(pg());
    config.tls.mode = mode;
    config.tls.cert_file = Some(cert);
    config.tls.key_file = Some(key);
    (config, ca)
}

/// A directory for test files, removed with the test server by the support's watchdog.
fn temp_dir(name: &str) -> std::path::PathBuf {
    pg().scratch_dir(name)
}

#[tokio::test]
async fn wrong_password_unknown_database_and_unknown_role_get_precise_errors() {
    let handle = start_proxy(proxy_config(pg())).await;
    let addr = handle.client_addr();
    expect_sqlstate(connect(addr, APP_USER, "wrong", APP_DB).await, "28P01");
    let message = expect_sqlstate(connect(addr, APP_USER, APP_PASSWORD, "nodb").await, "3D000");
    assert!(message.contains("nodb"), "{message}");
    expect_sqlstate(connect(addr, "nobody", "x", APP_DB).await, "28000");
    let client = connect(addr, OTHER_USER, OTHER_PASSWORD, APP_DB)
        .await
        .expect("other user logs in");
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, OTHER_USER, "each user gets its own backend login");
    let text = handle.metrics().encode();
    assert_eq!(
        metric(&text, "pgferry_client_logins_total{result=\"auth_failed\"}"),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "pgferry_client_logins_total{result=\"unknown_database\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn scram_secret_users_and_md5_logins() {
    let mut config = proxy_config(pg());
    let secret = pgferry::auth::hash_password("lambda-pw");
    config
        .users
        .push(UserConfig::new("lambda", Credential::ScramSecret(secret)));
    config.databases[0].backend_user = Some(APP_USER.into());
    config.databases[0].backend_password = Some(APP_PASSWORD.into());
    config.auth.allow_md5 = true;
    let handle = start_proxy(config).await;
    let addr = handle.client_addr();
    let client = connect(addr, "lambda", "lambda-pw", APP_DB)
        .await
        .expect("SCRAM secret login");
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, APP_USER, "forced backend user");
    expect_sqlstate(connect(addr, "lambda", "nope", APP_DB).await, "28P01");
    connect(addr, OTHER_USER, OTHER_PASSWORD, APP_DB)
        .await
        .expect("md5 login of a plaintext user");
    expect_sqlstate(connect(addr, OTHER_USER, "bad", APP_DB).await, "28P01");
}

#[tokio::test]
async fn tls_logins_and_tls_required() {
    let dir = temp_dir("tls-require");
    let (config, ca) = tls_config(&dir, ClientTlsMode::Require);
    let handle = start_proxy(config).await;
    let addr = handle.client_addr();
    let client = connect_tls(addr, APP_USER, APP_PASSWORD, APP_DB, &ca)
        .await
        .expect("TLS login");
    let ssl: bool = client.query_one("SELECT true", &[]).await.unwrap().get(0);
    assert!(ssl);
    let message = expect_sqlstate(connect(addr, APP_USER, APP_PASSWORD, APP_DB).await, "28000");
    assert!(message.contains("requires TLS"), "{message}");
    let text = handle.metrics().encode();
    assert_eq!(
        metric(
            &text,
            "pgferry_tls_handshakes_total{kind=\"sslrequest\",result=\"ok\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn plaintext_injected_after_ssl_request_is_refused() {
    let dir = temp_dir("tls-inject");
    let (config, _) = tls_config(&dir, ClientTlsMode::Allow);
    let handle = start_proxy(config).await;
    let mut bytes = ssl_request();
    bytes.extend(startup_message(APP_USER, APP_DB));
    let (tag, body) = raw_exchange(handle.client_addr(), &bytes)
        .await
        .expect("a reply");
    assert_eq!(tag, b'E', "the SSLRequest must not be answered with S");
    assert_eq!(error_code(&body), "08P01");
}

#[tokio::test]
async fn gssenc_is_declined_and_startup_continues() {
    let handle = start_proxy(proxy_config(pg())).await;
    let mut stream = TcpStream::connect(handle.client_addr()).await.unwrap();
    stream.write_all(&packet(80_877_104, b"")).await.unwrap();
    let mut answer = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut stream, &mut answer)
        .await
        .unwrap();
    assert_eq!(&answer, b"N");
    stream
        .write_all(&startup_message(APP_USER, APP_DB))
        .await
        .unwrap();
    let (tag, _) = read_message(&mut stream).await.expect("auth request");
    assert_eq!(tag, b'R');
}

fn direct_tls_client(ca: &std::path::Path, alpn: bool) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if alpn {
        config.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn direct_tls_requires_alpn_postgresql() {
    let dir = temp_dir("tls-direct");
    let (config, ca) = tls_config(&dir, ClientTlsMode::Require);
    let handle = start_proxy(config).await;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    for (alpn, expected) in [(true, b'R'), (false, b'E')] {
        let tcp = TcpStream::connect(handle.client_addr()).await.unwrap();
        let mut tls = direct_tls_client(&ca, alpn)
            .connect(name.clone(), tcp)
            .await
            .expect("TLS handshake");
        tls.write_all(&startup_message(APP_USER, APP_DB))
            .await
            .unwrap();
        let (tag, body) = read_message(&mut tls).await.expect("a reply inside TLS");
        assert_eq!(tag, expected, "alpn={alpn}");
        if tag == b'E' {
            assert_eq!(error_code(&body), "08P01");
        }
    }
}

/// A TLS client that reads slowly (a small receive buffer keeps pgferry's writes blocking)
/// must still get the whole of a multi-megabyte result, its ReadyForQuery included, and then
/// its next query answered: no ciphertext may stay queued in pgferry while it waits.
// Two threads: the client reads on one while pgferry writes on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tls_reader_gets_the_whole_large_result_and_its_next_answer() {
    use tokio_postgres::tls::MakeTlsConnect;
    let dir = temp_dir("tls-slow-reader");
    let (config, ca) = tls_config(&dir, ClientTlsMode::Require);
    let handle = start_proxy(config).await;
    let addr = handle.client_addr();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = Trickle(socket.connect(addr).await.unwrap());
    let tls =
        MakeTlsConnect::<Trickle>::make_tls_connect(&mut tls_connector(&ca), "localhost").unwrap();
    let pg_config: tokio_postgres::Config =
        conn_string(addr, APP_USER, APP_PASSWORD, APP_DB, "require")
            .parse()
            .unwrap();
    let (client, connection) = pg_config.connect_raw(tcp, tls).await.expect("TLS login");
    tokio::spawn(connection);
    let exchange = async {
        let big = "SELECT repeat('x', 1000) FROM generate_series(1, 20000)";
        let mut counts = Vec::new();
        // Each round ends with a tail written to a full socket, likely but not certainly.
        for _ in 0..3 {
            let rows = client.simple_query(big).await.expect("large result");
            let next = client.simple_query("SELECT 1").await.expect("next query");
            counts.push((rows.len(), next.len()));
        }
        counts
    };
    let counts = tokio::time::timeout(std::time::Duration::from_secs(60), exchange).await;
    let counts = counts.expect("a large result or the next answer never arrived");
    // 20000 rows + CommandComplete (+ RowDescription in recent tokio-postgres); then 1 row.
    for (rows, next) in counts {
        assert!(rows >= 20_001, "{rows} messages");
        assert!(next >= 2, "{next} messages");
    }
}

/// A client socket that reads at most a few hundred bytes per call: a reader slower than
/// pgferry's writer, so pgferry's socket is full when the result's last bytes are written.
struct Trickle(TcpStream);

impl tokio::io::AsyncRead for Trickle {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let mut small = [0u8; 256];
        let mut part = tokio::io::ReadBuf::new(&mut small);
        let polled = std::pin::Pin::new(&mut self.0).poll_read(cx, &mut part);
        let n = part.filled().len().min(buf.remaining());
        buf.put_slice(&part.filled()[..n]);
        polled
    }
}

impl tokio::io::AsyncWrite for Trickle {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
