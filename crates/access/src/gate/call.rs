//! The decide–log–act shapes every Gate call takes (DESIGN.md, "Data flow"; invariant 2).
//!
//! A [`Call`] is one Gate call as the log sees it. Its two shapes are the only places that order
//! the log against the store:
//!
//! - [`Call::proceed`], for calls that act (write, delete, register, export, shred, migrate, the
//!   approval steps): a refusal is logged and returned; otherwise the decision is durable in the
//!   log first, then the call acts, and a failure to act is logged under the same request id.
//! - [`Call::release`], for calls that read (read, scan, aggregate, inventory, subject lists,
//!   migration reads, opening the log): a refusal is logged and returned; otherwise the call
//!   gathers what it will return, the entry naming exactly that (its count and digest) is durable
//!   in the log, and only then is it returned. A failure to gather is logged too.
//! - [`Call::release_bulk`], for bulk reads (scan, aggregate, inventory, subject lists,
//!   migration reads): [`Call::release`], but the decision is durable in the log before anything
//!   is read or decrypted, so a bulk read that fails half-way, or never returns, still left its
//!   mark. Its second entry, under the same request id, names what was released.
//!
//! A bulk entry names what it touched ([`Touched`]): the records per class and collection, and
//! the set of subjects, whose list is kept beside the log and whose Merkle root the entry
//! carries (`domicile audit query --subject` proves membership against it).

use std::sync::atomic::Ordering;

use std::collections::{BTreeMap, BTreeSet};

use domicile_audit::{
    Action, Entry, Outcome, Principal as AuditPrincipal, Pseudonym, Receipt,
    Resource as AuditResource, ResultDigest, SubjectSet, Tally, Target,
};
use domicile_residency::{DataClass, ExportLicence, Purpose, SubjectId};

use super::verdict::Verdict;
use super::{Gate, GateError};
use crate::approval::ApprovalId;
use crate::{Clock, Principal};

/// How an entry's `approval` field names an export licence the call relied on.
pub const LICENCE_PREFIX: &str = "licence:";

/// One Gate call as the log sees it: who, why, on which approval, under which request id, and
/// the action every entry of the call records.
pub(super) struct Call<'a> {
    gate: &'a Gate,
    who: &'a Principal,
    purpose: &'a Purpose,
    approval: Option<&'a ApprovalId>,
    licence: Option<&'a ExportLicence>,
    action: Action,
    request_id: String,
}

/// What a read-shaped call gathered: what it will return, the resource its entry names (with the
/// count of what it gathered), and how the entry ends (with the digest of what it returns).
pub(super) struct Gathered<T> {
    value: T,
    resource: AuditResource,
    subjects: Option<SubjectSet>,
    outcome: Outcome,
}

/// What a bulk call touched, as its entry records it: the records per class and collection and
/// the subjects, by pseudonym.
#[derive(Default)]
pub(super) struct Touched {
    parts: BTreeMap<(DataClass, String), u64>,
    subjects: BTreeSet<Pseudonym>,
    named: Option<Pseudonym>,
    header: Option<(DataClass, String)>,
}

/// Counting what a bulk call touches, and the entry's resource for it.
impl Touched {
    /// Counts one record of `subject` (already pseudonymised), of `class`, in `collection`.
    pub(super) fn record(&mut self, subject: Pseudonym, class: DataClass, collection: &str) {
        self.subject(subject);
        match self.parts.get_mut(&(class, collection.to_owned())) {
            Some(n) => *n += 1,
            None => {
                self.parts.insert((class, collection.to_owned()), 1);
            }
        }
    }

    /// Counts a subject touched without a record (a shred, a listing).
    pub(super) fn subject(&mut self, subject: Pseudonym) {
        self.subjects.insert(subject);
    }

    /// Names `subject` in the entry's own subject field too: the call is about that one person
    /// (an export).
    pub(super) fn name(&mut self, subject: Pseudonym) {
        self.subject(subject);
        self.named = Some(subject);
    }

    /// Logs the entry under `class` and `collection` whatever was counted: the call produced
    /// something of its own (a model) from the records it counts.
    pub(super) fn under(&mut self, class: DataClass, collection: &str) {
        self.header = Some((class, collection.to_owned()));
    }

    /// The records counted.
    #[cfg(test)]
    pub(super) fn records(&self) -> u64 {
        self.parts.values().sum()
    }

    /// The entry's resource: a [`Target::Batch`] with the counts and the subject set, under
    /// the one class and collection touched or, when several were, the strictest class
    /// touched and collection `*`; `class` and `collection` (what the call asked for) when
    /// nothing was touched. Returns the set, to keep beside the log.
    pub(super) fn resource(
        self,
        class: DataClass,
        collection: &str,
    ) -> (AuditResource, SubjectSet) {
        let parts: Vec<Tally> = self
            .parts
            .into_iter()
            .map(|((class, collection), records)| Tally {
                class,
                collection,
                records,
            })
            .collect();
        let (class, collection) = match (self.header, parts.as_slice()) {
            (Some(header), _) => header,
            (None, []) => (class, collection.to_owned()),
            (None, [one]) => (one.class, one.collection.clone()),
            (None, many) => {
                let strictest = DataClass::ALL
                    .into_iter()
                    .find(|c| many.iter().any(|t| t.class == *c))
                    .unwrap_or(class);
                (strictest, "*".to_owned())
            }
        };
        let set = SubjectSet::new(self.subjects);
        let resource = AuditResource {
            class,
            collection,
            subject: self.named,
            target: Target::Batch {
                count: parts.iter().map(|t| t.records).sum(),
                subjects: set.commitment(),
                parts,
            },
        };
        (resource, set)
    }
}

/// A subject's pseudonym under the Gate's audit key.
impl Gate {
    pub(super) fn pseudonym_of(&self, subject: &SubjectId) -> Pseudonym {
        self.audit_key.pseudonym(subject)
    }
}

/// The two ways a read-shaped call's gathering ends without failing.
impl<T> Gathered<T> {
    /// Found: `value` is released, and its entry carries `digest`.
    pub(super) fn released(
        value: T,
        resource: AuditResource,
        digest: Option<ResultDigest>,
    ) -> Self {
        Gathered {
            value,
            resource,
            subjects: None,
            outcome: Outcome::Ok {
                result_digest: digest,
            },
        }
    }

    /// Found, in bulk: `value` is released, and its entry names everything `touched` counted
    /// (under `class` and `collection` when it counted nothing) and carries `digest`.
    pub(super) fn released_batch(
        value: T,
        touched: Touched,
        class: DataClass,
        collection: &str,
        digest: Option<ResultDigest>,
    ) -> Self {
        let (resource, set) = touched.resource(class, collection);
        Gathered {
            value,
            resource,
            subjects: Some(set),
            outcome: Outcome::Ok {
                result_digest: digest,
            },
        }
    }

    /// Nothing matched: the entry records the call as an error for `reason`, and the caller turns
    /// `value` (which holds nothing) and the entry's receipt into its own error.
    pub(super) fn missing(value: T, resource: AuditResource, reason: &str) -> Self {
        Gathered {
            value,
            resource,
            subjects: None,
            outcome: Outcome::Error {
                reason: reason.to_owned(),
            },
        }
    }
}

/// How a Gate opens a call.
impl Gate {
    /// A call by `who` for `purpose`, on `approval`, logged as `action` under a fresh request id.
    pub(super) fn call<'a>(
        &'a self,
        who: &'a Principal,
        purpose: &'a Purpose,
        approval: Option<&'a ApprovalId>,
        action: Action,
    ) -> Call<'a> {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        Call {
            gate: self,
            who,
            purpose,
            approval,
            licence: None,
            action,
            request_id: format!("{}-{n:08}", self.request_prefix),
        }
    }
}

/// What a call relies on besides its decision.
impl<'a> Call<'a> {
    /// The export licence the call relies on: its entries record it.
    pub(super) fn relying_on_licence(mut self, licence: Option<&'a ExportLicence>) -> Self {
        self.licence = licence;
        self
    }

    /// The authorisation an entry records: the approval, or the export licence as
    /// `licence:REGIME/ITEM/LICENCE-ID`.
    fn relied_on(&self) -> Option<String> {
        self.approval
            .map(|a| a.to_string())
            .or_else(|| self.licence.map(|l| format!("{LICENCE_PREFIX}{l}")))
    }
}

/// Logging a call's entries, and the two shapes built on it.
impl Call<'_> {
    /// Appends an entry and waits until it is durable; a log that cannot make it durable is
    /// [`GateError::AuditUnavailable`], which every caller turns into a refusal.
    fn log(
        &self,
        resource: AuditResource,
        verdict: &Verdict,
        outcome: Outcome,
    ) -> Result<Receipt, GateError> {
        self.log_with(resource, None, verdict, outcome)
    }

    /// [`log`](Self::log), keeping the subject set a batch entry commits to beside the log.
    fn log_with(
        &self,
        resource: AuditResource,
        subjects: Option<&SubjectSet>,
        verdict: &Verdict,
        outcome: Outcome,
    ) -> Result<Receipt, GateError> {
        let entry = self.entry(resource, verdict, outcome);
        match subjects {
            Some(set) => self.gate.log.append_batch(entry, set),
            None => self.gate.log.append(entry),
        }
        .map_err(GateError::AuditUnavailable)
    }

    /// [`log_with`](Self::log_with) without blocking a thread: the task waits for the commit
    /// that makes the entry durable (a batch entry's subject list is still kept beside the log
    /// by a durable write in the calling thread).
    async fn log_async(
        &self,
        resource: AuditResource,
        subjects: Option<&SubjectSet>,
        verdict: &Verdict,
        outcome: Outcome,
    ) -> Result<Receipt, GateError> {
        let entry = self.entry(resource, verdict, outcome);
        match subjects {
            Some(set) => match self.gate.log.submit_batch(entry, set) {
                Ok(ticket) => ticket.await,
                Err(e) => Err(e),
            },
            None => self.gate.log.append_async(entry).await,
        }
        .map_err(GateError::AuditUnavailable)
    }

    /// The entry this call logs for `resource`, decided by `verdict`, ending in `outcome`.
    fn entry(&self, resource: AuditResource, verdict: &Verdict, outcome: Outcome) -> Entry {
        let who = self.who;
        Entry {
            seq: 0,
            time_ms: now_ms(self.gate.clock.as_ref()),
            region: self.gate.region.clone(),
            principal: AuditPrincipal {
                id: who.id.to_string(),
                organisation: who.organisation.name.clone(),
                office_country: who.office_country,
                location_country: who.location_country,
            },
            action: self.action,
            resource,
            purpose: self.purpose.clone(),
            approval: self.relied_on(),
            decision: verdict.entry_decision(),
            policy: self.gate.policy.id().clone(),
            request_id: self.request_id.clone(),
            outcome,
        }
    }

    /// Logs that the call went ahead, with the digest of what it released or wrote.
    pub(super) fn log_ok(
        &self,
        resource: AuditResource,
        verdict: &Verdict,
        digest: Option<ResultDigest>,
    ) -> Result<Receipt, GateError> {
        self.log(
            resource,
            verdict,
            Outcome::Ok {
                result_digest: digest,
            },
        )
    }

    /// Logs that the call failed after it was allowed, and returns the failure.
    fn fail(&self, resource: AuditResource, verdict: &Verdict, error: GateError) -> GateError {
        match self.log(
            resource,
            verdict,
            // A code, never the error's text: that names record keys and subject ids.
            Outcome::Error {
                reason: error.reason_code(),
            },
        ) {
            Ok(_) => error,
            Err(unlogged) => unlogged,
        }
    }

    /// Logs a refusal and returns it as the error the caller gets.
    fn refuse(&self, what: &'static str, resource: AuditResource, verdict: &Verdict) -> GateError {
        match self.log_ok(resource, verdict, None) {
            Ok(receipt) => GateError::Denied {
                action: what,
                rules: verdict.rules.clone(),
                reason: verdict.reason.clone(),
                seq: receipt.seq,
            },
            Err(unlogged) => unlogged,
        }
    }

    /// The shape of a call that acts after deciding: a refusal is logged and returned;
    /// otherwise the decision (with `digest`, of what will be written) is logged durably first,
    /// then `act` runs, and a failure of `act` is logged under the same request id.
    pub(super) fn proceed<T, E: Into<GateError>>(
        &self,
        what: &'static str,
        resource: AuditResource,
        verdict: &Verdict,
        digest: Option<ResultDigest>,
        act: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, GateError> {
        if !verdict.allowed {
            return Err(self.refuse(what, resource, verdict));
        }
        self.log_ok(resource.clone(), verdict, digest)?;
        act().map_err(|e| self.fail(resource, verdict, e.into()))
    }

    /// The shape of a call that reads after deciding: a refusal is logged (naming `resource`) and
    /// returned; otherwise `gather` collects what will be returned, and its entry — the resource
    /// and outcome `gather` names, with the count and digest of exactly what is returned — is
    /// durable before the value is handed back with the entry's receipt. A failure of `gather`
    /// is logged (naming `resource`) under the same request id.
    pub(super) fn release<T>(
        &self,
        what: &'static str,
        resource: AuditResource,
        verdict: &Verdict,
        gather: impl FnOnce() -> Result<Gathered<T>, GateError>,
    ) -> Result<(T, Receipt), GateError> {
        if !verdict.allowed {
            return Err(self.refuse(what, resource, verdict));
        }
        let gathered = gather().map_err(|e| self.fail(resource, verdict, e))?;
        let receipt = self.log_with(
            gathered.resource,
            gathered.subjects.as_ref(),
            verdict,
            gathered.outcome,
        )?;
        Ok((gathered.value, receipt))
    }

    /// [`release`](Self::release) for async callers: the same order and the same entries, but
    /// the task, not a thread, waits for each entry to be durable. `gather` runs in the calling
    /// task (a store read: microseconds).
    pub(super) async fn release_async<T>(
        &self,
        what: &'static str,
        resource: AuditResource,
        verdict: &Verdict,
        gather: impl FnOnce() -> Result<Gathered<T>, GateError>,
    ) -> Result<(T, Receipt), GateError> {
        if !verdict.allowed {
            let refused = self.log_async(resource, None, verdict, ok(None)).await;
            return Err(match refused {
                Ok(receipt) => GateError::Denied {
                    action: what,
                    rules: verdict.rules.clone(),
                    reason: verdict.reason.clone(),
                    seq: receipt.seq,
                },
                Err(unlogged) => unlogged,
            });
        }
        let gathered = match gather() {
            Ok(g) => g,
            Err(error) => {
                let outcome = Outcome::Error {
                    reason: error.reason_code(),
                };
                return Err(
                    match self.log_async(resource, None, verdict, outcome).await {
                        Ok(_) => error,
                        Err(unlogged) => unlogged,
                    },
                );
            }
        };
        let receipt = self
            .log_async(
                gathered.resource,
                gathered.subjects.as_ref(),
                verdict,
                gathered.outcome,
            )
            .await?;
        Ok((gathered.value, receipt))
    }

    /// The shape of a bulk read: a refusal is logged and returned; otherwise the decision is
    /// logged (naming `resource`, nothing released yet) and durable before `gather` reads or
    /// decrypts anything; then as [`release`](Self::release): a failure of `gather` is logged,
    /// and the entry naming what was gathered is durable before it is returned.
    pub(super) fn release_bulk<T>(
        &self,
        what: &'static str,
        resource: AuditResource,
        verdict: &Verdict,
        gather: impl FnOnce() -> Result<Gathered<T>, GateError>,
    ) -> Result<(T, Receipt), GateError> {
        if verdict.allowed {
            self.log_ok(resource.clone(), verdict, None)?;
        }
        self.release(what, resource, verdict, gather)
    }

    /// The shape of a call that only decides (a model's deployment): a refusal is logged and
    /// returned; an allowance is logged, with `digest`, and its receipt returned.
    pub(super) fn decided(
        &self,
        what: &'static str,
        resource: AuditResource,
        verdict: &Verdict,
        digest: Option<ResultDigest>,
    ) -> Result<Receipt, GateError> {
        if !verdict.allowed {
            return Err(self.refuse(what, resource, verdict));
        }
        self.log_ok(resource, verdict, digest)
    }

    /// [`proceed`](Self::proceed) for a bulk call that acts: its entry names what `touched`
    /// counted (under `class` and `collection` when it counted nothing), and the subject set is
    /// kept beside the log, before anything is written or destroyed. Returns what `act`
    /// returned and the receipt of the entry.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn proceed_batch<T, E: Into<GateError>>(
        &self,
        what: &'static str,
        touched: Touched,
        class: DataClass,
        collection: &str,
        verdict: &Verdict,
        digest: Option<ResultDigest>,
        act: impl FnOnce() -> Result<T, E>,
    ) -> Result<(T, Receipt), GateError> {
        let (resource, set) = touched.resource(class, collection);
        if !verdict.allowed {
            return Err(
                match self.log_with(resource, Some(&set), verdict, ok(None)) {
                    Ok(receipt) => GateError::Denied {
                        action: what,
                        rules: verdict.rules.clone(),
                        reason: verdict.reason.clone(),
                        seq: receipt.seq,
                    },
                    Err(unlogged) => unlogged,
                },
            );
        }
        let receipt = self.log_with(resource.clone(), Some(&set), verdict, ok(digest))?;
        let value = act().map_err(|e| {
            let error = e.into();
            let outcome = Outcome::Error {
                reason: error.reason_code(),
            };
            match self.log_with(resource, Some(&set), verdict, outcome) {
                Ok(_) => error,
                Err(unlogged) => unlogged,
            }
        })?;
        Ok((value, receipt))
    }
}

fn ok(digest: Option<ResultDigest>) -> Outcome {
    Outcome::Ok {
        result_digest: digest,
    }
}

/// The clock's time in milliseconds since the Unix epoch (0 for a clock set before it).
fn now_ms(clock: &dyn Clock) -> u64 {
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(b: u8) -> Pseudonym {
        Pseudonym([b; 32])
    }

    #[test]
    fn one_part_names_its_class_and_collection_several_the_strictest_and_star() {
        let mut one = Touched::default();
        one.record(p(1), DataClass::Public, "videos");
        one.record(p(2), DataClass::Public, "videos");
        let (r, set) = one.resource(DataClass::Protected, "*");
        assert_eq!(
            (r.class, r.collection.as_str()),
            (DataClass::Public, "videos")
        );
        assert_eq!(set.len(), 2);

        let mut many = Touched::default();
        many.record(p(1), DataClass::Public, "videos");
        many.record(p(1), DataClass::Excepted, "metrics");
        many.record(p(3), DataClass::Excepted, "metrics");
        assert_eq!(many.records(), 3);
        let (r, set) = many.resource(DataClass::Public, "videos");
        assert_eq!((r.class, r.collection.as_str()), (DataClass::Excepted, "*"));
        assert_eq!(set.len(), 2);
        let Target::Batch { count, parts, .. } = r.target else {
            panic!("not a batch")
        };
        assert_eq!(count, 3);
        assert_eq!(
            parts
                .iter()
                .map(|t| (t.class, t.collection.as_str(), t.records))
                .collect::<Vec<_>>(),
            [
                (DataClass::Excepted, "metrics", 2),
                (DataClass::Public, "videos", 1)
            ]
        );

        let (r, set) = Touched::default().resource(DataClass::Public, "videos");
        assert_eq!(
            (r.class, r.collection.as_str()),
            (DataClass::Public, "videos")
        );
        assert!(set.is_empty());
    }
}
