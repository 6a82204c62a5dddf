//! The conformance suite is only worth running if it fails broken policies: these wrap the US
//! split in deliberate mistakes and check that the suite names each one.

use std::collections::BTreeSet;

use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::conformance::check;
use domicile_residency::{
    DataClass, Decision, PolicyTable, Purpose, Region, ResidencyError, ResidencyPolicy, RuleId,
    Subject,
};

/// Which mistake to make.
#[derive(Clone, Copy)]
enum Mistake {
    ProtectedRestsAbroad,
    ProtectedLeavesHome,
    UnlistedRule,
    DefaultHome,
    DeployAnywhere,
    ExceptedCrossesInTheClear,
    AccessRuleNamesUnknownAttribute,
}

struct Broken {
    inner: UsSplitPolicy,
    mistake: Mistake,
}

impl ResidencyPolicy for Broken {
    fn table(&self) -> &PolicyTable {
        self.inner.table()
    }
    fn access_rules(&self) -> &str {
        match self.mistake {
            Mistake::AccessRuleNamesUnknownAttribute => {
                "@id(\"us-split/access/deny-by-default\")\npermit(principal, action, resource) when { principal.clearance == \"top\" };"
            }
            _ => self.inner.access_rules(),
        }
    }
    fn home_region(&self, subject: &Subject) -> Result<Region, ResidencyError> {
        match (self.mistake, subject.attributes.residence) {
            (Mistake::DefaultHome, None) => Ok(self.inner.row().clone()),
            _ => self.inner.home_region(subject),
        }
    }
    fn may_rest_in(
        &self,
        c: DataClass,
        h: &Region,
        r: &Region,
    ) -> Result<Decision, ResidencyError> {
        let mut d = self.inner.may_rest_in(c, h, r)?;
        if matches!(self.mistake, Mistake::ProtectedRestsAbroad) && c == DataClass::Protected {
            d.allowed = true;
        }
        if matches!(self.mistake, Mistake::UnlistedRule) {
            d.rule = RuleId::parse("us-split/made-up").unwrap();
        }
        Ok(d)
    }
    fn may_transfer(
        &self,
        c: DataClass,
        h: &Region,
        f: &Region,
        t: &Region,
        p: &Purpose,
    ) -> Result<Decision, ResidencyError> {
        let mut d = self.inner.may_transfer(c, h, f, t, p)?;
        match self.mistake {
            Mistake::ProtectedLeavesHome if c == DataClass::Protected => d.allowed = true,
            Mistake::ExceptedCrossesInTheClear if c == DataClass::Excepted => d.obligations.clear(),
            _ => {}
        }
        Ok(d)
    }
    fn may_deploy_model(
        &self,
        s: &BTreeSet<Region>,
        r: &Region,
    ) -> Result<Decision, ResidencyError> {
        let mut d = self.inner.may_deploy_model(s, r)?;
        if matches!(self.mistake, Mistake::DeployAnywhere) {
            d.allowed = true;
        }
        Ok(d)
    }
}

fn violations(mistake: Mistake) -> String {
    let broken = Broken {
        inner: UsSplitPolicy::new(),
        mistake,
    };
    check(&broken).join("\n")
}

#[test]
fn the_real_policy_has_no_violations() {
    assert_eq!(check(&UsSplitPolicy::new()), Vec::<String>::new());
}

#[test]
fn each_mistake_is_named() {
    let cases = [
        (Mistake::ProtectedRestsAbroad, "must rest only at home"),
        (
            Mistake::ProtectedLeavesHome,
            "Protected moves only toward home",
        ),
        (Mistake::UnlistedRule, "which is not in the rule table"),
        (Mistake::DefaultHome, "defaulted to row without a residence"),
        (Mistake::DeployAnywhere, "without provenance"),
        (
            Mistake::ExceptedCrossesInTheClear,
            "without Pseudonymize or Aggregate",
        ),
        (
            Mistake::AccessRuleNamesUnknownAttribute,
            "do not validate against the schema",
        ),
    ];
    for (mistake, expected) in cases {
        let found = violations(mistake);
        assert!(
            found.contains(expected),
            "expected {expected:?} in:\n{found}"
        );
    }
}
