//! The one error type of the recommender.

use std::path::PathBuf;

use domicile_residency::ResidencyError;

/// What went wrong while reading data, training, serving or loading a model.
///
/// Every variant names what it was given (the path, the line, the value), so the message is one
/// a user can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecsysError {
    /// A file could not be read or written.
    #[error("cannot {action} {path:?}: {source}")]
    Io {
        /// What was being done (`read`, `write`, `create`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A line of an interactions CSV or events JSONL file that cannot be understood.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        /// The file (or `<input>` when reading from memory).
        path: String,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it, quoting the offending text.
        reason: String,
    },
    /// A hyper-parameter or option out of its range.
    #[error("invalid {name} {value}: {reason}")]
    InvalidConfig {
        /// The parameter's name.
        name: &'static str,
        /// The value given.
        value: String,
        /// The accepted range.
        reason: &'static str,
    },
    /// Training was asked for on an empty interaction matrix.
    #[error("no interactions to train on: {0}")]
    Empty(&'static str),
    /// A model asked to serve with a strategy whose parts it was not trained with.
    #[error("the model has no {0} component; train it with that model kind")]
    MissingComponent(&'static str),
    /// A residency value (region, country code, subject id) was refused.
    #[error(transparent)]
    Residency(#[from] ResidencyError),
    /// The file is not a domicile model artifact.
    #[error("{path}: not a domicile model artifact (bad magic bytes)")]
    NotAnArtifact {
        /// The file.
        path: String,
    },
    /// The artifact was written by a format version this code does not read.
    #[error(
        "{path}: unsupported model format version {version} (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The file.
        path: String,
        /// The version in the file.
        version: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The artifact is truncated or its structure is inconsistent.
    #[error("{path}: corrupt model artifact: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is inconsistent.
        reason: String,
    },
    /// The signature does not verify: the manifest or payload was changed after signing.
    #[error("{path}: signature does not verify: the artifact was modified after it was signed")]
    BadSignature {
        /// The file.
        path: String,
    },
    /// The artifact is signed, but by a key other than the one the caller trusts.
    #[error("{path}: signed by key {found}, not by the trusted key {expected}")]
    ForeignSigner {
        /// The file.
        path: String,
        /// The hex public key in the artifact.
        found: String,
        /// The hex public key the caller trusts.
        expected: String,
    },
    /// The artifact carries no signature, but the caller requires one.
    #[error("{path}: the artifact is unsigned, but a signature by {expected} is required")]
    Unsigned {
        /// The file.
        path: String,
        /// The hex public key the caller trusts.
        expected: String,
    },
    /// No key to trust was given, and untrusted artifacts were not allowed either.
    #[error("{path}: no trusted key was given, so the artifact cannot be trusted; pin the signer's public key (--trusted-key), or allow untrusted artifacts explicitly (--allow-unsigned)")]
    NoTrustedKey {
        /// The file.
        path: String,
    },
    /// A crash-safe file operation failed (see `domicile_durable`).
    #[error(transparent)]
    File(#[from] domicile_durable::FileError),
    /// The system random source failed, so no key could be generated.
    #[error("the system random source failed; no key was generated")]
    RandomUnavailable,
    /// An algorithm's serialised parameters (or the hyper-parameters it asked the manifest to
    /// record) hold a subject id or pseudonym the platform handed over: the artifact is not
    /// written. The message counts the occurrences and names no one.
    #[error(
        "the {algorithm} algorithm's parameters hold {occurrences} occurrence(s) of subject ids \
         or pseudonyms of its training data; the artifact was not written (a model is the \
         algorithm only)"
    )]
    SubjectInParameters {
        /// The algorithm.
        algorithm: String,
        /// How many occurrences the screen found.
        occurrences: usize,
    },
    /// An algorithm name this binary does not link (from `--model`, or an artifact's manifest).
    #[error("unknown algorithm {name:?}; this binary links: {}", known.join(", "))]
    UnknownAlgorithm {
        /// The name asked for.
        name: String,
        /// Every name the registry holds.
        known: Vec<String>,
    },
    /// An algorithm refused to train (its own error, which the message quotes).
    #[error("the {algorithm} algorithm failed: {cause}")]
    Algorithm {
        /// The algorithm.
        algorithm: String,
        /// Its error; downcast it with [`RecsysError::algorithm_cause`].
        cause: crate::AlgorithmError,
    },
    /// A signing key that ring refuses.
    #[error("invalid Ed25519 signing key: {0}")]
    InvalidKey(String),
}

impl RecsysError {
    /// The algorithm's own error behind [`RecsysError::Algorithm`], if it is a `T`.
    pub fn algorithm_cause<T: std::error::Error + 'static>(&self) -> Option<&T> {
        match self {
            RecsysError::Algorithm { cause, .. } => cause.downcast_ref::<T>(),
            _ => None,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        RecsysError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
