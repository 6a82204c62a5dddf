//! The recommender of domicile: short-video feedback to implicit-feedback models, fast top-k
//! serving, offline evaluation, and model artifacts that carry their provenance.
//!
//! A regional deployment must train its recommender only on data that may be used there, and
//! every model it ships must say whose data it learned from (invariant 7 of the design). A model
//! is the algorithm only (invariant 10): a [`Recommender`] and its artifact hold item factors,
//! item-item neighbours and popularity, never a user id, user factor or history. A user's
//! history is their Protected data; at serving time it is read in their home region
//! ([`Histories`]) and ALS folds the user's factors in from it ([`ItemFactors::fold_in`]). This
//! crate turns feedback events (views with watch time, likes, shares, comments, follows, skips)
//! into implicit-feedback weights ([`ConfidenceWeights`]), trains implicit ALS with a
//! conjugate-gradient solver ([`AlsModel`]), item-item neighbours with cosine or BM25 weighting
//! ([`ItemKnn`]) and a popularity-with-recency baseline ([`Popularity`]), serves exact top-k by
//! inner product with no BLAS ([`top_k_inner_product`], [`top_k_batch`]), blends them with
//! seen-filtering and per-creator caps ([`Recommender`]), evaluates them on seeded hold-outs
//! ([`split`], [`evaluate`]), and writes versioned, Ed25519-signed artifacts whose [`Manifest`]
//! records `trained_on`: the home regions of every subject whose events were used; a reader
//! trusts an artifact only when a key it pinned signed it ([`Trust`]). A seeded
//! [`World`] generator provides realistic data up to tens of millions of events.
//!
//! The models are pluggable: an [`Algorithm`] (the built-ins are [`BuiltIn`]; a buyer's lives
//! in its own crate, such as `domicile-recommender-ease`) is handed a [`TrainingSet`] of dense
//! indices and returns item-side parameters; the platform hosts them as a [`Model`], serves
//! them, computes provenance, signs, and screens the parameters for every subject id and
//! pseudonym it handed over before writing ([`Screen`]). The binary lists the algorithms it
//! links in an [`AlgorithmRegistry`].
//!
//! ```
//! use std::sync::Arc;
//! use domicile_recommender::{
//!     evaluate, read_artifact, split, write_artifact, AlgorithmRegistry, BuiltIn,
//!     ConfidenceWeights, Holdout, Model, ModelKind, RecommendOptions, Screen, SigningKey,
//!     Strategy, TrainConfig, Trust, World, WorldConfig,
//! };
//! use domicile_residency::Region;
//!
//! let world = World::generate(WorldConfig { users: 300, videos: 200, events: 6_000, ..WorldConfig::default() })?;
//! let data = world.interactions(&ConfidenceWeights::default());
//! let (train, test) = split(&data, Holdout::Random { fraction: 0.2, seed: 42 })?;
//!
//! // Any algorithm trains through the same door: it is handed dense indices, never an id.
//! let als = BuiltIn::new(ModelKind::Als);
//! let mut config = TrainConfig::for_kind(ModelKind::Als);
//! config.als.factors = 16;
//! let model = Model::train(&als, &train, &BuiltIn::settings(&config))?;
//! // Test users' histories are their training pairs, folded in at serving time.
//! let metrics = evaluate(&model, &train, &test, 10, Strategy::Default)?;
//! assert!(metrics.users > 0);
//!
//! let histories = model.histories(&train);
//! let recs = model.recommend(&histories, "u7", &RecommendOptions::top(10))?;
//! assert_eq!(recs.len(), 10);
//!
//! // Provenance: US residents train into region `us`, everyone else into `row`.
//! let provenance = train.provenance(None, |_, country| {
//!     Region::parse(if country.map(|c| c.as_str() == "US") == Some(true) { "us" } else { "row" })
//! })?;
//! let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()?)?;
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("model.domrec");
//! // Screened for every subject of the training data before it is written.
//! write_artifact(&path, &model, &provenance, Some(&key), &Screen::of(&train))?;
//! let algorithms = AlgorithmRegistry::new().with(Arc::new(als));
//! let loaded = read_artifact(&path, &Trust::pinned(key.public_key()), &algorithms)?;
//! assert_eq!(loaded.manifest.trained_on.len(), 2);
//! assert_eq!(loaded.manifest.algorithm, "als");
//! assert!(loaded.signature.is_trusted());
//! // The artifact names no user.
//! assert!(!std::fs::read(&path)?.windows(3).any(|w| w == b"u17"));
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod algorithm;
mod als;
mod artifact;
mod builtin;
mod error;
mod eval;
mod event;
mod histories;
mod hosted;
mod interactions;
mod knn;
mod linalg;
mod model;
mod popularity;
mod screen;
mod topk;
mod world;

pub use algorithm::{
    Algorithm, AlgorithmError, AlgorithmRegistry, Catalogue, History, ItemModel, TrainingSet,
    COLD_START_HALF_LIFE_MS, NO_CREATOR,
};
pub use als::{in_pool, AlsConfig, AlsModel, ItemFactors, Solver};
pub use artifact::{
    decode_artifact, encode_artifact, hex, read_artifact, write_artifact, LoadedModel, Manifest,
    Provenance, SignatureStatus, SigningKey, Trust, FORMAT_VERSION, MAX_ARTIFACT_BYTES,
};
pub use builtin::{BuiltIn, BuiltInError};
pub use error::RecsysError;
pub use eval::{
    evaluate, ranking_metrics, relevant_items, restrict_users, split, Holdout, Metrics,
};
pub use event::{ConfidenceWeights, Event, EventKind};
pub use histories::Histories;
pub use hosted::{Model, Serving};
pub use interactions::{
    Csr, IdMap, Interaction, Interactions, InteractionsBuilder, MAX_LINE_BYTES,
};
pub use knn::{ItemKnn, ItemKnnConfig, Similarity};
pub use model::{
    BlendConfig, ModelKind, RecommendOptions, Recommendation, Recommender, Strategy, TrainConfig,
    TrainedSubjects, BLEND_WEIGHT_GRID,
};
pub use popularity::Popularity;
pub use screen::{Screen, MIN_NEEDLE_LEN};
pub use topk::{top_k_batch, top_k_inner_product, top_k_scores, ItemIndex, Scored};
pub use world::{World, WorldConfig, WorldCreator, WorldEvent, WorldUser, WorldVideo};
