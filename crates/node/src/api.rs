//! The JSON bodies of a node's endpoints: one request type per Gate operation, each with the
//! purpose (justification code, ticket, free text) the Gate decides on. Unknown fields are
//! refused, so a misspelt `approval` is an error rather than an access without one.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use domicile_access::{ApprovalId, ApprovalScope, RecordRef, Released, SubjectRef};
use domicile_residency::{DataClass, ExportLicence, Purpose, Region, Subject, SubjectId};
use domicile_store::{Collection, RecordKey};
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
