//! `domicile keys`: the key custodian's region keys, for operators.
//!
//! `list` shows each region's key-encryption key versions; `rotate` rewraps every data key of a
//! region under a new KEK (no record is re-encrypted; run it again to finish an interrupted
//! rotation); `retire` deletes an old KEK once no data key needs it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use domicile_residency::Region;
use domicile_store::{FileCustodian, KekVersion, KeyCustodian, StoreError};

/// Arguments of `domicile keys`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List the key-encryption key versions of each region (or of one).
    List {
        /// The key custodian's root.
        #[arg(long)]
        keys: PathBuf,
        /// Only this region.
        #[arg(long)]
        region: Option<String>,
    },
    /// Rewrap every data key of a region under a new key-encryption key.
    Rotate {
        /// The key custodian's root.
        #[arg(long)]
        keys: PathBuf,
        /// The region.
        #[arg(long)]
        region: String,
    },
    /// Delete an old key-encryption key once no data key is wrapped under it.
    Retire {
        /// The key custodian's root.
        #[arg(long)]
        keys: PathBuf,
        /// The region.
        #[arg(long)]
        region: String,
        /// The version to retire (as `list` shows it, with or without the `v`).
        #[arg(long)]
        version: String,
    },
}

#[derive(Debug, thiserror::Error)]
enum KeysError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Region(#[from] domicile_residency::ResidencyError),
    #[error("{0}")]
    Usage(String),
}

/// Runs `domicile keys`.
pub(crate) fn run(args: KeysArgs) -> ExitCode {
    match command(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(KeysError::Usage(msg)) => {
            eprintln!("domicile keys: {msg}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("domicile keys: {e}");
            ExitCode::from(1)
        }
    }
}

/// Refuses a keys directory that holds no key-encryption keys for `region`, before anything is
/// opened: a mistyped `--keys` must not create a new, empty custodian (only `domicile init`
/// creates keys).
fn existing_region(keys: &std::path::Path, region: &Region) -> Result<(), KeysError> {
    if keys.join(region.as_str()).join("kek").is_dir() {
        return Ok(());
    }
    Err(KeysError::Usage(format!(
        "{} holds no key-encryption keys for region {region}: is --keys right? (`domicile init` creates a deployment's keys)",
        keys.display()
    )))
}

fn command(command: KeysCommand) -> Result<(), KeysError> {
    match command {
        KeysCommand::List { keys, region } => {
            if !keys.is_dir() {
                return Err(KeysError::Usage(format!(
                    "{} is not a key directory",
                    keys.display()
                )));
            }
            let custodian = FileCustodian::open(&keys)?;
            let regions: Vec<Region> = match region {
                Some(r) => vec![Region::parse(&r)?],
                None => {
                    let mut found = Vec::new();
                    let entries = std::fs::read_dir(&keys).map_err(|e| StoreError::Io {
                        action: "list",
                        path: keys.clone(),
                        source: e,
                    })?;
                    for entry in entries.flatten() {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        if let (true, Ok(region)) =
                            (entry.path().join("kek").is_dir(), Region::parse(&name))
                        {
                            found.push(region);
                        }
                    }
                    found.sort();
                    found
                }
            };
            for region in regions {
                let versions: Vec<String> = custodian
                    .kek_versions(&region)?
                    .iter()
                    .map(KekVersion::to_string)
                    .collect();
                println!(
                    "{:<8} key-encryption keys: {}",
                    region.as_str(),
                    versions.join(", ")
                );
            }
            Ok(())
        }
        KeysCommand::Rotate { keys, region } => {
            let region = Region::parse(&region)?;
            existing_region(&keys, &region)?;
            let custodian = FileCustodian::open(&keys)?;
            let report = custodian.rotate_kek(&region)?;
            println!(
                "{}: {} data key(s) rewrapped under {}{}{}",
                report.region,
                report.rewrapped,
                report.kek,
                if report.resumed {
                    " (resumed an interrupted rotation)"
                } else {
                    ""
                },
                if report.complete {
                    "; complete"
                } else {
                    "; not complete, run it again"
                }
            );
            Ok(())
        }
        KeysCommand::Retire {
            keys,
            region,
            version,
        } => {
            let number = version
                .trim_start_matches('v')
                .parse::<u32>()
                .map_err(|_| {
                    KeysError::Usage(format!("version {version:?}: expected a number such as v1"))
                })?;
            let region = Region::parse(&region)?;
            existing_region(&keys, &region)?;
            let custodian = FileCustodian::open(&keys)?;
            custodian.retire_kek(&region, KekVersion(number))?;
            println!("{region}: key-encryption key v{number} retired");
            Ok(())
        }
    }
}
