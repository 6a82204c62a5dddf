//! The one error type of the vocabulary.

use crate::{Region, SubjectId};

/// What went wrong when parsing a value of the vocabulary or asking a policy a question.
///
/// Every variant quotes the offending value, so the message is one a user can act on, except
/// where the value may identify a person (a subject id, a residence): those messages give what
/// was wrong and the field keeps the value (DESIGN.md: errors and logs carry codes and pseudonyms).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResidencyError {
    /// A region name that is not lowercase letters, digits and dashes.
    #[error("invalid region {value:?}: {reason}")]
    InvalidRegion {
        /// The text that was given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Not an assigned ISO 3166-1 alpha-2 country code.
    #[error("invalid country code {value:?}: not an assigned ISO 3166-1 alpha-2 code")]
    InvalidCountryCode {
        /// The text that was given.
        value: String,
    },
    /// Neither a country code nor a known group of countries.
    #[error(
        "invalid jurisdiction {value:?}: expected an ISO 3166-1 alpha-2 code or one of EU, EEA"
    )]
    InvalidJurisdiction {
        /// The text that was given.
        value: String,
    },
    /// A subject identifier that is empty, too long or holds control characters. Its message
    /// gives the length and the reason, not the text: a mistyped id is often a real one, and
    /// messages reach logs (the field keeps the text for the caller).
    #[error("invalid subject id ({} bytes): {reason}", value.len())]
    InvalidSubjectId {
        /// The text that was given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A rule identifier that does not follow `policy/rule-name`.
    #[error("invalid rule id {value:?}: {reason}")]
    InvalidRuleId {
        /// The text that was given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A policy name or version that cannot be used in a policy id.
    #[error("invalid policy id {value:?}: {reason}")]
    InvalidPolicyId {
        /// The text that was given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A data class name that is not one of the six classes.
    #[error("unknown data class {value:?}: expected one of protected, excepted, public, model_artifact, audit_record, key_material")]
    UnknownDataClass {
        /// The text that was given.
        value: String,
    },
    /// A justification code that is not in the list.
    #[error("unknown justification code {value:?}: expected one of user_requested_support, trust_and_safety, legal_request, production_incident, recommendation_training, migration, audit, interoperability, business_metrics")]
    UnknownJustificationCode {
        /// The text that was given.
        value: String,
    },
    /// The subject's residence is not known, so no home region can be given. The residence
    /// errors' messages do not name the subject (messages reach logs; the field keeps the id).
    #[error("the subject has no country of residence: its home region cannot be decided")]
    MissingResidence {
        /// The subject in question.
        subject: SubjectId,
    },
    /// The subject's residence is not a valid country code.
    #[error("the subject's country of residence {value:?} is not an ISO 3166-1 alpha-2 code")]
    InvalidResidence {
        /// The subject in question, as given.
        subject: String,
        /// The residence that was given.
        value: String,
    },
    /// The subject's attributes contradict each other.
    #[error("the subject's residence attributes contradict each other: {detail}")]
    ContradictoryResidence {
        /// The subject in question.
        subject: SubjectId,
        /// Which attributes disagree.
        detail: String,
    },
    /// A region that the policy's deployment does not have.
    #[error("region {region} is not a region of policy {policy} (its regions: {known})")]
    UnknownRegion {
        /// The region that was named.
        region: Region,
        /// The policy asked.
        policy: String,
        /// The policy's regions, comma separated.
        known: String,
    },
    /// An export licence reference that is not `REGIME/ITEM/LICENCE-ID` of the checked shape.
    #[error("invalid export licence {value:?}: {reason}")]
    InvalidLicence {
        /// The text that was given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An export licence that does not meet the obligation it was presented for.
    #[error("export licence {licence} does not cover this transfer: {reason}")]
    LicenceDoesNotCover {
        /// The licence, as `REGIME/ITEM/LICENCE-ID`.
        licence: String,
        /// What the policy requires instead.
        reason: String,
    },
    /// A policy digest that is not `sha256:` and 64 hex digits.
    #[error(
        "invalid policy digest {value:?}: expected sha256: followed by 64 lowercase hex digits"
    )]
    InvalidDigest {
        /// The text that was given.
        value: String,
    },
}
