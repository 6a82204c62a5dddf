//! Checking a store end to end, as an operator does after a restore, a crash or before a split:
//! every record and registry entry opens, every record may rest in this region under the
//! policy, and the subject index lists each record under the owner its header names.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use domicile_residency::{DataClass, Decision, Region, SubjectId};
use serde::{Deserialize, Serialize};

use crate::custodian::{hex, BlindIndex, DataKeyState, Pseudonym};
use crate::record::{layout, RecordDigest, RecordMeta};
use crate::StoreError;

use super::index::{
    collection_and_blind, parse_ids, parse_journal_entry, record_owner, CollectionNumbers,
};
use super::read_ahead::ReadAhead;
use super::{RecordId, SealedStore};

/// The (owner, record id) pairs the index names, in 52 bytes each with no allocation of their
/// own (a store's few collection names are numbered once), so that a check of a large store
/// holds its index in memory at the cost of a hash set of fixed-size entries.
#[derive(Default)]
struct Ids {
    names: CollectionNumbers,
    set: HashSet<(Pseudonym, u32, BlindIndex)>,
}

impl Ids {
    fn insert(&mut self, owner: Pseudonym, (collection, blind): RecordId) {
        let name = self.names.number(collection);
        self.set.insert((owner, name, blind));
    }

    fn contains(&self, owner: Pseudonym, (collection, blind): &RecordId) -> bool {
        self.names
            .get(collection)
            .is_some_and(|name| self.set.contains(&(owner, name, *blind)))
    }
}

/// A record the index did not list, by its owner and id, and how the report names it.
type Unindexed = ((Pseudonym, RecordId), Finding);

/// What the placement of records needs to remember: the policy's answers by (class, home
/// region), and the subjects found without a registry entry.
#[derive(Default)]
struct Placement {
    decisions: HashMap<(DataClass, Region), Decision>,
    unregistered: HashSet<SubjectId>,
}

/// What [`SealedStore::check`] found. Records are named by collection and blind index and
/// subjects by pseudonym, never by key or id, so a report can be shown or filed anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreCheck {
    /// Records that opened under their subject's live data key.
    pub records: usize,
    /// Registry entries that opened: the subjects the store holds.
    pub subjects: usize,
    /// Records and registry entries whose data key is destroyed: what a shred leaves behind
    /// until its deletion runs ([`RecordDeletion::Deferred`](super::RecordDeletion::Deferred)
    /// until [`purge`](SealedStore::purge), or an interrupted shred until it is run again).
    /// They open for no one.
    pub shredded: usize,
    /// Records and registry entries that do not open or do not parse, with why.
    pub unreadable: Vec<Finding>,
    /// Records that no index entry lists under the owner their header names: a read of that
    /// subject misses them, and a shred of them leaves them behind. [`rebuild_index`]
    /// (`domicile store reindex`) repairs this.
    ///
    /// [`rebuild_index`]: SealedStore::rebuild_index
    pub unindexed: Vec<Finding>,
    /// Index entries (journal entries, subject lists) that do not parse: a read or shred of a
    /// subject fails with [`StoreError::CorruptIndex`] until [`rebuild_index`] repairs them.
    ///
    /// [`rebuild_index`]: SealedStore::rebuild_index
    pub corrupt_index: Vec<Finding>,
    /// Subjects whose records open under their data key but who have no registry entry: their
    /// attributes, and so their home region under the policy, are gone (a split cannot place
    /// them). Named by pseudonym; the repair is registering them again.
    pub unregistered: Vec<Finding>,
    /// Records the store's policy does not let rest in this region, given their class and
    /// their subject's home region today, each with the rule: what a subject's move to another
    /// home leaves behind until their records are moved
    /// ([`export_subject`](SealedStore::export_subject), then [`import`](SealedStore::import)
    /// in their home region).
    pub misplaced: Vec<Finding>,
    /// Index ids whose record is gone or names another owner: what a delete leaves in the
    /// journal until the next fold, or an interrupted one for good. Reads skip them;
    /// [`rebuild_index`](SealedStore::rebuild_index) drops them.
    pub stale_index_ids: usize,
    /// Journal entries not yet folded into subject lists.
    pub journal_entries: usize,
}

/// One entry a [`StoreCheck`] found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Which entry: a record as `collection #blind-index`, a registry entry as `registry
    /// entry of <pseudonym>`, an index entry as `<kind> <backend key in hex>`.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

impl StoreCheck {
    /// Whether nothing is wrong: no entry unreadable, unindexed or corrupt, no subject
    /// unregistered, no record misplaced. Shred leftovers, stale index ids and unfolded journal
    /// entries are states a sound store passes through.
    pub fn is_sound(&self) -> bool {
        self.findings().iter().all(|(_, found)| found.is_empty())
    }

    /// SHA-256 of the report as JSON (serde_json's compact encoding, fields in their declared
    /// order). The access Gate's `store_check` audit entry records it as its result digest, so
    /// that a report kept anywhere can be matched to the entry that logged the check.
    pub fn digest(&self) -> RecordDigest {
        RecordDigest::of(&serde_json::to_vec(self).expect("a report serialises to JSON"))
    }

    /// The five kinds of finding, each by its field's name, in the report's order.
    pub fn findings(&self) -> [(&'static str, &[Finding]); 5] {
        [
            ("unreadable", &self.unreadable),
            ("unindexed", &self.unindexed),
            ("corrupt_index", &self.corrupt_index),
            ("unregistered", &self.unregistered),
            ("misplaced", &self.misplaced),
        ]
    }

    /// Keeps the first `max` findings of each kind; returns how many of each kind it left out
    /// (kinds with none left out absent). Counts and [`is_sound`](Self::is_sound) are to be
    /// taken before.
    pub fn truncate_findings(&mut self, max: usize) -> BTreeMap<&'static str, usize> {
        let mut left_out = BTreeMap::new();
        for (kind, found) in [
            ("unreadable", &mut self.unreadable),
            ("unindexed", &mut self.unindexed),
            ("corrupt_index", &mut self.corrupt_index),
            ("unregistered", &mut self.unregistered),
            ("misplaced", &mut self.misplaced),
        ] {
            if found.len() > max {
                left_out.insert(kind, found.len() - max);
                found.truncate(max);
            }
        }
        left_out
    }
}

/// Checking: the store read end to end, nothing written.
impl SealedStore {
    /// Reads the whole store and reports what is wrong with it: every record is opened
    /// (authenticated and decrypted), its placement asked of the policy again and the record
    /// dropped, every registry entry opened, and the subject index (journal and lists)
    /// compared with the owner each record's header names. Writes nothing. Shreds through
    /// this handle wait until it is done; writes go on, and a record one of them adds after the
    /// index was read is looked up in a second read of it.
    ///
    /// An error is returned only when the backend or the key custodian cannot be read; what
    /// is wrong with the store's own entries is in the report.
    pub fn check(&self) -> Result<StoreCheck, StoreError> {
        // Shreds change records, lists and keys together; a check sees all of one or none.
        // Writes go on.
        let _gate = self.gate.check();
        let mut report = StoreCheck::default();
        // The registry first: each entry is opened once, from disk, and cached for the
        // placement of every record of its subject below.
        self.check_registry(&mut report)?;
        let indexed = self.check_index(&mut report)?;
        let unindexed = self.check_records(&indexed, &mut report)?;
        if !unindexed.is_empty() {
            // A write (through this handle, or another on PostgreSQL) may have added records
            // after the index was read: a batch writes its records and its journal entry
            // atomically, so a second read of the index lists every record written before it,
            // folded or not.
            let again = self.check_index(&mut StoreCheck::default())?;
            report.unindexed = unindexed
                .into_iter()
                .filter(|((owner, id), _)| !again.contains(*owner, id))
                .map(|(_, finding)| finding)
                .collect();
        }
        Ok(report)
    }

    /// Reads every journal entry and subject list; returns the (owner, record) pairs they name.
    fn check_index(&self, report: &mut StoreCheck) -> Result<Ids, StoreError> {
        let mut indexed = Ids::default();
        for item in self.backend.scan_prefix(&[layout::JOURNAL]) {
            let (key, entry) = item?;
            report.journal_entries += 1;
            match parse_journal_entry(&key, &entry) {
                Ok(ids) => {
                    for (owner, id) in ids {
                        indexed.insert(owner, id);
                    }
                }
                Err(e) => report.corrupt_index.push(Finding {
                    entry: format!("journal entry {}", hex(&key)),
                    reason: e.to_string(),
                }),
            }
        }
        for item in self.backend.scan_prefix(&[layout::SUBJECT_LIST]) {
            let (key, list) = item?;
            let owner = layout::list_owner(&key);
            match (owner, parse_ids(&key, &list)) {
                (Some(owner), Ok(ids)) => {
                    for id in ids {
                        indexed.insert(owner, id);
                    }
                }
                (_, Err(e)) => report.corrupt_index.push(Finding {
                    entry: format!("subject list {}", hex(&key)),
                    reason: e.to_string(),
                }),
                (None, Ok(_)) => report.corrupt_index.push(Finding {
                    entry: format!("subject list {}", hex(&key)),
                    reason: "its key names no subject pseudonym".into(),
                }),
            }
        }
        Ok(indexed)
    }

    /// Opens every record (on the scan thread, as a region scan does) and asks the policy
    /// whether it may rest here, counts the index ids with no such record, and returns the
    /// records `indexed` does not list under their owner.
    fn check_records(
        &self,
        indexed: &Ids,
        report: &mut StoreCheck,
    ) -> Result<Vec<Unindexed>, StoreError> {
        let mut placement = Placement::default();
        // Index ids matched by a record: each record's backend key is its own, so none twice.
        let mut matched = 0;
        let mut malformed = Vec::new();
        let mut unindexed = Vec::new();
        let sealed = self
            .backend
            .scan_prefix(&[layout::RECORD])
            .filter_map(|item| {
                let (key, sealed) = match item {
                    Ok(entry) => entry,
                    Err(e) => return Some(Err(e)),
                };
                let Some((collection, blind)) = collection_and_blind(&key[1..]) else {
                    malformed.push(Finding {
                        entry: format!("record {}", hex(&key)),
                        reason: "its backend key names no collection and blind index".into(),
                    });
                    return None;
                };
                // A header too short to name an owner fails to open below, which says why.
                if let Some((owner, id)) = record_owner(&key, &sealed) {
                    if indexed.contains(owner, &id) {
                        matched += 1;
                    } else {
                        let finding = Finding {
                            entry: format!("{collection} {blind}"),
                            reason: format!("no index entry lists it under its owner {owner}"),
                        };
                        unindexed.push(((owner, id), finding));
                    }
                }
                Some(Ok((collection, blind, sealed)))
            });
        let opened = ReadAhead::new(
            sealed,
            &self.opener,
            &self.scan_thread,
            self.backend.exclusive(),
        );
        for outcome in opened {
            match outcome {
                Ok(record) => {
                    report.records += 1;
                    self.check_placement(&record.meta, &mut placement, report)?;
                }
                Err(StoreError::SubjectShredded { .. }) => report.shredded += 1,
                Err(StoreError::Authentication {
                    collection,
                    key,
                    reason,
                }) => report.unreadable.push(Finding {
                    entry: format!("{collection} {key}"),
                    reason: format!("it does not authenticate: {reason}"),
                }),
                Err(e) => return Err(e),
            }
        }
        report.unreadable.extend(malformed);
        report.stale_index_ids = indexed.set.len() - matched;
        for subject in placement.unregistered {
            report.unregistered.push(Finding {
                entry: format!("subject {}", self.pseudonyms.pseudonym(&subject)),
                reason: "its records open under its data key, but it has no registry entry".into(),
            });
        }
        Ok(unindexed)
    }

    /// Asks the policy whether the record `meta` may rest here, given its class and its
    /// subject's home region as the registry says today.
    fn check_placement(
        &self,
        meta: &RecordMeta,
        placement: &mut Placement,
        report: &mut StoreCheck,
    ) -> Result<(), StoreError> {
        if placement.unregistered.contains(&meta.subject) {
            return Ok(());
        }
        let home = match self.registered_home(&meta.subject) {
            Ok(Some((home, _))) => home,
            Ok(None) => {
                placement.unregistered.insert(meta.subject.clone());
                return Ok(());
            }
            // A registry entry that does not open, or a subject the policy cannot place: the
            // registry's pass reports it.
            Err(StoreError::Authentication { .. } | StoreError::Policy(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let decision = match placement.decisions.entry((meta.class, home.clone())) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(asked) => {
                let (class, home) = asked.key();
                let decision = self.policy.may_rest_in(*class, home, &self.region)?;
                asked.insert(decision)
            }
        };
        if !decision.allowed {
            let blind = self
                .pseudonyms
                .blind_index(meta.collection.as_str(), meta.key.as_str());
            report.misplaced.push(Finding {
                entry: format!("{} {blind}", meta.collection),
                reason: format!(
                    "rule {} does not let {} data of a subject homed in {} rest in {}",
                    decision.rule, meta.class, home, self.region
                ),
            });
        }
        Ok(())
    }

    /// Opens every registry entry under its subject's data key (from disk, whatever the
    /// handle has cached), and caches the ones that open.
    fn check_registry(&self, report: &mut StoreCheck) -> Result<(), StoreError> {
        for item in self.backend.scan_prefix(&[layout::REGISTRY]) {
            let (key, sealed) = item?;
            let Ok(pseudonym) = <[u8; 16]>::try_from(&key[1..]).map(Pseudonym) else {
                report.unreadable.push(Finding {
                    entry: format!("registry entry {}", hex(&key)),
                    reason: "its key names no subject pseudonym".into(),
                });
                continue;
            };
            let entry = format!("registry entry of {pseudonym}");
            let id = match self.custodian.data_key(&self.region, &pseudonym)? {
                DataKeyState::Live(key) => key.subject().clone(),
                DataKeyState::Shredded { .. } => {
                    report.shredded += 1;
                    continue;
                }
                DataKeyState::Absent => {
                    report.unreadable.push(Finding {
                        entry,
                        reason: format!("no data key in region {} answers to it", self.region),
                    });
                    continue;
                }
            };
            match self.open_registry_entry(&id, pseudonym, sealed) {
                Ok(Some(_)) => report.subjects += 1,
                Ok(None) => report.shredded += 1,
                // What is wrong with the entry itself, or with its subject under the policy.
                Err(e @ (StoreError::Authentication { .. } | StoreError::Policy(_))) => {
                    report.unreadable.push(Finding {
                        entry,
                        reason: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
