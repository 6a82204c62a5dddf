//! Many records at once: scans and aggregates (releasing records, possibly across a border, under
//! the obligations the residency policy sets), exports of sealed records, crypto-shredding,
//! opening the log itself, and checking the store end to end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use domicile_audit::{Action, BulkDigest, Receipt, ResultDigest};
use domicile_residency::{DataClass, ExportLicence, Obligation, Purpose, Region, SubjectId};
use domicile_store::{
    ExportBundle, RawRecord, RecordDeletion, RecordDigest, ShredReceipt, StoreCheck, TransferKey,
};

use super::call::{Gathered, Touched};
use super::gate_rules::{gate_rule, OBLIGATION_UNMET};
use super::verdict::Verdict;
use super::{bulk, AggregateCount, Gate, GateError, Released, ScanRequest, ScanResult, SubjectRef};
use crate::rules::{AccessAction, Resource};
use crate::Principal;

/// Bulk reads, exports, shredding, the log and the store's check.
impl Gate {
    /// Bulk read of a collection's records of one class (training, migration, metrics).
    ///
    /// Records whose subject's home does not allow them to rest here are skipped and counted.
    /// When `destination` is another region, the residency policy decides the transfer for each
    /// subject home, and the Gate honours the obligations: under `Pseudonymize` (alone or as an
    /// option) the records leave with pseudonyms instead of subject ids; obligations it cannot
    /// meet by pseudonymising (aggregation only, an export licence) refuse the scan — use
    /// [`aggregate`](Self::aggregate) for those.
    pub fn scan(
        &self,
        who: &Principal,
        purpose: &Purpose,
        request: &ScanRequest,
    ) -> Result<ScanResult, GateError> {
        let call = self.call(who, purpose, None, Action::Scan);
        let collection = request.collection.as_str();
        let mut verdict = self.decide_release(who, purpose, request)?;
        let pseudonymise = !verdict.obligations.is_empty();
        if pseudonymise && !verdict.met_by_pseudonymising() {
            verdict.refuse(
                gate_rule(OBLIGATION_UNMET),
                "the transfer's obligations cannot be met by pseudonymising; aggregate instead",
            );
        }
        let resource = bulk(request.class, collection, 0);
        let ((records, skipped, withheld), receipt) =
            call.release_bulk("scan", resource, &verdict, || {
                let mut records = Vec::new();
                let mut touched = Touched::default();
                let mut skipped = 0;
                let mut withheld = 0;
                let mut placed: BTreeMap<SubjectId, bool> = BTreeMap::new();
                let mut digest = BulkDigest::new();
                for item in self.store.scan_collection(&request.collection) {
                    let raw = item?;
                    if raw.meta.class != request.class {
                        continue;
                    }
                    let here = match placed.get(&raw.meta.subject) {
                        Some(ok) => *ok,
                        None => {
                            let ok = match self.store.subject(&raw.meta.subject)? {
                                Some(s) => {
                                    self.policy
                                        .may_rest_in(raw.meta.class, &s.home, &self.region)?
                                        .allowed
                                }
                                None => false,
                            };
                            placed.insert(raw.meta.subject.clone(), ok);
                            ok
                        }
                    };
                    if !here {
                        skipped += 1;
                        continue;
                    }
                    let (subject, value) = if pseudonymise {
                        // De-identified in value as well as subject, under the transfer key.
                        let Some(value) = self.deidentify(raw.meta.class, &raw.value) else {
                            withheld += 1;
                            continue;
                        };
                        digest.add(&RecordDigest::of(&value).0);
                        let subject = self.transfer_pseudonym(&raw.meta.subject);
                        (SubjectRef::Pseudonym(subject), value)
                    } else {
                        digest.add(&raw.digest().0);
                        (SubjectRef::Id(raw.meta.subject.clone()), raw.value)
                    };
                    touched.record(
                        self.pseudonym_of(&raw.meta.subject),
                        raw.meta.class,
                        raw.meta.collection.as_str(),
                    );
                    records.push(Released {
                        subject,
                        class: raw.meta.class,
                        collection: raw.meta.collection,
                        key: raw.meta.key,
                        value,
                    });
                }
                Ok(Gathered::released_batch(
                    (records, skipped, withheld),
                    touched,
                    request.class,
                    collection,
                    Some(digest.finish()),
                ))
            })?;
        Ok(ScanResult {
            records,
            skipped_misplaced: skipped,
            withheld_not_deidentifiable: withheld,
            obligations: verdict.obligations,
            receipt,
        })
    }

    /// Counts a collection's records of one class by group, for release to `destination`.
    /// Under an `Aggregate { min_subjects }` obligation (alone or as an option), groups with
    /// fewer distinct subjects than that are suppressed; the release is one audit entry.
    pub fn aggregate(
        &self,
        who: &Principal,
        purpose: &Purpose,
        request: &ScanRequest,
        group_of: &dyn Fn(&RawRecord) -> String,
    ) -> Result<Vec<AggregateCount>, GateError> {
        let call = self.call(who, purpose, None, Action::Scan);
        let collection = request.collection.as_str();
        let mut verdict = self.decide_release(who, purpose, request)?;
        let min_subjects = verdict.min_subjects_when_aggregating();
        if min_subjects.is_none() {
            verdict.refuse(
                gate_rule(OBLIGATION_UNMET),
                "the transfer's obligations cannot be met by aggregating",
            );
        }
        let k = min_subjects.unwrap_or(u32::MAX);
        let resource = bulk(request.class, collection, 0);
        let (counts, _) = call.release_bulk("aggregate", resource, &verdict, || {
            let mut groups: BTreeMap<String, (BTreeSet<SubjectId>, u64)> = BTreeMap::new();
            let mut touched = Touched::default();
            for item in self.store.scan_collection(&request.collection) {
                let raw = item?;
                if raw.meta.class != request.class {
                    continue;
                }
                touched.record(
                    self.pseudonym_of(&raw.meta.subject),
                    raw.meta.class,
                    raw.meta.collection.as_str(),
                );
                let g = groups.entry(group_of(&raw)).or_default();
                g.0.insert(raw.meta.subject.clone());
                g.1 += 1;
            }
            let counts: Vec<AggregateCount> = groups
                .into_iter()
                .filter(|(_, (subjects, _))| subjects.len() as u64 >= u64::from(k))
                .map(|(group, (subjects, records))| AggregateCount {
                    group,
                    subjects: subjects.len() as u64,
                    records,
                })
                .collect();
            let body = serde_json::to_vec(&counts).expect("aggregate counts serialise to JSON");
            let digest = ResultDigest(RecordDigest::of(&body).0);
            Ok(Gathered::released_batch(
                counts,
                touched,
                request.class,
                collection,
                Some(digest),
            ))
        })?;
        Ok(counts)
    }

    /// Exports a subject's sealed records for `destination` (no plaintext leaves): the residency
    /// policy decides the transfer of every record's class, and an `ExportLicence` obligation
    /// needs `licence`, the licence held, whose regime and item must be the obligation's
    /// ([`ExportLicence::check`]). The licence relied on is recorded in the audit entry, in its
    /// `approval` field as `licence:REGIME/ITEM/LICENCE-ID`.
    pub fn export(
        &self,
        who: &Principal,
        purpose: &Purpose,
        subject: &SubjectId,
        destination: &Region,
        licence: Option<&ExportLicence>,
    ) -> Result<(ExportBundle, TransferKey), GateError> {
        let call = self
            .call(who, purpose, None, Action::Export)
            .relying_on_licence(licence);
        let home = self.home_of(subject)?;
        // A caller of another region takes the export home: its region is the destination.
        let destination = &self
            .destination_for(who, Some(destination))
            .unwrap_or_else(|| destination.clone());
        self.policy.check_region(destination)?;
        let records = self.store.scan_subject(subject)?;
        let classes: BTreeSet<DataClass> = records.iter().map(|r| r.meta.class).collect();
        // The strictest class decides the access rules' question; the residency policy is asked
        // about every class.
        let class = classes
            .iter()
            .next()
            .copied()
            .unwrap_or(DataClass::Protected);
        let resource = self.records_here(class, "*", Some(home.clone()));
        let mut verdict = self.decide_access(who, AccessAction::Export, resource, purpose, None)?;
        for class in &classes {
            self.add_transfer(
                &mut verdict,
                *class,
                std::slice::from_ref(&home),
                destination,
                purpose,
            )?;
        }
        // Sealed records leave as they are: only a licence meets an obligation here, and only
        // one of the regime and item the policy names.
        let unmet = verdict.obligations.iter().find_map(|o| match (o, licence) {
            (Obligation::ExportLicence { .. }, Some(held)) => {
                held.check(o).err().map(|e| e.to_string())
            }
            (Obligation::ExportLicence { .. }, None) => Some(format!(
                "obligation not met: {o}; no export licence was given"
            )),
            (other, _) => Some(format!("obligation not met: {other}")),
        });
        if let Some(why) = unmet {
            verdict.refuse(gate_rule(OBLIGATION_UNMET), why);
        }
        let mut touched = Touched::default();
        touched.name(self.pseudonym_of(subject));
        for r in &records {
            touched.record(
                self.pseudonym_of(subject),
                r.meta.class,
                r.meta.collection.as_str(),
            );
        }
        call.proceed_batch("export", touched, class, "*", &verdict, None, || {
            self.store.export_subject(subject)
        })
        .map(|(bundle, _)| bundle)
    }

    /// Crypto-shreds a subject in this region.
    pub fn shred_subject(
        &self,
        who: &Principal,
        purpose: &Purpose,
        subject: &SubjectId,
    ) -> Result<ShredReceipt, GateError> {
        self.home_of(subject)?;
        let mut receipts = self.shred_subjects(who, purpose, std::slice::from_ref(subject))?;
        receipts.pop().ok_or_else(|| GateError::UnknownSubject {
            subject: subject.clone(),
            region: self.region.clone(),
        })
    }

    /// Crypto-shreds many subjects in this region in one decided, logged, durable step. Subjects
    /// not registered here (already shredded, say) are skipped; a receipt is returned for every
    /// subject shredded.
    pub fn shred_subjects(
        &self,
        who: &Principal,
        purpose: &Purpose,
        subjects: &[SubjectId],
    ) -> Result<Vec<ShredReceipt>, GateError> {
        self.shred_subjects_with(who, purpose, subjects, RecordDeletion::Now)
    }

    /// [`shred_subjects`](Self::shred_subjects), with the records deleted now or left for one
    /// wholesale [`purge`](Self::purge) of the region ([`RecordDeletion`]). Decided and logged
    /// the same way: the keys are destroyed either way.
    pub fn shred_subjects_with(
        &self,
        who: &Principal,
        purpose: &Purpose,
        subjects: &[SubjectId],
        deletion: RecordDeletion,
    ) -> Result<Vec<ShredReceipt>, GateError> {
        self.shred_subjects_announced(who, purpose, subjects, deletion, |_| Ok(()))
    }

    /// [`shred_subjects_with`](Self::shred_subjects_with), handing `announce` the receipts
    /// before the first key is destroyed
    /// ([`SealedStore::shred_subjects_announced`](domicile_store::SealedStore::shred_subjects_announced)):
    /// a split journals them there, so a crash between keys destroyed and receipts returned
    /// loses no receipt. If `announce` fails, nothing is destroyed.
    pub fn shred_subjects_announced(
        &self,
        who: &Principal,
        purpose: &Purpose,
        subjects: &[SubjectId],
        deletion: RecordDeletion,
        announce: impl FnOnce(&[ShredReceipt]) -> Result<(), String>,
    ) -> Result<Vec<ShredReceipt>, GateError> {
        let call = self.call(who, purpose, None, Action::Shred);
        let mut present = Vec::with_capacity(subjects.len());
        let mut homes = BTreeSet::new();
        for id in subjects {
            if let Some(s) = self.store.subject(id)? {
                homes.insert(s.home);
                present.push(id.clone());
            }
        }
        let mut verdict = Verdict::unopposed();
        for home in homes {
            let resource = self.records_here(DataClass::Protected, "*", Some(home));
            verdict.merge(self.decide_access(who, AccessAction::Shred, resource, purpose, None)?);
        }
        // The entry commits to every subject whose keys it destroys.
        let mut touched = Touched::default();
        for id in &present {
            touched.subject(self.pseudonym_of(id));
        }
        call.proceed_batch(
            "shred",
            touched,
            DataClass::KeyMaterial,
            "*",
            &verdict,
            None,
            || {
                self.store
                    .shred_subjects_announced(&present, deletion, announce)
            },
        )
        .map(|(receipts, _)| receipts)
    }

    /// Deletes everything left in this region's store once every subject in it is shredded
    /// ([`SealedStore::purge`](domicile_store::SealedStore::purge)): what a split does to a
    /// region it empties. Decided as a shred of every record here and logged as one `shred`
    /// entry naming no subject; refused by the store, deleting nothing, while any subject
    /// still has a live key.
    pub fn purge(&self, who: &Principal, purpose: &Purpose) -> Result<(), GateError> {
        let call = self.call(who, purpose, None, Action::Shred);
        let verdict =
            self.decide_bulk(who, AccessAction::Shred, DataClass::Protected, "*", purpose)?;
        call.proceed_batch(
            "purge",
            Touched::default(),
            DataClass::KeyMaterial,
            "*",
            &verdict,
            None,
            || self.store.purge(),
        )
        .map(|((), _)| ())
    }

    /// Lets a principal read this region's audit log: the decision is itself logged. Returns the
    /// log's directory, to hand to `domicile audit verify | query`.
    pub fn open_log(&self, who: &Principal, purpose: &Purpose) -> Result<PathBuf, GateError> {
        let call = self.call(who, purpose, None, Action::AuditRead);
        let resource = Resource::AuditLog {
            region: self.region.clone(),
        };
        let verdict = self.decide_access(who, AccessAction::ReadLog, resource, purpose, None)?;
        let logged = bulk(DataClass::AuditRecord, "audit-log", self.log.size());
        let (dir, _) = call.release("read the log", logged.clone(), &verdict, || {
            Ok(Gathered::released(
                self.log.dir().to_path_buf(),
                logged,
                None,
            ))
        })?;
        Ok(dir)
    }

    /// Checks this region's store end to end ([`SealedStore::check`]) for a principal the rules
    /// let `check_store`: every record and registry entry is opened inside the Gate, and the
    /// report names records by blind index and subjects by pseudonym only, so it carries no
    /// plaintext. Its `store_check` entry, counting the records opened, is durable before the
    /// report is returned. Shreds wait while it runs; reads and writes go on. One check runs at
    /// a time: another, once allowed, is [`GateError::CheckInProgress`] (logged as such).
    ///
    /// [`SealedStore::check`]: domicile_store::SealedStore::check
    pub fn check_store(
        &self,
        who: &Principal,
        purpose: &Purpose,
    ) -> Result<(StoreCheck, Receipt), GateError> {
        let call = self.call(who, purpose, None, Action::StoreCheck);
        let resource = Resource::Store {
            region: self.region.clone(),
        };
        let verdict = self.decide_access(who, AccessAction::CheckStore, resource, purpose, None)?;
        let decided = bulk(DataClass::Protected, "*", 0);
        call.release("check the store", decided, &verdict, || {
            let _running = match self.store_check.try_lock() {
                Ok(running) => running,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Err(GateError::CheckInProgress),
            };
            let report = self.store.check()?;
            let opened = u64::try_from(report.records).unwrap_or(u64::MAX);
            let logged = bulk(DataClass::Protected, "*", opened);
            // The entry commits to the whole report, findings and all.
            let digest = ResultDigest(report.digest().0);
            Ok(Gathered::released(report, logged, Some(digest)))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use domicile_audit::{AuditKey, AuditLog, Entry, KeyKind, LogConfig, Outcome, SigningKey};
    use domicile_residency::JustificationCode;
    use domicile_store::{FileCustodian, SealedStore};

    use super::*;
    use crate::{ApprovalBook, ManualClock, PrincipalKind};

    #[test]
    fn one_store_check_at_a_time_and_the_one_refused_is_logged_after_its_decision() {
        let dir = tempfile::tempdir().unwrap();
        let region = Region::parse("us").unwrap();
        let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
        let policy = Arc::new(domicile_policy_us_split::UsSplitPolicy::new());
        let store = SealedStore::open(dir.path().join("data"), region, policy, custodian).unwrap();
        let key = SigningKey::generate("audit.domicile.example/us", KeyKind::Ed25519).unwrap();
        let log_dir = dir.path().join("audit");
        let log = AuditLog::open(&log_dir, LogConfig::new(key)).unwrap();
        let gate = Gate::new(
            Arc::new(store),
            Arc::new(log),
            AuditKey::generate().unwrap(),
            ApprovalBook::in_memory(),
            Arc::new(ManualClock::at_unix_secs(1_790_000_000)),
        )
        .unwrap();
        let sam = Principal::parse(
            "spiffe://domicile.example/us/usds/sam",
            PrincipalKind::Person,
            ("usds", "US"),
            "US",
            "US",
            &["security"],
        )
        .unwrap();
        gate.enrol(sam.clone()).unwrap();
        let audit = Purpose::new(JustificationCode::Audit).with_ticket("AUD-1");
        let last_entry = || {
            let mut last = None;
            domicile_audit::for_each_entry(&log_dir, &mut |_, _| {}, |_, bytes, _| {
                last = Some(Entry::from_canonical(bytes)?);
                Ok(())
            })
            .unwrap();
            last.unwrap()
        };

        let running = gate.store_check.lock().unwrap();
        match gate.check_store(&sam, &audit) {
            Err(GateError::CheckInProgress) => {}
            other => panic!("a second check ran: {other:?}"),
        }
        let refused = last_entry();
        assert_eq!(refused.action, Action::StoreCheck);
        assert!(refused.decision.allowed, "decided before it was refused");
        assert_eq!(
            refused.outcome,
            Outcome::Error {
                reason: "check_in_progress".into()
            }
        );
        drop(running);
        let (report, receipt) = gate.check_store(&sam, &audit).unwrap();
        assert!(report.is_sound());
        assert_eq!(receipt.seq, refused.seq + 1);
    }
}
