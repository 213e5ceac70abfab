//! ClientTls against a real rustls client (tokio-rustls) over loopback TCP.

use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::SupportedProtocolVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::client::TlsStream;

use super::*;

type Client = TlsStream<TcpStream>;

struct Pair {
    server: ClientTls,
    client: Client,
}

fn configs(
    version: &'static SupportedProtocolVersion,
) -> (Arc<ServerConfig>, rustls::ClientConfig) {
    let Ok(certified) = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]) else {
        panic!("rcgen failed");
    };
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[version])
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(vec![cert.clone()], key)
        });
    let Ok(mut server) = server else {
        panic!("server config: {:?}", server.err());
    };
    server.send_tls13_tickets = 0;
    let mut roots = rustls::RootCertStore::empty();
    assert!(roots.add(cert).is_ok());
    let client =
        rustls::ClientConfig::builder_with_provider(provider).with_protocol_versions(&[version]);
    let Ok(client) = client else {
        panic!("client config");
    };
    let client = client.with_root_certificates(roots).with_no_client_auth();
    (Arc::new(server), client)
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

async fn pair(version: &'static SupportedProtocolVersion) -> Pair {
    let (server_config, client_config) = configs(version);
    let (client_tcp, server_tcp) = tcp_pair().await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let name = ServerName::try_from("localhost").unwrap();
    let (server, client) = tokio::join!(
        ClientTls::accept(server_tcp, server_config),
        connector.connect(name, client_tcp)
    );
    Pair {
        server: server.unwrap(),
        client: client.unwrap(),
    }
}

/// Bounds a step that would hang if bytes were stranded.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(10), f).await {
        Ok(value) => value,
        Err(_) => panic!("{what} hung"),
    }
}

fn holds_no_buffer(server: &ClientTls) -> bool {
    server.session.incoming.capacity() == 0
        && server.session.outgoing.is_empty()
        && server.session.stash.is_empty()
}

#[tokio::test]
async fn data_flows_both_ways_on_tls12_and_tls13() {
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let Pair {
            mut server,
            mut client,
        } = pair(version).await;
        client.write_all(b"ping").await.unwrap();
        client.flush().await.unwrap();
        let mut got = [0u8; 4];
        bounded("read", server.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"ping");
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        server.write_all(&big).await.unwrap();
        server.flush().await.unwrap();
        let mut back = vec![0u8; big.len()];
        bounded("client read", client.read_exact(&mut back))
            .await
            .unwrap();
        assert!(back == big, "{version:?}: data differs");
    }
}

#[tokio::test]
async fn an_idle_session_holds_no_buffer() {
    let Pair {
        mut server,
        mut client,
    } = pair(&rustls::version::TLS13).await;
    client.write_all(b"hello").await.unwrap();
    client.flush().await.unwrap();
    let mut got = [0u8; 5];
    server.read_exact(&mut got).await.unwrap();
    // Wait for more, as an idle session does: one poll, which finds nothing.
    let mut more = [0u8; 8];
    let waiting = poll_fn(|cx| {
        let mut buf = ReadBuf::new(&mut more);
        Poll::Ready(Pin::new(&mut server).poll_read(cx, &mut buf).is_pending())
    })
    .await;
    assert!(waiting);
    assert!(holds_no_buffer(&server), "{server:?}");
}

#[tokio::test]
async fn a_record_larger_than_the_read_buffer_arrives_whole() {
    let Pair {
        mut server,
        mut client,
    } = pair(&rustls::version::TLS13).await;
    let message = vec![b'q'; 10_000];
    client.write_all(&message).await.unwrap();
    client.flush().await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1000];
    while got.len() < message.len() {
        let n = bounded("read", server.read(&mut chunk)).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(got, message);
}

#[tokio::test]
async fn queued_ciphertext_goes_out_while_the_server_waits_to_read() {
    let Pair { mut server, client } = pair(&rustls::version::TLS13).await;
    // Small socket buffers: nearly every write leaves ciphertext queued.
    let sock = socket2::SockRef::from(server.tcp());
    assert!(sock.set_send_buffer_size(4096).is_ok());
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let big = vec![b'r'; 4 << 20];
    let server_side = async {
        // Written without flush; then the server only reads, as the relay does: its read
        // must send what the writes left queued.
        server.write_all(&big).await.unwrap();
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        got
    };
    let client_side = async {
        let mut back = vec![0u8; big.len()];
        client_read.read_exact(&mut back).await.unwrap();
        client_write.write_all(b"next").await.unwrap();
        client_write.flush().await.unwrap();
        back
    };
    let (got, back) = bounded("exchange", async { tokio::join!(server_side, client_side) }).await;
    assert_eq!(&got, b"next");
    assert!(back == big);
}

#[tokio::test]
async fn shutdown_sends_close_notify_and_the_peers_reads_as_eof() {
    let Pair {
        mut server,
        mut client,
    } = pair(&rustls::version::TLS13).await;
    server.write_all(b"bye").await.unwrap();
    server.shutdown().await.unwrap();
    let mut all = Vec::new();
    // tokio-rustls reports EOF without error only after a close_notify.
    bounded("client read", client.read_to_end(&mut all))
        .await
        .unwrap();
    assert_eq!(all, b"bye");
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let n = bounded("server read", server.read_to_end(&mut rest)).await;
    assert_eq!(n.unwrap(), 0);
}

#[tokio::test]
async fn a_key_update_from_the_client_is_answered() {
    let Pair {
        mut server,
        mut client,
    } = pair(&rustls::version::TLS13).await;
    // The client updates its keys and asks the server to update its own.
    assert!(client.get_mut().1.refresh_traffic_keys().is_ok());
    client.write_all(b"after").await.unwrap();
    client.flush().await.unwrap();
    let mut got = [0u8; 5];
    bounded("server read", server.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(&got, b"after");
    server.write_all(b"reply").await.unwrap();
    let mut back = [0u8; 5];
    bounded("client read", client.read_exact(&mut back))
        .await
        .unwrap();
    assert_eq!(&back, b"reply");
}

#[tokio::test]
async fn garbage_after_the_handshake_is_an_error() {
    let Pair { mut server, client } = pair(&rustls::version::TLS13).await;
    let (mut tcp, _) = client.into_inner();
    // An application-data record that does not decrypt.
    tcp.write_all(&[0x17, 0x03, 0x03, 0x00, 0x20])
        .await
        .unwrap();
    tcp.write_all(&[0xAB; 0x20]).await.unwrap();
    let mut buf = [0u8; 16];
    let read = bounded("server read", server.read(&mut buf)).await;
    assert_eq!(
        read.map_err(|e| e.kind()).err(),
        Some(io::ErrorKind::InvalidData)
    );
}

#[tokio::test]
async fn a_handshake_cut_short_or_not_tls_fails() {
    let (server_config, _) = configs(&rustls::version::TLS13);
    let (mut client, server) = tcp_pair().await;
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let accepted = bounded(
        "accept",
        ClientTls::accept(server, Arc::clone(&server_config)),
    )
    .await;
    assert!(accepted.is_err());
    let (client, server) = tcp_pair().await;
    drop(client);
    let accepted = bounded("accept", ClientTls::accept(server, server_config)).await;
    assert_eq!(
        accepted.err().map(|e| e.kind()),
        Some(io::ErrorKind::UnexpectedEof)
    );
}

#[tokio::test]
async fn tcp_eof_between_records_reads_as_eof() {
    let Pair { mut server, client } = pair(&rustls::version::TLS12).await;
    let (tcp, _) = client.into_inner();
    drop(tcp);
    let mut buf = [0u8; 16];
    let n = bounded("server read", server.read(&mut buf)).await;
    assert_eq!(n.unwrap(), 0);
}
