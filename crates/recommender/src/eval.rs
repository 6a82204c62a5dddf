//! Offline evaluation: seeded hold-out splits and ranking metrics.
//!
//! For each test user `u` with held-out relevant items `R_u` and recommended list `L_u`
//! (length `k`, training items excluded), with `hits_u = |L_u ∩ R_u|`:
//!
//! - `precision@k = hits_u / k`
//! - `recall@k = hits_u / |R_u|`
//! - `NDCG@k = DCG / IDCG`, `DCG = Σ_{r=1..k, L_u[r] ∈ R_u} 1 / log2(r + 1)`,
//!   `IDCG = Σ_{r=1..min(k, |R_u|)} 1 / log2(r + 1)`
//! - `AP@k = (1 / min(k, |R_u|)) Σ_{r=1..k, L_u[r] ∈ R_u} precision@r`
//!
//! each averaged over test users (macro average), and
//! `coverage = |∪_u L_u| / n_items`, the share of the catalogue that is recommended to anyone.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::histories::Histories;
use crate::hosted::Serving;
use crate::interactions::{Interaction, Interactions};
use crate::model::{RecommendOptions, Strategy};
use crate::RecsysError;

/// How to hold out test pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Holdout {
    /// Each pair goes to the test set with probability `fraction`, independently, seeded; a user
    /// always keeps at least one training pair.
    Random {
        /// The share held out, in (0, 1).
        fraction: f64,
        /// The seed.
        seed: u64,
    },
    /// Each user's latest `fraction` of pairs (by timestamp; ties by item index) are held out,
    /// keeping at least one training pair: tomorrow is predicted from yesterday.
    Temporal {
        /// The share held out, in (0, 1).
        fraction: f64,
    },
}

/// Splits the interactions into (train, test) sharing id maps.
pub fn split(
    data: &Interactions,
    holdout: Holdout,
) -> Result<(Interactions, Interactions), RecsysError> {
    let fraction = match holdout {
        Holdout::Random { fraction, .. } | Holdout::Temporal { fraction } => fraction,
    };
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(RecsysError::InvalidConfig {
            name: "holdout",
            value: fraction.to_string(),
            reason: "expected a fraction strictly between 0 and 1",
        });
    }
    let mut train = Vec::with_capacity(data.pairs().len());
    let mut test = Vec::new();
    let mut rng = match holdout {
        Holdout::Random { seed, .. } => Some(rand_chacha::ChaCha8Rng::seed_from_u64(seed)),
        Holdout::Temporal { .. } => None,
    };
    let pairs = data.pairs();
    let mut start = 0;
    while start < pairs.len() {
        let user = pairs[start].user;
        let end = start + pairs[start..].partition_point(|p| p.user == user);
        let row = &pairs[start..end];
        let mut held = vec![false; row.len()];
        match rng.as_mut() {
            Some(rng) => {
                for h in held.iter_mut() {
                    *h = rng.random_bool(fraction);
                }
                if held.iter().all(|&h| h) {
                    held[0] = false;
                }
            }
            None => {
                let n_test = ((row.len() as f64) * fraction).round() as usize;
                let n_test = n_test.min(row.len() - 1);
                let mut order: Vec<usize> = (0..row.len()).collect();
                order.sort_by_key(|&j| (row[j].timestamp, row[j].item));
                for &j in &order[row.len() - n_test..] {
                    held[j] = true;
                }
            }
        }
        for (p, h) in row.iter().zip(held) {
            if h {
                test.push(*p)
            } else {
                train.push(*p)
            }
        }
        start = end;
    }
    Ok((data.with_pairs(train), data.with_pairs(test)))
}

/// Ranking metrics at a cut-off `k`, averaged over the test users.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// The cut-off.
    pub k: usize,
    /// How many users were evaluated.
    pub users: usize,
    /// Mean precision@k.
    pub precision: f64,
    /// Mean recall@k.
    pub recall: f64,
    /// Mean NDCG@k.
    pub ndcg: f64,
    /// Mean average precision@k.
    pub map: f64,
    /// Share of the catalogue recommended to at least one user.
    pub coverage: f64,
}

/// Computes the metrics of the module docs from recommended lists and relevant sets (one pair of
/// lists per user; users with no relevant items are skipped).
///
/// ```
/// use domicile_recommender::ranking_metrics;
/// // One user: relevant {1, 2}; recommended [1, 9, 2].
/// let m = ranking_metrics(&[vec![1, 9, 2]], &[vec![1, 2]], 3, 10);
/// assert!((m.precision - 2.0 / 3.0).abs() < 1e-12);
/// assert_eq!(m.recall, 1.0);
/// assert!((m.map - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
/// ```
pub fn ranking_metrics(
    recommended: &[Vec<u32>],
    relevant: &[Vec<u32>],
    k: usize,
    n_items: usize,
) -> Metrics {
    let mut m = Metrics {
        k,
        users: 0,
        precision: 0.0,
        recall: 0.0,
        ndcg: 0.0,
        map: 0.0,
        coverage: 0.0,
    };
    let mut covered: HashSet<u32> = HashSet::new();
    let discount = |rank: usize| 1.0 / ((rank + 1) as f64).log2();
    for (recs, rel) in recommended.iter().zip(relevant) {
        if rel.is_empty() || k == 0 {
            continue;
        }
        let rel: HashSet<u32> = rel.iter().copied().collect();
        let list = &recs[..recs.len().min(k)];
        covered.extend(list.iter().copied());
        let (mut hits, mut dcg, mut ap) = (0usize, 0.0, 0.0);
        for (r, item) in list.iter().enumerate() {
            if rel.contains(item) {
                hits += 1;
                dcg += discount(r + 1);
                ap += hits as f64 / (r + 1) as f64;
            }
        }
        let ideal = k.min(rel.len());
        let idcg: f64 = (1..=ideal).map(discount).sum();
        m.users += 1;
        m.precision += hits as f64 / k as f64;
        m.recall += hits as f64 / rel.len() as f64;
        m.ndcg += dcg / idcg;
        m.map += ap / ideal as f64;
    }
    if m.users > 0 {
        let n = m.users as f64;
        m.precision /= n;
        m.recall /= n;
        m.ndcg /= n;
        m.map /= n;
    }
    m.coverage = if n_items == 0 {
        0.0
    } else {
        covered.len() as f64 / n_items as f64
    };
    m
}

/// The test users of a split and each one's relevant items.
pub fn relevant_items(test: &Interactions) -> (Vec<u32>, Vec<Vec<u32>>) {
    let mut users = Vec::new();
    let mut relevant: Vec<Vec<u32>> = Vec::new();
    for p in test.pairs() {
        if users.last() != Some(&p.user) {
            users.push(p.user);
            relevant.push(Vec::new());
        }
        relevant.last_mut().expect("pushed above").push(p.item);
    }
    (users, relevant)
}

/// Evaluates a model against held-out interactions, serving `strategy` with seen items
/// excluded. Each test user's history is their pairs in `known` (usually the training split),
/// folded in as at serving time: the model itself holds no user. Users are evaluated in batch,
/// in parallel.
///
/// Test users and items are matched by id, so the test set may come from anywhere (the US users
/// of a world, read through another path): a test user without history in `known` gets the
/// cold-start ranking, and a held-out item the model does not know still counts as relevant (it
/// can never be recommended, as in production).
pub fn evaluate<M: Serving + ?Sized>(
    model: &M,
    known: &Interactions,
    test: &Interactions,
    k: usize,
    strategy: Strategy,
) -> Result<Metrics, RecsysError> {
    let histories = Histories::for_items(model.items(), known);
    let (users, relevant) = relevant_items(test);
    let same_users = histories.users() == &test.users;
    let idx: Vec<Option<u32>> = users
        .iter()
        .map(|&u| {
            if same_users {
                Some(u)
            } else {
                histories.users().get(test.users.id(u))
            }
        })
        .collect();
    let same_items = model.items() == &test.items;
    let relevant: Vec<Vec<u32>> = if same_items {
        relevant
    } else {
        relevant
            .into_iter()
            .map(|items| {
                items
                    .into_iter()
                    .map(|i| model.items().get(test.items.id(i)).unwrap_or(u32::MAX))
                    .collect()
            })
            .collect()
    };
    let options = RecommendOptions {
        strategy,
        ..RecommendOptions::top(k)
    };
    let recs = model.serve_batch(&histories, &idx, &options)?;
    let lists: Vec<Vec<u32>> = recs
        .into_iter()
        .map(|l| l.into_iter().map(|s| s.item).collect())
        .collect();
    Ok(ranking_metrics(&lists, &relevant, k, model.items().len()))
}

/// Keeps only the pairs of users for whom `keep(user index)` holds: a hold-out restricted to a
/// population (the US users of a mixed world, say).
pub fn restrict_users(data: &Interactions, keep: impl Fn(u32) -> bool) -> Interactions {
    let pairs: Vec<Interaction> = data
        .pairs()
        .iter()
        .filter(|p| keep(p.user))
        .copied()
        .collect();
    data.with_pairs(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InteractionsBuilder;

    #[test]
    fn hand_computed_metrics() {
        // User A: relevant {1, 2, 3}, list [1, 5, 2, 6]; user B: relevant {7}, list [8, 9, 10, 7].
        let m = ranking_metrics(
            &[vec![1, 5, 2, 6], vec![8, 9, 10, 7]],
            &[vec![1, 2, 3], vec![7]],
            4,
            20,
        );
        let l2 = |x: f64| x.log2();
        let p = (2.0 / 4.0 + 1.0 / 4.0) / 2.0;
        let r = (2.0 / 3.0 + 1.0) / 2.0;
        let ndcg_a = (1.0 + 1.0 / l2(4.0)) / (1.0 + 1.0 / l2(3.0) + 1.0 / l2(4.0));
        let ndcg_b = (1.0 / l2(5.0)) / 1.0;
        let ap_a = (1.0 + 2.0 / 3.0) / 3.0;
        let ap_b = 1.0 / 4.0;
        assert!((m.precision - p).abs() < 1e-12);
        assert!((m.recall - r).abs() < 1e-12);
        assert!((m.ndcg - (ndcg_a + ndcg_b) / 2.0).abs() < 1e-12);
        assert!((m.map - (ap_a + ap_b) / 2.0).abs() < 1e-12);
        assert!((m.coverage - 8.0 / 20.0).abs() < 1e-12);
        assert_eq!(m.users, 2);
    }

    proptest::proptest! {
        /// Every metric is a share: between 0 and 1, whatever the lists.
        #[test]
        fn metrics_are_bounded(
            lists in proptest::collection::vec(
                (proptest::collection::vec(0u32..30, 0..12), proptest::collection::btree_set(0u32..30, 0..8)),
                1..20,
            ),
            k in 1usize..12,
        ) {
            let recommended: Vec<Vec<u32>> = lists.iter().map(|(r, _)| {
                let mut seen = HashSet::new();
                r.iter().copied().filter(|i| seen.insert(*i)).collect()
            }).collect();
            let relevant: Vec<Vec<u32>> = lists.iter().map(|(_, rel)| rel.iter().copied().collect()).collect();
            let m = ranking_metrics(&recommended, &relevant, k, 30);
            for v in [m.precision, m.recall, m.ndcg, m.map, m.coverage] {
                proptest::prop_assert!((0.0..=1.0 + 1e-12).contains(&v), "{m:?}");
            }
        }
    }

    #[test]
    fn perfect_lists_score_one() {
        let m = ranking_metrics(&[vec![3, 4]], &[vec![4, 3]], 2, 5);
        assert_eq!((m.precision, m.recall, m.ndcg, m.map), (1.0, 1.0, 1.0, 1.0));
    }

    fn data() -> Interactions {
        let mut b = InteractionsBuilder::new();
        for u in 0..50 {
            for i in 0..20 {
                b.add(&format!("u{u}"), &format!("i{i}"), 1.0, (i * 10 + u) as i64);
            }
        }
        b.add("lonely", "i0", 1.0, 0);
        b.build().unwrap()
    }

    #[test]
    fn random_split_is_seeded_and_keeps_a_training_pair() {
        let d = data();
        let h = Holdout::Random {
            fraction: 0.3,
            seed: 9,
        };
        let (train, test) = split(&d, h).unwrap();
        let (train2, test2) = split(&d, h).unwrap();
        assert_eq!(train.pairs(), train2.pairs());
        assert_eq!(test.pairs(), test2.pairs());
        assert_eq!(train.pairs().len() + test.pairs().len(), d.pairs().len());
        assert_eq!(train.active_users(), d.active_users());
        let share = test.pairs().len() as f64 / d.pairs().len() as f64;
        assert!((0.2..0.4).contains(&share), "{share}");
        let (_, other) = split(
            &d,
            Holdout::Random {
                fraction: 0.3,
                seed: 10,
            },
        )
        .unwrap();
        assert_ne!(other.pairs(), test.pairs());
    }

    #[test]
    fn temporal_split_holds_out_the_latest() {
        let d = data();
        let (train, test) = split(&d, Holdout::Temporal { fraction: 0.25 }).unwrap();
        assert_eq!(test.pairs().len(), 50 * 5);
        for t in test.pairs() {
            assert!(train
                .pairs()
                .iter()
                .filter(|p| p.user == t.user)
                .all(|p| p.timestamp < t.timestamp));
        }
        assert!(split(&d, Holdout::Temporal { fraction: 1.0 }).is_err());
    }
}
