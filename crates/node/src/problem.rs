//! Errors on the wire: RFC 9457 problem details (`application/problem+json`).
//!
//! Every refusal has a stable `code` (and a `type` URI built from it) that clients can match on:
//! the Gate's reason codes (`denied`, `not_found`, `access/invalid_approval`, …) and the node's
//! own (`malformed_json`, `body_too_large`, `client_certificate_required`, …). The `detail`
//! is a sentence for a person; like every error of domicile it names no subject and no record
//! key (the Gate's own messages name audit entries and rules, never people), and for failures
//! below the Gate, whose messages could, it says only the code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domicile_access::GateError;
use serde::{Deserialize, Serialize};

/// The media type of a problem.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The prefix of every problem `type`: the code follows it.
pub const TYPE_PREFIX: &str = "urn:domicile:problem:";

/// An RFC 9457 problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:domicile:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened, for a person: no personal data.
    pub detail: String,
    /// The stable code (an extension member).
    pub code: String,
    /// The audit entry that records the refusal, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_entry: Option<u64>,
}

/// Building problems.
impl Problem {
    /// A problem of `status` with stable `code`.
    pub fn new(status: StatusCode, code: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("{TYPE_PREFIX}{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            audit_entry: None,
        }
    }

    /// The request's body is not the JSON this endpoint takes.
    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "Malformed JSON body",
            detail,
        )
    }

    /// A field is well-formed JSON but not a valid value.
    pub fn invalid_field(field: &str, why: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "Invalid field",
            format!("the field `{field}` is invalid: {why}"),
        )
    }

    /// The body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "Request body too large",
            format!("the request body is over the limit of {limit} bytes"),
        )
    }

    /// The request took longer than the node allows.
    pub fn timeout(secs: u64) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "Request timeout",
            format!("the request was not read and answered within {secs} seconds"),
        )
    }

    /// A data endpoint was called without a client certificate.
    pub fn certificate_required() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "client_certificate_required",
            "Client certificate required",
            "data endpoints need mutual TLS: present an X.509-SVID of this trust domain",
        )
    }

    /// The node is shutting down.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "Shutting down",
            "the node is shutting down and takes no new requests",
        )
    }

    /// Something failed inside the node that is not the caller's doing.
    pub fn internal(code: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code,
            "Internal error",
            format!("the node failed ({code}); nothing was returned"),
        )
    }

    /// The problem for a Gate refusal or failure.
    pub fn from_gate(e: &GateError) -> Self {
        let code = e.reason_code();
        let (status, title, detail, seq) = match e {
            GateError::Denied { seq, .. } => (
                StatusCode::FORBIDDEN,
                "Denied by the access rules",
                e.to_string(),
                Some(*seq),
            ),
            GateError::NotFound { seq, .. } => (
                StatusCode::NOT_FOUND,
                "No such record",
                e.to_string(),
                Some(*seq),
            ),
            GateError::UnknownSubject { .. } => (
                StatusCode::NOT_FOUND,
                "Unknown subject",
                e.to_string(),
                None,
            ),
            GateError::UnknownPrincipal => (
                StatusCode::FORBIDDEN,
                "Unknown principal",
                e.to_string(),
                None,
            ),
            GateError::AuditUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Audit log unavailable",
                e.to_string(),
                None,
            ),
            GateError::ForeignTrainingInput { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Foreign training input",
                e.to_string(),
                None,
            ),
            GateError::CheckInProgress => (
                StatusCode::CONFLICT,
                "A store check is running",
                e.to_string(),
                None,
            ),
            // Approval errors name approval ids and states, never people.
            GateError::Access(a) if code.contains("approval") => (
                if code.contains("unknown") {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::FORBIDDEN
                },
                "Approval refused",
                a.to_string(),
                None,
            ),
            // Lower layers' messages may name record keys or paths: the code only.
            GateError::Residency(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Refused by the residency policy",
                format!("the residency policy refused the request ({code})"),
                None,
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                format!("the region's Gate failed ({code}); nothing was returned"),
                None,
            ),
        };
        let mut problem = Self::new(status, &code, title, detail);
        problem.audit_entry = seq;
        problem
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("a problem serialises to JSON");
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl From<GateError> for Problem {
    fn from(e: GateError) -> Self {
        Problem::from_gate(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domicile_residency::RuleId;

    #[test]
    fn a_denial_is_a_403_naming_its_rules_and_entry() {
        let denied = GateError::Denied {
            action: "read",
            rules: vec![RuleId::parse("us-split/access/deny-by-default").unwrap()],
            reason: "the access rules do not permit it".into(),
            seq: 41,
        };
        let p = Problem::from_gate(&denied);
        assert_eq!(p.status, 403);
        assert_eq!(p.code, "denied");
        assert_eq!(p.kind, "urn:domicile:problem:denied");
        assert_eq!(p.audit_entry, Some(41));
        assert!(p.detail.contains("us-split/access/deny-by-default"));
    }

    #[test]
    fn a_missing_record_names_the_entry_not_the_subject() {
        let missing = GateError::NotFound {
            collection: domicile_store::Collection::parse("profile").unwrap(),
            key: domicile_store::RecordKey::parse("k").unwrap(),
            subject: "subject-zelda".parse().unwrap(),
            class: domicile_residency::DataClass::Protected,
            seq: 7,
        };
        let p = Problem::from_gate(&missing);
        assert_eq!((p.status, p.code.as_str()), (404, "not_found"));
        assert!(!serde_json::to_string(&p).unwrap().contains("zelda"));
    }

    #[test]
    fn a_problem_is_served_as_problem_json() {
        let response = Problem::too_large(10).into_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
