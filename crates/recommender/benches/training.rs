//! Training benchmarks on a generated world: ALS with the conjugate gradient solver against the
//! exact (Cholesky) solver on the same data, and item-item BM25. Prints the ratio.
//!
//! `cargo bench -p domicile-recommender --bench training -- --measurement-time 3 --warm-up-time 1`

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use domicile_recommender::{
    AlsConfig, AlsModel, ConfidenceWeights, ItemKnn, ItemKnnConfig, Solver, World, WorldConfig,
};

fn benches(c: &mut Criterion) {
    let world = World::generate(WorldConfig {
        users: 20_000,
        videos: 10_000,
        events: 1_000_000,
        ..WorldConfig::default()
    })
    .expect("a valid world");
    let data = world.interactions(&ConfidenceWeights::default());
    let m = data.user_items();
    let n_items = data.n_items();
    let config = AlsConfig {
        factors: 64,
        iterations: 3,
        threads: 2,
        ..AlsConfig::default()
    };
    let mut g = c.benchmark_group("train_20k_users_10k_items");
    g.sample_size(10);
    g.bench_function("als_cg_3_iterations", |b| {
        b.iter(|| AlsModel::fit(black_box(&m), n_items, &config))
    });
    g.bench_function("item_knn_bm25", |b| {
        b.iter(|| ItemKnn::fit(black_box(&m), n_items, &ItemKnnConfig::default()))
    });
    g.finish();

    let start = Instant::now();
    AlsModel::fit_with(&m, n_items, &config, Solver::ConjugateGradient).expect("fits");
    let cg = start.elapsed().as_secs_f64();
    let start = Instant::now();
    AlsModel::fit_with(&m, n_items, &config, Solver::Exact).expect("fits");
    let exact = start.elapsed().as_secs_f64();
    println!(
        "ALS, {} pairs, 64 factors, 3 iterations, 2 threads: CG {:.2} s, exact Cholesky {:.2} s; ratio {:.1}x faster",
        m.nnz(),
        cg,
        exact,
        exact / cg
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
