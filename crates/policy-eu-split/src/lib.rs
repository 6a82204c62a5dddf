//! The EU-split residency policy: regions `eu` (the EEA, the United Kingdom and Switzerland),
//! `us` (the US and its territories) and `row` (rest of world).
//!
//! The EU arrangement beside the US one. European users' data is stored in Europe by default:
//! subjects living in an EEA country, the United Kingdom or Switzerland are homed in `eu`, those
//! living in the US or its territories in `us`, everyone else in `row`. Protected data rests only
//! at home and moves only toward home, for migration. Excepted data is pseudonymised before it
//! leaves `eu` (no other way out), and leaves `us` or `row` only aggregated over at least
//! [`MIN_AGGREGATE_SUBJECTS`] subjects or pseudonymised. Public data goes anywhere. A model is
//! deployed only in the region all its training data came from; a model trained in `eu` or `us`
//! never leaves it, and a model leaving `row` is export-controlled technology. Audit records and
//! key material never leave their region.
//!
//! The access rules (`access.cedar`) read EU data in Europe only: by the EU entity's staff
//! ([`EU_ENTITY`]) located in Europe, or for anyone outside Europe through the EU entity's
//! security gateway with an EU approver's approval; the parent's entities never read it; an
//! independent security monitor ([`EU_MONITOR`]) reads the `eu` log. The `us` region keeps every
//! access rule of the US split.
//!
//! A split of a split: a deployment under `us-split` moves to this policy with
//! `domicile split run --to eu-split`, which moves European subjects out of `row` into `eu`.
//!
//! ```
//! use std::collections::BTreeSet;
//! use domicile_policy_eu_split::EuSplitPolicy;
//! use domicile_residency::{DataClass, Obligation, Region, ResidencyPolicy, Subject};
//!
//! let policy = EuSplitPolicy::new();
//! let (eu, us, row) = (Region::parse("eu")?, Region::parse("us")?, Region::parse("row")?);
//! let lena = Subject::parse("lena", Some("NO"), None)?; // Norway is in the EEA
//! assert_eq!(policy.home_region(&lena)?, eu);
//! assert_eq!(policy.home_region(&Subject::parse("sam", Some("GB"), None)?)?, eu);
//! assert_eq!(policy.home_region(&Subject::parse("maria", Some("PR"), None)?)?, us);
//!
//! let d = policy.may_rest_in(DataClass::Protected, &eu, &row)?;
//! assert!(!d.allowed);
//! assert_eq!(d.rule.as_str(), "eu-split/protected-rests-in-home-region");
//!
//! // Excepted data leaves Europe only pseudonymised.
//! let d = policy.may_rest_in(DataClass::Excepted, &eu, &us)?;
//! assert_eq!(d.obligations, vec![Obligation::Pseudonymize]);
//!
//! let trained_in_eu = BTreeSet::from([eu.clone()]);
//! assert!(policy.may_deploy_model(&trained_in_eu, &eu)?.allowed);
//! assert!(!policy.may_deploy_model(&trained_in_eu, &us)?.allowed);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;

use domicile_residency::{
    CountryCode, DataClass, Decision, Jurisdiction, JurisdictionGroup, JustificationCode,
    Obligation, PolicyTable, Purpose, Region, ResidencyError, ResidencyPolicy, Rule, Subject,
};

/// The policy's name: the first segment of its rule ids.
pub const NAME: &str = "eu-split";
/// The policy's version. Bump it when a rule changes.
pub const VERSION: &str = "1.0.0";
/// The regions, each with the country it is operated from: `eu` from Ireland, `us` on US soil
/// by the trusted technology partner, `row` (rest of world) from Singapore.
pub const REGIONS: &[(&str, &str)] = &[("eu", "IE"), ("us", "US"), ("row", "SG")];
/// The Cedar access rules.
pub const ACCESS_RULES: &str = include_str!("access.cedar");
/// The smallest number of subjects an aggregate of Excepted data leaving `us` or `row` may
/// cover. Excepted data leaving `eu` is pseudonymised, never only aggregated.
pub const MIN_AGGREGATE_SUBJECTS: u32 = 50;
/// The longest approval an approver may give, in seconds (8 hours). The Cedar rules spell it out
/// as `28800`; a test ties the text to this constant.
pub const MAX_APPROVAL_SECS: u64 = 8 * 60 * 60;
/// The export-control regime that covers recommendation models leaving `row`.
pub const EXPORT_REGIME: &str = "CN-TECH-EXPORT-CATALOGUE-2020";
/// The controlled item under [`EXPORT_REGIME`].
pub const EXPORT_ITEM: &str =
    "21: personalized information push service technology based on data analysis";
/// The EU entity: its staff located in Europe read EU data; its security gateway serves
/// everyone else; its approvers approve.
pub const EU_ENTITY: &str = "tiktok-ie";
/// The independent security monitor that reads the `eu` log.
pub const EU_MONITOR: &str = "eu-monitor";
/// The organisation the US arrangement names as the US entity.
pub const US_ENTITY: &str = "usds";
/// The US trusted technology partner: custody, infrastructure approvals, log monitoring; never
/// US plaintext.
pub const TECHNOLOGY_PARTNER: &str = "techpartner";
/// The parent company's entities: none of them reads EU or US plaintext.
pub const PARENT_ENTITIES: [&str; 4] = [
    "bytedance-ltd",
    "bytedance-cn",
    "bytedance-sg",
    "bytedance-us",
];
/// The independent monitor organisations whose auditors read the logs: [`EU_MONITOR`] the `eu`
/// log, `audit-firm` the `us` and `row` logs.
pub const MONITORS: [&str; 2] = [EU_MONITOR, "audit-firm"];
/// The remote-access role: the EU entity's security gateway, through which staff outside Europe
/// reach EU data.
pub const SECURITY_GATEWAY_ROLE: &str = "security-gateway";

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
/// The countries outside the EEA whose residents are homed in `eu`: the United Kingdom and
/// Switzerland.
pub const EU_EXTRA_COUNTRIES: [&str; 2] = ["GB", "CH"];

const HOME: &str = "eu-split/home-by-residence";
const PROTECTED_RESTS: &str = "eu-split/protected-rests-in-home-region";
const PROTECTED_MOVES: &str = "eu-split/protected-moves-only-toward-home-for-migration";
const PUBLIC: &str = "eu-split/public-goes-anywhere";
const EXCEPTED_HOME: &str = "eu-split/excepted-rests-at-home";
const EXCEPTED_LEAVES_EU: &str = "eu-split/eu-excepted-leaves-only-pseudonymised";
const EXCEPTED_CROSSES: &str = "eu-split/excepted-crosses-deidentified";
const MODEL_HOME: &str = "eu-split/model-rests-where-trained";
const MODEL_LEAVES_ROW: &str = "eu-split/row-model-leaves-under-export-licence";
const MODEL_STAYS_EU: &str = "eu-split/eu-model-stays-in-eu";
const MODEL_STAYS_US: &str = "eu-split/us-model-stays-in-us";
const STAYS: &str = "eu-split/audit-and-keys-stay-in-region";
const DEPLOY: &str = "eu-split/model-deploys-only-where-all-its-data-is-homed";
const NO_PROVENANCE: &str = "eu-split/model-without-provenance";

fn rule_table() -> Vec<Rule> {
    vec![
        Rule::new(HOME, "Residents of the EEA, the United Kingdom and Switzerland are homed in eu, of the US and its territories in us, of any other country in row; a subject without a valid residence has no home until it is resolved."),
        Rule::new(PROTECTED_RESTS, "Protected data rests only in its subject's home region."),
        Rule::new(PROTECTED_MOVES, "Protected data moves between regions only toward its subject's home region, and only for migration."),
        Rule::new(PUBLIC, "Public data may rest in every region and move every way."),
        Rule::new(EXCEPTED_HOME, "Excepted data rests in its home region."),
        Rule::new(EXCEPTED_LEAVES_EU, "Excepted data of eu leaves eu only for interoperability or business metrics, and only pseudonymised (its identifying fields too)."),
        Rule::new(EXCEPTED_CROSSES, "Excepted data of us or row crosses a border only for interoperability or business metrics, aggregated over at least 50 subjects or pseudonymised (its identifying fields too)."),
        Rule::new(MODEL_HOME, "A model artifact rests in the region it was trained in, and may always go back there."),
        Rule::new(MODEL_LEAVES_ROW, "A model artifact leaving row is export-controlled technology and needs a licence (China's technology export catalogue, item 21)."),
        Rule::new(MODEL_STAYS_EU, "A model artifact trained in eu never leaves eu."),
        Rule::new(MODEL_STAYS_US, "A model artifact trained in us never leaves us."),
        Rule::new(STAYS, "Audit records and key material rest only in the region that created them."),
        Rule::new(DEPLOY, "A model is deployed in a region only if trained on that region's data alone."),
        Rule::new(NO_PROVENANCE, "A model that names no training region is never deployed."),
        Rule::new("eu-split/access/eu-staff-read-eu-data", "EU-entity staff located in Europe read and write EU records for user support or trust and safety, with a ticket."),
        Rule::new("eu-split/access/eu-staff-read-eu-data-with-approval", "For a legal request or a production incident, EU-entity staff located in Europe read EU records only with an EU approver's approval of at most 8 hours naming the subjects."),
        Rule::new("eu-split/access/security-gateway-serves-remote-staff-with-approval", "Staff outside Europe reach EU records only through the EU entity's security gateway, for a listed purpose with a ticket and an EU approver's approval of at most 8 hours naming the subjects."),
        Rule::new("eu-split/access/eu-approver-approves-eu-access", "Approvals for EU data are given by EU-entity approvers located in Europe, for at most 8 hours, never for key material or audit records."),
        Rule::new("eu-split/access/remote-staff-only-through-security-gateway", "No person located outside Europe reads, writes, deletes, scans, exports, approves or shreds EU Protected or Excepted data directly."),
        Rule::new("eu-split/access/parent-never-reads-eu-plaintext", "The parent company's entities never read, scan, export or approve access to EU Protected or Excepted data."),
        Rule::new("eu-split/access/us-staff-read-us-data", "USDS staff located in the US or its territories read and write US records for user support or trust and safety, with a ticket."),
        Rule::new("eu-split/access/usds-staff-read-us-data-with-approval", "For a legal request or a production incident, USDS staff located in the US read US records only with a USDS approver's approval of at most 8 hours naming the subjects."),
        Rule::new("eu-split/access/us-approver-approves-us-access", "Approvals for US data are given by USDS approvers located in the US, for at most 8 hours, never for key material or audit records."),
        Rule::new("eu-split/access/parent-and-partner-never-read-us-plaintext", "The parent company's entities and the technology partner never read, scan, export or approve access to US Protected or Excepted data."),
        Rule::new("eu-split/access/staff-read-row-data", "Engineers of the rest-of-world region read and write its records for support, trust and safety, legal or incident work, with a ticket."),
        Rule::new("eu-split/access/app-service-keeps-own-region", "The product's services (in us USDS's, in eu the EU entity's) read, write and delete records of their own region, for user support or trust and safety."),
        Rule::new("eu-split/access/app-service-shreds-on-request", "A subject is crypto-shredded at a user's ticketed request only by their home region's app service."),
        Rule::new("eu-split/access/training-scans-own-region-behaviour", "Each region's training service (in us USDS's, in eu the EU entity's) scans only its own region's behaviour, for recommendation training."),
        Rule::new("eu-split/access/training-writes-own-region-models", "Each region's training service reads and writes model artifacts of its own region."),
        Rule::new("eu-split/access/metrics-service-scans-excepted-for-metrics", "Each region's metrics service (in us USDS's, in eu the EU entity's) scans its own region's Excepted data for interoperability or business metrics; what leaves the region leaves de-identified."),
        Rule::new("eu-split/access/migration-service-moves-data", "Only the deployment's own migration service of a region moves that region's data, for migration."),
        Rule::new("eu-split/access/deny-by-default", "A request that no access rule permits is denied."),
        Rule::new("eu-split/access/auditor-reads-log", "The independent monitors read the logs for an audit with a ticket: the EU security monitor (eu-monitor) the eu log, the audit firm the us and row logs."),
        Rule::new("eu-split/access/security-reads-own-region-log", "Security staff read their own region's log for an audit with a ticket: the EU entity's in eu, USDS's and the partner's monitoring staff in us."),
        Rule::new("eu-split/access/security-checks-own-region-store", "Security staff check their own region's store (counts and blind names, no plaintext) for an audit with a ticket: the EU entity's in eu, USDS's and the partner's in us."),
        Rule::new("eu-split/access/auditor-reads-nothing-else", "Auditors read nothing but the audit log."),
    ]
}

/// The EU split's residency policy.
#[derive(Debug, Clone)]
pub struct EuSplitPolicy {
    table: PolicyTable,
    eu: Region,
    us: Region,
    row: Region,
}

/// The policy this crate provides, under the name every policy crate uses.
pub type Policy = EuSplitPolicy;

impl EuSplitPolicy {
    /// The policy, with its rule table and id.
    pub fn new() -> Self {
        let table = PolicyTable::new(NAME, VERSION, REGIONS, rule_table(), ACCESS_RULES)
            .expect("the policy's name, version and regions are valid constants");
        EuSplitPolicy {
            eu: table.region("eu"),
            us: table.region("us"),
            row: table.region("row"),
            table,
        }
    }

    /// The `eu` region.
    pub fn eu(&self) -> &Region {
        &self.eu
    }

    /// The `us` region.
    pub fn us(&self) -> &Region {
        &self.us
    }

    /// The `row` (rest of world) region.
    pub fn row(&self) -> &Region {
        &self.row
    }

    /// Whether a country's residents are homed in `eu`: an EEA member, the United Kingdom or
    /// Switzerland.
    pub fn is_eu_country(country: CountryCode) -> bool {
        country.is_member_of(JurisdictionGroup::Eea)
            || EU_EXTRA_COUNTRIES.contains(&country.as_str())
    }

    /// Whether a country is the United States or one of its territories.
    pub fn is_us_country(country: CountryCode) -> bool {
        US_COUNTRIES.contains(&country.as_str())
    }

    /// Every country whose residents are homed in `eu` (and where EU-entity staff must be located
    /// to read EU data), in the order the Cedar rules list them.
    pub fn europe_countries() -> Vec<CountryCode> {
        CountryCode::all()
            .filter(|c| Self::is_eu_country(*c))
            .collect()
    }

    fn allow(&self, rule: &str) -> Decision {
        self.table.decide(true, rule)
    }

    fn deny(&self, rule: &str) -> Decision {
        self.table.decide(false, rule)
    }

    /// Excepted data leaving `home`: from `eu` only pseudonymised; from `us` or `row`
    /// pseudonymised or aggregated.
    fn excepted_abroad(&self, home: &Region) -> Decision {
        if *home == self.eu {
            self.allow(EXCEPTED_LEAVES_EU)
                .with(Obligation::Pseudonymize)
        } else {
            self.allow(EXCEPTED_CROSSES).with(Obligation::AnyOf {
                options: vec![
                    Obligation::Aggregate {
                        min_subjects: MIN_AGGREGATE_SUBJECTS,
                    },
                    Obligation::Pseudonymize,
                ],
            })
        }
    }

    /// A model artifact trained in `home` away from home.
    fn model_abroad(&self, home: &Region) -> Decision {
        if *home == self.row {
            self.allow(MODEL_LEAVES_ROW)
                .with(Obligation::ExportLicence {
                    regime: EXPORT_REGIME.to_owned(),
                    item: EXPORT_ITEM.to_owned(),
                })
        } else if *home == self.us {
            self.deny(MODEL_STAYS_US)
        } else {
            self.deny(MODEL_STAYS_EU)
        }
    }
}

impl Default for EuSplitPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl ResidencyPolicy for EuSplitPolicy {
    fn table(&self) -> &PolicyTable {
        &self.table
    }

    fn home_region(&self, subject: &Subject) -> Result<Region, ResidencyError> {
        let residence = subject.require_residence()?;
        Ok(if Self::is_eu_country(residence) {
            self.eu.clone()
        } else if Self::is_us_country(residence) {
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
            DataClass::Excepted => self.excepted_abroad(home),
            DataClass::ModelArtifact if at_home => self.allow(MODEL_HOME),
            DataClass::ModelArtifact => self.model_abroad(home),
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
            // Only for interoperability or business metrics, and pseudonymised before it crosses
            // any border, whichever way.
            DataClass::Excepted if purpose.code.lets_excepted_cross() => self.excepted_abroad(home),
            DataClass::Excepted if *home == self.eu => self.deny(EXCEPTED_LEAVES_EU),
            DataClass::Excepted => self.deny(EXCEPTED_CROSSES),
            // A model going back to where it was trained is going home, not being exported.
            DataClass::ModelArtifact if to == home => self.allow(MODEL_HOME),
            DataClass::ModelArtifact => self.model_abroad(home),
            DataClass::AuditRecord | DataClass::KeyMaterial => self.deny(STAYS),
        })
    }

    fn approval_obligation(&self, region: &Region) -> Option<Obligation> {
        if *region == self.eu {
            Some(eu_approval_obligation())
        } else if *region == self.us {
            Some(Obligation::RequireApproval {
                by: Jurisdiction::parse("US").expect("US is an assigned country code"),
                max_duration_secs: MAX_APPROVAL_SECS,
            })
        } else {
            None
        }
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

/// The approval obligation a caller outside Europe must meet to reach EU Protected data through
/// the security gateway: an approver of an organisation incorporated in the EEA (the EU entity is
/// Irish), for at most [`MAX_APPROVAL_SECS`].
pub fn eu_approval_obligation() -> Obligation {
    Obligation::RequireApproval {
        by: Jurisdiction::Group(JurisdictionGroup::Eea),
        max_duration_secs: MAX_APPROVAL_SECS,
    }
}
