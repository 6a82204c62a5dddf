//! The error type of domicile-access.

use std::path::PathBuf;

use domicile_durable::FileError;
use domicile_residency::ResidencyError;

/// What went wrong in access control. A refusal by the rules is not an error: it is a
/// [`GateError::Denied`](crate::GateError::Denied) only where an operation cannot go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// A principal id that is not `spiffe://<trust-domain>/<region>/<org>/<name>`.
    #[error("invalid principal id {value:?}: {reason}")]
    InvalidPrincipalId {
        /// The id as given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A role name that is not lowercase letters, digits and dashes.
    #[error("invalid role {value:?}: a role is 1-64 lowercase letters, digits and '-'")]
    InvalidRole {
        /// The role as given.
        value: String,
    },
    /// A value of the residency vocabulary was invalid.
    #[error(transparent)]
    Residency(#[from] ResidencyError),
    /// The policy crate's Cedar rules or schema are unusable.
    #[error("the access rules of policy {policy} are invalid: {detail}")]
    InvalidAccessRules {
        /// The policy.
        policy: String,
        /// What is wrong.
        detail: String,
    },
    /// The request could not be put to the rules.
    #[error("the access request could not be evaluated: {0}")]
    Evaluation(String),
    /// An approval failed verification.
    #[error("approval {id} is not valid: {reason}")]
    InvalidApproval {
        /// The approval's id.
        id: String,
        /// Why.
        reason: String,
    },
    /// No approval request with this id.
    #[error("no approval request {id}")]
    UnknownApproval {
        /// The id asked for.
        id: String,
    },
    /// A signing key file or key bytes were unusable.
    #[error("invalid signing key: {0}")]
    InvalidKey(String),
    /// The approval book's file could not be read or written.
    #[error("could not {op} the approval book {path}")]
    ApprovalBookIo {
        /// What was attempted (`read`, `write`).
        op: &'static str,
        /// The book's file.
        path: PathBuf,
        /// The file operation that failed.
        #[source]
        source: FileError,
    },
    /// The approval book's file was read but is not an approval book.
    #[error("the approval book {path} does not parse; it was left as it is")]
    ApprovalBookCorrupt {
        /// The book's file.
        path: PathBuf,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// A principal directory, or one of its entries, was refused.
    #[error("invalid principal directory{}: {reason}", if id.is_empty() { String::new() } else { format!(" entry {id}") })]
    InvalidDirectory {
        /// The entry's id, or empty for the whole directory.
        id: String,
        /// Why.
        reason: &'static str,
    },
    /// The system's random source failed, so a fresh id or key could not be made.
    #[error("the system random source failed while {making}")]
    Random {
        /// What was being made (`making an approval id`, …).
        making: &'static str,
    },
}
