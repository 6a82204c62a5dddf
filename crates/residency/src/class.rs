//! Data classes, after the tiers the real splits used.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ResidencyError;

/// How sensitive a piece of data is, which decides where it may rest and travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    /// Personal data and behaviour: profile, contacts, device ids, IP, precise location, watch
    /// history, likes, searches, private messages. Rests only in the subject's home region.
    Protected,
    /// Data needed for business metrics and global interoperability; crosses a border only with
    /// obligations (aggregation over at least k subjects, or pseudonymisation).
    Excepted,
    /// Public videos and public profile fields.
    Public,
    /// Trained recommendation models and the algorithm's parameters: export-controlled technology.
    ModelArtifact,
    /// Audit log entries. Stay in their region; signed checkpoints are public.
    AuditRecord,
    /// Keys of every kind. Stay in their region.
    KeyMaterial,
}

impl DataClass {
    /// All six classes, in a fixed order.
    pub const ALL: [DataClass; 6] = [
        DataClass::Protected,
        DataClass::Excepted,
        DataClass::Public,
        DataClass::ModelArtifact,
        DataClass::AuditRecord,
        DataClass::KeyMaterial,
    ];

    /// The wire name (`protected`, `model_artifact`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            DataClass::Protected => "protected",
            DataClass::Excepted => "excepted",
            DataClass::Public => "public",
            DataClass::ModelArtifact => "model_artifact",
            DataClass::AuditRecord => "audit_record",
            DataClass::KeyMaterial => "key_material",
        }
    }
}

impl fmt::Display for DataClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for DataClass {
    type Err = ResidencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DataClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ResidencyError::UnknownDataClass {
                value: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_agree_with_serde() {
        for class in DataClass::ALL {
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
            assert_eq!(class.as_str().parse::<DataClass>().unwrap(), class);
        }
        let err = "secret".parse::<DataClass>().unwrap_err();
        assert!(err.to_string().contains("\"secret\""));
    }
}
