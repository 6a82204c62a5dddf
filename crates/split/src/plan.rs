//! Planning a split: for every subject and record of the source deployment, where the target
//! policy puts it and what happens to it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use domicile_access::SubjectInventory;
use domicile_residency::{
    DataClass, JustificationCode, PolicyId, Purpose, Region, ResidencyError, ResidencyPolicy,
    Subject, SubjectId,
};
use domicile_store::{RecordDigest, RecordMeta};
use serde::{Deserialize, Serialize};

use crate::{Deployment, SplitError};

/// What happens to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordAction {
    /// Copied to its one target region; the source copy is shredded.
    Move,
    /// Copied to every target region that may hold it; the source copy is shredded.
    Replicate,
    /// No target region may hold it: it is shredded with the source.
    Shred,
}

/// One record of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRecord {
    /// The record as it is in the source.
    pub meta: RecordMeta,
    /// The digest of its plaintext in the source.
    pub digest: RecordDigest,
    /// The region it rests in now.
    pub source: Region,
    /// Where it goes.
    pub targets: BTreeSet<Region>,
    /// What happens to it.
    pub action: RecordAction,
}

/// One subject of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSubject {
    /// The subject.
    pub subject: Subject,
    /// Their home region under the target policy.
    pub target_home: Region,
    /// Their records.
    pub records: Vec<PlannedRecord>,
}

/// Counts of records per data class and region.
pub type Counts = BTreeMap<Region, BTreeMap<DataClass, u64>>;

/// The plan of a split, computed without changing anything.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The policy the data is under now.
    pub source_policy: PolicyId,
    /// The policy it will be under.
    pub target_policy: PolicyId,
    /// Every subject, in id order.
    pub subjects: Vec<PlannedSubject>,
    /// Subjects the target policy cannot home (no usable residence), in id order.
    pub unresolved: Vec<SubjectId>,
}

/// The serialisable summary of a plan: counts only, no subject ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// The source policy.
    pub source_policy: PolicyId,
    /// The target policy.
    pub target_policy: PolicyId,
    /// Subjects to move.
    pub subjects: u64,
    /// Subjects that block the split until resolved.
    pub unresolved: u64,
    /// Records per class and region now.
    pub before: Counts,
    /// Records per class and region after the split.
    pub after: Counts,
    /// Records per action.
    pub actions: BTreeMap<RecordAction, u64>,
    /// Subjects per target home region.
    pub homes: BTreeMap<Region, u64>,
}

/// The purpose every step of a split states.
pub fn migration_purpose() -> Purpose {
    Purpose::new(JustificationCode::Migration).with_detail("region split")
}

/// Where the target policy lets a record of `class`, homed in `home`, rest. Public data goes to
/// every region that may hold it; everything else only to its home, if it may rest there.
pub fn target_regions(
    target: &dyn ResidencyPolicy,
    class: DataClass,
    home: &Region,
) -> Result<BTreeSet<Region>, ResidencyError> {
    let mut out = BTreeSet::new();
    for region in target.regions() {
        let replicate = class == DataClass::Public || region == home;
        if replicate && target.may_rest_in(class, home, region)?.allowed {
            out.insert(region.clone());
        }
    }
    Ok(out)
}

impl Plan {
    /// Plans the move of `source` to `target`: reads the source's inventory through its Gates
    /// (one logged bulk entry per region) and decides every record under the target policy.
    /// Changes no data.
    ///
    /// When the target policy keeps some of the source's regions (a split of a split:
    /// `us-split` → `eu-split` keeps `us` and `row`), the plan holds only what must leave the
    /// region it rests in ([`only_what_leaves`](Self::only_what_leaves)); everything else stays
    /// where it is, untouched.
    pub fn compute(source: &Deployment, target: &dyn ResidencyPolicy) -> Result<Plan, SplitError> {
        let shares_regions = target.regions().iter().any(|r| source.region(r).is_some());
        let purpose = migration_purpose();
        let mut inventories: Vec<(Region, SubjectInventory)> = Vec::new();
        for node in source.regions() {
            let who = source.migration_principal(&node.region);
            for inv in node.gate.inventory(&who, &purpose)? {
                inventories.push((node.region.clone(), inv));
            }
        }
        let plan = Self::from_inventories(source.policy().id().clone(), target, inventories)?;
        Ok(if shares_regions {
            plan.only_what_leaves()
        } else {
            plan
        })
    }

    /// Narrows a plan whose target keeps some source regions to what must move. A subject
    /// *leaves* a region when one of their records there may not rest there under the target
    /// policy (a European's profile in `row` under `eu-split`); every record of theirs in that
    /// region is then copied to its other target regions, and the subject is shredded there
    /// after verification. Records of subjects who do not leave stay where they are and are not
    /// in the plan; subjects left with nothing to move are dropped.
    pub fn only_what_leaves(mut self) -> Plan {
        for s in &mut self.subjects {
            let leaves: BTreeSet<Region> = s
                .records
                .iter()
                .filter(|r| !r.targets.contains(&r.source))
                .map(|r| r.source.clone())
                .collect();
            s.records.retain(|r| leaves.contains(&r.source));
            for r in &mut s.records {
                r.targets.remove(&r.source);
                r.action = match r.targets.len() {
                    0 => RecordAction::Shred,
                    1 => RecordAction::Move,
                    _ => RecordAction::Replicate,
                };
            }
        }
        self.subjects.retain(|s| !s.records.is_empty());
        self
    }

    /// Plans from inventories already taken: (source region, inventory) pairs.
    pub fn from_inventories(
        source_policy: PolicyId,
        target: &dyn ResidencyPolicy,
        inventories: Vec<(Region, SubjectInventory)>,
    ) -> Result<Plan, SplitError> {
        let mut by_subject: BTreeMap<SubjectId, PlannedSubject> = BTreeMap::new();
        let mut unresolved = BTreeSet::new();
        for (source, inv) in inventories {
            let home = match target.home_region(&inv.subject) {
                Ok(home) => home,
                Err(ResidencyError::MissingResidence { .. })
                | Err(ResidencyError::ContradictoryResidence { .. }) => {
                    unresolved.insert(inv.subject.id.clone());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let entry =
                by_subject
                    .entry(inv.subject.id.clone())
                    .or_insert_with(|| PlannedSubject {
                        subject: inv.subject.clone(),
                        target_home: home.clone(),
                        records: Vec::new(),
                    });
            for (meta, digest) in inv.records {
                let targets = target_regions(target, meta.class, &home)?;
                let action = match targets.len() {
                    0 => RecordAction::Shred,
                    1 => RecordAction::Move,
                    _ => RecordAction::Replicate,
                };
                entry.records.push(PlannedRecord {
                    meta,
                    digest,
                    source: source.clone(),
                    targets,
                    action,
                });
            }
        }
        Ok(Plan {
            source_policy,
            target_policy: target.id().clone(),
            subjects: by_subject.into_values().collect(),
            unresolved: unresolved.into_iter().collect(),
        })
    }

    /// Counts, without subject ids.
    pub fn summary(&self) -> PlanSummary {
        let mut before = Counts::new();
        let mut after = Counts::new();
        let mut actions = BTreeMap::new();
        let mut homes = BTreeMap::new();
        for s in &self.subjects {
            *homes.entry(s.target_home.clone()).or_insert(0) += 1;
            for r in &s.records {
                *before
                    .entry(r.source.clone())
                    .or_default()
                    .entry(r.meta.class)
                    .or_insert(0) += 1;
                for t in &r.targets {
                    *after
                        .entry(t.clone())
                        .or_default()
                        .entry(r.meta.class)
                        .or_insert(0) += 1;
                }
                *actions.entry(r.action).or_insert(0) += 1;
            }
        }
        PlanSummary {
            source_policy: self.source_policy.clone(),
            target_policy: self.target_policy.clone(),
            subjects: self.subjects.len() as u64,
            unresolved: self.unresolved.len() as u64,
            before,
            after,
            actions,
            homes,
        }
    }

    /// How many records the plan covers.
    pub fn record_count(&self) -> u64 {
        self.subjects.iter().map(|s| s.records.len() as u64).sum()
    }
}

impl fmt::Display for PlanSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "split plan: {} -> {}",
            self.source_policy, self.target_policy
        )?;
        writeln!(
            f,
            "  subjects: {} ({} unresolved)",
            self.subjects, self.unresolved
        )?;
        for (home, n) in &self.homes {
            writeln!(f, "    homed in {home}: {n}")?;
        }
        for (title, counts) in [
            ("records now", &self.before),
            ("records after", &self.after),
        ] {
            writeln!(f, "  {title}:")?;
            for (region, classes) in counts {
                let list: Vec<String> = classes.iter().map(|(c, n)| format!("{c} {n}")).collect();
                writeln!(f, "    {region:<8} {}", list.join(", "))?;
            }
        }
        let list: Vec<String> = self
            .actions
            .iter()
            .map(|(a, n)| {
                format!(
                    "{} {n}",
                    serde_json::to_value(a)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )
            })
            .collect();
        write!(f, "  actions: {}", list.join(", "))
    }
}
