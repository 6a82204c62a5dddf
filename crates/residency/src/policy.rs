//! The `ResidencyPolicy` trait and the id that says which rules were in force.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    CountryCode, DataClass, Decision, PolicyTable, Purpose, Region, ResidencyError, Rule, RuleId,
    Subject,
};

/// A SHA-256 digest of a policy's rule table and access-rule text: the workspace's one digest
/// type, under the name a policy id gives it.
pub type PolicyDigest = crate::Sha256Digest;

/// Which rules were in force: the policy's name, its version, and a digest of its rule table and
/// access-rule text. Written into every audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyId {
    /// The policy's name, also the first segment of its rule ids (`us-split`).
    pub name: String,
    /// The policy's version (`1.0.0`).
    pub version: String,
    /// SHA-256 over the rule table and the access-rule text.
    pub digest: PolicyDigest,
}

impl PolicyId {
    /// Derives a policy id. The digest covers, in order and each length-prefixed: a domain
    /// separator, the name, the version, every rule's id and summary, the Cedar access rules and
    /// the Cedar schema. It depends on nothing else, so it is the same on every run and machine.
    ///
    /// ```
    /// use domicile_residency::{PolicyId, Rule};
    /// let rules = [Rule::new("demo/everything-allowed", "Everything is allowed.")];
    /// let a = PolicyId::derive("demo", "1.0.0", &rules, "permit(principal, action, resource);", "")?;
    /// let b = PolicyId::derive("demo", "1.0.0", &rules, "permit(principal, action, resource);", "")?;
    /// assert_eq!(a, b);
    /// assert!(a.to_string().starts_with("demo@1.0.0+sha256:"));
    /// # Ok::<(), domicile_residency::ResidencyError>(())
    /// ```
    pub fn derive(
        name: &str,
        version: &str,
        rules: &[Rule],
        access_rules: &str,
        access_schema: &str,
    ) -> Result<Self, ResidencyError> {
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !segment_ok(name) {
            return Err(ResidencyError::InvalidPolicyId {
                value: name.to_owned(),
                reason: "a policy name is lowercase letters, digits and '-'",
            });
        }
        if version.is_empty()
            || !version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+')
        {
            return Err(ResidencyError::InvalidPolicyId {
                value: version.to_owned(),
                reason: "a version is letters, digits, '.', '-' and '+'",
            });
        }
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut field = |bytes: &[u8]| {
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        };
        field(b"domicile policy id v1");
        field(name.as_bytes());
        field(version.as_bytes());
        field(&(rules.len() as u64).to_be_bytes());
        for rule in rules {
            field(rule.id.as_str().as_bytes());
            field(rule.summary.as_bytes());
        }
        field(access_rules.as_bytes());
        field(access_schema.as_bytes());
        let mut digest = [0u8; 32];
        digest.copy_from_slice(ctx.finish().as_ref());
        Ok(PolicyId {
            name: name.to_owned(),
            version: version.to_owned(),
            digest: crate::Sha256Digest(digest),
        })
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}+{}", self.name, self.version, self.digest)
    }
}

/// A deployment's residency rules, answered without I/O.
///
/// One policy crate implements this trait for one deployment shape (`domicile-policy-global`,
/// `domicile-policy-us-split`). Every method that takes a region refuses, with
/// [`ResidencyError::UnknownRegion`], a region the deployment does not have. Every [`Decision`]
/// names a rule from [`rules`](ResidencyPolicy::rules).
///
/// "Home" below is the region a piece of data belongs to: for data about a subject, the subject's
/// home region; for a model artifact, the region it was trained in; for audit records and key
/// material, the region that created them.
///
/// Run `domicile_residency::conformance::run` (feature `conformance`) from the policy
/// crate's tests to check the invariants every policy must keep.
pub trait ResidencyPolicy: Send + Sync {
    /// The policy's fixed parts: id, regions, rule table, access rules. The methods below that
    /// read them are answered from it.
    fn table(&self) -> &PolicyTable;

    /// Which rules are in force.
    fn id(&self) -> &PolicyId {
        self.table().id()
    }

    /// The regions of the deployment, in a fixed order.
    fn regions(&self) -> &[Region] {
        self.table().regions()
    }

    /// The rule table: every rule a decision may name.
    fn rules(&self) -> &[Rule] {
        self.table().rules()
    }

    /// The country `region`'s infrastructure and operators are located in (where a region's own
    /// services, such as its migration service, run).
    fn region_location(&self, region: &Region) -> Result<CountryCode, ResidencyError> {
        self.check_region(region)?;
        Ok(self
            .table()
            .location(region)
            .expect("every region of a table has a location"))
    }

    /// The subject's home region. A missing or unusable residence is an error naming the subject,
    /// never a default.
    fn home_region(&self, subject: &Subject) -> Result<Region, ResidencyError>;

    /// May data of `class`, whose home is `home`, rest in `region`?
    fn may_rest_in(
        &self,
        class: DataClass,
        home: &Region,
        region: &Region,
    ) -> Result<Decision, ResidencyError>;

    /// May data of `class`, whose home is `home`, be transferred from `from` to `to` for `purpose`?
    fn may_transfer(
        &self,
        class: DataClass,
        home: &Region,
        from: &Region,
        to: &Region,
        purpose: &Purpose,
    ) -> Result<Decision, ResidencyError>;

    /// May a model trained on data of subjects homed in `trained_on` be deployed in `region`?
    fn may_deploy_model(
        &self,
        trained_on: &BTreeSet<Region>,
        region: &Region,
    ) -> Result<Decision, ResidencyError>;

    /// The fields of a record value (a JSON object) of `class` that name or single out a person
    /// (`user`, `email`, `device_id`, …). A Gate releasing records under `Pseudonymize` replaces
    /// each of these fields' values with a keyed pseudonym, so that a pseudonymised value does
    /// not still read `{"user":"ana",…}`. None by default.
    fn identifying_fields(&self, class: DataClass) -> &[&'static str] {
        let _ = class;
        &[]
    }

    /// What an approval of access to `region`'s data must satisfy, as an
    /// [`Obligation::RequireApproval`](crate::Obligation::RequireApproval): whose approvers (by
    /// the jurisdiction of their organisation) and for how long at most. A Gate checks every
    /// approval it relies on against it and records it in the access's decision. `None` (the
    /// default) when the policy's rules give approvals no role there.
    fn approval_obligation(&self, region: &Region) -> Option<crate::Obligation> {
        let _ = region;
        None
    }

    /// The access rules (who may do what) as Cedar policy text. Each policy carries an
    /// `@id("<policy>/access/<name>")` annotation that is also in the rule table.
    fn access_rules(&self) -> &str {
        self.table().access_rules()
    }

    /// The Cedar schema the access rules are written against.
    fn access_schema(&self) -> &str {
        self.table().access_schema()
    }

    /// The rule with this id, if the policy has it.
    fn rule(&self, id: &RuleId) -> Option<&Rule> {
        self.rules().iter().find(|r| &r.id == id)
    }

    /// Whether `region` is a region of this deployment.
    fn has_region(&self, region: &Region) -> bool {
        self.regions().contains(region)
    }

    /// `Ok` if `region` is a region of this deployment, otherwise the error to return.
    fn check_region(&self, region: &Region) -> Result<(), ResidencyError> {
        if self.has_region(region) {
            Ok(())
        } else {
            Err(ResidencyError::UnknownRegion {
                region: region.clone(),
                policy: self.id().name.clone(),
                known: self
                    .regions()
                    .iter()
                    .map(Region::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_known_answer() {
        // Pinned so that a change to the derivation, which would silently change every policy id
        // written into existing audit logs, fails here first. The value was computed
        // independently (Python hashlib over the same length-prefixed fields).
        let rules = [Rule::new("demo/all", "Everything.")];
        let id = PolicyId::derive(
            "demo",
            "1.0.0",
            &rules,
            "permit(principal, action, resource);",
            "",
        )
        .unwrap();
        assert_eq!(
            id.digest.to_string(),
            "sha256:3c12327efd7dcc3ca9cbea3d8b1c266fcc3671f7b0854c9e001531f1a2eecb33"
        );
    }

    #[test]
    fn digest_covers_every_input() {
        let rules = [Rule::new("demo/all", "Everything.")];
        let base = PolicyId::derive("demo", "1", &rules, "a", "s").unwrap();
        let other_rules = [Rule::new("demo/all", "Everything!")];
        for changed in [
            PolicyId::derive("demo", "2", &rules, "a", "s").unwrap(),
            PolicyId::derive("demo", "1", &other_rules, "a", "s").unwrap(),
            PolicyId::derive("demo", "1", &rules, "b", "s").unwrap(),
            PolicyId::derive("demo", "1", &rules, "a", "t").unwrap(),
            PolicyId::derive("demo", "1", &rules, "as", "").unwrap(),
        ] {
            assert_ne!(changed.digest, base.digest);
        }
    }

    #[test]
    fn digest_text_round_trip() {
        let rules = [Rule::new("demo/all", "Everything.")];
        let id = PolicyId::derive("demo", "1", &rules, "", "").unwrap();
        assert_eq!(
            PolicyDigest::parse(&id.digest.to_string()).unwrap(),
            id.digest
        );
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<PolicyId>(&json).unwrap(), id);
        for bad in ["sha256:", "md5:00", &format!("sha256:{}", "G".repeat(64))] {
            assert!(PolicyDigest::parse(bad).is_err());
        }
        assert!(PolicyId::derive("Demo", "1", &rules, "", "").is_err());
    }
}
