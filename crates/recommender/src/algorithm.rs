//! Bring your own algorithm: what an algorithm is to the platform, and what it is handed.
//!
//! A region that takes over a product may plug in its own recommendation algorithm. The rules
//! that protect people (residency, provenance, signing, export, and that an artifact is the
//! algorithm only) are kept by the platform around the algorithm, not by the algorithm's good
//! manners:
//!
//! - the algorithm is handed a [`TrainingSet`]: the interaction matrix with dense indices and the
//!   item side of the catalogue. It never sees a subject id, a pseudonym, a store or a Gate: the
//!   platform scanned the data through a Gate, computed the provenance and keeps the id maps;
//! - it returns an [`ItemModel`]: item-side parameters as bytes ([`ItemModel::parameters`]) and
//!   a way to score one subject's history at serving time;
//! - the platform signs and verifies artifacts, checks deployment and export against the
//!   policy, and screens the parameters (and the hyper-parameters the manifest records) for
//!   every subject id and pseudonym it handed over before anything is written
//!   ([`crate::Screen`], [`crate::RecsysError::SubjectInParameters`]).
//!
//! The binary links the algorithms it offers in an [`AlgorithmRegistry`], as it links residency
//! policies in a `PolicyResolver`.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rayon::prelude::*;

use crate::interactions::{Csr, IdMap, Interaction, Interactions};
use crate::popularity::Popularity;
use crate::topk::Scored;
use crate::RecsysError;

/// What an algorithm returns when it cannot train or load: its own typed error, boxed. The
/// platform wraps it in [`RecsysError::Algorithm`] with the algorithm's name; a caller that
/// knows the algorithm downcasts it back ([`RecsysError::algorithm_cause`]).
pub type AlgorithmError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One subject's history against a model's item indices: item indices (sorted ascending) and
/// weights, read in the subject's home region at serving time.
pub type History<'a> = (&'a [u32], &'a [f32]);

/// A recommendation algorithm: trains item-side parameters from interactions the platform hands
/// it, and loads them back from bytes.
///
/// Implementations hold configuration only (hyper-parameters arrive as JSON, so that the binary
/// can offer every algorithm it links under one command line, and the manifest can record them).
pub trait Algorithm: Send + Sync + fmt::Debug {
    /// The algorithm's name, as `--model` takes it and the manifest records it (`ease`).
    fn name(&self) -> &str;

    /// The version of the code, recorded in the manifest (usually `env!("CARGO_PKG_VERSION")`
    /// of the algorithm's crate).
    fn version(&self) -> &str;

    /// Trains on `data` with the hyper-parameters `settings` (a JSON object; missing keys take
    /// the algorithm's defaults, unknown keys are an error).
    fn train(
        &self,
        data: &TrainingSet<'_>,
        settings: &serde_json::Value,
    ) -> Result<Box<dyn ItemModel>, AlgorithmError>;

    /// Loads parameters written by [`ItemModel::parameters`], with the hyper-parameters the
    /// manifest recorded ([`ItemModel::hyper_parameters`]) and the catalogue the artifact
    /// carries. The bytes come from a file: check every length and index.
    fn load(
        &self,
        hyper_parameters: &serde_json::Value,
        parameters: &[u8],
        catalogue: &Catalogue,
    ) -> Result<Box<dyn ItemModel>, AlgorithmError>;
}

/// A trained algorithm: item-side parameters and serving.
///
/// It must hold nothing per subject (invariant 10 of the design): the platform screens its
/// bytes for ids and pseudonyms, but a per-user vector stored by dense index cannot be found by
/// a byte search, so an algorithm that keeps one breaks the contract silently.
pub trait ItemModel: Send + Sync + fmt::Debug + Any {
    /// The hyper-parameters to record in the manifest, as trained (defaults filled in, choices
    /// made during training included), and handed back to [`Algorithm::load`].
    fn hyper_parameters(&self) -> serde_json::Value;

    /// The item-side parameters, serialised: the platform writes them into the artifact after
    /// screening them.
    fn parameters(&self) -> Vec<u8>;

    /// The best `k` items for one history, best first, leaving out the history's items when
    /// `exclude_seen`. The history is not empty (the platform serves empty ones from
    /// popularity).
    fn recommend(&self, history: History<'_>, k: usize, exclude_seen: bool) -> Vec<Scored>;

    /// [`ItemModel::recommend`] for many histories, in the order given. The default serves them
    /// in parallel on the current rayon pool.
    fn recommend_batch(
        &self,
        histories: &[History<'_>],
        k: usize,
        exclude_seen: bool,
    ) -> Vec<Vec<Scored>> {
        histories
            .par_iter()
            .with_min_len(16)
            .map(|h| self.recommend(*h, k, exclude_seen))
            .collect()
    }

    /// The model as [`Any`], so that a caller that knows the concrete type can reach it.
    fn as_any(&self) -> &dyn Any;
}

/// The item side of the data, kept by the platform and written into every artifact: the item
/// ids (public video ids, never a subject's), each item's creator group (an opaque number: the
/// per-creator cap needs only to know which items share a creator; creators are subjects too),
/// and popularity with recency (the cold-start ranking every model serves).
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    pub(crate) items: IdMap,
    pub(crate) item_creator: Vec<u32>,
    pub(crate) popularity: Popularity,
}

/// An item without a known creator.
pub const NO_CREATOR: u32 = u32::MAX;

/// The popularity half-life of the platform's cold-start ranking: 7 days.
pub const COLD_START_HALF_LIFE_MS: i64 = 7 * 86_400_000;

impl Catalogue {
    /// The catalogue of `data`: its items, creator groups and popularity (half-life 7 days).
    pub fn of(data: &Interactions) -> Catalogue {
        Catalogue {
            items: data.items.clone(),
            item_creator: data
                .item_creator
                .iter()
                .map(|c| c.unwrap_or(NO_CREATOR))
                .collect(),
            popularity: Popularity::fit(
                data.pairs(),
                data.n_items(),
                Some(COLD_START_HALF_LIFE_MS),
            ),
        }
    }

    /// How many items (the dense item indices are `0..n_items`).
    pub fn n_items(&self) -> usize {
        self.items.len()
    }

    /// The item ids, by index.
    pub fn items(&self) -> &IdMap {
        &self.items
    }

    /// Each item's creator group ([`NO_CREATOR`]: unknown).
    pub fn creator_groups(&self) -> &[u32] {
        &self.item_creator
    }

    /// Popularity with recency over the training data.
    pub fn popularity(&self) -> &Popularity {
        &self.popularity
    }
}

/// What the platform hands an algorithm to train on: the interaction matrix with dense user and
/// item indices, and the catalogue. No subject id, country or pseudonym is reachable from it
/// (users are `0..n_users`), and it grants no access to a store or Gate.
pub struct TrainingSet<'a> {
    /// The interactions with every user id replaced by its index, so that even code that prints
    /// an [`Interactions`] (the built-in models' own) cannot name anyone.
    anonymous: Interactions,
    catalogue: &'a Catalogue,
}

impl fmt::Debug for TrainingSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrainingSet")
            .field("users", &self.n_users())
            .field("items", &self.n_items())
            .field("pairs", &self.pairs().len())
            .finish()
    }
}

impl<'a> TrainingSet<'a> {
    /// The training set of `data` (ids dropped) against `catalogue` (which must be `data`'s:
    /// [`Catalogue::of`]). [`crate::Model::train`] builds it; an algorithm's own tests may too.
    pub fn new(data: &Interactions, catalogue: &'a Catalogue) -> Self {
        let mut anonymous = data.with_pairs(data.pairs().to_vec());
        let mut users = IdMap::new();
        for u in 0..data.n_users() {
            users.intern(&u.to_string());
        }
        anonymous.users = users;
        anonymous.user_country = vec![None; data.n_users()];
        anonymous.creators = IdMap::new();
        TrainingSet {
            anonymous,
            catalogue,
        }
    }

    /// Users are `0..n_users` (some may have no pairs).
    pub fn n_users(&self) -> usize {
        self.anonymous.n_users()
    }

    /// Items are `0..n_items`.
    pub fn n_items(&self) -> usize {
        self.anonymous.n_items()
    }

    /// The (user, item) pairs with their summed positive weights and latest timestamps, sorted
    /// by (user, item).
    pub fn pairs(&self) -> &[Interaction] {
        self.anonymous.pairs()
    }

    /// The user × item weight matrix (rows sorted by item).
    pub fn user_items(&self) -> Csr {
        self.anonymous.user_items()
    }

    /// The item × user weight matrix (rows sorted by user).
    pub fn item_users(&self) -> Csr {
        self.anonymous.user_items().transpose(self.n_items())
    }

    /// The catalogue: creator groups and popularity.
    pub fn catalogue(&self) -> &Catalogue {
        self.catalogue
    }

    /// The anonymous interactions, for the built-in models.
    pub(crate) fn interactions(&self) -> &Interactions {
        &self.anonymous
    }
}

/// The algorithms a binary links, by name: the composition root builds it (as it builds the
/// `PolicyResolver` of residency policies), and every command resolves `--model NAME` here.
#[derive(Debug, Clone, Default)]
pub struct AlgorithmRegistry {
    algorithms: BTreeMap<String, Arc<dyn Algorithm>>,
}

impl AlgorithmRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry with `algorithm` added (replacing one of the same name).
    pub fn with(mut self, algorithm: Arc<dyn Algorithm>) -> Self {
        self.algorithms
            .insert(algorithm.name().to_owned(), algorithm);
        self
    }

    /// The algorithm named `name`, or [`RecsysError::UnknownAlgorithm`] listing every name.
    pub fn resolve(&self, name: &str) -> Result<Arc<dyn Algorithm>, RecsysError> {
        self.algorithms
            .get(name)
            .cloned()
            .ok_or_else(|| RecsysError::UnknownAlgorithm {
                name: name.to_owned(),
                known: self.names().map(str::to_owned).collect(),
            })
    }

    /// The names of the algorithms, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.algorithms.keys().map(String::as_str)
    }
}
