//! A split of a generated world: invariants 1 and 8 checked by reading every store directly,
//! no plaintext in any region's files, every log verifying, and SIGKILL at random points during
//! a split followed by a rerun ending in the same state as an uninterrupted run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use domicile_access::RecordRef;
use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, ResidencyPolicy, Subject};
use domicile_split::{run, Deployment, Journal, MigrationKey, RunOptions, SplitError};
use domicile_store::{Collection, FileCustodian, KeyCustodian, SealedStore};

/// The policies these tests link, as a binary's composition root would list them.
fn policies() -> domicile_residency::PolicyResolver {
    domicile_residency::PolicyResolver::new()
        .with(Arc::new(domicile_policy_global::GlobalPolicy::new()))
        .with(Arc::new(domicile_policy_us_split::UsSplitPolicy::new()))
}

/// (subject, collection, key or country) → value.
type Records = BTreeMap<(String, String, String), Vec<u8>>;

const MARKER: &str = "PLAINTEXT-MARKER-7c1e";
const COUNTRIES: [&str; 8] = ["US", "PR", "DE", "BR", "IN", "US", "GU", "JP"];

/// A deterministic little world in a global deployment: per subject a profile and watch
/// history (Protected), a device record (Excepted) and a public video (Public).
fn world(data: &Path, keys: &Path, subjects: usize) -> BTreeMap<(String, String, String), Vec<u8>> {
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
    let mut expected = BTreeMap::new();
    for i in 0..subjects {
        let id = format!("user-{i:04}");
        let country = COUNTRIES[i % COUNTRIES.len()];
        node.gate
            .register_subject(
                &app,
                &why,
                &Subject::parse(&id, Some(country), None).unwrap(),
            )
            .unwrap();
        for (class, collection, value) in [
            (
                DataClass::Protected,
                "profile",
                format!("{{\"name\":\"{id}\",\"note\":\"{MARKER}\"}}"),
            ),
            (
                DataClass::Protected,
                "behaviour",
                format!("{{\"watched\":[{i},{}],\"m\":\"{MARKER}\"}}", i + 1),
            ),
            (
                DataClass::Excepted,
                "devices",
                format!("{{\"os\":\"android\",\"m\":\"{MARKER}\"}}"),
            ),
            (
                DataClass::Public,
                "videos",
                format!("{{\"title\":\"video by {id}\",\"m\":\"{MARKER}\"}}"),
            ),
        ] {
            let record = RecordRef {
                subject: id.parse().unwrap(),
                class,
                collection: Collection::parse(collection).unwrap(),
                key: format!("{id}-{collection}").parse().unwrap(),
            };
            node.gate
                .write(&app, &why, &record, value.as_bytes(), None)
                .unwrap();
            expected.insert(
                (id.clone(), collection.to_owned(), country.to_owned()),
                value.into_bytes(),
            );
        }
    }
    global.close().unwrap();
    expected
}

/// The deployment at `data` and `keys` opened under the US split policy (the split's target).
fn us_split(data: &Path, keys: &Path) -> Deployment {
    Deployment::open_with(
        data,
        keys,
        Arc::new(UsSplitPolicy::new()),
        "domicile.example",
    )
    .unwrap()
}

/// Every record of every target store, read directly: region → (subject, collection, key) → value.
fn read_all(data: &Path, keys: &Path) -> BTreeMap<String, Records> {
    let policy: Arc<dyn ResidencyPolicy> = Arc::new(UsSplitPolicy::new());
    let custodian: Arc<dyn KeyCustodian> = Arc::new(FileCustodian::open(keys).unwrap());
    let mut out = BTreeMap::new();
    for region in policy.regions() {
        let store =
            SealedStore::open(data, region.clone(), policy.clone(), custodian.clone()).unwrap();
        let mut records = BTreeMap::new();
        for s in store.subjects().unwrap() {
            for r in store.scan_subject(&s.subject.id).unwrap() {
                // Invariant 1, and its siblings: everything here may rest here.
                let rest = policy.may_rest_in(r.meta.class, &s.home, region).unwrap();
                assert!(
                    rest.allowed,
                    "{region} holds a {} record of a subject homed in {}",
                    r.meta.class, s.home
                );
                records.insert(
                    (
                        s.subject.id.to_string(),
                        r.meta.collection.to_string(),
                        r.meta.key.to_string(),
                    ),
                    r.value,
                );
            }
        }
        out.insert(region.to_string(), records);
    }
    out
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

fn check_split(data: &Path, keys: &Path, expected: &BTreeMap<(String, String, String), Vec<u8>>) {
    let stored = read_all(data, keys);
    let us_countries: BTreeSet<&str> = domicile_policy_us_split::US_COUNTRIES.into_iter().collect();
    // Invariant 8: every record is readable in exactly the regions the new policy allows, with
    // the same bytes; nothing else is anywhere.
    let mut want: BTreeMap<String, Records> = BTreeMap::new();
    for ((id, collection, country), value) in expected {
        let home = if us_countries.contains(country.as_str()) {
            "us"
        } else {
            "row"
        };
        let regions: Vec<&str> = if collection == "videos" {
            vec!["us", "row"]
        } else {
            vec![home]
        };
        for region in regions {
            want.entry(region.to_owned()).or_default().insert(
                (id.clone(), collection.clone(), format!("{id}-{collection}")),
                value.clone(),
            );
        }
    }
    assert_eq!(stored, want);
    // The us store holds no record of a row subject.
    for (id, _, _) in stored["us"].keys() {
        let country = expected
            .keys()
            .find(|(i, _, _)| i == id)
            .map(|(_, _, c)| c.clone())
            .unwrap();
        let is_row = !us_countries.contains(country.as_str());
        let only_public = stored["us"]
            .keys()
            .filter(|(i, _, _)| i == id)
            .all(|(_, c, _)| c == "videos");
        assert!(
            !is_row || only_public,
            "the us store holds Protected data of row subject {id}"
        );
    }
    // No plaintext marker in any region's files, data or keys.
    assert_eq!(files_contain(data, MARKER.as_bytes()), Vec::<String>::new());
    assert_eq!(files_contain(keys, MARKER.as_bytes()), Vec::<String>::new());
    // The global store can open nothing any more.
    let global_policy: Arc<dyn ResidencyPolicy> =
        Arc::new(domicile_policy_global::GlobalPolicy::new());
    let custodian: Arc<dyn KeyCustodian> = Arc::new(FileCustodian::open(keys).unwrap());
    let global = SealedStore::open(
        data,
        Region::parse("global").unwrap(),
        global_policy,
        custodian,
    )
    .unwrap();
    assert!(global.subjects().unwrap().is_empty());
    // And holds nothing: the split purged it wholesale once every key was destroyed, leaving
    // only the store's metadata entry (this holds after a SIGKILL and a rerun too).
    let left: Vec<Vec<u8>> = global
        .backend()
        .scan_prefix(&[])
        .map(|item| item.unwrap().0)
        .collect();
    assert_eq!(left.len(), 1, "entries left in the global store");
    // The shreds are final: the KEK that wrapped the shredded keys is gone, one newer is left.
    let kek_files: Vec<String> = std::fs::read_dir(keys.join("global/kek"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kek_files.len(), 1, "{kek_files:?}");
    assert!(!keys.join("global/kek/00000001.kek").exists());
    // Every region's log verifies with its public key.
    for region in ["global", "us", "row"] {
        let vkey = std::fs::read_to_string(data.join(region).join("log.vkey")).unwrap();
        let vkey = domicile_audit::VerifierKey::parse(vkey.trim()).unwrap();
        domicile_audit::verify(
            &data.join(region).join("audit"),
            &vkey,
            None,
            &mut |_, _| {},
        )
        .unwrap_or_else(|e| panic!("the {region} log does not verify: {e}"));
    }
}

#[test]
fn a_split_moves_everything_where_the_policy_says_and_shreds_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    let expected = world(&data, &keys, 40);
    let signed = run(
        &data,
        &keys,
        &policies(),
        "us-split",
        &RunOptions {
            batch_subjects: 7,
            ..RunOptions::default()
        },
    )
    .unwrap();
    check_split(&data, &keys, &expected);
    let report = &signed.report;
    assert_eq!(report.verification.records_checked, 40 * 3 + 40 * 2);
    assert_eq!(
        report.shredded_subjects[&Region::parse("global").unwrap()],
        40
    );
    assert_eq!(
        report.shredded_records[&Region::parse("global").unwrap()],
        160
    );
    assert!(
        report.checkpoints_after.contains_key("us")
            && report.checkpoints_after.contains_key("global")
    );
    signed.verify(&signed.public_key).unwrap();
    let mut tampered = signed.clone();
    tampered
        .report
        .shredded_records
        .insert(Region::parse("global").unwrap(), 1);
    assert!(tampered.verify(&signed.public_key).is_err());
    // Running it again returns the stored report and changes nothing.
    let again = run(
        &data,
        &keys,
        &policies(),
        "us-split",
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(again, signed);
    assert_eq!(
        Deployment::manifest(&data).unwrap().unwrap().policy,
        "us-split"
    );
}

#[test]
fn a_subject_without_residence_blocks_the_split() {
    use domicile_access::SubjectInventory;
    use domicile_split::{copy, ExecuteOptions, Plan};
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    world(&data, &keys, 2);
    let global = Region::parse("global").unwrap();
    let inventories = vec![
        (
            global.clone(),
            SubjectInventory {
                subject: Subject::parse("ana", Some("US"), None).unwrap(),
                home: global.clone(),
                records: vec![],
            },
        ),
        (
            global.clone(),
            SubjectInventory {
                subject: Subject::parse("ghost", None, None).unwrap(),
                home: global.clone(),
                records: vec![],
            },
        ),
    ];
    let target = UsSplitPolicy::new();
    let plan = Plan::from_inventories(
        domicile_policy_global::GlobalPolicy::new().id().clone(),
        &target,
        inventories,
    )
    .unwrap();
    assert_eq!(plan.unresolved, vec!["ghost".parse().unwrap()]);
    assert_eq!(plan.summary().unresolved, 1);
    let source = Deployment::open(&data, &keys, &policies()).unwrap();
    let target = us_split(&data, &keys);
    let key = MigrationKey::load_or_create(&keys.join("migration.key")).unwrap();
    let mut journal =
        Journal::open(dir.path().join("journal.jsonl"), &key, "domicile.example").unwrap();
    let warrant = key.sign_warrant("unused", std::iter::empty());
    let err = copy(
        &plan,
        &source,
        &target,
        &mut journal,
        &warrant,
        &ExecuteOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, SplitError::Unresolved { count: 1, .. }),
        "{err}"
    );
    // Named by pseudonym, never by id: errors reach operators' logs.
    assert!(!err.to_string().contains("ghost"), "{err}");
    let pseudonym = source
        .regions()
        .next()
        .unwrap()
        .gate
        .pseudonym(&domicile_residency::SubjectId::parse("ghost").unwrap());
    assert!(err.to_string().contains(&pseudonym), "{err}");
    assert!(journal.lines().is_empty(), "nothing started");
}

/// A record that changes in the source after the plan stops the copy at its batch: the
/// batches before it are journaled and written, nothing of its batch or later ones reaches a
/// target (the reader runs a batch ahead of the writer, so this is where a lookahead would
/// leak), and the error names the record by pseudonym only.
#[test]
fn a_record_changed_after_the_plan_stops_the_copy_at_its_batch() {
    use domicile_split::{copy, ExecuteOptions, Plan};
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    world(&data, &keys, 12);
    let source = Deployment::open(&data, &keys, &policies()).unwrap();
    let target = us_split(&data, &keys);
    let plan = Plan::compute(&source, target.policy().as_ref()).unwrap();
    // Batches of two subjects: the sixth subject is in batch 2.
    let changed = plan.subjects[5].subject.id.clone();
    let node = source.regions().next().unwrap();
    let record = RecordRef {
        subject: changed.clone(),
        class: DataClass::Protected,
        collection: Collection::parse("profile").unwrap(),
        key: format!("{changed}-profile").parse().unwrap(),
    };
    node.gate
        .write(
            &source.migration_principal(&node.region),
            &Purpose::new(JustificationCode::Migration),
            &record,
            b"{\"changed\":true}",
            None,
        )
        .unwrap();
    let key = MigrationKey::load_or_create(&keys.join("migration.key")).unwrap();
    let mut journal =
        Journal::open(dir.path().join("journal.jsonl"), &key, "domicile.example").unwrap();
    let warrant = key.sign_warrant(
        &domicile_split::plan_fingerprint(&plan, 2),
        plan.subjects.iter().map(|s| s.subject.id.clone()),
    );
    let err = copy(
        &plan,
        &source,
        &target,
        &mut journal,
        &warrant,
        &ExecuteOptions {
            batch_subjects: 2,
            ..ExecuteOptions::default()
        },
    )
    .unwrap_err();
    let SplitError::JournalMismatch { detail, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        detail.contains("changed in global since it was planned"),
        "{err}"
    );
    assert!(
        detail.contains(
            &node
                .gate
                .record_key_pseudonym(&record.collection, &record.key)
        ),
        "{err}"
    );
    assert!(!err.to_string().contains(changed.as_str()), "{err}");
    assert_eq!(journal.batches_done(), BTreeSet::from([0, 1]));
    drop((source, target, journal));
    let copied: BTreeSet<String> = read_all(&data, &keys)
        .into_values()
        .flat_map(|records| records.into_keys().map(|(subject, _, _)| subject))
        .collect();
    let first_two: BTreeSet<String> = plan.subjects[..4]
        .iter()
        .map(|s| s.subject.id.to_string())
        .collect();
    assert_eq!(copied, first_two, "batches 0 and 1, and nothing after");
}

/// The child side of the crash test: runs the split when told to by the environment.
#[test]
fn split_child() {
    let (Ok(data), Ok(keys)) = (
        std::env::var("SPLIT_CHILD_DATA"),
        std::env::var("SPLIT_CHILD_KEYS"),
    ) else {
        return;
    };
    let _ = run(
        Path::new(&data),
        Path::new(&keys),
        &policies(),
        "us-split",
        &RunOptions {
            batch_subjects: 3,
            ..RunOptions::default()
        },
    );
}

#[test]
fn sigkill_during_a_split_then_rerun_ends_like_an_uninterrupted_run() {
    let reference = tempfile::tempdir().unwrap();
    let (ref_data, ref_keys) = (reference.path().join("data"), reference.path().join("keys"));
    let expected = world(&ref_data, &ref_keys, 30);
    run(
        &ref_data,
        &ref_keys,
        &policies(),
        "us-split",
        &RunOptions {
            batch_subjects: 3,
            ..RunOptions::default()
        },
    )
    .unwrap();
    let want = read_all(&ref_data, &ref_keys);

    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    assert_eq!(world(&data, &keys, 30), expected);
    let exe = std::env::current_exe().unwrap();
    // A small, seeded sequence of kill delays: bounded rounds, reproducible.
    let mut seed: u64 = 0x5eed_1234;
    let mut killed_midway = 0;
    for _round in 0..8 {
        let key = MigrationKey::load_or_create(&keys.join("migration.key")).unwrap();
        if Journal::open(data.join("split/journal.jsonl"), &key, "domicile.example")
            .unwrap()
            .finished()
        {
            break;
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(40 + (seed >> 33) % 400);
        let mut child = Command::new(&exe)
            .args(["--exact", "split_child", "--nocapture", "--test-threads=1"])
            .env("SPLIT_CHILD_DATA", &data)
            .env("SPLIT_CHILD_KEYS", &keys)
            // The child's own test summary would be counted as one more test by whoever reads
            // this run's output; its panics still reach stderr.
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_midway += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    // Finish it in-process, then compare with the uninterrupted run.
    run(
        &data,
        &keys,
        &policies(),
        "us-split",
        &RunOptions {
            batch_subjects: 3,
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert_eq!(read_all(&data, &keys), want);
    check_split(&data, &keys, &expected);
    // However the kills fell, the report and the logs agree on who was shredded: one receipt
    // per subject the split's shred entries name, whichever run logged the entry.
    let pinned = domicile_split::pinned_migration_key(&data)
        .unwrap()
        .unwrap();
    let (signed, logs) = domicile_split::check_report(&data, &pinned).unwrap();
    let logged: u64 = logs.iter().map(|l| l.shreds_logged).sum();
    assert_eq!(logged, signed.report.shred_receipts.len() as u64);
    assert_eq!(logged, 30);
    eprintln!("killed {killed_midway} split run(s) midway");
}

#[test]
fn each_regions_migration_principal_is_located_in_that_region() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    let split = Deployment::create(
        &data,
        &keys,
        policies().resolve("us-split").unwrap(),
        "domicile.example",
    )
    .unwrap();
    for (region, country) in [("us", "US"), ("row", "SG")] {
        let who = split.migration_principal(&Region::parse(region).unwrap());
        assert_eq!(who.location_country.as_str(), country, "{region}");
        assert_eq!(who.office_country.as_str(), country, "{region}");
        assert_eq!(who.id.region().as_str(), region);
    }
    split.close().unwrap();
}

fn global_subjects(data: &Path, keys: &Path) -> usize {
    let custodian: Arc<dyn KeyCustodian> = Arc::new(FileCustodian::open(keys).unwrap());
    let store = SealedStore::open(
        data,
        Region::parse("global").unwrap(),
        Arc::new(domicile_policy_global::GlobalPolicy::new()),
        custodian,
    )
    .unwrap();
    store.subjects().unwrap().len()
}

fn split_options(batch: usize) -> RunOptions<'static> {
    RunOptions {
        batch_subjects: batch,
        ..RunOptions::default()
    }
}

/// The attack: a `verified` line copied from another split's journal (same migration key)
/// into a fresh split's journal made the rerun skip copy and verification and shred the source.
#[test]
fn a_verified_line_copied_from_another_journal_shreds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (data_a, keys_a) = (dir.path().join("a/data"), dir.path().join("a/keys"));
    let (data_b, keys_b) = (dir.path().join("b/data"), dir.path().join("b/keys"));
    world(&data_a, &keys_a, 12);
    run(&data_a, &keys_a, &policies(), "us-split", &split_options(4)).unwrap();
    // B shares A's migration key, so only the journal's chain and plan binding can tell.
    std::fs::create_dir_all(&keys_b).unwrap();
    std::fs::copy(keys_a.join("migration.key"), keys_b.join("migration.key")).unwrap();
    world(&data_b, &keys_b, 12);
    let stop = std::sync::atomic::AtomicBool::new(true);
    let err = run(
        &data_b,
        &keys_b,
        &policies(),
        "us-split",
        &RunOptions {
            batch_subjects: 4,
            stop: Some(&stop),
            ..RunOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, SplitError::Interrupted { .. }), "{err}");
    let journal_a = std::fs::read_to_string(data_a.join("split/journal.jsonl")).unwrap();
    let verified = journal_a
        .lines()
        .find(|l| l.contains("\"kind\":\"verified\""))
        .unwrap();
    let journal_b = data_b.join("split/journal.jsonl");
    let mut text = std::fs::read_to_string(&journal_b).unwrap();
    text.push_str(verified);
    text.push('\n');
    std::fs::write(&journal_b, text).unwrap();
    let err = run(&data_b, &keys_b, &policies(), "us-split", &split_options(4)).unwrap_err();
    assert!(
        matches!(err, SplitError::JournalForged { line: 2, .. }),
        "{err}"
    );
    assert_eq!(
        global_subjects(&data_b, &keys_b),
        12,
        "nothing was shredded"
    );
    assert!(!data_b.join("split/report.json").exists());
}

/// A resumed split's report covers every run: all records copied, every receipt.
#[test]
fn a_report_after_a_resume_covers_the_whole_split() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    world(&data, &keys, 12);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stop_now =
        |_: &domicile_split::Progress| stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = run(
        &data,
        &keys,
        &policies(),
        "us-split",
        &RunOptions {
            batch_subjects: 4,
            stop: Some(&stop),
            progress: Some(&stop_now),
            ..RunOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, SplitError::Interrupted { .. }), "{err}");
    let signed = run(&data, &keys, &policies(), "us-split", &split_options(4)).unwrap();
    let copy = &signed.report.copy;
    assert_eq!(copy.records_read, 12 * 4, "every record, over both runs");
    assert_eq!(copy.batches, 3);
    assert_eq!(copy.resumed_batches, 1);
    assert_eq!(
        copy.written.values().sum::<u64>(),
        12 * 3 + 12 * 2,
        "moved once, public replicated twice"
    );
    assert_eq!(signed.report.shred_receipts.len(), 12);
}

/// A finished split asked for another policy starts a split of its own (a split of a split)
/// instead of reprinting the old report: the finished journal and report are kept aside, and
/// an interrupted second split leaves the deployment under the first policy.
#[test]
fn a_second_split_to_another_policy_keeps_the_first_s_journal_and_starts_its_own() {
    use std::sync::atomic::AtomicBool;
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    world(&data, &keys, 4);
    let policies = policies().with(Arc::new(domicile_policy_eu_split::EuSplitPolicy::new()));
    let first = run(&data, &keys, &policies, "us-split", &split_options(4)).unwrap();
    let stop = AtomicBool::new(true);
    let options = RunOptions {
        stop: Some(&stop),
        ..split_options(4)
    };
    let err = run(&data, &keys, &policies, "eu-split", &options).unwrap_err();
    assert!(matches!(err, SplitError::Interrupted { .. }), "{err}");
    assert_eq!(
        Deployment::manifest(&data).unwrap().unwrap().policy,
        "us-split"
    );
    let kept = data.join("split/previous/1");
    let report: domicile_split::SignedReport =
        serde_json::from_slice(&std::fs::read(kept.join("report.json")).unwrap()).unwrap();
    assert_eq!(report, first);
    let key = MigrationKey::load_or_create(&keys.join("migration.key")).unwrap();
    let old = Journal::open(kept.join("journal.jsonl"), &key, "domicile.example").unwrap();
    assert!(old.finished());
    let new = Journal::open(data.join("split/journal.jsonl"), &key, "domicile.example").unwrap();
    assert!(!new.finished() && new.start().is_some());
}

/// Verification problems reach operators' logs: a split of a split checked before anything was
/// copied reports every planned record as missing, by its key's pseudonym, never by the key or
/// the subject id (the keys here embed the subject id).
#[test]
fn verification_problems_name_records_by_pseudonym_only() {
    use domicile_split::{verify_moved, Plan};
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    world(&data, &keys, 8);
    let policies = policies().with(Arc::new(domicile_policy_eu_split::EuSplitPolicy::new()));
    run(&data, &keys, &policies, "us-split", &split_options(4)).unwrap();
    let eu: Arc<dyn ResidencyPolicy> = Arc::new(domicile_policy_eu_split::EuSplitPolicy::new());
    let target = Deployment::open_with(&data, &keys, eu.clone(), "domicile.example").unwrap();
    let plan = Plan::compute(&target, eu.as_ref()).unwrap();
    assert!(plan.record_count() > 0, "the EU split moves records");
    let Err(SplitError::VerificationFailed { problems }) = verify_moved(&plan, &target) else {
        panic!("nothing was copied, so verification must fail");
    };
    assert!(
        problems.iter().any(|p| p.contains("is missing")),
        "{problems:?}"
    );
    for problem in &problems {
        for i in 0..8 {
            assert!(!problem.contains(&format!("user-{i:04}")), "{problem}");
        }
    }
}

/// A crash between a batch of data keys destroyed and their receipts in the journal: the
/// source can no longer be planned again (it has lost those keys), so the rerun must finish
/// from the journal's verification, not plan afresh and refuse the journal as another plan's.
/// Here the journal is brought to that point by the split's own steps, and the keys of three
/// subjects are destroyed with no receipt.
#[test]
fn a_crash_between_keys_destroyed_and_their_receipts_resumes_from_the_verification() {
    use domicile_split::{
        copy, plan_fingerprint, split_dir, verify, ExecuteOptions, JournalLine, Plan, ShredSummary,
    };
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    world(&data, &keys, 12);
    let announced: Vec<(String, u64)>;
    {
        let source = Deployment::open(&data, &keys, &policies()).unwrap();
        let target = us_split(&data, &keys);
        let plan = Plan::compute(&source, target.policy().as_ref()).unwrap();
        let key = MigrationKey::load_or_create(&keys.join("migration.key")).unwrap();
        std::fs::create_dir_all(split_dir(&data)).unwrap();
        let mut journal = Journal::open(
            split_dir(&data).join("journal.jsonl"),
            &key,
            "domicile.example",
        )
        .unwrap();
        let fingerprint = plan_fingerprint(&plan, 4);
        let warrant = key.sign_warrant(
            &fingerprint,
            plan.subjects.iter().map(|s| s.subject.id.clone()),
        );
        let options = ExecuteOptions {
            batch_subjects: 4,
            ..ExecuteOptions::default()
        };
        copy(&plan, &source, &target, &mut journal, &warrant, &options).unwrap();
        let verification = verify(&plan, &target).unwrap();
        let node = source.regions().next().unwrap();
        let mut pseudonyms: Vec<String> = plan
            .subjects
            .iter()
            .map(|s| node.gate.pseudonym(&s.subject.id))
            .collect();
        pseudonyms.sort();
        journal
            .append(JournalLine::Verified {
                plan_fingerprint: fingerprint,
                plan: Box::new(plan.summary()),
                verification,
                subjects: [(node.region.clone(), pseudonyms)].into(),
            })
            .unwrap();
        journal
            .append(JournalLine::Shredding { started_ms: 0 })
            .unwrap();
        // The first chunk shredded as the split does it, its receipts announced in the
        // journal first; the process dies before their `shredded` lines.
        let first: Vec<_> = plan.subjects[..3]
            .iter()
            .map(|s| s.subject.id.clone())
            .collect();
        let who = source.migration_principal(&node.region);
        let receipts = node
            .gate
            .shred_subjects_announced(
                &who,
                &domicile_split::migration_purpose(),
                &first,
                domicile_store::RecordDeletion::Deferred,
                |receipts| {
                    let shreds = receipts
                        .iter()
                        .map(|r| ShredSummary {
                            region: node.region.clone(),
                            subject_pseudonym: node.gate.pseudonym(&r.subject),
                            records: r.records.len() as u64,
                            data_key_version: r.data_key_version,
                            key_destroyed_now: r.key_destroyed_now,
                        })
                        .collect();
                    journal
                        .append(JournalLine::ShredsAnnounced { shreds })
                        .map_err(|e| e.to_string())
                },
            )
            .unwrap();
        announced = receipts
            .iter()
            .map(|r| (node.gate.pseudonym(&r.subject), r.records.len() as u64))
            .collect();
        // A fourth subject's key destroyed with no announcement at all (a journal written by a
        // build from before announcements): its receipt cannot be recovered.
        source
            .custodian()
            .destroy_data_keys(&node.region, &[plan.subjects[3].subject.id.clone()])
            .unwrap();
    }
    // The announcement is input like the rest of the journal: one with a record count edited
    // is refused, and the split does nothing until the journal is put back.
    let path = split_dir(&data).join("journal.jsonl");
    let journal = std::fs::read_to_string(&path).unwrap();
    let announcement = journal
        .lines()
        .position(|l| l.contains("\"shreds_announced\""))
        .expect("the announcement is journaled");
    let edited: Vec<String> = journal
        .lines()
        .enumerate()
        .map(|(i, l)| match i == announcement {
            true => l.replacen("\"records\":", "\"records\":9", 1),
            false => l.to_owned(),
        })
        .collect();
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
    let err = run(&data, &keys, &policies(), "us-split", &split_options(4)).unwrap_err();
    assert!(
        matches!(err, SplitError::JournalForged { line, .. } if line == announcement + 1),
        "{err}"
    );
    std::fs::write(&path, &journal).unwrap();
    let signed = run(&data, &keys, &policies(), "us-split", &split_options(4)).unwrap();
    // The announced three have their receipts, as announced; every other subject was shredded
    // by the rerun; every record is in its target, none in global.
    assert_eq!(signed.report.shred_receipts.len(), 12 - 1);
    for (pseudonym, records) in &announced {
        let receipt = signed
            .report
            .shred_receipts
            .iter()
            .find(|r| &r.subject_pseudonym == pseudonym)
            .expect("an announced shred is in the report");
        assert_eq!(receipt.records, *records);
        assert!(*records > 0);
        assert!(receipt.key_destroyed_now);
    }
    // The recovered receipts are the ones the interrupted run's shred entry named, logged
    // before it destroyed a key: the report and the logs agree. The fourth subject, shredded
    // outside the Gate, is in neither.
    let pinned = domicile_split::pinned_migration_key(&data)
        .unwrap()
        .unwrap();
    let (_, logs) = domicile_split::check_report(&data, &pinned).unwrap();
    let global = logs.iter().find(|l| l.region == "global").unwrap();
    assert_eq!(global.shreds_logged, 11);
    let stores = read_all(&data, &keys);
    let copied: usize = stores.values().map(|records| records.len()).sum();
    assert_eq!(
        copied,
        12 * 3 + 12 * 2,
        "moved once, public replicated twice"
    );
}

/// A world of six subjects under `dir`, split to us-split in batches of four: (data, keys, the
/// signed report, the migration key pinned at creation).
fn split_six(
    dir: &Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    domicile_split::SignedReport,
    String,
) {
    let (data, keys) = (dir.join("data"), dir.join("keys"));
    world(&data, &keys, 6);
    let signed = run(&data, &keys, &policies(), "us-split", &split_options(4)).unwrap();
    let pinned = domicile_split::pinned_migration_key(&data)
        .unwrap()
        .expect("pinned at create");
    (data, keys, signed, pinned)
}

/// `check_report` trusts the pinned key and the logs, not the report.
#[test]
fn a_report_is_checked_against_the_pinned_key_and_the_logs() {
    use domicile_split::{check_report, split_dir};
    let dir = tempfile::tempdir().unwrap();
    let (data, _keys, signed, pinned) = split_six(dir.path());
    assert_eq!(pinned, signed.public_key);
    let (_, logs) = check_report(&data, &pinned).unwrap();
    assert_eq!(logs.len(), 3);
    // The global log's shred entries name exactly the subjects the report has receipts for.
    let global = logs.iter().find(|l| l.region == "global").unwrap();
    assert_eq!(global.shreds_logged, 6);
    assert_eq!(signed.report.shred_receipts.len(), 6);
    assert!(logs
        .iter()
        .filter(|l| l.region != "global")
        .all(|l| l.shreds_logged == 0));
    let report_path = split_dir(&data).join("report.json");
    let original = std::fs::read(&report_path).unwrap();
    // Re-signed with another key (which it names itself): refused.
    let other = MigrationKey::load_or_create(&dir.path().join("other.key")).unwrap();
    let mut forged = signed.report.clone();
    forged.shredded_records.clear();
    let forged = other.sign(forged);
    std::fs::write(&report_path, serde_json::to_vec(&forged).unwrap()).unwrap();
    assert!(check_report(&data, &pinned).is_err());
    // Garbage: refused.
    std::fs::write(&report_path, b"garbage").unwrap();
    assert!(check_report(&data, &pinned).is_err());
    // Missing: refused.
    std::fs::remove_file(&report_path).unwrap();
    assert!(check_report(&data, &pinned).is_err());
    // A deleted log: refused.
    std::fs::write(&report_path, &original).unwrap();
    check_report(&data, &pinned).unwrap();
    std::fs::remove_dir_all(data.join("us/audit")).unwrap();
    let err = check_report(&data, &pinned).unwrap_err();
    assert!(err.to_string().contains("us"), "{err}");
}

/// The report and the logs are two signed records of one split; whoever holds the migration
/// key can sign any report, but not rewrite the logs. A report re-signed with the real key that
/// leaves out a shred the log shows, claims one it does not, lists a subject twice or counts
/// otherwise than its receipts is refused; so is a log whose subject list beside it was edited.
#[test]
fn a_report_re_signed_with_the_migration_key_must_agree_with_the_logs_shreds() {
    use domicile_split::{check_report, split_dir};
    let dir = tempfile::tempdir().unwrap();
    let (data, keys, signed, pinned) = split_six(dir.path());
    let key = MigrationKey::load_or_create(&keys.join("migration.key")).unwrap();
    let report_path = split_dir(&data).join("report.json");
    let original = std::fs::read(&report_path).unwrap();
    let resign = |edit: &dyn Fn(&mut domicile_split::SplitReport)| {
        let mut report = signed.report.clone();
        edit(&mut report);
        std::fs::write(&report_path, serde_json::to_vec(&key.sign(report)).unwrap()).unwrap();
        let result = check_report(&data, &pinned).map(|_| ());
        std::fs::write(&report_path, &original).unwrap();
        result
    };
    let recount = |report: &mut domicile_split::SplitReport| {
        let global = Region::parse("global").unwrap();
        let receipts = report.shred_receipts.iter().filter(|r| r.region == global);
        let (subjects, records) = receipts.fold((0, 0), |(s, n), r| (s + 1, n + r.records));
        report.shredded_subjects.insert(global.clone(), subjects);
        report.shredded_records.insert(global, records);
    };
    // Untouched, re-signed: accepted (the signature is the real key's).
    resign(&|_| {}).unwrap();
    // One receipt left out, the counts made to agree: the log still shows that shred.
    let err = resign(&|r| {
        r.shred_receipts.pop();
        recount(r);
    })
    .unwrap_err();
    assert!(err.to_string().contains("no receipt for"), "{err}");
    // A receipt for a subject the split never shredded (its pseudonym is well formed).
    let err = resign(&|r| {
        let mut extra = r.shred_receipts[0].clone();
        extra.subject_pseudonym = "ab".repeat(32);
        r.shred_receipts.push(extra);
        recount(r);
    })
    .unwrap_err();
    assert!(err.to_string().contains("no shred entry"), "{err}");
    // One subject receipted twice.
    let err = resign(&|r| {
        let again = r.shred_receipts[0].clone();
        r.shred_receipts.push(again);
        recount(r);
    })
    .unwrap_err();
    assert!(err.to_string().contains("two shred receipts"), "{err}");
    // Counts that disagree with the receipts.
    let err = resign(&|r| {
        for n in r.shredded_records.values_mut() {
            *n += 1;
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("its receipts"), "{err}");
    // Receipts moved to a region the split did not shred in.
    let err = resign(&|r| {
        for receipt in &mut r.shred_receipts {
            receipt.region = Region::parse("us").unwrap();
        }
        r.shredded_subjects = [(Region::parse("us").unwrap(), 6)].into();
        r.shredded_records = [(
            Region::parse("us").unwrap(),
            r.shred_receipts.iter().map(|x| x.records).sum(),
        )]
        .into();
    })
    .unwrap_err();
    // Global's log shows shreds without receipts (and us's shows none of the receipts).
    assert!(err.to_string().contains("global: "), "{err}");
    assert!(err.to_string().contains("no receipt for"), "{err}");
    // The untouched report again: accepted.
    check_report(&data, &pinned).unwrap();
    // A subject list beside the global log, edited on disk: the entry's commitment no longer
    // matches it, and the shreds cannot be checked.
    let sets = data.join("global/audit/subjects");
    let mut edited = 0;
    for file in std::fs::read_dir(&sets).unwrap() {
        let path = file.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.len() > 16 {
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            std::fs::write(&path, bytes).unwrap();
            edited += 1;
        }
    }
    assert!(edited > 0);
    let err = check_report(&data, &pinned).unwrap_err();
    assert!(err.to_string().contains("cannot be checked"), "{err}");
}

/// Invariant 9, black-box: before and after a split (and its shreds), no file under the data or
/// keys directory holds a subject id (every one is a distinctive `user-NNNN`).
#[test]
fn no_file_names_a_subject_before_or_after_the_split() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    let expected = world(&data, &keys, 24);
    let ids: BTreeSet<String> = expected.keys().map(|(s, _, _)| s.clone()).collect();
    let leaks = |stage: &str| {
        let mut found = Vec::new();
        for id in &ids {
            for root in [&data, &keys] {
                for file in files_contain(root, id.as_bytes()) {
                    found.push(format!("{stage}: {file} names {id}"));
                }
            }
        }
        found
    };
    let mut found = leaks("before");
    split_to_us(&data, &keys);
    found.extend(leaks("after"));
    assert_eq!(found, Vec::<String>::new());
}

/// A mistyped or empty keys directory is refused before anything is created or changed.
#[test]
fn a_wrong_or_empty_keys_directory_is_refused_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    world(&data, &keys, 3);
    let before = listing(dir.path());
    // A path that does not exist, then someone else's keys.
    let other = tempfile::tempdir().unwrap();
    Deployment::create(
        other.path().join("data"),
        other.path().join("keys"),
        policies().resolve("global").unwrap(),
        "domicile.example",
    )
    .unwrap();
    let before_other = listing(other.path());
    for wrong in [dir.path().join("keyz"), other.path().join("keys")] {
        let err = Deployment::open(&data, &wrong, &policies()).unwrap_err();
        assert!(
            matches!(err, domicile_split::SplitError::KeysMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("--keys"), "{err}");
        let err = run(
            &data,
            &wrong,
            &policies(),
            "us-split",
            &RunOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, domicile_split::SplitError::KeysMismatch { .. }),
            "{err}"
        );
        assert_eq!(listing(dir.path()), before, "a refused open created files");
        assert_eq!(listing(other.path()), before_other);
    }
    Deployment::open(&data, &keys, &policies()).unwrap();
}

/// Runs the whole split of the deployment at `data` to the US split policy, defaults throughout.
fn split_to_us(data: &Path, keys: &Path) {
    run(data, keys, &policies(), "us-split", &RunOptions::default()).unwrap();
}

/// Every path under `root`, sorted.
fn listing(root: &Path) -> Vec<String> {
    let mut all = walk(root);
    all.sort();
    all
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// The manifest in the data directory is input: edited to another policy or trust domain, or
/// restored from before the split (which would reopen the emptied `global` region and place new
/// subjects there), it is refused against the keys directory's binding, and nothing is created.
#[test]
fn a_manifest_edited_or_restored_from_before_the_split_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    world(&data, &keys, 8);
    let manifest_path = data.join(domicile_split::MANIFEST);
    let before_split = std::fs::read(&manifest_path).unwrap();
    let binding = keys.join(domicile_split::MANIFEST_BINDING);
    let binding_before_split = std::fs::read(&binding).unwrap();
    split_to_us(&data, &keys);
    let after_split = std::fs::read(&manifest_path).unwrap();
    let files = listing(dir.path());
    let edited = |from: &str, to: &str| {
        String::from_utf8(after_split.clone())
            .unwrap()
            .replace(from, to)
            .into_bytes()
    };
    for (manifest, names) in [
        (before_split.clone(), "names policy \"global\""),
        (
            edited("\"us-split\"", "\"global\""),
            "names policy \"global\"",
        ),
        (
            edited("domicile.example", "attacker.example"),
            "in trust domain \"attacker.example\"",
        ),
    ] {
        std::fs::write(&manifest_path, &manifest).unwrap();
        let err = Deployment::open(&data, &keys, &policies()).unwrap_err();
        assert!(matches!(err, SplitError::ManifestNotBound { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("bound to policy \"us-split\"") && message.contains(names),
            "{message}"
        );
        let err = run(
            &data,
            &keys,
            &policies(),
            "us-split",
            &RunOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, SplitError::ManifestNotBound { .. }), "{err}");
        assert_eq!(listing(dir.path()), files, "a refused open created files");
    }
    // The binding is the keys directory's: without it nothing opens until `init` binds again.
    std::fs::write(&manifest_path, &after_split).unwrap();
    Deployment::open(&data, &keys, &policies())
        .unwrap()
        .close()
        .unwrap();
    let kept = std::fs::read(&binding).unwrap();
    // Keys restored from before the split (their binding with them) do not open the split
    // deployment either.
    std::fs::write(&binding, &binding_before_split).unwrap();
    let err = Deployment::open(&data, &keys, &policies())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bound to policy \"global\"") && err.contains("names policy \"us-split\""),
        "{err}"
    );
    std::fs::remove_file(&binding).unwrap();
    let err = Deployment::open(&data, &keys, &policies()).unwrap_err();
    assert!(
        err.to_string().contains("domicile init --policy us-split"),
        "{err}"
    );
    // Between the split's two binding writes (a crash there), both manifests are accepted, and
    // the rerun writes the switch again.
    let parse = |bytes: &[u8]| serde_json::from_slice::<domicile_split::Manifest>(bytes).unwrap();
    let both = serde_json::json!({
        "format": 1,
        "manifests": [parse(&before_split), parse(&after_split)],
    });
    std::fs::write(&binding, both.to_string()).unwrap();
    Deployment::check_keys(&keys, &parse(&before_split)).unwrap();
    Deployment::check_keys(&keys, &parse(&after_split)).unwrap();
    std::fs::write(&binding, b"{\"format\": 2, \"manifests\": []}").unwrap();
    let err = Deployment::open(&data, &keys, &policies()).unwrap_err();
    assert!(err.to_string().contains("format 2"), "{err}");
    std::fs::write(&binding, &kept).unwrap();
    Deployment::open(&data, &keys, &policies())
        .unwrap()
        .close()
        .unwrap();
}
