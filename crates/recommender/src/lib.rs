//! The recommender of domicile: short-video feedback to implicit-feedback models, fast top-k
//! serving, offline evaluation, and model artifacts that carry their provenance.
//!
//! A regional deployment must train its recommender only on data that may be used there, and
//! every model it ships must say whose data it learned from (invariant 7 of the design). This
//! crate turns feedback events (views with watch time, likes, shares, comments, follows, skips)
//! into implicit-feedback weights ([`ConfidenceWeights`]), trains implicit ALS with a
//! conjugate-gradient solver ([`AlsModel`]), item-item neighbours with cosine or BM25 weighting
//! ([`ItemKnn`]) and a popularity-with-recency baseline ([`Popularity`]), serves exact top-k by
//! inner product with no BLAS ([`top_k_inner_product`], [`top_k_batch`]), blends them with
//! seen-filtering and per-creator caps ([`Recommender`]), evaluates them on seeded hold-outs
//! ([`split`], [`evaluate`]), and writes versioned, Ed25519-signed artifacts whose [`Manifest`]
//! records `trained_on`: the home regions of every subject whose events were used. A seeded
//! [`World`] generator provides realistic data up to tens of millions of events.
//!
//! ```
//! use domicile_recommender::{
//!     evaluate, read_artifact, split, write_artifact, ConfidenceWeights, Holdout, ModelKind,
//!     RecommendOptions, Recommender, SigningKey, Strategy, TrainConfig, World, WorldConfig,
//! };
//! use domicile_residency::Region;
//!
//! let world = World::generate(WorldConfig { users: 300, videos: 200, events: 6_000, ..WorldConfig::default() })?;
//! let data = world.interactions(&ConfidenceWeights::default());
//! let (train, test) = split(&data, Holdout::Random { fraction: 0.2, seed: 42 })?;
//!
//! let mut config = TrainConfig::for_kind(ModelKind::Als);
//! config.als.factors = 16;
//! let model = Recommender::train(&train, &config)?;
//! let metrics = evaluate(&model, &test, 10, Strategy::Default)?;
//! assert!(metrics.users > 0);
//!
//! let recs = model.recommend("u7", &RecommendOptions::top(10))?;
//! assert_eq!(recs.len(), 10);
//!
//! // Provenance: US residents train into region `us`, everyone else into `row`.
//! let provenance = train.provenance(None, |_, country| {
//!     Region::parse(if country.map(|c| c.as_str() == "US") == Some(true) { "us" } else { "row" })
//! })?;
//! let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()?)?;
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("model.domrec");
//! write_artifact(&path, &model, &provenance, Some(&key))?;
//! let loaded = read_artifact(&path, Some(&key.public_key()))?;
//! assert_eq!(loaded.manifest.trained_on.len(), 2);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod als;
mod artifact;
mod error;
mod eval;
mod event;
mod interactions;
mod knn;
mod linalg;
mod model;
mod popularity;
mod topk;
mod world;

pub use als::{in_pool, AlsConfig, AlsModel, Solver};
pub use artifact::{
    decode_artifact, encode_artifact, hex, read_artifact, write_artifact, LoadedModel, Manifest,
    Provenance, SignatureStatus, SigningKey, FORMAT_VERSION,
};
pub use error::RecsysError;
pub use eval::{
    evaluate, ranking_metrics, relevant_items, restrict_users, split, Holdout, Metrics,
};
pub use event::{ConfidenceWeights, Event, EventKind};
pub use interactions::{Csr, IdMap, Interaction, Interactions, InteractionsBuilder};
pub use knn::{ItemKnn, ItemKnnConfig, Similarity};
pub use model::{
    BlendConfig, ModelKind, RecommendOptions, Recommendation, Recommender, Strategy, TrainConfig,
};
pub use popularity::Popularity;
pub use topk::{top_k_batch, top_k_inner_product, ItemIndex, Scored};
pub use world::{World, WorldConfig, WorldCreator, WorldEvent, WorldUser, WorldVideo};
