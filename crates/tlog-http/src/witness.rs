//! A C2SP tlog-witness: `POST /add-checkpoint`, cosigning each log's checkpoints with
//! tlog-cosignature/v1 Ed25519 cosignatures once they prove consistent with the last one it
//! cosigned.
//!
//! The checks and the cosignature are [`domicile_audit::Witness`]'s; this module adds what the
//! protocol adds around them: the request format, the status codes, several logs per witness,
//! and state persisted atomically before answering. For each log the witness keeps the
//! checkpoint it last cosigned in `<state dir>/<hex SHA-256 of the origin>`: the note with the
//! log's signature and its own cosignature, written with [`domicile_durable::write_private`]
//! while the log's lock is held, so checking the old size and recording the new one is one step.
//! (A bare checkpoint body, as `domicile audit witness` keeps, is read too.) The same note is
//! served to monitors at `GET /<hex SHA-256 of the origin>/checkpoint`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use domicile_audit::merkle::{empty_root, hex, Hash};
use domicile_audit::{AuditError, Checkpoint, KeyKind, Note, SigningKey, VerifierKey, Witness};

/// The `Content-Type` of a 409 answer, whose body is the witness's size for the log.
pub const TLOG_SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The most consistency proof lines a request may carry (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;

/// The largest request body accepted: a 1 MiB note and 63 proof lines.
pub const MAX_REQUEST_BYTES: usize = (1 << 20) + 4096;

/// Why a witness could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessSetupError {
    /// A key or a stored state does not parse or verify.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A state file could not be read.
    #[error(transparent)]
    File(#[from] domicile_durable::FileError),
    /// Two trusted log keys name the same origin.
    #[error("two log keys are given for the origin {origin:?}; give one per log")]
    DuplicateOrigin {
        /// The origin.
        origin: String,
    },
    /// A stored state is not a checkpoint of the log it is filed under.
    #[error("the state {path} is not a checkpoint of {origin:?}")]
    BadState {
        /// The state file.
        path: PathBuf,
        /// The log it is filed under.
        origin: String,
    },
}

/// A refusal of `add-checkpoint`: its HTTP status and why. A 409 also carries the witness's
/// size for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct Refusal {
    /// The HTTP status the protocol prescribes.
    pub status: u16,
    /// What was wrong.
    pub reason: String,
    /// For a 409, the size of the latest checkpoint this witness cosigned for the log.
    pub size: Option<u64>,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
        size: None,
    }
}

/// One log this witness follows.
#[derive(Debug)]
struct Followed {
    key: VerifierKey,
    state: PathBuf,
    /// Held from checking the old size until the new state is durable.
    witness: Mutex<Witness>,
    /// Set when a state could not be persisted: the cosigner's memory is then ahead of its
    /// disk, and the log is refused until the witness restarts from the disk.
    broken: Mutex<Option<String>>,
}

/// A C2SP tlog-witness for a set of logs: what [`witness_routes`] serves.
#[derive(Debug)]
pub struct WitnessService {
    name: String,
    verifier: VerifierKey,
    logs: HashMap<String, Followed>,
}

/// The state file of the log `origin` in `dir`.
pub fn state_path(dir: &Path, origin: &str) -> PathBuf {
    let digest = ring::digest::digest(&ring::digest::SHA256, origin.as_bytes());
    dir.join(hex(digest.as_ref()))
}

impl WitnessService {
    /// A witness cosigning with `key` (a cosignature key) for the logs whose checkpoint keys are
    /// `logs` (each key's name is its log's origin), remembering in `state_dir`.
    pub fn open(
        key: &SigningKey,
        logs: Vec<VerifierKey>,
        state_dir: &Path,
    ) -> Result<WitnessService, WitnessSetupError> {
        if key.kind() != KeyKind::Cosignature {
            return Err(AuditError::BadKey {
                key: key.name().to_owned(),
                reason: "a witness signs with a cosignature (type 0x04) key",
            }
            .into());
        }
        let mut followed = HashMap::new();
        for log in logs {
            let origin = log.name().to_owned();
            if followed.contains_key(&origin) {
                return Err(WitnessSetupError::DuplicateOrigin { origin });
            }
            let state = state_path(state_dir, &origin);
            let last = match domicile_durable::read_optional_string(&state)? {
                None => None,
                Some(text) => {
                    let body = if text.contains("\n\n") {
                        Note::parse(text.as_bytes())?.text
                    } else {
                        text
                    };
                    let cp = Checkpoint::parse(&body)?;
                    if cp.origin != origin {
                        return Err(WitnessSetupError::BadState {
                            path: state,
                            origin,
                        });
                    }
                    Some((cp.size, cp.root))
                }
            };
            // One Witness per log, all signing with the same key.
            let own = SigningKey::parse(&key.to_private_text())?;
            let witness = Witness::new(own, log.clone(), last)?;
            followed.insert(
                origin,
                Followed {
                    key: log,
                    state,
                    witness: Mutex::new(witness),
                    broken: Mutex::new(None),
                },
            );
        }
        Ok(WitnessService {
            name: key.name().to_owned(),
            verifier: key.verifier(),
            logs: followed,
        })
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The witness's cosignature verifier key.
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// The size of the latest checkpoint cosigned for `origin` (0 if none), or `None` for a log
    /// this witness does not follow.
    pub fn size_of(&self, origin: &str) -> Option<u64> {
        let log = self.logs.get(origin)?;
        let w = log.witness.lock().unwrap_or_else(|p| p.into_inner());
        Some(w.last().map_or(0, |(s, _)| s))
    }

    /// Handles one `add-checkpoint` request body at `time` (seconds since the epoch, not 0):
    /// returns the cosignature lines, or the refusal the protocol prescribes. The new state is
    /// durable before this returns.
    pub fn add_checkpoint(&self, body: &[u8], time: u64) -> Result<String, Refusal> {
        let request = AddCheckpoint::parse(body).map_err(|r| refuse(400, r))?;
        let cp =
            Checkpoint::parse(&request.checkpoint.text).map_err(|e| refuse(400, e.to_string()))?;
        let Some(log) = self.logs.get(&cp.origin) else {
            return Err(refuse(
                404,
                format!("this witness follows no log named {:?}", cp.origin),
            ));
        };
        request
            .checkpoint
            .verify(&log.key)
            .map_err(|e| refuse(403, e.to_string()))?;
        if request.old > cp.size {
            return Err(refuse(
                400,
                format!(
                    "the old size {} is larger than the checkpoint's {}",
                    request.old, cp.size
                ),
            ));
        }
        if time == 0 {
            return Err(refuse(500, "the witness's clock reads 0"));
        }
        let witness = log.witness.lock().unwrap_or_else(|p| p.into_inner());
        // The cause (a path, an OS error) was logged when it happened; callers learn only that
        // the witness is out of service for this log.
        if log
            .broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Err(refuse(
                503,
                "this witness could not record its state for the log and is out of service for it until restarted",
            ));
        }
        let stored = witness.last().map_or(0, |(s, _)| s);
        if request.old != stored {
            return Err(Refusal {
                status: 409,
                reason: format!(
                    "this witness last cosigned size {stored}, not {}",
                    request.old
                ),
                size: Some(stored),
            });
        }
        if request.old == 0 && !request.proof.is_empty() {
            return Err(refuse(422, "a proof from size 0 must be empty"));
        }
        if cp.size == 0 && cp.root != empty_root() {
            return Err(refuse(
                422,
                "a checkpoint of size 0 must have the root of the empty tree",
            ));
        }
        let sig = witness
            .cosign(&request.checkpoint, &request.proof, time)
            .map_err(|e| match e {
                AuditError::BadSignature { .. } | AuditError::MissingSignature { .. } => {
                    refuse(403, e.to_string())
                }
                other => refuse(422, other.to_string()),
            })?;
        // What monitors are served: the log's verified signatures and this cosignature.
        let mut kept = Note {
            text: request.checkpoint.text.clone(),
            signatures: request
                .checkpoint
                .signatures
                .iter()
                .filter(|s| s.name == log.key.name() && s.id == log.key.id())
                .cloned()
                .collect(),
        };
        kept.signatures.push(sig.clone());
        // Durable before answering, and before the lock is released: a witness that forgot
        // what it cosigned could be led to cosign a fork.
        if let Err(e) = domicile_durable::write_private(&log.state, kept.to_text().as_bytes()) {
            tracing::error!(error = %e, origin = %cp.origin, "the witness state could not be persisted");
            *log.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            return Err(refuse(500, "the witness could not persist its state"));
        }
        tracing::info!(origin = %cp.origin, size = cp.size, "cosigned");
        Ok(format!("{}\n", sig.to_line()))
    }
}

/// Monitoring: what a witness serves to monitors.
impl WitnessService {
    /// The note served at `GET /<origin hash>/checkpoint`: the latest checkpoint cosigned for
    /// the log whose origin hashes to `origin_hash` (lowercase hex SHA-256), with the log's
    /// signature and this witness's cosignature; `None` for a log it does not follow or never
    /// cosigned.
    pub fn latest_cosigned(&self, origin_hash: &str) -> Result<Option<String>, WitnessSetupError> {
        let Some(log) = self
            .logs
            .values()
            .find(|l| l.state.file_name().is_some_and(|n| n == origin_hash))
        else {
            return Ok(None);
        };
        let _held = log.witness.lock().unwrap_or_else(|p| p.into_inner());
        match domicile_durable::read_optional_string(&log.state)? {
            // A bare body (kept by `domicile audit witness`) carries no cosignature to serve.
            Some(text) if text.contains("\n\n") => Ok(Some(text)),
            _ => Ok(None),
        }
    }
}

/// A parsed `add-checkpoint` request body: `old <size>`, up to 63 base64 proof lines, a blank
/// line, and the signed checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the client believes the witness holds.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint.
    pub checkpoint: Note,
}

impl AddCheckpoint {
    /// The request body.
    pub fn to_body(&self) -> String {
        let mut out = format!("old {}\n", self.old);
        for h in &self.proof {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint.to_text());
        out
    }

    /// Parses a request body; the error says what is malformed.
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, String> {
        let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
        let (head, note) = text
            .split_once("\n\n")
            .ok_or_else(|| "no blank line before the checkpoint".to_owned())?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .filter(|n| {
                !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_digit())
                    && (n.len() == 1 || !n.starts_with('0'))
            })
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| "the first line is not \"old <size>\" in decimal".to_owned())?;
        let mut proof = Vec::new();
        for line in lines {
            let h = B64
                .decode(line)
                .ok()
                .and_then(|h| Hash::try_from(h.as_slice()).ok())
                .ok_or_else(|| "a proof line is not 32 bytes of base64".to_owned())?;
            proof.push(h);
            if proof.len() > MAX_PROOF_LINES {
                return Err(format!("more than {MAX_PROOF_LINES} proof lines"));
            }
        }
        let checkpoint = Note::parse(note.as_bytes()).map_err(|e| e.to_string())?;
        Ok(AddCheckpoint {
            old,
            proof,
            checkpoint,
        })
    }
}

/// The witness's routes: `POST /add-checkpoint`, and `GET /<origin hash>/checkpoint` for
/// monitors (the submission and monitoring prefixes are the same).
pub fn witness_routes(service: Arc<WitnessService>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(latest_checkpoint))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(service)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn add_checkpoint(State(service): State<Arc<WitnessService>>, body: Bytes) -> Response {
    // Persisting the state is a synchronous fsync: off the async workers.
    let answer = tokio::task::spawn_blocking(move || service.add_checkpoint(&body, now())).await;
    match answer {
        Ok(Ok(lines)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            lines,
        )
            .into_response(),
        Ok(Err(Refusal {
            status: 409,
            size: Some(size),
            ..
        })) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, TLOG_SIZE_CONTENT_TYPE)],
            format!("{size}\n"),
        )
            .into_response(),
        Ok(Err(r)) => (
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", r.reason),
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the witness failed\n").into_response(),
    }
}

async fn latest_checkpoint(
    State(service): State<Arc<WitnessService>>,
    UrlPath(origin_hash): UrlPath<String>,
) -> Response {
    let found = tokio::task::spawn_blocking(move || service.latest_cosigned(&origin_hash)).await;
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match found {
        Ok(Ok(Some(note))) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            note,
        )
            .into_response(),
        Ok(Ok(None)) => (
            StatusCode::NOT_FOUND,
            plain,
            "this witness has cosigned no checkpoint of that log\n",
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the witness state could not be read");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                plain,
                "the witness state could not be read\n",
            )
                .into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the witness failed\n").into_response(),
    }
}
