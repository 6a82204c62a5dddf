//! Migration warrants: a split's authority to move whole subjects, signed by the migration key.
//!
//! A Gate moves a subject's records out (or takes them in) for a migration only under a warrant:
//! the fingerprint of a split plan and the exact set of subjects it moves, signed with Ed25519
//! by the deployment's migration key, whose public key the Gate was given when it opened
//! ([`Gate::trust_migration_key`](crate::Gate::trust_migration_key)). Holding the
//! `migration-service` role is not enough: without a warrant, or for a subject the warrant does
//! not name, the call is refused under the Gate rule
//! [`MIGRATION_WARRANT`](crate::MIGRATION_WARRANT), and the refusal is logged. The warrant's plan
//! fingerprint goes into every entry it authorises.
//!
//! The subject set never leaves memory: the signature covers the SHA-256 of the sorted ids, so
//! a warrant names no one in the clear anywhere it is logged.
//!
//! ```
//! use domicile_access::MigrationWarrant;
//! use ring::signature::{Ed25519KeyPair, KeyPair};
//!
//! let rng = ring::rand::SystemRandom::new();
//! let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "no randomness")?;
//! let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "a bad key")?;
//! let subjects = ["ana".parse()?, "bo".parse()?];
//! let message = MigrationWarrant::message("3f2a9c", &subjects);
//! let warrant = MigrationWarrant::new("3f2a9c", subjects, pair.sign(&message).as_ref().to_vec());
//! warrant.verify(pair.public_key().as_ref())?;
//! assert!(warrant.covers(&"ana".parse()?));
//! assert!(!warrant.covers(&"cy".parse()?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

use domicile_residency::SubjectId;

/// The domain separator of a warrant's signed message.
const DOMAIN: &[u8] = b"domicile migration warrant v1\n";

/// A split plan's authority to move a set of subjects, signed by the migration key.
#[derive(Clone)]
pub struct MigrationWarrant {
    plan: String,
    subjects: BTreeSet<SubjectId>,
    signature: Vec<u8>,
    /// The message [`verify`](Self::verify) checks, computed once: a split checks the same
    /// warrant for every batch, and hashing every id each time cost more than the copy.
    message: OnceLock<Vec<u8>>,
}

impl fmt::Debug for MigrationWarrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the subjects' ids: only how many.
        f.debug_struct("MigrationWarrant")
            .field("plan", &self.plan)
            .field("subjects", &self.subjects.len())
            .finish_non_exhaustive()
    }
}

/// Why a warrant is not good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarrantError {
    /// The signature does not verify under the trusted migration key.
    #[error("the warrant for plan {plan} is not signed by the migration key this Gate trusts")]
    BadSignature {
        /// The plan it claims.
        plan: String,
    },
    /// The Gate trusts no migration key.
    #[error("this Gate trusts no migration key, so it honours no migration warrant")]
    NoTrustedKey,
}

impl MigrationWarrant {
    /// The bytes a migration key signs for `plan` and `subjects`: a domain separator, the plan
    /// fingerprint, and the SHA-256 over the sorted, distinct subject ids (each length-prefixed).
    pub fn message<'a>(plan: &str, subjects: impl IntoIterator<Item = &'a SubjectId>) -> Vec<u8> {
        let sorted: BTreeSet<&SubjectId> = subjects.into_iter().collect();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&(sorted.len() as u64).to_be_bytes());
        for id in sorted {
            ctx.update(&(id.as_str().len() as u32).to_be_bytes());
            ctx.update(id.as_str().as_bytes());
        }
        let mut out = DOMAIN.to_vec();
        out.extend_from_slice(plan.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(ctx.finish().as_ref());
        out
    }

    /// A warrant from its parts: `signature` is an Ed25519 signature of
    /// [`message`](Self::message)`(plan, subjects)`.
    pub fn new(
        plan: impl Into<String>,
        subjects: impl IntoIterator<Item = SubjectId>,
        signature: Vec<u8>,
    ) -> Self {
        MigrationWarrant {
            plan: plan.into(),
            subjects: subjects.into_iter().collect(),
            signature,
            message: OnceLock::new(),
        }
    }

    /// The plan fingerprint it carries.
    pub fn plan(&self) -> &str {
        &self.plan
    }

    /// Whether it names `subject`.
    pub fn covers(&self, subject: &SubjectId) -> bool {
        self.subjects.contains(subject)
    }

    /// How many subjects it names.
    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    /// Whether it names no subject.
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    /// Checks the signature against an Ed25519 public key (32 bytes).
    pub fn verify(&self, public_key: &[u8]) -> Result<(), WarrantError> {
        let message = self
            .message
            .get_or_init(|| Self::message(&self.plan, &self.subjects));
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
            .verify(message, &self.signature)
            .map_err(|_| WarrantError::BadSignature {
                plan: self.plan.clone(),
            })
    }
}
