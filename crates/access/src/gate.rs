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

    fn next_request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:08}", self.request_prefix)
    }

    fn audit_principal(who: &Principal) -> AuditPrincipal {
        AuditPrincipal {
            id: who.id.to_string(),
            organisation: who.organisation.name.clone(),
            office_country: who.office_country,
            location_country: who.location_country,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn append(
        &self,
        who: &Principal,
        action: AuditAction,
        resource: AuditResource,
        purpose: &Purpose,
        approval: Option<&ApprovalId>,
        decision: EntryDecision,
        outcome: Outcome,
        request_id: &str,
    ) -> Result<Receipt, GateError> {
        let entry = Entry {
            seq: 0,
            time_ms: now_ms(self.clock.as_ref()),
            region: self.region.clone(),
            principal: Self::audit_principal(who),
            action,
            resource,
            purpose: purpose.clone(),
            approval: approval.map(|a| a.to_string()),
            decision,
            policy: self.policy.id().clone(),
            request_id: request_id.to_owned(),
            outcome,
        };
        self.log.append(entry).map_err(GateError::AuditUnavailable)
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

    fn home_of(&self, subject: &SubjectId) -> Result<Region, GateError> {
        self.store
            .subject(subject)?
            .map(|s| s.home)
            .ok_or_else(|| GateError::UnknownSubject {
                subject: subject.clone(),
                region: self.region.clone(),
            })
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

    fn refuse(&self, action: &'static str, verdict: &Verdict, receipt: Receipt) -> GateError {
        GateError::Denied {
            action,
            rules: verdict.rules.clone(),
            reason: verdict.reason.clone(),
            seq: receipt.seq,
        }
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
        let request_id = self.next_request_id();
        let verdict = self.decide_record(who, Action::Read, record, purpose, approval)?;
        let resource = self.record_resource(record);
        if !verdict.allowed {
            let receipt = self.append(
                who,
                AuditAction::Read,
                resource,
                purpose,
                approval,
                verdict.entry_decision(),
                Outcome::Ok {
                    result_digest: None,
                },
                &request_id,
            )?;
            return Err(self.refuse("read", &verdict, receipt));
        }
        let found = self.store.get_raw(&record.collection, &record.key);
        let raw = match found {
            Ok(Some(raw))
                if raw.meta.subject == record.subject && raw.meta.class == record.class =>
            {
                raw
            }
            Ok(_) => {
                let receipt = self.append(
                    who,
                    AuditAction::Read,
                    resource,
                    purpose,
                    approval,
                    verdict.entry_decision(),
                    Outcome::Error {
                        reason: "no such record of this subject and class".into(),
                    },
                    &request_id,
                )?;
                return Err(GateError::NotFound {
                    collection: record.collection.clone(),
                    key: record.key.clone(),
                    subject: record.subject.clone(),
                    class: record.class,
                    seq: receipt.seq,
                });
            }
            Err(e) => {
                self.append(
                    who,
                    AuditAction::Read,
                    resource,
                    purpose,
                    approval,
                    verdict.entry_decision(),
                    Outcome::Error {
                        reason: e.to_string(),
                    },
                    &request_id,
                )?;
                return Err(e.into());
            }
        };
        let digest = ResultDigest(raw.digest().0);
        self.append(
            who,
            AuditAction::Read,
            resource,
            purpose,
            approval,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: Some(digest),
            },
            &request_id,
        )?;
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
        let request_id = self.next_request_id();
        let verdict = self.decide_record(who, Action::Write, record, purpose, approval)?;
        let resource = self.record_resource(record);
        let digest = ResultDigest(domicile_store::RecordDigest::of(value).0);
        let receipt = self.append(
            who,
            AuditAction::Write,
            resource.clone(),
            purpose,
            approval,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: verdict.allowed.then_some(digest),
            },
            &request_id,
        )?;
        if !verdict.allowed {
            return Err(self.refuse("write", &verdict, receipt));
        }
        match self.store.put_raw(
            &record.subject,
            record.class,
            &record.collection,
            &record.key,
            value,
        ) {
            Ok(meta) => Ok(meta),
            Err(e) => {
                self.append(
                    who,
                    AuditAction::Write,
                    resource,
                    purpose,
                    approval,
                    verdict.entry_decision(),
                    Outcome::Error {
                        reason: e.to_string(),
                    },
                    &request_id,
                )?;
                Err(e.into())
            }
        }
    }

    /// Deletes one record; returns whether there was one.
    pub fn delete(
        &self,
        who: &Principal,
        purpose: &Purpose,
        record: &RecordRef,
    ) -> Result<bool, GateError> {
        let request_id = self.next_request_id();
        let verdict = self.decide_record(who, Action::Delete, record, purpose, None)?;
        let resource = self.record_resource(record);
        let receipt = self.append(
            who,
            AuditAction::Delete,
            resource.clone(),
            purpose,
            None,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: None,
            },
            &request_id,
        )?;
        if !verdict.allowed {
            return Err(self.refuse("delete", &verdict, receipt));
        }
        self.store
            .delete(&record.collection, &record.key)
            .map_err(|e| {
                // Best effort: the refusal to delete is reported whether or not this entry lands.
                let _ = self.append(
                    who,
                    AuditAction::Delete,
                    resource,
                    purpose,
                    None,
                    verdict.entry_decision(),
                    Outcome::Error {
                        reason: e.to_string(),
                    },
                    &request_id,
                );
                e.into()
            })
    }

    /// Registers a subject in this region's store (a write of their attributes).
    pub fn register_subject(
        &self,
        who: &Principal,
        purpose: &Purpose,
        subject: &Subject,
    ) -> Result<Region, GateError> {
        let request_id = self.next_request_id();
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
        let receipt = self.append(
            who,
            AuditAction::Write,
            resource,
            purpose,
            None,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: None,
            },
            &request_id,
        )?;
        if !verdict.allowed {
            return Err(self.refuse("register", &verdict, receipt));
        }
        Ok(self.store.register_subject(subject)?)
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
        let request_id = self.next_request_id();
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action: Action::Scan,
            resource: Resource::Records {
                class: request.class,
                region: self.region.clone(),
                subject_home: None,
                collection: request.collection.as_str().to_owned(),
            },
            purpose,
            approval: None,
        })?;
        let mut rules: Vec<RuleId> = access.rules.clone();
        let mut obligations: Vec<Obligation> = Vec::new();
        let mut residency_refusal = None;
        if let Some(dest) = &request.destination {
            self.policy.check_region(dest)?;
            for home in self.policy.regions() {
                let d =
                    self.policy
                        .may_transfer(request.class, home, &self.region, dest, purpose)?;
                if !rules.contains(&d.rule) {
                    rules.push(d.rule.clone());
                }
                if !d.allowed {
                    residency_refusal.get_or_insert(d.rule.clone());
                }
                for o in d.obligations {
                    if !obligations.contains(&o) {
                        obligations.push(o);
                    }
                }
            }
        }
        let pseudonymise = !obligations.is_empty();
        let obligations_met = !pseudonymise || pseudonymising_satisfies(&obligations);
        let allowed = access.allowed && residency_refusal.is_none() && obligations_met;
        let reason = if let Some(rule) = &residency_refusal {
            format!("the residency policy forbids the transfer ({rule})")
        } else if !access.allowed {
            format!(
                "the access rules do not permit it ({})",
                join(&access.rules)
            )
        } else if !obligations_met {
            "the transfer's obligations cannot be met by pseudonymising; aggregate instead".into()
        } else {
            "allowed".into()
        };
        let verdict = Verdict {
            allowed,
            rules,
            obligations: if allowed {
                obligations.clone()
            } else {
                Vec::new()
            },
            reason,
        };
        let bulk = |count| AuditResource {
            class: request.class,
            collection: request.collection.as_str().to_owned(),
            subject: None,
            target: Target::Bulk { count },
        };
        if !verdict.allowed {
            let receipt = self.append(
                who,
                AuditAction::Scan,
                bulk(0),
                purpose,
                None,
                verdict.entry_decision(),
                Outcome::Ok {
                    result_digest: None,
                },
                &request_id,
            )?;
            return Err(self.refuse("scan", &verdict, receipt));
        }
        let mut records = Vec::new();
        let mut skipped = 0;
        let mut homes: BTreeMap<SubjectId, bool> = BTreeMap::new();
        let mut digest = Sha256::new(&SHA256);
        for item in self.store.scan_collection(&request.collection) {
            let raw: RawRecord = match item {
                Ok(raw) => raw,
                Err(e) => {
                    self.append(
                        who,
                        AuditAction::Scan,
                        bulk(0),
                        purpose,
                        None,
                        verdict.entry_decision(),
                        Outcome::Error {
                            reason: e.to_string(),
                        },
                        &request_id,
                    )?;
                    return Err(e.into());
                }
            };
            if raw.meta.class != request.class {
                continue;
            }
            let placed = match homes.get(&raw.meta.subject) {
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
                    homes.insert(raw.meta.subject.clone(), ok);
                    ok
                }
            };
            if !placed {
                skipped += 1;
                continue;
            }
            digest.update(&raw.digest().0);
            let subject = if pseudonymise {
                SubjectRef::Pseudonym(self.audit_key.pseudonym(&raw.meta.subject).to_string())
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
        let mut d = [0u8; 32];
        d.copy_from_slice(digest.finish().as_ref());
        let receipt = self.append(
            who,
            AuditAction::Scan,
            bulk(records.len() as u64),
            purpose,
            None,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: Some(ResultDigest(d)),
            },
            &request_id,
        )?;
        Ok(ScanResult {
            records,
            skipped_misplaced: skipped,
            obligations,
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
        let request_id = self.next_request_id();
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action: Action::Scan,
            resource: Resource::Records {
                class: request.class,
                region: self.region.clone(),
                subject_home: None,
                collection: request.collection.as_str().to_owned(),
            },
            purpose,
            approval: None,
        })?;
        let mut rules = access.rules.clone();
        let mut obligations = Vec::new();
        let mut refusal = None;
        if let Some(dest) = &request.destination {
            self.policy.check_region(dest)?;
            for home in self.policy.regions() {
                let d =
                    self.policy
                        .may_transfer(request.class, home, &self.region, dest, purpose)?;
                if !rules.contains(&d.rule) {
                    rules.push(d.rule.clone());
                }
                if !d.allowed {
                    refusal.get_or_insert(d.rule.clone());
                }
                obligations.extend(d.obligations);
            }
        }
        let min_subjects = if obligations.is_empty() {
            Some(1)
        } else {
            aggregating_satisfies(&obligations)
        };
        let allowed = access.allowed && refusal.is_none() && min_subjects.is_some();
        let reason = match (&refusal, access.allowed, min_subjects) {
            (Some(rule), _, _) => format!("the residency policy forbids the transfer ({rule})"),
            (None, false, _) => format!(
                "the access rules do not permit it ({})",
                join(&access.rules)
            ),
            (None, true, None) => "the transfer's obligations cannot be met by aggregating".into(),
            _ => "allowed".into(),
        };
        obligations.dedup();
        let verdict = Verdict {
            allowed,
            rules,
            obligations: if allowed { obligations } else { Vec::new() },
            reason,
        };
        let bulk = |count| AuditResource {
            class: request.class,
            collection: request.collection.as_str().to_owned(),
            subject: None,
            target: Target::Bulk { count },
        };
        let Some(k) = min_subjects.filter(|_| allowed) else {
            let receipt = self.append(
                who,
                AuditAction::Scan,
                bulk(0),
                purpose,
                None,
                verdict.entry_decision(),
                Outcome::Ok {
                    result_digest: None,
                },
                &request_id,
            )?;
            return Err(self.refuse("aggregate", &verdict, receipt));
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
        let digest = ResultDigest(domicile_store::RecordDigest::of(&body).0);
        self.append(
            who,
            AuditAction::Scan,
            bulk(scanned),
            purpose,
            None,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: Some(digest),
            },
            &request_id,
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
        let request_id = self.next_request_id();
        let home = self.home_of(subject)?;
        self.policy.check_region(destination)?;
        let classes: BTreeSet<DataClass> = self
            .store
            .scan_subject(subject)?
            .iter()
            .map(|r| r.meta.class)
            .collect();
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action: Action::Export,
            resource: Resource::Records {
                class: classes
                    .iter()
                    .next()
                    .copied()
                    .unwrap_or(DataClass::Protected),
                region: self.region.clone(),
                subject_home: Some(home.clone()),
                collection: "*".into(),
            },
            purpose,
            approval: None,
        })?;
        let mut rules = access.rules.clone();
        let mut obligations = Vec::new();
        let mut refusal = None;
        for class in &classes {
            let d = self
                .policy
                .may_transfer(*class, &home, &self.region, destination, purpose)?;
            if !rules.contains(&d.rule) {
                rules.push(d.rule.clone());
            }
            if !d.allowed {
                refusal.get_or_insert(d.rule.clone());
            }
            obligations.extend(d.obligations);
        }
        let unmet: Vec<&Obligation> = obligations
            .iter()
            .filter(|o| !matches!(o, Obligation::ExportLicence { .. }) || licence.is_none())
            .collect();
        let allowed = access.allowed && refusal.is_none() && unmet.is_empty();
        let reason = if let Some(rule) = &refusal {
            format!("the residency policy forbids the transfer ({rule})")
        } else if !access.allowed {
            format!(
                "the access rules do not permit it ({})",
                join(&access.rules)
            )
        } else if let Some(o) = unmet.first() {
            format!("obligation not met: {o}")
        } else {
            "allowed".into()
        };
        let verdict = Verdict {
            allowed,
            rules,
            obligations: if allowed {
                obligations.clone()
            } else {
                Vec::new()
            },
            reason,
        };
        let resource = AuditResource {
            class: classes
                .iter()
                .next()
                .copied()
                .unwrap_or(DataClass::Protected),
            collection: "*".into(),
            subject: Some(self.audit_key.pseudonym(subject)),
            target: Target::Bulk { count: 0 },
        };
        let receipt = self.append(
            who,
            AuditAction::Export,
            resource,
            purpose,
            None,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: None,
            },
            &request_id,
        )?;
        if !verdict.allowed {
            return Err(self.refuse("export", &verdict, receipt));
        }
        Ok(self.store.export_subject(subject)?)
    }

    /// Crypto-shreds a subject in this region.
    pub fn shred_subject(
        &self,
        who: &Principal,
        purpose: &Purpose,
        subject: &SubjectId,
    ) -> Result<ShredReceipt, GateError> {
        let request_id = self.next_request_id();
        let home = self.home_of(subject)?;
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action: Action::Delete,
            resource: Resource::Records {
                class: DataClass::Protected,
                region: self.region.clone(),
                subject_home: Some(home),
                collection: "*".into(),
            },
            purpose,
            approval: None,
        })?;
        let verdict = Verdict {
            allowed: access.allowed,
            rules: access.rules.clone(),
            obligations: Vec::new(),
            reason: if access.allowed {
                "allowed".into()
            } else {
                format!(
                    "the access rules do not permit it ({})",
                    join(&access.rules)
                )
            },
        };
        let resource = AuditResource {
            class: DataClass::KeyMaterial,
            collection: "*".into(),
            subject: Some(self.audit_key.pseudonym(subject)),
            target: Target::Bulk { count: 0 },
        };
        let receipt = self.append(
            who,
            AuditAction::Shred,
            resource,
            purpose,
            None,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: None,
            },
            &request_id,
        )?;
        if !verdict.allowed {
            return Err(self.refuse("shred", &verdict, receipt));
        }
        Ok(self.store.shred_subject(subject)?)
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
        let request_id = self.next_request_id();
        let mut present = Vec::with_capacity(subjects.len());
        let mut homes = BTreeSet::new();
        for id in subjects {
            if let Some(s) = self.store.subject(id)? {
                homes.insert(s.home);
                present.push(id.clone());
            }
        }
        let mut rules: Vec<RuleId> = Vec::new();
        let mut allowed = true;
        for home in homes {
            let access = self.rules.decide(&AccessRequest {
                principal: who,
                action: Action::Delete,
                resource: Resource::Records {
                    class: DataClass::Protected,
                    region: self.region.clone(),
                    subject_home: Some(home),
                    collection: "*".into(),
                },
                purpose,
                approval: None,
            })?;
            allowed &= access.allowed;
            for r in access.rules {
                if !rules.contains(&r) {
                    rules.push(r);
                }
            }
        }
        let reason = if allowed {
            "allowed".to_owned()
        } else {
            format!("the access rules do not permit it ({})", join(&rules))
        };
        let verdict = Verdict {
            allowed,
            rules,
            obligations: Vec::new(),
            reason,
        };
        let resource = AuditResource {
            class: DataClass::KeyMaterial,
            collection: "*".into(),
            subject: None,
            target: Target::Bulk {
                count: present.len() as u64,
            },
        };
        let receipt = self.append(
            who,
            AuditAction::Shred,
            resource.clone(),
            purpose,
            None,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: None,
            },
            &request_id,
        )?;
        if !verdict.allowed {
            return Err(self.refuse("shred", &verdict, receipt));
        }
        self.store.shred_subjects(&present).map_err(|e| {
            let _ = self.append(
                who,
                AuditAction::Shred,
                resource,
                purpose,
                None,
                verdict.entry_decision(),
                Outcome::Error {
                    reason: e.to_string(),
                },
                &request_id,
            );
            e.into()
        })
    }

    /// Lets a principal read this region's audit log: the decision is itself logged. Returns the
    /// log's directory, to hand to `domicile audit verify | query`.
    pub fn open_log(&self, who: &Principal, purpose: &Purpose) -> Result<PathBuf, GateError> {
        let request_id = self.next_request_id();
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action: Action::ReadLog,
            resource: Resource::AuditLog {
                region: self.region.clone(),
            },
            purpose,
            approval: None,
        })?;
        let verdict = Verdict {
            allowed: access.allowed,
            rules: access.rules.clone(),
            obligations: Vec::new(),
            reason: if access.allowed {
                "allowed".into()
            } else {
                format!(
                    "the access rules do not permit it ({})",
                    join(&access.rules)
                )
            },
        };
        let resource = AuditResource {
            class: DataClass::AuditRecord,
            collection: "audit-log".into(),
            subject: None,
            target: Target::Bulk {
                count: self.log.size(),
            },
        };
        let receipt = self.append(
            who,
            AuditAction::AuditRead,
            resource,
            purpose,
            None,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: None,
            },
            &request_id,
        )?;
        if !verdict.allowed {
            return Err(self.refuse("read the log", &verdict, receipt));
        }
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
        let request_id = self.next_request_id();
        let purpose = scope.purpose.clone();
        let request = self.approvals.file(
            who.id.clone(),
            scope,
            duration_secs,
            self.clock.unix_secs(),
            pending_ttl_secs,
        )?;
        let decision = EntryDecision {
            allowed: true,
            rules: Vec::new(),
            obligations: Vec::new(),
        };
        self.append(
            who,
            AuditAction::ApprovalRequest,
            self.approval_resource(&request),
            &purpose,
            Some(&request.id),
            decision,
            Outcome::Ok {
                result_digest: None,
            },
            &request_id,
        )?;
        Ok(request)
    }

    fn decide_approval(
        &self,
        approver: &Principal,
        request: &ApprovalRequest,
    ) -> Result<Verdict, GateError> {
        let access = self.rules.decide(&AccessRequest {
            principal: approver,
            action: Action::Approve,
            resource: Resource::Records {
                class: request.scope.class,
                region: request.scope.region.clone(),
                subject_home: Some(request.scope.region.clone()),
                collection: "*".into(),
            },
            purpose: &request.scope.purpose,
            approval: Some(ApprovalFacts {
                approver_org_country: approver.organisation.country,
                duration_secs: request.duration_secs,
            }),
        })?;
        let self_approval = approver.id == request.requester;
        Ok(Verdict {
            allowed: access.allowed && !self_approval,
            rules: access.rules.clone(),
            obligations: Vec::new(),
            reason: if self_approval {
                "a principal cannot approve their own request".into()
            } else if access.allowed {
                "allowed".into()
            } else {
                format!(
                    "the access rules do not let {} approve it ({})",
                    approver.id,
                    join(&access.rules)
                )
            },
        })
    }

    /// Grants a pending request, signed with `key`, if the access rules allow `approver` to
    /// approve its scope for its duration. A refusal is logged and returned as `Denied`.
    pub fn approve(
        &self,
        approver: &Principal,
        key: &ApproverKey,
        id: &ApprovalId,
    ) -> Result<Grant, GateError> {
        let request_id = self.next_request_id();
        let record = self.approvals.get(id)?;
        let verdict = self.decide_approval(approver, &record.request)?;
        let resource = self.approval_resource(&record.request);
        let purpose = record.request.scope.purpose.clone();
        if !verdict.allowed {
            let receipt = self.append(
                approver,
                AuditAction::ApprovalGrant,
                resource,
                &purpose,
                Some(id),
                verdict.entry_decision(),
                Outcome::Ok {
                    result_digest: None,
                },
                &request_id,
            )?;
            return Err(self.refuse("approve", &verdict, receipt));
        }
        // Log first: a grant that is not in the log must not exist.
        self.append(
            approver,
            AuditAction::ApprovalGrant,
            resource.clone(),
            &purpose,
            Some(id),
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: None,
            },
            &request_id,
        )?;
        match self.approvals.grant(
            id,
            approver.id.clone(),
            approver.organisation.country,
            key,
            self.clock.unix_secs(),
        ) {
            Ok(grant) => Ok(grant),
            Err(e) => {
                self.append(
                    approver,
                    AuditAction::ApprovalGrant,
                    resource,
                    &purpose,
                    Some(id),
                    verdict.entry_decision(),
                    Outcome::Error {
                        reason: e.to_string(),
                    },
                    &request_id,
                )?;
                Err(e.into())
            }
        }
    }

    /// Refuses a pending request.
    pub fn deny_approval(&self, approver: &Principal, id: &ApprovalId) -> Result<(), GateError> {
        let request_id = self.next_request_id();
        let record = self.approvals.get(id)?;
        let verdict = self.decide_approval(approver, &record.request)?;
        let resource = self.approval_resource(&record.request);
        let purpose = record.request.scope.purpose.clone();
        let receipt = self.append(
            approver,
            AuditAction::ApprovalDeny,
            resource,
            &purpose,
            Some(id),
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: None,
            },
            &request_id,
        )?;
        if !verdict.allowed {
            return Err(self.refuse("deny an approval", &verdict, receipt));
        }
        Ok(self
            .approvals
            .deny(id, approver.id.clone(), self.clock.unix_secs())?)
    }

    /// Withdraws a grant: by its requester, by the approver who gave it, or by any principal the
    /// rules allow to approve its scope.
    pub fn revoke_approval(&self, who: &Principal, id: &ApprovalId) -> Result<(), GateError> {
        let request_id = self.next_request_id();
        let record = self.approvals.get(id)?;
        let granted_by = match &record.state {
            ApprovalState::Granted { grant } => Some(grant.approver.clone()),
            _ => None,
        };
        let mut verdict = self.decide_approval(who, &record.request)?;
        if who.id == record.request.requester || granted_by.as_ref() == Some(&who.id) {
            verdict.allowed = true;
            verdict.reason = "allowed".into();
        }
        let resource = self.approval_resource(&record.request);
        let purpose = record.request.scope.purpose.clone();
        let receipt = self.append(
            who,
            AuditAction::ApprovalRevoke,
            resource,
            &purpose,
            Some(id),
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: None,
            },
            &request_id,
        )?;
        if !verdict.allowed {
            return Err(self.refuse("revoke an approval", &verdict, receipt));
        }
        Ok(self
            .approvals
            .revoke(id, who.id.clone(), self.clock.unix_secs())?)
    }

    /// Every registered subject with their home region (under this Gate's policy) and every one
    /// of their records' metadata and plaintext digest: what a split plans and verifies against.
    /// One bulk `scan` entry in the log, with the count of records and a digest over them.
    pub fn inventory(
        &self,
        who: &Principal,
        purpose: &Purpose,
    ) -> Result<Vec<SubjectInventory>, GateError> {
        let request_id = self.next_request_id();
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action: Action::Scan,
            resource: Resource::Records {
                class: DataClass::Protected,
                region: self.region.clone(),
                subject_home: None,
                collection: "*".into(),
            },
            purpose,
            approval: None,
        })?;
        let verdict = Verdict {
            allowed: access.allowed,
            rules: access.rules.clone(),
            obligations: Vec::new(),
            reason: if access.allowed {
                "allowed".into()
            } else {
                format!(
                    "the access rules do not permit it ({})",
                    join(&access.rules)
                )
            },
        };
        let bulk = |count| AuditResource {
            class: DataClass::Protected,
            collection: "*".into(),
            subject: None,
            target: Target::Bulk { count },
        };
        if !verdict.allowed {
            let receipt = self.append(
                who,
                AuditAction::Scan,
                bulk(0),
                purpose,
                None,
                verdict.entry_decision(),
                Outcome::Ok {
                    result_digest: None,
                },
                &request_id,
            )?;
            return Err(self.refuse("inventory", &verdict, receipt));
        }
        let mut out = Vec::new();
        let mut count = 0u64;
        let mut digest = Sha256::new(&SHA256);
        let mut subjects = self.store.subjects()?;
        subjects.sort_by(|a, b| a.subject.id.cmp(&b.subject.id));
        for registered in subjects {
            let records: Vec<(RecordMeta, RecordDigest)> = self
                .store
                .scan_subject(&registered.subject.id)?
                .into_iter()
                .map(|r| {
                    let d = r.digest();
                    digest.update(&d.0);
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
        let mut d = [0u8; 32];
        d.copy_from_slice(digest.finish().as_ref());
        self.append(
            who,
            AuditAction::Scan,
            bulk(count),
            purpose,
            None,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: Some(ResultDigest(d)),
            },
            &request_id,
        )?;
        Ok(out)
    }

    /// The ids of every subject registered in this region, in id order: what a split shreds.
    /// One bulk `scan` entry (collection `subjects`) in the log.
    pub fn subject_ids(
        &self,
        who: &Principal,
        purpose: &Purpose,
    ) -> Result<Vec<SubjectId>, GateError> {
        let request_id = self.next_request_id();
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action: Action::Scan,
            resource: Resource::Records {
                class: DataClass::Protected,
                region: self.region.clone(),
                subject_home: None,
                collection: "subjects".into(),
            },
            purpose,
            approval: None,
        })?;
        let verdict = Verdict {
            allowed: access.allowed,
            rules: access.rules.clone(),
            obligations: Vec::new(),
            reason: if access.allowed {
                "allowed".into()
            } else {
                format!(
                    "the access rules do not permit it ({})",
                    join(&access.rules)
                )
            },
        };
        let bulk = |count| AuditResource {
            class: DataClass::Protected,
            collection: "subjects".into(),
            subject: None,
            target: Target::Bulk { count },
        };
        if !verdict.allowed {
            let receipt = self.append(
                who,
                AuditAction::Scan,
                bulk(0),
                purpose,
                None,
                verdict.entry_decision(),
                Outcome::Ok {
                    result_digest: None,
                },
                &request_id,
            )?;
            return Err(self.refuse("list subjects", &verdict, receipt));
        }
        let mut ids: Vec<SubjectId> = self
            .store
            .subjects()?
            .into_iter()
            .map(|s| s.subject.id)
            .collect();
        ids.sort();
        self.append(
            who,
            AuditAction::Scan,
            bulk(ids.len() as u64),
            purpose,
            None,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: None,
            },
            &request_id,
        )?;
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
        let request_id = self.next_request_id();
        let access = self.rules.decide(&AccessRequest {
            principal: who,
            action: Action::Read,
            resource: Resource::Records {
                class: DataClass::Protected,
                region: self.region.clone(),
                subject_home: None,
                collection: "*".into(),
            },
            purpose,
            approval: None,
        })?;
        let verdict = Verdict {
            allowed: access.allowed,
            rules: access.rules.clone(),
            obligations: Vec::new(),
            reason: if access.allowed {
                "allowed".into()
            } else {
                format!(
                    "the access rules do not permit it ({})",
                    join(&access.rules)
                )
            },
        };
        let bulk = |count| AuditResource {
            class: DataClass::Protected,
            collection: "*".into(),
            subject: None,
            target: Target::Bulk { count },
        };
        if !verdict.allowed {
            let receipt = self.append(
                who,
                AuditAction::Migrate,
                bulk(0),
                purpose,
                None,
                verdict.entry_decision(),
                Outcome::Ok {
                    result_digest: None,
                },
                &request_id,
            )?;
            return Err(self.refuse("read for migration", &verdict, receipt));
        }
        let mut out = Vec::with_capacity(subjects.len());
        let mut count = 0u64;
        let mut digest = Sha256::new(&SHA256);
        for subject in subjects {
            let records = self.store.scan_subject(subject)?;
            for r in &records {
                digest.update(&r.digest().0);
            }
            count += records.len() as u64;
            out.push((subject.clone(), records));
        }
        let mut d = [0u8; 32];
        d.copy_from_slice(digest.finish().as_ref());
        self.append(
            who,
            AuditAction::Migrate,
            bulk(count),
            purpose,
            None,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: Some(ResultDigest(d)),
            },
            &request_id,
        )?;
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
        let request_id = self.next_request_id();
        let mut rules: Vec<RuleId> = Vec::new();
        let mut refusal: Option<String> = None;
        let mut decided: BTreeMap<(DataClass, Region, String), bool> = BTreeMap::new();
        let mut digest = Sha256::new(&SHA256);
        let mut count = 0u64;
        for (subject, records) in batch {
            let home = self.policy.home_region(subject)?;
            for r in records {
                count += 1;
                digest.update(&r.digest().0);
                let key = (
                    r.meta.class,
                    home.clone(),
                    r.meta.collection.as_str().to_owned(),
                );
                if decided.contains_key(&key) {
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
                        collection: r.meta.collection.as_str().to_owned(),
                    },
                    purpose,
                    approval: None,
                })?;
                let verdict = combine(&residency, &access, None);
                for rule in &verdict.rules {
                    if !rules.contains(rule) {
                        rules.push(rule.clone());
                    }
                }
                if !verdict.allowed && refusal.is_none() {
                    refusal = Some(format!(
                        "{} record {}/{} of subject {}: {}",
                        r.meta.class, r.meta.collection, r.meta.key, subject.id, verdict.reason
                    ));
                }
                decided.insert(key, verdict.allowed);
            }
        }
        let verdict = Verdict {
            allowed: refusal.is_none(),
            rules,
            obligations: Vec::new(),
            reason: refusal.clone().unwrap_or_else(|| "allowed".into()),
        };
        let mut d = [0u8; 32];
        d.copy_from_slice(digest.finish().as_ref());
        let resource = AuditResource {
            class: DataClass::Protected,
            collection: "*".into(),
            subject: None,
            target: Target::Bulk { count },
        };
        let receipt = self.append(
            who,
            action,
            resource.clone(),
            purpose,
            None,
            verdict.entry_decision(),
            Outcome::Ok {
                result_digest: verdict.allowed.then_some(ResultDigest(d)),
            },
            &request_id,
        )?;
        if !verdict.allowed {
            return Err(self.refuse("write for migration", &verdict, receipt));
        }
        let result = (|| -> Result<Vec<RecordMeta>, StoreError> {
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
        match result {
            Ok(metas) => Ok(metas),
            Err(e) => {
                self.append(
                    who,
                    action,
                    resource,
                    purpose,
                    None,
                    verdict.entry_decision(),
                    Outcome::Error {
                        reason: e.to_string(),
                    },
                    &request_id,
                )?;
                Err(e.into())
            }
        }
    }

    /// The subject's pseudonym in this region's log.
    pub fn pseudonym(&self, subject: &SubjectId) -> String {
        self.audit_key.pseudonym(subject).to_string()
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
