//! The trained EASE model: the item × item matrix `B`, its bytes, and scoring a history.

use std::any::Any;

use domicile_recommender::{in_pool, top_k_scores, History, ItemModel, Scored, TrainingSet};

use crate::linalg::{cholesky_in_place, inverse_from_cholesky};
use crate::{EaseConfig, EaseError};

const MAGIC: &[u8; 4] = b"EASE";
const VERSION: u8 = 1;
const NOT_MODELLED: u32 = u32::MAX;

/// A trained EASE model: `B` over the modelled items, nothing per user.
///
/// Parameters (little-endian): `"EASE"` · version `1` u8 · catalogue items `n` u32 · modelled
/// items `m` u32 · their catalogue indices (`m` × u32, ascending) · `B` row-major (`m²` × f32).
#[derive(Clone, PartialEq)]
pub struct EaseModel {
    config: EaseConfig,
    n_catalogue: usize,
    /// The catalogue index of each modelled item, ascending.
    items: Vec<u32>,
    /// Each catalogue item's position among the modelled ones ([`NOT_MODELLED`]: none).
    position: Vec<u32>,
    /// `B`, row-major over modelled positions: row `i` is what item `i` adds to every score.
    weights: Vec<f32>,
}

impl std::fmt::Debug for EaseModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EaseModel")
            .field("config", &self.config)
            .field("catalogue_items", &self.n_catalogue)
            .field("modelled_items", &self.items.len())
            .finish()
    }
}

/// Training.
impl EaseModel {
    /// Trains on `data` (see the crate docs for the closed form).
    pub fn fit(data: &TrainingSet<'_>, config: &EaseConfig) -> Result<EaseModel, EaseError> {
        config.check()?;
        let n_catalogue = data.n_items();
        let item_users = data.item_users();
        let users_of = |i: usize| item_users.row(i).0.len();
        let mut items: Vec<u32> = (0..n_catalogue as u32)
            .filter(|&i| users_of(i as usize) > 0)
            .collect();
        if let Some(top) = config.top_items {
            items.sort_by(|&a, &b| {
                users_of(b as usize)
                    .cmp(&users_of(a as usize))
                    .then(a.cmp(&b))
            });
            items.truncate(top);
            items.sort_unstable();
        }
        let m = items.len();
        if m == 0 {
            return Err(EaseError::NoItems);
        }
        // Checked before the n² allocations.
        if m > config.max_items {
            return Err(EaseError::TooManyItems {
                items: m,
                max: config.max_items,
            });
        }
        let position = positions(&items, n_catalogue);
        let user_items = data.user_items();
        let binary = config.binary;
        let lambda = config.lambda;
        let weights = in_pool(config.threads, || -> Result<Vec<f32>, EaseError> {
            use rayon::prelude::*;
            // G = XᵀX + λI over the modelled items, row by row in parallel: row a sums, over
            // the users of item a, x_ua times the user's row.
            let mut g = vec![0f64; m * m];
            g.par_chunks_mut(m)
                .with_min_len(4)
                .enumerate()
                .for_each(|(a, row)| {
                    let (users, xs) = item_users.row(items[a] as usize);
                    for (&u, &xa) in users.iter().zip(xs) {
                        let xa = if binary { 1.0 } else { xa as f64 };
                        let (their, ws) = user_items.row(u as usize);
                        for (&i, &xb) in their.iter().zip(ws) {
                            let b = position[i as usize];
                            if b != NOT_MODELLED {
                                row[b as usize] += xa * if binary { 1.0 } else { xb as f64 };
                            }
                        }
                    }
                    row[a] += lambda;
                });
            cholesky_in_place(&mut g, m)
                .map_err(|column| EaseError::NotPositiveDefinite { column })?;
            let mut p = vec![0f32; m * m];
            inverse_from_cholesky(&g, m, &mut p);
            drop(g);
            // B_ij = −P_ij / P_jj off the diagonal, 0 on it (Steck, eq. 8).
            let diag: Vec<f32> = (0..m).map(|j| p[j * m + j]).collect();
            p.par_chunks_mut(m).enumerate().for_each(|(i, row)| {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = if i == j { 0.0 } else { -*v / diag[j] };
                }
            });
            Ok(p)
        })
        .map_err(|e| EaseError::Threads {
            threads: config.threads,
            reason: e.to_string(),
        })??;
        Ok(EaseModel {
            config: *config,
            n_catalogue,
            items,
            position,
            weights,
        })
    }
}

/// What the model is.
impl EaseModel {
    /// The configuration it was trained with.
    pub fn config(&self) -> &EaseConfig {
        &self.config
    }

    /// The catalogue indices of the modelled items, ascending.
    pub fn modelled_items(&self) -> &[u32] {
        &self.items
    }

    /// `B_ij` for catalogue items `i` and `j` (`None` if either is not modelled).
    pub fn weight(&self, i: u32, j: u32) -> Option<f32> {
        let a = *self.position.get(i as usize)?;
        let b = *self.position.get(j as usize)?;
        if a == NOT_MODELLED || b == NOT_MODELLED {
            return None;
        }
        Some(self.weights[a as usize * self.items.len() + b as usize])
    }
}

/// Parameters as bytes.
impl EaseModel {
    /// The parameters (see the type's docs for the layout).
    pub fn to_parameters(&self) -> Vec<u8> {
        let m = self.items.len();
        let mut out = Vec::with_capacity(13 + 4 * m + 4 * m * m);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(self.n_catalogue as u32).to_le_bytes());
        out.extend_from_slice(&(m as u32).to_le_bytes());
        for &i in &self.items {
            out.extend_from_slice(&i.to_le_bytes());
        }
        for &w in &self.weights {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Reads parameters written by [`EaseModel::to_parameters`] for a catalogue of `n_catalogue`
    /// items, checking every length, index and weight.
    pub fn from_parameters(
        config: EaseConfig,
        bytes: &[u8],
        n_catalogue: usize,
    ) -> Result<EaseModel, EaseError> {
        let corrupt = |what: &str| EaseError::Corrupt(what.to_owned());
        if bytes.len() < 13 || &bytes[..4] != MAGIC {
            return Err(corrupt("not EASE parameters (bad magic bytes)"));
        }
        if bytes[4] != VERSION {
            return Err(EaseError::Corrupt(format!(
                "parameters version {} (this build reads {VERSION})",
                bytes[4]
            )));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let n = u32_at(5) as usize;
        let m = u32_at(9) as usize;
        if n != n_catalogue {
            return Err(EaseError::Corrupt(format!(
                "the parameters are for {n} catalogue items, the artifact's catalogue has {n_catalogue}"
            )));
        }
        if m > n || m > config.max_items {
            return Err(EaseError::Corrupt(format!(
                "{m} modelled items, beyond the catalogue ({n}) or the cap ({})",
                config.max_items
            )));
        }
        let want = 13 + 4 * m + 4 * m * m;
        if bytes.len() != want {
            return Err(EaseError::Corrupt(format!(
                "{} bytes, expected {want} for {m} modelled items",
                bytes.len()
            )));
        }
        let items: Vec<u32> = (0..m).map(|k| u32_at(13 + 4 * k)).collect();
        if items.windows(2).any(|w| w[0] >= w[1]) || items.last().is_some_and(|&i| i as usize >= n)
        {
            return Err(corrupt(
                "the modelled items are not ascending catalogue indices",
            ));
        }
        let weights: Vec<f32> = bytes[13 + 4 * m..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        if weights.iter().any(|w| !w.is_finite()) {
            return Err(corrupt("a weight is not a finite number"));
        }
        Ok(EaseModel {
            config,
            n_catalogue,
            position: positions(&items, n),
            items,
            weights,
        })
    }
}

fn positions(items: &[u32], n_catalogue: usize) -> Vec<u32> {
    let mut position = vec![NOT_MODELLED; n_catalogue];
    for (p, &i) in items.iter().enumerate() {
        position[i as usize] = p as u32;
    }
    position
}

impl ItemModel for EaseModel {
    fn hyper_parameters(&self) -> serde_json::Value {
        self.config.to_settings()
    }

    fn parameters(&self) -> Vec<u8> {
        self.to_parameters()
    }

    /// `s = xB` over the modelled items; items not modelled are neither scored nor recommended,
    /// and a history with no modelled item gets an empty list (the platform fills it from
    /// popularity).
    fn recommend(&self, history: History<'_>, k: usize, exclude_seen: bool) -> Vec<Scored> {
        let m = self.items.len();
        let mut scores = vec![0f32; m];
        let mut seen = Vec::with_capacity(history.0.len());
        for (&item, &w) in history.0.iter().zip(history.1) {
            let Some(&p) = self.position.get(item as usize) else {
                continue;
            };
            if p == NOT_MODELLED {
                continue;
            }
            seen.push(p);
            let x = if self.config.binary { 1.0 } else { w };
            let row = &self.weights[p as usize * m..(p as usize + 1) * m];
            for (s, &b) in scores.iter_mut().zip(row) {
                *s += x * b;
            }
        }
        if seen.is_empty() {
            return Vec::new();
        }
        // Positions follow catalogue order, so the sorted history maps to sorted positions.
        let exclude: &[u32] = if exclude_seen { &seen } else { &[] };
        top_k_scores(&scores, k, exclude)
            .into_iter()
            .map(|s| Scored {
                item: self.items[s.item as usize],
                score: s.score,
            })
            .collect()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
