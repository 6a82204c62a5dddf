//! `domicile store`: maintenance of a region's sealed store, for operators.
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

/// Arguments of `domicile store`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Rebuild a region's subject index from its records (the repair for a corrupt index).
    Reindex {
        /// The deployment's data directory.
        #[arg(long)]
        data: PathBuf,
        /// The deployment's keys directory.
        #[arg(long)]
        keys: PathBuf,
        /// The region.
        #[arg(long)]
        region: String,
    },
}

#[derive(Debug, thiserror::Error)]
enum StoreCommandError {
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(transparent)]
    Store(#[from] domicile_store::StoreError),
    #[error(transparent)]
    Region(#[from] domicile_residency::ResidencyError),
}

/// Runs `domicile store`.
pub(crate) fn run(args: StoreArgs) -> ExitCode {
    match command(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("domicile store: {e}");
            ExitCode::from(1)
        }
    }
}

fn command(command: StoreCommand) -> Result<(), StoreCommandError> {
    match command {
        StoreCommand::Reindex { data, keys, region } => {
            let region = Region::parse(&region)?;
            let store =
                Deployment::open_region_store(&data, &keys, &crate::policies::resolver(), &region)?;
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
            Ok(())
        }
    }
}
