use super::*;

/// Hand-built Parse: name "s1", query "SELECT $1", one parameter of type int4 (23).
const PARSE_S1: &[u8] = b"P\0\0\0\x17s1\0SELECT $1\0\0\x01\0\0\0\x17";
/// Hand-built Bind: portal "", statement "s1", one text parameter "42", no result formats.
const BIND_S1: &[u8] = b"B\0\0\0\x14\0s1\0\0\0\0\x01\0\0\0\x0242\0\0";

#[test]
fn parse_parse_reads_names_and_oids() {
    let msg = parse_parse(PARSE_S1).unwrap();
    assert_eq!(msg.name, b"s1");
    assert_eq!(msg.query, b"SELECT $1");
    assert_eq!(msg.param_oids, vec![23]);
}

#[test]
fn build_parse_is_byte_exact() {
    let built = build_parse(b"s1", b"SELECT $1", &[23]).unwrap();
    assert_eq!(&built[..], PARSE_S1);
    let renamed = build_parse(b"pgf_7", b"SELECT 1", &[]).unwrap();
    assert_eq!(&renamed[..], b"P\0\0\0\x15pgf_7\0SELECT 1\0\0\0");
}

#[test]
fn bind_names_and_rewrite_keep_parameters_verbatim() {
    let names = parse_bind(BIND_S1).unwrap();
    assert_eq!(names.portal, b"");
    assert_eq!(names.statement, b"s1");
    let rewritten = rewrite_bind(BIND_S1, b"pgf_12").unwrap();
    let expected: &[u8] = b"B\0\0\0\x18\0pgf_12\0\0\0\0\x01\0\0\0\x0242\0\0";
    assert_eq!(&rewritten[..], expected);
}

#[test]
fn describe_and_close_targets() {
    let describe: &[u8] = b"D\0\0\0\x08Ss1\0";
    let target = parse_target(describe, b'D').unwrap();
    assert_eq!(target.kind, TargetKind::Statement);
    assert_eq!(target.name, b"s1");
    let rewritten = rewrite_describe(describe, b"pgf_3").unwrap();
    assert_eq!(&rewritten[..], b"D\0\0\0\x0bSpgf_3\0");
    let close: &[u8] = b"C\0\0\0\x06P\0";
    let target = parse_target(close, b'C').unwrap();
    assert_eq!((target.kind, target.name), (TargetKind::Portal, &b""[..]));
    let built = build_close_statement(b"pgf_3").unwrap();
    assert_eq!(&built[..], b"C\0\0\0\x0bSpgf_3\0");
}

#[test]
fn synthesized_replies_are_byte_exact() {
    assert_eq!(&close_complete()[..], b"3\0\0\0\x04");
    assert_eq!(
        &deallocate_complete(b'T')[..],
        b"C\0\0\0\x0fDEALLOCATE\0Z\0\0\0\x05T"
    );
    let dup = duplicate_statement_error(b"s1");
    let expected: &[u8] =
        b"E\0\0\0\x42SERROR\0VERROR\0C42P05\0Mprepared statement \"s1\" already exists\0\0";
    assert_eq!(&dup[..], expected);
    let missing = missing_statement_error(b"s1");
    let expected: &[u8] =
        b"E\0\0\0\x42SERROR\0VERROR\0C26000\0Mprepared statement \"s1\" does not exist\0\0";
    assert_eq!(&missing[..], expected);
    let too_many = too_many_statements_error(5);
    assert!(too_many.windows(6).any(|w| w == b"C53400"));
    assert_eq!(&poison_frame()[..4], b"D\0\0\0");
}

/// Every proper prefix of a valid frame (with its length header patched to match, and with
/// the original header) must be rejected without panicking.
fn assert_all_truncations_fail(frame: &[u8], decode: impl Fn(&[u8]) -> bool) {
    assert!(decode(frame), "the intact frame must decode");
    for cut in 0..frame.len() {
        let prefix = &frame[..cut];
        assert!(
            !decode(prefix),
            "prefix of {cut} bytes with original header"
        );
        if cut >= HEADER_LEN {
            let mut patched = prefix.to_vec();
            let len = (cut - 1) as i32;
            patched[1..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
            // A Bind is only decoded up to its names, so a prefix that keeps both is valid.
            let keeps_bind_names = frame[0] == b'B' && cut >= 9;
            if !keeps_bind_names {
                assert!(!decode(&patched), "prefix of {cut} bytes, patched length");
            }
        }
    }
}

#[test]
fn truncated_frames_are_errors() {
    assert_all_truncations_fail(PARSE_S1, |f| parse_parse(f).is_ok());
    assert_all_truncations_fail(BIND_S1, |f| rewrite_bind(f, b"x").is_ok());
    assert_all_truncations_fail(b"D\0\0\0\x08Ss1\0", |f| parse_target(f, b'D').is_ok());
    assert_all_truncations_fail(b"C\0\0\0\x08Ss1\0", |f| parse_target(f, b'C').is_ok());
}

#[test]
fn malformed_frames_are_errors() {
    assert_eq!(
        parse_parse(b"B\0\0\0\x04"),
        Err(MsgError::WrongTag {
            expected: b'P',
            found: b'B'
        })
    );
    assert_eq!(parse_parse(b"P\0\0\0\x03"), Err(MsgError::BadLength));
    assert_eq!(parse_parse(b"P\xff\xff\xff\xff"), Err(MsgError::BadLength));
    // The count is unsigned, as PostgreSQL reads it: 65535 types, not -1.
    assert_eq!(
        parse_parse(b"P\0\0\0\x08\0\0\xff\xff"),
        Err(MsgError::Truncated)
    );
    assert_eq!(
        parse_parse(b"P\0\0\0\x09\0\0\0\0x"),
        Err(MsgError::TrailingBytes)
    );
    assert_eq!(
        parse_target(b"D\0\0\0\x06X\0", b'D'),
        Err(MsgError::BadKind(b'X'))
    );
    // Length claims more than the frame holds: never read past the slice.
    assert_eq!(parse_bind(b"B\0\0\0\x20\0s\0"), Err(MsgError::BadLength));
}

#[test]
fn names_need_not_be_utf8() {
    let frame = build_parse(b"\xe9t\xe9", b"SELECT '\xe9'", &[]).unwrap();
    let msg = parse_parse(&frame).unwrap();
    assert_eq!(msg.name, b"\xe9t\xe9");
    assert!(duplicate_statement_error(msg.name).len() > 5);
}
