//! The key custodian against other processes and against SIGKILL, tried as an attacker would:
//! `domicile keys rotate` looping beside `domicile split run` on the same keys; the split, a
//! rotation and a finalisation killed at random moments and run again. Each ends with every
//! shredded subject's wrapped key in no file of the keys directory and opening under no KEK
//! that remains, their records unreadable from a copy of the data taken before the shreds, and
//! every other record readable.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domicile_access::RecordRef;
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, Subject, SubjectId};
use domicile_split::Deployment;
use domicile_store::{Collection, FileCustodian, KeyCustodian, RecordKey, SealedStore};
use redb::ReadableTable;

fn policies() -> domicile_residency::PolicyResolver {
    domicile_residency::PolicyResolver::new()
        .with(Arc::new(domicile_policy_global::GlobalPolicy::new()))
        .with(Arc::new(domicile_policy_us_split::UsSplitPolicy::new()))
}

fn domicile(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_domicile"));
    command.args(args);
    command
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A pseudo-random number from the clock: each round kills at another moment.
fn jitter(bound: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (nanos
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        >> 33)
        % bound.max(1)
}

const COUNTRIES: [&str; 4] = ["US", "DE", "PR", "BR"];

fn id(i: usize) -> String {
    format!("race-subj-{i:05}")
}

fn profile(i: usize) -> Vec<u8> {
    format!("{{\"profile\":{i}}}").into_bytes()
}

/// A global deployment of `n` subjects with a Protected profile and a Public video each.
fn global_world(data: &Path, keys: &Path, n: usize) {
    let global = Deployment::create(
        data,
        keys,
        policies().resolve("global").unwrap(),
        "domicile.example",
    )
    .unwrap();
    let node = global.regions().next().unwrap();
    let app = global.migration_principal(&node.region);
    let why = Purpose::new(JustificationCode::Migration);
    for i in 0..n {
        let subject = Subject::parse(&id(i), Some(COUNTRIES[i % 4]), None).unwrap();
        node.gate.register_subject(&app, &why, &subject).unwrap();
        for (class, collection, value) in [
            (DataClass::Protected, "profile", profile(i)),
            (DataClass::Public, "videos", b"{\"v\":1}".to_vec()),
        ] {
            let record = RecordRef {
                subject: id(i).parse().unwrap(),
                class,
                collection: Collection::parse(collection).unwrap(),
                key: RecordKey::parse(&format!("{}-{collection}", id(i))).unwrap(),
            };
            node.gate.write(&app, &why, &record, &value, None).unwrap();
        }
    }
    global.close().unwrap();
}

/// Every (pseudonym, entry) of a region's key store, read with redb directly (no custodian
/// may hold it).
fn entries(keys: &Path, region: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("data_keys");
    let db = redb::Database::create(keys.join(region).join("datakeys.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(TABLE).unwrap();
    table
        .iter()
        .unwrap()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.value().to_vec(), v.value().to_vec())
        })
        .collect()
}

/// The live entries (state byte 1) of a region: what a shred must make unrecoverable.
fn live_entries(keys: &Path, region: &str) -> Vec<Vec<u8>> {
    entries(keys, region)
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v.len() > 14 && v[5] == 1)
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let first = needle[0];
    haystack
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == first)
        .any(|(i, _)| haystack[i..].starts_with(needle))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every KEK file left anywhere under `keys`: (its version, its secret).
fn remaining_keks(keys: &Path) -> Vec<(u32, Vec<u8>)> {
    files_under(keys)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|x| x == "kek"))
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap();
            assert_eq!(&bytes[..4], b"DMKK", "{}", f.display());
            (
                u32::from_be_bytes(bytes[5..9].try_into().unwrap()),
                bytes[9..41].to_vec(),
            )
        })
        .collect()
}

/// Whether the wrapped key in `entry` opens under `secret`, as the custodian would open it
/// (AAD = lp(label) ‖ lp(region) ‖ u32 KEK version ‖ u32 data key version).
fn opens_under(entry: &[u8], region: &str, secret: &[u8]) -> bool {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let version = &entry[6..10];
    let kek_version = &entry[10..14];
    let wrapped = &entry[14..];
    let mut aad = Vec::new();
    for field in [b"domicile.data-key.v2".as_slice(), region.as_bytes()] {
        aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
        aad.extend_from_slice(field);
    }
    aad.extend_from_slice(kek_version);
    aad.extend_from_slice(version);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, secret).unwrap());
    let nonce = Nonce::try_assume_unique_for_key(&wrapped[..12]).unwrap();
    let mut sealed = wrapped[12..].to_vec();
    key.open_in_place(nonce, Aad::from(aad), &mut sealed)
        .is_ok()
}

/// The attacker's checks on shredded keys: no file left under `keys` holds any of their
/// wrapped bytes, and none opens under any KEK left in `keys`.
fn assert_shreds_final(keys: &Path, region: &str, shredded: &[Vec<u8>]) {
    assert!(!shredded.is_empty());
    for file in files_under(keys) {
        let bytes = std::fs::read(&file).unwrap();
        for entry in shredded {
            assert!(
                !contains(&bytes, &entry[14..]),
                "{} still holds a shredded subject's wrapped key",
                file.display()
            );
        }
    }
    let keks = remaining_keks(keys);
    assert!(!keks.is_empty());
    for (version, secret) in &keks {
        for entry in shredded {
            assert!(
                !opens_under(entry, region, secret),
                "a shredded key opens under remaining KEK v{version}"
            );
        }
    }
}

/// No record of `region` in the pre-shred copy `old_data` opens with the keys as they are now.
fn assert_old_copy_unreadable(old_data: &Path, keys: &Path, region: &str, policy: &str) {
    let custodian = Arc::new(FileCustodian::open_existing(keys).unwrap());
    let store = SealedStore::open(
        old_data,
        Region::parse(region).unwrap(),
        policies().resolve(policy).unwrap(),
        custodian,
    )
    .unwrap();
    let mut refused = 0;
    for collection in ["profile", "videos"] {
        for record in store.scan_collection(&Collection::parse(collection).unwrap()) {
            let err = record.expect_err("a shredded subject's record opened from an old copy");
            assert!(err.to_string().contains("shredded"), "{err}");
            refused += 1;
        }
    }
    assert!(refused > 0, "the old copy held no record to try");
}

/// Every subject's profile reads back, with its value, in its home region of the split.
fn assert_split_readable(data: &Path, keys: &Path, n: usize, except: &[usize]) {
    let custodian: Arc<dyn KeyCustodian> = Arc::new(FileCustodian::open_existing(keys).unwrap());
    let policy = policies().resolve("us-split").unwrap();
    let open = |r: &str| {
        SealedStore::open(
            data,
            Region::parse(r).unwrap(),
            policy.clone(),
            custodian.clone(),
        )
        .unwrap()
    };
    let (us, row) = (open("us"), open("row"));
    let collection = Collection::parse("profile").unwrap();
    for i in (0..n).filter(|i| !except.contains(i)) {
        let store = if matches!(COUNTRIES[i % 4], "US" | "PR") {
            &us
        } else {
            &row
        };
        let key = RecordKey::parse(&format!("{}-profile", id(i))).unwrap();
        let record = store
            .get_raw(&collection, &key)
            .unwrap_or_else(|e| panic!("{}: {e}", id(i)))
            .unwrap_or_else(|| panic!("{} lost its profile", id(i)));
        assert_eq!(record.value, profile(i));
    }
}

fn split_run(data: &Path, keys: &Path) -> Command {
    let mut command = domicile(&[
        "split",
        "run",
        "--data",
        data.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
        "--to",
        "us-split",
        "--quiet",
    ]);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

#[test]
fn rotation_looping_beside_a_split_loses_no_shred_and_no_key() {
    const N: usize = 160;
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    global_world(&data, &keys, N);
    let before = live_entries(&keys, "global");
    assert_eq!(before.len(), N);
    let old_data = dir.path().join("old-data");
    copy_dir(&data, &old_data);

    // One subject per batch: 160 batches, each journaled and logged, so the split holds the
    // keys long enough for rotations to meet it (with the default batch it can finish first).
    let split = split_run(&data, &keys)
        .args(["--batch", "1"])
        .spawn()
        .unwrap();
    let (mut rotated, mut refused) = (0, 0);
    let split_out = {
        let mut split = split;
        loop {
            let out = domicile(&[
                "keys",
                "rotate",
                "--keys",
                keys.to_str().unwrap(),
                "--region",
                "global",
                "--wait",
                "1",
            ])
            .output()
            .unwrap();
            if out.status.success() {
                rotated += 1;
            } else {
                // The only acceptable failure: the split holds the keys, and says so.
                let t = text(&out);
                assert!(
                    t.contains("in use by pid") && t.contains("domicile split"),
                    "{t}"
                );
                refused += 1;
            }
            if split.try_wait().unwrap().is_some() {
                break split.wait_with_output().unwrap();
            }
        }
    };
    assert!(split_out.status.success(), "{}", text(&split_out));
    assert!(refused > 0, "no rotation ran while the split held the keys");
    eprintln!("{rotated} rotations ran, {refused} were refused while the split held the keys");
    // And after the split, rotation goes on.
    let out = domicile(&[
        "keys",
        "rotate",
        "--keys",
        keys.to_str().unwrap(),
        "--region",
        "us",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    assert!(live_entries(&keys, "global").is_empty());
    assert_shreds_final(&keys, "global", &before);
    assert_old_copy_unreadable(&old_data, &keys, "global", "global");
    assert_split_readable(&data, &keys, N, &[]);
}

#[test]
fn a_split_killed_at_random_moments_finishes_with_every_shred_final() {
    const N: usize = 120;
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    global_world(&data, &keys, N);
    let before = live_entries(&keys, "global");
    let old_data = dir.path().join("old-data");
    copy_dir(&data, &old_data);
    // How long an uninterrupted split takes here, to kill within it.
    let probe = dir.path().join("probe");
    copy_dir(&data, &probe.join("data"));
    copy_dir(&keys, &probe.join("keys"));
    // One subject per batch, so that the split lasts long enough to be killed in (the batched
    // journal made the default run short).
    let slow = |data: &Path, keys: &Path| {
        let mut command = split_run(data, keys);
        command.args(["--batch", "1"]);
        command
    };
    let start = Instant::now();
    let out = slow(&probe.join("data"), &probe.join("keys"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let full = start.elapsed().as_millis() as u64;

    let mut kills = 0;
    for round in 0..6 {
        let mut child = slow(&data, &keys).spawn().unwrap();
        // The first round is killed a quarter of the way in, so that at least one kill lands;
        // the others at random moments.
        let wait = if round == 0 { full / 4 } else { jitter(full) };
        std::thread::sleep(Duration::from_millis(wait));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    let out = slow(&data, &keys).output().unwrap();
    assert!(out.status.success(), "after {kills} kills: {}", text(&out));
    assert!(kills > 0);
    // The signed report holds one receipt per subject whose key the split destroyed, whichever
    // run destroyed it: a kill between keys destroyed and their receipts loses none.
    let report: domicile_split::SignedReport = serde_json::from_slice(
        &std::fs::read(domicile_split::split_dir(&data).join("report.json")).unwrap(),
    )
    .unwrap();
    let receipts = &report.report.shred_receipts;
    let distinct: std::collections::BTreeSet<_> =
        receipts.iter().map(|r| &r.subject_pseudonym).collect();
    assert_eq!(
        (receipts.len(), distinct.len()),
        (N, N),
        "after {kills} kills"
    );
    assert_shreds_final(&keys, "global", &before);
    assert_old_copy_unreadable(&old_data, &keys, "global", "global");
    assert_split_readable(&data, &keys, N, &[]);
}

/// A split deployment of `n` subjects (small, done once per test).
fn split_world(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let (data, keys) = (dir.join("data"), dir.join("keys"));
    global_world(&data, &keys, n);
    let out = split_run(&data, &keys).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    (data, keys)
}

fn keys_command(verb: &str, keys: &Path, region: &str) -> Command {
    let mut command = domicile(&[
        "keys",
        verb,
        "--keys",
        keys.to_str().unwrap(),
        "--region",
        region,
    ]);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// Runs `keys VERB` once to time it, then `rounds` times killed at a random moment within that
/// time, calling `check` after each kill; returns how many were killed mid-run.
fn kill_rounds(
    verb: &str,
    keys: &Path,
    region: &str,
    rounds: usize,
    mut check: impl FnMut(),
) -> usize {
    let start = Instant::now();
    let out = keys_command(verb, keys, region).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let full = start.elapsed().as_micros() as u64;
    let mut kills = 0;
    for _ in 0..rounds {
        let mut child = keys_command(verb, keys, region).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(jitter(full)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        check();
    }
    kills
}

#[test]
fn rotation_and_finalisation_killed_at_random_moments_lose_no_key_and_no_shred() {
    const N: usize = 240;
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = split_world(dir.path(), N);

    // Rotation: after every kill, every record of the split still opens.
    let kills = kill_rounds("rotate", &keys, "us", 8, || {
        assert_split_readable(&data, &keys, N, &[]);
    });
    eprintln!("rotate: {kills} of 8 rounds killed mid-run");

    // Shred some US subjects (as an erasure request would), keeping a copy of the data.
    let old_data = dir.path().join("old-data");
    copy_dir(&data, &old_data);
    let shredded: Vec<usize> = (0..N)
        .filter(|i| COUNTRIES[i % 4] == "US" && i % 3 == 0)
        .collect();
    let shredded_entries = {
        let custodian = Arc::new(FileCustodian::open_existing(&keys).unwrap());
        let store = SealedStore::open(
            &data,
            Region::parse("us").unwrap(),
            policies().resolve("us-split").unwrap(),
            custodian.clone(),
        )
        .unwrap();
        let pseudonyms = custodian
            .pseudonym_key(&Region::parse("us").unwrap())
            .unwrap();
        let wanted: Vec<[u8; 16]> = shredded
            .iter()
            .map(|i| pseudonyms.pseudonym(&SubjectId::parse(&id(*i)).unwrap()).0)
            .collect();
        drop(store);
        custodian.release(&Region::parse("us").unwrap());
        let found: Vec<Vec<u8>> = entries(&keys, "us")
            .into_iter()
            .filter(|(p, _)| wanted.iter().any(|w| w.as_slice() == p.as_slice()))
            .map(|(_, v)| v)
            .collect();
        assert_eq!(found.len(), shredded.len());
        let store = SealedStore::open(
            &data,
            Region::parse("us").unwrap(),
            policies().resolve("us-split").unwrap(),
            custodian,
        )
        .unwrap();
        let ids: Vec<SubjectId> = shredded
            .iter()
            .map(|i| SubjectId::parse(&id(*i)).unwrap())
            .collect();
        store.shred_subjects(&ids).unwrap();
        found
    };

    // Finalisation: after every kill, every record not shredded still opens.
    let kills = kill_rounds("finalize", &keys, "us", 8, || {
        assert_split_readable(&data, &keys, N, &shredded);
    });
    eprintln!("finalize: {kills} of 8 rounds killed mid-run");
    let out = keys_command("finalize", &keys, "us").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_shreds_final(&keys, "us", &shredded_entries);
    // The old copy's us store: the shredded subjects' records open under no key.
    let custodian = Arc::new(FileCustodian::open_existing(&keys).unwrap());
    let store = SealedStore::open(
        &old_data,
        Region::parse("us").unwrap(),
        policies().resolve("us-split").unwrap(),
        custodian,
    )
    .unwrap();
    let collection = Collection::parse("profile").unwrap();
    for i in &shredded {
        let key = RecordKey::parse(&format!("{}-profile", id(*i))).unwrap();
        let err = store.get_raw(&collection, &key).unwrap_err();
        assert!(err.to_string().contains("shredded"), "{err}");
    }
    drop(store);
    assert_split_readable(&data, &keys, N, &shredded);
}

#[test]
fn a_second_process_is_told_who_holds_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (_data, keys) = split_world(dir.path(), 4);
    let custodian = FileCustodian::open_existing(&keys).unwrap();
    let us = Region::parse("us").unwrap();
    custodian.rotate_kek(&us).unwrap();
    let out = domicile(&[
        "keys",
        "rotate",
        "--keys",
        keys.to_str().unwrap(),
        "--region",
        "us",
        "--wait",
        "0",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains(&format!("in use by pid {}", std::process::id())) && t.contains("keys.lock"),
        "{t}"
    );
    // Let go, and the other process proceeds.
    custodian.release(&us);
    let out = domicile(&[
        "keys",
        "rotate",
        "--keys",
        keys.to_str().unwrap(),
        "--region",
        "us",
        "--wait",
        "0",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_key_layout_2_directory_is_refused_naming_the_layout_and_then_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = split_world(dir.path(), 8);
    // Rebuild the layout-2 form of `us`: one file per entry under subjects/, no key store.
    let us_keys = keys.join("us");
    std::fs::create_dir(us_keys.join("subjects")).unwrap();
    let held = entries(&keys, "us");
    for (pseudonym, entry) in &held {
        let hex: String = pseudonym.iter().map(|b| format!("{b:02x}")).collect();
        let path = us_keys.join("subjects").join(format!("{hex}.dk"));
        std::fs::write(&path, entry).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::remove_file(us_keys.join("datakeys.redb")).unwrap();
    let (d, k) = (data.to_str().unwrap(), keys.to_str().unwrap());
    let out = domicile(&["keys", "rotate", "--keys", k, "--region", "us"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("key layout 2") && t.contains("domicile keys migrate"),
        "{t}"
    );
    let out = domicile(&["keys", "migrate", "--keys", k])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let moved = format!("us: {} data key(s) moved", held.len());
    assert!(text(&out).contains(&moved), "{}", text(&out));
    assert!(!us_keys.join("subjects").exists());
    let out = domicile(&["split", "verify", "--data", d, "--keys", k])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_split_readable(&data, &keys, 8, &[]);
}
