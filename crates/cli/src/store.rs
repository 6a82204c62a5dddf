//! `domicile store`: maintenance of a region's sealed store, for operators.
//!
//! `check` reads a region's store end to end, as after a restore, a crash or before a split:
//! every record and registry entry is opened, and the subject index compared with the owner
//! each record names. It writes nothing and prints what it found by collection and blind index
//! or pseudonym, never a record key or subject id; the exit code says whether the store is
//! sound (0), not sound (2), or could not be checked (1). It needs the store to itself; a
//! running node checks its own store over its API (`POST /v1/store/check`), and the error for
//! a store a node holds says so.
//!
//! `reindex` rebuilds a region's subject index (the index journal and every subject's list)
//! from the owner each record's header names: the repair for a store whose index was changed
//! or cut short on disk (`the store's subject index is corrupt`). It decrypts nothing and needs
//! no key beyond the check that the keys directory is the deployment's own; the region must not
//! be open elsewhere (a running `domicile serve` holds its store).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
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
    /// (exit 0: sound, 2: not sound, 1: could not check).
    Check {
        #[command(flatten)]
        deployment: DeploymentDirs,
        /// The region; every region of the deployment's policy if omitted.
        #[arg(long)]
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
    },
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

/// Findings of one kind printed in a summary before "and N more".
const LISTED: usize = 20;

/// Runs `domicile store`.
pub(crate) fn run(args: StoreArgs) -> ExitCode {
    let checking = matches!(args.command, StoreCommand::Check { .. });
    match command(args.command) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::NotSound) => ExitCode::from(2),
        Err(e) => {
            eprintln!("domicile store: {e}");
            if checking && e.store_in_use() {
                eprintln!(
                    "domicile store: a serving node checks its own store: POST /v1/store/check \
                     as the region's security staff (docs/node.md)"
                );
            }
            ExitCode::from(1)
        }
    }
}

fn command(command: StoreCommand) -> Result<Outcome, StoreCommandError> {
    match command {
        StoreCommand::Check {
            deployment,
            region,
            json,
        } => {
            let regions = match region {
                Some(region) => vec![Region::parse(&region)?],
                None => deployment.regions()?,
            };
            let mut reports = BTreeMap::new();
            for region in regions {
                let store = deployment.open(&region)?;
                let report = store.check()?;
                if !json {
                    print_check(&region, &report);
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
        StoreCommand::Reindex { deployment, region } => {
            let region = Region::parse(&region)?;
            let store = deployment.open(&region)?;
            let rebuilt = store.rebuild_index()?;
            println!(
                "{region}: subject index rebuilt from {} record(s) of {} subject(s); replaced {} list(s) and {} journal entr{}",
                rebuilt.records,
                rebuilt.subjects,
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

/// The summary `domicile store check` prints.
fn print_check(region: &Region, report: &StoreCheck) {
    println!(
        "{region}: {} record(s) and {} subject(s) open; {} left behind shreds (they open for no one until a purge or the shred is rerun); {} stale index id(s); {} journal entr{} to fold",
        report.records,
        report.subjects,
        report.shredded,
        report.stale_index_ids,
        report.journal_entries,
        if report.journal_entries == 1 { "y" } else { "ies" },
    );
    const REPAIR: &str = " (repair: domicile store reindex)";
    let kinds = [
        ("unreadable: does not open", &report.unreadable, ""),
        (
            "unindexed: missing from the subject index",
            &report.unindexed,
            REPAIR,
        ),
        (
            "corrupt: an entry of the subject index that does not parse",
            &report.corrupt_index,
            REPAIR,
        ),
        (
            "unregistered: records open, but no registry entry",
            &report.unregistered,
            " (repair: register the subject again)",
        ),
        (
            "misplaced: the policy does not let it rest in this region",
            &report.misplaced,
            " (move it to its subject's home region)",
        ),
    ];
    for (what, findings, repair) in kinds {
        if findings.is_empty() {
            continue;
        }
        println!("{region}: {} {what}{repair}:", findings.len());
        for finding in findings.iter().take(LISTED) {
            println!("  {}: {}", finding.entry, finding.reason);
        }
        if findings.len() > LISTED {
            println!(
                "  … and {} more (--json lists every one)",
                findings.len() - LISTED
            );
        }
    }
    println!(
        "{region}: {}",
        if report.is_sound() {
            "sound"
        } else {
            "NOT SOUND"
        }
    );
}
