//! Running a node or a gateway as a process: what `domicile serve` and `domicile gateway` do.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use domicile_access::{AccessError, ApproverKey, PrincipalDirectory, SpiffeId};
use domicile_residency::{PolicyResolver, Region, ResidencyPolicy};
use domicile_split::{Deployment, SplitError};

use crate::client::NodeClient;
use crate::gateway::{router as gateway_router, Gateway};
use crate::node::{router as node_router, NodeState};
use crate::serve::{serve, termination, Limits};
use crate::tls::{Identity, TlsError};

/// The largest principal directory read.
const MAX_DIRECTORY_BYTES: u64 = 16 << 20;

/// Why a node or gateway could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The deployment could not be opened or closed.
    #[error(transparent)]
    Deployment(#[from] SplitError),
    /// The principal directory could not be read or verified.
    #[error("the principal directory {path} is refused: {source}")]
    Directory {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: AccessError,
    },
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] domicile_durable::FileError),
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The node's SVID is not of the region it serves.
    #[error("the node's SVID {id} is not of region {region}: issue one under spiffe://<trust-domain>/{region}/…")]
    WrongRegion {
        /// The SVID's id.
        id: SpiffeId,
        /// The region served.
        region: Region,
    },
    /// The grant key could not be made or read.
    #[error("the node's grant key {path}: {source}")]
    GrantKey {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: AccessError,
    },
    /// The listener could not be bound, or the runtime started.
    #[error("could not {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What `domicile serve` is given.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The deployment's data directory.
    pub data: PathBuf,
    /// The deployment's keys directory.
    pub keys: PathBuf,
    /// The region served.
    pub region: Region,
    /// The operator's signed principal directory.
    pub directory: PathBuf,
    /// The operator's public key (base64 Ed25519) that signed it.
    pub operator_key: String,
    /// The CA bundle.
    pub ca: PathBuf,
    /// The node's SVID.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Gateways allowed to forward on behalf of their callers.
    pub gateways: BTreeSet<SpiffeId>,
    /// Limits on requests.
    pub limits: Limits,
    /// How often the log signs a checkpoint when it has grown.
    pub checkpoint_every: Duration,
    /// Where to write the bound address once listening (for scripts and tests using port 0).
    pub addr_file: Option<PathBuf>,
    /// The C2SP tlog-witnesses each new checkpoint is submitted to (their URL prefix and
    /// cosignature key); the cosigned checkpoint is what `/checkpoint` then publishes.
    pub witnesses: Vec<(String, domicile_audit::VerifierKey)>,
    /// How many of them must cosign for a checkpoint to count as witnessed.
    pub witness_quorum: usize,
    /// PEM roots the witnesses' certificates chain to (besides the system's), for HTTPS ones.
    pub witness_ca: Vec<PathBuf>,
}

/// What `domicile gateway` is given.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The CA bundle.
    pub ca: PathBuf,
    /// The gateway's SVID.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The trust domain.
    pub trust_domain: String,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Each region's node.
    pub nodes: BTreeMap<Region, SocketAddr>,
    /// Limits on requests.
    pub limits: Limits,
    /// Where to write the bound address once listening.
    pub addr_file: Option<PathBuf>,
}

fn runtime() -> Result<tokio::runtime::Runtime, NodeError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| NodeError::Io {
            action: "start the async runtime".into(),
            source,
        })
}

async fn bind(
    listen: SocketAddr,
    addr_file: Option<&PathBuf>,
) -> Result<tokio::net::TcpListener, NodeError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| NodeError::Io {
            action: format!("listen on {listen}"),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| NodeError::Io {
        action: "read the bound address".into(),
        source,
    })?;
    if let Some(path) = addr_file {
        domicile_durable::write_public(path, format!("{bound}\n").as_bytes())?;
    }
    tracing::info!(addr = %bound, "listening");
    Ok(listener)
}

/// The node's grant key, `<keys>/<region>/node/grant.key` (PKCS#8, 0600), made on first use.
fn grant_key(keys: &std::path::Path, region: &Region) -> Result<ApproverKey, NodeError> {
    let path = keys.join(region.as_str()).join("node").join("grant.key");
    let bad = |source| NodeError::GrantKey {
        path: path.clone(),
        source,
    };
    match domicile_durable::read_secret(&path)? {
        Some(pkcs8) => ApproverKey::from_pkcs8(&pkcs8).map_err(bad),
        None => {
            let key = ApproverKey::generate().map_err(bad)?;
            domicile_durable::create_private(&path, key.pkcs8())?;
            Ok(key)
        }
    }
}

/// Runs one region's node until SIGTERM or SIGINT, then drains it and signs the log's final
/// checkpoint. `policies` is the binary's list of residency policies.
pub fn run_node(config: NodeConfig, policies: &PolicyResolver) -> Result<(), NodeError> {
    let deployment = Deployment::open_region(&config.data, &config.keys, policies, &config.region)?;
    let text = domicile_durable::read_bounded(&config.directory, MAX_DIRECTORY_BYTES)?;
    let directory =
        PrincipalDirectory::open_signed(&String::from_utf8_lossy(&text), &config.operator_key)
            .map_err(|source| NodeError::Directory {
                path: config.directory.clone(),
                source,
            })?;
    let approvers: Vec<SpiffeId> = directory.principals().map(|p| p.id.clone()).collect();
    deployment.set_directory(directory)?;
    let identity = Identity::load(
        &config.ca,
        &config.cert,
        &config.key,
        deployment.trust_domain(),
    )?;
    if identity.id().region() != &config.region {
        return Err(NodeError::WrongRegion {
            id: identity.id().clone(),
            region: config.region.clone(),
        });
    }
    let tls = identity.server_config()?;
    let node = deployment
        .region(&config.region)
        .expect("open_region opened the region asked for");
    let draining = Arc::new(AtomicBool::new(false));
    let state = Arc::new(NodeState::new(
        node.gate.clone(),
        node.log_dir.clone(),
        grant_key(&config.keys, &config.region)?,
        approvers,
        config.gateways.clone(),
        config.limits.max_body,
        draining.clone(),
    ));
    let gate = node.gate.clone();
    let served = runtime()?.block_on(async {
        let listener = bind(config.listen, config.addr_file.as_ref()).await?;
        // A fresh checkpoint now and whenever the log has grown, so `/checkpoint` follows it.
        let ticker_gate = gate.clone();
        let every = config.checkpoint_every;
        let witnesses: Vec<domicile_tlog_http::WitnessEndpoint> = config
            .witnesses
            .iter()
            .map(|(url, key)| domicile_tlog_http::WitnessEndpoint::new(url.clone(), key.clone()))
            .collect();
        let witness_client = if witnesses.is_empty() {
            None
        } else {
            let cas: Vec<&std::path::Path> =
                config.witness_ca.iter().map(PathBuf::as_path).collect();
            Some(
                domicile_tlog_http::HttpClient::new(&cas).map_err(|e| NodeError::Io {
                    action: "set up the witness client".into(),
                    source: std::io::Error::other(e.to_string()),
                })?,
            )
        };
        let quorum = config.witness_quorum;
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            let mut witnessed = 0u64;
            loop {
                interval.tick().await;
                // Each new checkpoint goes to the witnesses; the cosigned note is stored and
                // served at `/checkpoint`. A witness down or refusing is logged, and retried
                // with the next checkpoint: the log itself never waits for witnesses.
                // `witness_log` signs the checkpoint it submits, so it is signed here only
                // when there are no witnesses.
                let Some(client) = &witness_client else {
                    let g = ticker_gate.clone();
                    let signed = tokio::task::spawn_blocking(move || g.log().checkpoint()).await;
                    if let Ok(Err(e)) = signed {
                        tracing::warn!(error = %e, "could not sign a checkpoint");
                    }
                    continue;
                };
                let size = ticker_gate.log().size();
                if size <= witnessed {
                    continue;
                }
                match domicile_tlog_http::witness_log(client, &witnesses, ticker_gate.log(), quorum)
                    .await
                {
                    Ok(cosigned) => {
                        witnessed = size;
                        tracing::info!(
                            size,
                            cosignatures = cosigned.cosigned_by.len(),
                            "checkpoint cosigned by the witnesses"
                        );
                    }
                    Err(e) => tracing::warn!(size, error = %e, "witnesses did not cosign"),
                }
            }
        });
        let app = node_router(state);
        let shutdown = async move {
            termination().await;
            tracing::info!("shutting down: finishing requests in flight");
            draining.store(true, Ordering::SeqCst);
        };
        let served = serve(
            listener,
            tls,
            app,
            config.limits,
            deployment.trust_domain().to_owned(),
            shutdown,
        )
        .await;
        ticker.abort();
        served.map_err(|source| NodeError::Io {
            action: "serve".into(),
            source,
        })
    });
    // Every request answered has its entry durable; sign the final checkpoint either way.
    let closed = deployment.close();
    served?;
    closed?;
    tracing::info!("stopped; the log's final checkpoint is signed");
    Ok(())
}

/// Runs a gateway until SIGTERM or SIGINT, routing under `policy`.
pub fn run_gateway(
    config: GatewayConfig,
    policy: Arc<dyn ResidencyPolicy>,
) -> Result<(), NodeError> {
    let identity = Identity::load(&config.ca, &config.cert, &config.key, &config.trust_domain)?;
    let tls = identity.server_config()?;
    runtime()?.block_on(async {
        let mut nodes = BTreeMap::new();
        for (region, addr) in &config.nodes {
            let client_tls = identity.client_config(Some(region.clone()))?;
            nodes.insert(region.clone(), NodeClient::new(*addr, client_tls));
        }
        let gateway = Arc::new(Gateway::new(policy, nodes, config.limits.max_body));
        let listener = bind(config.listen, config.addr_file.as_ref()).await?;
        serve(
            listener,
            tls,
            gateway_router(gateway),
            config.limits,
            config.trust_domain.clone(),
            termination(),
        )
        .await
        .map_err(|source| NodeError::Io {
            action: "serve".into(),
            source,
        })
    })
}
