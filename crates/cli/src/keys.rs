//! `domicile keys`: the key custodian's region keys, for operators.
//!
//! `list` shows each region's key-encryption key versions; `rotate` rewraps every data key of a
//! region under a new KEK (no record is re-encrypted; run it again to finish an interrupted
//! rotation); `retire` deletes an old KEK once no data key needs it; `finalize` makes a region's
//! shreds final (every live key rewrapped under a new KEK into a fresh key store, every older KEK
//! destroyed); `migrate` moves a key layout 2 directory (one file per data key) into the key
//! store of layout 3.
//!
//! Every command works on an existing keys directory only, and waits up to `--wait` seconds
//! for another process holding a region's keys (a split, say) before saying who holds them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
        /// Seconds to wait for another process holding the region's keys.
        #[arg(long, default_value_t = 10)]
        wait: u64,
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
        /// Seconds to wait for another process holding the region's keys.
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Make a region's shreds final: rewrap every live data key under a new key-encryption key
    /// (into a fresh key store) and destroy every older key-encryption key.
    Finalize {
        /// The key custodian's root.
        #[arg(long)]
        keys: PathBuf,
        /// The region.
        #[arg(long)]
        region: String,
        /// Seconds to wait for another process holding the region's keys.
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Move every region of a key layout 2 directory (one file per data key) into key layout 3.
    Migrate {
        /// The key custodian's root.
        #[arg(long)]
        keys: PathBuf,
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
            let custodian = FileCustodian::open_existing(&keys)?;
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
        KeysCommand::Rotate { keys, region, wait } => {
            let region = Region::parse(&region)?;
            existing_region(&keys, &region)?;
            let custodian = FileCustodian::open_existing(&keys)?;
            custodian.set_lock_wait(Duration::from_secs(wait));
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
            wait,
        } => {
            let number = version
                .trim_start_matches('v')
                .parse::<u32>()
                .map_err(|_| {
                    KeysError::Usage(format!("version {version:?}: expected a number such as v1"))
                })?;
            let region = Region::parse(&region)?;
            existing_region(&keys, &region)?;
            let custodian = FileCustodian::open_existing(&keys)?;
            custodian.set_lock_wait(Duration::from_secs(wait));
            custodian.retire_kek(&region, KekVersion(number))?;
            println!("{region}: key-encryption key v{number} retired");
            Ok(())
        }
        KeysCommand::Finalize { keys, region, wait } => {
            let region = Region::parse(&region)?;
            existing_region(&keys, &region)?;
            let custodian = FileCustodian::open_existing(&keys)?;
            custodian.set_lock_wait(Duration::from_secs(wait));
            let before = custodian.kek_versions(&region)?;
            let current = custodian.finalize_shreds(&region)?;
            let destroyed: Vec<String> = before
                .iter()
                .filter(|v| **v < current)
                .map(KekVersion::to_string)
                .collect();
            println!(
                "{region}: shreds final: every live data key rewrapped under {current} in a fresh key store; destroyed key-encryption key(s) {}",
                destroyed.join(", ")
            );
            Ok(())
        }
        KeysCommand::Migrate { keys } => {
            let custodian = FileCustodian::open_existing(&keys)?;
            let mut regions = Vec::new();
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
                    regions.push(region);
                }
            }
            regions.sort();
            for region in regions {
                let moved = custodian.migrate_file_keys(&region)?;
                if moved == 0 {
                    println!("{region}: already in key layout 3");
                } else {
                    println!("{region}: {moved} data key(s) moved into {region}/datakeys.redb");
                }
            }
            Ok(())
        }
    }
}
