//! Table-driven tests of the SQL scanner: each case is the SQL text and the exact effects.

use super::PinReason::*;
use super::SessionEffect::{self, *};
use super::{scan, PinReason};

fn set(name: &str, value: &str) -> SessionEffect {
    Set {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn reset(name: &str) -> SessionEffect {
    Reset {
        name: name.to_owned(),
    }
}

fn check(cases: &[(&str, Vec<SessionEffect>)]) {
    for (sql, expected) in cases {
        assert_eq!(&scan(sql.as_bytes()), expected, "scanning {sql:?}");
    }
}

fn pin_cases(reason: PinReason, pins: &[&str], no_pins: &[&str]) {
    let mut cases: Vec<(&str, Vec<SessionEffect>)> =
        pins.iter().map(|sql| (*sql, vec![Pin(reason)])).collect();
    cases.extend(no_pins.iter().map(|sql| (*sql, vec![])));
    check(&cases);
}

#[test]
fn advisory_locks() {
    pin_cases(
        AdvisoryLock,
        &[
            "SELECT pg_advisory_lock(1)",
            "select PG_ADVISORY_LOCK(1, 2)",
            "SELECT pg_advisory_lock_shared(42)",
            "SELECT pg_try_advisory_lock(hashtext('x'))",
            "SELECT pg_catalog.pg_try_advisory_lock_shared(1)",
            "SELECT \"pg_advisory_lock\"(1)",
            "SELECT pg_advisory_lock (1)",
            "WITH l AS (SELECT pg_advisory_lock(7)) SELECT * FROM l",
            "/* migrate */ SELECT 1 FROM t WHERE pg_try_advisory_lock(t.id)",
        ],
        &[
            "SELECT pg_advisory_xact_lock(1)",
            "SELECT pg_try_advisory_xact_lock_shared(1)",
            "SELECT pg_advisory_unlock(1)",
            "SELECT pg_advisory_unlock_shared(1)",
            "SELECT 1 -- pg_advisory_lock(1)",
            "SELECT /* pg_advisory_lock(1) /* nested */ still */ 1",
            "SELECT 'pg_advisory_lock(1)'",
            "SELECT E'\\' pg_advisory_lock(1)'",
            "SELECT $$pg_advisory_lock(1)$$",
            "SELECT $x$ $$ pg_advisory_lock(1) $x$",
            "SELECT \"pg_advisory_lock(1)\"",
            "SELECT \"PG_ADVISORY_LOCK\"(1)",
            "SELECT pg_advisory_lock FROM t",
            "CREATE FUNCTION f() RETURNS void AS $$ SELECT pg_advisory_lock(1) $$ LANGUAGE sql",
        ],
    );
}

#[test]
fn advisory_unlock_all() {
    check(&[
        ("SELECT pg_advisory_unlock_all()", vec![AdvisoryUnlockAll]),
        (
            "SELECT pg_advisory_unlock_all(); SELECT pg_advisory_lock(2)",
            vec![AdvisoryUnlockAll, Pin(AdvisoryLock)],
        ),
    ]);
}

#[test]
fn listen() {
    pin_cases(
        Listen,
        &["LISTEN jobs", "listen \"Jobs\"", "  -- hi\n LISTEN x"],
        &[
            "NOTIFY jobs",
            "SELECT 'LISTEN x'",
            "UNLISTEN jobs",
            "SELECT listen FROM t",
        ],
    );
    check(&[("UNLISTEN *", vec![UnlistenAll])]);
}

#[test]
fn temp_objects() {
    pin_cases(
        TempTable,
        &[
            "CREATE TEMP TABLE t (a int)",
            "create temporary table t as select 1",
            "CREATE GLOBAL TEMPORARY TABLE t (a int)",
            "CREATE LOCAL TEMP TABLE t (a int) ON COMMIT DELETE ROWS",
            "CREATE TEMP VIEW v AS SELECT 1",
            "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
            "CREATE TEMP SEQUENCE s",
            "CREATE TEMP TABLE t (a text DEFAULT 'ON COMMIT DROP')",
            "SELECT * INTO TEMP t FROM x",
            "SELECT a INTO TEMPORARY TABLE t FROM x",
            "WITH w AS (SELECT 1) SELECT * INTO LOCAL TEMP t FROM w",
            "(SELECT 1 INTO TEMP t)",
        ],
        &[
            "CREATE TEMP TABLE t (a int) ON COMMIT DROP",
            "create temp table t on commit drop as select 1",
            "CREATE TABLE temp (a int)",
            "CREATE UNLOGGED TABLE t (a int)",
            "INSERT INTO temp VALUES (1)",
            "WITH w AS (SELECT 1) INSERT INTO temp SELECT * FROM w",
            "SELECT * INTO t FROM x",
            "SELECT 'CREATE TEMP TABLE t'",
        ],
    );
    check(&[
        ("DISCARD TEMP", vec![DiscardTemp]),
        ("discard temporary", vec![DiscardTemp]),
    ]);
}

#[test]
fn cursors_with_hold() {
    pin_cases(
        CursorWithHold,
        &[
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "declare c binary no scroll cursor with hold for select 1",
            "DECLARE c WITH HOLD CURSOR FOR SELECT 1",
        ],
        &[
            "DECLARE c CURSOR FOR SELECT 1",
            "DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1",
            "DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold",
            "DECLARE c CURSOR /* WITH HOLD */ FOR SELECT 1",
        ],
    );
    check(&[("CLOSE ALL", vec![CloseAll]), ("CLOSE c", vec![])]);
}

#[test]
fn sql_prepare() {
    pin_cases(
        SqlPrepare,
        &[
            "PREPARE q AS SELECT 1",
            "prepare q (int, text) as select $1, $2",
            "PREPARE transaction AS SELECT 1",
        ],
        &[
            "PREPARE TRANSACTION 'gid-1'",
            "COMMIT PREPARED 'gid-1'",
            "EXECUTE q(1)",
        ],
    );
    let named = |name: &str| {
        vec![Deallocate {
            name: name.to_string(),
        }]
    };
    check(&[
        ("DEALLOCATE ALL", vec![DeallocateAll]),
        ("deallocate prepare all", vec![DeallocateAll]),
        ("DEALLOCATE Q", named("q")),
        ("deallocate prepare q", named("q")),
        ("deallocate \"stmtcache_Ab\"\"1\"", named("stmtcache_Ab\"1")),
        ("DEALLOCATE q x", vec![]),
        ("DEALLOCATE 'q'", vec![]),
        ("DEALLOCATE", vec![]),
    ]);
}

#[test]
fn load_and_discard() {
    pin_cases(Load, &["LOAD 'auto_explain'"], &["SELECT load FROM t"]);
    check(&[("DISCARD ALL", vec![DiscardAll]), ("DISCARD PLANS", vec![])]);
}

#[test]
fn transaction_control_around_other_effects() {
    check(&[
        (
            "BEGIN; SET a = 1; ROLLBACK",
            vec![
                TransactionStart,
                set("a", "1"),
                TransactionEnd { commit: false },
            ],
        ),
        (
            "start transaction; set b to 2; commit",
            vec![
                TransactionStart,
                set("b", "2"),
                TransactionEnd { commit: true },
            ],
        ),
        (
            "SET c = 3; END",
            vec![set("c", "3"), TransactionEnd { commit: true }],
        ),
        ("SET d = 4; ROLLBACK TO SAVEPOINT s", vec![set("d", "4")]),
        ("SET e = 5; COMMIT PREPARED 'x'", vec![set("e", "5")]),
        ("BEGIN", vec![]),
    ]);
}

#[test]
fn do_blocks() {
    check(&[
        (
            "DO $$ BEGIN PERFORM pg_advisory_lock(1); END $$",
            vec![Pin(AdvisoryLock)],
        ),
        (
            "DO LANGUAGE plpgsql $b$ BEGIN LISTEN x; END $b$",
            vec![Pin(Listen)],
        ),
        ("DO $$ BEGIN RAISE NOTICE 'x'; END $$", vec![]),
        ("DO $$ BEGIN PERFORM 'pg_advisory_lock(1)'; END $$", vec![]),
    ]);
}

#[test]
fn set_variants() {
    check(&[
        ("SET x = 1", vec![set("x", "1")]),
        (
            "SET Search_Path TO a, \"B\"",
            vec![set("search_path", "a, \"B\"")],
        ),
        (
            "SET SESSION statement_timeout = '5s'",
            vec![set("statement_timeout", "'5s'")],
        ),
        ("SET x TO DEFAULT", vec![set("x", "DEFAULT")]),
        (
            "set \"MyApp\".\"User\" = 'a''b'",
            vec![set("MyApp.User", "'a''b'")],
        ),
        (
            "SET myapp.user_id = 42 -- trailing",
            vec![set("myapp.user_id", "42")],
        ),
        ("SET TIME ZONE 'UTC'", vec![set("timezone", "'UTC'")]),
        ("set time zone local", vec![set("timezone", "DEFAULT")]),
        (
            "SET TimeZone = 'Europe/Paris'",
            vec![set("timezone", "'Europe/Paris'")],
        ),
        ("SET NAMES 'utf8'", vec![set("client_encoding", "'utf8'")]),
        ("SET NAMES", vec![set("client_encoding", "DEFAULT")]),
        ("SET SCHEMA 'app'", vec![set("search_path", "'app'")]),
        (
            "SET XML OPTION document",
            vec![set("xmloption", "document")],
        ),
        (
            "SET application_name = E'it\\'s'",
            vec![set("application_name", "E'it\\'s'")],
        ),
        ("SET LOCAL x = 1", vec![]),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", vec![]),
        ("SET CONSTRAINTS ALL DEFERRED", vec![]),
        ("SET time.x = 1", vec![set("time.x", "1")]),
        ("SET names.x TO 'a'", vec![set("names.x", "'a'")]),
        ("SET role.x = 1", vec![set("role.x", "1")]),
        ("SET schema.x = 1", vec![set("schema.x", "1")]),
        ("SET xml.option = 1", vec![set("xml.option", "1")]),
        ("SET x", vec![]),
        ("SET x =", vec![]),
        ("UPDATE t SET a = 1", vec![]),
        ("SELECT 1 OFFSET 5", vec![]),
    ]);
}

#[test]
fn set_identity_pins() {
    pin_cases(
        SetRole,
        &[
            "SET ROLE admin",
            "SET SESSION ROLE admin",
            "SET role = 'admin'",
            "SET SESSION AUTHORIZATION 'bob'",
            "SET session_authorization TO bob",
            "SELECT set_config('role', 'admin', false)",
            "SELECT set_config('ROLE', $1, false)",
        ],
        &[
            "SET LOCAL ROLE admin",
            "SELECT set_config('role', 'admin', true)",
        ],
    );
}

#[test]
fn session_characteristics() {
    check(&[
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            vec![
                set("default_transaction_isolation", "'repeatable read'"),
                set("default_transaction_read_only", "on"),
            ],
        ),
        (
            "set session characteristics as transaction read write not deferrable \
             isolation level read committed",
            vec![
                set("default_transaction_read_only", "off"),
                set("default_transaction_deferrable", "off"),
                set("default_transaction_isolation", "'read committed'"),
            ],
        ),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION DEFERRABLE",
            vec![set("default_transaction_deferrable", "on")],
        ),
    ]);
}

#[test]
fn reset_variants() {
    check(&[
        ("RESET ALL", vec![ResetAll]),
        ("reset Statement_Timeout", vec![reset("statement_timeout")]),
        ("RESET myapp.\"Key\"", vec![reset("myapp.Key")]),
        ("RESET TIME ZONE", vec![reset("timezone")]),
        ("RESET time.zone", vec![reset("time.zone")]),
        ("RESET session.x", vec![reset("session.x")]),
        ("RESET ROLE", vec![reset("role")]),
        (
            "RESET SESSION AUTHORIZATION",
            vec![reset("session_authorization")],
        ),
        ("RESET TRANSACTION ISOLATION LEVEL", vec![]),
    ]);
}

#[test]
fn set_config_calls() {
    check(&[
        (
            "SELECT set_config('App.User', 'x', false)",
            vec![set("app.user", "'x'")],
        ),
        (
            "SELECT pg_catalog.set_config('a', $$v$$, FALSE)",
            vec![set("a", "$$v$$")],
        ),
        ("SELECT set_config('a', 'x', true)", vec![]),
        ("SELECT set_config('a', $1, false)", vec![]),
        ("SELECT set_config('a', 'x', $3)", vec![]),
        ("SELECT set_config('a', 'x' || 'y', false)", vec![]),
        ("SELECT set_config(name, 'x', false) FROM t", vec![]),
    ]);
}

#[test]
fn multi_statement_strings_keep_order() {
    check(&[
        (
            "SET a = 1; LISTEN c; SELECT 1; RESET a; SELECT pg_advisory_lock(1);",
            vec![set("a", "1"), Pin(Listen), reset("a"), Pin(AdvisoryLock)],
        ),
        (
            "BEGIN; SET LOCAL a = 1; CREATE TEMP TABLE t() ON COMMIT DROP; COMMIT",
            vec![],
        ),
        (
            "SET a = 'x;y'; LOAD 'z'",
            vec![set("a", "'x;y'"), Pin(Load)],
        ),
        ("SELECT ';LISTEN x'; SELECT \";LISTEN\"", vec![]),
        (
            "SET search_path = a /* ; */, b",
            vec![set("search_path", "a /* ; */, b")],
        ),
    ]);
}

#[test]
fn weird_input() {
    check(&[
        ("", vec![]),
        (";;;", vec![]),
        ("  ; ;\n; ", vec![]),
        ("LISTEN x; SELECT 'unterminated", vec![]),
        ("LISTEN x; SELECT \"unterminated", vec![]),
        ("LISTEN x /* unterminated /* */", vec![]),
        ("LISTEN x; SELECT $a$ unterminated", vec![]),
        ("LISTEN x; SELECT E'\\", vec![]),
        (
            "LISTEN x -- unterminated line comment is fine",
            vec![Pin(Listen)],
        ),
        ("SELECT $1 FROM t; LISTEN x", vec![Pin(Listen)]),
        ("SELECT a$b$ FROM t; LISTEN x", vec![Pin(Listen)]),
        ("SELECT $ ; LISTEN x", vec![Pin(Listen)]),
        ("set", vec![]),
        ("reset", vec![]),
        ("DO", vec![]),
        ("SELECT set_config(", vec![]),
        ("SELECT pg_advisory_lock(", vec![Pin(AdvisoryLock)]),
    ]);
    assert_eq!(
        scan(b"LISTEN \xff\xfe; SET \xc3\x28 = 1"),
        vec![Pin(Listen)]
    );
    assert_eq!(scan(b"SET a = '\xff'"), vec![]);
}

#[test]
fn large_statements() {
    let mut sql = "SELECT ".to_owned() + &"a + ".repeat(250_000) + "1";
    assert_eq!(scan(sql.as_bytes()), vec![]);
    sql.push_str("; LISTEN x");
    assert_eq!(scan(sql.as_bytes()), vec![Pin(Listen)]);
    let nested_do = "DO $a$ ".repeat(100_000) + "LISTEN x";
    assert_eq!(scan(nested_do.as_bytes()), vec![]);
    // Many near-miss closing tags: the search for the end of a dollar quote stays linear.
    let tag = format!("${}$", "a".repeat(998));
    let near_miss = format!("${}", "a".repeat(999)).repeat(1_000);
    let dollars = format!("SELECT {tag}{near_miss}{tag}; LISTEN y");
    assert_eq!(scan(dollars.as_bytes()), vec![Pin(Listen)]);
}

#[test]
fn random_bytes_never_panic() {
    const ALPHABET: &[u8] = b"'\"$;-*/\\eE() \n=,.LISTENsetpg_advisory_lock";
    for bytes in super::random_text::random_texts(7, ALPHABET, 64, 20_000) {
        let _ = scan(&bytes);
    }
}

#[test]
fn ordinary_statements_return_an_unallocated_vec() {
    for sql in [
        "SELECT 1",
        "UPDATE t SET a = 1 WHERE b OFFSET",
        "INSERT INTO t VALUES ('set')",
    ] {
        let effects = scan(sql.as_bytes());
        assert!(effects.is_empty() && effects.capacity() == 0, "{sql}");
    }
}

#[test]
fn quoted_and_prefixed_literals() {
    check(&[
        ("SELECT U&\"pg_advisory_lock\"(1)", vec![Pin(AdvisoryLock)]),
        (
            "SELECT B'101', X'ff', N'pg_advisory_lock(1)'; LISTEN a",
            vec![Pin(Listen)],
        ),
        ("SELECT e'it''s \\' LISTEN'; LISTEN b", vec![Pin(Listen)]),
        ("SELECT 'a' 'b' -- LISTEN\n; LISTEN c", vec![Pin(Listen)]),
    ]);
}

#[test]
fn pin_reason_labels() {
    let labels: Vec<&str> = [
        AdvisoryLock,
        Listen,
        TempTable,
        CursorWithHold,
        SqlPrepare,
        Load,
        SetRole,
    ]
    .iter()
    .map(PinReason::as_str)
    .collect();
    assert_eq!(
        labels,
        [
            "advisory_lock",
            "listen",
            "temp_table",
            "cursor_with_hold",
            "sql_prepare",
            "load",
            "set_role"
        ]
    );
}
