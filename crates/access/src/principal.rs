//! Principals: who is asking, where they are, and who employs them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use domicile_residency::{CountryCode, Region};
use serde::{Deserialize, Serialize};

use crate::AccessError;

/// A SPIFFE-style principal id: `spiffe://<trust-domain>/<region>/<org>/<name>`.
///
/// The trust domain is a DNS-like name; region, organisation and name are lowercase letters,
/// digits, `-`, `_` and `.`. On the wire it travels as a URI SAN in the client certificate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeId {
    trust_domain: String,
    region: Region,
    org: String,
    name: String,
}

impl SpiffeId {
    /// Parses and validates a principal id. The error quotes it.
    ///
    /// ```
    /// use domicile_access::SpiffeId;
    /// let id = SpiffeId::parse("spiffe://example.com/us/usds/alice")?;
    /// assert_eq!(id.region().as_str(), "us");
    /// assert_eq!(id.org(), "usds");
    /// assert!(SpiffeId::parse("https://example.com/us/usds/alice").is_err());
    /// # Ok::<(), domicile_access::AccessError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, AccessError> {
        let bad = |reason: &'static str| AccessError::InvalidPrincipalId {
            value: value.to_owned(),
            reason,
        };
        let rest = value
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad("it must start with spiffe://"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [trust_domain, region, org, name] = parts[..] else {
            return Err(bad(
                "expected spiffe://<trust-domain>/<region>/<org>/<name>",
            ));
        };
        let domain_ok = !trust_domain.is_empty()
            && trust_domain.len() <= 255
            && trust_domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !domain_ok {
            return Err(bad(
                "the trust domain is lowercase letters, digits, '-' and '.'",
            ));
        }
        let region =
            Region::parse(region).map_err(|_| bad("the region segment is not a valid region"))?;
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'_'
                        || b == b'.'
                })
        };
        if !segment_ok(org) || !segment_ok(name) {
            return Err(bad(
                "organisation and name are 1-64 lowercase letters, digits, '-', '_' or '.'",
            ));
        }
        Ok(SpiffeId {
            trust_domain: trust_domain.to_owned(),
            region,
            org: org.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The region the principal belongs to.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The organisation segment.
    pub fn org(&self) -> &str {
        &self.org
    }

    /// The name segment.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/{}/{}/{}",
            self.trust_domain, self.region, self.org, self.name
        )
    }
}

impl FromStr for SpiffeId {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = AccessError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        SpiffeId::parse(&value)
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> String {
        id.to_string()
    }
}

/// A role a principal holds (`engineer`, `approver`, `auditor`, `app-service`,
/// `training-service`, `migration-service`). Access rules grant to roles.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Role(String);

impl Role {
    /// Parses a role name: 1-64 lowercase letters, digits and `-`.
    pub fn parse(value: &str) -> Result<Self, AccessError> {
        if !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            Ok(Role(value.to_owned()))
        } else {
            Err(AccessError::InvalidRole {
                value: value.to_owned(),
            })
        }
    }

    /// The role's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Role {
    type Error = AccessError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Role::parse(&value)
    }
}

impl From<Role> for String {
    fn from(role: Role) -> String {
        role.0
    }
}

/// What kind of principal this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person: an engineer, an approver.
    Person,
    /// A service: the app, the training service, the migration service.
    Service,
    /// An outside auditor.
    Auditor,
}

impl PrincipalKind {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            PrincipalKind::Person => "person",
            PrincipalKind::Service => "service",
            PrincipalKind::Auditor => "auditor",
        }
    }
}

/// The legal entity that employs a principal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Organisation {
    /// The entity's name (`usds`, `bytedance-sg`).
    pub name: String,
    /// Where the entity is incorporated.
    pub country: CountryCode,
}

/// Who is asking: identity, employer, where they work and are, and their roles.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// The SPIFFE id from the client certificate.
    pub id: SpiffeId,
    /// Person, service or auditor.
    pub kind: PrincipalKind,
    /// The employing organisation.
    pub organisation: Organisation,
    /// The country of the office the principal works from.
    pub office_country: CountryCode,
    /// The country the principal is physically in for this session.
    pub location_country: CountryCode,
    /// The roles the principal holds.
    pub roles: BTreeSet<Role>,
    /// The person behind the id, when one person holds several ids (an engineer and the same
    /// engineer as an approver): self-approval is refused by person, not by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
}

impl Principal {
    /// A principal from text, validating every field; errors quote the offending value.
    ///
    /// ```
    /// use domicile_access::{Principal, PrincipalKind};
    /// let alice = Principal::parse(
    ///     "spiffe://example.com/us/usds/alice", PrincipalKind::Person,
    ///     ("usds", "US"), "US", "US", &["engineer"],
    /// )?;
    /// assert!(alice.has_role("engineer"));
    /// # Ok::<(), domicile_access::AccessError>(())
    /// ```
    pub fn parse(
        id: &str,
        kind: PrincipalKind,
        (org_name, org_country): (&str, &str),
        office_country: &str,
        location_country: &str,
        roles: &[&str],
    ) -> Result<Self, AccessError> {
        let country = |v: &str| CountryCode::parse(v).map_err(AccessError::Residency);
        Ok(Principal {
            id: SpiffeId::parse(id)?,
            kind,
            organisation: Organisation {
                name: org_name.to_owned(),
                country: country(org_country)?,
            },
            office_country: country(office_country)?,
            location_country: country(location_country)?,
            roles: roles
                .iter()
                .map(|r| Role::parse(r))
                .collect::<Result<_, _>>()?,
            person: None,
        })
    }

    /// The same principal, naming the person behind it.
    pub fn with_person(mut self, person: &str) -> Self {
        self.person = Some(person.to_owned());
        self
    }

    /// Who the principal is as a person: the person named, or else the id itself.
    pub fn person_key(&self) -> String {
        self.person.clone().unwrap_or_else(|| self.id.to_string())
    }

    /// Whether the principal holds the role.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.as_str() == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_round_trip() {
        let text = "spiffe://domicile.example/us/usds/alice";
        let id = SpiffeId::parse(text).unwrap();
        assert_eq!(id.to_string(), text);
        assert_eq!(id.trust_domain(), "domicile.example");
        assert_eq!(id.name(), "alice");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
    }

    #[test]
    fn bad_ids_are_quoted() {
        for bad in [
            "",
            "spiffe://",
            "spiffe://d/us/org",
            "spiffe://d/us/org/name/extra",
            "spiffe://D/us/org/name",
            "spiffe://d/US/org/name",
            "spiffe://d/us/Org/name",
            "spiffe://d/us/org/",
            "http://d/us/org/name",
        ] {
            let err = SpiffeId::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn principals_validate_every_field() {
        let ok = Principal::parse(
            "spiffe://d/row/acme/bo",
            PrincipalKind::Person,
            ("acme", "SG"),
            "SG",
            "MY",
            &["engineer"],
        )
        .unwrap();
        assert_eq!(ok.location_country.as_str(), "MY");
        let err = Principal::parse(
            "spiffe://d/row/acme/bo",
            PrincipalKind::Person,
            ("acme", "XX"),
            "SG",
            "SG",
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"XX\""), "{err}");
        let err = Principal::parse(
            "spiffe://d/row/acme/bo",
            PrincipalKind::Person,
            ("acme", "SG"),
            "SG",
            "SG",
            &["Root User"],
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"Root User\""), "{err}");
    }
}
