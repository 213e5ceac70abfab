//! Micro-benchmarks of pgferry's per-message and per-login hot paths, through the public API.
//!
//! Run: `cargo bench --bench hot_paths` (full), `-- --quick` (fast estimate) or `-- --test`
//! (CI smoke: every benchmark body runs once, fixtures are checked, nothing is measured).
//!
//! What each group measures and why:
//! - `frame_scan/*`: the relay's backend→client header walk (`FrameScanner::next`) over a read
//!   buffer, decoding exactly the frames the relay decodes (ReadyForQuery, ParameterStatus,
//!   ErrorResponse). Reported as bytes/s: that is the proxy's ceiling for result streaming.
//! - `startup/parse_packet`: once per client connection, on untrusted input.
//! - `scram/*`: the server side of a SCRAM-SHA-256 login, the dominant CPU cost of a cold
//!   serverless connection apart from TLS.
//! - `decode/*`: the two decoders that run on every transaction (ready_status) or every error.
//! - `sql_scan/*`: the transaction-mode classification of every Query and Parse text; ordinary
//!   statements must stay cheap (reported as bytes/s of SQL text).
//! - `tls/server_handshake`: the server side of a full TLS 1.3 handshake with pgferry's own
//!   listener configuration (ECDSA P-256 certificate, X25519, the client offering AES-256 first
//!   as OpenSSL does): the crypto floor of every new TLS client, and the figure to compare when
//!   judging another crypto provider.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pgferry::auth::{ScramExchange, ScramSecret, DEFAULT_ITERATIONS};
use pgferry::protocol::decode::{error_fields, parameter_status, ready_status};
use pgferry::protocol::frame::{FrameScanner, Scan};
use pgferry::protocol::startup::{parse_packet, InitialPacket, StartupLimits};
use pgferry::session::sql_scan;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

/// Largest message the scan accepts, as generous as the relay's default.
const MAX_MESSAGE: usize = 1 << 30;
/// Size of the DataRow-heavy read buffer (a typical socket read of a large result).
const RESULT_BUFFER_BYTES: usize = 64 * 1024;
/// Size of the small-message buffer (a pipelined extended-protocol batch).
const SMALL_BUFFER_BYTES: usize = 16 * 1024;
const PASSWORD: &str = "bench-password";

/// Same predicate as the relay's backend side (`session::backend_output::wants_body`, private):
/// only ReadyForQuery, ParameterStatus and ErrorResponse are buffered whole and decoded.
fn wants_body(tag: u8) -> bool {
    matches!(tag, b'Z' | b'S' | b'E')
}

/// One wire message: tag, big-endian length (including itself), body.
fn push_frame(buf: &mut Vec<u8>, tag: u8, body: &[u8]) {
    buf.push(tag);
    let len = i32::try_from(body.len() + 4).expect("bench frame fits in i32");
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
}

/// Body of a DataRow with the given text-format column values.
fn data_row(values: &[&[u8]]) -> Vec<u8> {
    let count = u16::try_from(values.len()).expect("few columns");
    let mut body = count.to_be_bytes().to_vec();
    for value in values {
        let len = i32::try_from(value.len()).expect("short value");
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(value);
    }
    body
}

/// Body of a RowDescription for text columns named `names` (all int4-like metadata).
fn row_description(names: &[&str]) -> Vec<u8> {
    let count = u16::try_from(names.len()).expect("few columns");
    let mut body = count.to_be_bytes().to_vec();
    for name in names {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(&16_384i32.to_be_bytes()); // table OID
        body.extend_from_slice(&1i16.to_be_bytes()); // column number
        body.extend_from_slice(&25i32.to_be_bytes()); // type OID (text)
        body.extend_from_slice(&(-1i16).to_be_bytes()); // type size
        body.extend_from_slice(&(-1i32).to_be_bytes()); // type modifier
        body.extend_from_slice(&0i16.to_be_bytes()); // format: text
    }
    body
}

/// A `SELECT id, name, created_at ...` result filling ~64 KiB: RowDescription, DataRows,
/// CommandComplete, ReadyForQuery.
fn result_buffer() -> Vec<u8> {
    let mut buf = Vec::with_capacity(RESULT_BUFFER_BYTES + 256);
    push_frame(
        &mut buf,
        b'T',
        &row_description(&["id", "name", "created_at"]),
    );
    let mut rows = 0usize;
    while buf.len() < RESULT_BUFFER_BYTES {
        let id = rows.to_string();
        let name = format!("customer-{rows:08}");
        let row = data_row(&[
            id.as_bytes(),
            name.as_bytes(),
            b"2026-11-24 13:48:01.123+00",
        ]);
        push_frame(&mut buf, b'D', &row);
        rows += 1;
    }
    push_frame(&mut buf, b'C', format!("SELECT {rows}\0").as_bytes());
    push_frame(&mut buf, b'Z', b"I");
    buf
}

/// Replies to a pipelined batch of small extended-protocol statements: per statement
/// ParseComplete, BindComplete, CommandComplete, ReadyForQuery (inside a transaction), with
/// an occasional ParameterStatus, until ~16 KiB.
fn small_messages_buffer() -> Vec<u8> {
    let mut buf = Vec::with_capacity(SMALL_BUFFER_BYTES + 64);
    let mut statements = 0usize;
    while buf.len() < SMALL_BUFFER_BYTES {
        push_frame(&mut buf, b'1', b"");
        push_frame(&mut buf, b'2', b"");
        push_frame(&mut buf, b'C', b"INSERT 0 1\0");
        if statements.is_multiple_of(32) {
            push_frame(&mut buf, b'S', b"application_name\0bench\0");
        }
        push_frame(&mut buf, b'Z', b"T");
        statements += 1;
    }
    buf
}

/// Walks `buf` the way the relay walks a backend read buffer; returns the number of frames
/// decoded so the work cannot be optimised away (and the fixtures can be checked).
fn scan_buffer(buf: &[u8]) -> usize {
    let mut scanner = FrameScanner::new();
    let mut pos = 0;
    let mut decoded = 0;
    while let Some(rest) = buf.get(pos..) {
        match scanner.next(rest, MAX_MESSAGE, wants_body) {
            Ok(Scan::Pass { len, .. }) => pos += len,
            Ok(Scan::Frame(header)) => {
                let frame = rest.get(..header.total_len).unwrap_or_default();
                decoded += decode_wanted(header.tag, frame);
                pos += header.total_len;
            }
            Ok(Scan::NeedMore) | Err(_) => break,
        }
    }
    decoded
}

/// Decodes one wanted frame; 1 when it decoded cleanly.
fn decode_wanted(tag: u8, frame: &[u8]) -> usize {
    let ok = match tag {
        b'Z' => ready_status(frame).is_ok(),
        b'S' => parameter_status(frame).is_ok(),
        b'E' => error_fields(frame).is_ok(),
        _ => false,
    };
    usize::from(ok)
}

fn bench_frame_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_scan");
    let cases = [
        ("datarow_64k", result_buffer()),
        ("small_messages_16k", small_messages_buffer()),
    ];
    for (name, buf) in cases {
        assert!(
            scan_buffer(&buf) > 0,
            "{name}: fixture has no decoded frame"
        );
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.bench_function(name, |b| b.iter(|| scan_buffer(black_box(&buf))));
    }
    group.finish();
}

/// The startup packet libpq sends for
/// `psql "user=app dbname=app application_name=... options='-c search_path=public'"`.
fn libpq_startup_packet() -> Vec<u8> {
    let params: [(&str, &str); 5] = [
        ("user", "app"),
        ("database", "app"),
        ("application_name", "lambda-orders-handler"),
        ("client_encoding", "UTF8"),
        ("options", "-c search_path=public -c statement_timeout=5000"),
    ];
    let mut body = 196_608i32.to_be_bytes().to_vec(); // protocol 3.0
    for (name, value) in params {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let len = i32::try_from(body.len() + 4).expect("small packet");
    let mut packet = len.to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

fn bench_startup(c: &mut Criterion) {
    let packet = libpq_startup_packet();
    let limits = StartupLimits {
        max_packet_size: 10_000,
        max_parameters: 64,
    };
    let parsed = parse_packet(&packet, limits).expect("fixture parses");
    assert!(matches!(parsed, InitialPacket::Startup(ref s) if s.user == "app"));
    c.bench_function("startup/parse_packet", |b| {
        b.iter(|| parse_packet(black_box(&packet), limits))
    });
}

/// Drives one client (postgres_protocol's, as libpq would) through a login against `secret`,
/// timing only the server's work: `ScramExchange::new` + `client_first`, then `client_final`.
/// The client's own PBKDF2 and proof run outside the timed spans.
fn timed_server_login(secret: &ScramSecret) -> Duration {
    let mut client = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
    let start = Instant::now();
    let mut server = ScramExchange::new(secret);
    let server_first = server.client_first(black_box(client.message()));
    let mut spent = start.elapsed();
    let server_first = server_first.expect("client-first accepted");
    client.update(&server_first).expect("server-first valid");
    let start = Instant::now();
    let server_final = server.client_final(black_box(client.message()));
    spent += start.elapsed();
    client
        .finish(&server_final.expect("proof accepted"))
        .expect("server signature valid");
    spent
}

/// One complete login, both sides, as a cold client connection costs it end to end in CPU.
fn full_login(secret: &ScramSecret) {
    let mut client = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
    let mut server = ScramExchange::new(secret);
    let server_first = server.client_first(client.message()).expect("first");
    client.update(&server_first).expect("server-first valid");
    let server_final = server.client_final(client.message()).expect("proof");
    client.finish(&server_final).expect("signature");
}

fn bench_scram(c: &mut Criterion) {
    // The server's work does not depend on the iteration count (it checks the proof against
    // StoredKey with one HMAC and one SHA-256); only the client's PBKDF2 does. One iteration
    // keeps the untimed client work from dominating the wall-clock time of the benchmark.
    let cheap = ScramSecret::from_password_with_salt(PASSWORD, b"bench-salt-16byt", 1);
    let realistic =
        ScramSecret::from_password_with_salt(PASSWORD, b"bench-salt-16byt", DEFAULT_ITERATIONS);
    let mut group = c.benchmark_group("scram");
    group.bench_function("server_login", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| timed_server_login(&cheap)).sum())
    });
    group.bench_function("client_first_only", |b| {
        let client = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
        b.iter_batched(
            || ScramExchange::new(&cheap),
            |mut server| server.client_first(black_box(client.message())),
            BatchSize::SmallInput,
        )
    });
    group.sample_size(10);
    group.bench_function("full_login_both_sides_default_iterations", |b| {
        b.iter(|| full_login(&realistic))
    });
    group.finish();
}

/// A typical PostgreSQL ErrorResponse (undefined table), all the fields the server sends.
fn error_response_frame() -> Vec<u8> {
    let fields: [(u8, &str); 8] = [
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "42P01"),
        (b'M', "relation \"orders_archive\" does not exist"),
        (b'P', "15"),
        (b'F', "parse_relation.c"),
        (b'L', "1452"),
        (b'R', "parserOpenTable"),
    ];
    let mut body = Vec::new();
    for (code, value) in fields {
        body.push(code);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut frame = Vec::new();
    push_frame(&mut frame, b'E', &body);
    frame
}

fn bench_decode(c: &mut Criterion) {
    let error = error_response_frame();
    let fields = error_fields(&error).expect("fixture decodes");
    assert_eq!(fields.sqlstate, "42P01");
    let mut ready = Vec::new();
    push_frame(&mut ready, b'Z', b"T");
    assert_eq!(ready_status(&ready), Ok(b'T'));
    c.bench_function("decode/error_fields", |b| {
        b.iter(|| error_fields(black_box(&error)))
    });
    c.bench_function("decode/ready_status", |b| {
        b.iter(|| ready_status(black_box(&ready)))
    });
}

/// Simple-Query texts the scanner classifies on every transaction: pgbench's select-only
/// query, typical ORM statements, and one that really has an effect (for scale).
const SCAN_QUERIES: [(&str, &str); 5] = [
    (
        "pgbench_select",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 123;",
    ),
    (
        "orm_select",
        "SELECT \"users\".\"id\", \"users\".\"email\", \"users\".\"created_at\" FROM \"users\" \
         WHERE \"users\".\"tenant_id\" = $1 AND \"users\".\"deleted_at\" IS NULL \
         ORDER BY \"users\".\"id\" LIMIT $2",
    ),
    (
        "orm_insert",
        "INSERT INTO \"orders\" (\"user_id\", \"total\", \"status\", \"created_at\") \
         VALUES ($1, $2, $3, $4) RETURNING \"id\"",
    ),
    (
        "orm_update",
        "UPDATE \"orders\" SET \"status\" = $1, \"updated_at\" = $2 WHERE \"orders\".\"id\" = $3",
    ),
    (
        "set_config",
        "SELECT set_config('app.user_id', '42', false)",
    ),
];

fn bench_sql_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("sql_scan");
    for (name, sql) in SCAN_QUERIES {
        let expect_effect = name == "set_config";
        assert_eq!(
            !sql_scan::scan(sql.as_bytes()).is_empty(),
            expect_effect,
            "{name}: unexpected classification"
        );
        group.throughput(Throughput::Bytes(sql.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| sql_scan::scan(black_box(sql.as_bytes())))
        });
    }
    group.finish();
}

/// pgferry's listener configuration (through `tls::server_config`, from PEM files as in
/// production) and a client trusting its fresh self-signed ECDSA P-256 certificate.
fn tls_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("rcgen certificate");
    let dir = std::env::temp_dir().join(format!("pgferry-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).expect("write key");
    let server = pgferry::tls::server_config(&dir.join("cert.pem"), &dir.join("key.pem"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(certified.cert.der().clone())
        .expect("trust the certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("client versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server.expect("server config"), Arc::new(client))
}

/// Hands one side everything the other wrote and lets it process the flight.
fn feed<D>(conn: &mut rustls::ConnectionCommon<D>, mut wire: &[u8]) {
    while !wire.is_empty() {
        conn.read_tls(&mut wire).expect("read_tls");
    }
    conn.process_new_packets().expect("peer's flight accepted");
}

/// One full handshake in memory, timing only the server's work (creating its connection,
/// processing the client's flights, writing its own, dropping it).
fn timed_server_handshake(
    server: &Arc<rustls::ServerConfig>,
    client: &Arc<rustls::ClientConfig>,
) -> Duration {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let mut client = rustls::ClientConnection::new(Arc::clone(client), name).expect("client");
    let start = Instant::now();
    let mut server = rustls::ServerConnection::new(Arc::clone(server)).expect("server");
    let mut spent = start.elapsed();
    while client.is_handshaking() || server.is_handshaking() {
        let mut hello = Vec::new();
        client.write_tls(&mut hello).expect("client write_tls");
        let start = Instant::now();
        feed(&mut server, &hello);
        let mut answer = Vec::new();
        server.write_tls(&mut answer).expect("server write_tls");
        spent += start.elapsed();
        feed(&mut client, &answer);
    }
    let start = Instant::now();
    drop(black_box(server));
    spent + start.elapsed()
}

fn bench_tls(c: &mut Criterion) {
    let (server, client) = tls_configs();
    let mut group = c.benchmark_group("tls");
    group.bench_function("server_handshake", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| timed_server_handshake(&server, &client))
                .sum()
        })
    });
    group.finish();
}

/// Short runs: enough for a stable median on an idle machine, fast enough for `--quick`/CI.
fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20)
}

criterion_group! {
    name = hot_paths;
    config = config();
    targets = bench_frame_scan, bench_startup, bench_scram, bench_decode, bench_sql_scan, bench_tls
}
criterion_main!(hot_paths);
