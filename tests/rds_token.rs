//! `pgferry rds-token` against an independent implementation: botocore's
//! `generate_db_auth_token` (what `aws rds generate-db-auth-token` runs), with the same
//! credentials, inputs and a frozen clock, must produce byte-identical tokens. Also the
//! command's errors: missing credentials or region exit 2 with a message naming the variables.
//!
//! botocore is installed by `tests/aws/install.sh` (pinned, cached under the target dir); if it
//! cannot be installed the tests fail, they never skip.

mod support;

use std::process::{Command, Output, Stdio};

/// botocore with its clock frozen at argv[8] (`YYYYMMDDTHHMMSSZ`, UTC) by patching the one
/// function SigV4 reads the time from; credentials come from argv, never from files or IMDS.
const BOTOCORE_TOKEN: &str = r#"
import sys, datetime
from unittest import mock
import botocore.session
host, port, user, region, key_id, secret, token, timestamp = sys.argv[1:]
client = botocore.session.Session().create_client(
    "rds", region_name=region, aws_access_key_id=key_id,
    aws_secret_access_key=secret, aws_session_token=token or None)
frozen = datetime.datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ")
with mock.patch("botocore.auth.get_current_datetime", return_value=frozen):
    print(client.generate_db_auth_token(host, int(port), user, Region=region))
"#;

/// One token to compare: endpoint, user, region, credentials, time.
struct Case {
    host: &'static str,
    port: u16,
    user: &'static str,
    region: &'static str,
    session_token: Option<&'static str>,
    timestamp: &'static str,
}

const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn stdout_of(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned()
}

fn botocore_token(case: &Case) -> String {
    let output = Command::new(support::installed::installed("aws").join("venv/bin/python"))
        .arg("-c")
        .arg(BOTOCORE_TOKEN)
        .args([case.host, &case.port.to_string(), case.user, case.region])
        .args([
            KEY_ID,
            SECRET,
            case.session_token.unwrap_or(""),
            case.timestamp,
        ])
        .env_clear()
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run botocore: {e}"));
    stdout_of(&output, "botocore")
}

/// `pgferry rds-token ARGS` with exactly the environment `vars`.
fn pgferry(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .arg("rds-token")
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run pgferry: {e}"))
}

fn pgferry_token(case: &Case) -> String {
    let port = case.port.to_string();
    let args = [
        "--host",
        case.host,
        "--port",
        &port,
        "--user",
        case.user,
        "--region",
        case.region,
        "--timestamp",
        case.timestamp,
    ];
    let mut vars = vec![
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    if let Some(token) = case.session_token {
        vars.push(("AWS_SESSION_TOKEN", token));
    }
    stdout_of(&pgferry(&args, &vars), "pgferry rds-token")
}

fn assert_same_token(case: Case) {
    let expected = botocore_token(&case);
    assert!(
        expected.contains(&format!("X-Amz-Date={}", case.timestamp)),
        "botocore's clock was not frozen: {expected}"
    );
    assert_eq!(pgferry_token(&case), expected);
}

#[test]
fn long_term_keys_match_botocore() {
    assert_same_token(Case {
        host: "app.cluster-c9akciq32.eu-west-1.rds.amazonaws.com",
        port: 5432,
        user: "app_user",
        region: "eu-west-1",
        session_token: None,
        timestamp: "20260102T030405Z",
    });
}

#[test]
fn session_token_odd_port_and_encoded_user_match_botocore() {
    assert_same_token(Case {
        host: "Proxy-1.Example.internal",
        port: 6543,
        user: "svc user+ops@corp/é=1&x",
        region: "us-gov-west-1",
        session_token: Some("IQoJb3JpZ2luX2VjEH/+Some//Session==Token"),
        timestamp: "20240229T235959Z",
    });
}

#[test]
fn https_port_is_left_out_of_the_signed_host_like_botocore() {
    assert_same_token(Case {
        host: "db.example.com",
        port: 443,
        user: "app",
        region: "ap-southeast-2",
        session_token: Some("tok"),
        timestamp: "20251231T000000Z",
    });
}

#[test]
fn bracketed_ipv6_endpoint_matches_botocore() {
    assert_same_token(Case {
        host: "[fd00::a:1]",
        port: 5432,
        user: "app",
        region: "eu-central-1",
        session_token: None,
        timestamp: "20260615T120000Z",
    });
}

#[test]
fn missing_credentials_exit_2_naming_the_variables() {
    let output = pgferry(
        &["--host", "h", "--user", "u", "--region", "eu-west-1"],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn region_comes_from_the_environment_or_is_asked_for() {
    let keys = [("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "S")];
    let args = ["--host", "h", "--user", "u"];
    let missing = pgferry(&args, &keys);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("no AWS region: pass --region or set AWS_REGION or AWS_DEFAULT_REGION"));
    let mut with_default = keys.to_vec();
    with_default.push(("AWS_DEFAULT_REGION", "sa-east-1"));
    let token = stdout_of(&pgferry(&args, &with_default), "pgferry rds-token");
    assert!(
        token.starts_with("h:5432/?Action=connect&DBUser=u&")
            && token.contains("%2Fsa-east-1%2Frds-db%2F"),
        "{token}"
    );
}

#[test]
fn bad_timestamp_and_host_exit_2_with_the_reason() {
    let keys = [("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "S")];
    let base = ["--user", "u", "--region", "eu-west-1"];
    let bad_time = pgferry(
        &[&base[..], &["--host", "h", "--timestamp", "2026-01-02"]].concat(),
        &keys,
    );
    assert_eq!(bad_time.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("invalid timestamp \"2026-01-02\""));
    let bad_host = pgferry(&[&base[..], &["--host", "db/x"]].concat(), &keys);
    assert_eq!(bad_host.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_host.stderr).contains("invalid host \"db/x\""));
}
