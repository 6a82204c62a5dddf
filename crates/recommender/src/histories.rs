//! The per-subject side of serving: each subject's history against a model's items.
//!
//! A model artifact is the algorithm only (invariant 10 of the design): item factors, item-item
//! neighbours, popularity. What a model knows of a person, their history and the user factors
//! folded in from it, is that person's Protected data. It is built here, at serving time, from
//! the subject's own interactions, read in their home region; it is never written into an
//! artifact.

use crate::interactions::{Csr, IdMap, Interactions};
use crate::model::Recommender;

/// Subjects' histories against one model's item indices: what the seen-filter removes, what the
/// item-item model scores from, and what ALS folds user factors in from.
///
/// Items the model does not know are left out (they can neither be scored nor recommended).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histories {
    users: IdMap,
    seen: Csr,
}

impl Histories {
    /// The histories of every user of `data`, matched to `model`'s items by id.
    pub fn for_model(model: &Recommender, data: &Interactions) -> Histories {
        Histories::for_items(model.items(), data)
    }

    /// The histories of every user of `data`, matched by id to `items` (a model's).
    pub fn for_items(items: &IdMap, data: &Interactions) -> Histories {
        let seen = if items == &data.items {
            data.user_items()
        } else {
            let map: Vec<Option<u32>> = data.items.ids().iter().map(|id| items.get(id)).collect();
            let mut triples: Vec<(u32, u32, f32)> = data
                .pairs()
                .iter()
                .filter_map(|p| map[p.item as usize].map(|i| (p.user, i, p.weight)))
                .collect();
            triples.sort_unstable_by_key(|t| (t.0, t.1));
            Csr::from_sorted(data.n_users(), triples.into_iter())
        };
        Histories {
            users: data.users.clone(),
            seen,
        }
    }

    /// The users, by index.
    pub fn users(&self) -> &IdMap {
        &self.users
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// User `u`'s history: item indices (sorted) and weights. Empty for an index out of range.
    pub fn history(&self, u: u32) -> (&[u32], &[f32]) {
        if (u as usize) < self.seen.rows() {
            self.seen.row(u as usize)
        } else {
            (&[], &[])
        }
    }

    /// The history of the user with this id (empty for a user without one).
    pub fn of(&self, user: &str) -> (&[u32], &[f32]) {
        match self.users.get(user) {
            Some(u) => self.history(u),
            None => (&[], &[]),
        }
    }
}
