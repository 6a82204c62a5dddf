//! The JSON bodies of a node's endpoints: one request type per Gate operation, each with the
//! purpose (justification code, ticket, free text) the Gate decides on. Unknown fields are
//! refused, so a misspelt `approval` is an error rather than an access without one.

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use domicile_access::{ApprovalId, ApprovalScope, RecordRef, Released, SubjectRef};
use domicile_residency::{DataClass, ExportLicence, Purpose, Region, Subject, SubjectId};
use domicile_store::{Collection, RecordDigest, RecordKey, StoreCheck};
use serde::{Deserialize, Serialize};

/// One record, named as the Gate names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    /// Whose record.
    pub subject: SubjectId,
    /// Its class.
    pub class: DataClass,
    /// Its collection.
    pub collection: Collection,
    /// Its key.
    pub key: RecordKey,
}

impl From<RecordBody> for RecordRef {
    fn from(r: RecordBody) -> Self {
        RecordRef {
            subject: r.subject,
            class: r.class,
            collection: r.collection,
            key: r.key,
        }
    }
}

/// `POST /v1/subjects/register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Why.
    pub purpose: Purpose,
    /// The subject and the attributes that decide their home region.
    pub subject: Subject,
}

/// `POST /v1/records/read`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// Why.
    pub purpose: Purpose,
    /// Which record.
    pub record: RecordBody,
    /// The approval relied on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalId>,
}

/// `POST /v1/records/write`: the value as UTF-8 text (`value`) or as bytes (`value_base64`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteRequest {
    /// Why.
    pub purpose: Purpose,
    /// Which record.
    pub record: RecordBody,
    /// The value, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value, as base64 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// The approval relied on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalId>,
}

/// `POST /v1/records/delete`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    /// Why.
    pub purpose: Purpose,
    /// Which record.
    pub record: RecordBody,
}

/// `POST /v1/scan` and `POST /v1/aggregate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanBody {
    /// Why.
    pub purpose: Purpose,
    /// Only records of this class.
    pub class: DataClass,
    /// The collection.
    pub collection: Collection,
    /// Where the records go, when they leave the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Region>,
    /// Aggregates only: the field of each record's JSON object value to group by (records
    /// without it fall in group `(none)`); without it, one group, `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
}

/// `POST /v1/export`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// Why.
    pub purpose: Purpose,
    /// Whose records.
    pub subject: SubjectId,
    /// Where they go.
    pub destination: Region,
    /// The export licence held, when the policy requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<ExportLicence>,
}

/// `POST /v1/shred`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShredRequest {
    /// Why.
    pub purpose: Purpose,
    /// Whom.
    pub subject: SubjectId,
}

/// `POST /v1/store/check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreCheckRequest {
    /// Why.
    pub purpose: Purpose,
    /// The most findings of each kind the answer lists (default
    /// [`DEFAULT_MAX_FINDINGS`], at most [`MAX_FINDINGS`]); the rest are counted in `omitted`.
    #[serde(default)]
    pub max_findings: Option<usize>,
}

/// How many findings of each kind a store check's answer lists unless asked otherwise.
pub const DEFAULT_MAX_FINDINGS: usize = 100;

/// The most findings of each kind a store check's answer lists.
pub const MAX_FINDINGS: usize = 10_000;

/// What `POST /v1/store/check` returns: the store's report, its findings cut to
/// `max_findings` of each kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreCheckResponse {
    /// The region checked.
    pub region: Region,
    /// Whether nothing is wrong ([`StoreCheck::is_sound`]), over all findings, listed or not.
    pub sound: bool,
    /// The report: counts, and the first findings of each kind.
    pub report: StoreCheck,
    /// How many findings of each kind were left out of `report` (kinds with none left out are
    /// absent).
    pub omitted: BTreeMap<String, usize>,
    /// The check's audit entry.
    pub audit_entry: u64,
    /// SHA-256 of the whole report as JSON ([`StoreCheck::digest`]), before any finding was
    /// left out: the result digest the audit entry records. When nothing is omitted it is the
    /// digest of `report` as answered.
    pub report_digest: RecordDigest,
}

impl StoreCheckResponse {
    /// The answer for `report`, listing at most `max` findings of each kind.
    pub fn new(region: Region, mut report: StoreCheck, max: usize, audit_entry: u64) -> Self {
        let sound = report.is_sound();
        let report_digest = report.digest();
        let omitted = report
            .truncate_findings(max)
            .into_iter()
            .map(|(kind, n)| (kind.to_owned(), n))
            .collect();
        StoreCheckResponse {
            region,
            sound,
            report,
            omitted,
            audit_entry,
            report_digest,
        }
    }
}

/// `POST /v1/approvals`: a request for time-boxed access.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequestBody {
    /// What it covers, with the purpose and ticket.
    pub scope: ApprovalScope,
    /// How long a grant lasts.
    pub duration_secs: u64,
    /// How long the request waits for an answer (default one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_ttl_secs: Option<u64>,
}

/// `POST /v1/models/deploy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Why.
    pub purpose: Purpose,
    /// The regions whose subjects the model learned from (its provenance).
    pub trained_on: BTreeSet<Region>,
    /// The artifact's bytes, base64: the decision's entry carries their digest.
    pub artifact_base64: String,
}

/// A released record on the wire: the value as text when it is UTF-8, else as base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordJson {
    /// Whose, possibly pseudonymised.
    pub subject: SubjectRef,
    /// Its class.
    pub class: DataClass,
    /// Its collection.
    pub collection: Collection,
    /// Its key.
    pub key: RecordKey,
    /// The value, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value, base64, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

impl From<Released> for RecordJson {
    fn from(r: Released) -> Self {
        let (value, value_base64) = match String::from_utf8(r.value) {
            Ok(text) => (Some(text), None),
            Err(e) => (None, Some(B64.encode(e.into_bytes()))),
        };
        RecordJson {
            subject: r.subject,
            class: r.class,
            collection: r.collection,
            key: r.key,
            value,
            value_base64,
        }
    }
}

/// What a scan returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanResponse {
    /// The records released.
    pub records: Vec<RecordJson>,
    /// Records skipped because their subject's home does not allow them here.
    pub skipped_misplaced: u64,
    /// Records withheld because they could not be de-identified.
    pub withheld_not_deidentifiable: u64,
    /// The obligations honoured, as text.
    pub obligations: Vec<String>,
    /// The audit entry of the scan.
    pub audit_entry: u64,
}

/// What a write, delete, registration, shred or deploy returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// The operation.
    pub done: String,
    /// The region.
    pub region: Region,
    /// For a delete: whether there was a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existed: Option<bool>,
    /// The audit entry, when the Gate returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_entry: Option<u64>,
}

/// What an export returns: the sealed bundle and, separately, its transfer key (base64).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportResponse {
    /// The sealed records.
    pub bundle: domicile_store::ExportBundle,
    /// The transfer key, base64 (send it apart from the bundle).
    pub transfer_key_base64: String,
}

/// Decodes a write's value: exactly one of text and base64.
pub fn write_value(body: &WriteRequest) -> Result<Vec<u8>, &'static str> {
    match (&body.value, &body.value_base64) {
        (Some(text), None) => Ok(text.as_bytes().to_vec()),
        (None, Some(b64)) => B64.decode(b64).map_err(|_| "value_base64 is not base64"),
        _ => Err("give exactly one of value and value_base64"),
    }
}

#[cfg(test)]
mod tests {
    use domicile_store::Finding;

    use super::*;

    fn findings(kind: &str, n: usize) -> Vec<Finding> {
        (0..n)
            .map(|i| Finding {
                entry: format!("profile #{kind}{i:04}"),
                reason: "test".into(),
            })
            .collect()
    }

    #[test]
    fn a_check_s_answer_lists_at_most_max_findings_of_each_kind_and_counts_the_rest() {
        let mut report = StoreCheck::default();
        report.records = 7;
        report.misplaced = findings("m", 5);
        report.unindexed = findings("u", 2);
        let region = Region::parse("us").unwrap();
        let answer = StoreCheckResponse::new(region.clone(), report.clone(), 2, 9);
        assert!(!answer.sound);
        assert_eq!(answer.report.records, 7);
        assert_eq!(answer.report.misplaced, report.misplaced[..2]);
        assert_eq!(answer.report.unindexed, report.unindexed);
        assert_eq!(
            answer.omitted,
            BTreeMap::from([("misplaced".to_owned(), 3)])
        );
        assert_eq!(answer.audit_entry, 9);
        // The digest is the whole report's, as logged, not the shortened one's.
        assert_eq!(answer.report_digest, report.digest());
        assert_ne!(answer.report_digest, answer.report.digest());

        // Cut to nothing, the answer still says the store is not sound.
        let answer = StoreCheckResponse::new(region, report, 0, 9);
        assert!(!answer.sound);
        assert!(answer.report.is_sound(), "every finding was cut");
        assert_eq!(
            answer.omitted,
            BTreeMap::from([("misplaced".to_owned(), 5), ("unindexed".to_owned(), 2)])
        );
    }
}
