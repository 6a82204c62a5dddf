//! The principal directory: who each SPIFFE id is, as the region's operator says.
//!
//! A caller proves its SPIFFE id (mutual TLS); everything else about it — employer, kind, office,
//! location, roles — comes from this directory, never from the caller. The directory is a file the
//! operator signs with Ed25519; a Gate refuses any principal that is not in it, or whose claimed
//! attributes disagree with its entry (`gate/unverified-principal`).
//!
//! ```
//! use domicile_access::{ApproverKey, Principal, PrincipalDirectory, PrincipalKind};
//! let alice = Principal::parse("spiffe://example.com/us/usds/alice", PrincipalKind::Person,
//!                              ("usds", "US"), "US", "US", &["engineer"])?;
//! let operator = ApproverKey::generate()?;
//! let signed = PrincipalDirectory::from_entries([alice.clone()])?.sign(&operator);
//! let directory = PrincipalDirectory::open_signed(&signed, &operator.public_key_base64())?;
//! assert_eq!(directory.principal(&alice.id), Some(&alice));
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::{AccessError, ApproverKey, Principal, SpiffeId};

/// The domain separator of a signed directory.
const SIGNED_PREFIX: &[u8] = b"domicile principal directory v1\n";

/// Every principal a region knows, keyed by SPIFFE id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrincipalDirectory {
    entries: BTreeMap<SpiffeId, Principal>,
}

/// A directory as the operator signs it: its entries and an Ed25519 signature over them.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignedDirectory {
    entries: Vec<Principal>,
    signature: String,
}

/// Why a claimed principal was not verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unverified {
    /// The id is not in the directory.
    #[error("the principal is not in the region's principal directory")]
    Unknown,
    /// The id is known but a claimed attribute differs from the directory's entry.
    #[error("the principal's claimed {field} disagrees with the principal directory")]
    Disagrees {
        /// The attribute that differs.
        field: &'static str,
    },
}

fn message(entries: &[Principal]) -> Vec<u8> {
    let mut msg = SIGNED_PREFIX.to_vec();
    msg.extend(serde_json::to_vec(entries).expect("principals serialise to JSON"));
    msg
}

/// Building, signing and reading a directory.
impl PrincipalDirectory {
    /// A directory that trusts nobody.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A directory of these principals. Each id's organisation segment must be its
    /// organisation's name, and each id may appear once.
    pub fn from_entries(entries: impl IntoIterator<Item = Principal>) -> Result<Self, AccessError> {
        let mut directory = Self::empty();
        for p in entries {
            directory.insert(p)?;
        }
        Ok(directory)
    }

    /// Adds one principal (the operator's act, never a caller's).
    pub fn insert(&mut self, principal: Principal) -> Result<(), AccessError> {
        let invalid = |reason: &'static str| AccessError::InvalidDirectory {
            id: principal.id.to_string(),
            reason,
        };
        if principal.id.org() != principal.organisation.name {
            return Err(invalid(
                "the id's organisation segment is not the entry's organisation",
            ));
        }
        if self.entries.contains_key(&principal.id) {
            return Err(invalid("the id appears twice"));
        }
        self.entries.insert(principal.id.clone(), principal);
        Ok(())
    }

    /// The entry of `id`.
    pub fn principal(&self, id: &SpiffeId) -> Option<&Principal> {
        self.entries.get(id)
    }

    /// Every entry, in id order.
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.entries.values()
    }

    /// How many principals the directory names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the directory names nobody.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks a claimed principal against its entry: every attribute must be the directory's.
    pub fn verify(&self, claimed: &Principal) -> Result<&Principal, Unverified> {
        let entry = self.entries.get(&claimed.id).ok_or(Unverified::Unknown)?;
        let field = if claimed.kind != entry.kind {
            Some("kind")
        } else if claimed.organisation != entry.organisation {
            Some("organisation")
        } else if claimed.office_country != entry.office_country {
            Some("office")
        } else if claimed.location_country != entry.location_country {
            Some("location")
        } else if claimed.roles != entry.roles {
            Some("roles")
        } else if claimed.person != entry.person {
            Some("person")
        } else {
            None
        };
        match field {
            Some(field) => Err(Unverified::Disagrees { field }),
            None => Ok(entry),
        }
    }

    /// The signed file: JSON of the entries and the operator's Ed25519 signature over them.
    pub fn sign(&self, operator: &ApproverKey) -> String {
        let entries: Vec<Principal> = self.entries.values().cloned().collect();
        let signature = operator.sign(&message(&entries));
        serde_json::to_string_pretty(&SignedDirectory { entries, signature })
            .expect("a signed directory serialises to JSON")
    }

    /// Reads a signed directory, verifying its signature with the operator's pinned public key
    /// (base64 Ed25519) and every entry.
    pub fn open_signed(text: &str, operator_public_key: &str) -> Result<Self, AccessError> {
        let bad = |reason: &'static str| AccessError::InvalidDirectory {
            id: String::new(),
            reason,
        };
        let signed: SignedDirectory =
            serde_json::from_str(text).map_err(|_| bad("the file is not a signed directory"))?;
        let key = B64
            .decode(operator_public_key.trim())
            .map_err(|_| bad("the operator key is not base64"))?;
        let signature = B64
            .decode(signed.signature.trim())
            .map_err(|_| bad("the signature is not base64"))?;
        UnparsedPublicKey::new(&ED25519, key)
            .verify(&message(&signed.entries), &signature)
            .map_err(|_| bad("the signature does not verify under the operator's key"))?;
        Self::from_entries(signed.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrincipalKind;

    fn wu() -> Principal {
        Principal::parse(
            "spiffe://d/row/bytedance-cn/wu",
            PrincipalKind::Person,
            ("bytedance-cn", "CN"),
            "CN",
            "CN",
            &["engineer"],
        )
        .unwrap()
    }

    #[test]
    fn a_claim_that_differs_from_the_entry_is_refused() {
        let dir = PrincipalDirectory::from_entries([wu()]).unwrap();
        assert!(dir.verify(&wu()).is_ok());
        let mut claimed = wu();
        claimed.organisation.name = "usds".into();
        claimed.organisation.country = "US".parse().unwrap();
        assert_eq!(
            dir.verify(&claimed),
            Err(Unverified::Disagrees {
                field: "organisation"
            })
        );
        let mut claimed = wu();
        claimed.location_country = "US".parse().unwrap();
        assert_eq!(
            dir.verify(&claimed),
            Err(Unverified::Disagrees { field: "location" })
        );
        assert_eq!(
            PrincipalDirectory::empty().verify(&wu()),
            Err(Unverified::Unknown)
        );
    }

    #[test]
    fn an_entry_whose_id_names_another_organisation_is_refused() {
        let mut p = wu();
        p.organisation.name = "usds".into();
        assert!(PrincipalDirectory::from_entries([p]).is_err());
    }

    #[test]
    fn a_signed_directory_opens_only_under_its_operator_key() {
        let operator = ApproverKey::generate().unwrap();
        let other = ApproverKey::generate().unwrap();
        let signed = PrincipalDirectory::from_entries([wu()])
            .unwrap()
            .sign(&operator);
        let dir = PrincipalDirectory::open_signed(&signed, &operator.public_key_base64()).unwrap();
        assert_eq!(dir.len(), 1);
        assert!(PrincipalDirectory::open_signed(&signed, &other.public_key_base64()).is_err());
        let tampered = signed.replace("\"CN\"", "\"US\"");
        assert!(PrincipalDirectory::open_signed(&tampered, &operator.public_key_base64()).is_err());
    }
}
