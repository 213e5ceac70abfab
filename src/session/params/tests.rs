//! Unit tests of the client settings model.

use super::*;

fn baseline() -> HashMap<String, String> {
    [
        ("TimeZone", "UTC"),
        ("application_name", ""),
        ("server_version", "15.1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn startup(params: &[(&str, &str)]) -> StartupParams {
    StartupParams {
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..StartupParams::default()
    }
}

#[test]
fn startup_params_and_options_override_baseline_with_canonical_names() {
    let p = ClientParams::new(
        Arc::new(baseline().into()),
        &startup(&[(
            "options",
            "-c timezone=Asia/Tokyo -c Statement_Timeout=5s --search-path=a,b",
        )]),
    )
    .unwrap();
    assert_eq!(p.get("TimeZone"), Some("Asia/Tokyo"));
    assert_eq!(
        p.statement_for("statement_timeout"),
        Some("SELECT pg_catalog.set_config(E'statement_timeout', E'5s', false);")
    );
    assert_eq!(
        p.statement_for("search_path"),
        Some("SELECT pg_catalog.set_config(E'search_path', E'a,b', false);"),
        "startup values are configuration strings, not SQL"
    );
    assert_eq!(
        p.get("server_version"),
        Some("15.1"),
        "the pool's value, shared"
    );
}

#[test]
fn sync_sql_sets_differences_and_resets_stale_settings() {
    let mut p = ClientParams::new(
        Arc::new(baseline().into()),
        &startup(&[("application_name", "it's"), ("statement_timeout", "1s")]),
    )
    .unwrap();
    p.set("search_path", "a, \"B\"");
    let mut current = VersionedMap::from(baseline());
    let mut applied = VersionedMap::from(HashMap::from([(
        "lock_timeout".to_string(),
        "SET x;".to_string(),
    )]));
    let mut aligned = Alignment::default();
    let sql = p.sync_sql(&current, &mut applied, &mut aligned).unwrap();
    assert_eq!(
        sql,
        "SELECT pg_catalog.set_config(E'application_name', E'it''s', false);\
         SET \"search_path\" TO a, \"B\";\
         SELECT pg_catalog.set_config(E'statement_timeout', E'1s', false);RESET \"lock_timeout\";"
    );
    current.insert("application_name".into(), "it's".into());
    assert_eq!(p.sync_sql(&current, &mut applied, &mut aligned), None);
}

/// A backend in line with `p`'s settings, as a previous full comparison left it (after
/// the SQL of any settings `p` made with SET was applied).
fn aligned_backend(p: &ClientParams) -> (VersionedMap, VersionedMap, Alignment) {
    let mut current = VersionedMap::from(baseline());
    for name in SESSION_REPORTED {
        if let Some(value) = p.get(name) {
            current.insert(name.to_string(), value.to_string());
        }
    }
    let mut applied = VersionedMap::default();
    let mut aligned = Alignment::default();
    let _ = p.sync_sql(&current, &mut applied, &mut aligned);
    assert_eq!(p.sync_sql(&current, &mut applied, &mut aligned), None);
    (current, applied, aligned)
}

fn pgbench_client() -> ClientParams {
    ClientParams::new(
        Arc::new(baseline().into()),
        &startup(&[("application_name", "pgbench")]),
    )
    .unwrap()
}

#[test]
fn same_client_again_needs_no_sql_and_no_comparison() {
    let p = pgbench_client();
    let (current, mut applied, mut aligned) = aligned_backend(&p);
    assert!(aligned.holds(&p.key, &current, &applied));
    assert_eq!(p.sync_sql(&current, &mut applied, &mut aligned), None);
    assert!(aligned.holds(&p.key, &current, &applied));
}

#[test]
fn a_set_since_the_last_checkout_is_applied() {
    let mut p = pgbench_client();
    let (current, mut applied, mut aligned) = aligned_backend(&p);
    p.set("work_mem", "'64MB'");
    assert_eq!(
        p.sync_sql(&current, &mut applied, &mut aligned).as_deref(),
        Some("SET \"work_mem\" TO '64MB';")
    );
    assert!(!aligned.holds(&p.key, &current, &applied), "SQL sent");
    assert_eq!(p.sync_sql(&current, &mut applied, &mut aligned), None);
}

#[test]
fn a_backend_parameter_change_is_undone() {
    let p = pgbench_client();
    let (mut current, mut applied, mut aligned) = aligned_backend(&p);
    current.insert("TimeZone".into(), "Asia/Tokyo".into());
    assert_eq!(
        p.sync_sql(&current, &mut applied, &mut aligned).as_deref(),
        Some("SELECT pg_catalog.set_config(E'TimeZone', E'UTC', false);")
    );
}

#[test]
fn a_setting_removed_from_the_backend_record_is_applied_again() {
    let mut p = pgbench_client();
    p.set("work_mem", "'64MB'");
    let (current, mut applied, mut aligned) = aligned_backend(&p);
    applied.clear();
    assert_eq!(
        p.sync_sql(&current, &mut applied, &mut aligned).as_deref(),
        Some("SET \"work_mem\" TO '64MB';")
    );
}

#[test]
fn another_client_is_compared_by_its_settings() {
    let p = pgbench_client();
    let (current, mut applied, mut aligned) = aligned_backend(&p);
    let twin = pgbench_client();
    assert!(
        aligned.holds(&twin.key, &current, &applied),
        "same settings"
    );
    assert_eq!(twin.sync_sql(&current, &mut applied, &mut aligned), None);
    let other = ClientParams::new(
        Arc::new(baseline().into()),
        &startup(&[("application_name", "psql")]),
    )
    .unwrap();
    assert!(!aligned.holds(&other.key, &current, &applied));
    assert_eq!(
        other
            .sync_sql(&current, &mut applied, &mut aligned)
            .as_deref(),
        Some("SELECT pg_catalog.set_config(E'application_name', E'psql', false);")
    );
}

#[test]
fn key_follows_every_effective_change_only() {
    let mut p = pgbench_client();
    let initial = Arc::clone(&p.key);
    p.observe("application_name", "pgbench");
    p.set("TimeZone", "'Asia/Tokyo'");
    assert!(Arc::ptr_eq(&p.key, &initial), "nothing changed");
    p.observe("TimeZone", "Asia/Tokyo");
    assert_ne!(p.key, initial);
    p.observe("TimeZone", "UTC");
    assert_eq!(p.key, initial, "back to the same settings");
    p.set("work_mem", "'1MB'");
    assert_ne!(p.key, initial);
    p.reset_all();
    assert_eq!(p.key, initial);
}

#[test]
fn set_reset_and_reset_all_follow_postgres_semantics() {
    let mut p = ClientParams::new(
        Arc::new(baseline().into()),
        &startup(&[("statement_timeout", "1s")]),
    )
    .unwrap();
    p.set("statement_timeout", "'9s'");
    p.set("Work_Mem", "'64MB'");
    p.set("TimeZone", "'Asia/Tokyo'");
    assert_eq!(
        p.statement_for("work_mem"),
        Some("SET \"work_mem\" TO '64MB';")
    );
    assert_eq!(
        p.statement_for("timezone"),
        None,
        "reported parameters follow ParameterStatus"
    );
    p.reset("statement_timeout");
    assert_eq!(
        p.statement_for("statement_timeout"),
        Some("SELECT pg_catalog.set_config(E'statement_timeout', E'1s', false);")
    );
    p.reset_all();
    assert_eq!(p.statement_for("work_mem"), None);
}

#[test]
fn observes_only_session_settings() {
    let mut p = ClientParams::new(Arc::new(baseline().into()), &startup(&[])).unwrap();
    p.observe("TimeZone", "Asia/Tokyo");
    p.observe("is_superuser", "on");
    assert_eq!(p.get("TimeZone"), Some("Asia/Tokyo"));
    assert_eq!(p.get("is_superuser"), None);
}

#[test]
fn options_with_escaped_spaces_and_dotted_names() {
    assert_eq!(
        parse_options(r"-c application_name=my\ app -cwork_mem=4MB"),
        vec![
            ("application_name".into(), "my app".into()),
            ("work_mem".into(), "4MB".into())
        ]
    );
    assert_eq!(identifier("myapp.user_id"), "\"myapp\".\"user_id\"");
}

#[test]
fn startup_client_encoding_is_canonical_so_alignment_finds_nothing_to_do() {
    let mut base = baseline();
    base.insert("client_encoding".into(), "UTF8".into());
    let p = ClientParams::new(
        Arc::new(base.clone().into()),
        &startup(&[("client_encoding", "utf-8")]),
    )
    .unwrap();
    assert_eq!(p.get("client_encoding"), Some("UTF8"));
    let current = VersionedMap::from(base);
    let mut applied = VersionedMap::default();
    assert_eq!(
        p.sync_sql(&current, &mut applied, &mut Alignment::default()),
        None
    );
    let error = ClientParams::new(
        Arc::new(baseline().into()),
        &startup(&[("options", "-c client_encoding=nonsense")]),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid value for parameter \"client_encoding\": \"nonsense\""
    );
}

#[test]
fn restore_covers_the_startup_settings_a_statement_reset() {
    use crate::session::sql_scan::SessionEffect;
    let p = ClientParams::new(
        Arc::new(baseline().into()),
        &startup(&[
            ("options", "-c timezone=Asia/Tokyo -c work_mem=3MB"),
            ("statement_timeout", "it's"),
        ]),
    )
    .unwrap();
    assert!(p.has_startup_settings());
    let reset = |name: &str| SessionEffect::Reset { name: name.into() };
    assert_eq!(
        p.restore_sql(&[reset("lock_timeout")]),
        None,
        "not a startup setting"
    );
    assert_eq!(p.restore_sql(&[SessionEffect::DeallocateAll]), None);
    let one = p.restore_sql(&[reset("timezone")]).unwrap();
    assert!(
        one.contains("(VALUES (E'TimeZone', E'Asia/Tokyo'))"),
        "{one}"
    );
    let default = SessionEffect::Set {
        name: "work_mem".into(),
        value: "DEFAULT".into(),
    };
    let set_default = p.restore_sql(&[default]).unwrap();
    assert!(
        set_default.contains("(VALUES (E'work_mem', E'3MB'))"),
        "{set_default}"
    );
    let all = p.restore_sql(&[SessionEffect::DiscardAll]).unwrap();
    assert!(
        all.contains(
            "(VALUES (E'statement_timeout', E'it''s'), (E'TimeZone', E'Asia/Tokyo'), \
             (E'work_mem', E'3MB'))"
        ),
        "{all}"
    );
    assert!(all.ends_with("WHERE s.name IS NULL OR s.setting IS NOT DISTINCT FROM s.reset_val"));
    let plain = ClientParams::new(Arc::new(baseline().into()), &startup(&[])).unwrap();
    assert!(!plain.has_startup_settings());
    assert_eq!(plain.restore_sql(&[SessionEffect::ResetAll]), None);
}
