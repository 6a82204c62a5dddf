//! A service embedding the sealed store, start to finish: open a region's store under the US
//! split, register users, write and read their records, watch the policy refuse a misplaced
//! record, catch a tampered ciphertext, rotate the key-encryption key, move a user to another
//! store through a sealed export bundle, and crypto-shred a user — then show that an old copy of
//! the data directory no longer opens their records.
//!
//! Run it with `cargo run --example embed_store` (it works in a fresh temporary directory that it
//! removes afterwards, or in the directory given with `--dir`, which it keeps).

use std::path::{Path, PathBuf};

use clap::Parser;
use std::sync::Arc;

use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, Region, ResidencyPolicy, Subject};
use domicile_store::{
    Collection, ExportBundle, FileCustodian, KeyCustodian, RecordKey, SealedStore, StoreError,
    TransferKey,
};
use serde::{Deserialize, Serialize};

/// What the service keeps about a user's profile.
#[derive(Debug, Serialize, Deserialize)]
struct Profile {
    display_name: String,
    birth_year: u16,
    device_id: String,
}

/// One entry of a user's watch history.
#[derive(Debug, Serialize, Deserialize)]
struct Watched {
    video: String,
    seconds: u32,
}

/// A service embedding the sealed store: placement, sealing, tampering, rotation, export and
/// crypto-shredding, step by step.
#[derive(Debug, Parser)]
#[command(name = "embed_store")]
struct Args {
    /// Work in this directory and keep it (default: a temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let root = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("domicile-embed-store-{}", std::process::id())),
    };
    let result = run(&root);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

fn run(root: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let (data, keys) = (root.join("data"), root.join("keys"));
    let policy: Arc<dyn ResidencyPolicy> = Arc::new(UsSplitPolicy::new());
    let us = Region::parse("us")?;

    println!("== open the us region's store");
    let custodian = Arc::new(FileCustodian::open(&keys)?);
    let store = SealedStore::open(&data, us.clone(), policy.clone(), custodian.clone())?;
    println!(
        "   data in {}",
        SealedStore::store_dir(&data, &us).display()
    );
    println!("   keys in {}", custodian.region_dir(&us).display());

    println!("== register users; the policy finds each one's home region");
    let users = [
        Subject::parse("user-1001", Some("US"), None)?,
        Subject::parse("user-1002", Some("PR"), None)?,
        Subject::parse("user-2001", Some("DE"), None)?,
    ];
    for user in &users {
        let home = store.register_subject(user)?;
        println!(
            "   {} (lives in {}) -> home {home}",
            user.id,
            user.require_residence()?
        );
    }

    println!("== write records, each sealed under its user's own data key");
    let profiles = Collection::parse("profiles")?;
    let history = Collection::parse("watch-history")?;
    for (i, user) in users[..2].iter().enumerate() {
        let profile = Profile {
            display_name: format!("Viewer {}", i + 1),
            birth_year: 1990 + i as u16,
            device_id: format!("dev-{:04x}", 0xbeef + i),
        };
        store.put(
            &user.id,
            DataClass::Protected,
            &profiles,
            &RecordKey::parse(user.id.as_str())?,
            &profile,
        )?;
        for v in 0..3 {
            let entry = Watched {
                video: format!("video-{v}"),
                seconds: 30 * (v + 1),
            };
            let key = RecordKey::parse(&format!("{}/{v}", user.id))?;
            store.put(&user.id, DataClass::Protected, &history, &key, &entry)?;
        }
    }
    let first = &users[0].id;
    let record = store
        .get::<Profile>(&profiles, &RecordKey::parse(first.as_str())?)?
        .ok_or("the profile was just written")?;
    println!("   read back {}: {:?}", record.meta.key, record.value);
    let watched = store.scan_subject(first)?;
    println!("   {} holds {} records", first, watched.len());
    let raw = store
        .get_raw(&profiles, &RecordKey::parse(first.as_str())?)?
        .ok_or("present")?;
    println!(
        "   digest of what was read (for the audit log): {}",
        raw.digest()
    );

    println!("== the policy refuses to place a rest-of-world user's Protected data in us");
    let outsider = &users[2].id;
    let refused = store.put(
        outsider,
        DataClass::Protected,
        &profiles,
        &RecordKey::parse(outsider.as_str())?,
        &Profile {
            display_name: "Zuschauer".into(),
            birth_year: 1985,
            device_id: "dev-de".into(),
        },
    );
    match refused {
        Err(e @ StoreError::PlacementRefused { .. }) => println!("   refused: {e}"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    store.put(
        outsider,
        DataClass::Public,
        &Collection::parse("public-videos")?,
        &RecordKey::parse("v-77")?,
        "a public video's title",
    )?;
    println!("   but their Public data may rest here");

    println!("== a flipped byte on disk is caught, naming the record");
    let key = RecordKey::parse(&format!("{first}/0"))?;
    // The backend holds only ciphertext; find this record's entry by its key's suffix.
    let (backend_key, original) = store
        .backend()
        .scan_prefix(b"")
        .filter_map(Result::ok)
        .find(|(k, _)| k.ends_with(key.as_str().as_bytes()))
        .ok_or("present")?;
    let mut tampered = original.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    store.backend().put(&backend_key, &tampered)?;
    println!("   {}", store.get_raw(&history, &key).unwrap_err());
    store.backend().put(&backend_key, &original)?;
    store.flush()?;

    println!("== rotate the key-encryption key; no record is re-encrypted");
    let report = store.rotate_kek()?;
    println!(
        "   {} data keys rewrapped under {}",
        report.rewrapped, report.kek
    );
    let old = custodian.kek_versions(&us)?[0];
    custodian.retire_kek(&us, old)?;
    println!(
        "   retired {old}; every record still opens: {}",
        store.scan_collection(&history).all(|r| r.is_ok())
    );

    println!("== move user-1002 to another store through a sealed export bundle");
    let mover = &users[1].id;
    let (bundle, transfer_key) = store.export_subject(mover)?;
    let bundle_path = root.join("user-1002.bundle.json");
    std::fs::write(&bundle_path, bundle.to_bytes())?;
    println!(
        "   wrote {} ({} records, no plaintext)",
        bundle_path.display(),
        bundle.records.len()
    );
    let other_custodian = Arc::new(FileCustodian::open(root.join("keys-new"))?);
    let target = SealedStore::open(
        root.join("data-new"),
        us.clone(),
        policy.clone(),
        other_custodian,
    )?;
    let bundle = ExportBundle::from_bytes(&std::fs::read(&bundle_path)?)?;
    let imported = target.import(&bundle, &TransferKey::from_bytes(transfer_key.to_bytes())?)?;
    println!(
        "   imported {} records for {} (home {})",
        imported.records.len(),
        imported.subject,
        imported.home
    );

    println!("== copy the data directory, then shred user-1001");
    drop(store);
    let copy = root.join("data-copy");
    copy_dir(&data, &copy)?;
    let store = SealedStore::open(&data, us.clone(), policy.clone(), custodian.clone())?;
    let receipt = store.shred_subject(first)?;
    println!(
        "   destroyed data key v{} and {} records: {:?}",
        receipt.data_key_version,
        receipt.records.len(),
        receipt
            .records
            .iter()
            .map(|(c, k)| format!("{c}/{k}"))
            .collect::<Vec<_>>()
    );
    drop(store);
    let old_copy = SealedStore::open(&copy, us.clone(), policy, custodian)?;
    match old_copy.get_raw(&profiles, &RecordKey::parse(first.as_str())?) {
        Err(e) => println!("   the old copy still holds the ciphertext, but: {e}"),
        Ok(r) => return Err(format!("a shredded record opened: {r:?}").into()),
    }
    let others = old_copy.scan_subject(mover)?;
    println!(
        "   while {mover}'s {} records in the copy still open",
        others.len()
    );
    println!("== done");
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
