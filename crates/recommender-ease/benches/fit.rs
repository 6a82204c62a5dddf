//! EASE against the built-in ALS on the same generated world: training (one dense inverse
//! against 15 ALS sweeps) and batch serving of every user (summing rows of B against fold-in and
//! top-k over item factors). Prints the ratios.
//!
//! `cargo bench -p domicile-recommender-ease --bench fit -- --measurement-time 5 --warm-up-time 1`

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use domicile_recommender::{
    BuiltIn, ConfidenceWeights, Model, ModelKind, RecommendOptions, TrainConfig, World, WorldConfig,
};
use domicile_recommender_ease::{Ease, EaseConfig};

fn benches(c: &mut Criterion) {
    let world = World::generate(WorldConfig {
        users: 20_000,
        videos: 1_500,
        events: 600_000,
        ..WorldConfig::default()
    })
    .expect("a valid world");
    let data = world.interactions(&ConfidenceWeights::default());
    let ease_settings = EaseConfig {
        lambda: 400.0,
        threads: 2,
        ..EaseConfig::default()
    }
    .to_settings();
    let als = BuiltIn::new(ModelKind::Als);
    let mut config = TrainConfig::for_kind(ModelKind::Als);
    config.als.threads = 2;
    let als_settings = BuiltIn::settings(&config);

    let mut g = c.benchmark_group("fit_20k_users_1500_items");
    g.sample_size(10);
    g.bench_function("ease", |b| {
        b.iter(|| Model::train(&Ease, black_box(&data), &ease_settings).expect("fits"))
    });
    g.bench_function("als_64_factors_15_iterations", |b| {
        b.iter(|| Model::train(&als, black_box(&data), &als_settings).expect("fits"))
    });
    g.finish();

    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        f();
        start.elapsed().as_secs_f64()
    };
    let ease_model = Model::train(&Ease, &data, &ease_settings).expect("fits");
    let als_model = Model::train(&als, &data, &als_settings).expect("fits");
    let ease_fit = time(&|| {
        Model::train(&Ease, &data, &ease_settings).expect("fits");
    });
    let als_fit = time(&|| {
        Model::train(&als, &data, &als_settings).expect("fits");
    });
    let histories = ease_model.histories(&data);
    let users: Vec<Option<u32>> = (0..histories.len() as u32).map(Some).collect();
    let options = RecommendOptions::top(10);
    let serve = |model: &Model| {
        domicile_recommender::in_pool(2, || {
            model
                .recommend_batch(&histories, &users, &options)
                .expect("serves")
        })
        .expect("a pool")
    };
    let ease_serve = time(&|| {
        serve(&ease_model);
    });
    let als_serve = time(&|| {
        serve(&als_model);
    });
    println!(
        "{} pairs, {} items, 2 threads: fit EASE {ease_fit:.2} s vs ALS {als_fit:.2} s ({:.2}x ALS's time); \
         top-10 for all {} users: EASE {ease_serve:.2} s vs ALS {als_serve:.2} s ({:.2}x)",
        data.pairs().len(),
        data.n_items(),
        ease_fit / als_fit,
        users.len(),
        ease_serve / als_serve
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
