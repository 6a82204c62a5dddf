//! The composition root's list of residency policies: the one place that names policy crates.
//!
//! Every command that needs a policy (a deployment's manifest, `split --to`, `recsys --policy`)
//! resolves its name here. Adding a policy to the binary is one line below and one dependency
//! line in this crate's `Cargo.toml`; nothing below the binary changes.

use std::sync::Arc;

use domicile_residency::PolicyResolver;

/// Every policy this binary links.
pub(crate) fn resolver() -> PolicyResolver {
    PolicyResolver::new()
        .with(Arc::new(domicile_policy_global::GlobalPolicy::new()))
        .with(Arc::new(domicile_policy_us_split::UsSplitPolicy::new()))
        .with(Arc::new(domicile_policy_eu_split::EuSplitPolicy::new()))
}
