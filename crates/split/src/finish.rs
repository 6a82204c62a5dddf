//! Finishing a split: crypto-shredding what the target policy forbids to remain.

use domicile_access::Gate;
use domicile_residency::SubjectId;
use domicile_store::{RecordDeletion, ShredReceipt};

use crate::journal::{Journal, JournalLine};
use crate::plan::migration_purpose;
use crate::report::ShredSummary;
use crate::{Deployment, SplitError};

/// Subjects shredded per step: one audit entry and one durable deletion each.
const SHRED_BATCH: usize = 1_000;

/// Crypto-shreds every subject left in a source region that the target deployment does not
/// have (for a global → split move, the whole `global` region): their data keys are destroyed,
/// so no copy of the source taken before can be opened, and their records deleted. Resumable:
/// subjects already in the journal are skipped, and a subject whose shred was interrupted is
/// finished.
///
/// Only subjects that the journal's authenticated verification line lists (read back from
/// every target region the plan names) are shredded, and every remaining subject of every
/// source region is checked against that list before the first key is destroyed: a journal
/// without a verification of its own plan, or a subject it does not cover, is
/// [`SplitError::Unverified`] with nothing shredded (DESIGN.md invariant 8).
pub fn shred_source(
    source: &Deployment,
    target: &Deployment,
    journal: &mut Journal,
) -> Result<Vec<ShredSummary>, SplitError> {
    let purpose = migration_purpose();
    let mut done: Vec<ShredSummary> = journal.shredded().into_iter().cloned().collect();
    let verified: std::collections::BTreeMap<_, std::collections::BTreeSet<&str>> = journal
        .verified()
        .map(|(_, _, subjects)| {
            subjects
                .iter()
                .map(|(r, ps)| (r.clone(), ps.iter().map(String::as_str).collect()))
                .collect()
        })
        .unwrap_or_default();
    let mut work = Vec::new();
    for node in source.regions() {
        if target.region(&node.region).is_some() {
            continue;
        }
        let who = source.migration_principal(&node.region);
        // The store lists the subjects still registered here; shredded ones are gone from it.
        let ids = node.gate.subject_ids(&who, &purpose)?;
        let covered = verified.get(&node.region);
        let unverified = ids
            .iter()
            .filter(|id| !covered.is_some_and(|c| c.contains(node.gate.pseudonym(id).as_str())))
            .count();
        if unverified > 0 {
            return Err(SplitError::Unverified {
                region: node.region.clone(),
                count: unverified,
            });
        }
        work.push((node, who, ids));
    }
    begin_shredding(journal)?;
    for (node, who, ids) in work {
        // The whole region goes: its records are left for one purge at the end, which drops
        // the store wholesale instead of deleting each record (a crash before it leaves them
        // unreadable, and the rerun purges).
        done.extend(recover_announced(journal, &node.gate, &ids)?);
        for chunk in ids.chunks(SHRED_BATCH) {
            done.extend(shred_chunk(
                journal,
                &node.gate,
                &who,
                chunk,
                RecordDeletion::Deferred,
            )?);
        }
        finalize_shreds(source, &node.region)?;
        node.gate.purge(&who, &purpose)?;
    }
    Ok(done)
}

/// Crypto-shreds, in a split of a split, every subject that leaves a region the target keeps
/// (a European in `row` under `eu-split`), and only them: the subjects the journal's
/// authenticated verification line lists for that region, each read back from every other
/// region the plan names before any key is destroyed (DESIGN.md invariant 8). Everyone else in
/// the region stays. Resumable like [`shred_source`]; each shredded region's KEK is then rotated
/// ([`finalize_shreds`]).
pub fn shred_leaving(
    deployment: &Deployment,
    journal: &mut Journal,
) -> Result<Vec<ShredSummary>, SplitError> {
    let purpose = migration_purpose();
    let mut done: Vec<ShredSummary> = journal.shredded().into_iter().cloned().collect();
    let verified: Vec<(
        domicile_residency::Region,
        std::collections::BTreeSet<String>,
    )> = journal
        .verified()
        .map(|(_, _, subjects)| {
            subjects
                .iter()
                .map(|(r, ps)| (r.clone(), ps.iter().cloned().collect()))
                .collect()
        })
        .ok_or_else(|| SplitError::JournalMismatch {
            path: journal.path().to_owned(),
            detail: "it holds no verification of this split's plan; nothing was shredded".into(),
        })?;
    begin_shredding(journal)?;
    for (region, leaving) in verified {
        let Some(node) = deployment.region(&region) else {
            continue;
        };
        let who = deployment.migration_principal(&region);
        let live = node.gate.subject_ids(&who, &purpose)?;
        done.extend(recover_announced(journal, &node.gate, &live)?);
        let ids: Vec<_> = live
            .into_iter()
            .filter(|id| leaving.contains(&node.gate.pseudonym(id)))
            .collect();
        for chunk in ids.chunks(SHRED_BATCH) {
            done.extend(shred_chunk(
                journal,
                &node.gate,
                &who,
                chunk,
                RecordDeletion::Now,
            )?);
        }
        if !leaving.is_empty() {
            finalize_shreds(deployment, &region)?;
        }
    }
    Ok(done)
}

/// Shreds one chunk of subjects of a region through its Gate: their receipts are journaled as
/// announced before the first key is destroyed, and as shredded after (one journal write and
/// sync each for the whole chunk).
fn shred_chunk(
    journal: &mut Journal,
    gate: &Gate,
    who: &domicile_access::Principal,
    chunk: &[SubjectId],
    deletion: RecordDeletion,
) -> Result<Vec<ShredSummary>, SplitError> {
    let summary = |receipt: &ShredReceipt| ShredSummary {
        region: gate.region().clone(),
        subject_pseudonym: gate.pseudonym(&receipt.subject),
        records: receipt.records.len() as u64,
        data_key_version: receipt.data_key_version,
        key_destroyed_now: receipt.key_destroyed_now,
    };
    let mut unjournaled = None;
    let mut announcement = None;
    let shredded =
        gate.shred_subjects_announced(who, &migration_purpose(), chunk, deletion, |receipts| {
            let shreds: Vec<ShredSummary> = receipts.iter().map(summary).collect();
            match journal.announce(shreds.clone()) {
                Ok(at) => {
                    announcement = Some((at, shreds));
                    Ok(())
                }
                Err(e) => {
                    let detail = e.to_string();
                    unjournaled = Some(e);
                    Err(detail)
                }
            }
        });
    if let Some(e) = unjournaled {
        return Err(e);
    }
    let summaries: Vec<ShredSummary> = shredded?.iter().map(summary).collect();
    match announcement {
        // The keys destroyed are the ones announced, with the receipts announced: one line.
        Some((announced, shreds)) if shreds == summaries => {
            journal.append(JournalLine::ShredsDone { announced })?
        }
        _ => journal.append_all(summaries.iter().cloned().map(JournalLine::Shredded))?,
    }
    Ok(summaries)
}

/// The shreds of `gate`'s region that a crashed run announced and whose keys it destroyed, but
/// whose receipts it did not journal: their subjects are gone from the store (`live` no longer
/// lists them), so no shred will give their receipts again. Journaled now as shredded, as
/// announced.
fn recover_announced(
    journal: &mut Journal,
    gate: &Gate,
    live: &[SubjectId],
) -> Result<Vec<ShredSummary>, SplitError> {
    let unreceipted = journal.announced_unreceipted(gate.region());
    if unreceipted.is_empty() {
        // Every run but one after such a crash: no pseudonym of the live subjects is needed.
        return Ok(Vec::new());
    }
    let live: std::collections::BTreeSet<String> =
        live.iter().map(|id| gate.pseudonym(id)).collect();
    let recovered: Vec<ShredSummary> = unreceipted
        .into_iter()
        .filter(|s| !live.contains(&s.subject_pseudonym))
        .cloned()
        .collect();
    journal.append_all(recovered.iter().cloned().map(JournalLine::Shredded))?;
    Ok(recovered)
}

/// Journals that shredding begins, before the first data key is destroyed (once per split).
fn begin_shredding(journal: &mut Journal) -> Result<(), SplitError> {
    if !journal.shredding_started() {
        journal.append(JournalLine::Shredding {
            started_ms: crate::execute::now_ms(),
        })?;
    }
    Ok(())
}

/// Makes the shreds of `region` final ([`KeyCustodian::finalize_shreds`]): every live data key
/// is rewrapped under a new KEK (the file custodian writes a fresh key store) and every older
/// KEK is destroyed, so wrapped data keys left behind in freed disk blocks, or in a copy of the
/// keys directory taken from now on, open under no key that still exists. Returns the KEK
/// version now current. Safe to repeat.
///
/// [`KeyCustodian::finalize_shreds`]: domicile_store::KeyCustodian::finalize_shreds
pub fn finalize_shreds(
    deployment: &Deployment,
    region: &domicile_residency::Region,
) -> Result<domicile_store::KekVersion, SplitError> {
    use domicile_store::KeyCustodian;
    Ok(deployment.custodian().finalize_shreds(region)?)
}
