//! The built-in models (ALS, item-item, their blend, popularity) as [`Algorithm`]s, so that the
//! platform hosts, writes and serves them the way it does any buyer's algorithm.

use std::any::Any;

use crate::algorithm::{Algorithm, AlgorithmError, Catalogue, History, ItemModel, TrainingSet};
use crate::model::{ModelKind, RecommendOptions, Recommender, Strategy, TrainConfig};
use crate::topk::Scored;

/// A built-in model kind as an [`Algorithm`]. Its settings are a [`TrainConfig`] as JSON
/// (`{}` for the kind's defaults); its parameters are the trained components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltIn {
    kind: ModelKind,
}

/// Why a built-in algorithm refused its settings or parameters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuiltInError {
    /// The settings are not a training configuration.
    #[error("the settings are not a training configuration for {kind}: {reason}")]
    Settings {
        /// The algorithm.
        kind: ModelKind,
        /// What serde said.
        reason: String,
    },
    /// The settings name another model kind.
    #[error("the settings are for model kind {found}, not {kind}")]
    OtherKind {
        /// The algorithm.
        kind: ModelKind,
        /// The kind the settings name.
        found: ModelKind,
    },
}

impl BuiltIn {
    /// The built-in algorithm of `kind`.
    pub fn new(kind: ModelKind) -> Self {
        BuiltIn { kind }
    }

    /// Every built-in algorithm: `als`, `item-knn`, `blend`, `popularity`.
    pub fn all() -> [BuiltIn; 4] {
        [
            ModelKind::Als,
            ModelKind::ItemKnn,
            ModelKind::Blend,
            ModelKind::Popularity,
        ]
        .map(BuiltIn::new)
    }

    /// The model kind.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// The settings of `config`, as [`Algorithm::train`] takes them.
    pub fn settings(config: &TrainConfig) -> serde_json::Value {
        serde_json::to_value(config).expect("a training configuration always serialises")
    }

    fn config(&self, settings: &serde_json::Value) -> Result<TrainConfig, BuiltInError> {
        let empty = settings.is_null() || settings.as_object().is_some_and(|o| o.is_empty());
        if empty {
            return Ok(TrainConfig::for_kind(self.kind));
        }
        let config: TrainConfig =
            serde_json::from_value(settings.clone()).map_err(|e| BuiltInError::Settings {
                kind: self.kind,
                reason: e.to_string(),
            })?;
        if config.kind != self.kind {
            return Err(BuiltInError::OtherKind {
                kind: self.kind,
                found: config.kind,
            });
        }
        Ok(config)
    }
}

impl Algorithm for BuiltIn {
    fn name(&self) -> &str {
        self.kind.as_str()
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn train(
        &self,
        data: &TrainingSet<'_>,
        settings: &serde_json::Value,
    ) -> Result<Box<dyn ItemModel>, AlgorithmError> {
        let config = self.config(settings)?;
        Ok(Box::new(Recommender::train(data.interactions(), &config)?))
    }

    fn load(
        &self,
        hyper_parameters: &serde_json::Value,
        parameters: &[u8],
        catalogue: &Catalogue,
    ) -> Result<Box<dyn ItemModel>, AlgorithmError> {
        let config = self.config(hyper_parameters)?;
        Ok(Box::new(crate::artifact::decode_components(
            parameters, config, catalogue,
        )?))
    }
}

/// The built-in recommender as the trained parameters of a [`BuiltIn`] algorithm.
impl ItemModel for Recommender {
    fn hyper_parameters(&self) -> serde_json::Value {
        BuiltIn::settings(self.config())
    }

    fn parameters(&self) -> Vec<u8> {
        crate::artifact::encode_components(self)
    }

    fn recommend(&self, history: History<'_>, k: usize, exclude_seen: bool) -> Vec<Scored> {
        let options = RecommendOptions {
            k,
            exclude_seen,
            per_creator_cap: None,
            strategy: Strategy::Default,
        };
        // A trained or loaded recommender has the components of its own kind, so this does not
        // fail; if it did, the cold-start ranking is still an answer.
        self.recommend_history(history, &options)
            .unwrap_or_else(|_| {
                let exclude = if exclude_seen { history.0 } else { &[] };
                self.popularity().recommend(k, exclude)
            })
    }

    fn recommend_batch(
        &self,
        histories: &[History<'_>],
        k: usize,
        exclude_seen: bool,
    ) -> Vec<Vec<Scored>> {
        let options = RecommendOptions {
            k,
            exclude_seen,
            per_creator_cap: None,
            strategy: Strategy::Default,
        };
        // The tiled batch kernel (ALS fold-in for every user, then one pass over the items).
        self.recommend_batch_by(histories.len(), &|q| histories[q], &options)
            .unwrap_or_else(|_| {
                histories
                    .iter()
                    .map(|h| ItemModel::recommend(self, *h, k, exclude_seen))
                    .collect()
            })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
