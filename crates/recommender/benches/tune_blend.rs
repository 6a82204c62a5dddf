//! Chooses the item-item and blend defaults on a validation split inside the training data, then
//! reports the chosen defaults against ALS and item-item alone on the test split, which played
//! no part in the choice.
//!
//! `cargo bench -p domicile-recommender --bench tune_blend`

use domicile_recommender::{
    evaluate, split, BlendConfig, ConfidenceWeights, Holdout, Interactions, Metrics, ModelKind,
    Recommender, Strategy, TrainConfig, World, WorldConfig,
};

fn config(kind: ModelKind, neighbours: usize) -> TrainConfig {
    let mut c = TrainConfig::for_kind(kind);
    c.als.threads = 2;
    c.item_knn.threads = 2;
    c.item_knn.neighbours = neighbours;
    // This bench sweeps the weights itself, on its own validation split.
    c.blend.validation = 0.0;
    c
}

fn line(name: &str, m: &Metrics) {
    println!(
        "{name:<44} prec@10 {:.4}  recall@10 {:.4}  ndcg@10 {:.4}  map@10 {:.4}",
        m.precision, m.recall, m.ndcg, m.map
    );
}

fn eval(model: &Recommender, known: &Interactions, test: &Interactions, s: Strategy) -> Metrics {
    model
        .in_pool(|| evaluate(model, known, test, 10, s))
        .expect("a pool")
        .expect("evaluates")
}

fn main() {
    let world = World::generate(WorldConfig {
        users: 20_000,
        videos: 8_000,
        events: 800_000,
        seed: 42,
        ..WorldConfig::default()
    })
    .expect("a valid world");
    let data = world.interactions(&ConfidenceWeights::default());
    let (train, test) = split(
        &data,
        Holdout::Random {
            fraction: 0.2,
            seed: 42,
        },
    )
    .expect("splits");
    // Validation inside the training data: the test split is not looked at until the end.
    let (fit, valid) = split(
        &train,
        Holdout::Random {
            fraction: 0.2,
            seed: 7,
        },
    )
    .expect("splits");
    println!(
        "{} pairs: fit {}, validation {}, test {}",
        data.pairs().len(),
        fit.pairs().len(),
        valid.pairs().len(),
        test.pairs().len()
    );

    println!("-- validation: item-item BM25 neighbours");
    let mut best_k = (0.0, 0);
    for k in [50, 100, 200] {
        let m = Recommender::train(&fit, &config(ModelKind::ItemKnn, k)).expect("trains");
        let v = eval(&m, &fit, &valid, Strategy::Default);
        line(&format!("item-knn K={k}"), &v);
        if v.precision + v.ndcg > best_k.0 {
            best_k = (v.precision + v.ndcg, k);
        }
    }
    let k = best_k.1;
    println!("-- validation: blend weights (item-item K={k})");
    let model = Recommender::train(&fit, &config(ModelKind::Blend, k)).expect("trains");
    line("als alone", &eval(&model, &fit, &valid, Strategy::Als));
    line(
        "item-knn alone",
        &eval(&model, &fit, &valid, Strategy::ItemKnn),
    );
    let mut best = (0.0, BlendConfig::default());
    for als in [1.0f32] {
        for knn in [0.5f32, 0.7, 1.0, 1.5, 2.0] {
            for pop in [0.0f32, 0.05] {
                for per_k in [3usize, 5] {
                    let blend = BlendConfig {
                        als,
                        item_knn: knn,
                        popularity: pop,
                        candidates_per_k: per_k,
                        ..BlendConfig::default()
                    };
                    let m = model.clone().with_blend(blend);
                    let v = eval(&m, &fit, &valid, Strategy::Blend);
                    line(
                        &format!("blend als {als} knn {knn} pop {pop} cand {per_k}k"),
                        &v,
                    );
                    if v.precision + v.ndcg > best.0 {
                        best = (v.precision + v.ndcg, blend);
                    }
                }
            }
        }
    }
    println!("chosen: neighbours {k}, {:?}", best.1);

    println!("-- test (trained on the whole training split)");
    let model = Recommender::train(&train, &config(ModelKind::Blend, k))
        .expect("trains")
        .with_blend(best.1);
    line("als", &eval(&model, &train, &test, Strategy::Als));
    line(
        &format!("item-knn bm25 K={k}"),
        &eval(&model, &train, &test, Strategy::ItemKnn),
    );
    line(
        "blend (chosen defaults)",
        &eval(&model, &train, &test, Strategy::Blend),
    );
    let old = model.clone().with_blend(BlendConfig::default());
    line(
        "blend (previous defaults)",
        &eval(&old, &train, &test, Strategy::Blend),
    );
}
