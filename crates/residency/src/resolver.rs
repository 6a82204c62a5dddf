//! The registry of policies a binary links: the composition root's list, passed down.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::ResidencyPolicy;

/// A policy name that the resolver does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy {name:?}: this build knows {}", known.join(", "))]
pub struct UnknownPolicy {
    /// The name that was asked for.
    pub name: String,
    /// The names the resolver knows, in order.
    pub known: Vec<String>,
}

/// The residency policies a binary links, by name (`global`, `us-split`, …).
///
/// Libraries below the binary never name a policy crate: the binary (the composition root)
/// builds a resolver from the policy crates it links and hands it to the deployment, split and
/// recommender code, as ripgrep's binary picks its matcher. Adding a policy is one line in the
/// binary's list.
///
/// ```
/// use std::sync::Arc;
/// use domicile_residency::{PolicyResolver, PolicyTable, ResidencyPolicy};
/// # use domicile_residency::*;
/// # use std::collections::BTreeSet;
/// # #[derive(Debug)] struct Demo(PolicyTable);
/// # impl ResidencyPolicy for Demo {
/// #     fn table(&self) -> &PolicyTable { &self.0 }
/// #     fn home_region(&self, _: &Subject) -> Result<Region, ResidencyError> { Ok(self.0.region("here")) }
/// #     fn may_rest_in(&self, _: DataClass, _: &Region, _: &Region) -> Result<Decision, ResidencyError> { Ok(self.0.decide(true, "demo/all")) }
/// #     fn may_transfer(&self, _: DataClass, _: &Region, _: &Region, _: &Region, _: &Purpose) -> Result<Decision, ResidencyError> { Ok(self.0.decide(true, "demo/all")) }
/// #     fn may_deploy_model(&self, _: &BTreeSet<Region>, _: &Region) -> Result<Decision, ResidencyError> { Ok(self.0.decide(true, "demo/all")) }
/// # }
/// # let demo = Demo(PolicyTable::new("demo", "1", &[("here", "US")], vec![Rule::new("demo/all", "All.")], "")?);
/// let policies = PolicyResolver::new().with(Arc::new(demo));
/// assert_eq!(policies.resolve("demo")?.id().name, "demo");
/// let err = policies.resolve("eu-split").err().expect("not linked");
/// assert_eq!(err.to_string(), r#"unknown policy "eu-split": this build knows demo"#);
/// Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct PolicyResolver {
    policies: BTreeMap<String, Arc<dyn ResidencyPolicy>>,
}

impl fmt::Debug for PolicyResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.policies.keys()).finish()
    }
}

impl PolicyResolver {
    /// An empty resolver.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `policy` under its own name ([`PolicyId::name`](crate::PolicyId::name)).
    ///
    /// # Panics
    ///
    /// If a policy of that name is already registered: two crates claiming one name is a
    /// mistake in the binary's list, found the first time it runs.
    pub fn with(mut self, policy: Arc<dyn ResidencyPolicy>) -> Self {
        let name = policy.id().name.clone();
        assert!(
            self.policies.insert(name.clone(), policy).is_none(),
            "two policies are registered under the name {name:?}"
        );
        self
    }

    /// The policy named `name`, or an error listing the names this resolver knows.
    pub fn resolve(&self, name: &str) -> Result<Arc<dyn ResidencyPolicy>, UnknownPolicy> {
        self.policies
            .get(name)
            .cloned()
            .ok_or_else(|| UnknownPolicy {
                name: name.to_owned(),
                known: self.names().map(str::to_owned).collect(),
            })
    }

    /// The names this resolver knows, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }

    /// Every policy, in name order.
    pub fn policies(&self) -> impl Iterator<Item = &Arc<dyn ResidencyPolicy>> {
        self.policies.values()
    }
}
