//! EASE, "Embarrassingly Shallow Autoencoders for Sparse Data" (Harald Steck, WWW 2019), as a
//! domicile recommendation algorithm, written the way a region that takes over a product would
//! write its own: against the public [`Algorithm`] trait of `domicile-recommender` and nothing
//! else.
//!
//! EASE learns one item × item weight matrix `B` in closed form. With `X` the user × item
//! matrix (binary by default) and `G = XᵀX`, it minimises `‖X − XB‖² + λ‖B‖²` subject to
//! `diag(B) = 0` (an item may not recommend itself), whose solution is
//!
//! ```text
//! P = (G + λI)⁻¹,    B = I − P · diagMat(1 / diag(P)),   i.e. B_ij = −P_ij / P_jj (i ≠ j), B_jj = 0
//! ```
//!
//! A user with history `x` is scored `s = xB`: for each item in the history, its row of `B` is
//! added. Training is one dense `n × n` inverse (a Cholesky factorisation, then the inverse by
//! blocked triangular solves, in parallel, f64), so the number of items it accepts is capped
//! ([`EaseConfig::max_items`], a typed [`EaseError::TooManyItems`] beyond it); a catalogue larger
//! than that can be cut to its most popular items on purpose ([`EaseConfig::top_items`]).
//!
//! What the platform guarantees around it: EASE is handed a [`TrainingSet`] (dense indices, no
//! subject id, no store, no Gate), returns `B` as bytes, and the platform screens those bytes for
//! every subject id and pseudonym before signing and writing the artifact, checks deployment and
//! export against the residency policy, and serves cold starts, seen-filtering and creator caps.
//!
//! ```
//! use std::sync::Arc;
//! use domicile_recommender::{
//!     evaluate, read_artifact, split, write_artifact, AlgorithmRegistry, ConfidenceWeights,
//!     Holdout, Model, Screen, SigningKey, Strategy, Trust, World, WorldConfig,
//! };
//! use domicile_recommender_ease::Ease;
//! use domicile_residency::Region;
//!
//! let world = World::generate(WorldConfig { users: 300, videos: 150, events: 6_000, ..WorldConfig::default() })?;
//! let data = world.interactions(&ConfidenceWeights::default());
//! let (train, test) = split(&data, Holdout::Random { fraction: 0.2, seed: 42 })?;
//!
//! let model = Model::train(&Ease, &train, &serde_json::json!({ "lambda": 50.0 }))?;
//! let metrics = evaluate(&model, &train, &test, 10, Strategy::Default)?;
//! assert!(metrics.precision > 0.0);
//!
//! // The platform signs it, screens it for every subject of the training data, and writes it.
//! let provenance = train.provenance(None, |_, _| Region::parse("us"))?;
//! let key = SigningKey::from_seed(&[9; 32])?;
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("us.domrec");
//! write_artifact(&path, &model, &provenance, Some(&key), &Screen::of(&train))?;
//!
//! // A binary that links EASE loads it back.
//! let algorithms = AlgorithmRegistry::new().with(Arc::new(Ease));
//! let loaded = read_artifact(&path, &Trust::pinned(key.public_key()), &algorithms)?;
//! assert_eq!(loaded.manifest.algorithm, "ease");
//! assert_eq!(loaded.manifest.hyper_parameters["lambda"], 50.0);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_code)]

mod config;
mod error;
mod linalg;
mod model;

use domicile_recommender::{Algorithm, AlgorithmError, Catalogue, ItemModel, TrainingSet};

pub use config::EaseConfig;
pub use error::EaseError;
pub use model::EaseModel;

/// The EASE algorithm, as the platform's [`Algorithm`]: settings are an [`EaseConfig`] as JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ease;

impl Ease {
    /// The name the binary offers it under (`--model ease`) and manifests record.
    pub const NAME: &'static str = "ease";

    /// Trains EASE on `data` with `config` (the typed entry point; [`Algorithm::train`] parses
    /// JSON settings and calls it).
    pub fn fit(data: &TrainingSet<'_>, config: &EaseConfig) -> Result<EaseModel, EaseError> {
        EaseModel::fit(data, config)
    }
}

impl Algorithm for Ease {
    fn name(&self) -> &str {
        Ease::NAME
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn train(
        &self,
        data: &TrainingSet<'_>,
        settings: &serde_json::Value,
    ) -> Result<Box<dyn ItemModel>, AlgorithmError> {
        let config = EaseConfig::from_settings(settings)?;
        Ok(Box::new(Ease::fit(data, &config)?))
    }

    fn load(
        &self,
        hyper_parameters: &serde_json::Value,
        parameters: &[u8],
        catalogue: &Catalogue,
    ) -> Result<Box<dyn ItemModel>, AlgorithmError> {
        let config = EaseConfig::from_settings(hyper_parameters)?;
        Ok(Box::new(EaseModel::from_parameters(
            config,
            parameters,
            catalogue.n_items(),
        )?))
    }
}
