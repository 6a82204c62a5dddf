//! The HTTP side of an auditor and of a log: following a log over tlog-tiles and verifying all
//! of it ([`follow`]), and asking witnesses to cosign a checkpoint ([`submit_to_witnesses`]).
//!
//! One pooled keep-alive client ([`HttpClient`]) speaks `http://` and `https://`, with rustls on
//! the ring provider (never aws-lc-rs), trusting the system's roots plus any given.
//! The tile client here shares no code with the server's tile cutting: it rebuilds the tree from
//! the entry bundles and compares every tile against it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domicile_audit::merkle::{hex, leaf_hash, Hash, MerkleTree};
use domicile_audit::{
    verify_cosignature, AuditError, AuditLog, Checkpoint, Entry, Note, NoteSignature, VerifierKey,
    WitnessPolicy,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::path::{TileKind, TilePath, TILE_WIDTH};
use crate::witness::{AddCheckpoint, TLOG_SIZE_CONTENT_TYPE};

/// The largest response body read: a full entry bundle of the longest entries.
const MAX_RESPONSE_BYTES: usize = 256 * (2 + 65_535) + 4096;

/// How long one request may take, connection and body included, unless set otherwise: a
/// witness that does not answer must not stall the log that submits to it.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to a log or a witness, or in what they served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TLS set-up failed (a CA file that does not parse, no usable roots).
    #[error("TLS set-up: {0}")]
    Tls(String),
    /// A URL does not parse.
    #[error("{url:?} is not an http:// or https:// URL")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// The request could not be made or its answer not read.
    #[error("{url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server answered with an unexpected status.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A tile, bundle or checkpoint does not verify.
    #[error("{what} does not verify: {reason}")]
    Mismatch {
        /// The resource (a tile path, `checkpoint`).
        what: String,
        /// Why.
        reason: String,
    },
    /// A signature, checkpoint, proof or entry check failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Too few witnesses cosigned.
    #[error("{got} witnesses cosigned, {want} are needed; refusals: {refusals}")]
    NotEnoughCosignatures {
        /// How many did.
        got: usize,
        /// How many must.
        want: usize,
        /// Each refusal, `; `-separated.
        refusals: String,
    },
}

/// A pooled keep-alive HTTP/1.1 client for `http://` and `https://` (rustls, ring provider).
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// A client trusting the system's roots and the PEM certificates in `extra_ca` (a
    /// development CA, say).
    pub fn new(extra_ca: &[&Path]) -> Result<HttpClient, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system root rustls cannot use is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        for path in extra_ca {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(ClientError::Tls(format!(
                    "{} holds no PEM certificate",
                    path.display()
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(https),
            timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// The same client with another limit on how long one request may take.
    pub fn with_timeout(mut self, timeout: Duration) -> HttpClient {
        self.timeout = timeout;
        self
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Option<String>, Bytes), ClientError> {
        match tokio::time::timeout(self.timeout, self.call_unbounded(method, url, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::Transport {
                url: url.into(),
                reason: format!("no complete answer within {:?}", self.timeout),
            }),
        }
    }

    async fn call_unbounded(
        &self,
        method: Method,
        url: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Option<String>, Bytes), ClientError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ClientError::BadUrl { url: url.into() });
        }
        let transport = |reason: String| ClientError::Transport {
            url: url.into(),
            reason,
        };
        let request = Request::builder()
            .method(method)
            .uri(url)
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| ClientError::BadUrl { url: url.into() })?;
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|e| transport(format!("{e:#}")))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| transport(format!("reading the body: {e}")))?
            .to_bytes();
        Ok((status, content_type, bytes))
    }

    /// GETs `url`; `Ok(None)` for a 404, an error for any status but 200 and 404.
    pub async fn get(&self, url: &str) -> Result<Option<Bytes>, ClientError> {
        let (status, _, body) = self.call(Method::GET, url, None).await?;
        match status {
            StatusCode::OK => Ok(Some(body)),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(status_error(url, s, &body)),
        }
    }
}

fn status_error(url: &str, status: StatusCode, body: &[u8]) -> ClientError {
    ClientError::Status {
        url: url.into(),
        status: status.as_u16(),
        body: String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim_end()
            .to_owned(),
    }
}

fn join(prefix: &str, path: &str) -> String {
    format!("{}/{path}", prefix.trim_end_matches('/'))
}

/// What [`follow`] established about a log served over tlog-tiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowReport {
    /// The checkpoint it verified, with its cosignatures.
    pub checkpoint: Note,
    /// Its tree size: every entry below it was fetched, decoded and checked.
    pub entries: u64,
    /// Its root, recomputed from the entries.
    pub root: Hash,
    /// Hash tiles fetched and checked.
    pub tiles: u64,
    /// Entry bundles fetched and checked.
    pub bundles: u64,
    /// Trusted witnesses whose cosignature verified (0 without a policy).
    pub witnesses: usize,
}

/// Follows the log at `prefix` over C2SP tlog-tiles and verifies all of it with public keys
/// only: the checkpoint's signature by `log_key` and origin, a quorum of cosignatures under
/// `witnesses`, every entry bundle (each entry decodes and carries its own position), every hash
/// tile at every level against the tree rebuilt from the entries, that tree's root against the
/// checkpoint, and its consistency with every checkpoint in `held`.
pub async fn follow(
    client: &HttpClient,
    prefix: &str,
    log_key: &VerifierKey,
    witnesses: Option<&WitnessPolicy>,
    held: &[Note],
) -> Result<FollowReport, ClientError> {
    let url = join(prefix, "checkpoint");
    let text = client
        .get(&url)
        .await?
        .ok_or_else(|| ClientError::Mismatch {
            what: url.clone(),
            reason: "the log serves no checkpoint (404)".into(),
        })?;
    let note = Note::parse(&text)?;
    note.verify(log_key)?;
    let cp = Checkpoint::parse(&note.text)?;
    if cp.origin != log_key.name() {
        return Err(ClientError::Mismatch {
            what: url,
            reason: format!(
                "its origin {:?} is not the key's name {:?}",
                cp.origin,
                log_key.name()
            ),
        });
    }
    let witnessed = match witnesses {
        Some(p) => p.check(&note)?,
        None => 0,
    };
    let mismatch = |tile: &TilePath, reason: String| ClientError::Mismatch {
        what: tile.to_string(),
        reason,
    };
    let fetch = |tile: TilePath| {
        let url = join(prefix, &tile.to_string());
        async move {
            client
                .get(&url)
                .await?
                .ok_or_else(|| ClientError::Mismatch {
                    what: tile.to_string(),
                    reason: "the checkpoint covers it but the log answers 404".into(),
                })
        }
    };

    // The entries, bundle by bundle, into a tree of our own.
    let mut tree = MerkleTree::new();
    let mut bundles = 0;
    let mut tiles = 0;
    let mut start = 0u64;
    while start < cp.size {
        let width = (cp.size - start).min(TILE_WIDTH) as u16;
        let index = start / TILE_WIDTH;
        let bundle = TilePath {
            kind: TileKind::Entries,
            index,
            width,
        };
        let bytes = fetch(bundle).await?;
        bundles += 1;
        let mut rest = &bytes[..];
        for i in 0..u64::from(width) {
            let seq = start + i;
            if rest.len() < 2 {
                return Err(mismatch(&bundle, format!("it ends before entry {seq}")));
            }
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let Some(entry) = rest.get(2..2 + len) else {
                return Err(mismatch(&bundle, format!("entry {seq} is cut short")));
            };
            let decoded = Entry::from_canonical(entry)
                .map_err(|e| mismatch(&bundle, format!("entry {seq} does not decode: {e}")))?;
            if decoded.seq != seq {
                return Err(mismatch(
                    &bundle,
                    format!("entry {seq} carries sequence number {}", decoded.seq),
                ));
            }
            tree.push(leaf_hash(entry));
            rest = &rest[2 + len..];
        }
        if !rest.is_empty() {
            return Err(mismatch(
                &bundle,
                format!("{} bytes follow its {width} entries", rest.len()),
            ));
        }
        start += u64::from(width);
    }
    let root = tree.root_at(cp.size).map_err(AuditError::from)?;
    if root != cp.root {
        return Err(ClientError::Mismatch {
            what: "the tree of the entry bundles".into(),
            reason: format!(
                "its root is {}, the checkpoint signs {}",
                hex(&root),
                hex(&cp.root)
            ),
        });
    }

    // Every hash tile, at every level, against the tree the entries make.
    for level in 0u8..=63 {
        let height = 8 * u32::from(level);
        let count = cp.size.checked_shr(height).unwrap_or(0);
        if count == 0 {
            break;
        }
        let want = &tree.levels()[height as usize];
        let mut first = 0u64;
        while first < count {
            let width = (count - first).min(TILE_WIDTH) as u16;
            let tile = TilePath {
                kind: TileKind::Hashes(level),
                index: first / TILE_WIDTH,
                width,
            };
            let bytes = fetch(tile).await?;
            tiles += 1;
            if bytes.len() != 32 * usize::from(width) {
                return Err(mismatch(
                    &tile,
                    format!("it is {} bytes, not {}", bytes.len(), 32 * width),
                ));
            }
            for (i, h) in bytes.chunks_exact(32).enumerate() {
                let at = first as usize + i;
                if h != want[at] {
                    return Err(mismatch(
                        &tile,
                        format!("hash {i} is not the root of its subtree of the entries"),
                    ));
                }
            }
            first += u64::from(width);
        }
    }

    for h in held {
        h.verify(log_key)?;
        let old = Checkpoint::parse(&h.text)?;
        if old.origin != cp.origin {
            return Err(ClientError::Mismatch {
                what: "a held checkpoint".into(),
                reason: format!("its origin is {:?}, not {:?}", old.origin, cp.origin),
            });
        }
        if old.size > cp.size {
            return Err(AuditError::RolledBack {
                entries: cp.size,
                signed: old.size,
            }
            .into());
        }
        let at = tree.root_at(old.size).map_err(AuditError::from)?;
        if at != old.root {
            return Err(AuditError::NotConsistentWithHeld {
                size: old.size,
                reason: format!(
                    "the log's root at that size is {}, the held checkpoint signs {}",
                    hex(&at),
                    hex(&old.root)
                ),
            }
            .into());
        }
    }

    Ok(FollowReport {
        checkpoint: note,
        entries: cp.size,
        root,
        tiles,
        bundles,
        witnesses: witnessed,
    })
}

/// A witness a log submits its checkpoints to: its submission prefix and cosignature key, and
/// the size it is believed to hold (learnt from its 409 answers, starting at 0).
#[derive(Debug)]
pub struct WitnessEndpoint {
    /// The submission prefix (`https://witness.example/w1`).
    pub url: String,
    /// Its cosignature verifier key.
    pub key: VerifierKey,
    known_size: Mutex<u64>,
}

impl WitnessEndpoint {
    /// A witness at `url` with key `key`.
    pub fn new(url: impl Into<String>, key: VerifierKey) -> Self {
        WitnessEndpoint {
            url: url.into(),
            key,
            known_size: Mutex::new(0),
        }
    }
}

/// What [`submit_to_witnesses`] obtained.
#[derive(Debug, Clone)]
pub struct Cosigned {
    /// The checkpoint with every valid cosignature obtained added.
    pub note: Note,
    /// The witnesses that cosigned.
    pub cosigned_by: Vec<String>,
    /// Each witness that did not, and why.
    pub refusals: Vec<(String, String)>,
}

/// Submits `checkpoint` (signed by the log) to each witness with C2SP tlog-witness
/// `add-checkpoint`, and returns it with every cosignature that verifies under its witness's
/// key. `prove(old, new)` gives the consistency proof between two sizes of the log
/// ([`AuditLog::prove_consistency`]). A witness that answers 409 is asked again once from the
/// size it holds. Fails only when fewer than `quorum` witnesses cosigned; the refusals are
/// reported either way.
pub async fn submit_to_witnesses(
    client: &HttpClient,
    witnesses: &[WitnessEndpoint],
    checkpoint: &Note,
    prove: impl Fn(u64, u64) -> Result<Vec<Hash>, AuditError>,
    quorum: usize,
) -> Result<Cosigned, ClientError> {
    let cp = Checkpoint::parse(&checkpoint.text)?;
    let mut out = Cosigned {
        note: checkpoint.clone(),
        cosigned_by: Vec::new(),
        refusals: Vec::new(),
    };
    for w in witnesses {
        match cosign_once(client, w, checkpoint, &cp, &prove).await {
            Ok(sig) => {
                if !out.note.signatures.contains(&sig) {
                    out.note.signatures.push(sig);
                }
                out.cosigned_by.push(w.key.name().to_owned());
            }
            Err(e) => {
                tracing::warn!(witness = %w.url, error = %e, "a witness did not cosign");
                out.refusals.push((w.url.clone(), e.to_string()));
            }
        }
    }
    if out.cosigned_by.len() < quorum {
        return Err(ClientError::NotEnoughCosignatures {
            got: out.cosigned_by.len(),
            want: quorum,
            refusals: out
                .refusals
                .iter()
                .map(|(u, e)| format!("{u}: {e}"))
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok(out)
}

async fn cosign_once(
    client: &HttpClient,
    w: &WitnessEndpoint,
    note: &Note,
    cp: &Checkpoint,
    prove: &impl Fn(u64, u64) -> Result<Vec<Hash>, AuditError>,
) -> Result<NoteSignature, ClientError> {
    let url = join(&w.url, "add-checkpoint");
    let mut old = (*w.known_size.lock().unwrap_or_else(|p| p.into_inner())).min(cp.size);
    for attempt in 0..2 {
        let proof = if old == 0 || old == cp.size {
            Vec::new()
        } else {
            prove(old, cp.size)?
        };
        let body = AddCheckpoint {
            old,
            proof,
            checkpoint: note.clone(),
        }
        .to_body();
        let (status, content_type, bytes) = client.call(Method::POST, &url, Some(body)).await?;
        match status {
            StatusCode::OK => {
                let sig = cosignature_in(&bytes, note, &w.key).map_err(|reason| {
                    ClientError::Mismatch {
                        what: url.clone(),
                        reason,
                    }
                })?;
                *w.known_size.lock().unwrap_or_else(|p| p.into_inner()) = cp.size;
                return Ok(sig);
            }
            StatusCode::CONFLICT
                if attempt == 0 && content_type.as_deref() == Some(TLOG_SIZE_CONTENT_TYPE) =>
            {
                let held = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|t| t.strip_suffix('\n'))
                    .and_then(|t| t.parse::<u64>().ok())
                    .ok_or_else(|| status_error(&url, status, &bytes))?;
                if held > cp.size {
                    return Err(ClientError::Mismatch {
                        what: url.clone(),
                        reason: format!(
                            "the witness holds size {held}, beyond this checkpoint's {}",
                            cp.size
                        ),
                    });
                }
                *w.known_size.lock().unwrap_or_else(|p| p.into_inner()) = held;
                old = held;
            }
            s => return Err(status_error(&url, s, &bytes)),
        }
    }
    Err(ClientError::Mismatch {
        what: url,
        reason: "the witness answered 409 twice".into(),
    })
}

/// The cosignature by `key` among the signature lines of a 200 answer, verified on `note`.
fn cosignature_in(body: &[u8], note: &Note, key: &VerifierKey) -> Result<NoteSignature, String> {
    let lines = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_owned())?;
    // Concatenated to the checkpoint, the lines make a note (as the spec suggests parsing them).
    let mut text = note.text.clone();
    text.push('\n');
    text.push_str(lines);
    let cosigned = Note::parse(text.as_bytes()).map_err(|e| e.to_string())?;
    verify_cosignature(&cosigned, key).map_err(|e| e.to_string())?;
    cosigned
        .signatures
        .into_iter()
        .find(|s| s.name == key.name() && s.id == key.id())
        .ok_or_else(|| "no cosignature by the witness's key".to_owned())
}

/// Signs a checkpoint over `log` now, submits it to `witnesses`, and stores the cosigned note in
/// the log, from where the log's `/checkpoint` publishes it. What a node calls after each new
/// checkpoint.
pub async fn witness_log(
    client: &HttpClient,
    witnesses: &[WitnessEndpoint],
    log: &AuditLog,
    quorum: usize,
) -> Result<Cosigned, ClientError> {
    let note = log.checkpoint()?.ok_or_else(|| ClientError::Mismatch {
        what: "the log".into(),
        reason: "it has signed no checkpoint".into(),
    })?;
    let cosigned = submit_to_witnesses(
        client,
        witnesses,
        &note,
        |a, b| log.prove_consistency(a, b),
        quorum,
    )
    .await?;
    if !cosigned.cosigned_by.is_empty() {
        log.add_cosigned(&cosigned.note)?;
    }
    Ok(cosigned)
}
