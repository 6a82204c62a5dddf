//! Audited access control for domicile.
//!
//! Work in progress; see the crate README.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod approval;
mod clock;
mod error;
mod gate;
mod principal;
mod rules;

pub use approval::{
    ApprovalBook, ApprovalId, ApprovalRecord, ApprovalRequest, ApprovalScope, ApprovalState,
    ApproverKey, Grant, GrantFields, DEFAULT_PENDING_TTL_SECS,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::AccessError;
pub use gate::{
    AggregateCount, Gate, GateError, RecordRef, Released, ScanRequest, ScanResult, SubjectRef,
};
pub use principal::{Organisation, Principal, PrincipalKind, Role, SpiffeId};
pub use rules::{
    AccessDecision, AccessRequest, AccessRules, Action, ApprovalFacts, Resource,
    DEFAULT_DECISION_CACHE,
};
