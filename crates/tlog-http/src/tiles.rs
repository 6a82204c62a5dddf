//! Serving a log as C2SP tlog-tiles: `/checkpoint`, `/tile/<L>/<N>[.p/<W>]` and
//! `/tile/entries/<N>[.p/<W>]`, public and read-only.
//!
//! The tiles are cut from the tree a [`LogReader`] builds by hashing the entries under the
//! latest signed checkpoint, and never from anything else, so every tile served is consistent
//! with the checkpoint served. A partial tile is served for every width the latest checkpoint
//! covers, which includes every size a checkpoint was ever signed for; a tile or bundle beyond it
//! is 404. Tiles are immutable once they exist (the log is append-only), so they carry Sunlight's
//! and Tessera's `Cache-Control: public, max-age=604800, immutable`; the checkpoint changes and
//! carries `no-store`. Entry bundles are gzip-compressed for clients that accept it, as the spec
//! recommends (hash tiles are random bytes and are sent as they are).

use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use domicile_audit::{AuditError, LogReader, MAX_ENTRY_BYTES};

use crate::path::{TileKind, TilePath, TILE_WIDTH};

/// `Cache-Control` of tiles and entry bundles: immutable for a week.
pub const TILE_CACHE_CONTROL: &str = "public, max-age=604800, immutable";

/// `Cache-Control` of the checkpoint: it changes with every checkpoint signed.
pub const CHECKPOINT_CACHE_CONTROL: &str = "no-store";

/// Why a tile could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The log directory could not be read, or does not hold together.
    #[error("the log cannot be served: {0}")]
    Log(#[from] AuditError),
    /// An entry is too long for an entry bundle (a log written before the length limit).
    #[error("entry {seq} is {len} bytes, more than the 65,535 an entry bundle can carry")]
    EntryTooLong {
        /// Its position in the log.
        seq: u64,
        /// Its length.
        len: usize,
    },
}

/// A log directory published as tlog-tiles: a [`LogReader`] behind a lock, refreshed when the
/// directory's checkpoints change. Share it with an [`Arc`]; [`public_routes_for`] mounts it.
#[derive(Debug)]
pub struct TileSource {
    dir: PathBuf,
    reader: RwLock<Option<LogReader>>,
}

impl TileSource {
    /// A source for the log in `dir`. Nothing is read until the first request (or
    /// [`TileSource::refresh`]): a node may mount the routes before its log exists.
    pub fn new(dir: impl Into<PathBuf>) -> Arc<TileSource> {
        Arc::new(TileSource {
            dir: dir.into(),
            reader: RwLock::new(None),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Option<LogReader>> {
        // A panic while refreshing leaves the reader as it was before the refresh began.
        self.reader.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Catches up with the log's latest signed checkpoint if it changed. Returns the size.
    pub fn refresh(&self) -> Result<u64, ServeError> {
        {
            let r = self.read();
            if let Some(reader) = r.as_ref() {
                if !reader.is_stale()? {
                    return Ok(reader.size());
                }
            }
        }
        let mut w = self.reader.write().unwrap_or_else(|p| p.into_inner());
        match w.as_mut() {
            Some(reader) => {
                reader.refresh()?;
                Ok(reader.size())
            }
            None => {
                let reader = LogReader::open(&self.dir)?;
                let size = reader.size();
                *w = Some(reader);
                Ok(size)
            }
        }
    }

    /// The latest signed checkpoint note with its cosignatures, as served at `/checkpoint`.
    pub fn checkpoint(&self) -> Result<Option<String>, ServeError> {
        self.refresh()?;
        Ok(self
            .read()
            .as_ref()
            .and_then(|r| r.checkpoint())
            .map(|n| n.to_text()))
    }

    /// The bytes of a tile or entry bundle, or `None` when the latest checkpoint does not cover
    /// it (after catching up with the log once).
    pub fn tile(&self, tile: &TilePath) -> Result<Option<Vec<u8>>, ServeError> {
        if let Some(bytes) = self.tile_now(tile)? {
            return Ok(Some(bytes));
        }
        self.refresh()?;
        self.tile_now(tile)
    }

    /// [`TileSource::tile`] from what has been read, without looking at the directory.
    fn tile_now(&self, tile: &TilePath) -> Result<Option<Vec<u8>>, ServeError> {
        let guard = self.read();
        let Some(reader) = guard.as_ref() else {
            return Ok(None);
        };
        let size = reader.size();
        let height = 8 * u32::from(tile.level());
        // How many complete subtrees of 256^L leaves the checkpoint covers.
        let count = size.checked_shr(height).unwrap_or(0);
        let start = tile.index.checked_mul(TILE_WIDTH);
        let end = start.and_then(|s| s.checked_add(u64::from(tile.width)));
        let (Some(start), Some(end)) = (start, end) else {
            return Ok(None);
        };
        if end > count {
            return Ok(None);
        }
        match tile.kind {
            TileKind::Hashes(_) => {
                let level = &reader.tree().levels()[height as usize];
                let mut out = Vec::with_capacity(32 * tile.width as usize);
                for h in &level[start as usize..end as usize] {
                    out.extend_from_slice(h);
                }
                Ok(Some(out))
            }
            TileKind::Entries => {
                let entries = reader.entries(start, end)?;
                let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
                for (i, e) in entries.iter().enumerate() {
                    if e.len() > MAX_ENTRY_BYTES {
                        return Err(ServeError::EntryTooLong {
                            seq: start + i as u64,
                            len: e.len(),
                        });
                    }
                    out.extend_from_slice(&(e.len() as u16).to_be_bytes());
                    out.extend_from_slice(e);
                }
                Ok(Some(out))
            }
        }
    }
}

/// The public, read-only tlog-tiles routes for the log in `log_dir`: `/checkpoint`,
/// `/tile/<L>/<N>[.p/<W>]` and `/tile/entries/<N>[.p/<W>]`. No client certificate is needed:
/// everything served is either signed or checked against what is signed.
///
/// The routes read the directory through a [`LogReader`] of their own, so they can be mounted
/// beside the process that writes the log (or in another process): they publish what the
/// writer's checkpoints cover, as soon as a request finds a new one. Use [`public_routes_for`]
/// to share one [`TileSource`] between several routers.
pub fn public_routes(log_dir: PathBuf) -> Router {
    public_routes_for(TileSource::new(log_dir))
}

/// [`public_routes`] over a [`TileSource`] the caller keeps.
pub fn public_routes_for(source: Arc<TileSource>) -> Router {
    Router::new()
        .route("/checkpoint", get(serve_checkpoint))
        .route("/tile/{*path}", get(serve_tile))
        .with_state(source)
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

fn unavailable(e: ServeError) -> Response {
    tracing::error!(error = %e, "the log cannot be served");
    plain(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"))
}

async fn serve_checkpoint(State(source): State<Arc<TileSource>>) -> Response {
    let found = tokio::task::spawn_blocking(move || source.checkpoint()).await;
    match found {
        Ok(Ok(Some(text))) => {
            let mut r = plain(StatusCode::OK, text);
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(CHECKPOINT_CACHE_CONTROL),
            );
            r
        }
        Ok(Ok(None)) => plain(
            StatusCode::NOT_FOUND,
            "the log has signed no checkpoint yet\n".into(),
        ),
        Ok(Err(e)) => unavailable(e),
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the checkpoint failed\n".into(),
        ),
    }
}

/// Whether an `Accept-Encoding` header accepts gzip (by name or `*`, with a non-zero weight).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3),
        flate2::Compression::fast(),
    );
    enc.write_all(bytes)?;
    enc.finish()
}

async fn serve_tile(
    State(source): State<Arc<TileSource>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let tile = match TilePath::parse(&path) {
        Ok(t) => t,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    // Hash tiles come from memory; entry bundles and catching up read files.
    let found = match tile.kind {
        TileKind::Hashes(_) => match source.tile_now(&tile) {
            Ok(Some(bytes)) => Ok(Ok(Some(bytes))),
            _ => tokio::task::spawn_blocking(move || source.tile(&tile)).await,
        },
        TileKind::Entries => tokio::task::spawn_blocking(move || source.tile(&tile)).await,
    };
    let compress = tile.kind == TileKind::Entries && accepts_gzip(&headers);
    match found {
        Ok(Ok(Some(bytes))) => {
            let mut r = (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (header::CACHE_CONTROL, TILE_CACHE_CONTROL),
                ],
            )
                .into_response();
            if tile.kind == TileKind::Entries {
                r.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            }
            let body = match compress.then(|| gzip(&bytes)) {
                Some(Ok(zipped)) => {
                    r.headers_mut()
                        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    zipped
                }
                _ => bytes,
            };
            *r.body_mut() = axum::body::Body::from(body);
            r
        }
        Ok(Ok(None)) => plain(
            StatusCode::NOT_FOUND,
            format!("{tile} is beyond the latest checkpoint\n"),
        ),
        Ok(Err(e)) => unavailable(e),
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the tile failed\n".into(),
        ),
    }
}
