//! Finishing a split: crypto-shredding what the target policy forbids to remain.

use domicile_access::GateError;

use crate::journal::{Journal, JournalLine};
use crate::plan::migration_purpose;
use crate::report::ShredSummary;
use crate::{Deployment, SplitError};

/// Crypto-shreds every subject left in a source region that the target deployment does not
/// have (for a global → split move, the whole `global` region): their data keys are destroyed,
/// so no copy of the source taken before can be opened, and their records deleted. Resumable:
/// subjects already in the journal are skipped, and a subject whose shred was interrupted is
/// finished.
pub fn shred_source(
    source: &Deployment,
    target: &Deployment,
    journal: &mut Journal,
) -> Result<Vec<ShredSummary>, SplitError> {
    let purpose = migration_purpose();
    let mut done: Vec<ShredSummary> = journal.shredded().into_iter().cloned().collect();
    for node in source.regions() {
        if target.region(&node.region).is_some() {
            continue;
        }
        let who = source.migration_principal(&node.region);
        // The store lists the subjects still registered here; shredded ones are gone from it.
        for inv in node.gate.inventory(&who, &purpose)? {
            let receipt = match node.gate.shred_subject(&who, &purpose, &inv.subject.id) {
                Ok(r) => r,
                Err(GateError::UnknownSubject { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let summary = ShredSummary {
                region: node.region.clone(),
                subject_pseudonym: node.gate.pseudonym(&inv.subject.id),
                records: receipt.records.len() as u64,
                data_key_version: receipt.data_key_version,
                key_destroyed_now: receipt.key_destroyed_now,
            };
            journal.append(JournalLine::Shredded(summary.clone()))?;
            done.push(summary);
        }
    }
    Ok(done)
}
