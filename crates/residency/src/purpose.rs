//! Purposes: why data is being touched.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ResidencyError;

/// The reason code of an access, after Google Access Transparency's justification codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JustificationCode {
    /// The user asked for help and the access serves that request.
    UserRequestedSupport,
    /// A trust and safety review (abuse, fraud, content moderation).
    TrustAndSafety,
    /// A legal request (court order, regulator).
    LegalRequest,
    /// A production incident that needs the data to resolve.
    ProductionIncident,
    /// Training a recommendation model.
    RecommendationTraining,
    /// Moving data between regions during a split.
    Migration,
    /// An auditor's review.
    Audit,
    /// Global interoperability of the product: Excepted data a region needs from another to
    /// work with it (cross-region messaging, content delivery), de-identified.
    Interoperability,
    /// Business metrics: Excepted data counted or reported across regions, de-identified.
    BusinessMetrics,
}

impl JustificationCode {
    /// All codes, in a fixed order.
    ///
    /// New codes are appended: the audit log's canonical encoding names a code by its position.
    pub const ALL: [JustificationCode; 9] = [
        JustificationCode::UserRequestedSupport,
        JustificationCode::TrustAndSafety,
        JustificationCode::LegalRequest,
        JustificationCode::ProductionIncident,
        JustificationCode::RecommendationTraining,
        JustificationCode::Migration,
        JustificationCode::Audit,
        JustificationCode::Interoperability,
        JustificationCode::BusinessMetrics,
    ];

    /// The purposes for which Excepted data may cross a border (de-identified): interoperability
    /// and business metrics. Every other purpose keeps it at home.
    pub fn lets_excepted_cross(&self) -> bool {
        matches!(
            self,
            JustificationCode::Interoperability | JustificationCode::BusinessMetrics
        )
    }

    /// The wire name (`user_requested_support`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            JustificationCode::UserRequestedSupport => "user_requested_support",
            JustificationCode::TrustAndSafety => "trust_and_safety",
            JustificationCode::LegalRequest => "legal_request",
            JustificationCode::ProductionIncident => "production_incident",
            JustificationCode::RecommendationTraining => "recommendation_training",
            JustificationCode::Migration => "migration",
            JustificationCode::Audit => "audit",
            JustificationCode::Interoperability => "interoperability",
            JustificationCode::BusinessMetrics => "business_metrics",
        }
    }
}

impl fmt::Display for JustificationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for JustificationCode {
    type Err = ResidencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JustificationCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ResidencyError::UnknownJustificationCode {
                value: s.to_owned(),
            })
    }
}

/// Why an access happens: a justification code and a ticket reference or free text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Purpose {
    /// The reason code.
    pub code: JustificationCode,
    /// A ticket reference (`SUP-1234`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// Free text, when there is any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Purpose {
    /// A purpose with only a code.
    pub fn new(code: JustificationCode) -> Self {
        Purpose {
            code,
            ticket: None,
            detail: None,
        }
    }

    /// Adds a ticket reference.
    pub fn with_ticket(mut self, ticket: impl Into<String>) -> Self {
        self.ticket = Some(ticket.into());
        self
    }

    /// Adds free text.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(t) = &self.ticket {
            write!(f, " ({t})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_agree_with_serde() {
        for code in JustificationCode::ALL {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
            assert_eq!(code.as_str().parse::<JustificationCode>().unwrap(), code);
        }
        assert!("because".parse::<JustificationCode>().is_err());
    }

    #[test]
    fn purpose_json() {
        let p = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"code":"user_requested_support","ticket":"SUP-1"}"#
        );
        assert_eq!(serde_json::from_str::<Purpose>(&json).unwrap(), p);
        assert_eq!(p.to_string(), "user_requested_support (SUP-1)");
    }
}
