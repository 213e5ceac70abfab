//! The prefilter only skips work that could not find anything: for every input, [`scan`] must
//! give exactly what the scan without any skipping gives.

use super::prefilter::Found;
use super::{scan, scan_with};

fn assert_fast_is_full(sql: &[u8]) {
    assert_eq!(scan(sql), scan_with(sql, Found::ALL), "scanning {sql:?}");
}

/// Near misses and lookalikes for every skipped check, plus ordinary and ORM-style queries.
const TRICKY: &[&str] = &[
    "SELECT abalance FROM pgbench_accounts WHERE aid = 123;",
    "SELECT abalance FROM pgbench_accounts WHERE aid = 123; SET x = 1",
    "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1",
    "UPDATE t SET a = set_config('a', 'b', false)",
    "UPDATE t SET a = pg_advisory_lock(1)",
    "SELECT 1 OFFSET 5",
    "SELECT set_config('a', 'b', false)",
    "SELECT SET_CONFIG('a', 'b', false)",
    "SELECT \"set_config\"('a', 'b', false)",
    "SELECT \"SET_CONFIG\"('a', 'b', false)",
    "SELECT set_config ('role', 'x', false)",
    "SELECT pg_catalog.set_config('a', 'b', false); SELECT 2",
    "SELECT pg_advisory_lock(1)",
    "SELECT PG_TRY_ADVISORY_LOCK_SHARED(1)",
    "SELECT U&\"pg_advisory_lock\"(1)",
    "SELECT pg_advisory_unlock_all()",
    "SELECT 'pg_advisory_lock(1)'",
    "SELECT 1 -- set_config('a','b',false)\n",
    "SELECT * INTO TEMP t FROM x",
    "select * into temporary t from x",
    "(SELECT 1 INTO LOCAL TEMP t)",
    "WITH w AS (SELECT 1) SELECT * INTO TEMP t FROM w",
    "SELECT * INTO t FROM temp",
    "SELECT 'INTO TEMP t'",
    "SELECT a /* into temp */ FROM t",
    "INSERT INTO temp VALUES (1)",
    "CREATE TEMP TABLE t (a int)",
    "CREATE TEMP TABLE t (a int) ON COMMIT DROP",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "DECLARE c CURSOR FOR SELECT threshold FROM t",
    "LISTEN x",
    "UNLISTEN *",
    "PREPARE q AS SELECT 1",
    "LOAD 'x'",
    "SELECT payload, upload FROM t",
    "DISCARD ALL",
    "DEALLOCATE ALL",
    "CLOSE ALL",
    "SELECT closed_at, reset_token FROM users",
    "RESET ALL",
    "SET search_path = a, b",
    "SET ROLE x",
    "BEGIN; SET a = 1; COMMIT",
    "BEGIN; SELECT 1; COMMIT",
    "DO $$ BEGIN PERFORM pg_advisory_lock(1); END $$",
    "DO $$ BEGIN PERFORM set_config('a', 'b', false); END $$",
    "DO $$ BEGIN CREATE TEMP TABLE t (); END $$",
    "DO $$ BEGIN SELECT 1 INTO TEMP t; END $$",
    "SELECT \"users\".\"id\", \"users\".\"settings\" FROM \"users\" \
     WHERE \"users\".\"email\" = $1 ORDER BY \"users\".\"id\" LIMIT $2 OFFSET $3",
    "INSERT INTO \"posts\" (\"title\", \"body\", \"created_at\") VALUES ($1, $2, $3) \
     RETURNING \"id\"",
    "UPDATE \"posts\" SET \"title\" = $1, \"updated_at\" = $2 WHERE \"posts\".\"id\" = $3",
    "DELETE FROM \"sessions\" WHERE \"sessions\".\"expires_at\" < $1",
    "SELECT 'unterminated set_config(",
    "SELECT pg_advisory_lock(",
    "set_config",
    "temp",
];

#[test]
fn tricky_inputs_agree() {
    for sql in TRICKY {
        assert_fast_is_full(sql.as_bytes());
    }
}

#[test]
fn random_inputs_agree() {
    use rand::{Rng, SeedableRng};
    const PIECES: &[&str] = &[
        "SELECT ",
        "select ",
        "UPDATE t ",
        "SET ",
        "set_config",
        "SET_CONFIG",
        "pg_advisory_lock",
        "pg_advisory_unlock_all",
        "(",
        ")",
        "'a'",
        "'",
        "\"",
        "$$",
        "false",
        ", ",
        "; ",
        "INTO ",
        "into ",
        "TEMP ",
        "temporary ",
        "t ",
        "WITH ",
        "DO ",
        "BEGIN ",
        "--",
        "\n",
        "/*",
        "*/",
        "E'\\'",
        "LISTEN x",
        "role",
        "=",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for _ in 0..20_000 {
        let parts = rng.random_range(0..12);
        let sql: String = (0..parts)
            .map(|_| PIECES[rng.random_range(0..PIECES.len())])
            .collect();
        assert_fast_is_full(sql.as_bytes());
    }
}
