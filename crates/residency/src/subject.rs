//! Subjects: the people whose data is held.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{CountryCode, ResidencyError};

/// The identifier of a person whose data is held: 1 to 256 bytes of UTF-8 with no control
/// characters.
///
/// A subject id never appears in an audit log in plain text; the log holds a keyed pseudonym of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectId(String);

impl SubjectId {
    /// The longest subject id accepted, in bytes.
    pub const MAX_LEN: usize = 256;

    /// Parses and validates a subject id.
    pub fn parse(value: &str) -> Result<Self, ResidencyError> {
        let refuse = |reason| {
            Err(ResidencyError::InvalidSubjectId {
                value: value.to_owned(),
                reason,
            })
        };
        if value.is_empty() {
            return refuse("it is empty");
        }
        if value.len() > Self::MAX_LEN {
            return refuse("it is longer than 256 bytes");
        }
        if value.chars().any(char::is_control) {
            return refuse("it contains control characters");
        }
        Ok(SubjectId(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for SubjectId {
    type Err = ResidencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SubjectId::parse(s)
    }
}

impl TryFrom<String> for SubjectId {
    type Error = ResidencyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        SubjectId::parse(&value)
    }
}

impl From<SubjectId> for String {
    fn from(id: SubjectId) -> String {
        id.0
    }
}

/// What a policy may use to find a subject's home region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubjectAttributes {
    /// The country the person lives in, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residence: Option<CountryCode>,
    /// The country the account was registered in, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_country: Option<CountryCode>,
}

/// A subject and its attributes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subject {
    /// Who.
    pub id: SubjectId,
    /// What the policy looks at.
    #[serde(flatten)]
    pub attributes: SubjectAttributes,
}

impl Subject {
    /// A subject with a known country of residence.
    pub fn new(id: SubjectId, residence: CountryCode) -> Self {
        Subject {
            id,
            attributes: SubjectAttributes {
                residence: Some(residence),
                account_country: None,
            },
        }
    }

    /// Parses a subject from untrusted text. An invalid residence or account country is an error
    /// that carries the subject and quotes the value (its message quotes the value only: messages
    /// reach logs); an absent one is left for the policy to judge.
    ///
    /// ```
    /// use domicile_residency::{ResidencyError, Subject};
    /// let alice = Subject::parse("alice", Some("US"), None)?;
    /// assert_eq!(alice.attributes.residence.unwrap().as_str(), "US");
    /// let err = Subject::parse("bob", Some("Atlantis"), None).unwrap_err();
    /// assert!(err.to_string().contains("Atlantis") && !err.to_string().contains("bob"));
    /// assert!(matches!(err, ResidencyError::InvalidResidence { subject, .. } if subject == "bob"));
    /// # Ok::<(), domicile_residency::ResidencyError>(())
    /// ```
    pub fn parse(
        id: &str,
        residence: Option<&str>,
        account_country: Option<&str>,
    ) -> Result<Self, ResidencyError> {
        let id = SubjectId::parse(id)?;
        let country = |value: Option<&str>| {
            value
                .map(|v| {
                    CountryCode::parse(v).map_err(|_| ResidencyError::InvalidResidence {
                        subject: id.as_str().to_owned(),
                        value: v.to_owned(),
                    })
                })
                .transpose()
        };
        let attributes = SubjectAttributes {
            residence: country(residence)?,
            account_country: country(account_country)?,
        };
        Ok(Subject { id, attributes })
    }

    /// The residence, or the error a policy returns when it is missing.
    pub fn require_residence(&self) -> Result<CountryCode, ResidencyError> {
        self.attributes
            .residence
            .ok_or_else(|| ResidencyError::MissingResidence {
                subject: self.id.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_ids() {
        assert!(SubjectId::parse("user-42").is_ok());
        assert!(SubjectId::parse("ünïcode ok").is_ok());
        for bad in ["", "ana\nsecret", "tab\there-secret"] {
            let err = SubjectId::parse(bad).unwrap_err();
            // A mistyped id is often a real one: the message gives its length, not its text;
            // the field keeps it for the caller.
            assert!(
                err.to_string().contains(&format!("({} bytes)", bad.len())),
                "{err}"
            );
            assert!(
                bad.is_empty() || !err.to_string().contains("secret"),
                "{err}"
            );
            assert!(matches!(&err, ResidencyError::InvalidSubjectId { value, .. } if value == bad));
        }
        assert!(SubjectId::parse(&"x".repeat(257)).is_err());
    }

    #[test]
    fn missing_residence_carries_the_subject_but_its_message_does_not() {
        let s = Subject::parse("carol", None, Some("US")).unwrap();
        let err = s.require_residence().unwrap_err();
        // Messages reach logs; the caller has the id in the field.
        assert!(!err.to_string().contains("carol"), "{err}");
        assert!(
            matches!(&err, ResidencyError::MissingResidence { subject } if subject.as_str() == "carol")
        );
    }

    #[test]
    fn invalid_account_country_names_subject() {
        let err = Subject::parse("dave", Some("US"), Some("XX")).unwrap_err();
        assert_eq!(
            err,
            ResidencyError::InvalidResidence {
                subject: "dave".into(),
                value: "XX".into()
            }
        );
    }

    #[test]
    fn serde_shape() {
        let s = Subject::parse("erin", Some("de"), None).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"id":"erin","residence":"DE"}"#);
        let back: Subject = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
