//! `domicile store`: maintenance of a region's sealed store, for operators.
//!
//! `check` reads a region's store end to end, as after a restore, a crash or before a split:
//! every record and registry entry is opened, and the subject index compared with the owner
//! each record names. It writes nothing and prints what it found by collection and blind index
//! or pseudonym, never a record key or subject id; the exit code says whether the store is
//! sound (0), not sound (3), or could not be checked (1; 2 is a usage error). It needs the
//! store to itself; a serving node checks its own store over its API (`POST /v1/store/check`),
//! which `check --node` asks as the caller's SVID, printing the same summary with the same exit
//! codes; the error for a store a node holds says so.
//!
//! `reindex` rebuilds a region's subject index (the index journal and every subject's list)
//! from the owner each record's header names: the repair for a store whose index was changed
//! or cut short on disk (`the store's subject index is corrupt`). It decrypts nothing and needs
//! no key beyond the check that the keys directory is the deployment's own; the region must not
//! be open elsewhere (a running `domicile serve` holds its store).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use domicile_node::api::StoreCheckResponse;
use domicile_node::{Identity, NodeClient, Problem};
use domicile_residency::Region;
use domicile_split::{Deployment, SplitError};
use domicile_store::{SealedStore, StoreCheck};

/// Arguments of `domicile store`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Read a region's store (or every region's) end to end and report what is wrong with it
    /// (exit 0: sound, 3: not sound, 1: could not check, 2: usage).
    Check {
        /// The deployment's data directory (the store is checked here, and must not be open
        /// elsewhere).
        #[arg(long, required_unless_present = "nodes", requires = "keys")]
        data: Option<PathBuf>,
        /// The deployment's keys directory.
        #[arg(long, requires = "data")]
        keys: Option<PathBuf>,
        #[command(flatten)]
        node: NodeCheckArgs,
        /// The region; every region of the deployment's policy if omitted.
        #[arg(long, conflicts_with = "nodes")]
        region: Option<String>,
        /// Print the whole report as JSON (an object keyed by region) instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a region's subject index from its records (the repair for a corrupt index).
    Reindex {
        #[command(flatten)]
        deployment: DeploymentDirs,
        /// The region.
        #[arg(long)]
        region: String,
        /// Write the new index in durable steps of about this many record ids and replaced
        /// lists (whole subjects at a time): smaller steps hold less in memory and in each
        /// transaction, and flush more often. An interrupted rebuild reads as before and is
        /// finished by running it again.
        #[arg(long, default_value_t = domicile_store::REBUILD_STEP,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        step: usize,
    },
}

/// Asking a serving node to check its own store instead.
#[derive(Debug, clap::Args)]
struct NodeCheckArgs {
    /// A region's serving node, `REGION=HOST:PORT` (repeatable), to ask to check its own store
    /// (`POST /v1/store/check`) as the SVID given: the region's security staff, for an audit
    /// with a ticket. The node must present that region's node SVID.
    #[arg(long = "node", value_name = "REGION=HOST:PORT", value_parser = crate::serve::parse_node,
          conflicts_with_all = ["data", "keys"],
          requires_all = ["ca", "cert", "key", "trust_domain", "ticket"])]
    nodes: Vec<(Region, SocketAddr)>,
    /// The CA bundle (PEM) the node's certificate is checked against.
    #[arg(long, requires = "nodes")]
    ca: Option<PathBuf>,
    /// The caller's SVID (PEM).
    #[arg(long, requires = "nodes")]
    cert: Option<PathBuf>,
    /// The SVID's key (PEM, mode 0600).
    #[arg(long, requires = "nodes")]
    key: Option<PathBuf>,
    /// The SPIFFE trust domain.
    #[arg(long, requires = "nodes")]
    trust_domain: Option<String>,
    /// The audit's ticket (`AUD-1234`): the check's purpose is `audit`.
    #[arg(long, requires = "nodes")]
    ticket: Option<String>,
    /// The most findings of each kind the node lists (default 100, at most 10,000).
    #[arg(long, requires = "nodes")]
    max_findings: Option<usize>,
}

/// The deployment's directories.
#[derive(Debug, clap::Args)]
struct DeploymentDirs {
    /// The deployment's data directory.
    #[arg(long)]
    data: PathBuf,
    /// The deployment's keys directory.
    #[arg(long)]
    keys: PathBuf,
}

impl DeploymentDirs {
    /// Opens `region`'s store with the deployment's keys (never creating either).
    fn open(&self, region: &Region) -> Result<SealedStore, StoreCommandError> {
        Ok(Deployment::open_region_store(
            &self.data,
            &self.keys,
            &crate::policies::resolver(),
            region,
        )?)
    }

    /// The regions of the deployment's policy, from its manifest.
    fn regions(&self) -> Result<Vec<Region>, StoreCommandError> {
        let manifest = Deployment::manifest(&self.data)?.ok_or_else(|| SplitError::Manifest {
            path: self.data.join(domicile_split::MANIFEST),
            detail: "there is no deployment here (no manifest)".into(),
        })?;
        let policy = crate::policies::resolver()
            .resolve(&manifest.policy)
            .map_err(SplitError::from)?;
        Ok(policy.regions().to_vec())
    }
}

#[derive(Debug, thiserror::Error)]
enum StoreCommandError {
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(transparent)]
    Store(#[from] domicile_store::StoreError),
    #[error(transparent)]
    Region(#[from] domicile_residency::ResidencyError),
    #[error("the report does not encode as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Tls(#[from] domicile_node::TlsError),
    #[error(transparent)]
    Client(#[from] domicile_node::ClientError),
    #[error("the node refused the check: {}", refusal(.0))]
    Refused(Box<Problem>),
    #[error("the node's answer is not a store check ({status}): {detail}")]
    Answer { status: u16, detail: String },
    #[error("could not start the client: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Usage(&'static str),
}

/// A node's refusal, as a person reads it.
fn refusal(problem: &Problem) -> String {
    let entry = problem
        .audit_entry
        .map(|seq| format!(", audit entry {seq}"))
        .unwrap_or_default();
    format!(
        "{} ({} {}{entry}): {}",
        problem.title, problem.status, problem.code, problem.detail
    )
}

impl StoreCommandError {
    /// Whether the store could not be opened because another process holds it.
    fn store_in_use(&self) -> bool {
        let store = match self {
            StoreCommandError::Store(e) => e,
            StoreCommandError::Split(SplitError::Store(e)) => &**e,
            _ => return false,
        };
        matches!(store, domicile_store::StoreError::InUse { .. })
    }
}

/// What a command found, for the exit code.
enum Outcome {
    Done,
    /// `check` found the store not sound.
    NotSound,
}

/// The exit code of a check that found a store not sound: 1 is a check that could not run, 2 a
/// usage error (clap's), as for every `domicile` command.
const NOT_SOUND: u8 = 3;

/// Findings of one kind printed in a summary before "and N more".
const LISTED: usize = 20;

/// Runs `domicile store`.
pub(crate) fn run(args: StoreArgs) -> ExitCode {
    let checking = matches!(args.command, StoreCommand::Check { .. });
    match command(args.command) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::NotSound) => ExitCode::from(NOT_SOUND),
        Err(e @ StoreCommandError::Usage(_)) => {
            eprintln!("domicile store: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("domicile store: {e}");
            if checking && e.store_in_use() {
                eprintln!(
                    "domicile store: a serving node checks its own store: POST /v1/store/check \
                     as the region's security staff, or `domicile store check --node` \
                     (docs/node.md)"
                );
            }
            ExitCode::from(1)
        }
    }
}

fn command(command: StoreCommand) -> Result<Outcome, StoreCommandError> {
    match command {
        StoreCommand::Check {
            data,
            keys,
            node,
            region,
            json,
        } => {
            if !node.nodes.is_empty() {
                return check_on_nodes(node, json);
            }
            let (Some(data), Some(keys)) = (data, keys) else {
                return Err(StoreCommandError::Usage(
                    "--data and --keys, or --node, say which store to check",
                ));
            };
            let deployment = DeploymentDirs { data, keys };
            let regions = match region {
                Some(region) => vec![Region::parse(&region)?],
                None => deployment.regions()?,
            };
            let mut reports = BTreeMap::new();
            for region in regions {
                let store = deployment.open(&region)?;
                let report = store.check()?;
                if !json {
                    print_check(&region, &report, &BTreeMap::new());
                }
                reports.insert(region.to_string(), report);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            }
            Ok(if reports.values().all(StoreCheck::is_sound) {
                Outcome::Done
            } else {
                Outcome::NotSound
            })
        }
        StoreCommand::Reindex {
            deployment,
            region,
            step,
        } => {
            let region = Region::parse(&region)?;
            let store = deployment.open(&region)?;
            let rebuilt = store.rebuild_index_in_steps(step)?;
            println!(
                "{region}: subject index rebuilt from {} record(s) of {} subject(s) in {} durable step(s); replaced {} list(s) and {} journal entr{}",
                rebuilt.records,
                rebuilt.subjects,
                rebuilt.steps,
                rebuilt.lists_replaced,
                rebuilt.journal_entries,
                if rebuilt.journal_entries == 1 { "y" } else { "ies" },
            );
            if rebuilt.unowned > 0 {
                println!(
                    "{region}: {} record(s) left out: their header or backend key no longer parses (they open for no one)",
                    rebuilt.unowned
                );
            }
            Ok(Outcome::Done)
        }
    }
}

/// `domicile store check --node`: each node checks its own store, and its answer is printed as
/// an offline check's report is (with `--json`, every answer in one object keyed by region).
fn check_on_nodes(args: NodeCheckArgs, json: bool) -> Result<Outcome, StoreCommandError> {
    let (Some(ca), Some(cert), Some(key), Some(trust_domain), Some(ticket)) =
        (args.ca, args.cert, args.key, args.trust_domain, args.ticket)
    else {
        return Err(StoreCommandError::Usage(
            "--node needs --ca, --cert, --key, --trust-domain and --ticket",
        ));
    };
    let identity = Identity::load(&ca, &cert, &key, &trust_domain)?;
    let mut body = serde_json::json!({"purpose": {"code": "audit", "ticket": ticket}});
    if let Some(max) = args.max_findings {
        body["max_findings"] = max.into();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StoreCommandError::Runtime)?;
    let mut answers = BTreeMap::new();
    for (region, addr) in args.nodes {
        let client = NodeClient::new(addr, identity.client_config(Some(region.clone()))?);
        let checked = runtime.block_on(ask_node(&client, &region, &body))?;
        if !json {
            print_check(&checked.region, &checked.report, &checked.omitted);
            println!(
                "{}: checked by the node, logged as audit entry {} (report {})",
                checked.region, checked.audit_entry, checked.report_digest
            );
        }
        answers.insert(region.to_string(), checked);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&answers)?);
    }
    Ok(if answers.values().all(|a| a.sound) {
        Outcome::Done
    } else {
        Outcome::NotSound
    })
}

/// One node's answer to `POST /v1/store/check`, checked to be a store check of `region`.
async fn ask_node(
    client: &NodeClient,
    region: &Region,
    body: &serde_json::Value,
) -> Result<StoreCheckResponse, StoreCommandError> {
    let answer = client.post("/v1/store/check", body).await?;
    let status = answer.status.as_u16();
    if !answer.status.is_success() {
        return Err(match serde_json::from_slice::<Problem>(&answer.body) {
            Ok(problem) => StoreCommandError::Refused(Box::new(problem)),
            Err(_) => StoreCommandError::Answer {
                status,
                detail: "not a problem document".into(),
            },
        });
    }
    let checked: StoreCheckResponse =
        serde_json::from_slice(&answer.body).map_err(|e| StoreCommandError::Answer {
            status,
            detail: e.to_string(),
        })?;
    if &checked.region != region {
        return Err(StoreCommandError::Answer {
            status,
            detail: format!("it is of region {}, not {region}", checked.region),
        });
    }
    // A whole report must be the one the entry's digest names, and say what its verdict says.
    if checked.omitted.is_empty()
        && (checked.report.digest() != checked.report_digest
            || checked.report.is_sound() != checked.sound)
    {
        return Err(StoreCommandError::Answer {
            status,
            detail: "its report does not match the digest or the verdict it came with".into(),
        });
    }
    Ok(checked)
}

/// The summary `domicile store check` prints; `omitted` counts the findings of each kind a
/// node left out of its report.
fn print_check(region: &Region, report: &StoreCheck, omitted: &BTreeMap<String, usize>) {
    println!(
        "{region}: {} record(s) and {} subject(s) open; {} left behind shreds (they open for no one until a purge or the shred is rerun); {} stale index id(s); {} journal entr{} to fold",
        report.records,
        report.subjects,
        report.shredded,
        report.stale_index_ids,
        report.journal_entries,
        if report.journal_entries == 1 { "y" } else { "ies" },
    );
    let mut sound = true;
    for (kind, findings) in report.findings() {
        let (what, repair) = describe(kind);
        let left_out = omitted.get(kind).copied().unwrap_or(0);
        let total = findings.len() + left_out;
        if total == 0 {
            continue;
        }
        sound = false;
        let name = kind.strip_suffix("_index").unwrap_or(kind);
        println!("{region}: {total} {name}: {what}{repair}:");
        for finding in findings.iter().take(LISTED) {
            println!("  {}: {}", finding.entry, finding.reason);
        }
        if total > LISTED.min(findings.len()) {
            println!(
                "  … and {} more (--json lists {})",
                total - LISTED.min(findings.len()),
                if left_out > 0 {
                    "as many as --max-findings"
                } else {
                    "every one"
                }
            );
        }
    }
    println!("{region}: {}", if sound { "sound" } else { "NOT SOUND" });
}

/// What a kind of finding means to an operator, and its repair.
fn describe(kind: &str) -> (&'static str, &'static str) {
    const REINDEX: &str = " (repair: domicile store reindex)";
    match kind {
        "unreadable" => ("does not open", ""),
        "unindexed" => ("missing from the subject index", REINDEX),
        "corrupt_index" => ("an entry of the subject index that does not parse", REINDEX),
        "unregistered" => (
            "records open, but no registry entry",
            " (repair: register the subject again)",
        ),
        "misplaced" => (
            "the policy does not let it rest in this region",
            " (move it to its subject's home region)",
        ),
        _ => ("", ""),
    }
}
