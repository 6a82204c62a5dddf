//! Item-item nearest neighbours over the interaction matrix, with cosine or BM25 weighting (as
//! in `implicit`'s `CosineRecommender` and `BM25Recommender`).
//!
//! The similarity of items `i` and `j` is `Σ_u v_ui v_uj` over the weighted matrix `V`:
//!
//! - cosine: `v_ui = w_ui / ‖w_·i‖₂`, so the sum is the cosine of the two item columns;
//! - BM25: `v_ui = w_ui (K1 + 1) / (K1 · L_i + w_ui) · idf_u`, with
//!   `L_i = (1 − B) + B · |w_·i|₁ / mean_i |w_·i|₁` (the item's length normalisation) and
//!   `idf_u = ln(n_items) − ln(1 + |items of u|)`, so that users who watch everything say less
//!   about any pair of items than users with narrow tastes.
//!
//! Each item keeps its `neighbours` most similar items. A user's score for item `j` is
//! `Σ_{i ∈ history(u)} w_ui · sim(i, j)`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::interactions::Csr;
use crate::topk::{Scored, TopK};
use crate::RecsysError;

/// How item columns are weighted before their inner products are taken.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "weighting", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Similarity {
    /// Cosine similarity of the item columns.
    Cosine,
    /// Okapi BM25 weighting, then the plain inner product.
    Bm25 {
        /// Term-frequency saturation.
        k1: f32,
        /// Length normalisation strength in `[0, 1]`.
        b: f32,
    },
}

impl Similarity {
    /// BM25 with the parameters of `implicit`'s `BM25Recommender` (`K1 = 1.2`, `B = 0.75`).
    pub fn bm25() -> Self {
        Similarity::Bm25 { k1: 1.2, b: 0.75 }
    }
}

/// Hyper-parameters of the item-item model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ItemKnnConfig {
    /// The weighting.
    pub similarity: Similarity,
    /// How many neighbours each item keeps.
    pub neighbours: usize,
    /// Worker threads (0: one per core).
    pub threads: usize,
}

impl Default for ItemKnnConfig {
    fn default() -> Self {
        ItemKnnConfig {
            similarity: Similarity::bm25(),
            // 100, not 50: on a validation split inside the training data, BM25 with 100
            // neighbours ranks better than with 50 (docs/recommender.md, Performance), and
            // implicit's BM25Recommender at K = 100 beat the blend that used 50.
            neighbours: 100,
            threads: 0,
        }
    }
}

/// Each item's nearest neighbours with their similarities.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemKnn {
    pub(crate) neighbours: Csr,
}

impl ItemKnn {
    /// Computes the neighbour lists from the user × item weight matrix.
    pub fn fit(
        user_items: &Csr,
        n_items: usize,
        config: &ItemKnnConfig,
    ) -> Result<Self, RecsysError> {
        if config.neighbours == 0 {
            return Err(RecsysError::InvalidConfig {
                name: "neighbours",
                value: "0".into(),
                reason: "expected at least 1",
            });
        }
        if let Similarity::Bm25 { k1, b } = config.similarity {
            if !(k1 > 0.0 && k1.is_finite() && (0.0..=1.0).contains(&b)) {
                return Err(RecsysError::InvalidConfig {
                    name: "bm25",
                    value: format!("k1={k1} b={b}"),
                    reason: "expected k1 > 0 and 0 <= b <= 1",
                });
            }
        }
        if user_items.nnz() == 0 {
            return Err(RecsysError::Empty(
                "the interaction matrix has no positive pairs",
            ));
        }
        let weighted = weigh(user_items, n_items, config.similarity);
        let by_item = weighted.transpose(n_items);
        let lists: Vec<Vec<Scored>> = crate::als::in_pool(config.threads, || {
            (0..n_items)
                .into_par_iter()
                .with_min_len(64)
                .map_init(
                    || (vec![0f32; n_items], Vec::<u32>::new()),
                    |(acc, touched), i| {
                        let (users, vi) = by_item.row(i);
                        for (&u, &a) in users.iter().zip(vi) {
                            let (items, vu) = weighted.row(u as usize);
                            for (&j, &b) in items.iter().zip(vu) {
                                if acc[j as usize] == 0.0 {
                                    touched.push(j);
                                }
                                acc[j as usize] += a * b;
                            }
                        }
                        let mut top = TopK::new(config.neighbours);
                        for &j in touched.iter() {
                            let s = std::mem::take(&mut acc[j as usize]);
                            if j as usize != i && s > 0.0 {
                                top.push(j, s);
                            }
                        }
                        touched.clear();
                        let mut list = top.into_sorted();
                        list.sort_by_key(|s| s.item);
                        list
                    },
                )
                .collect()
        })?;
        let neighbours = Csr::from_sorted(
            n_items,
            lists
                .iter()
                .enumerate()
                .flat_map(|(i, l)| l.iter().map(move |s| (i as u32, s.item, s.score))),
        );
        Ok(ItemKnn { neighbours })
    }

    /// The neighbours of item `i` and their similarities.
    pub fn neighbours(&self, i: usize) -> (&[u32], &[f32]) {
        self.neighbours.row(i)
    }

    /// The best `k` items for a user with the given history (items and weights), leaving out the
    /// sorted `exclude` list. `scratch` must hold one zeroed float per item and is left zeroed.
    pub(crate) fn recommend(
        &self,
        history: (&[u32], &[f32]),
        k: usize,
        exclude: &[u32],
        scratch: &mut (Vec<f32>, Vec<u32>),
    ) -> Vec<Scored> {
        let (acc, touched) = scratch;
        for (&i, &w) in history.0.iter().zip(history.1) {
            let (js, sims) = self.neighbours.row(i as usize);
            for (&j, &s) in js.iter().zip(sims) {
                if acc[j as usize] == 0.0 {
                    touched.push(j);
                }
                acc[j as usize] += w * s;
            }
        }
        let mut top = TopK::new(k);
        for &j in touched.iter() {
            let s = std::mem::take(&mut acc[j as usize]);
            // A zero sum (cancelling BM25 weights, or a second visit after `take`) carries no
            // evidence for the item.
            if s != 0.0 && exclude.binary_search(&j).is_err() {
                top.push(j, s);
            }
        }
        touched.clear();
        top.into_sorted()
    }
}

/// The weighted matrix `V` of the module docs, user × item.
fn weigh(user_items: &Csr, n_items: usize, similarity: Similarity) -> Csr {
    let mut v = user_items.clone();
    match similarity {
        Similarity::Cosine => {
            let mut norm = vec![0f64; n_items];
            for (&i, &w) in v.indices.iter().zip(&v.values) {
                norm[i as usize] += (w as f64) * (w as f64);
            }
            for (&i, w) in v.indices.iter().zip(v.values.iter_mut()) {
                *w = (*w as f64 / norm[i as usize].sqrt()) as f32;
            }
        }
        Similarity::Bm25 { k1, b } => {
            let mut length = vec![0f64; n_items];
            for (&i, &w) in v.indices.iter().zip(&v.values) {
                length[i as usize] += w as f64;
            }
            let mean = length.iter().sum::<f64>() / n_items.max(1) as f64;
            let ln_n = (n_items as f64).ln();
            for u in 0..v.rows() {
                let (a, e) = (v.indptr[u], v.indptr[u + 1]);
                let idf = ln_n - ((1 + e - a) as f64).ln();
                for at in a..e {
                    let i = v.indices[at] as usize;
                    let w = v.values[at] as f64;
                    let norm = (1.0 - b as f64) + b as f64 * length[i] / mean;
                    v.values[at] = (w * (k1 as f64 + 1.0) / (k1 as f64 * norm + w) * idf) as f32;
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InteractionsBuilder;

    #[test]
    fn cosine_known_answer() {
        // Items x and y are watched by the same two users; z by one of them.
        let mut b = InteractionsBuilder::new();
        for (u, i) in [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("a", "z")] {
            b.add(u, i, 1.0, 0);
        }
        let m = b.build().unwrap();
        let knn = ItemKnn::fit(
            &m.user_items(),
            3,
            &ItemKnnConfig {
                similarity: Similarity::Cosine,
                neighbours: 5,
                threads: 1,
            },
        )
        .unwrap();
        let (js, sims) = knn.neighbours(0);
        assert_eq!(js, [1, 2]);
        assert!((sims[0] - 1.0).abs() < 1e-6);
        assert!((sims[1] - 1.0 / 2f32.sqrt()).abs() < 1e-6);
        // A user who watched only z: y and x score cos(z, ·) = 1/√2 each.
        let mut scratch = (vec![0f32; 3], Vec::new());
        let recs = knn.recommend((&[2], &[1.0]), 5, &[2], &mut scratch);
        assert_eq!(recs.len(), 2);
        assert!(scratch.0.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn bm25_weights_follow_the_formula() {
        let mut b = InteractionsBuilder::new();
        b.add("a", "x", 2.0, 0);
        b.add("a", "y", 1.0, 0);
        b.add("b", "x", 1.0, 0);
        let m = b.build().unwrap();
        let v = weigh(&m.user_items(), 2, Similarity::Bm25 { k1: 100.0, b: 0.8 });
        // Lengths: x = 3, y = 1, mean 2. User a has 2 items: idf = ln 2 − ln 3.
        let norm_x = 0.2 + 0.8 * 3.0 / 2.0;
        let want = 2.0 * 101.0 / (100.0 * norm_x + 2.0) * (2f64.ln() - 3f64.ln());
        assert!((v.row(0).1[0] as f64 - want).abs() < 1e-6);
    }
}
