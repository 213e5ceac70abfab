//! PgBouncer 1.25's console columns and type OIDs, as read from its src/admin.c and
//! src/stats.c (names and order are what tools index by).

/// PgBouncer 1.25's columns and type OIDs (25 text, 23 int4, 1700 numeric).
pub fn expected_columns(show: &str) -> Vec<(&'static str, u32)> {
    const T: u32 = 25;
    const I: u32 = 23;
    const N: u32 = 1700;
    let stats = [
        "server_assignment_count",
        "xact_count",
        "query_count",
        "bytes_received",
        "bytes_sent",
        "xact_time",
        "query_time",
        "wait_time",
        "client_parse_count",
        "server_parse_count",
        "bind_count",
    ];
    let with_db = |names: Vec<&'static str>| {
        std::iter::once(("database", T))
            .chain(names.into_iter().map(|n| (n, N)))
            .collect::<Vec<_>>()
    };
    match show {
        "POOLS" => {
            let mut c = vec![("database", T), ("user", T)];
            for n in [
                "cl_active",
                "cl_waiting",
                "cl_active_cancel_req",
                "cl_waiting_cancel_req",
                "sv_active",
                "sv_active_cancel",
                "sv_being_canceled",
                "sv_idle",
                "sv_used",
                "sv_tested",
                "sv_login",
                "maxwait",
                "maxwait_us",
            ] {
                c.push((n, I));
            }
            c.extend([("pool_mode", T), ("load_balance_hosts", T)]);
            c
        }
        "DATABASES" => vec![
            ("name", T),
            ("host", T),
            ("port", I),
            ("database", T),
            ("force_user", T),
            ("pool_size", I),
            ("min_pool_size", I),
            ("reserve_pool_size", I),
            ("server_lifetime", I),
            ("pool_mode", T),
            ("load_balance_hosts", T),
            ("max_connections", I),
            ("current_connections", I),
            ("max_client_connections", I),
            ("current_client_connections", I),
            ("paused", I),
            ("disabled", I),
        ],
        "USERS" => vec![
            ("name", T),
            ("pool_size", T),
            ("reserve_pool_size", T),
            ("pool_mode", T),
            ("max_user_connections", I),
            ("current_connections", I),
            ("max_user_client_connections", I),
            ("current_client_connections", I),
        ],
        "CLIENTS" | "SERVERS" => vec![
            ("type", T),
            ("user", T),
            ("database", T),
            ("replication", T),
            ("state", T),
            ("addr", T),
            ("port", I),
            ("local_addr", T),
            ("local_port", I),
            ("connect_time", T),
            ("request_time", T),
            ("wait", I),
            ("wait_us", I),
            ("close_needed", I),
            ("ptr", T),
            ("link", T),
            ("remote_pid", I),
            ("tls", T),
            ("application_name", T),
            ("prepared_statements", I),
            ("id", I),
        ],
        "CONFIG" => vec![("key", T), ("value", T), ("default", T), ("changeable", T)],
        "LISTS" => vec![("list", T), ("items", I)],
        "VERSION" => vec![("version", T)],
        "STATS_TOTALS" => with_db(stats.to_vec()),
        "STATS_AVERAGES" => {
            let mut names = stats.to_vec();
            names[8] = "avg_client_parse_count";
            names[9] = "avg_server_parse_count";
            names[10] = "avg_bind_count";
            with_db(names)
        }
        "STATS" => {
            let total = |n: &str| match n {
                "bytes_received" => "total_received".to_string(),
                "bytes_sent" => "total_sent".to_string(),
                n => format!("total_{n}"),
            };
            let avg = |n: &str| match n {
                "bytes_received" => "avg_recv".to_string(),
                "bytes_sent" => "avg_sent".to_string(),
                n => format!("avg_{n}"),
            };
            let names: Vec<&'static str> = stats
                .iter()
                .map(|n| total(n))
                .chain(stats.iter().map(|n| avg(n)))
                .map(|n| &*Box::leak(n.into_boxed_str()))
                .collect();
            with_db(names)
        }
        "PINS" => vec![
            ("client", I),
            ("user", T),
            ("database", T),
            ("reasons", T),
            ("since", T),
        ],
        "PREPARED" => vec![("name", T), ("query", T), ("clients", I), ("backends", I)],
        other => panic!("no expectation for SHOW {other}"),
    }
}
