use super::*;
use crate::session::prepared::messages::build_target;

/// One client's state plus the shared cache.
struct Client {
    map: ClientStatements,
    failed_transaction: bool,
    /// The next frame's SQL is `DEALLOCATE ALL` / `DISCARD ALL`.
    resets: bool,
}

fn client() -> Client {
    limited_client(10)
}

fn limited_client(max: usize) -> Client {
    Client {
        map: ClientStatements::new(max),
        failed_transaction: false,
        resets: false,
    }
}

fn run(
    frame: &[u8],
    cache: &StatementCache,
    client: &mut Client,
    server: &mut ServerPrepared,
) -> Planned {
    let ctx = PlanContext {
        cache,
        client: &mut client.map,
        server,
        failed_transaction: client.failed_transaction,
        resets_statements: client.resets,
    };
    plan(frame, ctx).unwrap()
}

fn parse(name: &str, query: &str) -> Bytes {
    msg::build_parse(name.as_bytes(), query.as_bytes(), &[]).unwrap()
}

fn bind(statement: &str) -> Vec<u8> {
    let mut frame = b"B\0\0\0\0\0".to_vec();
    frame.extend_from_slice(statement.as_bytes());
    frame.extend_from_slice(b"\0\0\0\0\0\0\0");
    let len = (frame.len() - 1) as i32;
    frame[1..5].copy_from_slice(&len.to_be_bytes());
    frame
}

fn close(name: &str) -> Bytes {
    build_target(b'C', TargetKind::Statement, name.as_bytes()).unwrap()
}

fn server_frame(query: &str, cache: &StatementCache) -> Bytes {
    cache
        .get_or_insert(query.as_bytes(), &[], false)
        .unwrap()
        .parse_frame_for_server
        .clone()
}

fn pgf(planned: &Planned) -> String {
    planned
        .statement
        .map(|id| id.to_string())
        .unwrap_or_default()
}

#[test]
fn parse_on_one_server_then_bind_on_another_injects_parse() {
    let cache = StatementCache::new(100);
    let (mut a, mut b) = (ServerPrepared::new(10), ServerPrepared::new(10));
    let mut c = client();
    let first = run(&parse("s1", "SELECT 1"), &cache, &mut c, &mut a);
    let server_parse = server_frame("SELECT 1", &cache);
    assert_eq!(
        first.plan,
        Plan::Forward {
            prelude: vec![],
            frame: server_parse.clone()
        }
    );
    let name = pgf(&first);
    assert!(name.starts_with("pgf_"));
    let on_b = run(&bind("s1"), &cache, &mut c, &mut b);
    assert_eq!(
        on_b.plan,
        Plan::Forward {
            prelude: vec![Injected::Parse(server_parse)],
            frame: Bytes::from(bind(&name)),
        }
    );
    // Prepared on B now: the next Bind there needs nothing injected.
    let again = run(&bind("s1"), &cache, &mut c, &mut b);
    assert!(matches!(again.plan, Plan::Forward { prelude, .. } if prelude.is_empty()));
    assert!(again.undo.is_none());
}

#[test]
fn same_text_under_another_name_or_client_shares_the_server_name_but_is_parsed_again() {
    let cache = StatementCache::new(100);
    let mut server = ServerPrepared::new(10);
    let (mut c1, mut c2) = (client(), client());
    let first = run(&parse("a", "SELECT $1"), &cache, &mut c1, &mut server);
    let same_client = run(&parse("b", "SELECT $1"), &cache, &mut c1, &mut server);
    let other_client = run(&parse("a", "SELECT $1"), &cache, &mut c2, &mut server);
    let close_copy = msg::build_close_statement(pgf(&first).as_bytes()).unwrap();
    let reparse = Plan::Forward {
        prelude: vec![Injected::Close(close_copy)],
        frame: server_frame("SELECT $1", &cache),
    };
    assert_eq!(
        same_client.plan, reparse,
        "planned against the current schema"
    );
    assert_eq!(other_client.plan, reparse);
    assert_eq!(pgf(&first), pgf(&other_client));
    assert_eq!(server.len(), 1);
}

#[test]
fn after_a_schema_change_newer_names_reprepare_older_copies() {
    let cache = StatementCache::new(100);
    let (mut a, mut b) = (ServerPrepared::new(10), ServerPrepared::new(10));
    let (mut c1, mut c2) = (client(), client());
    let first = run(&parse("s", "SELECT * FROM t"), &cache, &mut c1, &mut a);
    run(&parse("s", "SELECT * FROM t"), &cache, &mut c2, &mut b);
    // A backend refused the plan (0A000): the entry's generation moves on.
    let id = first.statement.unwrap();
    c1.map.get(b"s").unwrap().statement.schema_changed();
    a.invalidate(id);
    // c2's name predates the change: backend B's copy is as old as it, used as is.
    let old_name = run(&bind("s"), &cache, &mut c2, &mut b);
    assert!(matches!(old_name.plan, Plan::Forward { ref prelude, .. } if prelude.is_empty()));
    // c1 parses the text again (on A); its new name is newer than B's copy.
    run(&close("s"), &cache, &mut c1, &mut a);
    run(&parse("s", "SELECT * FROM t"), &cache, &mut c1, &mut a);
    let on_b = run(&bind("s"), &cache, &mut c1, &mut b);
    let close_copy = msg::build_close_statement(id.to_string().as_bytes()).unwrap();
    let reparse = server_frame("SELECT * FROM t", &cache);
    assert!(matches!(on_b.plan, Plan::Forward { ref prelude, .. }
        if *prelude == vec![Injected::Close(close_copy), Injected::Parse(reparse)]));
    let again = run(&bind("s"), &cache, &mut c1, &mut b);
    assert!(matches!(again.plan, Plan::Forward { ref prelude, .. } if prelude.is_empty()));
}

#[test]
fn binding_deallocate_all_drops_every_name_and_marks_every_copy() {
    let cache = StatementCache::new(100);
    let mut server = ServerPrepared::new(10);
    let mut c = client();
    run(&parse("s", "SELECT 1"), &cache, &mut c, &mut server);
    c.resets = true;
    run(&parse("d", "DEALLOCATE ALL"), &cache, &mut c, &mut server);
    run(&parse("", "DISCARD ALL"), &cache, &mut c, &mut server);
    c.resets = false;
    let binds = [bind("d"), bind("")];
    for frame in binds {
        let planned = run(&frame, &cache, &mut c, &mut server);
        assert!(c.map.is_empty(), "names dropped as the Bind is planned");
        assert!(!server.contains(planned.statement.unwrap_or(StatementId(1)), 0));
        // The statement failed or was skipped: the names come back, the copies stay marked.
        planned
            .undo_at_execute
            .unwrap()
            .apply(&mut c.map, &mut server);
        assert!(c.map.get(b"s").is_some() && c.map.get(b"d").is_some());
    }
    let parse_again = run(&parse("t", "SELECT 1"), &cache, &mut c, &mut server);
    assert!(matches!(parse_again.plan, Plan::Forward { ref prelude, .. } if prelude.len() == 1));
    // An ordinary unnamed Parse clears the unnamed statement's mark.
    run(&parse("", "SELECT 1"), &cache, &mut c, &mut server);
    let ordinary = run(&bind(""), &cache, &mut c, &mut server);
    assert!(ordinary.undo.is_none() && ordinary.undo_at_execute.is_none());
}

#[test]
fn duplicate_name_is_42p05_and_close_frees_it() {
    let cache = StatementCache::new(100);
    let mut server = ServerPrepared::new(10);
    let mut c = client();
    run(&parse("s", "SELECT 1"), &cache, &mut c, &mut server);
    let dup = run(&parse("s", "SELECT 2"), &cache, &mut c, &mut server);
    assert_eq!(
        dup.plan,
        Plan::Error {
            reply: msg::duplicate_statement_error(b"s"),
            poison: msg::poison_frame()
        }
    );
    let closed = run(&close("s"), &cache, &mut c, &mut server);
    assert_eq!(closed.plan, Plan::Synthesize(msg::close_complete()));
    let reparse = run(&parse("s", "SELECT 2"), &cache, &mut c, &mut server);
    assert!(matches!(reparse.plan, Plan::Forward { .. }));
    // Closing an unknown name succeeds, as in PostgreSQL.
    let unknown = run(&close("nope"), &cache, &mut c, &mut server);
    assert_eq!(unknown.plan, Plan::Synthesize(msg::close_complete()));
    assert!(unknown.undo.is_none());
}

#[test]
fn unknown_statement_is_26000() {
    let cache = StatementCache::new(100);
    let mut server = ServerPrepared::new(10);
    let mut c = client();
    let planned = run(&bind("ghost"), &cache, &mut c, &mut server);
    let describe = build_target(b'D', TargetKind::Statement, b"ghost").unwrap();
    let described = run(&describe, &cache, &mut c, &mut server);
    let expected = msg::missing_statement_error(b"ghost");
    for p in [planned, described] {
        assert!(matches!(p.plan, Plan::Error { ref reply, .. } if *reply == expected));
    }
}

#[test]
fn unnamed_and_portal_operations_pass_through() {
    let cache = StatementCache::new(100);
    let mut server = ServerPrepared::new(10);
    let mut c = client();
    let frames: Vec<Bytes> = vec![
        parse("", "SELECT 1"),
        Bytes::from(bind("")),
        build_target(b'D', TargetKind::Portal, b"p").unwrap(),
        build_target(b'C', TargetKind::Portal, b"p").unwrap(),
        build_target(b'D', TargetKind::Statement, b"").unwrap(),
        Bytes::from_static(b"E\0\0\0\x09\0\0\0\0\0"),
        Bytes::from_static(b"S\0\0\0\x04"),
    ];
    for frame in frames {
        let planned = run(&frame, &cache, &mut c, &mut server);
        assert_eq!(planned.plan, Plan::PassThrough, "{frame:?}");
    }
    assert!(c.map.is_empty() && server.is_empty() && cache.is_empty());
}

#[test]
fn describe_statement_is_renamed() {
    let cache = StatementCache::new(100);
    let mut server = ServerPrepared::new(10);
    let mut c = client();
    let parsed = run(&parse("s", "SELECT 1"), &cache, &mut c, &mut server);
    let describe = build_target(b'D', TargetKind::Statement, b"s").unwrap();
    let planned = run(&describe, &cache, &mut c, &mut server);
    let expected = build_target(b'D', TargetKind::Statement, pgf(&parsed).as_bytes()).unwrap();
    assert_eq!(
        planned.plan,
        Plan::Forward {
            prelude: vec![],
            frame: expected
        }
    );
}

#[test]
fn eviction_closes_the_oldest_statement_first() {
    let cache = StatementCache::new(100);
    let mut server = ServerPrepared::new(1);
    let mut c = client();
    let first = run(&parse("a", "SELECT 1"), &cache, &mut c, &mut server);
    let second = run(&parse("b", "SELECT 2"), &cache, &mut c, &mut server);
    let close_first = msg::build_close_statement(pgf(&first).as_bytes()).unwrap();
    assert!(matches!(second.plan, Plan::Forward { ref prelude, .. }
        if *prelude == vec![Injected::Close(close_first.clone())]));
    // Binding "a" again re-prepares it, evicting "b".
    let rebind = run(&bind("a"), &cache, &mut c, &mut server);
    let close_second = msg::build_close_statement(pgf(&second).as_bytes()).unwrap();
    let reparse = server_frame("SELECT 1", &cache);
    assert!(matches!(rebind.plan, Plan::Forward { ref prelude, .. }
        if *prelude == vec![Injected::Close(close_second), Injected::Parse(reparse)]));
}

#[test]
fn undo_reverts_a_failed_parse_and_a_skipped_close() {
    let cache = StatementCache::new(100);
    let mut server = ServerPrepared::new(10);
    let mut c = client();
    let failed = run(&parse("s", "SELEC 1"), &cache, &mut c, &mut server);
    let id = failed.statement.unwrap();
    failed.undo.unwrap().apply(&mut c.map, &mut server);
    assert!(c.map.get(b"s").is_none());
    assert!(!server.contains(id, 0));
    run(&parse("s", "SELECT 1"), &cache, &mut c, &mut server);
    let skipped = run(&close("s"), &cache, &mut c, &mut server);
    skipped.undo.unwrap().apply(&mut c.map, &mut server);
    assert!(c.map.get(b"s").is_some());
}

#[test]
fn stale_statement_is_closed_and_reprepared() {
    let cache = StatementCache::new(100);
    let mut server = ServerPrepared::new(10);
    let mut c = client();
    let parsed = run(&parse("s", "SELECT * FROM t"), &cache, &mut c, &mut server);
    server.invalidate(parsed.statement.unwrap());
    let planned = run(&bind("s"), &cache, &mut c, &mut server);
    let close_self = msg::build_close_statement(pgf(&parsed).as_bytes()).unwrap();
    let reparse = server_frame("SELECT * FROM t", &cache);
    assert!(matches!(planned.plan, Plan::Forward { ref prelude, .. }
        if *prelude == vec![Injected::Close(close_self), Injected::Parse(reparse)]));
}

#[test]
fn per_client_limit_is_53400() {
    let cache = StatementCache::new(100);
    let mut server = ServerPrepared::new(10);
    let mut c = limited_client(1);
    run(&parse("a", "SELECT 1"), &cache, &mut c, &mut server);
    let refused = run(&parse("b", "SELECT 2"), &cache, &mut c, &mut server);
    let expected = msg::too_many_statements_error(1);
    assert!(matches!(refused.plan, Plan::Error { ref reply, .. } if *reply == expected));
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let cache = StatementCache::new(100);
    let mut server = ServerPrepared::new(10);
    let mut c = client();
    for frame in [&b"P\0\0\0\x05x"[..], b"B\0\0\0\x04", b"D\0\0\0\x05S", b"C"] {
        let ctx = PlanContext {
            cache: &cache,
            client: &mut c.map,
            server: &mut server,
            failed_transaction: false,
            resets_statements: false,
        };
        assert!(plan(frame, ctx).is_err(), "{frame:?}");
    }
}

#[test]
fn in_a_failed_transaction_parse_is_left_to_the_server() {
    let cache = StatementCache::new(100);
    let mut server = ServerPrepared::new(10);
    let (mut c1, mut c2) = (client(), client());
    let first = run(&parse("a", "SELECT 1"), &cache, &mut c1, &mut server);
    c2.failed_transaction = true;
    let planned = run(&parse("a", "SELECT 1"), &cache, &mut c2, &mut server);
    let expected = Plan::Forward {
        prelude: vec![],
        frame: server_frame("SELECT 1", &cache),
    };
    assert_eq!(planned.plan, expected);
    // The server rejects it (25P02): the name goes, the server copy stays.
    planned.undo.unwrap().apply(&mut c2.map, &mut server);
    assert!(c2.map.is_empty());
    assert!(server.contains(first.statement.unwrap(), 0));
}
