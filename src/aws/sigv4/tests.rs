//! SigV4 against AWS's published examples.

use super::*;

/// AWS's documented example keys (S3 "Authenticating Requests: Using Query Parameters").
fn example_credentials() -> Credentials {
    Credentials {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
    }
}

#[test]
fn signing_key_matches_the_sigv4_documentation() {
    // "Deriving the signing key" example: secret, 20120215, us-east-1, iam.
    let request = PresignRequest {
        authority: "",
        host_header: "",
        path: "/",
        params: &[],
        service: "iam",
        region: "us-east-1",
        expires_seconds: 0,
        payload: Payload::Empty,
    };
    let at = AmzDate::parse("20120215T000000Z").unwrap();
    let key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", at, &request);
    assert_eq!(
        hex(&key),
        "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
    );
}

#[test]
fn presigned_get_matches_the_s3_documentation_example() {
    // GET https://examplebucket.s3.amazonaws.com/test.txt, 2013-05-24, 86400 s.
    let request = PresignRequest {
        authority: "examplebucket.s3.amazonaws.com",
        host_header: "examplebucket.s3.amazonaws.com",
        path: "/test.txt",
        params: &[],
        service: "s3",
        region: "us-east-1",
        expires_seconds: 86_400,
        payload: Payload::Unsigned,
    };
    let at = AmzDate::parse("20130524T000000Z").unwrap();
    assert_eq!(
        presign_get(&request, &example_credentials(), at),
        "examplebucket.s3.amazonaws.com/test.txt\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
         &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    );
}

#[test]
fn encoding_keeps_only_unreserved_characters() {
    assert_eq!(encode("AZaz09-._~"), "AZaz09-._~");
    assert_eq!(encode("a b/c+d=e&f"), "a%20b%2Fc%2Bd%3De%26f");
    assert_eq!(encode("é"), "%C3%A9");
}

#[test]
fn canonical_query_sorts_by_encoded_key_then_value() {
    assert_eq!(canonical_query("b=2&a=9&X-Y=1&a=1"), "X-Y=1&a=1&a=9&b=2");
}

#[test]
fn debug_output_hides_secrets() {
    let mut credentials = example_credentials();
    credentials.session_token = Some("SESSION".into());
    let shown = format!("{credentials:?}");
    assert!(shown.contains("AKIAIOSFODNN7EXAMPLE"));
    assert!(
        !shown.contains("EXAMPLEKEY") && !shown.contains("SESSION"),
        "{shown}"
    );
}

#[test]
fn empty_payload_hash_is_the_sha256_of_nothing() {
    assert_eq!(Payload::Empty.hash(), hex(&Sha256::digest(b"")));
}
