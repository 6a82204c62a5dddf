//! The composition root's list of recommendation algorithms: the one place that names algorithm
//! crates, as `policies.rs` is for residency policies.
//!
//! Every command that trains, serves, evaluates or deploys a model resolves the algorithm here
//! (`--model NAME`, or the name an artifact's manifest records). Adding an algorithm to the
//! binary is one line below and one dependency line in this crate's `Cargo.toml`; nothing in the
//! platform changes.

use std::sync::Arc;

use domicile_recommender::{AlgorithmRegistry, BuiltIn};

/// Every algorithm this binary links: the built-in models and EASE.
pub(crate) fn registry() -> AlgorithmRegistry {
    let builtins = BuiltIn::all()
        .into_iter()
        .fold(AlgorithmRegistry::new(), |r, a| r.with(Arc::new(a)));
    builtins.with(Arc::new(domicile_recommender_ease::Ease))
}
