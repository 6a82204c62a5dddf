//! The error type of domicile-split.

use std::path::PathBuf;

use domicile_access::{AccessError, GateError};
use domicile_audit::AuditError;
use domicile_residency::{Region, ResidencyError};
use domicile_store::StoreError;

/// What stopped a split. Each variant names what was wrong; none leaves data half-moved without
/// the journal knowing (a rerun resumes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// A file or directory could not be read or written.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A policy name the binary does not link.
    #[error(transparent)]
    UnknownPolicy(#[from] domicile_residency::UnknownPolicy),
    /// A crash-safe file operation failed (see `domicile_durable`).
    #[error(transparent)]
    File(#[from] domicile_durable::FileError),
    /// The deployment manifest is missing or does not parse.
    #[error("the deployment manifest {path} is unusable: {detail}")]
    Manifest {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The keys directory is not the one the deployment was created with: a key is missing or
    /// its fingerprint differs from the manifest's. Nothing was created or changed.
    #[error("the keys directory {keys} does not hold this deployment's {which} of region {region} ({detail}); pass the --keys directory the deployment was created with (`domicile init` creates keys for a new deployment)")]
    KeysMismatch {
        /// The keys directory given.
        keys: PathBuf,
        /// The region whose key does not match.
        region: String,
        /// Which key: `index key`, `log signing key` or `audit key`.
        which: &'static str,
        /// `missing`, or `fingerprint <found> where the manifest has <expected>`.
        detail: String,
    },
    /// The manifest is not one the keys directory is bound to: edited, or restored from an
    /// older copy (a manifest from before a split would reopen the region the split emptied).
    /// Nothing was created or changed.
    #[error("the deployment manifest does not match the keys directory {keys}: {detail}")]
    ManifestNotBound {
        /// The keys directory given.
        keys: PathBuf,
        /// What the keys are bound to, what the manifest names, and what to do.
        detail: String,
    },
    /// A line of an ingest file cannot be ingested (named by number, never by the ids in it).
    #[error("line {line}: {reason}")]
    IngestLine {
        /// The line number, from 1.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// An ingest progress file (`<data>/ingest/<digest>.json`) does not parse, or does not
    /// describe the file it is kept for: resuming from it could skip lines never ingested.
    #[error("the ingest progress file {path} is unusable: {detail}")]
    IngestProgress {
        /// The progress file.
        path: PathBuf,
        /// What is wrong, and what to do.
        detail: String,
    },
    /// A key file is missing, corrupt or of the wrong kind.
    #[error("the key file {path} is unusable: {detail}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A command-line argument is malformed or names something the deployment lacks.
    #[error("{0}")]
    BadArgument(String),
    /// A region's database configuration is unusable or conflicts with the one it has. The
    /// detail never quotes the URL, which may hold a password.
    #[error("the database of region {region}: {detail}")]
    Database {
        /// The region.
        region: String,
        /// What is wrong.
        detail: String,
    },
    /// The source and target deployments share a region name where a split cannot keep it.
    /// [`Plan::compute`](crate::Plan::compute) no longer returns it: a target that keeps source
    /// regions is a split of a split, which moves only what must leave.
    #[error("the target policy reuses region {region} of the source deployment; a split moves data into new regions")]
    SharedRegion {
        /// The shared region.
        region: String,
    },
    /// The target policy keeps some of the source's regions but not this one: the split would
    /// run on the kept regions only and leave this region's data behind, so nothing is done.
    #[error("the target policy keeps some regions of the source deployment but not {region}; a split that keeps regions cannot drop one (its data would be left behind), so nothing was done")]
    RegionDropped {
        /// The source region the target policy does not have.
        region: String,
    },
    /// Subjects whose home region the target policy cannot decide.
    #[error("{} subject(s) have no usable residence under the target policy (first: the subject with pseudonym {first} under region {region}'s audit key; `domicile audit pseudonym --subject ID` finds it); resolve them before splitting", count)]
    Unresolved {
        /// How many.
        count: usize,
        /// The first one's pseudonym under `region`'s audit key (never the id: errors reach logs).
        first: String,
        /// The region whose audit key `first` is under.
        region: String,
    },
    /// The journal belongs to another plan (the source changed since the split started).
    #[error("the split journal {path} does not match this plan: {detail}")]
    JournalMismatch {
        /// The journal.
        path: PathBuf,
        /// What differs.
        detail: String,
    },
    /// A journal line's MAC does not verify under the migration key: it was copied from
    /// another journal, edited, reordered, or written with another key. Nothing is trusted.
    #[error("the split journal {path} fails authentication at line {line}: it was edited, copied from another split, or written under another migration key; nothing was done")]
    JournalForged {
        /// The journal.
        path: PathBuf,
        /// The first line (from 1) that fails.
        line: usize,
    },
    /// Subjects in a source region that no authenticated verification covers: shredding them
    /// would destroy data not read back from its targets, so nothing is shredded.
    #[error("{count} subject(s) in {region} were not verified in every target region the plan names; nothing was shredded (rerun the split to copy and verify them)")]
    Unverified {
        /// The source region.
        region: Region,
        /// How many.
        count: usize,
    },
    /// The deployment was already split to another policy and this journal cannot start
    /// another. [`run`](crate::run) no longer returns it: it keeps the finished journal under
    /// `split/previous/<n>/` and starts a split of a split.
    #[error("the deployment was already split to {policy} (journal {journal}); a further split to {target} is not supported by this journal: move {journal} and report.json aside to start a new split")]
    AlreadySplit {
        /// The policy the deployment is under now.
        policy: String,
        /// The policy asked for.
        target: String,
        /// The finished journal.
        journal: PathBuf,
    },
    /// Verification found records missing, changed, or where they must not be.
    #[error("verification failed with {} problem(s); first: {}", problems.len(), problems.first().map(String::as_str).unwrap_or(""))]
    VerificationFailed {
        /// Every problem found.
        problems: Vec<String>,
    },
    /// The split was asked to stop (Ctrl-C); the journal lets a rerun resume.
    #[error("the split was interrupted after batch {batch}; run it again to resume")]
    Interrupted {
        /// The last batch completed.
        batch: u64,
    },
    /// A report's signature or body does not verify.
    #[error("the split report does not verify: {0}")]
    BadReport(String),
    /// The Gate refused or failed.
    #[error(transparent)]
    Gate(#[from] Box<GateError>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] Box<StoreError>),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] Box<AuditError>),
    /// Access control failed.
    #[error(transparent)]
    Access(#[from] Box<AccessError>),
    /// A residency question failed.
    #[error(transparent)]
    Residency(#[from] ResidencyError),
}

impl From<GateError> for SplitError {
    fn from(e: GateError) -> Self {
        SplitError::Gate(Box::new(e))
    }
}

impl From<StoreError> for SplitError {
    fn from(e: StoreError) -> Self {
        SplitError::Store(Box::new(e))
    }
}

impl From<AuditError> for SplitError {
    fn from(e: AuditError) -> Self {
        SplitError::Audit(Box::new(e))
    }
}

impl From<AccessError> for SplitError {
    fn from(e: AccessError) -> Self {
        SplitError::Access(Box::new(e))
    }
}

impl SplitError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        SplitError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
