//! Why a Gate call did not go ahead.

use domicile_audit::AuditError;
use domicile_residency::{DataClass, Region, ResidencyError, RuleId, SubjectId};
use domicile_store::{Collection, RecordKey, StoreError};

use super::verdict::join;
use crate::AccessError;

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
    #[error("refused because the audit log is unavailable")]
    AuditUnavailable(#[source] AuditError),
    /// The record asked for does not exist, or is not the stated subject's or class. The message
    /// names the audit entry (which names the record by its key's pseudonym), not the subject
    /// or the record key (keys often embed a user id): neither may travel far from its region
    /// in a log line. The fields keep them for the caller, who asked.
    #[error(
        "no {class} record of the subject stated at that key of {collection} (audit entry {seq})"
    )]
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
    /// The subject is not registered in this region. The message does not name the subject.
    #[error("the subject stated is not registered in region {region}")]
    UnknownSubject {
        /// The subject.
        subject: SubjectId,
        /// The region.
        region: Region,
    },
    /// The SPIFFE id is not in the region's principal directory.
    #[error("the principal is not in the region's principal directory")]
    UnknownPrincipal,
    /// A model's training inputs hold a record this Gate did not release as given (its
    /// pseudonym is not one the Gate writes).
    #[error("a training input holds a record this Gate did not release: {reason}")]
    ForeignTrainingInput {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A check of the store is already running through this Gate (one runs at a time). The
    /// refused check is in the log as an error at its own entry.
    #[error(
        "a check of this store is already running (one at a time): try again when it has finished"
    )]
    CheckInProgress,
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

/// The variant name of `value` in snake case, from its `Debug` text: a code that names the
/// kind of failure and nothing it carries.
fn variant_code(value: &impl std::fmt::Debug) -> String {
    let debug = format!("{value:?}");
    let name: String = debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut code = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                code.push('_');
            }
            code.push(c.to_ascii_lowercase());
        } else {
            code.push(c);
        }
    }
    if code.is_empty() {
        "unknown".into()
    } else {
        code
    }
}

/// What a log entry may say about a failure.
impl GateError {
    /// A stable reason code for the audit log (`store/ownership_conflict`, `not_found`, …):
    /// the kind of failure, never its text. Lower layers' messages name record keys, subject
    /// ids and paths; none of that may reach the log (DESIGN.md invariants 6 and 9).
    pub fn reason_code(&self) -> String {
        match self {
            GateError::Denied { .. } => "denied".into(),
            GateError::AuditUnavailable(_) => "audit_unavailable".into(),
            GateError::NotFound { .. } => "not_found".into(),
            GateError::UnknownSubject { .. } => "unknown_subject".into(),
            GateError::UnknownPrincipal => "unknown_principal".into(),
            GateError::ForeignTrainingInput { .. } => "foreign_training_input".into(),
            GateError::CheckInProgress => "check_in_progress".into(),
            GateError::Store(e) => format!("store/{}", variant_code(e)),
            GateError::Access(e) => format!("access/{}", variant_code(e)),
            GateError::Residency(e) => format!("residency/{}", variant_code(e)),
        }
    }
}
