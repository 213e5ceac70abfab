//! Human summary of the pools a configuration defines, printed by `pgferry check-config`.

use super::*;
use std::fmt::Write;

impl Config {
    /// One line per database: where it goes and how it is pooled, so an operator can confirm
    /// a config does what they meant before deploying it. Never includes passwords.
    pub fn describe_pools(&self) -> String {
        let mut out = String::new();
        for db in &self.databases {
            let backend_user = match &db.backend_user {
                Some(user) => format!("backend user {user}"),
                None => "backend user = client's user".to_string(),
            };
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "{} → {}:{}/{}, {} pooling, pool_size {} (min {}), backend tls {}, {}",
                db.name,
                db.host,
                db.port,
                db.dbname,
                db.pool_mode,
                db.pool_size,
                db.min_pool_size,
                db.tls_mode,
                backend_user
            );
            if let Some(cap) = db.max_db_connections {
                let _ = writeln!(out, "  all pools of {} together: at most {cap}", db.name);
            }
        }
        for user in &self.users {
            let limits = user.limits;
            let mut parts = Vec::new();
            if let Some(size) = limits.pool_size {
                parts.push(format!("pool_size {size}"));
            }
            if let Some(mode) = limits.pool_mode {
                parts.push(format!("{mode} pooling"));
            }
            if let Some(n) = limits.max_client_connections {
                parts.push(format!("max_client_connections {n}"));
            }
            if !parts.is_empty() {
                let _ = writeln!(out, "user {}: {}", user.name, parts.join(", "));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_database() {
        let mut config = Config::minimal();
        let mut app = DatabaseConfig::new("app", "db.internal", 5433);
        app.dbname = "appdb".into();
        app.backend_user = Some("app_rw".into());
        app.backend_password = Some("secret".into());
        app.tls_mode = BackendTlsMode::VerifyFull;
        let mut reports = DatabaseConfig::new("reports", "10.0.0.5", 5432);
        reports.pool_mode = PoolMode::Session;
        reports.pool_size = 5;
        reports.min_pool_size = 1;
        config.databases = vec![app, reports];
        let text = config.describe_pools();
        config.databases[0].max_db_connections = Some(30);
        let mut svc = UserConfig::new("svc", Credential::Plain("secret".into()));
        svc.limits = UserLimits {
            pool_size: Some(3),
            pool_mode: Some(PoolMode::Session),
            max_client_connections: Some(50),
        };
        config.users.push(svc);
        let limited = config.describe_pools();
        assert!(
            limited.contains("  all pools of app together: at most 30\n"),
            "{limited}"
        );
        assert!(limited
            .ends_with("user svc: pool_size 3, session pooling, max_client_connections 50\n"));
        assert_eq!(
            text,
            "app → db.internal:5433/appdb, transaction pooling, pool_size 20 (min 0), \
             backend tls verify-full, backend user app_rw\n\
             reports → 10.0.0.5:5432/reports, session pooling, pool_size 5 (min 1), \
             backend tls prefer, backend user = client's user\n"
        );
        assert!(!text.contains("secret"));
    }
}
