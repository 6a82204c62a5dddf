//! What a split reads and writes through a Gate: the inventory it plans and verifies against,
//! the subjects it shreds, the records it moves out, and the batches it writes on the other side
//! (which the product's ingest services write too).

use std::collections::{BTreeSet, HashMap};

use domicile_audit::{Action, BulkDigest};
use domicile_residency::{DataClass, Purpose, Region, Subject, SubjectId};
use domicile_store::{NewRecord, RawRecord, RecordDigest, RecordMeta, StoreError};

use super::call::{Gathered, Touched};
use super::gate_rules::{gate_rule, MIGRATION_WARRANT};
use super::verdict::Verdict;
use super::{bulk, Gate, GateError, SubjectInventory};
use crate::rules::AccessAction;
use crate::{MigrationWarrant, Principal, WarrantError};

/// Reading and writing whole subjects.
impl Gate {
    /// Every registered subject with their home region (under this Gate's policy) and every one
    /// of their records' metadata and plaintext digest: what a split plans and verifies against.
    /// Two bulk `scan` entries in the log: the decision, durable before anything is decrypted,
    /// then what was released, with the records per class and collection, the set of subjects
    /// and a digest over the records.
    pub fn inventory(
        &self,
        who: &Principal,
        purpose: &Purpose,
    ) -> Result<Vec<SubjectInventory>, GateError> {
        let call = self.call(who, purpose, None, Action::Scan);
        let verdict =
            self.decide_bulk(who, AccessAction::Scan, DataClass::Protected, "*", purpose)?;
        let resource = bulk(DataClass::Protected, "*", 0);
        let (inventory, _) = call.release_bulk("inventory", resource, &verdict, || {
            let mut subjects = self.store.subjects()?;
            subjects.sort_by(|a, b| a.subject.id.cmp(&b.subject.id));
            // One sequential pass over the region's records, grouped by subject, instead of a
            // subject scan (a random read per record) for each subject.
            let mut by_subject: HashMap<SubjectId, Vec<(RecordMeta, RecordDigest)>> =
                HashMap::new();
            for record in self.store.scan_records() {
                let record = record?;
                let d = record.digest();
                by_subject
                    .entry(record.meta.subject.clone())
                    .or_default()
                    .push((record.meta, d));
            }
            let mut out = Vec::with_capacity(subjects.len());
            let mut touched = Touched::default();
            let mut digest = BulkDigest::new();
            for registered in subjects {
                let pseudonym = self.pseudonym_of(&registered.subject.id);
                touched.subject(pseudonym);
                let mut records = by_subject
                    .remove(&registered.subject.id)
                    .unwrap_or_default();
                // The order a subject scan returns: by collection, then by key.
                records.sort_by(|(a, _), (b, _)| a.cmp_in_subject_order(b));
                for (meta, d) in &records {
                    digest.add(&d.0);
                    touched.record(pseudonym, meta.class, meta.collection.as_str());
                }
                out.push(SubjectInventory {
                    subject: registered.subject,
                    home: registered.home,
                    records,
                });
            }
            Ok(Gathered::released_batch(
                out,
                touched,
                DataClass::Protected,
                "*",
                Some(digest.finish()),
            ))
        })?;
        Ok(inventory)
    }

    /// The ids of every subject registered in this region, in id order: what a split shreds.
    /// Two bulk `scan` entries (collection `subjects`) in the log: the decision, then the list
    /// released, committing to the set of subjects.
    pub fn subject_ids(
        &self,
        who: &Principal,
        purpose: &Purpose,
    ) -> Result<Vec<SubjectId>, GateError> {
        let call = self.call(who, purpose, None, Action::Scan);
        let verdict = self.decide_bulk(
            who,
            AccessAction::Scan,
            DataClass::Protected,
            "subjects",
            purpose,
        )?;
        let resource = bulk(DataClass::Protected, "subjects", 0);
        let (ids, _) = call.release_bulk("list subjects", resource, &verdict, || {
            let mut ids: Vec<SubjectId> = self
                .store
                .subjects()?
                .into_iter()
                .map(|s| s.subject.id)
                .collect();
            ids.sort();
            let mut touched = Touched::default();
            ids.iter()
                .for_each(|id| touched.subject(self.pseudonym_of(id)));
            Ok(Gathered::released_batch(
                ids,
                touched,
                DataClass::Protected,
                "subjects",
                None,
            ))
        })?;
        Ok(ids)
    }

    /// Reads every record of several subjects, to move them elsewhere (a split). Two `migrate`
    /// entries in the log: the decision, durable before anything is decrypted, and what was
    /// released (records per class and collection, the subject set, a digest over everything),
    /// durable before it returns.
    ///
    /// Besides the access rules, the residency policy is asked, for every home the subjects
    /// have, whether their Protected data may go from here toward that home for this purpose
    /// (for a subject homed here: whether it may rest here): a migration read moves data only
    /// toward each subject's home.
    ///
    /// Only under `warrant`: a split plan's fingerprint and subject set signed by the migration
    /// key this Gate trusts ([`trust_migration_key`](Self::trust_migration_key)), naming every
    /// subject asked for; otherwise refused under [`MIGRATION_WARRANT`](crate::MIGRATION_WARRANT).
    /// The plan's fingerprint is recorded in the entries' purpose.
    pub fn read_subjects(
        &self,
        who: &Principal,
        purpose: &Purpose,
        subjects: &[SubjectId],
        warrant: &MigrationWarrant,
    ) -> Result<Vec<(SubjectId, Vec<RawRecord>)>, GateError> {
        let purpose = &under_warrant(purpose, warrant);
        let call = self.call(who, purpose, None, Action::Migrate);
        let mut verdict =
            self.decide_bulk(who, AccessAction::Read, DataClass::Protected, "*", purpose)?;
        verdict.merge(self.warrant_verdict(warrant, subjects.iter()));
        let mut homes = BTreeSet::new();
        for id in subjects {
            if let Some(registered) = self.store.subject(id)? {
                homes.insert(registered.home);
            }
        }
        for home in &homes {
            let toward_home = self.policy.may_transfer(
                DataClass::Protected,
                home,
                &self.region,
                home,
                purpose,
            )?;
            verdict.merge(Verdict::of_transfer(toward_home));
        }
        let resource = bulk(DataClass::Protected, "*", 0);
        let (read, _) = call.release_bulk("read for migration", resource, &verdict, || {
            let mut out = Vec::with_capacity(subjects.len());
            let mut touched = Touched::default();
            let mut digest = BulkDigest::new();
            for subject in subjects {
                let pseudonym = self.pseudonym_of(subject);
                touched.subject(pseudonym);
                let records = self.store.scan_subject(subject)?;
                for r in &records {
                    digest.add(&r.digest().0);
                    touched.record(pseudonym, r.meta.class, r.meta.collection.as_str());
                }
                out.push((subject.clone(), records));
            }
            Ok(Gathered::released_batch(
                out,
                touched,
                DataClass::Protected,
                "*",
                Some(digest.finish()),
            ))
        })?;
        Ok(read)
    }

    /// Registers subjects and writes their records in one atomic, durable batch (a split's
    /// target side). Every record is decided — the residency policy for its class and the
    /// subject's home here, the access rules for writing it — and one `migrate` entry with the
    /// count and a digest over the values is durable before the store is touched. If any record
    /// is refused, nothing is written.
    ///
    /// Only under `warrant`, as [`read_subjects`](Self::read_subjects) is: every subject of the
    /// batch must be one it names.
    pub fn write_subjects(
        &self,
        who: &Principal,
        purpose: &Purpose,
        batch: &[(Subject, Vec<RawRecord>)],
        warrant: &MigrationWarrant,
    ) -> Result<Vec<RecordMeta>, GateError> {
        let purpose = &under_warrant(purpose, warrant);
        let check = self.warrant_verdict(warrant, batch.iter().map(|(s, _)| &s.id));
        self.write_many(who, purpose, batch, Action::Migrate, Some(check))
    }

    /// The Gate's answer to a migration under `warrant` for `subjects`: allowed by
    /// [`MIGRATION_WARRANT`] when the warrant verifies under the trusted migration key and names
    /// every one of them, else refused by it, saying which (by count, never by id).
    fn warrant_verdict<'a>(
        &self,
        warrant: &MigrationWarrant,
        subjects: impl IntoIterator<Item = &'a SubjectId>,
    ) -> Verdict {
        let rule = gate_rule(MIGRATION_WARRANT);
        let key = self
            .migration_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let checked = match key {
            None => Err(WarrantError::NoTrustedKey),
            Some(key) => warrant.verify(&key),
        };
        if let Err(e) = checked {
            return Verdict::refused_by(rule, e.to_string());
        }
        let outside = subjects.into_iter().filter(|s| !warrant.covers(s)).count();
        if outside > 0 {
            return Verdict::refused_by(
                rule,
                format!(
                    "{outside} subject(s) asked for are not in the warrant of plan {}",
                    warrant.plan()
                ),
            );
        }
        Verdict::allowed_by(rule)
    }

    /// Registers subjects and writes their records in one atomic, durable batch, as the
    /// product's services ingest data: decided and logged like
    /// [`write_subjects`](Self::write_subjects), as one bulk `write` entry.
    pub fn write_batch(
        &self,
        who: &Principal,
        purpose: &Purpose,
        batch: &[(Subject, Vec<RawRecord>)],
    ) -> Result<Vec<RecordMeta>, GateError> {
        self.write_many(who, purpose, batch, Action::Write, None)
    }

    /// The batch write both of the above are: every distinct (class, home, collection) decided
    /// once and merged into one verdict, one entry, then one atomic store batch.
    fn write_many(
        &self,
        who: &Principal,
        purpose: &Purpose,
        batch: &[(Subject, Vec<RawRecord>)],
        action: Action,
        warrant: Option<Verdict>,
    ) -> Result<Vec<RecordMeta>, GateError> {
        let call = self.call(who, purpose, None, action);
        let mut verdict = Verdict::unopposed();
        if let Some(warrant) = warrant {
            verdict.merge(warrant);
        }
        // One decision per (class, home, collection): the rest of the batch asks the same.
        let mut decided: BTreeSet<(DataClass, Region, String)> = BTreeSet::new();
        let mut digest = BulkDigest::new();
        let mut touched = Touched::default();
        for (subject, records) in batch {
            let home = self.policy.home_region(subject)?;
            let pseudonym = self.pseudonym_of(&subject.id);
            touched.subject(pseudonym);
            for r in records {
                digest.add(&r.digest().0);
                touched.record(pseudonym, r.meta.class, r.meta.collection.as_str());
                let (class, collection) = (r.meta.class, r.meta.collection.as_str());
                if !decided.insert((class, home.clone(), collection.to_owned())) {
                    continue;
                }
                let mut one = self.decide_placed(
                    who,
                    AccessAction::Write,
                    class,
                    collection,
                    home.clone(),
                    purpose,
                )?;
                if !one.allowed {
                    // The refusal names the record by its pseudonyms, never by the subject's id.
                    one.reason = format!(
                        "{class} record {} of subject {}: {}",
                        self.record_key_pseudonym(&r.meta.collection, &r.meta.key),
                        self.pseudonym(&subject.id),
                        one.reason
                    );
                }
                verdict.merge(one);
            }
        }
        call.proceed_batch(
            "write a batch",
            touched,
            DataClass::Protected,
            "*",
            &verdict,
            Some(digest.finish()),
            || -> Result<Vec<RecordMeta>, StoreError> {
                let subjects: Vec<Subject> = batch.iter().map(|(s, _)| s.clone()).collect();
                let new: Vec<NewRecord<'_>> = batch
                    .iter()
                    .flat_map(|(subject, records)| {
                        records.iter().map(move |r| NewRecord {
                            subject: &subject.id,
                            class: r.meta.class,
                            collection: &r.meta.collection,
                            key: &r.meta.key,
                            value: &r.value,
                        })
                    })
                    .collect();
                // The subjects and their records, durable with one flush.
                self.store
                    .register_and_put(&subjects, &new)
                    .map(|(_, metas)| metas)
            },
        )
        .map(|(metas, _)| metas)
    }
}

/// `purpose` with the warrant's plan fingerprint added to its detail, so that every entry a
/// warrant authorises (or is refused under) says which plan it claimed.
fn under_warrant(purpose: &Purpose, warrant: &MigrationWarrant) -> Purpose {
    let detail = match &purpose.detail {
        Some(d) => format!("{d}; plan {}", warrant.plan()),
        None => format!("plan {}", warrant.plan()),
    };
    purpose.clone().with_detail(detail)
}
