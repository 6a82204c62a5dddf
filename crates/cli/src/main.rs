//! `domicile`: the command line of domicile.
//!
//! Each subcommand lives in its own module: `audit` for auditors, `recsys` for the recommender,
//! `split` for operators moving a deployment to another residency policy, `keys` for the key
//! custodian's region keys, `store` to repair a region's subject index, `init` to create a
//! deployment and its keys, `ingest` to load data into it, `tlog` for the log over HTTP
//! (`witness serve`, `audit serve`, `audit verify --url`), `pki` for SVIDs and the principal
//! directory, `serve` and `gateway` to run a region's node and the gateway in front of the
//! nodes. `policies` is the composition root's list of the residency policies this binary
//! links, `algorithms` its list of recommendation algorithms; everything below the binary takes
//! them from there.

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
mod store;
mod text;
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
    /// Maintain a region's sealed store: check it end to end, rebuild its subject index.
    Store(store::StoreArgs),
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

/// Keeps the memory the allocator frees for reuse instead of returning it to the OS: mimalloc
/// returns memory a second after it falls idle, and sled frees and reallocates node copies at
/// such a rate that an ingest or a split faults the same memory back in over and over, each
/// fault zeroing a 2 MiB transparent huge page (the demo, which does the same, ran about 10%
/// faster with it).
#[allow(unsafe_code)]
fn keep_freed_memory() {
    /// `mi_option_purge_delay` in mimalloc's `mi_option_e` (its index since mimalloc 2.1).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: `mi_option_set` stores a value in mimalloc's option table; it takes no pointer and
    // may be called at any time from any thread. -1 means "never purge".
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every command but the two servers is a batch job that exits when done.
    if !matches!(cli.command, Command::Serve(_) | Command::Gateway(_)) {
        keep_freed_memory();
    }
    match cli.command {
        Command::Audit(args) => audit::run(args),
        Command::Recsys(args) => recsys::run(args),
        Command::Split(args) => split::run_split(args),
        Command::Keys(args) => keys::run(args),
        Command::Store(args) => store::run(args),
        Command::Init(args) => init::run(args),
        Command::Ingest(args) => ingest::run(args),
        Command::Witness(args) => tlog::run_witness(args),
        Command::Pki(args) => pki::run(args),
        Command::Serve(args) => serve::run_serve(args),
        Command::Gateway(args) => serve::run_gateway(args),
    }
}
