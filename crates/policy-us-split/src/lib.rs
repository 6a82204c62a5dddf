//! The US-split residency policy: regions `us` and `row` (rest of world).
//!
//! Subjects living in the United States or its territories are homed in `us`; everyone else with
//! a valid residence in `row`. Protected data rests only at home and moves only toward home.
//! Public data goes anywhere. Excepted data crosses the border only aggregated over at least
//! [`MIN_AGGREGATE_SUBJECTS`] subjects or pseudonymised. A model is deployed only in the region
//! all its training data came from, and a model leaving `row` is export-controlled technology.
//! Audit records and key material never leave their region.
//!
//! Turning a global deployment into a US split is swapping `domicile-policy-global` for this
//! crate; nothing else changes.
//!
//! ```
//! use std::collections::BTreeSet;
//! use domicile_policy_us_split::UsSplitPolicy;
//! use domicile_residency::{DataClass, Region, ResidencyPolicy, Subject};
//!
//! let policy = UsSplitPolicy::new();
//! let (us, row) = (Region::parse("us")?, Region::parse("row")?);
//! let maria = Subject::parse("maria", Some("PR"), None)?; // Puerto Rico is US territory
//! assert_eq!(policy.home_region(&maria)?, us);
//!
//! let d = policy.may_rest_in(DataClass::Protected, &us, &row)?;
//! assert!(!d.allowed);
//! assert_eq!(d.rule.as_str(), "us-split/protected-rests-in-home-region");
//!
//! let global_model = BTreeSet::from([us.clone(), row.clone()]);
//! assert!(!policy.may_deploy_model(&global_model, &us)?.allowed);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;

use domicile_residency::{
    CountryCode, DataClass, Decision, Jurisdiction, JustificationCode, Obligation, PolicyTable,
    Purpose, Region, ResidencyError, ResidencyPolicy, Rule, Subject,
};

/// The policy's name: the first segment of its rule ids.
pub const NAME: &str = "us-split";
/// The policy's version. Bump it when a rule changes.
pub const VERSION: &str = "2.1.0";
/// The regions, each with the country it is operated from: `us` on US soil by the trusted
/// technology partner, `row` (rest of world) in Singapore.
pub const REGIONS: &[(&str, &str)] = &[("us", "US"), ("row", "SG")];
/// The Cedar access rules.
pub const ACCESS_RULES: &str = include_str!("access.cedar");
/// The smallest number of subjects an aggregate of Excepted data crossing the border may cover.
pub const MIN_AGGREGATE_SUBJECTS: u32 = 50;
/// The longest approval a USDS approver may give, in seconds (8 hours). The Cedar rules spell it
/// out as `28800`; a test ties the text to this constant.
pub const MAX_APPROVAL_SECS: u64 = 8 * 60 * 60;
/// The export-control regime that covers recommendation models leaving `row`.
pub const EXPORT_REGIME: &str = "CN-TECH-EXPORT-CATALOGUE-2020";
/// The controlled item under [`EXPORT_REGIME`].
pub const EXPORT_ITEM: &str =
    "21: personalized information push service technology based on data analysis";
/// The organisation the arrangement names as the US entity.
pub const US_ENTITY: &str = "usds";
/// The trusted technology partner: custody, infrastructure approvals, log monitoring; never
/// US plaintext.
pub const TECHNOLOGY_PARTNER: &str = "techpartner";
/// The parent company's entities: none of them reads US plaintext.
pub const PARENT_ENTITIES: [&str; 4] = [
    "bytedance-ltd",
    "bytedance-cn",
    "bytedance-sg",
    "bytedance-us",
];
/// The independent monitor organisations whose auditors read the log.
pub const MONITORS: [&str; 1] = ["audit-firm"];

/// The fields of a record value that name or single out a person: a Gate releasing records
/// pseudonymised replaces their values with keyed pseudonyms (under its transfer key, not the
/// audit key), so Excepted data crosses a border de-identified in value as well as subject.
pub const IDENTIFYING_FIELDS: [&str; 10] = [
    "user",
    "user_id",
    "subject",
    "account",
    "name",
    "email",
    "phone",
    "device_id",
    "ip",
    "location",
];

/// The United States and its territories: Puerto Rico, Guam, the US Virgin Islands, American
/// Samoa, the Northern Mariana Islands and the US Minor Outlying Islands.
pub const US_COUNTRIES: [&str; 7] = ["US", "PR", "GU", "VI", "AS", "MP", "UM"];

const HOME: &str = "us-split/home-by-residence";
const PROTECTED_RESTS: &str = "us-split/protected-rests-in-home-region";
const PROTECTED_MOVES: &str = "us-split/protected-moves-only-toward-home-for-migration";
const PUBLIC: &str = "us-split/public-goes-anywhere";
const EXCEPTED_HOME: &str = "us-split/excepted-rests-at-home";
const EXCEPTED_CROSSES: &str = "us-split/excepted-crosses-deidentified";
const MODEL_HOME: &str = "us-split/model-rests-where-trained";
const MODEL_LEAVES_ROW: &str = "us-split/row-model-leaves-under-export-licence";
const MODEL_STAYS_US: &str = "us-split/us-model-stays-in-us";
const STAYS: &str = "us-split/audit-and-keys-stay-in-region";
const DEPLOY: &str = "us-split/model-deploys-only-where-all-its-data-is-homed";
const NO_PROVENANCE: &str = "us-split/model-without-provenance";

fn rule_table() -> Vec<Rule> {
    vec![
        Rule::new(HOME, "Residents of the US and its territories are homed in us, residents of any other country in row; a subject without a valid residence has no home until it is resolved."),
        Rule::new(PROTECTED_RESTS, "Protected data rests only in its subject's home region."),
        Rule::new(PROTECTED_MOVES, "Protected data moves between regions only toward its subject's home region, and only for migration."),
        Rule::new(PUBLIC, "Public data may rest in both regions and move both ways."),
        Rule::new(EXCEPTED_HOME, "Excepted data rests in its home region."),
        Rule::new(EXCEPTED_CROSSES, "Excepted data crosses the border only for interoperability or business metrics, aggregated over at least 50 subjects or pseudonymised (its identifying fields too)."),
        Rule::new(MODEL_HOME, "A model artifact rests in the region it was trained in, and may always go back there."),
        Rule::new(MODEL_LEAVES_ROW, "A model artifact leaving row is export-controlled technology and needs a licence (China's technology export catalogue, item 21)."),
        Rule::new(MODEL_STAYS_US, "A model artifact trained in us never leaves us."),
        Rule::new(STAYS, "Audit records and key material rest only in the region that created them."),
        Rule::new(DEPLOY, "A model is deployed in us only if trained on us data alone, and in row only if trained on row data alone."),
        Rule::new(NO_PROVENANCE, "A model that names no training region is never deployed."),
        Rule::new("us-split/access/us-staff-read-us-data", "USDS staff located in the US or its territories read and write US records for user support or trust and safety, with a ticket."),
        Rule::new("us-split/access/usds-staff-read-us-data-with-approval", "For a legal request or a production incident, USDS staff located in the US read US records only with a USDS approver's approval of at most 8 hours naming the subjects."),
        Rule::new("us-split/access/staff-read-row-data", "Engineers of the rest-of-world region read and write its records for support, trust and safety, legal or incident work, with a ticket."),
        Rule::new("us-split/access/us-approver-approves-us-access", "Approvals for US data are given by USDS approvers located in the US, for at most 8 hours, never for key material or audit records."),
        Rule::new("us-split/access/app-service-keeps-own-region", "The product's services (in us, USDS's, located in the US) read, write and delete records of their own region, for user support or trust and safety."),
        Rule::new("us-split/access/app-service-shreds-on-request", "A subject is crypto-shredded at a user's ticketed request only by their home region's app service."),
        Rule::new("us-split/access/training-scans-own-region-behaviour", "Each region's training service (in us, USDS's, located in the US) scans only its own region's behaviour, for recommendation training."),
        Rule::new("us-split/access/training-writes-own-region-models", "Each region's training service reads and writes model artifacts of its own region."),
        Rule::new("us-split/access/metrics-service-scans-excepted-for-metrics", "Each region's metrics service (in us, USDS's, located in the US) scans its own region's Excepted data for interoperability or business metrics; what leaves the region leaves de-identified."),
        Rule::new("us-split/access/migration-service-moves-data", "Only the deployment's own migration service of a region moves that region's data, for migration."),
        Rule::new("us-split/access/parent-and-partner-never-read-us-plaintext", "The parent company's entities and the technology partner never read, scan, export or approve access to US Protected or Excepted data."),
        Rule::new("us-split/access/deny-by-default", "A request that no access rule permits is denied."),
        Rule::new("us-split/access/auditor-reads-log", "The independent monitor (audit-firm) reads the audit log for an audit with a ticket."),
        Rule::new("us-split/access/security-reads-own-region-log", "USDS security staff and the partner's monitoring staff read their own region's log for an audit with a ticket."),
        Rule::new("us-split/access/security-checks-own-region-store", "USDS security staff and the partner's monitoring staff check their own region's store (counts and blind names, no plaintext) for an audit with a ticket."),
        Rule::new("us-split/access/auditor-reads-nothing-else", "Auditors read nothing but the audit log."),
    ]
}

/// The US split's residency policy.
#[derive(Debug, Clone)]
pub struct UsSplitPolicy {
    table: PolicyTable,
    us: Region,
    row: Region,
}

/// The policy this crate provides, under the name every policy crate uses.
pub type Policy = UsSplitPolicy;

impl UsSplitPolicy {
    /// The policy, with its rule table and id.
    pub fn new() -> Self {
        let table = PolicyTable::new(NAME, VERSION, REGIONS, rule_table(), ACCESS_RULES)
            .expect("the policy's name, version and regions are valid constants");
        UsSplitPolicy {
            us: table.region("us"),
            row: table.region("row"),
            table,
        }
    }

    /// The `us` region.
    pub fn us(&self) -> &Region {
        &self.us
    }

    /// The `row` (rest of world) region.
    pub fn row(&self) -> &Region {
        &self.row
    }

    /// Whether a country is the United States or one of its territories.
    pub fn is_us_country(country: CountryCode) -> bool {
        US_COUNTRIES.contains(&country.as_str())
    }

    fn allow(&self, rule: &str) -> Decision {
        self.table.decide(true, rule)
    }

    fn deny(&self, rule: &str) -> Decision {
        self.table.decide(false, rule)
    }

    fn deidentify(&self) -> Obligation {
        Obligation::AnyOf {
            options: vec![
                Obligation::Aggregate {
                    min_subjects: MIN_AGGREGATE_SUBJECTS,
                },
                Obligation::Pseudonymize,
            ],
        }
    }

    fn export_licence(&self) -> Obligation {
        Obligation::ExportLicence {
            regime: EXPORT_REGIME.to_owned(),
            item: EXPORT_ITEM.to_owned(),
        }
    }
}

impl Default for UsSplitPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl ResidencyPolicy for UsSplitPolicy {
    fn table(&self) -> &PolicyTable {
        &self.table
    }

    fn home_region(&self, subject: &Subject) -> Result<Region, ResidencyError> {
        let residence = subject.require_residence()?;
        Ok(if Self::is_us_country(residence) {
            self.us.clone()
        } else {
            self.row.clone()
        })
    }

    fn may_rest_in(
        &self,
        class: DataClass,
        home: &Region,
        region: &Region,
    ) -> Result<Decision, ResidencyError> {
        self.check_region(home)?;
        self.check_region(region)?;
        let at_home = home == region;
        Ok(match class {
            DataClass::Protected if at_home => self.allow(PROTECTED_RESTS),
            DataClass::Protected => self.deny(PROTECTED_RESTS),
            DataClass::Public => self.allow(PUBLIC),
            DataClass::Excepted if at_home => self.allow(EXCEPTED_HOME),
            DataClass::Excepted => self.allow(EXCEPTED_CROSSES).with(self.deidentify()),
            DataClass::ModelArtifact if at_home => self.allow(MODEL_HOME),
            DataClass::ModelArtifact if *home == self.row => {
                self.allow(MODEL_LEAVES_ROW).with(self.export_licence())
            }
            DataClass::ModelArtifact => self.deny(MODEL_STAYS_US),
            DataClass::AuditRecord | DataClass::KeyMaterial if at_home => self.allow(STAYS),
            DataClass::AuditRecord | DataClass::KeyMaterial => self.deny(STAYS),
        })
    }

    fn may_transfer(
        &self,
        class: DataClass,
        home: &Region,
        from: &Region,
        to: &Region,
        purpose: &Purpose,
    ) -> Result<Decision, ResidencyError> {
        self.check_region(home)?;
        self.check_region(from)?;
        self.check_region(to)?;
        if from == to {
            // Not a transfer: the question is only whether the data may rest there.
            return self.may_rest_in(class, home, to);
        }
        Ok(match class {
            DataClass::Protected if to == home && purpose.code == JustificationCode::Migration => {
                self.allow(PROTECTED_MOVES)
            }
            DataClass::Protected => self.deny(PROTECTED_MOVES),
            DataClass::Public => self.allow(PUBLIC),
            DataClass::Excepted if purpose.code.lets_excepted_cross() => {
                self.allow(EXCEPTED_CROSSES).with(self.deidentify())
            }
            DataClass::Excepted => self.deny(EXCEPTED_CROSSES),
            // A model going back to where it was trained is going home, not being exported.
            DataClass::ModelArtifact if to == home => self.allow(MODEL_HOME),
            DataClass::ModelArtifact if *from == self.row && *home == self.row => {
                self.allow(MODEL_LEAVES_ROW).with(self.export_licence())
            }
            DataClass::ModelArtifact if *home == self.row => self.allow(MODEL_HOME),
            DataClass::ModelArtifact => self.deny(MODEL_STAYS_US),
            DataClass::AuditRecord | DataClass::KeyMaterial => self.deny(STAYS),
        })
    }

    fn approval_obligation(&self, region: &Region) -> Option<Obligation> {
        (*region == self.us).then(us_approval_obligation)
    }

    fn identifying_fields(&self, _class: DataClass) -> &[&'static str] {
        &IDENTIFYING_FIELDS
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
            return Ok(self.deny(NO_PROVENANCE));
        }
        Ok(if trained_on.iter().all(|source| source == region) {
            self.allow(DEPLOY)
        } else {
            self.deny(DEPLOY)
        })
    }
}

/// The approval obligation a caller outside the US entity must meet to reach US Protected data.
pub fn us_approval_obligation() -> Obligation {
    Obligation::RequireApproval {
        by: Jurisdiction::parse("US").expect("US is an assigned country code"),
        max_duration_secs: MAX_APPROVAL_SECS,
    }
}
