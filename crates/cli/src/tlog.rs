//! The log over HTTP from the command line: `domicile witness serve` (a C2SP tlog-witness),
//! `domicile audit serve` (a log directory published as C2SP tlog-tiles) and
//! `domicile audit verify --url` (an auditor following a log over tlog-tiles).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::text::{read_text, read_verifier_key, KEY_FILE_LIMIT};
use clap::Subcommand;
use domicile_audit::merkle::hex;
use domicile_audit::{Note, SigningKey, VerifierKey, WitnessPolicy};
use domicile_tlog_http::{
    follow, public_routes, witness_routes, HttpClient, ServeLimits, WitnessService,
};

/// Arguments of `domicile witness`.
#[derive(Debug, clap::Args)]
pub(crate) struct WitnessArgs {
    #[command(subcommand)]
    command: WitnessCommand,
}

#[derive(Debug, Subcommand)]
enum WitnessCommand {
    /// Serve C2SP tlog-witness `POST /add-checkpoint` for the given logs until SIGTERM or
    /// Ctrl-C.
    ///
    /// Cosigns a log's checkpoint only when it proves consistent with the last one cosigned for
    /// that log, which is kept in --state (one file per log, written durably before each
    /// answer). Prints `listening on ADDR` once it accepts connections.
    Serve {
        /// The witness's private cosignature key file (`domicile audit keygen --witness`).
        #[arg(long)]
        key: PathBuf,
        /// A log's verifier key file (repeatable): the witness follows the logs whose origins
        /// these keys name.
        #[arg(long = "log-vkey", required = true)]
        log_vkeys: Vec<PathBuf>,
        /// The directory holding what the witness last cosigned per log.
        #[arg(long)]
        state: PathBuf,
        /// The address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:7380")]
        listen: SocketAddr,
        /// Write the bound address here once listening (useful with port 0).
        #[arg(long)]
        addr_file: Option<PathBuf>,
    },
}

/// Runs `domicile witness`.
pub(crate) fn run_witness(args: WitnessArgs) -> ExitCode {
    let WitnessCommand::Serve {
        key,
        log_vkeys,
        state,
        listen,
        addr_file,
    } = args.command;
    match witness_serve(&key, &log_vkeys, &state, listen, addr_file.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("domicile witness: {msg}");
            ExitCode::from(1)
        }
    }
}

fn witness_serve(
    key: &Path,
    log_vkeys: &[PathBuf],
    state: &Path,
    listen: SocketAddr,
    addr_file: Option<&Path>,
) -> Result<(), String> {
    domicile_durable::check_private(key).map_err(|e| e.to_string())?;
    let key = SigningKey::parse(&read_text(key, KEY_FILE_LIMIT)?).map_err(|e| e.to_string())?;
    let logs = log_vkeys
        .iter()
        .map(|p| read_verifier_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let service = WitnessService::open(&key, logs, state).map_err(|e| e.to_string())?;
    serve(listen, witness_routes(Arc::new(service)), addr_file)
}

/// `domicile audit serve`: publishes a log directory as tlog-tiles.
pub(crate) fn audit_serve(log: &Path, listen: SocketAddr) -> Result<(), String> {
    serve(listen, public_routes(log.to_owned()), None)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
}

/// Serves `app` until SIGTERM or Ctrl-C, finishing the requests in flight, with a deadline for
/// each request's headers and a cap on connections.
fn serve(listen: SocketAddr, app: axum::Router, addr_file: Option<&Path>) -> Result<(), String> {
    let addr_file = addr_file.map(Path::to_owned);
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("listening on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening on {addr}");
        if let Some(path) = &addr_file {
            domicile_durable::write_public(path, format!("{addr}\n").as_bytes())
                .map_err(|e| e.to_string())?;
        }
        domicile_tlog_http::serve(listener, app, ServeLimits::default(), shutdown())
            .await
            .map_err(|e| format!("serving on {addr}: {e}"))
    })
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `domicile audit verify --url`: follows the log at `url` and verifies all of it. Returns the
/// report line.
pub(crate) fn verify_url(
    url: &str,
    key: &VerifierKey,
    policy: Option<&WitnessPolicy>,
    held: &[Note],
    ca: &[PathBuf],
) -> Result<String, String> {
    let ca: Vec<&Path> = ca.iter().map(PathBuf::as_path).collect();
    let client = HttpClient::new(&ca).map_err(|e| e.to_string())?;
    let r = runtime()?
        .block_on(follow(&client, url, key, policy, held))
        .map_err(|e| format!("FAILED: {e}"))?;
    Ok(format!(
        "OK: {} entries over HTTP ({} entry bundles, {} tiles), root {}, {} witness cosignatures, consistent with {} held checkpoint(s)\n",
        r.entries,
        r.bundles,
        r.tiles,
        hex(&r.root),
        r.witnesses,
        held.len()
    ))
}
