//! Unit tests of `startup`.

use super::*;

const LIMITS: StartupLimits = StartupLimits {
    max_packet_size: 10_000,
    max_parameters: 4,
};

fn packet(code: i32, body: &[u8]) -> Vec<u8> {
    let mut v = ((body.len() + 8) as i32).to_be_bytes().to_vec();
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[test]
fn parses_requests() {
    assert_eq!(
        parse_packet(&packet(SSL_REQUEST_CODE, b""), LIMITS),
        Ok(InitialPacket::SslRequest)
    );
    assert_eq!(
        parse_packet(&packet(GSSENC_REQUEST_CODE, b""), LIMITS),
        Ok(InitialPacket::GssEncRequest)
    );
    let cancel = packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 9, 0, 0, 1, 0]);
    assert_eq!(
        parse_packet(&cancel, LIMITS),
        Ok(InitialPacket::Cancel {
            process_id: 9,
            secret_key: 256
        })
    );
    assert_eq!(
        parse_packet(&packet(CANCEL_REQUEST_CODE, &[0, 0]), LIMITS),
        Err(StartupError::BadCancelLength(10))
    );
}

#[test]
fn parses_startup_parameters() {
    let body = b"user\0app\0database\0db\0application_name\0lambda\0_pq_.x\0y\0\0";
    let Ok(InitialPacket::Startup(s)) = parse_packet(&packet(196_608, body), LIMITS) else {
        panic!("startup expected");
    };
    assert_eq!((s.user.as_str(), s.database.as_str()), ("app", "db"));
    assert_eq!(s.param("application_name"), Some("lambda"));
    assert_eq!(s.protocol_options, vec!["_pq_.x".to_string()]);
}

#[test]
fn database_defaults_to_user_and_user_is_required() {
    let Ok(InitialPacket::Startup(s)) = parse_packet(&packet(196_608, b"user\0app\0\0"), LIMITS)
    else {
        panic!("startup expected");
    };
    assert_eq!(s.database, "app");
    assert_eq!(
        parse_packet(&packet(196_608, b"\0"), LIMITS),
        Err(StartupError::MissingUser)
    );
}

#[test]
fn rejects_bad_packets() {
    assert!(matches!(
        parse_packet(&packet(131_072, b"\0"), LIMITS),
        Err(StartupError::UnsupportedProtocol { major: 2, .. })
    ));
    assert!(parse_packet(&packet(196_608, b"user\0app"), LIMITS).is_err());
    let many = b"a\0b\0c\0d\0e\0f\0g\0h\0i\0j\0user\0u\0\0";
    assert_eq!(
        parse_packet(&packet(196_608, many), LIMITS),
        Err(StartupError::TooManyParameters { max: 4 })
    );
    assert_eq!(
        parse_packet(
            &packet(196_608, b"user\0u\0replication\0database\0\0"),
            LIMITS
        ),
        Err(StartupError::Replication)
    );
}

#[tokio::test]
async fn read_packet_enforces_limits() {
    let mut inbox = Inbox::default();
    let mut big: &[u8] = &[0, 0, 0x30, 0, 1, 2];
    assert!(matches!(
        read_packet(&mut big, &mut inbox, 10_000).await,
        Err(StartupError::TooLarge { .. })
    ));
    let (mut inbox, mut tiny): (_, &[u8]) = (Inbox::default(), &[0, 0, 0, 4]);
    assert_eq!(
        read_packet(&mut tiny, &mut inbox, 10_000).await,
        Err(StartupError::BadLength(4))
    );
    let (mut inbox, mut short): (_, &[u8]) = (Inbox::default(), &[0, 0, 0, 12, 1]);
    assert_eq!(
        read_packet(&mut short, &mut inbox, 10_000).await,
        Err(StartupError::Incomplete)
    );
    let (mut inbox, mut half_length): (_, &[u8]) = (Inbox::default(), &[0, 0]);
    assert_eq!(
        read_packet(&mut half_length, &mut inbox, 10_000).await,
        Err(StartupError::Incomplete)
    );
    let (mut inbox, mut nothing): (_, &[u8]) = (Inbox::default(), &[]);
    assert_eq!(
        read_packet(&mut nothing, &mut inbox, 10_000).await,
        Err(StartupError::Eof)
    );
    // PostgreSQL's limit applies to what follows the length word.
    let mut at_limit = packet(196_608, &[b'x'; 9996]);
    at_limit.extend_from_slice(b"more");
    let (mut inbox, mut stream) = (Inbox::default(), at_limit.as_slice());
    assert!(read_packet(&mut stream, &mut inbox, 10_000).await.is_ok());
}

#[test]
fn parameters_that_are_not_utf8_are_named() {
    let body = b"user\0app\0application_name\0caf\xc3\x28\0\0";
    assert_eq!(
        parse_packet(&packet(196_608, body), LIMITS),
        Err(StartupError::NotUtf8 {
            what: "startup parameter \"application_name\"".into(),
            bytes: "0xc3".into(),
        })
    );
    let body = b"user\0\xff\0\0";
    let error = parse_packet(&packet(196_608, body), LIMITS).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid byte sequence for encoding \"UTF8\" in startup parameter \"user\": 0xff"
    );
    assert_eq!(error.sqlstate(), "22021");
    let body = b"us\xe9r\0app\0\0";
    assert!(matches!(
        parse_packet(&packet(196_608, body), LIMITS),
        Err(StartupError::NotUtf8 { what, .. }) if what == "the name of a startup parameter"
    ));
}

/// Two packets that arrived together: the first read takes both, the second packet is
/// served from the inbox, and what follows it stays pending.
#[tokio::test]
async fn read_packet_keeps_what_arrived_behind_a_packet() {
    let mut wire = packet(SSL_REQUEST_CODE, b"");
    wire.extend_from_slice(&packet(196_608, b"user\0u\0\0"));
    wire.extend_from_slice(b"rest");
    let (mut inbox, mut stream) = (Inbox::default(), wire.as_slice());
    let first = read_packet(&mut stream, &mut inbox, 10_000).await.unwrap();
    assert_eq!(parse_packet(first, LIMITS), Ok(InitialPacket::SslRequest));
    assert!(stream.is_empty(), "one read took everything");
    assert_eq!(inbox.pending().len(), 16 + 4);
    let second = read_packet(&mut stream, &mut inbox, 10_000).await.unwrap();
    assert!(matches!(
        parse_packet(second, LIMITS),
        Ok(InitialPacket::Startup(_))
    ));
    assert_eq!(inbox.pending(), b"rest");
    assert_eq!(&inbox.into_pending()[..], b"rest");
}

/// `fill` never reads past its limit, so bytes meant for a later owner stay in the stream.
#[tokio::test]
async fn fill_reads_no_further_than_its_limit() {
    let (mut inbox, mut stream): (_, &[u8]) = (Inbox::default(), b"0123456789");
    inbox.fill(&mut stream, 2, 6).await.unwrap();
    assert_eq!(inbox.pending(), b"012345");
    assert_eq!(stream, b"6789");
    assert_eq!(inbox.take(4), b"0123");
    inbox.fill(&mut stream, 5, 5).await.unwrap();
    assert_eq!(inbox.pending(), b"45678");
    assert_eq!(stream, b"9");
    let eof = inbox.fill(&mut stream, 9, 9).await.unwrap_err();
    assert_eq!(eof.kind(), io::ErrorKind::UnexpectedEof);
}
