//! Popularity with recency: the cold-start baseline.
//!
//! An item's score is the number of distinct users who interacted with it, each counted with a
//! weight that halves every `half_life_ms` before the newest timestamp in the data:
//! `score_i = Σ_{u ∈ users(i)} 2^(−(t_max − t_ui) / half_life)`. Without timestamps (all zero)
//! or without a half-life, it is the plain count of users.

use crate::interactions::Interaction;
use crate::topk::Scored;

/// Items ranked by recency-weighted popularity.
#[derive(Debug, Clone, PartialEq)]
pub struct Popularity {
    pub(crate) scores: Vec<f32>,
    /// Item indices, most popular first.
    pub(crate) ranked: Vec<u32>,
}

impl Popularity {
    /// Ranks the items of `pairs`.
    pub fn fit(pairs: &[Interaction], n_items: usize, half_life_ms: Option<i64>) -> Self {
        let newest = pairs.iter().map(|p| p.timestamp).max().unwrap_or(0);
        let mut scores = vec![0f32; n_items];
        for p in pairs {
            let decay = match half_life_ms {
                Some(h) if h > 0 => 0.5f64.powf((newest - p.timestamp) as f64 / h as f64) as f32,
                _ => 1.0,
            };
            scores[p.item as usize] += decay;
        }
        Self::from_scores(scores)
    }

    pub(crate) fn from_scores(scores: Vec<f32>) -> Self {
        let mut ranked: Vec<u32> = (0..scores.len() as u32).collect();
        ranked.sort_by(|&a, &b| {
            scores[b as usize]
                .total_cmp(&scores[a as usize])
                .then(a.cmp(&b))
        });
        Popularity { scores, ranked }
    }

    /// The item's score.
    pub fn score(&self, item: usize) -> f32 {
        self.scores[item]
    }

    /// The `k` most popular items not in the sorted `exclude` list.
    pub fn recommend(&self, k: usize, exclude: &[u32]) -> Vec<Scored> {
        self.ranked
            .iter()
            .filter(|i| exclude.binary_search(i).is_err())
            .take(k)
            .map(|&item| Scored {
                item,
                score: self.scores[item as usize],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(user: u32, item: u32, timestamp: i64) -> Interaction {
        Interaction {
            user,
            item,
            weight: 1.0,
            timestamp,
        }
    }

    #[test]
    fn recent_interest_outranks_old_interest() {
        let day = 86_400_000;
        // Item 0: three users, thirty days ago. Item 1: two users today.
        let pairs = [
            pair(0, 0, 0),
            pair(1, 0, 0),
            pair(2, 0, 0),
            pair(3, 1, 30 * day),
            pair(4, 1, 30 * day),
        ];
        let plain = Popularity::fit(&pairs, 2, None);
        assert_eq!(plain.ranked, [0, 1]);
        let recent = Popularity::fit(&pairs, 2, Some(7 * day));
        assert_eq!(recent.ranked, [1, 0]);
        assert!((recent.score(0) - 3.0 * 0.5f32.powf(30.0 / 7.0)).abs() < 1e-6);
        assert_eq!(recent.recommend(5, &[1]).len(), 1);
    }
}
