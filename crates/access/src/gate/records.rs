//! One record at a time: read, write, delete, and registering a subject.

use domicile_audit::{Action, Resource as AuditResource, ResultDigest, Target};
use domicile_residency::{DataClass, Purpose, Region, Subject};
use domicile_store::{RawRecord, RecordDigest, RecordMeta};

use super::call::Gathered;
use super::{Gate, GateError, RecordRef, Released, SubjectRef};
use crate::approval::ApprovalId;
use crate::rules::AccessAction;
use crate::Principal;

/// Reading and writing one record, and registering a subject.
impl Gate {
    /// One record as the log names it: its class, collection, subject pseudonym and record-key
    /// pseudonym.
    fn record_resource(&self, r: &RecordRef) -> AuditResource {
        AuditResource {
            class: r.class,
            collection: r.collection.as_str().to_owned(),
            subject: Some(self.audit_key.pseudonym(&r.subject)),
            target: Target::Record {
                key: self.record_key_pseudonym(&r.collection, &r.key),
            },
        }
    }

    /// Reads one record. The entry that records the read, with the digest of the value
    /// returned, is durable before the value is returned.
    ///
    /// The calling thread waits for the log; in async code use [`Gate::read_async`].
    pub fn read(
        &self,
        who: &Principal,
        purpose: &Purpose,
        record: &RecordRef,
        approval: Option<&ApprovalId>,
    ) -> Result<Released, GateError> {
        let call = self.call(who, purpose, approval, Action::Read);
        let verdict = self.decide_record(who, AccessAction::Read, record, purpose, approval)?;
        let resource = self.record_resource(record);
        let (found, receipt) = call.release("read", resource.clone(), &verdict, || {
            self.gather_record(record, resource)
        })?;
        released(record, found, receipt.seq)
    }

    /// [`Gate::read`] without blocking a thread: the decision and the store read run in the
    /// calling task (microseconds), and the task, not a thread, waits for the commit that
    /// makes the read's entry durable. The same entries, in the same order, as `read`.
    pub async fn read_async(
        &self,
        who: &Principal,
        purpose: &Purpose,
        record: &RecordRef,
        approval: Option<&ApprovalId>,
    ) -> Result<Released, GateError> {
        let call = self.call(who, purpose, approval, Action::Read);
        let verdict = self.decide_record(who, AccessAction::Read, record, purpose, approval)?;
        let resource = self.record_resource(record);
        let (found, receipt) = call
            .release_async("read", resource.clone(), &verdict, || {
                self.gather_record(record, resource)
            })
            .await?;
        released(record, found, receipt.seq)
    }

    /// The record a read returns (still sealed; opened by the store's caller), and the entry
    /// naming it: its digest when found, `not_found` otherwise.
    fn gather_record(
        &self,
        record: &RecordRef,
        resource: AuditResource,
    ) -> Result<Gathered<Option<RawRecord>>, GateError> {
        let raw = self
            .store
            .get_raw(&record.collection, &record.key)?
            .filter(|raw| raw.meta.subject == record.subject && raw.meta.class == record.class);
        Ok(match raw {
            Some(raw) => {
                let digest = ResultDigest(raw.digest().0);
                Gathered::released(Some(raw), resource, Some(digest))
            }
            None => Gathered::missing(None, resource, "no such record of this subject and class"),
        })
    }

    /// Writes one record. The entry (with the digest of the value) is durable before the store
    /// is touched; if the write then fails, a second entry with the same request id records it.
    pub fn write(
        &self,
        who: &Principal,
        purpose: &Purpose,
        record: &RecordRef,
        value: &[u8],
        approval: Option<&ApprovalId>,
    ) -> Result<RecordMeta, GateError> {
        let call = self.call(who, purpose, approval, Action::Write);
        let verdict = self.decide_record(who, AccessAction::Write, record, purpose, approval)?;
        let resource = self.record_resource(record);
        let digest = ResultDigest(RecordDigest::of(value).0);
        call.proceed("write", resource, &verdict, Some(digest), || {
            let r = record;
            self.store
                .put_raw(&r.subject, r.class, &r.collection, &r.key, value)
        })
    }

    /// Deletes one record; returns whether there was one.
    pub fn delete(
        &self,
        who: &Principal,
        purpose: &Purpose,
        record: &RecordRef,
    ) -> Result<bool, GateError> {
        let call = self.call(who, purpose, None, Action::Delete);
        let verdict = self.decide_record(who, AccessAction::Delete, record, purpose, None)?;
        let resource = self.record_resource(record);
        call.proceed("delete", resource, &verdict, None, || {
            self.store.delete(&record.collection, &record.key)
        })
    }

    /// Registers a subject in this region's store (a write of their attributes).
    pub fn register_subject(
        &self,
        who: &Principal,
        purpose: &Purpose,
        subject: &Subject,
    ) -> Result<Region, GateError> {
        let call = self.call(who, purpose, None, Action::Write);
        let home = self.policy.home_region(subject)?;
        let verdict = self.decide_placed(
            who,
            AccessAction::Write,
            DataClass::Protected,
            "subjects",
            home,
            purpose,
        )?;
        let resource = AuditResource {
            class: DataClass::Protected,
            collection: "subjects".into(),
            subject: Some(self.audit_key.pseudonym(&subject.id)),
            target: Target::Record {
                key: "registration".into(),
            },
        };
        call.proceed("register", resource, &verdict, None, || {
            self.store.register_subject(subject)
        })
    }
}

/// What a read returns once its entry is durable (entry `seq`): the record, or
/// [`GateError::NotFound`] naming that entry.
fn released(record: &RecordRef, found: Option<RawRecord>, seq: u64) -> Result<Released, GateError> {
    let Some(raw) = found else {
        return Err(GateError::NotFound {
            collection: record.collection.clone(),
            key: record.key.clone(),
            subject: record.subject.clone(),
            class: record.class,
            seq,
        });
    };
    Ok(Released {
        subject: SubjectRef::Id(raw.meta.subject),
        class: raw.meta.class,
        collection: raw.meta.collection,
        key: raw.meta.key,
        value: raw.value,
    })
}
