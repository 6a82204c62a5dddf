//! Batch serving of every user of a generated world of about 80k interactions, in one
//! `recommend_batch` call on two threads: each user's ALS factors folded in from their history,
//! then the top-10. In the same run, the path models took before they stopped carrying user
//! factors: the same batch kernel on stored (trained) user factors.
//!
//! `cargo bench -p domicile-recommender --bench batch`

use std::time::Instant;

use domicile_recommender::{
    top_k_batch, ConfidenceWeights, ModelKind, RecommendOptions, Recommender, TrainConfig, World,
    WorldConfig,
};

fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..n {
        let start = Instant::now();
        std::hint::black_box(f());
        best = best.min(start.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let world = World::generate(WorldConfig {
        users: 8_000,
        videos: 3_000,
        events: 160_000,
        ..WorldConfig::default()
    })
    .expect("a valid world");
    let data = world.interactions(&ConfidenceWeights::default());
    println!(
        "pairs {} users {} items {}",
        data.pairs().len(),
        data.n_users(),
        data.n_items()
    );
    for kind in [ModelKind::Als, ModelKind::Blend] {
        let mut c = TrainConfig::for_kind(kind);
        c.als.threads = 2;
        c.item_knn.threads = 2;
        let (model, trained) = Recommender::train_with_subjects(&data, &c).expect("trains");
        let histories = model.histories(&data);
        let users: Vec<Option<u32>> = (0..data.n_users() as u32).map(Some).collect();
        let folded = best_of(5, || {
            model.in_pool(|| model.recommend_batch(&histories, &users, &RecommendOptions::top(10)))
        });
        println!(
            "{kind}: batch top-10 for {} users with fold-in: {:.1} ms (best of 5)",
            users.len(),
            folded * 1e3
        );
        if kind == ModelKind::Als {
            let als = model.als().expect("ALS");
            let f = als.factors();
            let stored: Vec<f32> = histories
                .users()
                .ids()
                .iter()
                .flat_map(|id| trained.factors_of(id).expect("trained").to_vec())
                .collect();
            let old = best_of(5, || {
                model.in_pool(|| {
                    top_k_batch(&stored, als.item_factors(), f, 10, |q| {
                        histories.history(q as u32).0
                    })
                })
            });
            println!(
                "{kind}: the same batch on stored user factors (the path before): {:.1} ms; fold-in costs {:.2}x",
                old * 1e3,
                folded / old
            );
        }
    }
}
