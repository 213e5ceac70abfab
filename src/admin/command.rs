//! Console statements, parsed the way PgBouncer reads them: a keyword, an optional argument
//! (a name, possibly double-quoted), case-insensitive, surrounding whitespace ignored.

use thiserror::Error;

/// What a SHOW asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Help,
    Version,
    Stats,
    StatsTotals,
    StatsAverages,
    Pools,
    Databases,
    Users,
    Clients,
    Servers,
    Config,
    Lists,
    /// pgferry's own: pinned client sessions and why.
    Pins,
    /// pgferry's own: the process-wide named prepared statement cache.
    Prepared,
}

/// How SHUTDOWN waits (PgBouncer's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Stop now (the proxy's ordinary shutdown with its grace period).
    Immediate,
    /// Stop accepting, wait until every server connection is released.
    WaitForServers,
    /// Stop accepting, wait until every client has disconnected.
    WaitForClients,
}

/// A console statement. Everything but `Show` is a control command, run by
/// [`super::control::run`] and refused to stats users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Show(Show),
    /// PAUSE [db]: wait for server connections to be released, then hold new work.
    Pause(Option<String>),
    /// RESUME [db]: undo PAUSE, SUSPEND or KILL.
    Resume(Option<String>),
    /// RECONNECT [db]: close each server connection once released.
    Reconnect(Option<String>),
    /// KILL [db]: drop the clients and servers of a database (all when none) now.
    Kill(Option<String>),
    /// KILL_CLIENT id: drop one client, by the id SHOW CLIENTS shows.
    KillClient(i32),
    /// WAIT_CLOSE [db]: block until no server connection is marked for closing.
    WaitClose(Option<String>),
    /// RELOAD: re-read the configuration file.
    Reload,
    /// SHUTDOWN [WAIT_FOR_SERVERS | WAIT_FOR_CLIENTS].
    Shutdown(ShutdownMode),
    /// SUSPEND: PgBouncer's online-restart step; accepted so it gets a precise answer.
    Suspend,
    /// ENABLE db: accept new clients for a DISABLEd database again.
    Enable(String),
    /// DISABLE db: refuse new clients of a database.
    Disable(String),
}

impl Command {
    /// True for commands that change the proxy (only `admin.users` may run them).
    pub fn is_control(&self) -> bool {
        !matches!(self, Command::Show(_))
    }

    /// The command's name as typed, for messages and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Show(_) => "SHOW",
            Command::Pause(_) => "PAUSE",
            Command::Resume(_) => "RESUME",
            Command::Reconnect(_) => "RECONNECT",
            Command::Kill(_) => "KILL",
            Command::KillClient(_) => "KILL_CLIENT",
            Command::WaitClose(_) => "WAIT_CLOSE",
            Command::Reload => "RELOAD",
            Command::Shutdown(_) => "SHUTDOWN",
            Command::Suspend => "SUSPEND",
            Command::Enable(_) => "ENABLE",
            Command::Disable(_) => "DISABLE",
        }
    }
}

/// Why a statement is not a console command; every variant is a 42601 for the client.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("invalid command '{0}', use SHOW HELP;")]
    Unknown(String),
    #[error("{command} needs {what}, use SHOW HELP;")]
    MissingArgument {
        command: &'static str,
        what: &'static str,
    },
    #[error("invalid argument for {command}: '{argument}', use SHOW HELP;")]
    BadArgument {
        command: &'static str,
        argument: String,
    },
    #[error("unterminated quoted name in '{0}'")]
    Unterminated(String),
}

/// Parses one statement (no `;`, already known to be non-empty).
pub fn parse(statement: &str) -> Result<Command, ParseError> {
    let words = split_words(statement)?;
    let keyword = words.first().map(|w| w.to_ascii_uppercase());
    let args = words.get(1..).unwrap_or_default();
    let unknown = || ParseError::Unknown(statement.trim().to_string());
    let Some(keyword) = keyword else {
        return Err(unknown());
    };
    if args.len() > 1 {
        return Err(unknown());
    }
    let arg = args.first().cloned();
    let required = |command, what| {
        arg.clone()
            .ok_or(ParseError::MissingArgument { command, what })
    };
    Ok(match keyword.as_str() {
        "SHOW" => Command::Show(show(arg.as_deref()).ok_or_else(unknown)?),
        "PAUSE" => Command::Pause(arg),
        "RESUME" => Command::Resume(arg),
        "RECONNECT" => Command::Reconnect(arg),
        "KILL" => Command::Kill(arg),
        "WAIT_CLOSE" => Command::WaitClose(arg),
        "RELOAD" if arg.is_none() => Command::Reload,
        "SUSPEND" if arg.is_none() => Command::Suspend,
        "SHUTDOWN" => Command::Shutdown(shutdown_mode(arg)?),
        "ENABLE" => Command::Enable(required("ENABLE", "a database name")?),
        "DISABLE" => Command::Disable(required("DISABLE", "a database name")?),
        "KILL_CLIENT" => Command::KillClient(client_id(required("KILL_CLIENT", "a client id")?)?),
        _ => return Err(unknown()),
    })
}

fn show(what: Option<&str>) -> Option<Show> {
    let what = what?.to_ascii_uppercase();
    Some(match what.as_str() {
        "HELP" => Show::Help,
        "VERSION" => Show::Version,
        "STATS" => Show::Stats,
        "STATS_TOTALS" => Show::StatsTotals,
        "STATS_AVERAGES" => Show::StatsAverages,
        "POOLS" => Show::Pools,
        "DATABASES" => Show::Databases,
        "USERS" => Show::Users,
        "CLIENTS" => Show::Clients,
        "SERVERS" => Show::Servers,
        "CONFIG" => Show::Config,
        "LISTS" => Show::Lists,
        "PINS" => Show::Pins,
        "PREPARED" => Show::Prepared,
        _ => return None,
    })
}

fn shutdown_mode(arg: Option<String>) -> Result<ShutdownMode, ParseError> {
    let Some(arg) = arg else {
        return Ok(ShutdownMode::Immediate);
    };
    match arg.to_ascii_uppercase().as_str() {
        "WAIT_FOR_SERVERS" => Ok(ShutdownMode::WaitForServers),
        "WAIT_FOR_CLIENTS" => Ok(ShutdownMode::WaitForClients),
        _ => Err(ParseError::BadArgument {
            command: "SHUTDOWN",
            argument: arg,
        }),
    }
}

fn client_id(arg: String) -> Result<i32, ParseError> {
    arg.parse().map_err(|_| ParseError::BadArgument {
        command: "KILL_CLIENT",
        argument: arg,
    })
}

/// Splits on whitespace; a word in double quotes keeps its case and spaces, `""` is a quote.
fn split_words(statement: &str) -> Result<Vec<String>, ParseError> {
    let mut words = Vec::new();
    let mut chars = statement.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        word.push('"');
                    }
                    Some('"') => break,
                    Some(c) => word.push(c),
                    None => return Err(ParseError::Unterminated(statement.trim().to_string())),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

/// Splits a Query's text into statements on `;` (outside double quotes), dropping empty ones.
pub fn statements(query: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in query.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&query[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&query[start..]);
    out.retain(|s| !s.trim().is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_is_case_and_space_insensitive() {
        assert_eq!(parse("  show\tPools "), Ok(Command::Show(Show::Pools)));
        assert_eq!(
            parse("SHOW stats_totals"),
            Ok(Command::Show(Show::StatsTotals))
        );
    }

    #[test]
    fn control_commands_take_optional_or_required_names() {
        assert_eq!(parse("pause"), Ok(Command::Pause(None)));
        assert_eq!(parse("PAUSE app"), Ok(Command::Pause(Some("app".into()))));
        assert_eq!(
            parse("resume \"My Db\""),
            Ok(Command::Resume(Some("My Db".into())))
        );
        assert_eq!(parse("KILL_CLIENT 42"), Ok(Command::KillClient(42)));
        assert_eq!(
            parse("shutdown wait_for_clients"),
            Ok(Command::Shutdown(ShutdownMode::WaitForClients))
        );
        assert_eq!(
            parse("SHUTDOWN"),
            Ok(Command::Shutdown(ShutdownMode::Immediate))
        );
        assert!(matches!(
            parse("ENABLE"),
            Err(ParseError::MissingArgument { .. })
        ));
        assert!(matches!(
            parse("KILL_CLIENT abc"),
            Err(ParseError::BadArgument { .. })
        ));
        assert!(parse("RELOAD").is_ok_and(|c| c.is_control()));
        assert!(!parse("SHOW HELP").is_ok_and(|c| c.is_control()));
    }

    #[test]
    fn unknown_statements_point_at_show_help() {
        let error = parse("SELECT 1").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid command 'SELECT 1', use SHOW HELP;"
        );
        assert!(parse("SHOW nothing").is_err());
        assert!(parse("SHOW").is_err());
        assert!(parse("PAUSE a b").is_err());
        assert!(parse("RELOAD now").is_err());
    }

    #[test]
    fn statements_split_on_semicolons_outside_quotes() {
        assert_eq!(statements(" ; ;"), Vec::<&str>::new());
        assert_eq!(
            statements("SHOW POOLS; pause \"a;b\";"),
            vec!["SHOW POOLS", " pause \"a;b\""]
        );
    }
}
