//! The conformance suite every policy crate runs from its own tests.
//!
//! A policy crate adds `domicile-residency = { features = ["conformance"] }` to its
//! dev-dependencies and calls [`run`] from a test:
//!
//! ```ignore
//! #[test]
//! fn conforms() {
//!     domicile_residency::conformance::run(&MyPolicy::new());
//! }
//! ```
//!
//! What is checked, over every combination of the policy's regions, data classes and
//! justification codes, and over generated subjects, region sets and foreign regions:
//!
//! 1. **Tables**: at least one region, no duplicates; a non-empty rule table with unique ids that
//!    all start with the policy's name; the policy id's digest is the one [`PolicyId::derive`]
//!    gives for the rule table and access-rule text; every `@id("…")` in the access rules is in
//!    the rule table.
//! 2. **Determinism**: asking twice gives the same answer.
//! 3. **Traceability**: every decision names a rule in the rule table; denials carry no
//!    obligations.
//! 4. **Home regions**: a subject with a residence has a home among the policy's regions; one
//!    without gets [`ResidencyError::MissingResidence`] naming the subject.
//! 5. **Protected rests at home**: Protected data may rest in its home region and nowhere else.
//! 6. **Protected never leaves home**: a transfer of Protected data is allowed only toward its
//!    home region.
//! 7. **Transfers land where data may rest**: an allowed transfer's destination is a region the
//!    data may rest in.
//! 8. **Audit records and key material stay**: they rest only in their home region.
//! 9. **Excepted is de-identified at the border**: an allowed cross-border transfer of Excepted
//!    data carries a `Pseudonymize` or `Aggregate` obligation.
//! 10. **Model deployment respects provenance**: a model may be deployed in a region only if
//!     Protected data of every region it learned from may rest there; a model without
//!     provenance is never deployed.
//! 11. **Unknown regions are errors**: every question naming a region outside the deployment
//!     fails with [`ResidencyError::UnknownRegion`].
//! 12. **Access rules are well-formed**: the Cedar schema parses and the access rules validate
//!     against it in strict mode, so a typo in an attribute name fails here, not as a silent
//!     deny at run time.

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::{
    CountryCode, DataClass, Decision, JustificationCode, Obligation, PolicyId, Purpose, Region,
    ResidencyError, ResidencyPolicy, Subject, SubjectAttributes, SubjectId,
};

/// One broken invariant, in a sentence.
pub type Violation = String;

/// Runs the whole suite and panics with every violation found. Call it from a `#[test]`.
pub fn run<P: ResidencyPolicy + ?Sized>(policy: &P) {
    let violations = check(policy);
    assert!(
        violations.is_empty(),
        "policy {} breaks {} invariant(s):\n  - {}",
        policy.id(),
        violations.len(),
        violations.join("\n  - ")
    );
}

/// Runs the whole suite and returns the violations found (empty when the policy conforms).
pub fn check<P: ResidencyPolicy + ?Sized>(policy: &P) -> Vec<Violation> {
    let mut v = Vec::new();
    check_tables(policy, &mut v);
    check_access_rules(policy, &mut v);
    check_exhaustive(policy, &mut v);
    check_properties(policy, &mut v);
    v
}

fn check_access_rules<P: ResidencyPolicy + ?Sized>(policy: &P, v: &mut Vec<Violation>) {
    use cedar_policy::{PolicySet, Schema, ValidationMode, Validator};
    use std::str::FromStr;
    let schema = match Schema::from_cedarschema_str(policy.access_schema()) {
        Ok((schema, _warnings)) => schema,
        Err(e) => {
            v.push(format!("the Cedar schema does not parse: {e}"));
            return;
        }
    };
    let set = match PolicySet::from_str(policy.access_rules()) {
        Ok(set) => set,
        Err(e) => {
            v.push(format!("the Cedar access rules do not parse: {e}"));
            return;
        }
    };
    let result = Validator::new(schema).validate(&set, ValidationMode::Strict);
    if !result.validation_passed() {
        let errors: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
        v.push(format!(
            "the Cedar access rules do not validate against the schema: {}",
            errors.join("; ")
        ));
    }
}

fn check_tables<P: ResidencyPolicy + ?Sized>(policy: &P, v: &mut Vec<Violation>) {
    let id = policy.id();
    let regions = policy.regions();
    if regions.is_empty() {
        v.push("the policy has no regions".into());
    }
    let unique: BTreeSet<_> = regions.iter().collect();
    if unique.len() != regions.len() {
        v.push("the region list has duplicates".into());
    }
    let rules = policy.rules();
    if rules.is_empty() {
        v.push("the rule table is empty".into());
    }
    let ids: BTreeSet<_> = rules.iter().map(|r| &r.id).collect();
    if ids.len() != rules.len() {
        v.push("the rule table has duplicate ids".into());
    }
    for rule in rules {
        if rule.id.policy() != id.name {
            v.push(format!(
                "rule {} does not start with the policy name {}",
                rule.id, id.name
            ));
        }
        if rule.summary.trim().is_empty() {
            v.push(format!("rule {} has no summary", rule.id));
        }
    }
    match PolicyId::derive(
        &id.name,
        &id.version,
        rules,
        policy.access_rules(),
        policy.access_schema(),
    ) {
        Ok(derived) if derived == *id => {}
        Ok(derived) => v.push(format!(
            "policy id {id} does not match its tables; derive gives {derived}"
        )),
        Err(e) => v.push(format!("policy id cannot be derived: {e}")),
    }
    if policy.access_rules().trim().is_empty() {
        v.push("the access rules are empty".into());
    }
    for cedar_id in annotation_ids(policy.access_rules()) {
        match crate::RuleId::parse(&cedar_id) {
            Ok(rule) if policy.rule(&rule).is_some() => {}
            _ => v.push(format!(
                "access rule @id({cedar_id:?}) is not in the rule table"
            )),
        }
    }
}

/// The values of every `@id("…")` annotation in Cedar policy text.
pub fn annotation_ids(cedar: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = cedar;
    while let Some(at) = rest.find("@id(\"") {
        rest = &rest[at + 5..];
        if let Some(end) = rest.find('"') {
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

fn purposes() -> Vec<Purpose> {
    JustificationCode::ALL
        .into_iter()
        .map(|c| Purpose::new(c).with_ticket("CONF-1"))
        .collect()
}

/// Every subset of the regions, including the empty one (at most 2^8 of them).
fn region_sets(regions: &[Region]) -> Vec<BTreeSet<Region>> {
    let n = regions.len().min(8);
    (0u32..1 << n)
        .map(|mask| {
            (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| regions[i].clone())
                .collect()
        })
        .collect()
}

fn traced<P: ResidencyPolicy + ?Sized>(
    policy: &P,
    what: &str,
    d: &Decision,
    v: &mut Vec<Violation>,
) {
    if policy.rule(&d.rule).is_none() {
        v.push(format!(
            "{what}: decision names rule {} which is not in the rule table",
            d.rule
        ));
    }
    if !d.allowed && !d.obligations.is_empty() {
        v.push(format!("{what}: a denial carries obligations"));
    }
}

fn deidentifies(o: &Obligation) -> bool {
    match o {
        Obligation::Pseudonymize | Obligation::Aggregate { .. } => true,
        Obligation::AnyOf { options } => !options.is_empty() && options.iter().all(deidentifies),
        _ => false,
    }
}

fn check_exhaustive<P: ResidencyPolicy + ?Sized>(policy: &P, v: &mut Vec<Violation>) {
    let regions = policy.regions().to_vec();
    for class in DataClass::ALL {
        for home in &regions {
            for region in &regions {
                let what = format!("may_rest_in({class}, home {home}, in {region})");
                match (
                    policy.may_rest_in(class, home, region),
                    policy.may_rest_in(class, home, region),
                ) {
                    (Ok(a), Ok(b)) => {
                        if a != b {
                            v.push(format!("{what} is not deterministic"));
                        }
                        traced(policy, &what, &a, v);
                        let stays = matches!(
                            class,
                            DataClass::Protected | DataClass::AuditRecord | DataClass::KeyMaterial
                        );
                        if stays && a.allowed && region != home {
                            v.push(format!("{what} is allowed: {class} must rest only at home"));
                        }
                        if class == DataClass::Protected && region == home && !a.allowed {
                            v.push(format!("{what} is denied: Protected must rest at home"));
                        }
                    }
                    (Err(e), _) | (_, Err(e)) => v.push(format!("{what} failed: {e}")),
                }
                for from in &regions {
                    for purpose in purposes() {
                        let to = region;
                        let what = format!(
                            "may_transfer({class}, home {home}, {from} -> {to}, {})",
                            purpose.code
                        );
                        let (a, b) = match (
                            policy.may_transfer(class, home, from, to, &purpose),
                            policy.may_transfer(class, home, from, to, &purpose),
                        ) {
                            (Ok(a), Ok(b)) => (a, b),
                            (Err(e), _) | (_, Err(e)) => {
                                v.push(format!("{what} failed: {e}"));
                                continue;
                            }
                        };
                        if a != b {
                            v.push(format!("{what} is not deterministic"));
                        }
                        traced(policy, &what, &a, v);
                        if !a.allowed {
                            continue;
                        }
                        if class == DataClass::Protected && to != home {
                            v.push(format!(
                                "{what} is allowed: Protected moves only toward home"
                            ));
                        }
                        match policy.may_rest_in(class, home, to) {
                            Ok(rest) if !rest.allowed => v.push(format!(
                                "{what} is allowed but {class} may not rest in {to} ({})",
                                rest.rule
                            )),
                            _ => {}
                        }
                        if class == DataClass::Excepted
                            && from != to
                            && !a.obligations.iter().any(deidentifies)
                        {
                            v.push(format!(
                                "{what} crosses a border without Pseudonymize or Aggregate"
                            ));
                        }
                    }
                }
            }
        }
    }
    for set in region_sets(&regions) {
        for region in &regions {
            let names: Vec<_> = set.iter().map(Region::as_str).collect();
            let what = format!(
                "may_deploy_model(trained on {{{}}}, in {region})",
                names.join(",")
            );
            let d = match (
                policy.may_deploy_model(&set, region),
                policy.may_deploy_model(&set, region),
            ) {
                (Ok(a), Ok(b)) => {
                    if a != b {
                        v.push(format!("{what} is not deterministic"));
                    }
                    a
                }
                (Err(e), _) | (_, Err(e)) => {
                    v.push(format!("{what} failed: {e}"));
                    continue;
                }
            };
            traced(policy, &what, &d, v);
            if d.allowed && set.is_empty() {
                v.push(format!("{what} is allowed without provenance"));
            }
            if d.allowed {
                for source in &set {
                    if let Ok(rest) = policy.may_rest_in(DataClass::Protected, source, region) {
                        if !rest.allowed {
                            v.push(format!(
                                "{what} is allowed but Protected data of {source} may not rest in {region}"
                            ));
                        }
                    }
                }
            }
        }
    }
}

fn class_strategy() -> impl Strategy<Value = DataClass> {
    proptest::sample::select(DataClass::ALL.to_vec())
}

fn purpose_strategy() -> impl Strategy<Value = Purpose> {
    (
        proptest::sample::select(JustificationCode::ALL.to_vec()),
        proptest::option::of("[A-Z]{2,4}-[0-9]{1,5}"),
    )
        .prop_map(|(code, ticket)| Purpose {
            code,
            ticket,
            detail: None,
        })
}

fn subject_strategy() -> impl Strategy<Value = Subject> {
    let countries: Vec<CountryCode> = CountryCode::all().collect();
    (
        "[a-z0-9_-]{1,24}",
        proptest::option::weighted(0.9, proptest::sample::select(countries.clone())),
        proptest::option::of(proptest::sample::select(countries)),
    )
        .prop_map(|(id, residence, account_country)| Subject {
            id: SubjectId::parse(&id).expect("generated ids are valid"),
            attributes: SubjectAttributes {
                residence,
                account_country,
            },
        })
}

fn foreign_region_strategy(known: Vec<Region>) -> impl Strategy<Value = Region> {
    "[a-z][a-z0-9-]{0,12}"
        .prop_map(|s| Region::parse(&s).expect("generated regions are valid"))
        .prop_filter("a region outside the deployment", move |r| {
            !known.contains(r)
        })
}

fn check_properties<P: ResidencyPolicy + ?Sized>(policy: &P, v: &mut Vec<Violation>) {
    let regions = policy.regions().to_vec();
    let config = Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    };
    let fail = |msg: String| Err(TestCaseError::fail(msg));

    let mut runner = TestRunner::new(config.clone());
    let result = runner.run(&subject_strategy(), |subject| {
        let first = policy.home_region(&subject);
        if first != policy.home_region(&subject) {
            return fail(format!("home_region({subject:?}) is not deterministic"));
        }
        match (subject.attributes.residence, first) {
            (Some(_), Ok(home)) if regions.contains(&home) => Ok(()),
            (Some(_), Ok(home)) => fail(format!(
                "home_region({subject:?}) = {home}, which is not a region of the policy"
            )),
            (None, Err(ResidencyError::MissingResidence { subject: named })) => {
                if named == subject.id {
                    Ok(())
                } else {
                    fail(format!(
                        "MissingResidence names {named}, not {}",
                        subject.id
                    ))
                }
            }
            (None, Ok(home)) => fail(format!(
                "home_region({subject:?}) defaulted to {home} without a residence"
            )),
            (_, Err(ResidencyError::ContradictoryResidence { subject: named, .. }))
                if named == subject.id =>
            {
                Ok(())
            }
            (_, Err(e)) => fail(format!("home_region({subject:?}) failed: {e}")),
        }
    });
    if let Err(e) = result {
        v.push(format!("home regions: {e}"));
    }

    let mut runner = TestRunner::new(config.clone());
    let known = proptest::sample::select(regions.clone());
    let result = runner.run(
        &(
            class_strategy(),
            known.clone(),
            known,
            foreign_region_strategy(regions.clone()),
            purpose_strategy(),
        ),
        |(class, home, other, foreign, purpose)| {
            let unknown = |r: Result<Decision, ResidencyError>, what: &str| match r {
                Err(ResidencyError::UnknownRegion { region, .. }) if region == foreign => Ok(()),
                other => fail(format!("{what} with foreign region {foreign}: {other:?}")),
            };
            unknown(
                policy.may_rest_in(class, &home, &foreign),
                "may_rest_in(region)",
            )?;
            unknown(
                policy.may_rest_in(class, &foreign, &home),
                "may_rest_in(home)",
            )?;
            unknown(
                policy.may_transfer(class, &home, &foreign, &other, &purpose),
                "may_transfer(from)",
            )?;
            unknown(
                policy.may_transfer(class, &home, &other, &foreign, &purpose),
                "may_transfer(to)",
            )?;
            unknown(
                policy.may_transfer(class, &foreign, &home, &other, &purpose),
                "may_transfer(home)",
            )?;
            unknown(
                policy.may_deploy_model(&BTreeSet::from([home.clone()]), &foreign),
                "may_deploy_model(region)",
            )?;
            unknown(
                policy.may_deploy_model(&BTreeSet::from([home.clone(), foreign.clone()]), &other),
                "may_deploy_model(trained_on)",
            )?;
            // A generated purpose (any ticket) gets the same answer as the suite's fixed one.
            let fixed = Purpose::new(purpose.code).with_ticket("CONF-1");
            let a = policy.may_transfer(class, &home, &other, &home, &purpose);
            let b = policy.may_transfer(class, &home, &other, &home, &fixed);
            match (a, b) {
                (Ok(a), Ok(b)) if a.allowed == b.allowed => Ok(()),
                (a, b) => fail(format!(
                    "may_transfer depends on the ticket text: {a:?} vs {b:?}"
                )),
            }
        },
    );
    if let Err(e) = result {
        v.push(format!("unknown regions: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_annotation_ids() {
        let text = "@id(\"a/b\")\npermit(principal, action, resource);\n@id(\"a/c\") forbid(principal, action, resource);";
        assert_eq!(
            annotation_ids(text),
            vec!["a/b".to_owned(), "a/c".to_owned()]
        );
    }
}
