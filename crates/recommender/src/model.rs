//! The trained recommender: one or more models over shared id maps, the users' histories, and
//! the serving paths (single, batch, cold start, blend, seen-filtering, per-creator caps).

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::als::{in_pool, AlsConfig, AlsModel, ItemFactors};
use crate::histories::Histories;
use crate::interactions::{IdMap, Interactions};
use crate::knn::{ItemKnn, ItemKnnConfig};
use crate::popularity::Popularity;
use crate::topk::{top_k_batch, ItemIndex, Scored};
use crate::RecsysError;

/// Which model a recommender is trained as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ModelKind {
    /// Implicit ALS (with popularity for cold start).
    Als,
    /// Item-item nearest neighbours (with popularity for cold start).
    ItemKnn,
    /// ALS, item-item and popularity, merged.
    Blend,
    /// Popularity with recency alone.
    Popularity,
}

impl ModelKind {
    /// The kind's name as used on the command line and in manifests.
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelKind::Als => "als",
            ModelKind::ItemKnn => "item-knn",
            ModelKind::Blend => "blend",
            ModelKind::Popularity => "popularity",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModelKind {
    type Err = RecsysError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "als" => Ok(ModelKind::Als),
            "item-knn" => Ok(ModelKind::ItemKnn),
            "blend" => Ok(ModelKind::Blend),
            "popularity" => Ok(ModelKind::Popularity),
            _ => Err(RecsysError::InvalidConfig {
                name: "model kind",
                value: format!("{s:?}"),
                reason: "expected als, item-knn, blend or popularity",
            }),
        }
    }
}

/// How the blend merges its components: reciprocal rank fusion,
/// `score(i) = Σ_m weight_m / (rrf_k + rank_m(i))` with ranks from 1, over each component's top
/// `candidates` items. Ranks rather than raw scores, because ALS scores, similarity sums and
/// popularity counts live on unrelated scales.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlendConfig {
    /// Weight of the ALS ranking.
    pub als: f32,
    /// Weight of the item-item ranking.
    pub item_knn: f32,
    /// Weight of the popularity ranking.
    pub popularity: f32,
    /// The fusion constant (60 in Cormack et al. 2009).
    pub rrf_k: f32,
    /// Candidates taken from each component, as a multiple of k.
    pub candidates_per_k: usize,
    /// The share of the training pairs held out, when the blend is trained, to choose the ALS
    /// and item-item weights on the data at hand (`0`: keep the weights as given). Training fits
    /// the components on the rest, scores each pair of weights of [`BLEND_WEIGHT_GRID`] on the
    /// held-out pairs (the mean of NDCG@10 and precision@10, at most 5,000 users), keeps the
    /// best and fits again on every pair. The chosen weights are the ones the artifact records.
    #[serde(default)]
    pub validation: f32,
}

/// The (ALS, item-item) weight pairs a blend trained with [`BlendConfig::validation`] chooses
/// from, the untuned default first (it wins ties). `(1, 0)` is ALS alone and `(0, 1)` item-item
/// alone, both still backed by popularity.
pub const BLEND_WEIGHT_GRID: [(f32, f32); 7] = [
    (1.0, 0.5),
    (1.0, 0.0),
    (1.0, 0.25),
    (1.0, 1.0),
    (1.0, 2.0),
    (1.0, 4.0),
    (0.0, 1.0),
];

impl Default for BlendConfig {
    fn default() -> Self {
        // Chosen on a validation split inside the training data, never the test split
        // (`cargo bench -p domicile-recommender --bench tune_blend`; docs/recommender.md).
        BlendConfig {
            als: 1.0,
            item_knn: 0.5,
            popularity: 0.05,
            rrf_k: 60.0,
            candidates_per_k: 5,
            validation: 0.1,
        }
    }
}

/// Everything needed to train a [`Recommender`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The model to train.
    pub kind: ModelKind,
    /// ALS hyper-parameters (used by `als` and `blend`).
    pub als: AlsConfig,
    /// Item-item hyper-parameters (used by `item-knn` and `blend`).
    pub item_knn: ItemKnnConfig,
    /// Popularity half-life in milliseconds (`None`: plain counts).
    pub popularity_half_life_ms: Option<i64>,
    /// How the blend merges its components.
    pub blend: BlendConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            kind: ModelKind::Als,
            als: AlsConfig::default(),
            item_knn: ItemKnnConfig::default(),
            popularity_half_life_ms: Some(7 * 86_400_000),
            blend: BlendConfig::default(),
        }
    }
}

impl TrainConfig {
    /// The default configuration for a kind.
    pub fn for_kind(kind: ModelKind) -> Self {
        TrainConfig {
            kind,
            ..TrainConfig::default()
        }
    }
}

/// Which ranking to serve from a recommender (a blend can serve any of its parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// The model's own kind.
    Default,
    /// ALS scores.
    Als,
    /// Item-item scores.
    ItemKnn,
    /// Popularity.
    Popularity,
    /// The blend of every trained component.
    Blend,
}

/// Options of one recommendation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecommendOptions {
    /// How many items to return.
    pub k: usize,
    /// Leave out what the user interacted with in training.
    pub exclude_seen: bool,
    /// At most this many items of one creator (items without a known creator are not capped).
    pub per_creator_cap: Option<usize>,
    /// Which ranking to serve.
    pub strategy: Strategy,
}

impl RecommendOptions {
    /// `k` items, seen items excluded, no creator cap, the model's own ranking.
    pub fn top(k: usize) -> Self {
        RecommendOptions {
            k,
            exclude_seen: true,
            per_creator_cap: None,
            strategy: Strategy::Default,
        }
    }
}

/// A recommended item.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The item's id.
    pub item: String,
    /// Its score under the strategy that produced it (higher is better).
    pub score: f32,
}

/// A trained recommender: the algorithm only. Item ids, item-creator groups, the trained
/// components (ALS item factors, item-item neighbours, popularity) and the configuration.
///
/// It holds nothing about any person (invariant 10 of the design): no user id, no user factors,
/// no history. A request brings the user's history ([`Histories`], or one history as item
/// indices and weights), and ALS folds the user's factors in from it
/// ([`ItemFactors::fold_in`]).
#[derive(Debug, Clone)]
pub struct Recommender {
    pub(crate) config: TrainConfig,
    pub(crate) items: IdMap,
    /// Each item's creator group (an opaque index, not a creator id: the cap needs only to know
    /// which items share a creator), `u32::MAX` when unknown.
    pub(crate) item_creator: Vec<u32>,
    pub(crate) als: Option<ItemFactors>,
    pub(crate) knn: Option<ItemKnn>,
    pub(crate) popularity: Popularity,
    /// The quantised index over the ALS item factors, built on first use.
    pub(crate) index: std::sync::OnceLock<ItemIndex>,
}

/// What training learned about each subject: the user factors of the last ALS sweep.
///
/// Protected data of those subjects, never part of an artifact: kept only to compare with
/// fold-in (tests, evaluation of the fold-in itself) or as a sealed record in the subject's home
/// region.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedSubjects {
    users: IdMap,
    factors: usize,
    user_factors: Vec<f32>,
}

impl TrainedSubjects {
    /// The users, by index.
    pub fn users(&self) -> &IdMap {
        &self.users
    }

    /// The trained factors of the user with this id, if the model has an ALS component and knows
    /// the user.
    pub fn factors_of(&self, user: &str) -> Option<&[f32]> {
        let u = self.users.get(user)? as usize;
        self.user_factors
            .get(u * self.factors..(u + 1) * self.factors)
    }
}

pub(crate) use crate::algorithm::NO_CREATOR;

/// Training.
impl Recommender {
    /// Trains the components `config.kind` needs on `data`. The user factors ALS computes on the
    /// way are dropped: serving folds them in again from each user's history.
    pub fn train(data: &Interactions, config: &TrainConfig) -> Result<Self, RecsysError> {
        Ok(Self::train_with_subjects(data, config)?.0)
    }

    /// [`Self::train`], also returning the trained user factors (Protected data of the users;
    /// see [`TrainedSubjects`]).
    pub fn train_with_subjects(
        data: &Interactions,
        config: &TrainConfig,
    ) -> Result<(Self, TrainedSubjects), RecsysError> {
        if data.pairs().is_empty() {
            return Err(RecsysError::Empty(
                "the interactions hold no positive pairs",
            ));
        }
        if config.kind == ModelKind::Blend && config.blend.validation != 0.0 {
            let mut tuned = *config;
            tuned.blend = Self::tune_blend(data, config)?;
            tuned.blend.validation = 0.0;
            let (mut model, subjects) = Self::train_with_subjects(data, &tuned)?;
            // The artifact says the weights were chosen on held-out training pairs, and how many.
            model.config.blend.validation = config.blend.validation;
            return Ok((model, subjects));
        }
        let seen = data.user_items();
        let n_items = data.n_items();
        // A blend whose weights leave a component out does not fit it (nor ship it).
        let blend = config.kind == ModelKind::Blend;
        let wants_als = config.kind == ModelKind::Als || (blend && config.blend.als > 0.0);
        let wants_knn = config.kind == ModelKind::ItemKnn || (blend && config.blend.item_knn > 0.0);
        let (als, subjects) = if wants_als {
            let fitted = AlsModel::fit(&seen, n_items, &config.als)?;
            let subjects = TrainedSubjects {
                users: data.users.clone(),
                factors: fitted.factors,
                user_factors: fitted.user_factors,
            };
            (
                Some(ItemFactors::new(
                    fitted.factors,
                    fitted.item_factors,
                    &config.als,
                )),
                subjects,
            )
        } else {
            let subjects = TrainedSubjects {
                users: data.users.clone(),
                factors: 0,
                user_factors: Vec::new(),
            };
            (None, subjects)
        };
        let knn = if wants_knn {
            Some(ItemKnn::fit(&seen, n_items, &config.item_knn)?)
        } else {
            None
        };
        let model = Recommender {
            config: *config,
            items: data.items.clone(),
            item_creator: data
                .item_creator
                .iter()
                .map(|c| c.unwrap_or(NO_CREATOR))
                .collect(),
            popularity: Popularity::fit(data.pairs(), n_items, config.popularity_half_life_ms),
            als,
            knn,
            index: std::sync::OnceLock::new(),
        };
        Ok((model, subjects))
    }
}

/// Choosing the blend's weights.
impl Recommender {
    /// The weights of [`BLEND_WEIGHT_GRID`] that serve held-out training pairs best (see
    /// [`BlendConfig::validation`]); `config.blend` unchanged when too little is held out.
    fn tune_blend(data: &Interactions, config: &TrainConfig) -> Result<BlendConfig, RecsysError> {
        const MAX_USERS: usize = 5_000;
        let given = config.blend;
        if !(given.validation > 0.0 && given.validation < 1.0) {
            return Err(RecsysError::InvalidConfig {
                name: "blend validation",
                value: given.validation.to_string(),
                reason: "expected a share of the training pairs between 0 and 1",
            });
        }
        let holdout = crate::eval::Holdout::Random {
            fraction: given.validation as f64,
            seed: config.als.seed ^ 0x76a1_1d47,
        };
        let (train, valid) = crate::eval::split(data, holdout)?;
        let mut users: Vec<u32> = valid.pairs().iter().map(|p| p.user).collect();
        users.dedup();
        if users.len() < 10 {
            return Ok(given);
        }
        let stride = users.len().div_ceil(MAX_USERS) as u32;
        let valid = crate::eval::restrict_users(&valid, |u| u % stride == 0);
        let mut inner = *config;
        inner.blend.validation = 0.0;
        let mut model = Self::train(&train, &inner)?;
        let mut best: Option<(f64, (f32, f32))> = None;
        for (als, item_knn) in BLEND_WEIGHT_GRID {
            model.config.blend.als = als;
            model.config.blend.item_knn = item_knn;
            let m = crate::eval::evaluate(&model, &train, &valid, 10, Strategy::Blend)?;
            let score = (m.ndcg + m.precision) / 2.0;
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, (als, item_knn)));
            }
        }
        let (_, (als, item_knn)) = best.expect("the grid is not empty");
        Ok(BlendConfig {
            als,
            item_knn,
            ..given
        })
    }
}

/// What the model is.
impl Recommender {
    /// The configuration the model was trained with.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The model's kind.
    pub fn kind(&self) -> ModelKind {
        self.config.kind
    }

    /// The item ids the model can recommend, by index.
    pub fn items(&self) -> &IdMap {
        &self.items
    }

    /// Each item's creator group (`u32::MAX`: unknown).
    pub fn item_creators(&self) -> &[u32] {
        &self.item_creator
    }

    /// The popularity component (always trained: it serves cold starts).
    pub fn popularity(&self) -> &Popularity {
        &self.popularity
    }

    /// The ALS component (item factors), if trained.
    pub fn als(&self) -> Option<&ItemFactors> {
        self.als.as_ref()
    }

    /// The item-item component, if trained.
    pub fn item_knn(&self) -> Option<&ItemKnn> {
        self.knn.as_ref()
    }

    /// The model with other blend weights: they are serving-time parameters (ranks are fused
    /// after every component has scored), so they can be tuned without retraining.
    pub fn with_blend(mut self, blend: BlendConfig) -> Self {
        self.config.blend = blend;
        self
    }

    /// The histories of `data`'s users against this model's items (see [`Histories`]).
    pub fn histories(&self, data: &Interactions) -> Histories {
        Histories::for_model(self, data)
    }

    /// A user's ALS factors, folded in from their history (`None` without an ALS component).
    pub fn fold_in(&self, history: (&[u32], &[f32])) -> Option<Vec<f32>> {
        self.als.as_ref().map(|a| a.fold_in(history.0, history.1))
    }
}

/// Serving.
impl Recommender {
    /// Recommends items for the user with this id, from their history in `histories`. A user
    /// with no history gets the cold-start ranking (popularity with recency).
    pub fn recommend(
        &self,
        histories: &Histories,
        user: &str,
        options: &RecommendOptions,
    ) -> Result<Vec<Recommendation>, RecsysError> {
        let scored = self.recommend_history(histories.of(user), options)?;
        Ok(self.named(scored))
    }

    /// Recommends for many users at once, in parallel; the result is in the order of `users`.
    pub fn recommend_many(
        &self,
        histories: &Histories,
        users: &[&str],
        options: &RecommendOptions,
    ) -> Result<Vec<Vec<Recommendation>>, RecsysError> {
        let idx: Vec<Option<u32>> = users.iter().map(|u| histories.users().get(u)).collect();
        Ok(self
            .recommend_batch(histories, &idx, options)?
            .into_iter()
            .map(|s| self.named(s))
            .collect())
    }

    /// Recommends for one history (item indices, sorted ascending, and weights): ALS folds the
    /// user's factors in first. An empty history gets the cold-start ranking.
    pub fn recommend_history(
        &self,
        history: (&[u32], &[f32]),
        options: &RecommendOptions,
    ) -> Result<Vec<Scored>, RecsysError> {
        let strategy = self.strategy(options.strategy)?;
        let mut scratch = (vec![0f32; self.items.len()], Vec::new());
        let x = self.needs_factors(strategy).then(|| self.fold_in(history));
        Ok(self.serve_one(
            history,
            x.flatten().as_deref(),
            options,
            strategy,
            &mut scratch,
            None,
        ))
    }

    fn named(&self, scored: Vec<Scored>) -> Vec<Recommendation> {
        scored
            .into_iter()
            .map(|s| Recommendation {
                item: self.items.id(s.item).to_owned(),
                score: s.score,
            })
            .collect()
    }

    fn strategy(&self, strategy: Strategy) -> Result<Strategy, RecsysError> {
        let s = match strategy {
            Strategy::Default => match self.config.kind {
                ModelKind::Als => Strategy::Als,
                ModelKind::ItemKnn => Strategy::ItemKnn,
                ModelKind::Blend => Strategy::Blend,
                ModelKind::Popularity => Strategy::Popularity,
            },
            s => s,
        };
        match s {
            Strategy::Als if self.als.is_none() => Err(RecsysError::MissingComponent("ALS")),
            Strategy::ItemKnn if self.knn.is_none() => {
                Err(RecsysError::MissingComponent("item-item"))
            }
            Strategy::Blend if self.als.is_none() && self.knn.is_none() => {
                Err(RecsysError::MissingComponent("ALS or item-item"))
            }
            s => Ok(s),
        }
    }

    /// Whether serving `strategy` scores from ALS user factors.
    fn needs_factors(&self, strategy: Strategy) -> bool {
        self.als.is_some()
            && match strategy {
                Strategy::Als => true,
                Strategy::Blend => self.config.blend.als > 0.0,
                _ => false,
            }
    }

    /// Recommends by user index into `histories` for many users (`None`: a user with no
    /// history), in parallel over the current rayon pool. ALS user factors are folded in for
    /// every user first; ALS top-k (alone, or as the blend's candidates) then takes the tiled
    /// batch kernel.
    pub fn recommend_batch(
        &self,
        histories: &Histories,
        users: &[Option<u32>],
        options: &RecommendOptions,
    ) -> Result<Vec<Vec<Scored>>, RecsysError> {
        let history = |q: usize| match users[q] {
            Some(u) => histories.history(u),
            None => (&[][..], &[][..]),
        };
        self.recommend_batch_by(users.len(), &history, options)
    }

    /// [`Self::recommend_batch`] for `n` users whose histories `history(q)` gives.
    pub(crate) fn recommend_batch_by<'h>(
        &self,
        n: usize,
        history: &(dyn Fn(usize) -> (&'h [u32], &'h [f32]) + Sync),
        options: &RecommendOptions,
    ) -> Result<Vec<Vec<Scored>>, RecsysError> {
        let strategy = self.strategy(options.strategy)?;
        let warm: Vec<usize> = (0..n).filter(|&q| !history(q).0.is_empty()).collect();
        let als_lists = match (self.needs_factors(strategy), &self.als) {
            (true, Some(als)) => {
                let m = match strategy {
                    Strategy::Als => self.fetch_size(options),
                    _ => self.fetch_size(options) * self.config.blend.candidates_per_k.max(1),
                };
                Some(self.als_batch(als, &warm, history, m, options.exclude_seen))
            }
            _ => None,
        };
        if let (Strategy::Als, None, Some(lists)) = (strategy, options.per_creator_cap, &als_lists)
        {
            let mut out = vec![Vec::new(); n];
            for (&q, list) in warm.iter().zip(lists) {
                out[q] = list.clone();
            }
            for (q, slot) in out.iter_mut().enumerate() {
                if history(q).0.is_empty() {
                    *slot = self.cold_start((&[], &[]), options);
                }
            }
            return Ok(out);
        }
        let mut by_query: Vec<Option<Vec<Scored>>> = vec![None; n];
        if let Some(lists) = als_lists {
            for (&q, list) in warm.iter().zip(lists) {
                by_query[q] = Some(list);
            }
        }
        let n_items = self.items.len();
        Ok(by_query
            .into_par_iter()
            .enumerate()
            .with_min_len(16)
            .map_init(
                || (vec![0f32; n_items], Vec::new()),
                |scratch, (q, als)| {
                    self.serve_one(history(q), None, options, strategy, scratch, als)
                },
            )
            .collect())
    }

    /// Folds in the users at `warm` (in parallel) and takes their ALS top-`k` by the batch
    /// kernel, in the order of `warm`.
    fn als_batch<'h>(
        &self,
        als: &ItemFactors,
        warm: &[usize],
        history: &(dyn Fn(usize) -> (&'h [u32], &'h [f32]) + Sync),
        k: usize,
        exclude_seen: bool,
    ) -> Vec<Vec<Scored>> {
        let f = als.factors;
        let mut queries = vec![0f32; warm.len() * f];
        queries
            .par_chunks_mut(f)
            .zip(warm.par_iter())
            .with_min_len(16)
            .for_each_init(Vec::new, |a, (x, &q)| {
                let (items, weights) = history(q);
                als.fold_in_into(items, weights, x, a);
            });
        let excludes: Vec<&[u32]> = warm
            .iter()
            .map(|&q| if exclude_seen { history(q).0 } else { &[] })
            .collect();
        top_k_batch(&queries, &als.items, f, k, |q| excludes[q])
    }

    fn cold_start(&self, history: (&[u32], &[f32]), options: &RecommendOptions) -> Vec<Scored> {
        let exclude = if options.exclude_seen { history.0 } else { &[] };
        let fetch = self.fetch_size(options);
        self.cap(self.popularity.recommend(fetch, exclude), options)
    }

    fn fetch_size(&self, options: &RecommendOptions) -> usize {
        // A creator cap throws candidates away; fetch more so that k usually survive.
        match options.per_creator_cap {
            Some(_) => options.k.saturating_mul(4).saturating_add(16),
            None => options.k,
        }
    }

    /// One user: `factors` are their folded-in ALS factors when the strategy needs them and they
    /// were not served in batch; `als_candidates` the ALS list when they were.
    fn serve_one(
        &self,
        history: (&[u32], &[f32]),
        factors: Option<&[f32]>,
        options: &RecommendOptions,
        strategy: Strategy,
        scratch: &mut (Vec<f32>, Vec<u32>),
        als_candidates: Option<Vec<Scored>>,
    ) -> Vec<Scored> {
        if history.0.is_empty() || strategy == Strategy::Popularity {
            return self.cold_start(history, options);
        }
        let exclude = if options.exclude_seen { history.0 } else { &[] };
        let fetch = self.fetch_size(options);
        let list = match strategy {
            Strategy::Als => match als_candidates {
                Some(list) => list,
                None => self.als_top(factors, fetch, exclude),
            },
            Strategy::ItemKnn => self.knn_top(history, fetch, exclude, scratch),
            _ => self.blend_top(factors, history, fetch, exclude, scratch, als_candidates),
        };
        self.cap(list, options)
    }

    fn als_top(&self, factors: Option<&[f32]>, k: usize, exclude: &[u32]) -> Vec<Scored> {
        let als = self.als.as_ref().expect("strategy checked");
        let folded;
        let x = match factors {
            Some(x) => x,
            None => {
                folded = vec![0f32; als.factors];
                &folded
            }
        };
        self.index
            .get_or_init(|| ItemIndex::new(&als.items, als.factors))
            .top_k(x, k, exclude)
    }

    fn knn_top(
        &self,
        history: (&[u32], &[f32]),
        k: usize,
        exclude: &[u32],
        scratch: &mut (Vec<f32>, Vec<u32>),
    ) -> Vec<Scored> {
        let knn = self.knn.as_ref().expect("strategy checked");
        let mut list = knn.recommend(history, k, exclude, scratch);
        if list.len() < k {
            // Too few neighbours reached: fill from popularity so a request still gets k items.
            let mut skip: Vec<u32> = exclude
                .iter()
                .copied()
                .chain(list.iter().map(|s| s.item))
                .collect();
            skip.sort_unstable();
            let floor = list.last().map_or(0.0, |s| s.score);
            for s in self.popularity.recommend(k - list.len(), &skip) {
                // Below every similarity-scored item, still ordered by popularity.
                list.push(Scored {
                    item: s.item,
                    score: floor.min(0.0) - 1.0 / (1.0 + s.score),
                });
            }
        }
        list
    }

    fn blend_top(
        &self,
        factors: Option<&[f32]>,
        history: (&[u32], &[f32]),
        k: usize,
        exclude: &[u32],
        scratch: &mut (Vec<f32>, Vec<u32>),
        als_candidates: Option<Vec<Scored>>,
    ) -> Vec<Scored> {
        let b = &self.config.blend;
        let m = k.saturating_mul(b.candidates_per_k.max(1));
        let mut fused: std::collections::HashMap<u32, f32> = std::collections::HashMap::new();
        let mut add = |list: Vec<Scored>, weight: f32| {
            for (rank, s) in list.into_iter().enumerate() {
                *fused.entry(s.item).or_insert(0.0) += weight / (b.rrf_k + rank as f32 + 1.0);
            }
        };
        if self.als.is_some() && b.als > 0.0 {
            add(
                als_candidates.unwrap_or_else(|| self.als_top(factors, m, exclude)),
                b.als,
            );
        }
        if let Some(knn) = &self.knn {
            if b.item_knn > 0.0 {
                add(knn.recommend(history, m, exclude, scratch), b.item_knn);
            }
        }
        if b.popularity > 0.0 {
            add(self.popularity.recommend(m, exclude), b.popularity);
        }
        let mut list: Vec<Scored> = fused
            .into_iter()
            .map(|(item, score)| Scored { item, score })
            .collect();
        list.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
        list.truncate(k);
        list
    }

    /// Applies the per-creator cap and truncates to k.
    fn cap(&self, list: Vec<Scored>, options: &RecommendOptions) -> Vec<Scored> {
        let Some(cap) = options.per_creator_cap else {
            let mut list = list;
            list.truncate(options.k);
            return list;
        };
        let mut count: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(options.k);
        for s in list {
            if out.len() == options.k {
                break;
            }
            let creator = self
                .item_creator
                .get(s.item as usize)
                .copied()
                .unwrap_or(NO_CREATOR);
            if creator != NO_CREATOR {
                let n = count.entry(creator).or_insert(0);
                if *n >= cap {
                    continue;
                }
                *n += 1;
            }
            out.push(s);
        }
        out
    }

    /// Runs `f` on a pool with the model's configured thread count (ALS's `threads`).
    pub fn in_pool<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, RecsysError> {
        in_pool(self.config.als.threads, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InteractionsBuilder;

    fn data() -> Interactions {
        let mut b = InteractionsBuilder::new();
        for u in 0..40u32 {
            for i in 0..30u32 {
                if (u % 5) == (i % 5) && (u + i) % 3 != 0 {
                    let (_, item) = b.add(
                        &format!("u{u}"),
                        &format!("v{i}"),
                        1.0 + (i % 3) as f32,
                        i as i64,
                    );
                    b.set_creator(item, &format!("c{}", i % 2));
                }
            }
        }
        b.build().unwrap()
    }

    fn config(kind: ModelKind) -> TrainConfig {
        let mut c = TrainConfig::for_kind(kind);
        c.als.factors = 8;
        c.als.iterations = 5;
        c.als.threads = 1;
        c.item_knn.threads = 1;
        c
    }

    #[test]
    fn seen_items_are_filtered_and_caps_hold() {
        let d = data();
        for kind in [
            ModelKind::Als,
            ModelKind::ItemKnn,
            ModelKind::Blend,
            ModelKind::Popularity,
        ] {
            let model = Recommender::train(&d, &config(kind)).unwrap();
            let h = model.histories(&d);
            let u = h.users().get("u1").unwrap();
            let seen: Vec<u32> = h.history(u).0.to_vec();
            let recs = model
                .recommend_history(h.history(u), &RecommendOptions::top(10))
                .unwrap();
            assert_eq!(recs.len(), 10, "{kind}");
            assert!(recs.iter().all(|s| !seen.contains(&s.item)), "{kind}");
            let mut capped = RecommendOptions::top(10);
            capped.per_creator_cap = Some(2);
            let recs = model.recommend_history(h.history(u), &capped).unwrap();
            assert_eq!(recs.len(), 4, "{kind}: two creators, two each");
            let batch = model
                .recommend_batch(&h, &[Some(u), None], &RecommendOptions::top(10))
                .unwrap();
            assert_eq!(
                batch[0],
                model
                    .recommend_history(h.history(u), &RecommendOptions::top(10))
                    .unwrap(),
                "{kind}"
            );
            assert_eq!(
                batch[1],
                model.popularity.recommend(10, &[]),
                "{kind}: cold start"
            );
        }
    }

    #[test]
    fn unknown_users_get_popularity_and_missing_parts_are_errors() {
        let d = data();
        let model = Recommender::train(&d, &config(ModelKind::Als)).unwrap();
        let h = model.histories(&d);
        let recs = model
            .recommend(&h, "nobody", &RecommendOptions::top(3))
            .unwrap();
        let pop: Vec<String> = model
            .popularity
            .recommend(3, &[])
            .iter()
            .map(|s| model.items.id(s.item).to_owned())
            .collect();
        assert_eq!(recs.iter().map(|r| r.item.clone()).collect::<Vec<_>>(), pop);
        let mut opts = RecommendOptions::top(3);
        opts.strategy = Strategy::ItemKnn;
        assert!(matches!(
            model.recommend(&h, "u1", &opts),
            Err(RecsysError::MissingComponent(_))
        ));
        assert!("knn".parse::<ModelKind>().is_err());
    }

    #[test]
    fn fold_in_solves_the_training_equation_exactly() {
        // With an exact solver, the trained user factors solve the same equation against the
        // item factors of the previous half-sweep; fold-in against the final item factors must
        // satisfy the equation to rounding: check the residual directly.
        let d = data();
        let model = Recommender::train(&d, &config(ModelKind::Als)).unwrap();
        let als = model.als().unwrap();
        let h = model.histories(&d);
        let (items, weights) = h.of("u3");
        let x = als.fold_in(items, weights);
        let f = als.factors();
        let mut ax = vec![0f64; f];
        let mut b = vec![0f64; f];
        for i in 0..als.n_items() {
            let y = als.item(i);
            let w = items
                .binary_search(&(i as u32))
                .map_or(0.0, |at| weights[at]);
            let c = 1.0 + (als.alpha * w) as f64;
            let s: f64 = y
                .iter()
                .zip(&x)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum();
            for r in 0..f {
                ax[r] += c * s * y[r] as f64;
                if w > 0.0 {
                    b[r] += c * y[r] as f64;
                }
            }
        }
        for r in 0..f {
            ax[r] += als.regularization as f64 * x[r] as f64;
            assert!(
                (ax[r] - b[r]).abs() < 1e-3 * (1.0 + b[r].abs()),
                "row {r}: {} vs {}",
                ax[r],
                b[r]
            );
        }
        assert!(als.fold_in(&[], &[]).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn the_blend_chooses_its_weights_on_held_out_training_pairs() {
        let d = data();
        let mut c = config(ModelKind::Blend);
        c.blend.validation = 0.2;
        let model = Recommender::train(&d, &c).unwrap();
        let chosen = model.config().blend;
        assert!(BLEND_WEIGHT_GRID.contains(&(chosen.als, chosen.item_knn)));
        assert_eq!(
            chosen.validation, 0.2,
            "the artifact records that the weights were chosen"
        );
        // Deterministic: the same data and seed choose the same weights.
        assert_eq!(Recommender::train(&d, &c).unwrap().config().blend, chosen);
        // A component the weights leave out is not fitted.
        if chosen.als == 0.0 {
            assert!(model.als().is_none());
        }
        if chosen.item_knn == 0.0 {
            assert!(model.item_knn().is_none());
        }
        // Fixed weights are kept as given.
        c.blend.validation = 0.0;
        c.blend.item_knn = 3.0;
        assert_eq!(
            Recommender::train(&d, &c).unwrap().config().blend.item_knn,
            3.0
        );
        for bad in [1.0f32, 1.5, f32::NAN, -0.1] {
            c.blend.validation = bad;
            let err = Recommender::train(&d, &c).unwrap_err();
            assert!(
                matches!(err, RecsysError::InvalidConfig { .. }),
                "{bad}: {err}"
            );
        }
    }
}
