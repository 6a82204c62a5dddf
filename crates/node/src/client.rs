//! An HTTPS client for nodes: mutual TLS with an SVID, HTTP/1.1 keep-alive connections reused
//! from a small pool. The gateway forwards through it; tests, the `cluster` example and the
//! benchmark call nodes with it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// Why a request to a node got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection failed: the node is down or unreachable.
    #[error("could not connect to {addr}: {source}")]
    Connect {
        /// The node's address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (the node's certificate, or ours, was refused).
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        /// The node's address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP exchange with {addr} failed: {source}")]
    Http {
        /// The node's address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: hyper::Error,
    },
    /// The request could not be built (an invalid header value).
    #[error("invalid request: {0}")]
    Request(String),
    /// The answer's body is larger than the client accepts
    /// ([`NodeClient::with_max_response`]); it was not read further.
    #[error("{addr} answered with a body over {limit} bytes, more than this client accepts")]
    ResponseTooLarge {
        /// The node's address.
        addr: SocketAddr,
        /// The most bytes the client reads.
        limit: usize,
    },
    /// No answer within the client's timeout.
    #[error("{addr} did not answer within {secs} s")]
    Timeout {
        /// The node's address.
        addr: SocketAddr,
        /// The timeout.
        secs: u64,
    },
}

/// A node's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A client of one node.
pub struct NodeClient {
    addr: SocketAddr,
    connector: TlsConnector,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    timeout: Duration,
    /// For [`LONG_REQUESTS`](crate::LONG_REQUESTS).
    long_timeout: Duration,
    max_response: usize,
    server_name: ServerName<'static>,
}

/// The largest answer body a [`NodeClient`] reads unless told otherwise: a node's answers are a
/// record or a page of them, far below it. A node that sends more (a broken or hostile one) gets
/// an error, not the caller's memory: a gateway serves every region, and one region's node must
/// not be able to exhaust it for the others.
pub const DEFAULT_MAX_RESPONSE: usize = 64 << 20;

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Calling a node.
impl NodeClient {
    /// A client of the node at `addr`, with `config` (from
    /// [`Identity::client_config`](crate::Identity::client_config)).
    pub fn new(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Self {
        NodeClient {
            addr,
            connector: TlsConnector::from(config),
            idle: Mutex::new(Vec::new()),
            timeout: Duration::from_secs(60),
            // A node's own limit for them (an hour, `Limits::long_request_timeout`) and a
            // minute more.
            long_timeout: Duration::from_secs(3660),
            max_response: DEFAULT_MAX_RESPONSE,
            // The server is verified by its SPIFFE id (SpiffeServerVerifier), not by this name.
            server_name: ServerName::try_from("domicile-node").expect("a valid DNS name"),
        }
    }

    /// The same client, sending `name` as the TLS server name (for configurations that
    /// verify host names rather than SPIFFE ids).
    pub fn with_server_name(mut self, name: ServerName<'static>) -> Self {
        self.server_name = name;
        self
    }

    /// The same client, reading answer bodies of at most `bytes` (a larger one is
    /// [`ClientError::ResponseTooLarge`]); [`DEFAULT_MAX_RESPONSE`] unless set.
    pub fn with_max_response(mut self, bytes: usize) -> Self {
        self.max_response = bytes;
        self
    }

    /// The same client, giving up on an answer after `timeout` (60 s unless set)…
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// …or, for a request that reads a whole store ([`LONG_REQUESTS`](crate::LONG_REQUESTS)),
    /// after `timeout` (61 minutes unless set).
    pub fn with_long_timeout(mut self, timeout: Duration) -> Self {
        self.long_timeout = timeout;
        self
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let addr = self.addr;
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|source| ClientError::Handshake { addr, source })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|source| ClientError::Http { addr, source })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Vec<u8>,
    ) -> Result<Answer, ClientError> {
        let addr = self.addr;
        let exchange = async {
            let pooled = self
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .filter(|s| !s.is_closed());
            let mut sender = match pooled {
                Some(sender) => sender,
                None => self.connect().await?,
            };
            sender
                .ready()
                .await
                .map_err(|source| ClientError::Http { addr, source })?;
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header("host", "domicile-node")
                .header("content-type", "application/json");
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let request = request
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| ClientError::Request(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|source| ClientError::Http { addr, source })?;
            let (parts, body) = response.into_parts();
            let limit = self.max_response;
            let body = match http_body_util::Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    // The connection is left with an unread body: it is dropped, not pooled.
                    return Err(match e.downcast::<hyper::Error>() {
                        Ok(source) => ClientError::Http {
                            addr,
                            source: *source,
                        },
                        Err(_) => ClientError::ResponseTooLarge { addr, limit },
                    });
                }
            };
            if !sender.is_closed() {
                self.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(sender);
            }
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        let limit = if crate::LONG_REQUESTS.contains(&path) {
            self.long_timeout
        } else {
            self.timeout
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                addr,
                secs: limit.as_secs(),
            })?
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Result<Answer, ClientError> {
        let bytes = serde_json::to_vec(body).expect("a JSON value serialises");
        self.send(Method::POST, path, &[], bytes).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.send(Method::GET, path, &[], Vec::new()).await
    }
}
