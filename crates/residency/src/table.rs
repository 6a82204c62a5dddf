//! What every policy crate holds: its id, regions, rule table and access rules, derived once.

use crate::{CountryCode, Decision, PolicyId, Region, ResidencyError, Rule, RuleId, ACCESS_SCHEMA};

/// A policy's fixed parts: its [`PolicyId`], its regions in order (each with the country its
/// infrastructure is located in), its rule table and its Cedar
/// access rules. A policy crate builds one in its constructor and returns it from
/// [`ResidencyPolicy::table`](crate::ResidencyPolicy::table); the trait answers `id`, `regions`,
/// `rules`, `access_rules` and `access_schema` from it, so no policy crate writes those again.
///
/// ```
/// use domicile_residency::{PolicyTable, Rule};
///
/// let table = PolicyTable::new(
///     "demo",
///     "1.0.0",
///     &[("here", "US"), ("there", "SG")],
///     vec![Rule::new("demo/stays-home", "Data stays home.")],
///     "permit(principal, action, resource);",
/// )?;
/// assert_eq!(table.regions().len(), 2);
/// assert!(table.decide(true, "demo/stays-home").allowed);
/// Ok::<(), domicile_residency::ResidencyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PolicyTable {
    id: PolicyId,
    regions: Vec<Region>,
    locations: Vec<CountryCode>,
    rules: Vec<Rule>,
    access_rules: String,
    access_schema: String,
}

impl PolicyTable {
    /// Derives the table of policy `name` at `version`, with its regions (name and the ISO
    /// country the region's infrastructure and operators are located in), rules and Cedar access
    /// rules written against the shared [`ACCESS_SCHEMA`].
    pub fn new(
        name: &str,
        version: &str,
        regions: &[(&str, &str)],
        rules: Vec<Rule>,
        access_rules: &str,
    ) -> Result<Self, ResidencyError> {
        Self::with_schema(name, version, regions, rules, access_rules, ACCESS_SCHEMA)
    }

    /// As [`new`](Self::new), for a policy with a Cedar schema of its own.
    pub fn with_schema(
        name: &str,
        version: &str,
        regions: &[(&str, &str)],
        rules: Vec<Rule>,
        access_rules: &str,
        access_schema: &str,
    ) -> Result<Self, ResidencyError> {
        let id = PolicyId::derive(name, version, &rules, access_rules, access_schema)?;
        let locations = regions
            .iter()
            .map(|(_, country)| CountryCode::parse(country))
            .collect::<Result<Vec<_>, _>>()?;
        let regions = regions
            .iter()
            .map(|(name, _)| Region::parse(name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PolicyTable {
            id,
            regions,
            locations,
            rules,
            access_rules: access_rules.to_owned(),
            access_schema: access_schema.to_owned(),
        })
    }

    /// Which rules are in force.
    pub fn id(&self) -> &PolicyId {
        &self.id
    }

    /// The regions, in order.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The country `region`'s infrastructure and operators are located in, if it is one of the
    /// policy's regions.
    pub fn location(&self, region: &Region) -> Option<CountryCode> {
        let i = self.regions.iter().position(|r| r == region)?;
        Some(self.locations[i])
    }

    /// The rule table.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The Cedar access rules.
    pub fn access_rules(&self) -> &str {
        &self.access_rules
    }

    /// The Cedar schema the access rules are written against.
    pub fn access_schema(&self) -> &str {
        &self.access_schema
    }

    /// The region of this policy named `name`.
    ///
    /// # Panics
    ///
    /// If the policy has no such region: policy crates call this with their own constants.
    pub fn region(&self, name: &str) -> Region {
        self.regions
            .iter()
            .find(|r| r.as_str() == name)
            .cloned()
            .unwrap_or_else(|| panic!("policy {} has no region {name}", self.id.name))
    }

    /// A decision by the rule `rule` of this table.
    ///
    /// # Panics
    ///
    /// If `rule` is not in the table: a policy that names a rule it does not list is a bug in
    /// the policy crate, which its conformance tests catch.
    pub fn decide(&self, allowed: bool, rule: &str) -> Decision {
        let rule = self
            .rules
            .iter()
            .map(|r| &r.id)
            .find(|id| id.as_str() == rule)
            .unwrap_or_else(|| panic!("rule {rule} is not in the table of {}", self.id.name));
        if allowed {
            Decision::allow(rule)
        } else {
            Decision::deny(rule)
        }
    }

    /// The rule with this id, if the table has it.
    pub fn rule(&self, id: &RuleId) -> Option<&Rule> {
        self.rules.iter().find(|r| &r.id == id)
    }
}
