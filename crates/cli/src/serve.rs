//! `domicile serve` (one region's node) and `domicile gateway` (routing to home regions).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use domicile_access::SpiffeId;
use domicile_node::{GatewayConfig, Limits, NodeConfig};
use domicile_residency::Region;

/// The limits both servers take.
#[derive(Debug, Args)]
struct LimitArgs {
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a request may take to be read and answered…
    #[arg(long, default_value_t = 30)]
    request_timeout: u64,
    /// …unless it reads a whole store (`POST /v1/store/check`, about a second per 100,000
    /// records).
    #[arg(long, default_value_t = 3600)]
    long_request_timeout: u64,
    /// Connections served at once.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds shutdown waits for requests in flight.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_body: self.max_body,
            handshake_timeout: Duration::from_secs(self.header_timeout),
            header_timeout: Duration::from_secs(self.header_timeout),
            request_timeout: Duration::from_secs(self.request_timeout),
            long_request_timeout: Duration::from_secs(self.long_request_timeout),
            max_connections: self.max_connections,
            drain_timeout: Duration::from_secs(self.drain_timeout),
        }
    }
}

/// Arguments of `domicile serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The deployment's data directory.
    #[arg(long)]
    data: PathBuf,
    /// The deployment's keys directory.
    #[arg(long)]
    keys: PathBuf,
    /// The region this node serves.
    #[arg(long)]
    region: String,
    /// The operator's signed principal directory (`domicile pki sign-directory`).
    #[arg(long)]
    directory: PathBuf,
    /// The operator's public key (base64), or a file holding it.
    #[arg(long)]
    operator_key: String,
    /// The CA bundle (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// The node's SVID (PEM), of this region.
    #[arg(long)]
    cert: PathBuf,
    /// The SVID's key (PEM, mode 0600).
    #[arg(long)]
    key: PathBuf,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// A gateway allowed to forward on behalf of its callers (repeatable).
    #[arg(long)]
    gateway: Vec<String>,
    /// Seconds between checkpoints of a growing log.
    #[arg(long, default_value_t = 1)]
    checkpoint_every: u64,
    /// Write the bound address here once listening (useful with port 0).
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// A C2SP tlog-witness each new checkpoint is submitted to, as URL=VKEY-FILE (repeatable):
    /// `--witness http://127.0.0.1:7380=w1/witness.vkey`. The cosigned checkpoint is published.
    #[arg(long = "witness", value_name = "URL=VKEY-FILE")]
    witnesses: Vec<String>,
    /// How many witnesses must cosign (default: all of them).
    #[arg(long)]
    witness_quorum: Option<usize>,
    /// PEM roots for HTTPS witnesses, besides the system's (repeatable).
    #[arg(long)]
    witness_ca: Vec<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Arguments of `domicile gateway`.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// The residency policy routing requests (`us-split`, …).
    #[arg(long)]
    policy: String,
    /// The SPIFFE trust domain.
    #[arg(long)]
    trust_domain: String,
    /// A region's node, `REGION=HOST:PORT` (repeatable).
    #[arg(long = "node", value_parser = parse_node)]
    nodes: Vec<(Region, SocketAddr)>,
    /// The CA bundle (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// The gateway's SVID (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// The SVID's key (PEM, mode 0600).
    #[arg(long)]
    key: PathBuf,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8440")]
    listen: SocketAddr,
    /// Write the bound address here once listening.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
}

pub(crate) fn parse_node(text: &str) -> Result<(Region, SocketAddr), String> {
    let (region, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("expected REGION=HOST:PORT, not {text:?}"))?;
    let region = Region::parse(region).map_err(|e| e.to_string())?;
    let addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address and port"))?;
    Ok((region, addr))
}

/// Structured logs on standard error, filtered by `RUST_LOG` (default `info`).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

type Error = Box<dyn std::error::Error>;

/// Runs `domicile serve`.
pub(crate) fn run_serve(args: ServeArgs) -> ExitCode {
    init_logs();
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("domicile serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), Error> {
    let mut witnesses = Vec::new();
    for w in &args.witnesses {
        // The URL holds `=` only in a query, which a witness prefix has no use for: split at
        // the last one.
        let (url, vkey) = w
            .rsplit_once('=')
            .filter(|(u, k)| !u.is_empty() && !k.is_empty())
            .ok_or("--witness takes URL=VKEY-FILE")?;
        let key = crate::text::read_verifier_key(Path::new(vkey))
            .map_err(|e| format!("--witness: {e}"))?;
        witnesses.push((url.to_owned(), key));
    }
    if let Some(q) = args.witness_quorum {
        if q == 0 || q > witnesses.len() {
            return Err(format!(
                "--witness-quorum {q}: between 1 and the {} witnesses given",
                witnesses.len()
            )
            .into());
        }
    }
    // A file holding the key, or the key itself; a file is read bounded (`/dev/zero` is not a
    // file, so it is taken as a key, and refused as one).
    let operator_key = if Path::new(&args.operator_key).is_file() {
        crate::text::read_text(Path::new(&args.operator_key), crate::text::KEY_FILE_LIMIT)?
            .trim()
            .to_owned()
    } else {
        args.operator_key.clone()
    };
    let gateways = args
        .gateway
        .iter()
        .map(|g| SpiffeId::parse(g))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let config = NodeConfig {
        data: args.data,
        keys: args.keys,
        region: Region::parse(&args.region)?,
        directory: args.directory,
        operator_key,
        ca: args.ca,
        cert: args.cert,
        key: args.key,
        listen: args.listen,
        gateways,
        limits: args.limits.limits(),
        checkpoint_every: Duration::from_secs(args.checkpoint_every.max(1)),
        addr_file: args.addr_file,
        witness_quorum: args.witness_quorum.unwrap_or(witnesses.len()),
        witnesses,
        witness_ca: args.witness_ca,
    };
    domicile_node::run_node(config, &crate::policies::resolver())?;
    Ok(())
}

/// Runs `domicile gateway`.
pub(crate) fn run_gateway(args: GatewayArgs) -> ExitCode {
    init_logs();
    match gateway(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("domicile gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn gateway(args: GatewayArgs) -> Result<(), Error> {
    let policy = crate::policies::resolver().resolve(&args.policy)?;
    for (region, _) in &args.nodes {
        policy.check_region(region)?;
    }
    let nodes: BTreeMap<Region, SocketAddr> = args.nodes.into_iter().collect();
    let config = GatewayConfig {
        ca: args.ca,
        cert: args.cert,
        key: args.key,
        trust_domain: args.trust_domain,
        listen: args.listen,
        nodes,
        limits: args.limits.limits(),
        addr_file: args.addr_file,
    };
    domicile_node::run_gateway(config, policy)?;
    Ok(())
}
