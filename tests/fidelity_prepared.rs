//! Named prepared statements through pgferry must behave exactly as on a direct connection:
//! `DEALLOCATE ALL` / `DISCARD ALL` (inside and outside transactions), a new name for an old
//! text after a schema change, and error texts that name the client's own statements.
//!
//! Each scenario runs the same raw protocol messages on a direct connection to PostgreSQL and
//! through pgferry, and compares the transcripts (message types, command tags, row types and
//! values, SQLSTATEs and error texts).

mod support;

use bytes::BytesMut;
use postgres_protocol::message::frontend as wire;
use support::probe::frontend as fe;
use support::probe::{read_message, RawClient};
use support::*;

use pgferry::config::PoolMode;

/// A raw session straight to PostgreSQL (SCRAM), the oracle every scenario is compared with.
async fn direct() -> RawClient {
    RawClient::login(pg().addr(), APP_USER, APP_PASSWORD, APP_DB).await
}

/// A proxy in `mode` with `pool_size` backends, md5 allowed for [`RawClient`].
async fn proxy(mode: PoolMode, pool_size: u32) -> pgferry::ProxyHandle {
    let mut config = proxy_config(pg());
    config.auth.allow_md5 = true;
    config.databases[0].pool_size = pool_size;
    config.databases[0].pool_mode = mode;
    start_proxy(config).await
}

async fn proxied(handle: &pgferry::ProxyHandle) -> RawClient {
    RawClient::login(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await
}

/// NUL-terminated strings of a message body, lossily as text.
fn strings(body: &[u8]) -> Vec<String> {
    body.split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// One message as a comparable line: errors by SQLSTATE and text, command tags, column type
/// OIDs, row values, transaction status.
fn describe(tag: u8, body: &[u8]) -> String {
    let t = char::from(tag);
    match tag {
        b'E' | b'N' => {
            let fields = strings(body);
            let field = |k: char| {
                fields
                    .iter()
                    .find(|f| f.starts_with(k))
                    .map(|f| f[1..].to_string())
                    .unwrap_or_default()
            };
            format!("{t} {} {}", field('C'), field('M'))
        }
        b'C' => format!("C {}", strings(body)[0]),
        b'Z' => format!("Z {}", char::from(body[0])),
        b'T' => {
            let count = u16::from_be_bytes([body[0], body[1]]) as usize;
            let mut rest = &body[2..];
            let mut oids = Vec::new();
            for _ in 0..count {
                let end = rest.iter().position(|b| *b == 0).expect("column name");
                let oid = &rest[end + 7..end + 11];
                oids.push(u32::from_be_bytes([oid[0], oid[1], oid[2], oid[3]]));
                rest = &rest[end + 19..];
            }
            format!("T {oids:?}")
        }
        b'D' => {
            let count = u16::from_be_bytes([body[0], body[1]]) as usize;
            let mut rest = &body[2..];
            let mut values = Vec::new();
            for _ in 0..count {
                let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                rest = &rest[4..];
                match usize::try_from(len) {
                    Ok(len) => {
                        values.push(String::from_utf8_lossy(&rest[..len]).into_owned());
                        rest = &rest[len..];
                    }
                    Err(_) => values.push("NULL".into()),
                }
            }
            format!("D {values:?}")
        }
        _ => t.to_string(),
    }
}

/// Sends `bytes` and returns the transcript through `readies` ReadyForQuery messages.
async fn exchange(client: &mut RawClient, bytes: &[u8], readies: usize) -> Vec<String> {
    client.send(bytes).await;
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < readies {
        let (tag, body) = read_message(&mut client.stream)
            .await
            .expect("message before ReadyForQuery");
        if tag == b'S' || tag == b'N' {
            continue; // ParameterStatus / notices may differ between paths
        }
        seen += usize::from(tag == b'Z');
        out.push(describe(tag, &body));
    }
    out
}

/// Builders for the messages of a scenario.
fn query(sql: &str) -> BytesMut {
    let mut buf = BytesMut::new();
    fe::query(&mut buf, sql);
    buf
}

/// Parse `name` + Sync.
fn prepare(name: &str, sql: &str) -> BytesMut {
    let mut buf = BytesMut::new();
    fe::parse(&mut buf, name, sql);
    fe::sync(&mut buf);
    buf
}

/// Bind `name` to the unnamed portal, Describe it, Execute, Sync.
fn run(name: &str) -> BytesMut {
    let mut buf = BytesMut::new();
    fe::bind(&mut buf, name);
    wire::describe(b'P', "", &mut buf).expect("describe");
    fe::execute(&mut buf);
    fe::sync(&mut buf);
    buf
}

/// Parse, Bind, Describe, Execute of the unnamed statement + Sync (a one-shot extended query).
fn unnamed(sql: &str) -> BytesMut {
    let mut buf = prepare("", sql);
    buf.truncate(buf.len() - 5); // drop the Sync
    buf.extend_from_slice(&run(""));
    buf
}

/// A step of a scenario: messages and how many ReadyForQuery they end with.
type Step = (BytesMut, usize);

async fn transcript(client: &mut RawClient, steps: &[Step]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (bytes, readies) in steps {
        out.push(exchange(client, bytes, *readies).await);
    }
    out
}

/// Runs `steps` on a direct connection and through a fresh proxy (`mode`, one backend) and
/// asserts identical transcripts; then a second client of that proxy (same backend) runs
/// `after`, compared with a second direct connection.
async fn same_as_direct(mode: PoolMode, steps: &[Step], after: &[Step]) {
    let expected = transcript(&mut direct().await, steps).await;
    let expected_after = transcript(&mut direct().await, after).await;
    let handle = proxy(mode, 1).await;
    let mut client = proxied(&handle).await;
    let got = transcript(&mut client, steps).await;
    assert_eq!(
        got, expected,
        "{mode:?}: first client differs from PostgreSQL"
    );
    drop(client);
    let got_after = transcript(&mut proxied(&handle).await, after).await;
    assert_eq!(
        got_after, expected_after,
        "{mode:?}: the next client on that backend differs from PostgreSQL"
    );
}

fn both_modes() -> [PoolMode; 2] {
    [PoolMode::Transaction, PoolMode::Session]
}

/// What the next client of the backend does: prepare and run the statements used before.
fn next_client() -> Vec<Step> {
    vec![
        (prepare("s1", "SELECT 1 AS one"), 1),
        (run("s1"), 1),
        (prepare("s2", "SELECT 2 AS two"), 1),
        (run("s2"), 1),
    ]
}

/// Prepares and runs s1 and s2, then `reset` (steps), then prepares the same texts again
/// under new names and uses the old names.
fn around_reset(reset: Vec<Step>) -> Vec<Step> {
    let mut steps = vec![
        (prepare("s1", "SELECT 1 AS one"), 1),
        (run("s1"), 1),
        (prepare("s2", "SELECT 2 AS two"), 1),
        (run("s2"), 1),
    ];
    steps.extend(reset);
    steps.extend([
        (prepare("s3", "SELECT 1 AS one"), 1),
        (run("s3"), 1),
        (run("s1"), 1),
        (prepare("s1", "SELECT 1 AS one"), 1),
        (run("s1"), 1),
        (run("s2"), 1),
    ]);
    steps
}

#[tokio::test]
async fn deallocate_all_in_a_committed_transaction_by_simple_query() {
    let reset = vec![
        (query("BEGIN"), 1),
        (query("DEALLOCATE ALL"), 1),
        (query("COMMIT"), 1),
    ];
    for mode in both_modes() {
        same_as_direct(mode, &around_reset(reset.clone()), &next_client()).await;
    }
}

#[tokio::test]
async fn deallocate_all_in_a_rolled_back_transaction_by_simple_query() {
    let reset = vec![
        (query("BEGIN"), 1),
        (query("DEALLOCATE ALL"), 1),
        (query("ROLLBACK"), 1),
    ];
    for mode in both_modes() {
        same_as_direct(mode, &around_reset(reset.clone()), &next_client()).await;
    }
}

#[tokio::test]
async fn deallocate_all_in_one_query_string_with_its_transaction() {
    for sql in [
        "BEGIN; DEALLOCATE ALL; COMMIT",
        "BEGIN; DEALLOCATE ALL; ROLLBACK",
    ] {
        for mode in both_modes() {
            same_as_direct(mode, &around_reset(vec![(query(sql), 1)]), &next_client()).await;
        }
    }
}

#[tokio::test]
async fn deallocate_all_by_extended_protocol_in_committed_and_rolled_back_transactions() {
    for end in ["COMMIT", "ROLLBACK"] {
        let unnamed_reset = vec![
            (query("BEGIN"), 1),
            (unnamed("DEALLOCATE ALL"), 1),
            (query(end), 1),
        ];
        let named_reset = vec![
            (query("BEGIN"), 1),
            (prepare("dealloc", "DEALLOCATE ALL"), 1),
            (run("dealloc"), 1),
            (query(end), 1),
            (run("dealloc"), 1),
        ];
        for mode in both_modes() {
            same_as_direct(mode, &around_reset(unnamed_reset.clone()), &next_client()).await;
            same_as_direct(mode, &around_reset(named_reset.clone()), &next_client()).await;
        }
    }
}

#[tokio::test]
async fn deallocate_all_outside_a_transaction_and_pipelined_with_a_parse() {
    let mut pipelined = unnamed("DEALLOCATE ALL");
    pipelined.extend_from_slice(&prepare("s1", "SELECT 1 AS one"));
    let mut pipelined_query = query("DEALLOCATE ALL");
    pipelined_query.extend_from_slice(&prepare("s2", "SELECT 2 AS two"));
    for reset in [
        vec![(query("DEALLOCATE ALL"), 1)],
        vec![(unnamed("DEALLOCATE PREPARE ALL"), 1)],
        vec![(pipelined, 2)],
        vec![(pipelined_query, 2)],
    ] {
        for mode in both_modes() {
            same_as_direct(mode, &around_reset(reset.clone()), &next_client()).await;
        }
    }
}

#[tokio::test]
async fn discard_all_inside_a_transaction_fails_and_outside_resets_statements() {
    let inside = vec![
        (query("BEGIN"), 1),
        (query("DISCARD ALL"), 1),
        (query("ROLLBACK"), 1),
    ];
    let extended_inside = vec![
        (query("BEGIN"), 1),
        (unnamed("DISCARD ALL"), 1),
        (query("ROLLBACK"), 1),
    ];
    let in_one_string = vec![(query("SELECT 1; DISCARD ALL"), 1)];
    let outside = vec![(query("DISCARD ALL"), 1)];
    let extended_outside = vec![(unnamed("DISCARD ALL"), 1)];
    for reset in [
        inside,
        extended_inside,
        in_one_string,
        outside,
        extended_outside,
    ] {
        for mode in both_modes() {
            same_as_direct(mode, &around_reset(reset.clone()), &next_client()).await;
        }
    }
}

/// Runs `sql` as the test table's owner on a direct connection.
async fn admin(sql: &str) {
    let client = pg().connect_direct(APP_USER, APP_PASSWORD, APP_DB).await;
    client.batch_execute(sql).await.expect("setup statement");
}

/// The scenario of a client that prepares a text, sees the table's column type change, and
/// prepares the same text under a new name: `table` is the scenario's own table.
async fn new_name_after_type_change(client: &mut RawClient, table: &str) -> Vec<Vec<String>> {
    admin(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (a int); INSERT INTO {table} VALUES (1)"
    ))
    .await;
    let sql = format!("SELECT * FROM {table}");
    let before = transcript(client, &[(prepare("s1", &sql), 1), (run("s1"), 1)]).await;
    admin(&format!("ALTER TABLE {table} ALTER a TYPE text")).await;
    let after = transcript(client, &[(prepare("s2", &sql), 1), (run("s2"), 1)]).await;
    before.into_iter().chain(after).collect()
}

#[tokio::test]
async fn a_new_name_for_an_old_text_after_a_schema_change_is_planned_afresh() {
    let expected = new_name_after_type_change(&mut direct().await, "fid6_direct").await;
    assert_eq!(
        expected[3][1], "T [25]",
        "PostgreSQL plans s2 with the new type"
    );
    for (mode, table) in [
        (PoolMode::Transaction, "fid6_transaction"),
        (PoolMode::Session, "fid6_session"),
    ] {
        let handle = proxy(mode, 1).await;
        let got = new_name_after_type_change(&mut proxied(&handle).await, table).await;
        assert_eq!(got, expected, "{mode:?}");
    }
}

/// Runs `sql` (one simple Query) and checks its transcript.
async fn sql(client: &mut RawClient, sql: &str, expected: &[&str]) {
    assert_eq!(exchange(client, &query(sql), 1).await, expected, "{sql}");
}

fn rows_of(oid: u32) -> Vec<String> {
    let t = format!("T [{oid}]");
    ["2", t.as_str(), "D [\"1\"]", "C SELECT 1", "Z T"]
        .map(String::from)
        .to_vec()
}

#[tokio::test]
async fn after_a_0a000_a_reprepared_name_works_on_every_backend() {
    let table = "fid6_backends";
    admin(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (a int); INSERT INTO {table} VALUES (1)"
    ))
    .await;
    let select = format!("SELECT * FROM {table}");
    let handle = proxy(PoolMode::Transaction, 2).await;
    let (mut c1, mut c2, mut holder) = (
        proxied(&handle).await,
        proxied(&handle).await,
        proxied(&handle).await,
    );
    // Both backends prepare the statement (each client holds one inside a transaction).
    for client in [&mut c1, &mut c2] {
        sql(client, "BEGIN", &["C BEGIN", "Z T"]).await;
        assert_eq!(
            exchange(client, &prepare("s1", &select), 1).await,
            ["1", "Z T"]
        );
        assert_eq!(exchange(client, &run("s1"), 1).await, rows_of(23));
    }
    for client in [&mut c1, &mut c2] {
        sql(client, "COMMIT", &["C COMMIT", "Z I"]).await;
    }
    admin(&format!("ALTER TABLE {table} ALTER a TYPE text")).await;
    // c2 holds one backend; c1 gets the other and hits the changed type, as PostgreSQL does.
    sql(&mut c2, "BEGIN", &["C BEGIN", "Z T"]).await;
    sql(&mut c1, "BEGIN", &["C BEGIN", "Z T"]).await;
    let refused = exchange(&mut c1, &run("s1"), 1).await;
    assert_eq!(
        refused,
        ["E 0A000 cached plan must not change result type", "Z E"]
    );
    sql(&mut c1, "ROLLBACK", &["C ROLLBACK", "Z I"]).await;
    // c1 prepares it again, as drivers do after 0A000 (same backend: the only idle one).
    sql(&mut c1, "BEGIN", &["C BEGIN", "Z T"]).await;
    let mut again = BytesMut::new();
    fe::close_statement(&mut again, "s1");
    again.extend_from_slice(&prepare("s1", &select));
    assert_eq!(exchange(&mut c1, &again, 1).await, ["3", "1", "Z T"]);
    assert_eq!(exchange(&mut c1, &run("s1"), 1).await, rows_of(25));
    sql(&mut c1, "COMMIT", &["C COMMIT", "Z I"]).await;
    // Now c1 moves to the backend c2 held, whose copy predates the change.
    sql(&mut holder, "BEGIN", &["C BEGIN", "Z T"]).await;
    sql(&mut c2, "COMMIT", &["C COMMIT", "Z I"]).await;
    sql(&mut c1, "BEGIN", &["C BEGIN", "Z T"]).await;
    assert_eq!(
        exchange(&mut c1, &run("s1"), 1).await,
        rows_of(25),
        "c1's statement was prepared after the change: it works on every backend"
    );
    sql(&mut c1, "COMMIT", &["C COMMIT", "Z I"]).await;
    // The second client recovers the same way on its backend.
    sql(&mut c2, "BEGIN", &["C BEGIN", "Z T"]).await;
    assert_eq!(exchange(&mut c2, &again, 1).await, ["3", "1", "Z T"]);
    assert_eq!(exchange(&mut c2, &run("s1"), 1).await, rows_of(25));
    sql(&mut c2, "COMMIT", &["C COMMIT", "Z I"]).await;
    sql(&mut holder, "COMMIT", &["C COMMIT", "Z I"]).await;
}

#[tokio::test]
async fn errors_name_the_clients_statement_not_pgferrys() {
    let steps = vec![
        (prepare("my_stmt", "SELECT $1::int AS x"), 1),
        (run("my_stmt"), 1),
        (query("BEGIN"), 1),
        (run("my_stmt"), 1),
        (query("ROLLBACK"), 1),
    ];
    let expected = transcript(&mut direct().await, &steps).await;
    assert!(
        expected[1][0].contains("prepared statement \"my_stmt\" requires 1"),
        "{expected:?}"
    );
    for mode in both_modes() {
        let handle = proxy(mode, 1).await;
        let got = transcript(&mut proxied(&handle).await, &steps).await;
        assert_eq!(got, expected, "{mode:?}");
    }
}

/// The backend's name for a statement prepared through pgferry (what `pg_prepared_statements`
/// shows on the backend holding it).
async fn server_name_of(client: &mut RawClient, text: &str) -> String {
    let sql = format!("SELECT name FROM pg_prepared_statements WHERE statement = '{text}'");
    let rows = exchange(client, &query(&sql), 1).await;
    let row = rows.iter().find(|m| m.starts_with("D ")).expect("a row");
    row.trim_start_matches("D [\"")
        .trim_end_matches("\"]")
        .to_string()
}

#[tokio::test]
async fn a_statement_missing_on_the_backend_is_reported_under_the_clients_name() {
    let text = "SELECT 7 AS seven";
    let missing = vec![
        (run("my_stmt"), 1),
        (query("BEGIN"), 1),
        (run("my_stmt"), 1),
        (query("ROLLBACK"), 1),
    ];
    let mut oracle = direct().await;
    exchange(&mut oracle, &prepare("my_stmt", text), 1).await;
    exchange(&mut oracle, &query("DEALLOCATE my_stmt"), 1).await;
    let expected = transcript(&mut oracle, &missing).await;
    assert_eq!(
        expected[0][0],
        "E 26000 prepared statement \"my_stmt\" does not exist"
    );
    let handle = proxy(PoolMode::Transaction, 1).await;
    let mut client = proxied(&handle).await;
    exchange(&mut client, &prepare("my_stmt", text), 1).await;
    // The statement disappears behind pgferry's back (only its own name can do that).
    let server_name = server_name_of(&mut client, text).await;
    assert!(server_name.starts_with("pgf_"), "{server_name}");
    let deallocate = query(&format!("DEALLOCATE {server_name}"));
    let deallocated = exchange(&mut client, &deallocate, 1).await;
    assert_eq!(deallocated, ["C DEALLOCATE", "Z I"]);
    assert_eq!(transcript(&mut client, &missing).await, expected);
}

#[tokio::test]
async fn sql_level_prepare_and_deallocate_of_one_name_behave_as_in_postgres() {
    let steps = vec![
        (query("PREPARE q AS SELECT 1 AS one"), 1),
        (query("EXECUTE q"), 1),
        (query("BEGIN"), 1),
        (query("DEALLOCATE q"), 1),
        (query("ROLLBACK"), 1),
        (query("EXECUTE q"), 1),
        (query("DEALLOCATE PREPARE q"), 1),
        (query("PREPARE q AS SELECT 2 AS two"), 1),
        (query("EXECUTE q"), 1),
    ];
    let after = vec![(query("EXECUTE q"), 1)];
    for mode in both_modes() {
        same_as_direct(mode, &steps, &after).await;
    }
}

#[tokio::test]
async fn sql_level_deallocate_of_a_protocol_level_name_behaves_as_in_postgres() {
    let steps = vec![
        (prepare("s1", "SELECT 1 AS one"), 1),
        (run("s1"), 1),
        (query("DEALLOCATE s1"), 1),
        (run("s1"), 1),
        (prepare("s1", "SELECT 1 AS one"), 1),
        (prepare("Mixed", "SELECT 2 AS two"), 1),
        // pgx's form (Conn.Deallocate, statement cache eviction), inside a transaction that
        // rolls back: the statement stays dropped.
        (query("BEGIN"), 1),
        (query("deallocate \"Mixed\""), 1),
        (query("ROLLBACK"), 1),
        (run("Mixed"), 1),
        (query("DEALLOCATE nosuch"), 1),
        // In a failed transaction PostgreSQL refuses it, and the statement stays.
        (query("BEGIN"), 1),
        (query("SELECT 1/0"), 1),
        (query("DEALLOCATE PREPARE s1"), 1),
        (query("ROLLBACK"), 1),
        (run("s1"), 1),
        (query("DEALLOCATE PREPARE s1"), 1),
        (run("s1"), 1),
    ];
    for mode in both_modes() {
        same_as_direct(mode, &steps, &next_client()).await;
    }
}

/// `DEALLOCATE name` of a protocol-level name is answered by pgferry only when it is the whole
/// Query: in `SELECT …; DEALLOCATE s1` the SELECT must still run and return its row (before the
/// fix pgferry answered `DEALLOCATE` alone and the SELECT never reached the backend). What the
/// backend then says of `s1` (26000: it only knows `pgf_<n>`) is a documented limit.
#[tokio::test]
async fn deallocate_name_inside_a_longer_query_leaves_the_other_statements_running() {
    for mode in both_modes() {
        let handle = proxy(mode, 1).await;
        let mut client = proxied(&handle).await;
        exchange(&mut client, &prepare("s1", "SELECT 1 AS one"), 1).await;
        let got = exchange(&mut client, &query("SELECT 42 AS answer; DEALLOCATE s1"), 1).await;
        assert!(
            got.iter().any(|m| m.contains("42")),
            "{mode:?}: the SELECT ran: {got:?}"
        );
    }
}
