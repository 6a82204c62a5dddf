//! The residency vocabulary of domicile, and the `ResidencyPolicy` trait.
//!
//! A deployment of domicile runs one product in several regions. Where each piece of data may
//! rest, where it may travel and which region may run a model trained on it are questions for a
//! *residency policy*: a crate that implements [`ResidencyPolicy`] for one deployment shape. This
//! crate holds the words those policies speak — [`Region`], [`Jurisdiction`], [`Subject`],
//! [`DataClass`], [`Purpose`], [`Decision`], [`Obligation`], [`PolicyId`] — and, behind the
//! `conformance` feature, the suite every policy crate runs from its own tests.
//!
//! Every value is validated when it is built, so an invalid region or country code cannot exist,
//! and every parse error quotes what it was given. Every decision names the rule that produced
//! it, so an auditor can trace any log line back to a written rule. Nothing here does I/O.
//!
//! ```
//! use domicile_residency::{
//!     DataClass, Decision, JustificationCode, Obligation, Purpose, Region, RuleId, Subject,
//! };
//!
//! let home = Region::parse("us")?;
//! let subject = Subject::parse("user-17", Some("PR"), None)?;
//! assert_eq!(subject.attributes.residence.unwrap().as_str(), "PR");
//!
//! let rule = RuleId::parse("us-split/excepted-crosses-deidentified")?;
//! let decision = Decision::allow(&rule).with(Obligation::Pseudonymize);
//! assert!(decision.allowed);
//! assert_eq!(decision.to_string(), "allow by us-split/excepted-crosses-deidentified; pseudonymize");
//!
//! let why = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1234");
//! assert_eq!(why.to_string(), "user_requested_support (SUP-1234)");
//! assert_eq!(DataClass::Protected.as_str(), "protected");
//! assert!(Region::parse("Mars Base").is_err());
//! # let _ = home;
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod class;
mod decision;
mod digest;
mod error;
mod jurisdiction;
mod licence;
mod policy;
mod purpose;
mod region;
mod resolver;
mod subject;
mod table;

#[cfg(feature = "conformance")]
pub mod conformance;

/// The Cedar schema every domicile access policy is written against: actors with roles and an
/// employing organisation, records with a class, region and subject home, audit logs, and the
/// request context (purpose, ticket, approval). Policy crates return it from
/// [`ResidencyPolicy::access_schema`] unless they need a schema of their own.
pub const ACCESS_SCHEMA: &str = include_str!("access_schema.cedarschema");

pub use class::DataClass;
pub use decision::{Decision, Obligation, Rule, RuleId};
pub use digest::Sha256Digest;
pub use error::ResidencyError;
pub use jurisdiction::{CountryCode, Jurisdiction, JurisdictionGroup};
pub use licence::ExportLicence;
pub use policy::{PolicyDigest, PolicyId, ResidencyPolicy};
pub use purpose::{JustificationCode, Purpose};
pub use region::Region;
pub use resolver::{PolicyResolver, UnknownPolicy};
pub use subject::{Subject, SubjectAttributes, SubjectId};
pub use table::PolicyTable;
