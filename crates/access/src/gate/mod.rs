//! The Gate: the only door to a region's store.
//!
//! Every call follows one order (DESIGN.md, "Data flow"): decide — residency, access rules,
//! approval — then append the decision to the region's audit log and wait until it is durable,
//! then act. A read's entry carries the digest of exactly what it returns and is durable before
//! the data is returned. Denials are logged too. If the log cannot be written, the call is
//! refused and nothing is returned or written (fail-closed, after Vault's audit devices).
//!
//! This file is the Gate's public face: the [`Gate`] itself, how it is built, and the types its
//! calls take and return. Each mechanism has its own file:
//!
//! - `verdict.rs`: merging the answers of the residency policy and the access rules (pure);
//! - `decide.rs`: the questions a Gate asks before a call;
//! - `call.rs`: the decide–log–act shapes every call takes, one for acting, one for reading;
//! - `records.rs`: one record at a time (read, write, delete, register a subject);
//! - `bulk.rs`: many records at once (scan, aggregate, export, shred) and opening the log;
//! - `migration.rs`: what a split reads and writes (inventory, subject lists, batches);
//! - `models.rs`: recording a model's training and deciding its deployment;
//! - `approvals.rs`: requesting, granting, denying and revoking time-boxed access;
//! - `transfer.rs`: de-identifying released records under the transfer key.

mod approvals;
mod bulk;
mod call;
mod decide;
mod error;
mod gate_rules;
mod migration;
mod models;
mod records;
mod transfer;
mod verdict;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use domicile_audit::{AuditKey, AuditLog, Receipt, Resource as AuditResource, Target};
use domicile_residency::{DataClass, Obligation, Region, ResidencyPolicy, Subject, SubjectId};
use domicile_store::{Collection, RecordDigest, RecordKey, RecordMeta, SealedStore};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

pub use approvals::MAX_APPROVAL_SUBJECTS;
pub use call::LICENCE_PREFIX;
pub use error::GateError;
pub use gate_rules::{
    gate_rules, APPROVAL_FILED, APPROVAL_SCOPE, MIGRATION_WARRANT, OBLIGATION_UNMET, REVOKE,
    SELF_APPROVAL, UNVERIFIED_PRINCIPAL,
};
pub use models::Training;

use crate::approval::ApprovalBook;
use crate::rules::AccessRules;
use crate::{AccessError, Clock, Principal, PrincipalDirectory, SpiffeId};

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
/// obliged pseudonymisation ([`Gate::transfer_pseudonym`], under the transfer key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectRef {
    /// The subject id itself.
    Id(SubjectId),
    /// `hmac:` and 64 hex digits: HMAC-SHA256 of the id under the Gate's transfer key, which is
    /// not the audit key, so it never equals the subject's pseudonym in the log.
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
    /// Records withheld because they had to be de-identified and their value is not a JSON
    /// object whose identifying fields could be found.
    pub withheld_not_deidentifiable: u64,
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

/// The Gate of one region.
pub struct Gate {
    region: Region,
    policy: Arc<dyn ResidencyPolicy>,
    rules: AccessRules,
    store: Arc<SealedStore>,
    log: Arc<AuditLog>,
    audit_key: AuditKey,
    transfer_key: ring::hmac::Key,
    approvals: ApprovalBook,
    approvers: RwLock<BTreeMap<SpiffeId, String>>,
    directory: RwLock<PrincipalDirectory>,
    clock: Arc<dyn Clock>,
    request_prefix: String,
    request_counter: AtomicU64,
    /// The migration key's public half, whose warrants authorise migration reads and writes.
    migration_key: RwLock<Option<Vec<u8>>>,
    /// Held while a store check runs: each reads the whole store, so one runs at a time.
    store_check: Mutex<()>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("region", &self.region)
            .field("policy", &self.policy.id().to_string())
            .finish_non_exhaustive()
    }
}

/// Building a Gate, and what it is built from.
impl Gate {
    /// A Gate in front of `store`, logging to `log`. The policy is the store's; pseudonyms in the
    /// log (of subjects and of record keys) are keyed with `audit_key`; approvals are kept in
    /// `approvals`.
    ///
    /// The approval book is settled against the log first: the log is where approvals are
    /// granted, denied and revoked, the book only a cache of it (see [`ApprovalBook::settle`]).
    ///
    /// The Gate starts with an empty [`PrincipalDirectory`]: it trusts nobody until the
    /// operator's directory is given with [`set_directory`](Self::set_directory) or principals
    /// are enrolled with [`enrol`](Self::enrol).
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
            .map_err(|_| AccessError::Random {
                making: "making the Gate's request-id prefix",
            })?;
        let mut transfer = [0u8; 32];
        SystemRandom::new()
            .fill(&mut transfer)
            .map_err(|_| AccessError::Random {
                making: "making the Gate's transfer key",
            })?;
        let gate = Gate {
            region: store.region().clone(),
            policy,
            rules,
            store,
            log,
            audit_key,
            transfer_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &transfer),
            approvals,
            approvers: RwLock::new(BTreeMap::new()),
            directory: RwLock::new(PrincipalDirectory::empty()),
            clock,
            request_prefix: prefix.iter().map(|b| format!("{b:02x}")).collect(),
            request_counter: AtomicU64::new(0),
            migration_key: RwLock::new(None),
            store_check: Mutex::new(()),
        };
        gate.settle_approvals_from_log()?;
        Ok(gate)
    }

    /// Trusts the deployment's migration key (its Ed25519 public key, base64): from now on a
    /// [`MigrationWarrant`](crate::MigrationWarrant) signed by it authorises
    /// [`read_subjects`](Self::read_subjects) and [`write_subjects`](Self::write_subjects) for
    /// the subjects it names. A Gate given no key honours no warrant.
    pub fn trust_migration_key(&self, public_key_base64: &str) -> Result<(), GateError> {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD
            .decode(public_key_base64.trim())
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| {
                AccessError::InvalidKey("the migration public key is not 32 bytes of base64".into())
            })?;
        *self
            .migration_key
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(key);
        Ok(())
    }

    /// Replaces the principal directory: from now on every call is made only by principals it
    /// names, with exactly the attributes it gives them.
    pub fn set_directory(&self, directory: PrincipalDirectory) {
        *self.directory.write().unwrap_or_else(|p| p.into_inner()) = directory;
    }

    /// Adds one principal to the directory (the operator's act, as embedding code performs it).
    pub fn enrol(&self, principal: Principal) -> Result<(), GateError> {
        Ok(self
            .directory
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(principal)?)
    }

    /// The principal of a verified SPIFFE id (from a client certificate), as the directory
    /// describes it: what a server passes to the Gate's calls.
    pub fn principal(&self, id: &SpiffeId) -> Result<Principal, GateError> {
        self.directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .principal(id)
            .cloned()
            .ok_or(GateError::UnknownPrincipal)
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

    /// The subject's pseudonym in this region's log
    /// ([`AuditKey::pseudonym`](domicile_audit::AuditKey::pseudonym)).
    pub fn pseudonym(&self, subject: &SubjectId) -> String {
        self.audit_key.pseudonym(subject).to_string()
    }

    /// How a record key appears in the log: `hmac:` and 64 hex digits
    /// ([`AuditKey::record_key_pseudonym`](domicile_audit::AuditKey::record_key_pseudonym)).
    /// Record keys often embed a user id (`profile/<user>`), so they are keyed like subjects
    /// (invariant 6); an auditor holding the audit key computes the same value with
    /// `domicile audit pseudonym --collection C --key K`.
    pub fn record_key_pseudonym(&self, collection: &Collection, key: &RecordKey) -> String {
        self.audit_key
            .record_key_pseudonym(collection.as_str(), key.as_str())
            .to_text()
    }
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
