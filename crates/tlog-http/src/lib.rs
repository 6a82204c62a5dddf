//! A domicile audit log over HTTP: served as C2SP tlog-tiles, followed and verified by
//! auditors with nothing but public keys, and cosigned by C2SP tlog-witness witnesses.
//!
//! A region's log is public: [`public_routes`] serves its latest signed checkpoint at
//! `/checkpoint`, its Merkle tree as tiles at `/tile/<L>/<N>[.p/<W>]` and its entries as bundles
//! at `/tile/entries/<N>[.p/<W>]`, read-only and without a client certificate, so that any
//! tlog-tiles client can follow it. [`follow`] is ours: it fetches every bundle and tile and
//! checks them against the signed checkpoint and the witnesses' cosignatures.
//! [`witness_routes`] is a witness (`POST /add-checkpoint`) reusing the checks of
//! [`domicile_audit::Witness`], and [`submit_to_witnesses`] is what a log calls to gather
//! cosignatures for each new checkpoint. [`serve`] runs either on a public socket with a header
//! deadline, a connection cap and a graceful shutdown.
//!
//! ```
//! use domicile_audit::{AuditLog, KeyKind, LogConfig, SigningKey};
//! use domicile_tlog_http::{follow, public_routes, HttpClient};
//! # let entry = domicile_audit::doc_example_entry()?;
//!
//! let dir = tempfile::tempdir()?;
//! let key = SigningKey::generate("audit.example/us", KeyKind::Ed25519)?;
//! let vkey = key.verifier();
//! let log = AuditLog::open(dir.path(), LogConfig::new(key))?;
//! log.append(entry)?;
//! log.checkpoint()?;
//!
//! let rt = tokio::runtime::Runtime::new()?;
//! let report = rt.block_on(async {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let url = format!("http://{}", listener.local_addr()?);
//!     let app = public_routes(dir.path().to_owned());
//!     tokio::spawn(async move { axum::serve(listener, app).await });
//!     let client = HttpClient::new(&[])?;
//!     Ok::<_, Box<dyn std::error::Error>>(follow(&client, &url, &vkey, None, &[]).await?)
//! })?;
//! assert_eq!(report.entries, 1);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod client;
pub mod path;
mod serve;
mod tiles;
mod witness;

pub use client::{
    follow, submit_to_witnesses, witness_log, ClientError, Cosigned, FollowReport, HttpClient,
    WitnessEndpoint, DEFAULT_REQUEST_TIMEOUT,
};
pub use path::{TileKind, TilePath, TILE_WIDTH};
pub use serve::{serve, ServeLimits};
pub use tiles::{
    public_routes, public_routes_for, ServeError, TileSource, CHECKPOINT_CACHE_CONTROL,
    TILE_CACHE_CONTROL,
};
pub use witness::{
    state_path, witness_routes, AddCheckpoint, Refusal, WitnessService, WitnessSetupError,
    MAX_PROOF_LINES, MAX_REQUEST_BYTES, TLOG_SIZE_CONTENT_TYPE,
};
