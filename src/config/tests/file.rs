use super::{load_err, TempDir, MINIMAL};
use crate::config::*;
use std::time::Duration;

#[test]
fn defaults_match_the_programmatic_defaults() {
    let c = Config::from_toml_str(MINIMAL, "pgferry.toml").unwrap();
    assert_eq!(c.listen.addr, DEFAULT_LISTEN);
    assert_eq!(c.listen.addr.to_string(), "0.0.0.0:6432");
    assert_eq!(
        c.metrics.listen.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:9930")
    );
    let (l, d) = (&c.limits, Limits::default());
    assert_eq!(
        (
            l.max_client_connections,
            l.max_message_size,
            l.max_startup_packet_size
        ),
        (
            d.max_client_connections,
            d.max_message_size,
            d.max_startup_packet_size
        )
    );
    assert_eq!(l.max_startup_parameters, d.max_startup_parameters);
    assert_eq!(
        (l.login_timeout, l.query_wait_timeout),
        (d.login_timeout, d.query_wait_timeout)
    );
    assert_eq!(
        (l.client_idle_timeout, l.idle_transaction_timeout),
        (Duration::ZERO, Duration::ZERO)
    );
    assert_eq!(
        (l.server_reset_timeout, l.shutdown_timeout),
        (d.server_reset_timeout, d.shutdown_timeout)
    );
    assert_eq!(c.tls.mode, ClientTlsMode::Disable);
    assert!(!c.auth.allow_md5);
    assert_eq!(
        (c.log.format, c.log.level.as_str()),
        (LogFormat::Human, "info")
    );
    let db = &c.databases[0];
    let want = DatabaseConfig::new("app", "db.internal", 5432);
    assert_eq!(
        (db.port, db.dbname.as_str(), db.pool_mode),
        (5432, "app", want.pool_mode)
    );
    assert_eq!(
        (db.pool_size, db.min_pool_size, db.tls_mode),
        (want.pool_size, want.min_pool_size, want.tls_mode)
    );
    assert_eq!(
        (
            db.connect_timeout,
            db.server_idle_timeout,
            db.server_lifetime
        ),
        (
            want.connect_timeout,
            want.server_idle_timeout,
            want.server_lifetime
        )
    );
    assert_eq!(
        (db.backend_user.as_ref(), db.tls_ca_file.as_ref()),
        (None, None)
    );
    assert!(matches!(&c.users[0].credential, Credential::Plain(p) if p == "pw"));
}

#[test]
fn human_values_are_converted() {
    let text = format!(
        "[limits]\nmax_message_size = \"1MiB\"\nmax_startup_packet_size = 2048\n\
         login_timeout = \"250ms\"\nquery_wait_timeout = 3\nclient_idle_timeout = \"2m\"\n\
         [metrics]\nlisten = \"off\"\n[log]\nformat = \"json\"\nlevel = \"pgferry=debug,info\"\n{MINIMAL}"
    );
    let c = Config::from_toml_str(&text, "x.toml").unwrap();
    assert_eq!(
        (c.limits.max_message_size, c.limits.max_startup_packet_size),
        (1 << 20, 2048)
    );
    assert_eq!(c.limits.login_timeout, Duration::from_millis(250));
    assert_eq!(c.limits.query_wait_timeout, Duration::from_secs(3));
    assert_eq!(c.limits.client_idle_timeout, Duration::from_secs(120));
    assert_eq!(c.metrics.listen, None);
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn runtime_worker_threads_default_to_one_per_core_and_are_bounded() {
    let c = Config::from_toml_str(MINIMAL, "x.toml").unwrap();
    assert_eq!(c.runtime.worker_threads, 0);
    let text = format!("[runtime]\nworker_threads = 1\n{MINIMAL}");
    let c = Config::from_toml_str(&text, "x.toml").unwrap();
    assert_eq!(c.runtime.worker_threads, 1);
    let err = load_err(&format!("[runtime]\nworker_threads = -1\n{MINIMAL}"));
    assert!(
        err.starts_with("pgferry.toml: runtime.worker_threads:"),
        "{err}"
    );
}

#[test]
fn syntax_errors_have_line_and_column() {
    let err = load_err("[listen]\naddr = \"0.0.0.0:6432\n");
    assert!(err.starts_with("pgferry.toml: line 2, column "), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn unknown_keys_are_errors() {
    let err = load_err(&format!("[listen]\nadr = \"0.0.0.0:1\"\n{MINIMAL}"));
    assert!(
        err.starts_with("pgferry.toml: line 2, column 1: unknown field `adr`"),
        "{err}"
    );
    let err = load_err(&format!("{MINIMAL}pool_sise = 5\n"));
    assert!(
        err.contains("line 9, column 1: unknown field `pool_sise`"),
        "{err}"
    );
    let err = load_err(&format!("[listener]\n{MINIMAL}"));
    assert!(
        err.starts_with("pgferry.toml: line 1, column 2: unknown field `listener`"),
        "{err}"
    );
}

#[test]
fn wrong_types_are_located() {
    let err = load_err(&format!("{MINIMAL}pool_size = \"ten\"\n"));
    assert!(
        err.starts_with("pgferry.toml: line 9, column 13: invalid type"),
        "{err}"
    );
    let err = load_err(&format!("[limits]\nlogin_timeout = true\n{MINIMAL}"));
    assert!(err.contains("line 2, column 17"), "{err}");
    assert!(
        err.contains("a whole number or a string with a unit"),
        "{err}"
    );
}

#[test]
fn conversion_errors_name_the_key() {
    let cases = [
        ("[listen]\naddr = \"localhost:6432\"\n", "listen.addr: expected IP:PORT such as \"0.0.0.0:6432\" or \"[::]:6432\", got \"localhost:6432\""),
        ("[metrics]\nlisten = \"\"\n", "metrics.listen: expected IP:PORT such as \"0.0.0.0:6432\" or \"[::]:6432\", got \"\" (or \"off\" to disable)"),
        ("[tls]\nmode = \"required\"\n", "tls.mode: expected one of \"disable\", \"allow\", \"require\", got \"required\""),
        ("[log]\nformat = \"text\"\n", "log.format: expected one of \"human\", \"json\", got \"text\""),
        ("[limits]\nmax_client_connections = -1\n", "limits.max_client_connections: must be between 1 and 1000000, got -1"),
        ("[limits]\nmax_message_size = \"1kB\"\n", "limits.max_message_size: must be between 4096 and 1073741824, got 1000"),
        ("[limits]\nmax_message_size = \"2GiB\"\n", "limits.max_message_size: must be between 4096 and 1073741824, got 2147483648"),
        ("[limits]\nmax_startup_packet_size = \"10 parsecs\"\n", "limits.max_startup_packet_size: unknown size unit \"parsecs\" in \"10 parsecs\" (use B, kB, MB, GB, KiB, MiB or GiB)"),
        ("[limits]\nlogin_timeout = -5\n", "limits.login_timeout: must not be negative, got -5"),
        ("[limits]\nshutdown_timeout = \"5 sec\"\n", "limits.shutdown_timeout: unknown duration unit \"sec\" in \"5 sec\" (use ms, s, m, h or d)"),
    ];
    for (section, want) in cases {
        assert_eq!(
            load_err(&format!("{section}{MINIMAL}")),
            format!("pgferry.toml: {want}")
        );
    }
}

#[test]
fn from_file_resolves_relative_paths_and_names_the_file() {
    let dir = TempDir::new();
    dir.file("server.crt", "cert");
    dir.file("server.key", "key");
    let text = format!(
        "[tls]\nmode = \"allow\"\ncert_file = \"server.crt\"\nkey_file = \"server.key\"\n{MINIMAL}"
    );
    let path = dir.file("pgferry.toml", &text);
    let c = Config::from_file(&path).unwrap();
    assert_eq!(c.tls.cert_file, Some(dir.path().join("server.crt")));
    assert_eq!(c.tls.key_file, Some(dir.path().join("server.key")));

    let bad = dir.file("bad.toml", "[[users]]\nname = \"\"\npassword = \"x\"\n");
    let err = Config::from_file(&bad).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("{}: users[0].name: must not be empty", bad.display())
    );

    let missing = dir.path().join("nope.toml");
    let err = Config::from_file(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{err}"
    );
}
