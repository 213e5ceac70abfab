//! Per-client session task: opening handshake, authentication, welcome, then the relay loop.

mod backend_output;
mod buffers;
mod client_input;
mod deallocate;
mod effects;
mod encoding;
mod ending;
mod expect;
mod handshake;
mod held;
mod login;
mod params;
pub mod park;
pub mod prepared;
mod refusal;
mod registration;
mod relay;
mod reports;
mod reset;
pub mod signal;
pub mod sql_scan;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tracing::Instrument;

pub use expect::{ExpectQueue, Route};
pub use params::{parse_options, ClientParams};
pub(crate) use registration::{register, StreamFacts};

use crate::admin;
use crate::cancel::CancelRegistry;
use crate::config::{ClientTlsMode, Config};
use crate::live::{Live, LiveState};
use crate::metrics::{LoginResult, Metrics, RejectReason};
use crate::pool::{BackendPool, UserAdmission};
use crate::protocol::frame::FrameScanner;
use crate::protocol::messages;
use crate::protocol::startup::{Inbox, StartupLimits, StartupParams};
use crate::stream::ClientStream;
use handshake::Opened;
use login::LoginError;
use relay::Relay;

/// Everything a session needs, shared by all sessions of a proxy.
pub struct SessionContext {
    /// Configuration, users, pools and client TLS: replaced whole by a reload.
    pub live: LiveState,
    pub cancel: Arc<CancelRegistry>,
    pub metrics: Arc<Metrics>,
    /// Process-wide cache of named prepared statements (transaction mode).
    pub statements: prepared::StatementCache,
    /// Shutdown phases and the park clock (see [`signal::SessionSignal`]).
    pub signals: watch::Receiver<signal::SessionSignal>,
    /// Where long-idle sessions wait outside the runtime.
    pub parking: park::ParkingLot,
    /// What the admin console's control commands signal with (kills, shutdown requests).
    pub control: crate::control::signals::Controls,
    /// Live clients (and its coarse clock), for the admin console.
    pub registry: Arc<admin::registry::Registry>,
    /// Places under `max_client_connections`.
    pub admission: crate::admission::Admission,
    /// Where a reload reads the configuration from.
    pub reloader: crate::reload::source::Reloader,
}

impl SessionContext {
    /// The configuration now in force (a reload may replace it at any time).
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.live.load().config)
    }

    fn tls_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.live.load().tls_config().cloned()
    }

    fn tls_mode(&self) -> ClientTlsMode {
        self.live.load().config.tls.mode
    }

    fn startup_limits(&self) -> StartupLimits {
        let live = self.live.load();
        StartupLimits {
            max_packet_size: live.config.limits.max_startup_packet_size,
            max_parameters: live.config.limits.max_startup_parameters,
        }
    }
}

/// Metrics read the pools of the generation in force at each scrape.
impl crate::metrics::PoolStateSource for SessionContext {
    fn pool_states(&self) -> Vec<crate::metrics::PoolState> {
        self.live.load().pools.pool_states()
    }
}

/// Room for the welcome after a login: the usual reported parameters fit without regrowing.
const WELCOME_CAPACITY: usize = 1024;

/// Serves one accepted client connection to its end.
///
/// The `client` span (peer, user, database) is a DEBUG span covering the login only. At the
/// default level it costs nothing: formatting its fields was a quarter of the instructions of a
/// new connection. A span also lives in the log subscriber for as long as it is open, and idle
/// clients are the many. The INFO events of a session therefore carry their own context
/// (`peer` for refusals, the `client` id, user and database later), and with DEBUG on, the span
/// adds the rest.
///
/// `admission` is the client's place under `max_client_connections`: the session keeps it
/// for its whole life, parked or not.
pub async fn run_client(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<SessionContext>,
    admission: OwnedSemaphorePermit,
) {
    let span = tracing::debug_span!(
        "client",
        %peer,
        user = tracing::field::Empty,
        database = tracing::field::Empty,
        client = tracing::field::Empty,
    );
    // The login timeout bounds what the client controls (TLS, startup, password); the
    // first backend checkout in `welcome` has its own bounds and errors.
    // Each phase is boxed: the task then holds only the state of the phase it is in, and
    // an idle client (the common case, by the thousand) does not carry the TLS handshake's
    // and login's state for its whole life.
    let login_timeout = ctx.live.load().config.limits.login_timeout;
    let login = tokio::time::timeout(login_timeout, open_session(tcp, &ctx));
    let (stream, startup, destination, early) = match Box::pin(login.instrument(span.clone())).await
    {
        Ok(Some(logged_in)) => logged_in,
        Ok(None) => return,
        Err(_) => {
            ctx.metrics.client_rejected(RejectReason::LoginTimeout);
            span.in_scope(|| tracing::info!(%peer, "login timeout"));
            return;
        }
    };
    let admitted = match destination {
        Destination::Pool(admitted) => admitted,
        Destination::Console(access) => {
            let console = admin::serve(stream, startup, access, &ctx, admission, early);
            return Box::pin(console).await;
        }
    };
    // Nothing but the box lives across the long await, so the task stays small; the span
    // closes with the welcome.
    let welcome = welcome(stream, startup, admitted, &ctx, admission, early);
    let session = match Box::pin(welcome.instrument(span)).await {
        Some(relay) => Box::pin(Box::new(relay).run()),
        None => return,
    };
    session.await;
}

/// A client that passed authentication, with where it is routed to and whatever it sent
/// behind its last login message that the login read (normally nothing: see
/// [`login::authenticate`]).
type LoggedIn = (ClientStream, StartupParams, Destination, BytesMut);

/// Where authentication routed a client, before its user's client limit is checked.
enum Routed {
    Pool(Arc<BackendPool>),
    Console(admin::Access),
}

/// Where an authenticated client goes: a pool, or the admin console (no backend at all).
enum Destination {
    Pool(Admitted),
    Console(admin::Access),
}

/// The pool a logged-in client is routed to, and its place under its user's
/// `max_client_connections` (held for the session's life).
pub(crate) struct Admitted {
    pub pool: Arc<BackendPool>,
    pub user: UserAdmission,
}

async fn open_session(tcp: TcpStream, ctx: &Arc<SessionContext>) -> Option<LoggedIn> {
    match handshake::open(tcp, ctx).await {
        Opened::Session(stream, startup, inbox) => log_in(stream, startup, inbox, ctx).await,
        Opened::Cancel(key) => {
            ctx.cancel.cancel(key).await;
            None
        }
        Opened::Closed => None,
    }
}

async fn log_in(
    mut stream: ClientStream,
    startup: StartupParams,
    mut inbox: Inbox,
    ctx: &Arc<SessionContext>,
) -> Option<LoggedIn> {
    let span = tracing::Span::current();
    span.record("user", startup.user.as_str());
    span.record("database", startup.database.as_str());
    if startup.minor_version > 0 || !startup.protocol_options.is_empty() {
        let mut out = BytesMut::new();
        messages::negotiate_protocol_version(&mut out, startup.protocol_options.clone());
        stream.write_all(&out).await.ok()?;
    }
    let destination = match authenticate_and_route(&mut stream, &mut inbox, &startup, ctx).await {
        Ok(destination) => destination,
        Err(LoginError::Gone) => return None,
        Err(LoginError::Refused {
            sqlstate,
            message,
            metric,
        }) => {
            ctx.metrics.login(metric);
            handshake::refuse(&mut stream, ctx, Some(&startup), sqlstate, &message).await;
            return None;
        }
    };
    let destination = match destination {
        Routed::Pool(pool) => match ctx.live.load().pools.admit_client(&startup.user) {
            Ok(user) => Destination::Pool(Admitted { pool, user }),
            Err(over) => {
                ctx.metrics.client_rejected(RejectReason::MaxUserClients);
                tracing::info!(user = %startup.user, limit = over.limit, "client over its user's limit");
                let code = crate::protocol::sqlstate::TOO_MANY_CONNECTIONS;
                handshake::refuse(&mut stream, ctx, Some(&startup), code, &over.to_string()).await;
                return None;
            }
        },
        // The console is not counted against a user's limit: an operator must get in when
        // the service's own role is at its limit.
        Routed::Console(access) => Destination::Console(access),
    };
    // An empty inbox is dropped: the relay takes a read buffer only when bytes arrive.
    let early = inbox.into_pending();
    let early = if early.is_empty() {
        BytesMut::new()
    } else {
        early
    };
    Some((stream, startup, destination, early))
}

async fn authenticate_and_route(
    stream: &mut ClientStream,
    inbox: &mut Inbox,
    startup: &StartupParams,
    ctx: &SessionContext,
) -> Result<Routed, LoginError> {
    // One generation for the whole login: the user and the route come from the same config.
    let live = ctx.live.snapshot();
    login::authenticate(stream, inbox, startup, &live).await?;
    if admin::is_console_database(&startup.database) {
        return console_access(startup, &live).map(Routed::Console);
    }
    live.pools
        .route(&startup.database, &startup.user)
        .map(Routed::Pool)
        .map_err(|e| LoginError::Refused {
            sqlstate: crate::protocol::sqlstate::INVALID_AUTHORIZATION,
            message: e.to_string(),
            metric: LoginResult::Error,
        })
}

/// The console rights of an authenticated user; users in neither list are refused after
/// authentication (so the lists cannot be probed without a password), naming the keys to set.
fn console_access(startup: &StartupParams, live: &Live) -> Result<admin::Access, LoginError> {
    admin::access_for(&live.config.admin, &startup.user).ok_or_else(|| LoginError::Refused {
        sqlstate: crate::protocol::sqlstate::INVALID_AUTHORIZATION,
        message: format!(
            "user \"{}\" is not allowed to use the admin console: list it in admin.users \
             or admin.stats_users in the configuration",
            startup.user
        ),
        metric: LoginResult::AuthFailed,
    })
}

/// Sends AuthenticationOk, the parameter burst, BackendKeyData and ReadyForQuery.
/// The parameters come from the pool's first backend connection; if none was made yet, one is
/// borrowed now, so a down backend is reported at login with a precise error.
async fn welcome(
    mut stream: ClientStream,
    startup: StartupParams,
    admitted: Admitted,
    ctx: &Arc<SessionContext>,
    admission: OwnedSemaphorePermit,
    early: BytesMut,
) -> Option<Relay> {
    let Admitted { pool, user } = admitted;
    let baseline = match pool.baseline_params() {
        Some(baseline) => baseline,
        None => match pool.checkout().await {
            Ok(checkout) => {
                checkout.give_back();
                pool.baseline_params().unwrap_or_default()
            }
            Err(error) => {
                ctx.metrics.login(LoginResult::Error);
                handshake::refuse(
                    &mut stream,
                    ctx,
                    Some(&startup),
                    error.sqlstate(),
                    &error.to_string(),
                )
                .await;
                return None;
            }
        },
    };
    let mut out = BytesMut::with_capacity(WELCOME_CAPACITY);
    messages::auth_ok(&mut out);
    let params = match ClientParams::new(Arc::clone(&baseline), &startup) {
        Ok(params) => params,
        Err(error) => {
            // Like PostgreSQL: authenticated, then refused for the startup value.
            stream.write_all(&out).await.ok()?;
            ctx.metrics.login(LoginResult::Error);
            let code = crate::protocol::sqlstate::INVALID_PARAMETER_VALUE;
            handshake::refuse(&mut stream, ctx, Some(&startup), code, &error.to_string()).await;
            return None;
        }
    };
    let cancel = ctx.cancel.register_client();
    // AuthenticationOk, ~15 ParameterStatus, BackendKeyData and ReadyForQuery in one write,
    // the parameters in PostgreSQL's order (by name, ignoring case).
    for (name, value) in baseline.in_report_order() {
        let value = params.overridden(name).unwrap_or(value);
        messages::parameter_status(&mut out, name, value);
    }
    messages::backend_key_data(&mut out, cancel.key().process_id, cancel.key().secret_key);
    messages::ready_for_query(&mut out, b'I');
    stream.write_all(&out).await.ok()?;
    ctx.metrics.login(LoginResult::Ok);
    let client = cancel.key().process_id;
    let facts = StreamFacts::of(&stream);
    let entry = register(ctx, &facts, &startup, Some(Arc::clone(&pool)), client);
    tracing::Span::current().record("client", client);
    tracing::debug!("client logged in");
    Some(Relay {
        ctx: Arc::clone(ctx),
        client: stream,
        client_buf: early,
        client_scan: FrameScanner::new(),
        mode: pool.mode(),
        pool,
        held: None,
        params,
        cancel,
        entry,
        bytes_in: 0,
        bytes_out: 0,
        statements: prepared::ClientStatements::new(
            ctx.live
                .load()
                .config
                .pooling
                .max_prepared_statements_per_client,
        ),
        pins: Vec::new(),
        signals: ctx.signals.clone(),
        _admission: admission,
        _user_admission: user,
        timer: None,
    })
}

/// Completes the opening handshake only to refuse the client with 53300 (too many clients):
/// the error is sent after the startup packet, inside TLS if negotiated, as PostgreSQL does.
/// Cancel requests are still honoured: at the limit, cancelling a runaway query matters most.
pub async fn refuse_opening(tcp: TcpStream, ctx: &SessionContext, message: &str) {
    match handshake::open(tcp, ctx).await {
        Opened::Session(mut stream, startup, _) => {
            ctx.metrics.client_rejected(RejectReason::MaxClients);
            let code = crate::protocol::sqlstate::TOO_MANY_CONNECTIONS;
            handshake::refuse(&mut stream, ctx, Some(&startup), code, message).await;
        }
        Opened::Cancel(key) => ctx.cancel.cancel(key).await,
        Opened::Closed => {}
    }
}
