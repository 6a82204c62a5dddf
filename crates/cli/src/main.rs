//! `domicile`: the command line of domicile.
//!
//! Each subcommand lives in its own module: `audit` for auditors, `recsys` for the recommender,
//! `split` for operators moving a deployment to another residency policy, `keys` for the key
//! custodian's region keys, `init` to create a deployment and its keys, `ingest` to load data
//! into it, `tlog` for the log over HTTP (`witness serve`, `audit serve`, `audit verify --url`),
//! `pki` for SVIDs and the principal directory, `serve` and `gateway` to run a region's node and
//! the gateway in front of the nodes. `policies` is the composition root's list of the residency
//! policies this binary links, `algorithms` its list of recommendation algorithms; everything
//! below the binary takes them from there.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod algorithms;
mod audit;
mod database;
mod ingest;
mod init;
mod keys;
mod pki;
mod policies;
mod recsys;
mod serve;
mod split;
mod tlog;

/// Data sovereignty for one product run as several regional deployments.
#[derive(Debug, Parser)]
#[command(name = "domicile", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify, query and prove entries of a tamper-evident access log.
    Audit(audit::AuditArgs),
    /// Train, serve and evaluate recommendation models.
    Recsys(recsys::RecsysArgs),
    /// Plan, run, verify and report the split of a deployment to another residency policy.
    Split(split::SplitArgs),
    /// List, rotate and retire a region's key-encryption keys.
    Keys(keys::KeysArgs),
    /// Create a deployment: its manifest, stores, logs and keys (the only command that creates
    /// keys).
    Init(init::InitArgs),
    /// Load subjects and records from JSON Lines through the Gates, each placed by the policy
    /// (batched, resumable).
    Ingest(ingest::IngestArgs),
    /// Run a C2SP tlog-witness over HTTP that cosigns logs' checkpoints.
    Witness(tlog::WitnessArgs),
    /// A development CA issuing SPIFFE X.509-SVIDs, and the operator's signed principal
    /// directory.
    Pki(pki::PkiArgs),
    /// Serve one region of a deployment over mutual TLS (its Gate as JSON endpoints).
    Serve(serve::ServeArgs),
    /// Route requests to each subject's home region node over mutual TLS.
    Gateway(serve::GatewayArgs),
}

/// sled allocates and frees a node copy on nearly every operation; mimalloc serves that
/// pattern markedly faster than the system allocator (ingest and split, README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Audit(args) => audit::run(args),
        Command::Recsys(args) => recsys::run(args),
        Command::Split(args) => split::run_split(args),
        Command::Keys(args) => keys::run(args),
        Command::Init(args) => init::run(args),
        Command::Ingest(args) => ingest::run(args),
        Command::Witness(args) => tlog::run_witness(args),
        Command::Pki(args) => pki::run(args),
        Command::Serve(args) => serve::run_serve(args),
        Command::Gateway(args) => serve::run_gateway(args),
    }
}
