//! `domicile store`: maintenance of a region's sealed store, for operators.
//!
//! `check` reads a region's store end to end, as after a restore, a crash or before a split:
//! every record and registry entry is opened, and the subject index compared with the owner
//! each record names. It writes nothing and prints what it found by collection and blind index
//! or pseudonym, never a record key or subject id; the exit code says whether the store is
//! sound (0), not sound (2), or could not be checked (1).
//!
//! `reindex` rebuilds a region's subject index (the index journal and every subject's list)
//! from the owner each record's header names: the repair for a store whose index was changed
//! or cut short on disk (`the store's subject index is corrupt`). It decrypts nothing and needs
//! no key beyond the check that the keys directory is the deployment's own; the region must not
//! be open elsewhere (a running `domicile serve` holds its store).

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
    /// Read a region's store end to end and report what is wrong with it (exit 0: sound, 2: not
    /// sound, 1: could not check).
    Check {
        #[command(flatten)]
        store: RegionStore,
        /// Print the whole report as JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a region's subject index from its records (the repair for a corrupt index).
    Reindex {
        #[command(flatten)]
        store: RegionStore,
    },
}

/// Which region's store: the deployment's directories and the region.
#[derive(Debug, clap::Args)]
struct RegionStore {
    /// The deployment's data directory.
    #[arg(long)]
    data: PathBuf,
    /// The deployment's keys directory.
    #[arg(long)]
    keys: PathBuf,
    /// The region.
    #[arg(long)]
    region: String,
}

impl RegionStore {
    /// Opens the region's store with the deployment's keys (never creating either).
    fn open(&self) -> Result<(Region, SealedStore), StoreCommandError> {
        let region = Region::parse(&self.region)?;
        let store = Deployment::open_region_store(
            &self.data,
            &self.keys,
            &crate::policies::resolver(),
            &region,
        )?;
        Ok((region, store))
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
    match command(args.command) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::NotSound) => ExitCode::from(2),
        Err(e) => {
            eprintln!("domicile store: {e}");
            ExitCode::from(1)
        }
    }
}

fn command(command: StoreCommand) -> Result<Outcome, StoreCommandError> {
    match command {
        StoreCommand::Check { store, json } => {
            let (region, store) = store.open()?;
            let report = store.check()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_check(&region, &report);
            }
            Ok(if report.is_sound() {
                Outcome::Done
            } else {
                Outcome::NotSound
            })
        }
        StoreCommand::Reindex { store } => {
            let (region, store) = store.open()?;
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
