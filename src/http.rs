//! Side HTTP port (default :9930): `/metrics` for Prometheus, `/healthz` for liveness and
//! `/readyz` for readiness (load balancers / Kubernetes stop routing to a proxy that cannot
//! reach any backend). Deliberately tiny: hyper HTTP/1 only, fixed routes, bounded
//! connections and header read time, so a misbehaving scraper cannot hurt the proxy.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::metrics::Metrics;

/// How long a client may take to send a complete request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent HTTP connections; further ones wait in the kernel backlog.
const MAX_CONNECTIONS: usize = 64;
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop cannot spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Answers "should traffic be sent to this proxy?"; called on every `/readyz` request, so
/// it must be cheap and non-blocking (e.g. read an atomic kept by the backend health check).
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// Serves the side port on `listener` until `shutdown` becomes `true` (or its sender is
/// dropped). Each connection runs in its own task; open keep-alive connections are closed
/// gracefully on shutdown. Never panics; errors are logged.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    shutdown: watch::Receiver<bool>,
) {
    let routes = Routes { metrics, readiness };
    run(listener, routes, shutdown, HEADER_READ_TIMEOUT).await;
}

/// The accept loop behind [`serve`], with the header timeout as a parameter for tests.
async fn run(
    listener: TcpListener,
    routes: Routes,
    mut shutdown: watch::Receiver<bool>,
    header_timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &slots) => accepted,
            () = stopped(&mut shutdown) => break,
        };
        match accepted {
            Ok((stream, peer, permit)) => {
                let conn = connection(
                    stream,
                    peer,
                    routes.clone(),
                    shutdown.clone(),
                    header_timeout,
                );
                tokio::spawn(async move {
                    conn.await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "http: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    tracing::debug!("http: side port stopped accepting");
}

/// Resolves once shutdown is requested or can no longer be signalled (sender dropped).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The returned guard is dropped here, so callers' futures stay `Send`.
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// Waits for a free connection slot, then for a connection.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> std::io::Result<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let permit = Arc::clone(slots)
        .acquire_owned()
        .await
        .map_err(std::io::Error::other)?;
    let (stream, peer) = listener.accept().await?;
    Ok((stream, peer, permit))
}

/// Drives one HTTP/1 connection; on shutdown finishes the request in flight, then closes.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    routes: Routes,
    mut shutdown: watch::Receiver<bool>,
    header_timeout: Duration,
) {
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let response = routes.respond(&req);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "http: connection ended with an error");
    }
}

/// Route table state: what the handlers need, cloned into each connection.
#[derive(Clone)]
struct Routes {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

impl Routes {
    /// Maps a request to its response; HEAD is treated as GET (hyper omits the body).
    fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
        if !known {
            return text(StatusCode::NOT_FOUND, "not found");
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        match path {
            "/metrics" => self.metrics(),
            "/healthz" => text(StatusCode::OK, "ok"),
            _ if (self.readiness)() => text(StatusCode::OK, "ready"),
            _ => text(StatusCode::SERVICE_UNAVAILABLE, "no backend reachable"),
        }
    }

    fn metrics(&self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::from(self.metrics.encode())));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(prometheus::TEXT_FORMAT),
        );
        resp
    }
}

/// A plain-text response with `status`.
fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::task::JoinHandle;
    use tokio::time::timeout;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    struct Server {
        addr: SocketAddr,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
        ready: Arc<AtomicBool>,
    }

    async fn start(header_timeout: Duration) -> std::io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let ready = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&ready);
        let readiness: Readiness = Arc::new(move || flag.load(Ordering::SeqCst));
        let routes = Routes {
            metrics: Metrics::new(),
            readiness,
        };
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run(listener, routes, rx, header_timeout));
        Ok(Server {
            addr,
            stop,
            task,
            ready,
        })
    }

    /// Sends `method path` with `Connection: close`; returns (status, head, body).
    async fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        let raw = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let text = timeout(LIMIT, exchange(addr, raw.as_bytes())).await;
        let text = text.ok().and_then(Result::ok).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head.to_owned(), body.to_owned())
    }

    /// Writes `request` and reads until the server closes the connection.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn routes_answer_with_the_documented_status_and_body() -> std::io::Result<()> {
        let s = start(HEADER_READ_TIMEOUT).await?;
        let (status, head, body) = get(s.addr, "GET", "/metrics").await;
        assert_eq!(status, 200);
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        assert!(
            body.contains("pgferry_client_connections_total 0"),
            "{body}"
        );
        assert_eq!(get(s.addr, "GET", "/healthz").await.2, "ok");
        assert_eq!(get(s.addr, "GET", "/readyz").await.0, 200);
        assert_eq!(get(s.addr, "GET", "/readyz").await.2, "ready");
        assert_eq!(get(s.addr, "GET", "/nope").await.0, 404);
        let (status, head, _) = get(s.addr, "POST", "/metrics").await;
        assert_eq!(status, 405);
        assert!(
            head.to_ascii_lowercase().contains("allow: get, head"),
            "{head}"
        );
        assert_eq!(get(s.addr, "HEAD", "/healthz").await.0, 200);
        Ok(())
    }

    #[tokio::test]
    async fn readyz_follows_the_readiness_callback() -> std::io::Result<()> {
        let s = start(HEADER_READ_TIMEOUT).await?;
        s.ready.store(false, Ordering::SeqCst);
        let (status, _, body) = get(s.addr, "GET", "/readyz").await;
        assert_eq!((status, body.as_str()), (503, "no backend reachable"));
        assert_eq!(get(s.addr, "GET", "/healthz").await.0, 200);
        s.ready.store(true, Ordering::SeqCst);
        assert_eq!(get(s.addr, "GET", "/readyz").await.0, 200);
        Ok(())
    }

    #[tokio::test]
    async fn shutdown_stops_the_accept_loop_and_idle_connections() -> std::io::Result<()> {
        let s = start(HEADER_READ_TIMEOUT).await?;
        assert_eq!(get(s.addr, "GET", "/healthz").await.0, 200);
        let mut idle = TcpStream::connect(s.addr).await?;
        let raw = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
        idle.write_all(raw).await?;
        let mut buf = [0u8; 512];
        let n = timeout(LIMIT, idle.read(&mut buf)).await??;
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        s.stop.send_replace(true);
        assert!(
            timeout(LIMIT, s.task).await.is_ok(),
            "accept loop did not stop"
        );
        assert!(
            TcpStream::connect(s.addr).await.is_err(),
            "listener still open"
        );
        let mut rest = Vec::new();
        let closed = timeout(LIMIT, idle.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "keep-alive connection not closed on shutdown"
        );
        Ok(())
    }

    #[tokio::test]
    async fn slow_request_heads_are_cut_off() -> std::io::Result<()> {
        let s = start(Duration::from_millis(100)).await?;
        let mut stream = TcpStream::connect(s.addr).await?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHo").await?;
        let mut rest = Vec::new();
        let closed = timeout(LIMIT, stream.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "connection with an unfinished head stayed open"
        );
        assert!(!rest.starts_with(b"HTTP/1.1 200"));
        Ok(())
    }
}
