//! Serving a router over TLS: the accept loop shared by nodes and gateways.
//!
//! Resources are bounded at every step: at most `max_connections` connections at once (more are
//! closed on accept); a TLS handshake must finish within `handshake_timeout`; a request's
//! headers must arrive within `header_timeout` (a client sending a byte a second is cut off);
//! a whole request must be read and answered within `request_timeout` (one that reads a whole
//! store within `long_request_timeout`, its body still read within `request_timeout`); bodies
//! are read up to the endpoint's limit. On shutdown the listener closes at once, every request
//! in flight is finished (with its audit entry) and answered, and idle connections are closed,
//! within `drain_timeout`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::identity::spiffe_id_of;
use crate::node::Peer;
use crate::problem::Problem;

/// How much a server lets one client take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest request body read, in bytes.
    pub max_body: usize,
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// How long a request's headers may take to arrive.
    pub header_timeout: Duration,
    /// How long a request may take to be read and answered…
    pub request_timeout: Duration,
    /// …unless it reads a whole store ([`LONG_REQUESTS`]: the store check, about a second per
    /// 100,000 records), which may take this long.
    pub long_request_timeout: Duration,
    /// How many connections are served at once.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            long_request_timeout: Duration::from_secs(3600),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The paths of requests that read a whole store, whose time limit is
/// [`Limits::long_request_timeout`]: `POST /v1/store/check`. A gateway relays them with the
/// longer limit too, and [`NodeClient`](crate::NodeClient) waits as long for their answers.
pub const LONG_REQUESTS: &[&str] = &["/v1/store/check"];

impl Limits {
    /// How long a request for `path` may take to be read and answered.
    pub fn timeout_for(&self, path: &str) -> Duration {
        if LONG_REQUESTS.contains(&path) {
            self.long_request_timeout
        } else {
            self.request_timeout
        }
    }
}

/// `request` with its body read (at most `max_body` bytes) within `request_timeout`.
async fn read_first(request: Request<Body>, limits: &Limits) -> Result<Request<Body>, Problem> {
    let (parts, body) = request.into_parts();
    let read = crate::node::read_body(body, limits.max_body);
    match tokio::time::timeout(limits.request_timeout, read).await {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Ok(Err(problem)) => Err(problem),
        Err(_) => Err(Problem::timeout(limits.request_timeout.as_secs())),
    }
}

/// Serves `app` on `listener` over TLS until `shutdown` completes, then drains. Each request
/// carries the connection's [`Peer`] (its client certificate's SPIFFE id of `trust_domain`).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
    trust_domain: String,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let trust_domain: Arc<str> = trust_domain.into();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait, then go on accepting.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!("connection refused: the connection limit is reached");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let trust_domain = trust_domain.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let tls =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::info!(error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::info!("TLS handshake timed out");
                        return;
                    }
                };
            let peer = Peer(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| spiffe_id_of(leaf, &trust_domain).ok()),
            );
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(peer.clone());
                let app = app.clone();
                async move {
                    let request = request.map(Body::new);
                    let limit = limits.timeout_for(request.uri().path());
                    let request = if limit > limits.request_timeout {
                        // Only the work may take long: the body is read within the ordinary
                        // limit, or a client sending it a byte a second would hold the
                        // connection for the long one.
                        match read_first(request, &limits).await {
                            Ok(request) => request,
                            Err(problem) => return Ok(problem.into_response()),
                        }
                    } else {
                        request
                    };
                    let response = match tokio::time::timeout(limit, app.oneshot(request)).await {
                        Ok(Ok(response)) => response,
                        Ok(Err(never)) => match never {},
                        Err(_) => Problem::timeout(limit.as_secs()).into_response(),
                    };
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: requests still in flight after the drain timeout");
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
pub async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => std::future::pending::<()>().await,
    }
}
