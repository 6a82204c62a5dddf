//! Audited access control for domicile: who may reach which person's data, for what purpose,
//! with whose approval — and the proof afterwards.
//!
//! The [`Gate`] is the only door to a region's [`SealedStore`](domicile_store::SealedStore).
//! Every call is decided first — the residency policy (may this class of this subject rest
//! here?), the policy crate's Cedar [access rules](AccessRules) (deny by default), and any
//! [approval](ApprovalBook) — then the decision is appended to the region's
//! [audit log](domicile_audit::AuditLog) and waited on until durable, and only then is anything
//! read or written. A read's entry carries the digest of exactly what it returns. Denials are
//! logged too. If the log cannot be written, the call is refused (fail-closed).
//!
//! [`Principal`]s are named by SPIFFE-style ids (`spiffe://<trust-domain>/<region>/<org>/<name>`)
//! and carry their employer, office and location, as Google Access Transparency records them.
//! [Approvals](ApprovalBook), after Azure Customer Lockbox, are signed with Ed25519, time-boxed,
//! revocable, and expire unanswered; each step is an audit entry.
//!
//! ```
//! use std::sync::Arc;
//! use domicile_access::{ApprovalBook, Gate, Principal, PrincipalKind, RecordRef, SystemClock};
//! use domicile_audit::{AuditKey, AuditLog, KeyKind, LogConfig, SigningKey};
//! use domicile_policy_us_split::UsSplitPolicy;
//! use domicile_residency::{DataClass, JustificationCode, Purpose, Region, Subject};
//! use domicile_store::{Collection, FileCustodian, RecordKey, SealedStore};
//!
//! let dir = tempfile::tempdir()?;
//! let us = Region::parse("us")?;
//! let custodian = Arc::new(FileCustodian::open(dir.path().join("keys"))?);
//! let store = SealedStore::open(dir.path().join("data"), us, Arc::new(UsSplitPolicy::new()), custodian)?;
//! let signing = SigningKey::generate("audit.example/us", KeyKind::Ed25519)?;
//! let log = AuditLog::open(dir.path().join("data/us/audit"), LogConfig::new(signing))?;
//! let gate = Gate::new(Arc::new(store), Arc::new(log), AuditKey::generate()?,
//!                      ApprovalBook::in_memory(), Arc::new(SystemClock))?;
//!
//! let app = Principal::parse("spiffe://example.com/us/usds/profile-service", PrincipalKind::Service,
//!                            ("usds", "US"), "US", "US", &["app-service"])?;
//! let alice = Principal::parse("spiffe://example.com/us/usds/alice", PrincipalKind::Person,
//!                              ("usds", "US"), "US", "US", &["engineer"])?;
//! // The operator's directory says who each SPIFFE id is; callers claiming otherwise are refused.
//! gate.enrol(app.clone())?;
//! gate.enrol(alice.clone())?;
//! let why = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1234");
//!
//! gate.register_subject(&app, &why, &Subject::parse("ana", Some("US"), None)?)?;
//! let record = RecordRef {
//!     subject: "ana".parse()?,
//!     class: DataClass::Protected,
//!     collection: Collection::parse("profile")?,
//!     key: RecordKey::parse("ana")?,
//! };
//! gate.write(&app, &why, &record, br#"{"name":"Ana"}"#, None)?;
//! let read = gate.read(&alice, &why, &record, None)?;   // logged, durably, before it returns
//! assert_eq!(read.value, br#"{"name":"Ana"}"#);
//! assert_eq!(gate.log().size(), 3);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod approval;
mod clock;
mod directory;
mod error;
mod gate;
mod principal;
mod rules;
mod warrant;

pub use approval::{
    ApprovalBook, ApprovalId, ApprovalRecord, ApprovalRequest, ApprovalScope, ApprovalState,
    ApproverKey, Grant, GrantFields, LoggedStep, DEFAULT_PENDING_TTL_SECS,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use directory::{PrincipalDirectory, Unverified};
pub use error::AccessError;
pub use gate::{
    gate_rules, AggregateCount, Gate, GateError, RecordRef, Released, ScanRequest, ScanResult,
    SubjectInventory, SubjectRef, Training, APPROVAL_FILED, APPROVAL_SCOPE, LICENCE_PREFIX,
    MAX_APPROVAL_SUBJECTS, MIGRATION_WARRANT, OBLIGATION_UNMET, REVOKE, SELF_APPROVAL,
    UNVERIFIED_PRINCIPAL,
};
pub use principal::{Organisation, Principal, PrincipalKind, Role, SpiffeId};
pub use rules::{
    is_ticket, AccessAction, AccessDecision, AccessRequest, AccessRules, ApprovalFacts, Resource,
    DEFAULT_DECISION_CACHE,
};
pub use warrant::{MigrationWarrant, WarrantError};
