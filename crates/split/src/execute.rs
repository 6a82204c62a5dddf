//! Executing a plan: every subject's records read through the source Gate and written through
//! each target region's Gate, re-sealed under the target's keys, in batches recorded in the
//! journal.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use domicile_access::MigrationWarrant;
use domicile_residency::{Purpose, Region, Subject, SubjectId};
use domicile_store::RawRecord;
use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

use crate::journal::{Journal, JournalLine};
use crate::plan::migration_purpose;
use crate::{Deployment, Plan, SplitError};

/// How a split runs.
pub struct ExecuteOptions<'a> {
    /// Subjects per batch: one source read, one write per target region, one journal line.
    pub batch_subjects: usize,
    /// Set to stop after the current batch (Ctrl-C); a rerun resumes.
    pub stop: Option<&'a AtomicBool>,
    /// Told after every batch.
    pub progress: Option<&'a dyn Fn(&Progress)>,
}

impl std::fmt::Debug for ExecuteOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecuteOptions")
            .field("batch_subjects", &self.batch_subjects)
            .field("stop", &self.stop)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Default for ExecuteOptions<'_> {
    fn default() -> Self {
        ExecuteOptions {
            batch_subjects: 256,
            stop: None,
            progress: None,
        }
    }
}

/// How far the copy has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Batches copied.
    pub batches_done: u64,
    /// Batches in all.
    pub batches_total: u64,
    /// Records copied (counting each target copy once per source record).
    pub records_done: u64,
    /// Records in all.
    pub records_total: u64,
}

/// What the copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyReport {
    /// Batches in all.
    pub batches: u64,
    /// Batches found already done in the journal (a resumed split).
    pub resumed_batches: u64,
    /// Source records read (in a report: over every run of the split, from the journal).
    pub records_read: u64,
    /// Records written per target region (in a report: over every run of the split).
    pub written: BTreeMap<Region, u64>,
}

/// SHA-256 over everything the plan decided: binds a journal to its plan.
pub fn plan_fingerprint(plan: &Plan, batch_subjects: usize) -> String {
    let mut ctx = Context::new(&SHA256);
    let mut field = |b: &[u8]| {
        ctx.update(&(b.len() as u64).to_be_bytes());
        ctx.update(b);
    };
    field(b"domicile split plan v1");
    field(plan.source_policy.to_string().as_bytes());
    field(plan.target_policy.to_string().as_bytes());
    field(&(batch_subjects as u64).to_be_bytes());
    for s in &plan.subjects {
        field(s.subject.id.as_str().as_bytes());
        field(s.target_home.as_str().as_bytes());
        for r in &s.records {
            field(r.source.as_str().as_bytes());
            field(r.meta.collection.as_str().as_bytes());
            field(r.meta.key.as_str().as_bytes());
            field(r.meta.class.as_str().as_bytes());
            field(&r.digest.0);
            for t in &r.targets {
                field(t.as_str().as_bytes());
            }
        }
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Copies every planned record into its target regions, batch by batch, skipping batches the
/// journal records as done. Nothing in the source changes. Every Gate call runs under `warrant`
/// (the plan's, signed by the migration key: [`MigrationKey::sign_warrant`](crate::MigrationKey::sign_warrant)).
pub fn copy(
    plan: &Plan,
    source: &Deployment,
    target: &Deployment,
    journal: &mut Journal,
    warrant: &MigrationWarrant,
    options: &ExecuteOptions<'_>,
) -> Result<CopyReport, SplitError> {
    if let Some(first) = plan.unresolved.first() {
        let node = source
            .regions()
            .next()
            .expect("a deployment has at least one region");
        return Err(SplitError::Unresolved {
            count: plan.unresolved.len(),
            first: node.gate.pseudonym(first),
            region: node.region.to_string(),
        });
    }
    let batch_subjects = options.batch_subjects.max(1);
    let fingerprint = plan_fingerprint(plan, batch_subjects);
    let batches: Vec<&[crate::PlannedSubject]> = plan.subjects.chunks(batch_subjects).collect();
    match journal.start() {
        Some(JournalLine::Start { plan: found, .. }) if *found != fingerprint => {
            return Err(SplitError::JournalMismatch {
                path: journal.path().to_owned(),
                detail: "the source deployment changed since this split started; to start over, remove the journal and run again (records already copied are rewritten, nothing has been shredded yet)".into(),
            })
        }
        Some(_) => {}
        None => {
            let mut checkpoints_before = BTreeMap::new();
            for node in source.regions().chain(target.regions()) {
                if let Some(note) = node.gate.log().checkpoint()? {
                    checkpoints_before.insert(node.region.to_string(), note.to_text());
                }
            }
            journal.append(JournalLine::Start {
                plan: fingerprint,
                batch_subjects,
                batches: batches.len() as u64,
                started_ms: now_ms(),
                checkpoints_before,
            })?;
        }
    }
    let done = journal.batches_done();
    let purpose = migration_purpose();
    let records_total = plan.record_count();
    let mut report = CopyReport {
        batches: batches.len() as u64,
        resumed_batches: done.len() as u64,
        ..CopyReport::default()
    };
    let mut records_done: u64 = plan
        .subjects
        .chunks(batch_subjects)
        .enumerate()
        .filter(|(i, _)| done.contains(&(*i as u64)))
        .map(|(_, b)| b.iter().map(|s| s.records.len() as u64).sum::<u64>())
        .sum();
    let pending: Vec<(u64, &[crate::PlannedSubject])> = batches
        .iter()
        .enumerate()
        .map(|(index, batch)| (index as u64, *batch))
        .filter(|(index, _)| !done.contains(index))
        .collect();
    let stop = options.stop;
    let stopped = move || stop.is_some_and(|s| s.load(Ordering::Relaxed));
    let journal_path = journal.path().to_owned();
    // Two stages: a reader thread reads and routes the next batch from the source while this
    // thread writes the current one into the targets and journals it. The source and target
    // stores differ (or, in a split of a split, the batches name different subjects), so the
    // stages share nothing but the channel; at most one batch waits in it.
    std::thread::scope(|scope| -> Result<(), SplitError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<ReadBatch, SplitError>>(1);
        let (purpose, journal_path, pending) = (&purpose, journal_path.as_path(), &pending);
        scope.spawn(move || {
            for &(index, batch) in pending {
                if stopped() {
                    return;
                }
                let read = read_batch(index, batch, source, purpose, warrant, journal_path);
                let failed = read.is_err();
                // A closed channel means the writer stopped (an error or Ctrl-C).
                if tx.send(read).is_err() || failed {
                    return;
                }
            }
        });
        let mut copied = 0;
        while copied < pending.len() {
            // Ctrl-C stops between batches: everything journaled so far is kept, a rerun resumes.
            if stopped() {
                break;
            }
            // The reader stops only on the flag, after an error it sends, or when all is read.
            let Ok(read) = rx.recv() else { break };
            let ReadBatch {
                index,
                records: batch_records,
                writes,
            } = read?;
            let batch_written = write_batch(writes, target, purpose, warrant)?;
            for (region, written) in &batch_written {
                *report.written.entry(region.clone()).or_insert(0) += written;
            }
            journal.append(JournalLine::Batch {
                index,
                records: batch_records,
                written: batch_written,
            })?;
            copied += 1;
            report.records_read += batch_records;
            records_done += batch_records;
            if let Some(progress) = options.progress {
                progress(&Progress {
                    batches_done: journal.batches_done().len() as u64,
                    batches_total: batches.len() as u64,
                    records_done,
                    records_total,
                });
            }
        }
        if let Some((next, _)) = pending.get(copied) {
            return Err(SplitError::Interrupted {
                batch: next.saturating_sub(1),
            });
        }
        Ok(())
    })?;
    Ok(report)
}

/// One batch read from the source and routed: what each target region is to write.
struct ReadBatch {
    index: u64,
    /// Source records read (each once, however many targets it goes to).
    records: u64,
    writes: BTreeMap<Region, Vec<(Subject, Vec<RawRecord>)>>,
}

/// Reads each source region's share of `batch` through its Gate, checks every record against
/// the plan's digest, and routes it to its planned targets.
fn read_batch(
    index: u64,
    batch: &[crate::PlannedSubject],
    source: &Deployment,
    purpose: &Purpose,
    warrant: &MigrationWarrant,
    journal_path: &std::path::Path,
) -> Result<ReadBatch, SplitError> {
    let mut by_source: BTreeMap<&Region, Vec<SubjectId>> = BTreeMap::new();
    for s in batch {
        for r in &s.records {
            let ids = by_source.entry(&r.source).or_default();
            if ids.last() != Some(&s.subject.id) {
                ids.push(s.subject.id.clone());
            }
        }
    }
    let mut read: BTreeMap<(Region, SubjectId), Vec<RawRecord>> = BTreeMap::new();
    for (region, ids) in by_source {
        let node = source
            .region(region)
            .expect("planned sources are regions of the source");
        let who = source.migration_principal(region);
        for (id, records) in node.gate.read_subjects(&who, purpose, &ids, warrant)? {
            read.insert((region.clone(), id), records);
        }
    }
    let mut writes: BTreeMap<Region, Vec<(Subject, Vec<RawRecord>)>> = BTreeMap::new();
    let mut records = 0u64;
    for s in batch {
        let mut per_target: BTreeMap<Region, Vec<RawRecord>> = BTreeMap::new();
        for planned in &s.records {
            let found = read
                .get(&(planned.source.clone(), s.subject.id.clone()))
                .and_then(|rs| {
                    rs.iter().find(|r| {
                        r.meta.collection == planned.meta.collection
                            && r.meta.key == planned.meta.key
                    })
                });
            // Named by the record key's pseudonym, as the source's log names it (record keys
            // often embed a user id, and errors reach operators' logs).
            let named = || {
                source.region(&planned.source).map_or_else(
                    || "(in a region the source does not have)".to_owned(),
                    |node| {
                        node.gate
                            .record_key_pseudonym(&planned.meta.collection, &planned.meta.key)
                    },
                )
            };
            let Some(record) = found else {
                return Err(SplitError::JournalMismatch {
                    path: journal_path.to_owned(),
                    detail: format!(
                        "record {} planned from {} is no longer there",
                        named(),
                        planned.source
                    ),
                });
            };
            if record.digest() != planned.digest {
                return Err(SplitError::JournalMismatch {
                    path: journal_path.to_owned(),
                    detail: format!(
                        "record {} changed in {} since it was planned",
                        named(),
                        planned.source
                    ),
                });
            }
            records += 1;
            for t in &planned.targets {
                per_target
                    .entry(t.clone())
                    .or_default()
                    .push(record.clone());
            }
        }
        for (region, records) in per_target {
            writes
                .entry(region)
                .or_default()
                .push((s.subject.clone(), records));
        }
    }
    Ok(ReadBatch {
        index,
        records,
        writes,
    })
}

/// Writes one routed batch, each target region by its own thread: the regions are
/// independent, and their durable writes (key commits, store flush, audit entry) overlap.
/// Returns the records written per region.
fn write_batch(
    writes: BTreeMap<Region, Vec<(Subject, Vec<RawRecord>)>>,
    target: &Deployment,
    purpose: &Purpose,
    warrant: &MigrationWarrant,
) -> Result<BTreeMap<Region, u64>, SplitError> {
    let results: Vec<(Region, Result<usize, SplitError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = writes
            .iter()
            .map(|(region, subjects)| {
                scope.spawn(move || {
                    let node = target
                        .region(region)
                        .expect("planned targets are regions of the target");
                    let who = target.migration_principal(region);
                    let written = node.gate.write_subjects(&who, purpose, subjects, warrant);
                    (
                        region.clone(),
                        written.map(|w| w.len()).map_err(SplitError::from),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a region writer thread panicked"))
            .collect()
    });
    let mut written = BTreeMap::new();
    for (region, result) in results {
        written.insert(region, result? as u64);
    }
    Ok(written)
}
