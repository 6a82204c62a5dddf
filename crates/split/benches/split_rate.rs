//! The split's rate against a bare sealed-store copy of the same records, in the same run.
//!
//! The baseline reads and opens every record from the source store and seals and writes it into
//! the target region's store directly (registering the subjects, batched like the split), with
//! no Gate, no audit log, no journal, no verification and no shredding. The split does all of
//! those. Run with `cargo bench -p domicile-split --bench split_rate`. Target: ≥ 0.5×.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, JustificationCode, Purpose, ResidencyPolicy, Subject};
use domicile_split::{copy, run, Deployment, ExecuteOptions, Journal, Plan, RunOptions};
use domicile_store::{
    Collection, FileCustodian, KeyCustodian, NewRecord, RawRecord, RecordKey, RecordMeta,
    SealedStore,
};

/// The policies these tests link, as a binary's composition root would list them.
fn policies() -> domicile_residency::PolicyResolver {
    domicile_residency::PolicyResolver::new()
        .with(Arc::new(domicile_policy_global::GlobalPolicy::new()))
        .with(Arc::new(domicile_policy_us_split::UsSplitPolicy::new()))
}

const SUBJECTS: usize = 10_000;
const BATCH: usize = 1_000;
const COUNTRIES: [&str; 6] = ["US", "DE", "BR", "IN", "PR", "JP"];

fn world(data: &Path, keys: &Path) -> u64 {
    let global = Deployment::create(
        data,
        keys,
        policies().resolve("global").unwrap(),
        "bench.example",
    )
    .expect("deployment");
    let node = global.regions().next().expect("a region");
    let who = global.migration_principal(&node.region);
    let why = Purpose::new(JustificationCode::Migration);
    let mut records = 0;
    let value = vec![b'x'; 256];
    let mut batch = Vec::new();
    for i in 0..SUBJECTS {
        let id = format!("user-{i:06}");
        let subject =
            Subject::parse(&id, Some(COUNTRIES[i % COUNTRIES.len()]), None).expect("subject");
        let mut rs = Vec::new();
        for (class, collection) in [
            (DataClass::Protected, "profile"),
            (DataClass::Protected, "behaviour"),
            (DataClass::Excepted, "metrics"),
        ] {
            rs.push(RawRecord {
                meta: RecordMeta {
                    collection: Collection::parse(collection).expect("collection"),
                    key: RecordKey::parse(&format!("{id}-{collection}")).expect("key"),
                    subject: subject.id.clone(),
                    class,
                    data_key_version: 0,
                },
                value: value.clone(),
            });
            records += 1;
        }
        batch.push((subject, rs));
        if batch.len() == BATCH {
            node.gate.write_batch(&who, &why, &batch).expect("ingest");
            batch.clear();
        }
    }
    global.close().expect("close");
    records
}

fn bare_copy(data: &Path, keys: &Path) -> u64 {
    let custodian: Arc<dyn KeyCustodian> = Arc::new(FileCustodian::open(keys).expect("custodian"));
    let global_policy: Arc<dyn ResidencyPolicy> =
        Arc::new(domicile_policy_global::GlobalPolicy::new());
    let split_policy: Arc<dyn ResidencyPolicy> = Arc::new(UsSplitPolicy::new());
    let source = SealedStore::open(
        data,
        "global".parse().expect("region"),
        global_policy,
        custodian.clone(),
    )
    .expect("source");
    let targets: Vec<SealedStore> = split_policy
        .regions()
        .iter()
        .map(|r| {
            SealedStore::open(data, r.clone(), split_policy.clone(), custodian.clone())
                .expect("target")
        })
        .collect();
    let mut subjects: Vec<Subject> = source
        .subjects()
        .expect("subjects")
        .into_iter()
        .map(|s| s.subject)
        .collect();
    subjects.sort_by(|a, b| a.id.cmp(&b.id));
    let mut copied = 0;
    for chunk in subjects.chunks(BATCH) {
        for target in &targets {
            let here: Vec<&Subject> = chunk
                .iter()
                .filter(|s| split_policy.home_region(s).expect("home") == *target.region())
                .collect();
            let owned: Vec<Subject> = here.iter().map(|s| (*s).clone()).collect();
            target.register_subjects(&owned).expect("register");
            let mut records = Vec::new();
            for s in &here {
                records.extend(source.scan_subject(&s.id).expect("read"));
            }
            let new: Vec<NewRecord<'_>> = records
                .iter()
                .map(|r| NewRecord {
                    subject: &r.meta.subject,
                    class: r.meta.class,
                    collection: &r.meta.collection,
                    key: &r.meta.key,
                    value: &r.value,
                })
                .collect();
            copied += target.put_batch(&new).expect("write").len() as u64;
        }
    }
    copied
}

fn main() {
    let bare_dir = tempfile::tempdir().expect("tempdir");
    let split_dir = tempfile::tempdir().expect("tempdir");
    let copy_dir = tempfile::tempdir().expect("tempdir");
    let (bd, bk) = (bare_dir.path().join("data"), bare_dir.path().join("keys"));
    let (sd, sk) = (split_dir.path().join("data"), split_dir.path().join("keys"));
    let (cd, ck) = (copy_dir.path().join("data"), copy_dir.path().join("keys"));
    let records = world(&bd, &bk);
    world(&sd, &sk);
    world(&cd, &ck);
    println!("{SUBJECTS} subjects, {records} records of 256 B, batches of {BATCH} subjects");

    let start = Instant::now();
    let copied = bare_copy(&bd, &bk);
    let bare = copied as f64 / start.elapsed().as_secs_f64();
    assert_eq!(copied, records);

    // The split's copy alone: plan (a logged inventory) and the journaled copy through the Gates.
    let start = Instant::now();
    let source = Deployment::open(&cd, &ck, &policies()).expect("source");
    let target = Deployment::open_with(&cd, &ck, Arc::new(UsSplitPolicy::new()), "bench.example")
        .expect("target");
    let plan = Plan::compute(&source, target.policy().as_ref()).expect("plan");
    let key = domicile_split::MigrationKey::load_or_create(&ck.join("migration.key")).expect("key");
    let mut journal =
        Journal::open(cd.join("split/journal.jsonl"), &key, "bench.example").expect("journal");
    let warrant = key.sign_warrant(
        &domicile_split::plan_fingerprint(&plan, BATCH),
        plan.subjects.iter().map(|s| s.subject.id.clone()),
    );
    copy(
        &plan,
        &source,
        &target,
        &mut journal,
        &warrant,
        &ExecuteOptions {
            batch_subjects: BATCH,
            ..ExecuteOptions::default()
        },
    )
    .expect("copy");
    let copy_rate = records as f64 / start.elapsed().as_secs_f64();
    drop((source, target));

    // The whole split: plan, copy, verify every record, shred the source, sign the report.
    let start = Instant::now();
    run(
        &sd,
        &sk,
        &policies(),
        "us-split",
        &RunOptions {
            batch_subjects: BATCH,
            ..RunOptions::default()
        },
    )
    .expect("split");
    let split = records as f64 / start.elapsed().as_secs_f64();

    println!("bare sealed-store copy (read, open, seal, write): {bare:>9.0} records/s");
    println!(
        "split, plan + copy through the Gates:             {copy_rate:>9.0} records/s  ratio {:.2}",
        copy_rate / bare
    );
    println!("split, whole (+ verify, shred, report):           {split:>9.0} records/s  ratio {:.2} (target >= 0.5)", split / bare);
}
