//! Verifying a split: every planned record readable in exactly the regions the target policy
//! allows, with the source's digest, and nothing else anywhere (DESIGN.md invariants 1 and 8).

use std::collections::BTreeMap;

use domicile_access::SubjectInventory;
use domicile_residency::{DataClass, Region, ResidencyPolicy, SubjectId};
use domicile_store::{Collection, RecordDigest, RecordKey};

use crate::plan::migration_purpose;
use crate::report::VerificationSummary;
use crate::{Counts, Deployment, Plan, SplitError};

/// Reads every target region's inventory through its Gate and checks it against the plan.
/// Returns the summary when everything holds, otherwise every problem found.
pub fn verify(plan: &Plan, target: &Deployment) -> Result<VerificationSummary, SplitError> {
    type Key = (SubjectId, Collection, RecordKey);
    let mut expected: BTreeMap<
        Region,
        BTreeMap<Key, (RecordDigest, domicile_residency::DataClass)>,
    > = BTreeMap::new();
    for s in &plan.subjects {
        for r in &s.records {
            for t in &r.targets {
                expected.entry(t.clone()).or_default().insert(
                    (
                        s.subject.id.clone(),
                        r.meta.collection.clone(),
                        r.meta.key.clone(),
                    ),
                    (r.digest, r.meta.class),
                );
            }
        }
    }
    let policy = target.policy();
    let mut problems = Vec::new();
    let mut counts = Counts::new();
    let mut checked = 0u64;
    let inventories = read_inventories(target);
    for (node, inventory) in inventories {
        let mut want = expected.remove(&node.region).unwrap_or_default();
        for inv in inventory? {
            for (meta, digest) in inv.records {
                checked += 1;
                *counts
                    .entry(node.region.clone())
                    .or_default()
                    .entry(meta.class)
                    .or_insert(0) += 1;
                problems.extend(misplaced(
                    policy.as_ref(),
                    meta.class,
                    &inv.home,
                    &node.region,
                )?);
                let key = (
                    meta.subject.clone(),
                    meta.collection.clone(),
                    meta.key.clone(),
                );
                match want.remove(&key) {
                    Some((d, class)) if d == digest && class == meta.class => {}
                    // Records are named by their key's pseudonym in the region's log (record keys
                    // often embed a user id): `domicile audit pseudonym --collection C --key K`.
                    Some(_) => problems.push(format!(
                        "{}: record {} differs from the source",
                        node.region,
                        node.gate.record_key_pseudonym(&meta.collection, &meta.key)
                    )),
                    None => problems.push(format!(
                        "{}: record {} is here but the plan did not put it here",
                        node.region,
                        node.gate.record_key_pseudonym(&meta.collection, &meta.key)
                    )),
                }
            }
        }
        for ((_, collection, key), _) in want {
            problems.push(format!(
                "{}: record {} is missing",
                node.region,
                node.gate.record_key_pseudonym(&collection, &key)
            ));
        }
    }
    for (region, missing) in expected {
        problems.push(format!(
            "{region}: {} planned record(s) in a region the target deployment does not have",
            missing.len()
        ));
    }
    if !problems.is_empty() {
        return Err(SplitError::VerificationFailed { problems });
    }
    Ok(VerificationSummary {
        records_checked: checked,
        per_region: counts,
    })
}

/// Verifies a split of a split ([`Plan::only_what_leaves`]), where the target keeps regions that
/// hold records the plan does not touch: reads every target region's inventory through its Gate
/// and checks that every planned record is in each of its target regions with the source's
/// digest. Records the plan does not name are checked after the shred, by [`check_placement`].
pub fn verify_moved(plan: &Plan, target: &Deployment) -> Result<VerificationSummary, SplitError> {
    type Key = (SubjectId, Collection, RecordKey);
    let mut found: BTreeMap<Region, BTreeMap<Key, (RecordDigest, DataClass)>> = BTreeMap::new();
    let mut counts = Counts::new();
    for (node, inventory) in read_inventories(target) {
        let here = found.entry(node.region.clone()).or_default();
        for inv in inventory? {
            for (meta, digest) in inv.records {
                *counts
                    .entry(node.region.clone())
                    .or_default()
                    .entry(meta.class)
                    .or_insert(0) += 1;
                here.insert(
                    (meta.subject, meta.collection, meta.key),
                    (digest, meta.class),
                );
            }
        }
    }
    let mut problems = Vec::new();
    let mut checked = 0u64;
    for s in &plan.subjects {
        for r in &s.records {
            let key = (
                s.subject.id.clone(),
                r.meta.collection.clone(),
                r.meta.key.clone(),
            );
            for t in &r.targets {
                checked += 1;
                // Named by the key's pseudonym in the target's log, as `verify` names them.
                let named = || {
                    target.region(t).map_or_else(
                        || "(in a region the target does not have)".to_owned(),
                        |node| {
                            node.gate
                                .record_key_pseudonym(&r.meta.collection, &r.meta.key)
                        },
                    )
                };
                match found.get(t).and_then(|records| records.get(&key)) {
                    Some((d, class)) if *d == r.digest && *class == r.meta.class => {}
                    Some(_) => {
                        problems.push(format!("{t}: record {} differs from the source", named()))
                    }
                    None => problems.push(format!("{t}: record {} is missing", named())),
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(SplitError::VerificationFailed { problems });
    }
    Ok(VerificationSummary {
        records_checked: checked,
        per_region: counts,
    })
}

/// Each region's inventory, read through its Gate by the region's migration principal; each
/// region by its own thread, since they are independent.
fn read_inventories(
    deployment: &Deployment,
) -> Vec<(
    &crate::RegionNode,
    Result<Vec<SubjectInventory>, domicile_access::GateError>,
)> {
    let purpose = migration_purpose();
    std::thread::scope(|scope| {
        let handles: Vec<_> = deployment
            .regions()
            .map(|node| {
                let purpose = &purpose;
                scope.spawn(move || {
                    let who = deployment.migration_principal(&node.region);
                    (node, node.gate.inventory(&who, purpose))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a verifying thread panicked"))
            .collect()
    })
}

/// Invariant 1 (and its siblings for every class), checked on what is stored: the problem, if
/// a record of `class` whose subject is homed in `home` may not rest in `region`.
fn misplaced(
    policy: &dyn ResidencyPolicy,
    class: DataClass,
    home: &Region,
    region: &Region,
) -> Result<Option<String>, SplitError> {
    let rest = policy.may_rest_in(class, home, region)?;
    Ok((!rest.allowed).then(|| {
        format!(
            "{region}: a {class} record of a subject homed in {home} rests here ({})",
            rest.rule
        )
    }))
}

/// What [`check_placement`] found.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// Records per region and class.
    pub counts: Counts,
    /// Every record that rests where the deployment's policy does not allow, in a sentence.
    pub problems: Vec<String>,
}

/// Reads every region of `deployment` through its Gate and checks each record against the
/// deployment's own policy: may it rest where it is? Used by `domicile split verify` on a
/// deployment at rest, with or without a split behind it.
pub fn check_placement(deployment: &Deployment) -> Result<Placement, SplitError> {
    let policy = deployment.policy();
    let mut placement = Placement::default();
    for (node, inventory) in read_inventories(deployment) {
        for inv in inventory? {
            for (meta, _) in &inv.records {
                *placement
                    .counts
                    .entry(node.region.clone())
                    .or_default()
                    .entry(meta.class)
                    .or_insert(0) += 1;
                placement.problems.extend(misplaced(
                    policy.as_ref(),
                    meta.class,
                    &inv.home,
                    &node.region,
                )?);
            }
        }
    }
    Ok(placement)
}
