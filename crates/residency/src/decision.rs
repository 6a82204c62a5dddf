//! Decisions, the rules that produce them, and the obligations they carry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Jurisdiction, ResidencyError};

/// The id of a written rule, `policy/rule-name` (`us-split/protected-rests-in-home-region`).
///
/// Lowercase letters, digits, `-` and `_`, in at least two segments separated by `/`. The first
/// segment is the policy's name. Cedar access rules carry ids of the same form in their `@id`
/// annotation, so a log line always leads back to a rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RuleId(String);

impl RuleId {
    /// Parses and validates a rule id.
    ///
    /// ```
    /// use domicile_residency::RuleId;
    /// let id = RuleId::parse("us-split/protected-rests-in-home-region")?;
    /// assert_eq!(id.policy(), "us-split");
    /// assert!(RuleId::parse("no-policy-prefix").is_err());
    /// # Ok::<(), domicile_residency::ResidencyError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, ResidencyError> {
        let refuse = |reason| {
            Err(ResidencyError::InvalidRuleId {
                value: value.to_owned(),
                reason,
            })
        };
        if value.len() > 128 {
            return refuse("it is longer than 128 characters");
        }
        let segments: Vec<&str> = value.split('/').collect();
        if segments.len() < 2 {
            return refuse("expected policy/rule-name");
        }
        if segments.iter().any(|s| s.is_empty()) {
            return refuse("a segment is empty");
        }
        let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_';
        if !segments.iter().all(|s| s.bytes().all(ok)) {
            return refuse("only lowercase letters, digits, '-', '_' and '/' are allowed");
        }
        Ok(RuleId(value.to_owned()))
    }

    /// The rule id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The policy the rule belongs to: the first segment.
    pub fn policy(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for RuleId {
    type Err = ResidencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuleId::parse(s)
    }
}

impl TryFrom<String> for RuleId {
    type Error = ResidencyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        RuleId::parse(&value)
    }
}

impl From<RuleId> for String {
    fn from(id: RuleId) -> String {
        id.0
    }
}

/// One entry of a policy's rule table: an id and what the rule says, in a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// The rule's id.
    pub id: RuleId,
    /// What it says.
    pub summary: String,
}

impl Rule {
    /// A rule from its id text and summary. Panics if the id is invalid: rule tables are written
    /// by policy authors as constants, and the conformance suite exercises every one.
    pub fn new(id: &str, summary: &str) -> Self {
        Rule {
            id: RuleId::parse(id).unwrap_or_else(|e| panic!("policy rule table: {e}")),
            summary: summary.to_owned(),
        }
    }
}

/// Something the caller must do to act on an allowing decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Obligation {
    /// Replace subject identifiers with keyed pseudonyms before the data leaves.
    Pseudonymize,
    /// Release only aggregates computed over at least `min_subjects` distinct subjects.
    Aggregate {
        /// The smallest group an aggregate may describe.
        min_subjects: u32,
    },
    /// Proceed only with an approval by someone under jurisdiction `by`, for at most
    /// `max_duration_secs` seconds.
    RequireApproval {
        /// The jurisdiction the approver's employing entity must fall under.
        by: Jurisdiction,
        /// The longest an approval may last.
        max_duration_secs: u64,
    },
    /// The transfer is export-controlled technology and needs a licence under `regime`.
    ExportLicence {
        /// The export-control regime (`CN-TECH-EXPORT-CATALOGUE-2020`).
        regime: String,
        /// The controlled item under that regime.
        item: String,
    },
    /// Satisfy any one of these obligations (for example: aggregate, or pseudonymise).
    AnyOf {
        /// The alternatives.
        options: Vec<Obligation>,
    },
}

impl fmt::Display for Obligation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Obligation::Pseudonymize => f.write_str("pseudonymize"),
            Obligation::Aggregate { min_subjects } => {
                write!(f, "aggregate over at least {min_subjects} subjects")
            }
            Obligation::RequireApproval {
                by,
                max_duration_secs,
            } => write!(
                f,
                "approval by a {by} approver for at most {max_duration_secs} s"
            ),
            Obligation::ExportLicence { regime, item } => {
                write!(f, "export licence under {regime}, item {item}")
            }
            Obligation::AnyOf { options } => {
                f.write_str("any of (")?;
                for (i, o) in options.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" | ")?;
                    }
                    write!(f, "{o}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// A policy's answer: allowed or not, the rule that decided, and what the caller must do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request may go ahead (once the obligations are met).
    pub allowed: bool,
    /// The rule that produced this answer.
    pub rule: RuleId,
    /// What the caller must honour. Empty for a denial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obligations: Vec<Obligation>,
}

impl Decision {
    /// An allowing decision by `rule`.
    pub fn allow(rule: &RuleId) -> Self {
        Decision {
            allowed: true,
            rule: rule.clone(),
            obligations: Vec::new(),
        }
    }

    /// A denying decision by `rule`.
    pub fn deny(rule: &RuleId) -> Self {
        Decision {
            allowed: false,
            rule: rule.clone(),
            obligations: Vec::new(),
        }
    }

    /// Adds an obligation.
    pub fn with(mut self, obligation: Obligation) -> Self {
        self.obligations.push(obligation);
        self
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "allow" } else { "deny" };
        write!(f, "{verdict} by {}", self.rule)?;
        for o in &self.obligations {
            write!(f, "; {o}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids() {
        let id = RuleId::parse("global/access/staff_read").unwrap();
        assert_eq!(id.policy(), "global");
        for bad in ["", "x", "/x", "x/", "a//b", "US/x", "a/b c"] {
            let err = RuleId::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn decision_json_is_stable() {
        let rule = RuleId::parse("us-split/excepted-crosses-deidentified").unwrap();
        let d = Decision::allow(&rule).with(Obligation::AnyOf {
            options: vec![
                Obligation::Aggregate { min_subjects: 50 },
                Obligation::Pseudonymize,
            ],
        });
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            json,
            r#"{"allowed":true,"rule":"us-split/excepted-crosses-deidentified","obligations":[{"type":"any_of","options":[{"type":"aggregate","min_subjects":50},{"type":"pseudonymize"}]}]}"#
        );
        assert_eq!(serde_json::from_str::<Decision>(&json).unwrap(), d);
        assert_eq!(
            d.to_string(),
            "allow by us-split/excepted-crosses-deidentified; any of (aggregate over at least 50 subjects | pseudonymize)"
        );
    }
}
