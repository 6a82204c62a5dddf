//! Plan, execute, verify, finish and report the move of a deployment from one residency policy
//! to another — the region split.
//!
//! A split takes a running deployment (say, `global`) and moves every record to where a new
//! policy (`us-split`) puts it, through the Gates only: a migration service principal reads each
//! batch of subjects through the source region's Gate and writes it through each target
//! region's Gate, re-sealed under the target's keys, so every region's audit log records its
//! side. A journal makes the split resumable after a crash or Ctrl-C. Verification reads every
//! target store back and checks that every record is in exactly the regions the target policy
//! allows, with the source's digest (DESIGN.md invariants 1 and 8). Only then is the source
//! crypto-shredded, and a report signed by the migration key lists the counts, the shred
//! receipts and every region's signed audit checkpoint before and after.
//!
//! ```
//! use std::sync::Arc;
//! use domicile_access::RecordRef;
//! use domicile_policy_global::GlobalPolicy;
//! use domicile_policy_us_split::UsSplitPolicy;
//! use domicile_residency::{DataClass, JustificationCode, PolicyResolver, Purpose, Subject};
//! use domicile_split::{run, Deployment, RunOptions};
//! use domicile_store::{Collection, RecordKey};
//!
//! let dir = tempfile::tempdir()?;
//! let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
//! // The binary (the composition root) chooses the policies it links.
//! let policies = PolicyResolver::new()
//!     .with(Arc::new(GlobalPolicy::new()))
//!     .with(Arc::new(UsSplitPolicy::new()));
//! let global = Deployment::create(&data, &keys, policies.resolve("global")?, "domicile.example")?;
//! let node = global.regions().next().unwrap();
//! let app = global.migration_principal(&node.region);
//! let why = Purpose::new(JustificationCode::Migration);
//! for (id, country) in [("ana", "US"), ("lena", "DE")] {
//!     node.gate.register_subject(&app, &why, &Subject::parse(id, Some(country), None)?)?;
//!     let record = RecordRef { subject: id.parse()?, class: DataClass::Protected,
//!                              collection: Collection::parse("profile")?, key: RecordKey::parse(id)? };
//!     node.gate.write(&app, &why, &record, b"{}", None)?;
//! }
//! global.close()?;
//! drop(global);
//!
//! let report = run(&data, &keys, &policies, "us-split", &RunOptions::default())?;
//! assert_eq!(report.report.verification.records_checked, 2);
//! assert_eq!(report.report.shredded_subjects.values().sum::<u64>(), 2);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod deployment;
mod error;
mod execute;
mod finish;
pub mod ingest;
mod journal;
mod plan;
mod report;
mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use domicile_residency::PolicyResolver;

pub use deployment::{
    configure_database, DatabaseConfig, Deployment, KeyPrints, Manifest, RegionNode, DATABASE_FILE,
    MANIFEST, MANIFEST_BINDING,
};
pub use error::SplitError;
pub use execute::{copy, plan_fingerprint, CopyReport, ExecuteOptions, Progress};
pub use finish::{finalize_shreds, shred_leaving, shred_source};
pub use ingest::{
    ingest_file, IngestOptions, IngestReport, OnUnknown, DEFAULT_BATCH_BYTES, MAX_LINE_BYTES,
};
pub use journal::{Journal, JournalLine, VerifiedSubjects};
pub use plan::{
    migration_purpose, target_regions, Counts, Plan, PlanSummary, PlannedRecord, PlannedSubject,
    RecordAction,
};
pub use report::{
    check_report, check_report_pinning_logs, parse_migration_vkey, pin_migration_key,
    pinned_migration_key, LogCheck, MigrationKey, ShredSummary, SignedReport, SplitReport,
    VerificationSummary, MIGRATION_VKEY,
};
pub use verify::{check_placement, verify, verify_moved, Placement};

/// Where a split keeps its journal and report: `<data>/split/`.
pub fn split_dir(data_root: &Path) -> PathBuf {
    data_root.join("split")
}

/// How [`run`] runs.
pub struct RunOptions<'a> {
    /// Subjects per batch.
    pub batch_subjects: usize,
    /// Set to stop after the current batch; a rerun resumes.
    pub stop: Option<&'a AtomicBool>,
    /// Told after every batch.
    pub progress: Option<&'a dyn Fn(&Progress)>,
    /// The migration key's file; `<keys>/migration.key` when `None`.
    pub migration_key: Option<PathBuf>,
}

impl std::fmt::Debug for RunOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("batch_subjects", &self.batch_subjects)
            .field("stop", &self.stop)
            .field("progress", &self.progress.is_some())
            .field("migration_key", &self.migration_key)
            .finish()
    }
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        RunOptions {
            batch_subjects: 256,
            stop: None,
            progress: None,
            migration_key: None,
        }
    }
}

/// Runs a whole split of the deployment at `data_root` to the policy named `target_policy`,
/// resolving both the deployment's current policy and the target through `policies`:
/// plan, copy, verify, shred the source, sign and write the report (`<data>/split/report.json`
/// and `report.txt`), and switch the deployment's manifest to the new policy. Resumes from the
/// journal if an earlier run was interrupted; returns the stored report if the split is done.
pub fn run(
    data_root: &Path,
    keys_root: &Path,
    policies: &PolicyResolver,
    target_policy: &str,
    options: &RunOptions<'_>,
) -> Result<SignedReport, SplitError> {
    let dir = split_dir(data_root);
    let report_path = dir.join("report.json");
    let manifest = Deployment::manifest(data_root)?.ok_or_else(|| SplitError::Manifest {
        path: data_root.join(MANIFEST),
        detail: "there is no deployment here (no manifest)".into(),
    })?;
    // A mistyped --keys must not create keys, a journal or a migration key, nor orphan every
    // record: checked before anything is written.
    Deployment::check_keys(keys_root, &manifest)?;
    // A target that keeps some regions (a split of a split) must keep them all: a region it
    // dropped would be left behind with its data. Checked before anything is written.
    let (now, to) = (
        policies.resolve(&manifest.policy)?,
        policies.resolve(target_policy)?,
    );
    // Every region the manifest names has its store: one missing would be recreated empty by
    // the opens below, and the split would move nothing of what it held.
    for region in now.regions() {
        Deployment::check_store_present(data_root, keys_root, region)?;
    }
    let kept = |r: &domicile_residency::Region| to.has_region(r);
    if now.regions().iter().any(kept) {
        if let Some(dropped) = now.regions().iter().find(|r| !kept(r)) {
            return Err(SplitError::RegionDropped {
                region: dropped.to_string(),
            });
        }
    }
    let key_path = options
        .migration_key
        .clone()
        .unwrap_or_else(|| keys_root.join("migration.key"));
    let key = MigrationKey::load_or_create(&key_path)?;
    // The report is checked against the pinned key later, so sign only with that one.
    match report::pinned_migration_key(data_root)? {
        Some(pinned) if pinned != key.public_key() => {
            return Err(SplitError::Key {
                path: key_path,
                detail: format!(
                    "its public key is not the one this deployment pinned in {}",
                    data_root.join(MIGRATION_VKEY).display()
                ),
            })
        }
        Some(_) => {}
        // A deployment created before keys were pinned: pin on first use.
        None => report::pin_migration_key(data_root, &key)?,
    }
    let mut journal = Journal::open(dir.join("journal.jsonl"), &key, &manifest.trust_domain)?;
    if journal.finished() && manifest.policy != target_policy {
        // A split of a split: the finished one's journal and report are kept, under
        // `split/previous/<n>/`, and this one starts a journal of its own.
        drop(journal);
        archive_finished(&dir)?;
        journal = Journal::open(dir.join("journal.jsonl"), &key, &manifest.trust_domain)?;
    }
    if journal.finished() {
        let bytes = domicile_durable::read_bounded(&report_path, report::MAX_REPORT_BYTES)?;
        let signed: SignedReport = serde_json::from_slice(&bytes)
            .map_err(|e| SplitError::BadReport(format!("{}: {e}", report_path.display())))?;
        signed.verify(&key.public_key())?;
        return Ok(signed);
    }
    let source_policy = if manifest.policy == target_policy {
        // The manifest was switched but the run stopped before writing `finished`.
        journal
            .verified()
            .map(|(plan, _, _)| plan.source_policy.name.clone())
            .ok_or_else(|| SplitError::Manifest {
                path: data_root.join(MANIFEST),
                detail: format!("the deployment is already under {target_policy}"),
            })?
    } else {
        manifest.policy.clone()
    };
    let target = Deployment::open_with(
        data_root,
        keys_root,
        policies.resolve(target_policy)?,
        &manifest.trust_domain,
    )?;
    // A split of a split keeps regions of the source (`us-split` → `eu-split` keeps `us` and
    // `row`): a region's store opens once, so the target deployment is also the source, and
    // only what must leave the region it rests in moves.
    let source_regions = policies.resolve(&source_policy)?;
    let in_place = source_regions
        .regions()
        .iter()
        .any(|r| target.region(r).is_some());
    let source_owned = if in_place {
        None
    } else {
        Some(Deployment::open_with(
            data_root,
            keys_root,
            source_regions,
            &manifest.trust_domain,
        )?)
    };
    let source: &Deployment = source_owned.as_ref().unwrap_or(&target);
    // An authenticated verification of this journal's plan is trusted only once shredding has
    // begun (the source can no longer be planned again: a crash between a batch of keys
    // destroyed and their receipts leaves it without them); before that, every run copies what
    // is missing and reads every target back itself.
    let resumed_after_verification = journal.shredding_started() && journal.verified().is_some();
    let (plan_summary, mut verification, mut copy_report) = if resumed_after_verification {
        let (plan, verification, _) = journal.verified().expect("checked above");
        (plan.clone(), verification.clone(), CopyReport::default())
    } else {
        let plan = if in_place {
            let mut plan = Plan::compute(source, target.policy().as_ref())?;
            plan.source_policy = policies.resolve(&source_policy)?.id().clone();
            plan
        } else {
            Plan::compute(source, target.policy().as_ref())?
        };
        let warrant = key.sign_warrant(
            &plan_fingerprint(&plan, options.batch_subjects),
            plan.subjects.iter().map(|s| s.subject.id.clone()),
        );
        let copy_report = copy(
            &plan,
            source,
            &target,
            &mut journal,
            &warrant,
            &ExecuteOptions {
                batch_subjects: options.batch_subjects,
                stop: options.stop,
                progress: options.progress,
            },
        )?;
        let verification = if in_place {
            verify_moved(&plan, &target)?
        } else {
            verify(&plan, &target)?
        };
        let summary = plan.summary();
        let plan_fingerprint = match journal.start() {
            Some(JournalLine::Start { plan, .. }) => plan.clone(),
            _ => unreachable!("copy writes the start line"),
        };
        // Every planned subject's records were just read back from every target the plan
        // names: these, and only these, may be shredded in their source regions.
        let mut subjects: BTreeMap<domicile_residency::Region, Vec<String>> = BTreeMap::new();
        for s in &plan.subjects {
            for region in s.records.iter().map(|r| &r.source).chain(
                source
                    .regions()
                    .map(|n| &n.region)
                    .filter(|_| s.records.is_empty()),
            ) {
                if let Some(node) = source.region(region) {
                    subjects
                        .entry(region.clone())
                        .or_default()
                        .push(node.gate.pseudonym(&s.subject.id));
                }
            }
        }
        for list in subjects.values_mut() {
            list.sort();
            list.dedup();
        }
        journal.append(JournalLine::Verified {
            plan_fingerprint,
            plan: Box::new(summary.clone()),
            verification: verification.clone(),
            subjects,
        })?;
        (summary, verification, copy_report)
    };
    // The report covers the whole split, every run of it, from the journal.
    let (records_read, written) = journal.copied();
    if let Some(JournalLine::Start { batches, .. }) = journal.start() {
        copy_report.batches = *batches;
        if resumed_after_verification {
            copy_report.resumed_batches = *batches;
        }
    }
    copy_report.records_read = records_read;
    copy_report.written = written;
    let receipts = if in_place {
        let receipts = shred_leaving(&target, &mut journal)?;
        // Invariant 1 over everything, moved or not: no record rests where the new policy
        // does not allow it.
        let placement = check_placement(&target)?;
        if !placement.problems.is_empty() {
            return Err(SplitError::VerificationFailed {
                problems: placement.problems,
            });
        }
        // The report's counts are what rests in each region now, after the shred, as for a
        // split whose source regions are gone.
        verification.per_region = placement.counts;
        receipts
    } else {
        shred_source(source, &target, &mut journal)?
    };
    let mut shredded_subjects = BTreeMap::new();
    let mut shredded_records = BTreeMap::new();
    for r in &receipts {
        *shredded_subjects.entry(r.region.clone()).or_insert(0) += 1;
        *shredded_records.entry(r.region.clone()).or_insert(0) += r.records;
    }
    let (started_ms, checkpoints_before) = match journal.start() {
        Some(JournalLine::Start {
            started_ms,
            checkpoints_before,
            ..
        }) => (*started_ms, checkpoints_before.clone()),
        _ => (execute::now_ms(), BTreeMap::new()),
    };
    let mut checkpoints_after = BTreeMap::new();
    let mut log_keys = BTreeMap::new();
    for node in source.regions().chain(target.regions()) {
        if let Some(note) = node.gate.log().checkpoint()? {
            checkpoints_after.insert(node.region.to_string(), note.to_text());
        }
        log_keys.insert(node.region.to_string(), node.verifier.to_string());
    }
    let report = SplitReport {
        format: 1,
        source_policy: plan_summary.source_policy.clone(),
        target_policy: plan_summary.target_policy.clone(),
        started_ms,
        finished_ms: execute::now_ms(),
        plan: plan_summary,
        copy: copy_report,
        verification,
        shredded_subjects,
        shredded_records,
        shred_receipts: receipts,
        checkpoints_before,
        checkpoints_after,
        log_keys,
    };
    let signed = key.sign(report);
    deployment::write_private_bytes(
        &report_path,
        &serde_json::to_vec_pretty(&signed).expect("reports serialise"),
    )?;
    deployment::write_private_bytes(
        &dir.join("report.txt"),
        format!("{}\n", signed.report).as_bytes(),
    )?;
    let target_prints = target.key_prints()?;
    if let Some(source) = &source_owned {
        source.close()?;
    }
    target.close()?;
    // From now on the deployment is the target one.
    let switched = Manifest {
        policy: target_policy.to_owned(),
        trust_domain: manifest.trust_domain.clone(),
        keys: target_prints,
    };
    // The keys accept both manifests while the switch is written, then the new one alone: a
    // crash in between leaves a deployment that opens, and the rerun writes the switch again.
    deployment::bind_manifests(keys_root, &[&manifest, &switched])?;
    deployment::write_private_bytes(
        &data_root.join(MANIFEST),
        &serde_json::to_vec_pretty(&switched).expect("a manifest serialises"),
    )?;
    deployment::bind_manifests(keys_root, &[&switched])?;
    journal.append(JournalLine::Finished {
        finished_ms: signed.report.finished_ms,
    })?;
    Ok(signed)
}

/// Moves a finished split's journal and report aside, to `<split>/previous/<n>/` (the first
/// free `n` from 1), so that a further split starts a journal of its own.
fn archive_finished(dir: &Path) -> Result<(), SplitError> {
    let previous = dir.join("previous");
    let mut n = 1u32;
    while previous.join(n.to_string()).exists() {
        n += 1;
    }
    let into = previous.join(n.to_string());
    domicile_durable::create_private_dir(&into)?;
    for name in ["journal.jsonl", "report.json", "report.txt"] {
        let from = dir.join(name);
        if from.exists() {
            domicile_durable::rename_synced(&from, &into.join(name))?;
        }
    }
    // The names are gone from `dir` durably too, so a power cut cannot bring the finished
    // journal back in front of the new split.
    Ok(domicile_durable::sync_dir(dir)?)
}
