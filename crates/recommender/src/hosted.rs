//! The platform's model: any [`Algorithm`]'s trained parameters, hosted with the catalogue, and
//! served the same way whatever the algorithm (cold start, seen-filtering, per-creator caps).

use std::collections::HashMap;

use crate::algorithm::{Algorithm, Catalogue, History, ItemModel, TrainingSet, NO_CREATOR};
use crate::histories::Histories;
use crate::interactions::{IdMap, Interactions};
use crate::model::{RecommendOptions, Recommendation, Recommender, Strategy};
use crate::screen::Screen;
use crate::topk::Scored;
use crate::RecsysError;

/// A trained model as the platform keeps, writes, deploys and serves it: the algorithm's
/// item-side parameters ([`ItemModel`]) and the [`Catalogue`] (item ids, creator groups,
/// popularity for cold starts). Like every artifact, it holds no subject's data.
#[derive(Debug)]
pub struct Model {
    algorithm: String,
    algorithm_version: String,
    catalogue: Catalogue,
    inner: Box<dyn ItemModel>,
    /// The subjects of the data it was trained on (in memory only, never written): every
    /// artifact written from this model is screened for them, whatever screen the writer passes.
    handed: Screen,
}

/// Training and loading.
impl Model {
    /// Trains `algorithm` on `data` with `settings` (its hyper-parameters, a JSON object).
    ///
    /// The algorithm is handed a [`TrainingSet`] (dense indices, no subject id) and nothing
    /// else; the platform keeps `data`'s ids. Its errors come back as
    /// [`RecsysError::Algorithm`] naming it.
    pub fn train(
        algorithm: &dyn Algorithm,
        data: &Interactions,
        settings: &serde_json::Value,
    ) -> Result<Model, RecsysError> {
        if data.pairs().is_empty() {
            return Err(RecsysError::Empty(
                "the interactions hold no positive pairs",
            ));
        }
        let catalogue = Catalogue::of(data);
        let inner = {
            let set = TrainingSet::new(data, &catalogue);
            algorithm
                .train(&set, settings)
                .map_err(|cause| RecsysError::Algorithm {
                    algorithm: algorithm.name().to_owned(),
                    cause,
                })?
        };
        Ok(Model {
            algorithm: algorithm.name().to_owned(),
            algorithm_version: algorithm.version().to_owned(),
            catalogue,
            inner,
            handed: Screen::of(data),
        })
    }

    /// Hosts a built-in recommender trained directly ([`Recommender::train`], or
    /// [`Recommender::train_with_subjects`] to compare fold-in with trained user factors), with
    /// its own items, creator groups and popularity as the catalogue.
    pub fn from_recommender(model: Recommender) -> Model {
        let catalogue = Catalogue {
            items: model.items.clone(),
            item_creator: model.item_creator.clone(),
            popularity: model.popularity.clone(),
        };
        let algorithm = crate::builtin::BuiltIn::new(model.kind());
        Model::from_parts(&algorithm, catalogue, Box::new(model))
    }

    pub(crate) fn from_parts(
        algorithm: &dyn Algorithm,
        catalogue: Catalogue,
        inner: Box<dyn ItemModel>,
    ) -> Model {
        Model {
            algorithm: algorithm.name().to_owned(),
            algorithm_version: algorithm.version().to_owned(),
            catalogue,
            inner,
            handed: Screen::default(),
        }
    }
}

/// What the model is.
impl Model {
    /// The algorithm's name (`als`, `ease`, …).
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The algorithm's code version.
    pub fn algorithm_version(&self) -> &str {
        &self.algorithm_version
    }

    /// The hyper-parameters the algorithm trained with (what the manifest records).
    pub fn hyper_parameters(&self) -> serde_json::Value {
        self.inner.hyper_parameters()
    }

    /// The catalogue: item ids, creator groups, popularity.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The item ids the model can recommend, by index.
    pub fn items(&self) -> &IdMap {
        &self.catalogue.items
    }

    /// The subjects of the training data ([`Model::train`]'s `data`; none for a model loaded
    /// from an artifact or hosted with [`Model::from_recommender`]), for which every artifact
    /// written from this model is screened.
    pub fn training_subjects(&self) -> &Screen {
        &self.handed
    }

    /// The algorithm's trained parameters.
    pub fn item_model(&self) -> &dyn ItemModel {
        self.inner.as_ref()
    }

    /// The trained parameters as their concrete type, if they are a `T`.
    pub fn downcast<T: ItemModel>(&self) -> Option<&T> {
        self.inner.as_any().downcast_ref::<T>()
    }

    /// The built-in recommender, if this is a built-in model.
    pub fn as_recommender(&self) -> Option<&Recommender> {
        self.downcast::<Recommender>()
    }

    /// The histories of `data`'s users against this model's items (see [`Histories`]).
    pub fn histories(&self, data: &Interactions) -> Histories {
        Histories::for_items(self.items(), data)
    }
}

/// Serving: the same for every algorithm.
impl Model {
    /// Recommends items for the user with this id, from their history in `histories`; a user
    /// without one gets the cold-start ranking (popularity with recency).
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

    /// Recommends for one history (item indices sorted ascending, and weights).
    pub fn recommend_history(
        &self,
        history: History<'_>,
        options: &RecommendOptions,
    ) -> Result<Vec<Scored>, RecsysError> {
        Self::check(options)?;
        if history.0.is_empty() {
            return Ok(self.cold_start(history, options));
        }
        let fetch = self.fetch_size(options);
        let list = self.inner.recommend(history, fetch, options.exclude_seen);
        Ok(self.cap(self.filled(list, history, fetch, options), options))
    }

    /// Recommends by user index into `histories` for many users (`None`: a user with no
    /// history), in parallel.
    pub fn recommend_batch(
        &self,
        histories: &Histories,
        users: &[Option<u32>],
        options: &RecommendOptions,
    ) -> Result<Vec<Vec<Scored>>, RecsysError> {
        Self::check(options)?;
        let history = |u: Option<u32>| match u {
            Some(u) => histories.history(u),
            None => (&[][..], &[][..]),
        };
        let warm: Vec<usize> = (0..users.len())
            .filter(|&q| !history(users[q]).0.is_empty())
            .collect();
        let warm_histories: Vec<History<'_>> = warm.iter().map(|&q| history(users[q])).collect();
        let fetch = self.fetch_size(options);
        let lists = self
            .inner
            .recommend_batch(&warm_histories, fetch, options.exclude_seen);
        let mut out: Vec<Option<Vec<Scored>>> = vec![None; users.len()];
        for ((&q, list), h) in warm.iter().zip(lists).zip(&warm_histories) {
            out[q] = Some(self.cap(self.filled(list, *h, fetch, options), options));
        }
        Ok(out
            .into_iter()
            .zip(users)
            .map(|(list, &u)| list.unwrap_or_else(|| self.cold_start(history(u), options)))
            .collect())
    }

    fn check(options: &RecommendOptions) -> Result<(), RecsysError> {
        if options.strategy != Strategy::Default {
            return Err(RecsysError::InvalidConfig {
                name: "strategy",
                value: format!("{:?}", options.strategy),
                reason: "a hosted model serves its algorithm's own ranking (Strategy::Default); \
                         strategies are the built-in Recommender's",
            });
        }
        Ok(())
    }

    fn named(&self, scored: Vec<Scored>) -> Vec<Recommendation> {
        scored
            .into_iter()
            .map(|s| Recommendation {
                item: self.items().id(s.item).to_owned(),
                score: s.score,
            })
            .collect()
    }

    fn cold_start(&self, history: History<'_>, options: &RecommendOptions) -> Vec<Scored> {
        let exclude = if options.exclude_seen { history.0 } else { &[] };
        let list = self
            .catalogue
            .popularity
            .recommend(self.fetch_size(options), exclude);
        self.cap(list, options)
    }

    /// An algorithm's list without the history's items when they are to be excluded (whether or
    /// not the algorithm left them out), filled up to `fetch` from popularity when it returned
    /// fewer (an algorithm that cannot score some histories, or a small catalogue), below every
    /// item the algorithm scored, still ordered by popularity.
    fn filled(
        &self,
        mut list: Vec<Scored>,
        history: History<'_>,
        fetch: usize,
        options: &RecommendOptions,
    ) -> Vec<Scored> {
        if options.exclude_seen {
            list.retain(|s| history.0.binary_search(&s.item).is_err());
        }
        if list.len() >= fetch {
            return list;
        }
        let mut skip: Vec<u32> = list.iter().map(|s| s.item).collect();
        if options.exclude_seen {
            skip.extend_from_slice(history.0);
        }
        skip.sort_unstable();
        skip.dedup();
        let floor = list.iter().map(|s| s.score).fold(0f32, f32::min);
        for s in self
            .catalogue
            .popularity
            .recommend(fetch - list.len(), &skip)
        {
            list.push(Scored {
                item: s.item,
                score: floor - 1.0 / (1.0 + s.score),
            });
        }
        list
    }

    fn fetch_size(&self, options: &RecommendOptions) -> usize {
        // A creator cap throws candidates away; fetch more so that k usually survive.
        match options.per_creator_cap {
            Some(_) => options.k.saturating_mul(4).saturating_add(16),
            None => options.k,
        }
    }

    /// Keeps items the catalogue knows, applies the per-creator cap and truncates to k.
    fn cap(&self, list: Vec<Scored>, options: &RecommendOptions) -> Vec<Scored> {
        let n = self.catalogue.n_items();
        let mut count: HashMap<u32, usize> = HashMap::new();
        let mut out = Vec::with_capacity(options.k);
        for s in list {
            if out.len() == options.k {
                break;
            }
            // An algorithm's index out of range is dropped, never served (nor a panic).
            if s.item as usize >= n {
                continue;
            }
            if let Some(cap) = options.per_creator_cap {
                let creator = self.catalogue.item_creator[s.item as usize];
                if creator != NO_CREATOR {
                    let c = count.entry(creator).or_insert(0);
                    if *c >= cap {
                        continue;
                    }
                    *c += 1;
                }
            }
            out.push(s);
        }
        out
    }
}

/// What [`crate::evaluate`] serves: a built-in [`Recommender`] or a hosted [`Model`].
pub trait Serving: Sync {
    /// The item ids, by index.
    fn items(&self) -> &IdMap;

    /// Top-k lists for users by index into `histories` (`None`: no history).
    fn serve_batch(
        &self,
        histories: &Histories,
        users: &[Option<u32>],
        options: &RecommendOptions,
    ) -> Result<Vec<Vec<Scored>>, RecsysError>;
}

impl Serving for Model {
    fn items(&self) -> &IdMap {
        Model::items(self)
    }

    fn serve_batch(
        &self,
        histories: &Histories,
        users: &[Option<u32>],
        options: &RecommendOptions,
    ) -> Result<Vec<Vec<Scored>>, RecsysError> {
        self.recommend_batch(histories, users, options)
    }
}

impl Serving for Recommender {
    fn items(&self) -> &IdMap {
        Recommender::items(self)
    }

    fn serve_batch(
        &self,
        histories: &Histories,
        users: &[Option<u32>],
        options: &RecommendOptions,
    ) -> Result<Vec<Vec<Scored>>, RecsysError> {
        self.recommend_batch(histories, users, options)
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;

    use super::*;
    use crate::algorithm::AlgorithmError;
    use crate::InteractionsBuilder;

    /// Recommends a fixed list whatever the history: items 2, 99 (out of range), 5, then stops.
    #[derive(Debug)]
    struct Fixed;

    #[derive(Debug)]
    struct FixedModel;

    impl Algorithm for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn version(&self) -> &str {
            "1"
        }
        fn train(
            &self,
            _: &TrainingSet<'_>,
            _: &serde_json::Value,
        ) -> Result<Box<dyn ItemModel>, AlgorithmError> {
            Ok(Box::new(FixedModel))
        }
        fn load(
            &self,
            _: &serde_json::Value,
            _: &[u8],
            _: &Catalogue,
        ) -> Result<Box<dyn ItemModel>, AlgorithmError> {
            Ok(Box::new(FixedModel))
        }
    }

    impl ItemModel for FixedModel {
        fn hyper_parameters(&self) -> serde_json::Value {
            serde_json::json!({})
        }
        fn parameters(&self) -> Vec<u8> {
            Vec::new()
        }
        fn recommend(&self, _: History<'_>, k: usize, _: bool) -> Vec<Scored> {
            [(2, 3.0), (99, 2.5), (5, 2.0)]
                .into_iter()
                .take(k)
                .map(|(item, score)| Scored { item, score })
                .collect()
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    fn data() -> Interactions {
        let mut b = InteractionsBuilder::new();
        for u in 0..12u32 {
            for i in 0..8u32 {
                if i <= u % 8 {
                    let (_, item) = b.add(&format!("u{u}"), &format!("v{i}"), 1.0, 0);
                    b.set_creator(item, &format!("c{}", i % 2));
                }
            }
        }
        b.build().unwrap()
    }

    #[test]
    fn serving_is_the_platforms_cold_start_fill_cap_and_bounds() {
        let d = data();
        let model = Model::train(&Fixed, &d, &serde_json::json!({})).unwrap();
        let h = model.histories(&d);
        let popular: Vec<u32> = model
            .catalogue()
            .popularity()
            .recommend(8, &[])
            .iter()
            .map(|s| s.item)
            .collect();
        // An empty history: popularity.
        let cold = model
            .recommend_history((&[], &[]), &RecommendOptions::top(3))
            .unwrap();
        assert_eq!(
            cold.iter().map(|s| s.item).collect::<Vec<_>>(),
            popular[..3]
        );
        // A warm user: the algorithm's list, without the item it should not have offered (2, in
        // the history) or the out-of-range one, filled from popularity below it, never
        // repeating an item or serving a seen one.
        let u = h.users().get("u3").unwrap();
        let seen = h.history(u).0.to_vec();
        let recs = model
            .recommend_history(h.history(u), &RecommendOptions::top(6))
            .unwrap();
        let items: Vec<u32> = recs.iter().map(|s| s.item).collect();
        assert_eq!(items[0], 5, "{items:?}");
        assert!(items.iter().all(|&i| (i as usize) < d.n_items()));
        let mut unique = items.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), items.len(), "{items:?}");
        assert!(
            items.iter().all(|i| !seen.contains(i)),
            "{items:?} {seen:?}"
        );
        assert!(
            recs.windows(2).all(|w| w[0].score >= w[1].score),
            "{recs:?}"
        );
        // A creator cap of 1: at most one item per creator (two creators here).
        let mut capped = RecommendOptions::top(6);
        capped.per_creator_cap = Some(1);
        let recs = model.recommend_history(h.history(u), &capped).unwrap();
        assert_eq!(recs.len(), 2, "{recs:?}");
        // The batch path agrees with the single one, cold users included.
        let batch = model
            .recommend_batch(&h, &[Some(u), None], &RecommendOptions::top(6))
            .unwrap();
        assert_eq!(batch[0].iter().map(|s| s.item).collect::<Vec<_>>(), items);
        assert_eq!(
            batch[1].iter().map(|s| s.item).collect::<Vec<_>>(),
            popular[..6]
        );
    }
}
