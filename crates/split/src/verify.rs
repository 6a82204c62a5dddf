//! Verifying a split: every planned record readable in exactly the regions the target policy
//! allows, with the source's digest, and nothing else anywhere (DESIGN.md invariants 1 and 8).

use std::collections::BTreeMap;

use domicile_residency::{Region, SubjectId};
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
    let purpose = migration_purpose();
    let policy = target.policy();
    let mut problems = Vec::new();
    let mut counts = Counts::new();
    let mut checked = 0u64;
    // Each region's store is read back by its own thread: they are independent.
    let inventories = std::thread::scope(|scope| {
        let handles: Vec<_> = target
            .regions()
            .map(|node| {
                let purpose = &purpose;
                scope.spawn(move || {
                    let who = target.migration_principal(&node.region);
                    (node, node.gate.inventory(&who, purpose))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a verifying thread panicked"))
            .collect::<Vec<_>>()
    });
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
                // Invariant 1 (and its siblings for every class), checked on what is stored.
                let rest = policy.may_rest_in(meta.class, &inv.home, &node.region)?;
                if !rest.allowed {
                    problems.push(format!(
                        "{}: a {} record of a subject homed in {} rests here ({})",
                        node.region, meta.class, inv.home, rest.rule
                    ));
                }
                let key = (
                    meta.subject.clone(),
                    meta.collection.clone(),
                    meta.key.clone(),
                );
                match want.remove(&key) {
                    Some((d, class)) if d == digest && class == meta.class => {}
                    Some(_) => problems.push(format!(
                        "{}: record {}/{} differs from the source",
                        node.region, meta.collection, meta.key
                    )),
                    None => problems.push(format!(
                        "{}: record {}/{} is here but the plan did not put it here",
                        node.region, meta.collection, meta.key
                    )),
                }
            }
        }
        for ((_, collection, key), _) in want {
            problems.push(format!(
                "{}: record {collection}/{key} is missing",
                node.region
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
