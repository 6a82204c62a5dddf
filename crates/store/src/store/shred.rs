//! Crypto-shredding subjects, purging a store they all left, and retiring the KEK.

use std::collections::HashMap;

use domicile_residency::SubjectId;

use crate::backend::Batch;
use crate::custodian::{DataKeyState, Pseudonym, RotationReport};
use crate::record::layout;
use crate::StoreError;

use super::index::SubjectIndex;
use super::{lock, store_meta, write_lock, RecordDeletion, SealedStore, ShredReceipt, OWNER};

/// Shredding: destroying data keys, and then the records they sealed.
impl SealedStore {
    /// Crypto-shreds a subject: destroys their data key with the custodian — from then on none of
    /// their records opens, not even from a copy of the data directory taken earlier — then
    /// deletes their records and registry entry. Calling it again after an interruption finishes
    /// the job.
    pub fn shred_subject(&self, subject: &SubjectId) -> Result<ShredReceipt, StoreError> {
        let mut receipts = self.shred_subjects(std::slice::from_ref(subject))?;
        Ok(receipts.remove(0))
    }

    /// Crypto-shreds many subjects at once: [`shred_subject`](Self::shred_subject) for each,
    /// with their data keys destroyed together and one atomic, durable deletion of all their
    /// records. Returns a receipt per subject, in order.
    pub fn shred_subjects(&self, subjects: &[SubjectId]) -> Result<Vec<ShredReceipt>, StoreError> {
        self.shred_subjects_with(subjects, RecordDeletion::Now)
    }

    /// [`shred_subjects`](Self::shred_subjects), with the records deleted now or left for a
    /// wholesale [`purge`](Self::purge) ([`RecordDeletion::Deferred`]; the receipts then say
    /// the registry entries were not deleted). The keys are destroyed either way, so the
    /// records open nowhere from the moment this returns.
    pub fn shred_subjects_with(
        &self,
        subjects: &[SubjectId],
        deletion: RecordDeletion,
    ) -> Result<Vec<ShredReceipt>, StoreError> {
        self.shred_subjects_announced(subjects, deletion, |_| Ok(()))
    }

    /// [`shred_subjects_with`](Self::shred_subjects_with), telling `announce` the receipts it
    /// is about to give before the first key is destroyed: a caller that must account for
    /// every shred (a split's journal, which signs them into its report) records them there,
    /// so a crash between the keys destroyed and the receipts returned loses none. The
    /// announced receipts are what the shred then returns, but for `key_destroyed_now`, which
    /// is a prediction until the keys are destroyed. If `announce` fails, nothing is destroyed
    /// and the shred is [`StoreError::ShredNotStarted`] with its detail.
    pub fn shred_subjects_announced(
        &self,
        subjects: &[SubjectId],
        deletion: RecordDeletion,
        announce: impl FnOnce(&[ShredReceipt]) -> Result<(), String>,
    ) -> Result<Vec<ShredReceipt>, StoreError> {
        let _gate = self.gate.exclusive();
        // Every id of the subjects in their lists, none left in the journal. A corrupt index
        // does not stop a shred: the subjects' records are then found by their owner.
        let mut by_owner: Option<HashMap<Pseudonym, SubjectIndex>> = None;
        match self.fold_journal() {
            Err(StoreError::CorruptIndex { .. }) => by_owner = Some(self.index_by_owner()?),
            other => other?,
        }
        // Everything the receipts say is read before any key is destroyed, so that it can be
        // announced first.
        let mut batch = Batch::new();
        let mut receipts = Vec::with_capacity(subjects.len());
        let pseudonyms: Vec<Pseudonym> = subjects
            .iter()
            .map(|s| self.pseudonyms.pseudonym(s))
            .collect();
        let states = self.custodian.data_keys(&self.region, &pseudonyms)?;
        for ((subject, pseudonym), state) in subjects.iter().zip(pseudonyms).zip(states) {
            let (data_key_version, live) = match state {
                DataKeyState::Live(key) => (key.version(), true),
                DataKeyState::Shredded { version } => (version, false),
                DataKeyState::Absent => {
                    return Err(StoreError::NoDataKey {
                        subject: pseudonym,
                        region: self.region.clone(),
                    })
                }
            };
            let index = match &mut by_owner {
                Some(found) => found.remove(&pseudonym).unwrap_or_default(),
                None => match self.subject_lists(&pseudonym) {
                    Err(StoreError::CorruptIndex { .. }) => {
                        let mut found = self.index_by_owner()?;
                        let index = found.remove(&pseudonym).unwrap_or_default();
                        by_owner = Some(found);
                        index
                    }
                    other => other?,
                },
            };
            let SubjectIndex {
                ids: mut records,
                lists,
                ..
            } = index;
            let registry_key = layout::registry(&pseudonym);
            let registry_entry_deleted = match deletion {
                RecordDeletion::Now => {
                    // A record another subject now holds at one of the ids (see
                    // `scan_subject`) is theirs, not shredded.
                    let mut theirs = Vec::new();
                    for (i, (collection, blind)) in records.iter().enumerate() {
                        let key = layout::record(collection.as_str(), blind);
                        match self.backend.get(&key)? {
                            Some(sealed) if sealed.get(OWNER) != Some(&pseudonym.0[..]) => {
                                theirs.push(i);
                            }
                            _ => batch.delete(key),
                        }
                    }
                    for i in theirs.into_iter().rev() {
                        records.remove(i);
                    }
                    for list in lists {
                        batch.delete(list);
                    }
                    let present = self.backend.get(&registry_key)?.is_some();
                    batch.delete(registry_key);
                    present
                }
                RecordDeletion::Deferred => false,
            };
            receipts.push(ShredReceipt {
                subject: subject.clone(),
                region: self.region.clone(),
                data_key_version,
                key_destroyed_now: live,
                records,
                registry_entry_deleted,
            });
        }
        announce(&receipts).map_err(|detail| StoreError::ShredNotStarted {
            region: self.region.clone(),
            detail,
        })?;
        let destroyed = self.custodian.destroy_data_keys(&self.region, subjects)?;
        {
            let mut registry = write_lock(&self.registry);
            for subject in subjects {
                registry.remove(subject);
            }
        }
        for (receipt, destroyed) in receipts.iter_mut().zip(destroyed) {
            receipt.data_key_version = destroyed.data_key_version;
            receipt.key_destroyed_now = destroyed.kek_version.is_some();
        }
        if !batch.is_empty() {
            self.backend.apply(&batch)?;
            self.backend.flush()?;
        }
        Ok(receipts)
    }

    /// Deletes everything in the store wholesale — records, index and registry, all left behind
    /// by shreds (see [`RecordDeletion::Deferred`]) — then writes its metadata anew. Refused
    /// with [`StoreError::PurgeRefused`], deleting nothing, while any registered subject still
    /// has a live data key: a purge only ever removes what no key opens any more.
    ///
    /// Durable when it returns; calling it again after an interruption finishes the job.
    pub fn purge(&self) -> Result<(), StoreError> {
        let _gate = self.gate.exclusive();
        let live = self.subjects()?.len();
        if live > 0 {
            return Err(StoreError::PurgeRefused {
                region: self.region.clone(),
                live,
            });
        }
        write_lock(&self.registry).clear();
        let mut journal = lock(&self.journal);
        self.backend.clear()?;
        (journal.records, journal.batches) = (0, 0);
        journal.known_empty = self.backend.exclusive() && journal.in_flight == 0;
        self.backend.put(layout::META, &store_meta(&self.region))?;
        self.backend.flush()
    }

    /// Rewraps every data key of this region under a new key-encryption key, re-encrypting no
    /// record; finishes an interrupted rotation first.
    pub fn rotate_kek(&self) -> Result<RotationReport, StoreError> {
        self.custodian.rotate_kek(&self.region)
    }
}
