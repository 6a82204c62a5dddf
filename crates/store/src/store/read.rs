//! Reading records: gets, and the scans of a subject, a collection and the whole region.

use domicile_residency::SubjectId;

use serde::de::DeserializeOwned;

use super::read_ahead::{ReadAhead, SplitScan};
use crate::record::{layout, RawRecord, Record};
use crate::{Collection, RecordKey, StoreError};

use super::index::{collection_and_blind, SubjectIndex, MERGE_LISTS};
use super::{SealedStore, OWNER};

/// Reads: every record opened and authenticated before it is returned.
impl SealedStore {
    /// The record at (`collection`, `key`) decoded from JSON, or `None` if there is none.
    pub fn get<T: DeserializeOwned>(
        &self,
        collection: &Collection,
        key: &RecordKey,
    ) -> Result<Option<Record<T>>, StoreError> {
        let Some(raw) = self.get_raw(collection, key)? else {
            return Ok(None);
        };
        let value = raw.decode()?;
        Ok(Some(Record {
            meta: raw.meta,
            value,
        }))
    }

    /// The record at (`collection`, `key`) with its value as bytes, or `None` if there is none.
    /// A record that does not authenticate is [`StoreError::Authentication`], naming the key.
    pub fn get_raw(
        &self,
        collection: &Collection,
        key: &RecordKey,
    ) -> Result<Option<RawRecord>, StoreError> {
        let blind = self
            .pseudonyms
            .blind_index(collection.as_str(), key.as_str());
        let Some(sealed) = self
            .backend
            .get(&layout::record(collection.as_str(), &blind))?
        else {
            return Ok(None);
        };
        self.opener
            .open_record(collection, &blind, sealed, Some(key))
            .map(Some)
    }

    /// Every record of the subject, ordered by collection name length, then name, then key;
    /// none once they are shredded (even before their records are deleted).
    pub fn scan_subject(&self, subject: &SubjectId) -> Result<Vec<RawRecord>, StoreError> {
        let pseudonym = self.pseudonyms.pseudonym(subject);
        let SubjectIndex {
            ids,
            lists,
            journal_pending,
        } = self.subject_lists(&pseudonym)?;
        if journal_pending {
            // Fold it now, so that the next subject's read (a split or an export reads one
            // subject after another) finds an empty journal. The ids are read already: a fold
            // that fails changes nothing here.
            let _gate = self.gate.shared();
            let _ = self.fold_journal();
        }
        let mut out = Vec::new();
        // The ids of the records read, kept only when they are to replace the subject's lists.
        let merging = lists.len() >= MERGE_LISTS;
        let mut live = Vec::new();
        for (collection, blind) in ids {
            let record_key = layout::record(collection.as_str(), &blind);
            // An index entry without its record is what an interrupted delete leaves, and a
            // record whose key is destroyed what a shred leaves for a purge: skip both.
            if let Some(sealed) = self.backend.get(&record_key)? {
                // An id whose record another subject now holds (its deletion was interrupted,
                // then the key reused) is not this subject's: skip it, whatever the index says.
                if sealed.get(OWNER) != Some(&pseudonym.0[..]) {
                    continue;
                }
                match self.opener.open_record(&collection, &blind, sealed, None) {
                    Err(StoreError::SubjectShredded { .. }) => {}
                    record => {
                        out.push(record?);
                        if merging {
                            live.push((collection, blind));
                        }
                    }
                }
            }
        }
        if merging {
            // Best effort: a merge that fails or is skipped leaves the lists as they were.
            let _ = self.merge_lists(&pseudonym, &lists, live);
        }
        // Index order is blind-index order, which says nothing; callers get key order.
        out.sort_by(|a, b| a.meta.cmp_in_subject_order(&b.meta));
        Ok(out)
    }

    /// Every record of the collection, in blind-index order (which reveals nothing about the
    /// keys), opened as the iterator is advanced. A long scan on an embedded backend reads and
    /// opens every other part of the collection on a second thread (see `read_ahead`); the
    /// order and the errors are the same either way.
    pub fn scan_collection<'a>(
        &'a self,
        collection: &'a Collection,
    ) -> impl Iterator<Item = Result<RawRecord, StoreError>> + 'a {
        SplitScan::new(
            &self.backend,
            &self.opener,
            &self.scan_thread,
            collection.clone(),
            layout::collection_prefix(collection.as_str()),
            self.backend.exclusive(),
        )
    }

    /// Every record of the region, in key order (collection, then blind index: nothing about
    /// the keys), opened as the iterator is advanced (a long scan on an embedded backend opens
    /// records on a second thread while this one reads the backend). A record left behind an interrupted
    /// shred (its data key destroyed) is skipped, as a subject scan skips it.
    ///
    /// One sequential pass over the store: to list a whole region (an inventory), this costs a
    /// fraction of a [`scan_subject`](Self::scan_subject) per subject, which reads every record
    /// at a random place.
    pub fn scan_records(&self) -> impl Iterator<Item = Result<RawRecord, StoreError>> + '_ {
        let sealed = self
            .backend
            .scan_prefix(&[layout::RECORD])
            .map(move |item| {
                let (k, sealed) = item?;
                let (collection, blind) =
                    collection_and_blind(&k[1..]).ok_or_else(|| StoreError::Backend {
                        backend: self.backend.name(),
                        operation: "scan the records",
                        detail: format!("a malformed record key of {} bytes", k.len()),
                    })?;
                Ok((collection, blind, sealed))
            });
        ReadAhead::new(
            sealed,
            &self.opener,
            &self.scan_thread,
            self.backend.exclusive(),
        )
        .filter(|opened| !matches!(opened, Err(StoreError::SubjectShredded { .. })))
    }
}
