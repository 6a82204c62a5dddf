//! The Gate: the only door to a region's store.
//!
//! Every call follows one order (DESIGN.md, "Data flow"): decide — residency, access rules,
//! approval — then append the decision to the region's audit log and wait until it is durable,
//! then act. A read's entry carries the digest of exactly what it returns and is durable before
//! the data is returned. Denials are logged too. If the log cannot be written, the call is
//! refused and nothing is returned or written (fail-closed, after Vault's audit devices).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use domicile_audit::{
    Action as AuditAction, AuditError, AuditKey, AuditLog, Entry, EntryDecision, Outcome,
    Principal as AuditPrincipal, Receipt, Resource as AuditResource, ResultDigest, Target,
};
use domicile_residency::{
    DataClass, Decision, Obligation, Purpose, Region, ResidencyError, ResidencyPolicy, RuleId,
    Subject, SubjectId,
};
use domicile_store::{
    Collection, ExportBundle, NewRecord, RawRecord, RecordDigest, RecordKey, RecordMeta,
    SealedStore, ShredReceipt, StoreError, TransferKey,
};
use ring::digest::{Context as Sha256, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::approval::{
    ApprovalBook, ApprovalId, ApprovalRequest, ApprovalScope, ApprovalState, ApproverKey, Grant,
};
use crate::rules::{AccessDecision, AccessRequest, AccessRules, Action, ApprovalFacts, Resource};
use crate::{AccessError, Clock, Principal, SpiffeId};

/// Why a Gate call did not go ahead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// The rules refused the request. The refusal is in the log at `seq`.
    #[error("{action} refused by {r}: {reason} (audit entry {seq})", r = join(.rules))]
    Denied {
        /// What was asked.
        action: &'static str,
        /// The rules that decided.
        rules: Vec<RuleId>,
        /// Why, in a sentence.
        reason: String,
        /// The audit entry that records the refusal.
        seq: u64,
    },
    /// The audit log could not make the entry durable, so nothing was done (fail-closed).
    #[error("refused because the audit log is unavailable: {0}")]
    AuditUnavailable(#[source] AuditError),
    /// The record asked for does not exist, or is not the stated subject's or class.
    #[error("no {class} record of subject {subject} at {collection}/{key} (audit entry {seq})")]
    NotFound {
        /// The collection.
        collection: Collection,
        /// The key.
        key: RecordKey,
        /// The subject stated.
        subject: SubjectId,
        /// The class stated.
        class: DataClass,
        /// The audit entry that records the attempt.
        seq: u64,
    },
    /// The subject is not registered in this region.
    #[error("subject {subject} is not registered in region {region}")]
    UnknownSubject {
        /// The subject.
        subject: SubjectId,
        /// The region.
        region: Region,
    },
    /// The store failed.
    #[error(transparent)]
    Store(Box<StoreError>),
    /// Access control failed (bad rules, bad approval book).
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The residency policy refused a question (an unknown region).
    #[error(transparent)]
    Residency(#[from] ResidencyError),
}

impl From<StoreError> for GateError {
    fn from(e: StoreError) -> Self {
        GateError::Store(Box::new(e))
    }
}

/// One record, named the way a caller asks for it: whose, what class, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    /// Whose record.
    pub subject: SubjectId,
    /// Its class.
    pub class: DataClass,
    /// Its collection.
    pub collection: Collection,
    /// Its key.
    pub key: RecordKey,
}

/// Who a released record is about: the subject id, or a keyed pseudonym when the decision
/// obliged pseudonymisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectRef {
    /// The subject id itself.
    Id(SubjectId),
    /// HMAC-SHA256 of the id under the region's audit key, as 64 hex digits.
    Pseudonym(String),
}

/// A record as the Gate releases it.
#[derive(Clone, PartialEq, Eq)]
pub struct Released {
    /// Whose record, possibly pseudonymised.
    pub subject: SubjectRef,
    /// Its class.
    pub class: DataClass,
    /// Its collection.
    pub collection: Collection,
    /// Its key.
    pub key: RecordKey,
    /// The plaintext value.
    pub value: Vec<u8>,
}

impl fmt::Debug for Released {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Released")
            .field("subject", &self.subject)
            .field("class", &self.class)
            .field("collection", &self.collection)
            .field("key", &self.key)
            .field("len", &self.value.len())
            .finish()
    }
}

/// A bulk read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    /// Only records of this class.
    pub class: DataClass,
    /// The collection to scan.
    pub collection: Collection,
    /// Where the records are going, when they leave this region; `None` when they stay.
    pub destination: Option<Region>,
}

/// What a scan released, with the entry that records it.
#[derive(Debug, Clone)]
pub struct ScanResult {
    /// The records, pseudonymised if the decision obliged it.
    pub records: Vec<Released>,
    /// Records skipped because their subject's home does not allow them here.
    pub skipped_misplaced: u64,
    /// The obligations the Gate honoured.
    pub obligations: Vec<Obligation>,
    /// The audit receipt of the scan.
    pub receipt: Receipt,
}

/// A count released under an `Aggregate` obligation: groups smaller than the obligation's
/// `min_subjects` are suppressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateCount {
    /// The group's label.
    pub group: String,
    /// Distinct subjects in the group.
    pub subjects: u64,
    /// Records in the group.
    pub records: u64,
}

/// The Gate of one region.
pub struct Gate {
    region: Region,
    policy: Arc<dyn ResidencyPolicy>,
    rules: AccessRules,
    store: Arc<SealedStore>,
    log: Arc<AuditLog>,
    audit_key: AuditKey,
    record_keys: ring::hmac::Key,
    approvals: ApprovalBook,
    approvers: RwLock<BTreeMap<SpiffeId, String>>,
    clock: Arc<dyn Clock>,
    request_prefix: String,
    request_counter: AtomicU64,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("region", &self.region)
            .field("policy", &self.policy.id().to_string())
            .finish_non_exhaustive()
    }
}

/// What a decision concluded, before it is logged.
struct Verdict {
    allowed: bool,
    rules: Vec<RuleId>,
    obligations: Vec<Obligation>,
    reason: String,
}

impl Verdict {
    fn entry_decision(&self) -> EntryDecision {
        EntryDecision {
            allowed: self.allowed,
            rules: self.rules.clone(),
            obligations: self.obligations.clone(),
        }
    }
}

fn combine(
    residency: &Decision,
    access: &AccessDecision,
    approval_note: Option<String>,
) -> Verdict {
    let mut rules = vec![residency.rule.clone()];
    rules.extend(access.rules.iter().cloned());
    let allowed = residency.allowed && access.allowed;
    let reason = if !residency.allowed {
        format!("the residency policy forbids it ({})", residency.rule)
    } else if !access.allowed {
        let mut r = format!(
            "the access rules do not permit it ({})",
            join(&access.rules)
        );
        if let Some(note) = approval_note {
            r.push_str(&format!("; {note}"));
        }
        r
    } else {
        "allowed".into()
    };
    Verdict {
        allowed,
        rules,
        obligations: if allowed {
            residency.obligations.clone()
        } else {
            Vec::new()
        },
        reason,
    }
}

fn join(rules: &[RuleId]) -> String {
    rules
        .iter()
        .map(RuleId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn now_ms(clock: &dyn Clock) -> u64 {
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether the obligations let records leave pseudonymised.
fn pseudonymising_satisfies(obligations: &[Obligation]) -> bool {
    obligations.iter().all(|o| match o {
        Obligation::Pseudonymize => true,
        Obligation::AnyOf { options } => options
            .iter()
            .any(|o| matches!(o, Obligation::Pseudonymize)),
        _ => false,
    })
}

/// The smallest group an aggregate may describe under the obligations, if aggregating satisfies
/// them all.
fn aggregating_satisfies(obligations: &[Obligation]) -> Option<u32> {
    let mut k = 1;
    for o in obligations {
        let found = match o {
            Obligation::Aggregate { min_subjects } => Some(*min_subjects),
            Obligation::AnyOf { options } => options.iter().find_map(|o| match o {
                Obligation::Aggregate { min_subjects } => Some(*min_subjects),
                _ => None,
            }),
            _ => None,
        };
        k = k.max(found?);
    }
    Some(k)
}

/// A bulk resource as the log records it: a class, a collection and a count.
fn bulk(class: DataClass, collection: &str, count: u64) -> AuditResource {
    AuditResource {
        class,
        collection: collection.to_owned(),
        subject: None,
        target: Target::Bulk { count },
    }
}

/// SHA-256 over the digests of everything a bulk call released or wrote.
struct BulkDigest(Sha256);

impl BulkDigest {
    fn new() -> Self {
        BulkDigest(Sha256::new(&SHA256))
    }

    fn add(&mut self, record: &RawRecord) {
        self.0.update(&record.digest().0);
    }

    fn finish(self) -> ResultDigest {
        let mut d = [0u8; 32];
        d.copy_from_slice(self.0.finish().as_ref());
        ResultDigest(d)
    }
}

/// One Gate call as the log sees it: who, why, on which approval, under which request id, and
/// the action every entry of the call records.
struct Call<'a> {
    gate: &'a Gate,
    who: &'a Principal,
    purpose: &'a Purpose,
    approval: Option<&'a ApprovalId>,
    action: AuditAction,
    request_id: String,
}

impl Call<'_> {
    /// Appends an entry and waits until it is durable; a log that cannot make it durable is
    /// [`GateError::AuditUnavailable`], which every caller turns into a refusal.
    fn log(
        &self,
        resource: AuditResource,
        verdict: &Verdict,
        outcome: Outcome,
    ) -> Result<Receipt, GateError> {
        let who = self.who;
        let entry = Entry {
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
            approval: self.approval.map(|a| a.to_string()),
            decision: verdict.entry_decision(),
            policy: self.gate.policy.id().clone(),
            request_id: self.request_id.clone(),
            outcome,
        };
        self.gate
            .log
            .append(entry)
            .map_err(GateError::AuditUnavailable)
    }

    /// Logs that the call went ahead, with the digest of what it released or wrote.
    fn log_ok(
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
            Outcome::Error {
                reason: error.to_string(),
            },
        ) {
            Ok(_) => error,
            Err(unlogged) => unlogged,
        }
    }

    /// The common shape of a call that acts after deciding: a refusal is logged and returned;
    /// otherwise the decision is logged durably first, then `act` runs, and a failure of `act`
    /// is logged under the same request id.
    fn proceed<T, E: Into<GateError>>(
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
}

impl Gate {
    /// A Gate in front of `store`, logging to `log`. The policy is the store's; pseudonyms in the
    /// log are keyed with `audit_key`; approvals are kept in `approvals`.
    pub fn new(
        store: Arc<SealedStore>,
        log: Arc<AuditLog>,
        audit_key: AuditKey,
        approvals: ApprovalBook,
        clock: Arc<dyn Clock>,
    ) -> Result<Gate, GateError> {
        let policy = store.policy().clone();
        let rules = AccessRules::new(policy.as_ref())?;
        let mut prefix = [0u8; 4];
        SystemRandom::new()
            .fill(&mut prefix)
            .map_err(|_| AccessError::InvalidKey("the system random source failed".into()))?;
        let hex = audit_key.to_hex();
        let raw: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .map_err(|_| AccessError::InvalidKey("the audit key is not hex".into()))?;
        Ok(Gate {
            region: store.region().clone(),
            policy,
            rules,
            store,
            log,
            record_keys: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &raw),
            audit_key,
            approvals,
            approvers: RwLock::new(BTreeMap::new()),
            clock,
            request_prefix: prefix.iter().map(|b| format!("{b:02x}")).collect(),
            request_counter: AtomicU64::new(0),
        })
    }

    /// The region this Gate guards.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The policy in force.
    pub fn policy(&self) -> &Arc<dyn ResidencyPolicy> {
        &self.policy
    }

    /// The audit log.
    pub fn log(&self) -> &Arc<AuditLog> {
        &self.log
    }

    /// The approval book.
    pub fn approvals(&self) -> &ApprovalBook {
        &self.approvals
    }

    /// Registers an approver's public key (base64 Ed25519): grants signed by any other key for
    /// this approver are rejected.
    pub fn register_approver(&self, approver: SpiffeId, public_key_base64: String) {
        self.approvers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(approver, public_key_base64);
    }

    /// The subject's pseudonym in this region's log.
    pub fn pseudonym(&self, subject: &SubjectId) -> String {
        self.audit_key.pseudonym(subject).to_string()
    }

    /// How a record key appears in the log: `hmac:` and HMAC-SHA256 under the audit key of
    /// `domicile record key v1\n<collection>\n<key>`, in hex. Record keys often embed a user id
    /// (`profile/<user>`), so they are keyed like subjects (invariant 6); an auditor holding the
    /// audit key computes the same value for a key they are asked about.
    pub fn record_key_pseudonym(&self, collection: &Collection, key: &RecordKey) -> String {
        let mut msg = b"domicile record key v1\n".to_vec();
        msg.extend_from_slice(collection.as_str().as_bytes());
        msg.push(b'\n');
        msg.extend_from_slice(key.as_str().as_bytes());
        let tag = ring::hmac::sign(&self.record_keys, &msg);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("hmac:{hex}")
    }

    fn call<'a>(
        &'a self,
        who: &'a Principal,
        purpose: &'a Purpose,
        approval: Option<&'a ApprovalId>,
        action: AuditAction,
    ) -> Call<'a> {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        Call {
            gate: self,
            who,
            purpose,
            approval,
            action,
            request_id: format!("{}-{n:08}", self.request_prefix),
        }
    }

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

    fn home_of(&self, subject: &SubjectId) -> Result<Region, GateError> {
        self.store
            .subject(subject)?
            .map(|s| s.home)
            .ok_or_else(|| GateError::UnknownSubject {
                subject: subject.clone(),
                region: self.region.clone(),
            })
    }

    /// The access rules alone, as a verdict.
    fn decide_access(
        &self,
        who: &Principal,
        action: Action,
        resource: Resource,
        purpose: &Purpose,
        approval: Option<ApprovalFacts>,
    ) -> Result<Verdict, GateError> {
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action,
            resource,
            purpose,
            approval,
        })?;
        Ok(Verdict {
            allowed: access.allowed,
            reason: if access.allowed {
                "allowed".into()
            } else {
                format!(
                    "the access rules do not permit it ({})",
                    join(&access.rules)
                )
            },
            rules: access.rules,
            obligations: Vec::new(),
        })
    }

    /// The access rules for a bulk action on this region's records of `class` in `collection`.
    fn decide_bulk(
        &self,
        who: &Principal,
        action: Action,
        class: DataClass,
        collection: &str,
        purpose: &Purpose,
    ) -> Result<Verdict, GateError> {
        let resource = Resource::Records {
            class,
            region: self.region.clone(),
            subject_home: None,
            collection: collection.to_owned(),
        };
        self.decide_access(who, action, resource, purpose, None)
    }

    /// A bulk release (scan or aggregate): the access rules for scanning, and, when the records
    /// leave the region, the residency policy's transfer decision for every possible home.
    fn decide_release(
        &self,
        who: &Principal,
        purpose: &Purpose,
        request: &ScanRequest,
    ) -> Result<Verdict, GateError> {
        let collection = request.collection.as_str();
        let mut verdict =
            self.decide_bulk(who, Action::Scan, request.class, collection, purpose)?;
        if let Some(dest) = &request.destination {
            let homes = self.policy.regions().to_vec();
            self.add_transfer(&mut verdict, request.class, &homes, dest, purpose)?;
        }
        Ok(verdict)
    }

    /// Verifies an approval for this access; a failure is returned as the note a denial carries.
    fn approval_facts(
        &self,
        who: &Principal,
        approval: Option<&ApprovalId>,
        class: DataClass,
        subject: Option<&SubjectId>,
        purpose: &Purpose,
    ) -> (Option<ApprovalFacts>, Option<String>) {
        let Some(id) = approval else {
            return (None, None);
        };
        let approvers = self.approvers.read().unwrap_or_else(|p| p.into_inner());
        let trusted = |approver: &SpiffeId| approvers.get(approver).cloned();
        match self.approvals.check(
            id,
            &who.id,
            class,
            &self.region,
            subject,
            purpose,
            self.clock.unix_secs(),
            &trusted,
        ) {
            Ok(facts) => (Some(facts), None),
            Err(e) => (None, Some(e.to_string())),
        }
    }

    /// Residency, access rules and approval for one record.
    fn decide_record(
        &self,
        who: &Principal,
        action: Action,
        r: &RecordRef,
        purpose: &Purpose,
        approval: Option<&ApprovalId>,
    ) -> Result<Verdict, GateError> {
        let home = self.home_of(&r.subject)?;
        let residency = self.policy.may_rest_in(r.class, &home, &self.region)?;
        let (facts, note) = self.approval_facts(who, approval, r.class, Some(&r.subject), purpose);
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action,
            resource: Resource::Records {
                class: r.class,
                region: self.region.clone(),
                subject_home: Some(home),
                collection: r.collection.as_str().to_owned(),
            },
            purpose,
            approval: facts,
        })?;
        Ok(combine(&residency, &access, note))
    }

    /// The residency policy's answer to moving `class` from this region to `destination`, for
    /// every possible home, merged into `verdict`: every rule named, every obligation kept, and
    /// the first refusal making the verdict a refusal.
    fn add_transfer(
        &self,
        verdict: &mut Verdict,
        class: DataClass,
        homes: &[Region],
        destination: &Region,
        purpose: &Purpose,
    ) -> Result<(), GateError> {
        self.policy.check_region(destination)?;
        for home in homes {
            let d = self
                .policy
                .may_transfer(class, home, &self.region, destination, purpose)?;
            if !verdict.rules.contains(&d.rule) {
                verdict.rules.push(d.rule.clone());
            }
            if !d.allowed && verdict.allowed {
                verdict.allowed = false;
                verdict.reason = format!("the residency policy forbids the transfer ({})", d.rule);
            }
            for o in d.obligations {
                if !verdict.obligations.contains(&o) {
                    verdict.obligations.push(o);
                }
            }
        }
        Ok(())
    }

    /// Reads one record. The entry that records the read, with the digest of the value
    /// returned, is durable before the value is returned.
    pub fn read(
        &self,
        who: &Principal,
        purpose: &Purpose,
        record: &RecordRef,
        approval: Option<&ApprovalId>,
    ) -> Result<Released, GateError> {
        let call = self.call(who, purpose, approval, AuditAction::Read);
        let verdict = self.decide_record(who, Action::Read, record, purpose, approval)?;
        let resource = self.record_resource(record);
        if !verdict.allowed {
            return Err(call.refuse("read", resource, &verdict));
        }
        let raw = match self.store.get_raw(&record.collection, &record.key) {
            Ok(Some(raw))
                if raw.meta.subject == record.subject && raw.meta.class == record.class =>
            {
                raw
            }
            Ok(_) => {
                let outcome = Outcome::Error {
                    reason: "no such record of this subject and class".into(),
                };
                let receipt = call.log(resource, &verdict, outcome)?;
                return Err(GateError::NotFound {
                    collection: record.collection.clone(),
                    key: record.key.clone(),
                    subject: record.subject.clone(),
                    class: record.class,
                    seq: receipt.seq,
                });
            }
            Err(e) => return Err(call.fail(resource, &verdict, e.into())),
        };
        call.log_ok(resource, &verdict, Some(ResultDigest(raw.digest().0)))?;
        Ok(Released {
            subject: SubjectRef::Id(raw.meta.subject),
            class: raw.meta.class,
            collection: raw.meta.collection,
            key: raw.meta.key,
            value: raw.value,
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
        let call = self.call(who, purpose, approval, AuditAction::Write);
        let verdict = self.decide_record(who, Action::Write, record, purpose, approval)?;
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
        let call = self.call(who, purpose, None, AuditAction::Delete);
        let verdict = self.decide_record(who, Action::Delete, record, purpose, None)?;
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
        let call = self.call(who, purpose, None, AuditAction::Write);
        let home = self.policy.home_region(subject)?;
        let residency = self
            .policy
            .may_rest_in(DataClass::Protected, &home, &self.region)?;
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action: Action::Write,
            resource: Resource::Records {
                class: DataClass::Protected,
                region: self.region.clone(),
                subject_home: Some(home),
                collection: "subjects".into(),
            },
            purpose,
            approval: None,
        })?;
        let verdict = combine(&residency, &access, None);
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
        let call = self.call(who, purpose, None, AuditAction::Scan);
        let collection = request.collection.as_str();
        let mut verdict = self.decide_release(who, purpose, request)?;
        let pseudonymise = !verdict.obligations.is_empty();
        if verdict.allowed && pseudonymise && !pseudonymising_satisfies(&verdict.obligations) {
            verdict.allowed = false;
            verdict.reason =
                "the transfer's obligations cannot be met by pseudonymising; aggregate instead"
                    .into();
        }
        if !verdict.allowed {
            verdict.obligations.clear();
            return Err(call.refuse("scan", bulk(request.class, collection, 0), &verdict));
        }
        let mut records = Vec::new();
        let mut skipped = 0;
        let mut placed: BTreeMap<SubjectId, bool> = BTreeMap::new();
        let mut digest = BulkDigest::new();
        for item in self.store.scan_collection(&request.collection) {
            let raw = match item {
                Ok(raw) => raw,
                Err(e) => {
                    let resource = bulk(request.class, collection, 0);
                    return Err(call.fail(resource, &verdict, e.into()));
                }
            };
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
            digest.add(&raw);
            let subject = if pseudonymise {
                SubjectRef::Pseudonym(self.pseudonym(&raw.meta.subject))
            } else {
                SubjectRef::Id(raw.meta.subject.clone())
            };
            records.push(Released {
                subject,
                class: raw.meta.class,
                collection: raw.meta.collection,
                key: raw.meta.key,
                value: raw.value,
            });
        }
        let resource = bulk(request.class, collection, records.len() as u64);
        let receipt = call.log_ok(resource, &verdict, Some(digest.finish()))?;
        Ok(ScanResult {
            records,
            skipped_misplaced: skipped,
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
        let call = self.call(who, purpose, None, AuditAction::Scan);
        let collection = request.collection.as_str();
        let mut verdict = self.decide_release(who, purpose, request)?;
        let min_subjects = if verdict.obligations.is_empty() {
            Some(1)
        } else {
            aggregating_satisfies(&verdict.obligations)
        };
        let Some(k) = min_subjects.filter(|_| verdict.allowed) else {
            if verdict.allowed {
                verdict.allowed = false;
                verdict.reason = "the transfer's obligations cannot be met by aggregating".into();
            }
            verdict.obligations.clear();
            return Err(call.refuse("aggregate", bulk(request.class, collection, 0), &verdict));
        };
        let mut groups: BTreeMap<String, (BTreeSet<SubjectId>, u64)> = BTreeMap::new();
        let mut scanned = 0u64;
        for item in self.store.scan_collection(&request.collection) {
            let raw = item?;
            if raw.meta.class != request.class {
                continue;
            }
            scanned += 1;
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
        let body = serde_json::to_vec(&counts).expect("counts serialise");
        let digest = ResultDigest(RecordDigest::of(&body).0);
        call.log_ok(
            bulk(request.class, collection, scanned),
            &verdict,
            Some(digest),
        )?;
        Ok(counts)
    }

    /// Exports a subject's sealed records for `destination` (no plaintext leaves): the residency
    /// policy decides the transfer of every record's class, and an `ExportLicence` obligation
    /// needs `licence`, a reference to the licence held.
    pub fn export(
        &self,
        who: &Principal,
        purpose: &Purpose,
        subject: &SubjectId,
        destination: &Region,
        licence: Option<&str>,
    ) -> Result<(ExportBundle, TransferKey), GateError> {
        let call = self.call(who, purpose, None, AuditAction::Export);
        let home = self.home_of(subject)?;
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
        let resource = Resource::Records {
            class,
            region: self.region.clone(),
            subject_home: Some(home.clone()),
            collection: "*".into(),
        };
        let mut verdict = self.decide_access(who, Action::Export, resource, purpose, None)?;
        for class in &classes {
            self.add_transfer(
                &mut verdict,
                *class,
                std::slice::from_ref(&home),
                destination,
                purpose,
            )?;
        }
        let unmet = verdict
            .obligations
            .iter()
            .find(|o| !matches!(o, Obligation::ExportLicence { .. }) || licence.is_none())
            .cloned();
        if let (true, Some(o)) = (verdict.allowed, unmet) {
            verdict.allowed = false;
            verdict.reason = format!("obligation not met: {o}");
        }
        let resource = AuditResource {
            class,
            collection: "*".into(),
            subject: Some(self.audit_key.pseudonym(subject)),
            target: Target::Bulk {
                count: records.len() as u64,
            },
        };
        if !verdict.allowed {
            // A refusal carries no obligations.
            verdict.obligations.clear();
        }
        call.proceed("export", resource, &verdict, None, || {
            self.store.export_subject(subject)
        })
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
        let call = self.call(who, purpose, None, AuditAction::Shred);
        let mut present = Vec::with_capacity(subjects.len());
        let mut homes = BTreeSet::new();
        for id in subjects {
            if let Some(s) = self.store.subject(id)? {
                homes.insert(s.home);
                present.push(id.clone());
            }
        }
        let mut verdict = Verdict {
            allowed: true,
            rules: Vec::new(),
            obligations: Vec::new(),
            reason: "allowed".into(),
        };
        for home in homes {
            let resource = Resource::Records {
                class: DataClass::Protected,
                region: self.region.clone(),
                subject_home: Some(home),
                collection: "*".into(),
            };
            let one = self.decide_access(who, Action::Delete, resource, purpose, None)?;
            for r in one.rules {
                if !verdict.rules.contains(&r) {
                    verdict.rules.push(r);
                }
            }
            if !one.allowed && verdict.allowed {
                verdict.allowed = false;
                verdict.reason = one.reason;
            }
        }
        let resource = match present.as_slice() {
            [one] => AuditResource {
                subject: Some(self.audit_key.pseudonym(one)),
                ..bulk(DataClass::KeyMaterial, "*", 1)
            },
            many => bulk(DataClass::KeyMaterial, "*", many.len() as u64),
        };
        call.proceed("shred", resource, &verdict, None, || {
            self.store.shred_subjects(&present)
        })
    }

    /// Lets a principal read this region's audit log: the decision is itself logged. Returns the
    /// log's directory, to hand to `domicile audit verify | query`.
    pub fn open_log(&self, who: &Principal, purpose: &Purpose) -> Result<PathBuf, GateError> {
        let call = self.call(who, purpose, None, AuditAction::AuditRead);
        let resource = Resource::AuditLog {
            region: self.region.clone(),
        };
        let verdict = self.decide_access(who, Action::ReadLog, resource, purpose, None)?;
        let logged = bulk(DataClass::AuditRecord, "audit-log", self.log.size());
        if !verdict.allowed {
            return Err(call.refuse("read the log", logged, &verdict));
        }
        call.log_ok(logged, &verdict, None)?;
        Ok(self.log.dir().to_path_buf())
    }

    fn approval_resource(&self, request: &ApprovalRequest) -> AuditResource {
        let single = request
            .scope
            .subjects
            .as_ref()
            .filter(|s| s.len() == 1)
            .and_then(|s| s.iter().next());
        AuditResource {
            class: request.scope.class,
            collection: "approvals".into(),
            subject: single.map(|s| self.audit_key.pseudonym(s)),
            target: Target::Record {
                key: format!("approval:{}", request.id),
            },
        }
    }

    /// Files a request for time-boxed access. It waits at most `pending_ttl_secs` for an answer.
    pub fn request_approval(
        &self,
        who: &Principal,
        scope: ApprovalScope,
        duration_secs: u64,
        pending_ttl_secs: u64,
    ) -> Result<ApprovalRequest, GateError> {
        self.policy.check_region(&scope.region)?;
        let purpose = scope.purpose.clone();
        let request = self.approvals.file(
            who.id.clone(),
            scope,
            duration_secs,
            self.clock.unix_secs(),
            pending_ttl_secs,
        )?;
        let call = self.call(
            who,
            &purpose,
            Some(&request.id),
            AuditAction::ApprovalRequest,
        );
        // Filing a request decides nothing: no rule is named.
        let filed = Verdict {
            allowed: true,
            rules: Vec::new(),
            obligations: Vec::new(),
            reason: "filed".into(),
        };
        call.log_ok(self.approval_resource(&request), &filed, None)?;
        Ok(request)
    }

    fn decide_approval(
        &self,
        approver: &Principal,
        request: &ApprovalRequest,
    ) -> Result<Verdict, GateError> {
        let resource = Resource::Records {
            class: request.scope.class,
            region: request.scope.region.clone(),
            subject_home: Some(request.scope.region.clone()),
            collection: "*".into(),
        };
        let facts = ApprovalFacts {
            approver_org_country: approver.organisation.country,
            duration_secs: request.duration_secs,
        };
        let mut verdict = self.decide_access(
            approver,
            Action::Approve,
            resource,
            &request.scope.purpose,
            Some(facts),
        )?;
        if approver.id == request.requester {
            verdict.allowed = false;
            verdict.reason = "a principal cannot approve their own request".into();
        } else if !verdict.allowed {
            verdict.reason = format!(
                "the access rules do not let {} approve it ({})",
                approver.id,
                join(&verdict.rules)
            );
        }
        Ok(verdict)
    }

    /// Grants a pending request, signed with `key`, if the access rules allow `approver` to
    /// approve its scope for its duration. A refusal is logged and returned as `Denied`.
    pub fn approve(
        &self,
        approver: &Principal,
        key: &ApproverKey,
        id: &ApprovalId,
    ) -> Result<Grant, GateError> {
        let record = self.approvals.get(id)?;
        let purpose = record.request.scope.purpose.clone();
        let call = self.call(approver, &purpose, Some(id), AuditAction::ApprovalGrant);
        let verdict = self.decide_approval(approver, &record.request)?;
        let resource = self.approval_resource(&record.request);
        // Logged before it exists: a grant that is not in the log must not exist.
        call.proceed("approve", resource, &verdict, None, || {
            let (by, country) = (approver.id.clone(), approver.organisation.country);
            self.approvals
                .grant(id, by, country, key, self.clock.unix_secs())
        })
    }

    /// Refuses a pending request.
    pub fn deny_approval(&self, approver: &Principal, id: &ApprovalId) -> Result<(), GateError> {
        let record = self.approvals.get(id)?;
        let purpose = record.request.scope.purpose.clone();
        let call = self.call(approver, &purpose, Some(id), AuditAction::ApprovalDeny);
        let verdict = self.decide_approval(approver, &record.request)?;
        let resource = self.approval_resource(&record.request);
        call.proceed("deny an approval", resource, &verdict, None, || {
            self.approvals
                .deny(id, approver.id.clone(), self.clock.unix_secs())
        })
    }

    /// Withdraws a grant: by its requester, by the approver who gave it, or by any principal the
    /// rules allow to approve its scope.
    pub fn revoke_approval(&self, who: &Principal, id: &ApprovalId) -> Result<(), GateError> {
        let record = self.approvals.get(id)?;
        let purpose = record.request.scope.purpose.clone();
        let call = self.call(who, &purpose, Some(id), AuditAction::ApprovalRevoke);
        let granted_by = match &record.state {
            ApprovalState::Granted { grant } => Some(&grant.approver),
            _ => None,
        };
        let mut verdict = self.decide_approval(who, &record.request)?;
        if who.id == record.request.requester || granted_by == Some(&who.id) {
            verdict.allowed = true;
            verdict.reason = "allowed".into();
        }
        let resource = self.approval_resource(&record.request);
        call.proceed("revoke an approval", resource, &verdict, None, || {
            self.approvals
                .revoke(id, who.id.clone(), self.clock.unix_secs())
        })
    }

    /// Every registered subject with their home region (under this Gate's policy) and every one
    /// of their records' metadata and plaintext digest: what a split plans and verifies against.
    /// One bulk `scan` entry in the log, with the count of records and a digest over them.
    pub fn inventory(
        &self,
        who: &Principal,
        purpose: &Purpose,
    ) -> Result<Vec<SubjectInventory>, GateError> {
        let call = self.call(who, purpose, None, AuditAction::Scan);
        let verdict = self.decide_bulk(who, Action::Scan, DataClass::Protected, "*", purpose)?;
        if !verdict.allowed {
            return Err(call.refuse("inventory", bulk(DataClass::Protected, "*", 0), &verdict));
        }
        let mut subjects = self.store.subjects()?;
        subjects.sort_by(|a, b| a.subject.id.cmp(&b.subject.id));
        let mut out = Vec::with_capacity(subjects.len());
        let mut count = 0u64;
        let mut digest = BulkDigest::new();
        for registered in subjects {
            let records: Vec<(RecordMeta, RecordDigest)> = self
                .store
                .scan_subject(&registered.subject.id)?
                .into_iter()
                .map(|r| {
                    digest.add(&r);
                    let d = r.digest();
                    (r.meta, d)
                })
                .collect();
            count += records.len() as u64;
            out.push(SubjectInventory {
                subject: registered.subject,
                home: registered.home,
                records,
            });
        }
        let resource = bulk(DataClass::Protected, "*", count);
        call.log_ok(resource, &verdict, Some(digest.finish()))?;
        Ok(out)
    }

    /// The ids of every subject registered in this region, in id order: what a split shreds.
    /// One bulk `scan` entry (collection `subjects`) in the log.
    pub fn subject_ids(
        &self,
        who: &Principal,
        purpose: &Purpose,
    ) -> Result<Vec<SubjectId>, GateError> {
        let call = self.call(who, purpose, None, AuditAction::Scan);
        let verdict =
            self.decide_bulk(who, Action::Scan, DataClass::Protected, "subjects", purpose)?;
        if !verdict.allowed {
            let resource = bulk(DataClass::Protected, "subjects", 0);
            return Err(call.refuse("list subjects", resource, &verdict));
        }
        let mut ids: Vec<SubjectId> = self
            .store
            .subjects()?
            .into_iter()
            .map(|s| s.subject.id)
            .collect();
        ids.sort();
        let resource = bulk(DataClass::Protected, "subjects", ids.len() as u64);
        call.log_ok(resource, &verdict, None)?;
        Ok(ids)
    }

    /// Reads every record of several subjects, to move them elsewhere (a split). One `migrate`
    /// entry in the log with the count and a digest over everything released, durable before it
    /// returns.
    pub fn read_subjects(
        &self,
        who: &Principal,
        purpose: &Purpose,
        subjects: &[SubjectId],
    ) -> Result<Vec<(SubjectId, Vec<RawRecord>)>, GateError> {
        let call = self.call(who, purpose, None, AuditAction::Migrate);
        let verdict = self.decide_bulk(who, Action::Read, DataClass::Protected, "*", purpose)?;
        if !verdict.allowed {
            let resource = bulk(DataClass::Protected, "*", 0);
            return Err(call.refuse("read for migration", resource, &verdict));
        }
        let mut out = Vec::with_capacity(subjects.len());
        let mut count = 0u64;
        let mut digest = BulkDigest::new();
        for subject in subjects {
            let records = self.store.scan_subject(subject)?;
            records.iter().for_each(|r| digest.add(r));
            count += records.len() as u64;
            out.push((subject.clone(), records));
        }
        let resource = bulk(DataClass::Protected, "*", count);
        call.log_ok(resource, &verdict, Some(digest.finish()))?;
        Ok(out)
    }

    /// Registers subjects and writes their records in one atomic, durable batch (a split's
    /// target side). Every record is decided — the residency policy for its class and the
    /// subject's home here, the access rules for writing it — and one `migrate` entry with the
    /// count and a digest over the values is durable before the store is touched. If any record
    /// is refused, nothing is written.
    pub fn write_subjects(
        &self,
        who: &Principal,
        purpose: &Purpose,
        batch: &[(Subject, Vec<RawRecord>)],
    ) -> Result<Vec<RecordMeta>, GateError> {
        self.write_many(who, purpose, batch, AuditAction::Migrate)
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
        self.write_many(who, purpose, batch, AuditAction::Write)
    }

    fn write_many(
        &self,
        who: &Principal,
        purpose: &Purpose,
        batch: &[(Subject, Vec<RawRecord>)],
        action: AuditAction,
    ) -> Result<Vec<RecordMeta>, GateError> {
        let call = self.call(who, purpose, None, action);
        let mut verdict = Verdict {
            allowed: true,
            rules: Vec::new(),
            obligations: Vec::new(),
            reason: "allowed".into(),
        };
        // One decision per (class, home, collection): the rest of the batch asks the same.
        let mut decided: BTreeSet<(DataClass, Region, String)> = BTreeSet::new();
        let mut digest = BulkDigest::new();
        let mut count = 0u64;
        for (subject, records) in batch {
            let home = self.policy.home_region(subject)?;
            for r in records {
                count += 1;
                digest.add(r);
                let collection = r.meta.collection.as_str();
                if !decided.insert((r.meta.class, home.clone(), collection.to_owned())) {
                    continue;
                }
                let residency = self.policy.may_rest_in(r.meta.class, &home, &self.region)?;
                let access = self.rules.decide(&AccessRequest {
                    principal: who,
                    action: Action::Write,
                    resource: Resource::Records {
                        class: r.meta.class,
                        region: self.region.clone(),
                        subject_home: Some(home.clone()),
                        collection: collection.to_owned(),
                    },
                    purpose,
                    approval: None,
                })?;
                let one = combine(&residency, &access, None);
                for rule in &one.rules {
                    if !verdict.rules.contains(rule) {
                        verdict.rules.push(rule.clone());
                    }
                }
                if !one.allowed && verdict.allowed {
                    verdict.allowed = false;
                    verdict.reason = format!(
                        "{} record {}/{} of subject {}: {}",
                        r.meta.class, r.meta.collection, r.meta.key, subject.id, one.reason
                    );
                }
            }
        }
        let resource = bulk(DataClass::Protected, "*", count);
        if !verdict.allowed {
            return Err(call.refuse("write a batch", resource, &verdict));
        }
        call.log_ok(resource.clone(), &verdict, Some(digest.finish()))?;
        let written = (|| -> Result<Vec<RecordMeta>, StoreError> {
            let subjects: Vec<Subject> = batch.iter().map(|(s, _)| s.clone()).collect();
            self.store.register_subjects(&subjects)?;
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
            self.store.put_batch(&new)
        })();
        written.map_err(|e| call.fail(resource, &verdict, e.into()))
    }
}

/// A subject and their records, as [`Gate::inventory`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectInventory {
    /// The subject and their attributes.
    pub subject: Subject,
    /// Their home region under the Gate's policy.
    pub home: Region,
    /// Each record's metadata and plaintext digest.
    pub records: Vec<(RecordMeta, RecordDigest)>,
}
