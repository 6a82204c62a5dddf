//! The error type of domicile-access.

use domicile_residency::ResidencyError;

/// What went wrong in access control. A refusal by the rules is not an error: it is a
/// [`Denied`](AccessError::Denied) only where an operation cannot go on.
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
}
