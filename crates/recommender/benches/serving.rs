//! Serving benchmarks: top-10 for one user over 100k items × 64 factors (the quantised
//! `ItemIndex` against the plain f32 scan and against scoring everything and sorting), batch
//! top-10 for many users against one-user-at-a-time serving, and the full serving path of one
//! request on a trained 100k-item, 64-factor model: fold the user's factors in from their
//! history, then top-10 (budget: 1 ms). Prints the ratios and the fold-in time.
//!
//! `cargo bench -p domicile-recommender --bench serving -- --measurement-time 3 --warm-up-time 1`

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use domicile_recommender::{
    top_k_batch, top_k_inner_product, ConfidenceWeights, ItemIndex, ModelKind, RecommendOptions,
    Recommender, Strategy, TrainConfig, World, WorldConfig,
};
use rand::{Rng, SeedableRng};

const F: usize = 64;
const ITEMS: usize = 100_000;
const BATCH_USERS: usize = 2_000;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f32>() - 0.5).collect()
}

/// The baseline: score every item, then sort.
fn sort_all(query: &[f32], items: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = items
        .chunks_exact(query.len())
        .enumerate()
        .map(|(i, row)| (i as u32, row.iter().zip(query).map(|(a, b)| a * b).sum()))
        .collect();
    all.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
    all.truncate(k);
    all
}

fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let start = Instant::now();
    for _ in 0..reps {
        black_box(f());
    }
    start.elapsed().as_secs_f64() / reps as f64
}

fn benches(c: &mut Criterion) {
    let items = random(ITEMS * F, 1);
    let query = random(F, 2);
    let users = random(BATCH_USERS * F, 3);
    let exclude: Vec<u32> = (0..40).map(|i| i * 997).collect();
    let index = ItemIndex::new(&items, F);
    let mut g = c.benchmark_group("top10_100k_items_64_factors");
    g.bench_function("item_index_top_k", |b| {
        b.iter(|| index.top_k(black_box(&query), 10, &exclude))
    });
    g.bench_function("top_k_inner_product", |b| {
        b.iter(|| top_k_inner_product(black_box(&query), &items, 10, &exclude))
    });
    g.bench_function("baseline_score_all_and_sort", |b| {
        b.iter(|| sort_all(black_box(&query), &items, 10))
    });
    g.finish();
    let mut g = c.benchmark_group("batch_top10_2k_users_100k_items");
    g.sample_size(10);
    g.bench_function("top_k_batch", |b| {
        b.iter(|| top_k_batch(black_box(&users), &items, F, 10, |_| &exclude[..]))
    });
    g.finish();

    let indexed = time(500, || index.top_k(&query, 10, &exclude));
    let scanned = time(200, || top_k_inner_product(&query, &items, 10, &exclude));
    let sorted = time(20, || sort_all(&query, &items, 10));
    println!(
        "top-10 of 100k x 64: ItemIndex {:.3} ms; f32 scan {:.3} ms ({:.1}x slower); score-all-and-sort baseline {:.3} ms ({:.1}x slower)",
        indexed * 1e3,
        scanned * 1e3,
        scanned / indexed,
        sorted * 1e3,
        sorted / indexed
    );
    let batch = time(2, || top_k_batch(&users, &items, F, 10, |_| &exclude[..]));
    let one_by_one = time(1, || {
        (0..BATCH_USERS)
            .map(|u| top_k_inner_product(&users[u * F..(u + 1) * F], &items, 10, &exclude))
            .collect::<Vec<_>>()
    });
    println!(
        "batch top-10, {BATCH_USERS} users x 100k items: {:.3} s ({:.0} users/s); one at a time {:.3} s; ratio {:.2}x",
        batch,
        BATCH_USERS as f64 / batch,
        one_by_one,
        one_by_one / batch
    );
}

/// One request on a trained model: fold-in from the history, then top-10 by the `ItemIndex`.
fn fold_in_benches(c: &mut Criterion) {
    let world = World::generate(WorldConfig {
        users: 30_000,
        videos: ITEMS,
        events: 600_000,
        ..WorldConfig::default()
    })
    .expect("a valid world");
    let data = world.interactions(&ConfidenceWeights::default());
    let mut config = TrainConfig::for_kind(ModelKind::Als);
    config.als.factors = F;
    config.als.iterations = 2;
    config.als.threads = 2;
    let model = Recommender::train(&data, &config).expect("trains");
    assert_eq!(model.items().len(), ITEMS, "every video drew an event");
    let histories = model.histories(&data);
    // A user with a long history (the fold-in's cost grows with it): the 99th percentile.
    let mut lengths: Vec<(usize, u32)> = (0..histories.len() as u32)
        .map(|u| (histories.history(u).0.len(), u))
        .collect();
    lengths.sort_unstable();
    let (len, user) = lengths[lengths.len() * 99 / 100];
    let history = histories.history(user);
    let options = RecommendOptions {
        strategy: Strategy::Als,
        ..RecommendOptions::top(10)
    };
    let als = model.als().expect("an ALS model");
    // Build the index and YᵀY once, as the first request of a server would.
    model.recommend_history(history, &options).expect("serves");
    let mut g = c.benchmark_group("one_request_100k_items_64_factors");
    g.bench_function("fold_in", |b| {
        b.iter(|| als.fold_in(black_box(history.0), history.1))
    });
    g.bench_function("fold_in_and_top10", |b| {
        b.iter(|| model.recommend_history(black_box(history), &options))
    });
    g.finish();
    let fold = time(2_000, || als.fold_in(history.0, history.1));
    let request = time(500, || model.recommend_history(history, &options));
    println!(
        "one request, 100k items x 64 factors, a history of {len} items (99th percentile): fold-in {:.3} ms; fold-in + top-10 {:.3} ms (budget 1 ms)",
        fold * 1e3,
        request * 1e3
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    fold_in_benches(&mut c);
    benches(&mut c);
    c.final_summary();
}
