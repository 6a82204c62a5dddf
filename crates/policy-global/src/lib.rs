//! The pre-split residency policy: one region, `global`.
//!
//! This is the "before" picture of a split. Every class of data may rest in `global`, transfers
//! stay inside it, and a model trained on `global` data may be deployed there. Access is
//! role-based with no approvals: engineers read for a stated purpose with a ticket, services keep
//! their users' records, the training service scans behaviour, auditors read only the log.
//!
//! A deployment names this crate, or `domicile-policy-us-split`, and nothing else changes.
//!
//! ```
//! use domicile_policy_global::GlobalPolicy;
//! use domicile_residency::{DataClass, Region, ResidencyPolicy, Subject};
//!
//! let policy = GlobalPolicy::new();
//! let alice = Subject::parse("alice", Some("US"), None)?;
//! let home = policy.home_region(&alice)?;
//! assert_eq!(home, Region::parse("global")?);
//! let d = policy.may_rest_in(DataClass::Protected, &home, &home)?;
//! assert!(d.allowed);
//! assert_eq!(d.rule.as_str(), "global/everything-rests-in-global");
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;

use domicile_residency::{
    DataClass, Decision, PolicyTable, Purpose, Region, ResidencyError, ResidencyPolicy, Rule,
    Subject,
};

/// The policy's name: the first segment of its rule ids.
pub const NAME: &str = "global";
/// The policy's version. Bump it when a rule changes.
pub const VERSION: &str = "1.2.0";
/// The one region, operated from the United States (where the pre-split product's primary data
/// centre was).
pub const REGIONS: &[(&str, &str)] = &[("global", "US")];
/// The Cedar access rules.
pub const ACCESS_RULES: &str = include_str!("access.cedar");
/// The independent monitor organisations whose auditors read the log.
pub const MONITORS: [&str; 1] = ["audit-firm"];

const RESTS: &str = "global/everything-rests-in-global";
const TRANSFER: &str = "global/transfers-stay-in-global";
const DEPLOY: &str = "global/models-deploy-in-global";
const NO_PROVENANCE: &str = "global/model-without-provenance";
const HOME: &str = "global/every-subject-is-homed-in-global";

fn rule_table() -> Vec<Rule> {
    vec![
        Rule::new(HOME, "Every subject with a known residence is homed in global."),
        Rule::new(RESTS, "Every class of data may rest in the one region, global."),
        Rule::new(TRANSFER, "Data moves only within global, for any purpose."),
        Rule::new(DEPLOY, "A model trained on global data may be deployed in global."),
        Rule::new(NO_PROVENANCE, "A model that names no training region is never deployed."),
        Rule::new(
            "global/access/engineer-reads-for-purpose",
            "Engineers read and write records for support, trust and safety, legal or incident work, with a ticket.",
        ),
        Rule::new(
            "global/access/app-service-keeps-records",
            "The product's services read, write and delete the records of their users.",
        ),
        Rule::new(
            "global/access/training-scans-behaviour",
            "The training service scans behaviour for recommendation training.",
        ),
        Rule::new(
            "global/access/training-writes-models",
            "The training service reads and writes model artifacts.",
        ),
        Rule::new(
            "global/access/migration-service-moves-data",
            "Only the deployment's own migration service (organisation domicile) of the region reads, writes, scans, exports, deletes and shreds, for migration.",
        ),
        Rule::new(
            "global/access/app-service-shreds-on-request",
            "A subject is crypto-shredded at a user's ticketed request by the app service.",
        ),
        Rule::new("global/access/deny-by-default", "A request that no access rule permits is denied."),
        Rule::new("global/access/auditor-reads-log", "The independent monitor (audit-firm) reads the audit log for an audit with a ticket."),
        Rule::new(
            "global/access/security-checks-store",
            "Security staff of the region check its store (counts and blind names, no plaintext) for an audit with a ticket.",
        ),
        Rule::new(
            "global/access/auditor-reads-nothing-else",
            "Auditors read nothing but the audit log.",
        ),
    ]
}

/// The global deployment's residency policy.
#[derive(Debug, Clone)]
pub struct GlobalPolicy {
    table: PolicyTable,
    global: Region,
}

/// The policy this crate provides, under the name every policy crate uses.
pub type Policy = GlobalPolicy;

impl GlobalPolicy {
    /// The policy, with its rule table and id.
    pub fn new() -> Self {
        let table = PolicyTable::new(NAME, VERSION, REGIONS, rule_table(), ACCESS_RULES)
            .expect("the policy's name, version and region are valid constants");
        GlobalPolicy {
            global: table.region("global"),
            table,
        }
    }

    fn decide(&self, allowed: bool, rule: &str) -> Decision {
        self.table.decide(allowed, rule)
    }
}

impl Default for GlobalPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl ResidencyPolicy for GlobalPolicy {
    fn table(&self) -> &PolicyTable {
        &self.table
    }

    fn home_region(&self, subject: &Subject) -> Result<Region, ResidencyError> {
        subject.require_residence()?;
        Ok(self.global.clone())
    }

    fn may_rest_in(
        &self,
        _class: DataClass,
        home: &Region,
        region: &Region,
    ) -> Result<Decision, ResidencyError> {
        self.check_region(home)?;
        self.check_region(region)?;
        Ok(self.decide(true, RESTS))
    }

    fn may_transfer(
        &self,
        _class: DataClass,
        home: &Region,
        from: &Region,
        to: &Region,
        _purpose: &Purpose,
    ) -> Result<Decision, ResidencyError> {
        self.check_region(home)?;
        self.check_region(from)?;
        self.check_region(to)?;
        Ok(self.decide(true, TRANSFER))
    }

    fn may_deploy_model(
        &self,
        trained_on: &BTreeSet<Region>,
        region: &Region,
    ) -> Result<Decision, ResidencyError> {
        for source in trained_on {
            self.check_region(source)?;
        }
        self.check_region(region)?;
        if trained_on.is_empty() {
            return Ok(self.decide(false, NO_PROVENANCE));
        }
        Ok(self.decide(true, DEPLOY))
    }
}
