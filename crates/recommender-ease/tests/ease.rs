//! EASE against its definition, through the platform's public API only: the closed form's
//! optimality conditions on random data (proptest), the item cap, the parameters' bytes
//! (round trip and corruption), settings, and quality on a generated world.

use domicile_recommender::{
    evaluate, split, Catalogue, ConfidenceWeights, Holdout, Interactions, InteractionsBuilder,
    ItemModel, Model, ModelKind, RecsysError, Strategy, TrainingSet, World, WorldConfig,
};
use domicile_recommender_ease::{Ease, EaseConfig, EaseError, EaseModel};
use proptest::prelude::*;
use serde_json::json;

fn data(pairs: &[(u32, u32)]) -> Interactions {
    let mut b = InteractionsBuilder::new();
    for &(u, i) in pairs {
        b.add(&format!("u{u}"), &format!("v{i}"), 1.0 + (u % 3) as f32, 0);
    }
    b.build().unwrap()
}

fn fit(data: &Interactions, config: &EaseConfig) -> Result<EaseModel, EaseError> {
    let catalogue = Catalogue::of(data);
    Ease::fit(&TrainingSet::new(data, &catalogue), config)
}

fn config(lambda: f64) -> EaseConfig {
    EaseConfig {
        lambda,
        threads: 1,
        ..EaseConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// B solves Steck's constrained problem: diag(B) = 0, and the gradient of
    /// ‖X − XB‖² + λ‖B‖² vanishes off the diagonal, i.e. ((G + λI)B − G)_ij = 0 for i ≠ j.
    /// The conditions determine B (the problem is strictly convex), so this is the definition,
    /// checked without the code's closed form.
    #[test]
    fn b_satisfies_the_optimality_conditions(
        pairs in proptest::collection::btree_set((0u32..14, 0u32..9), 6..80),
        lambda in 0.5f64..40.0,
    ) {
        let pairs: Vec<(u32, u32)> = pairs.into_iter().collect();
        let d = data(&pairs);
        let model = fit(&d, &config(lambda)).unwrap();
        let items = model.modelled_items().to_vec();
        let n = items.len();
        // G over the modelled items, binary, in f64.
        let x = d.user_items();
        let mut g = vec![0f64; n * n];
        for u in 0..x.rows() {
            let row: Vec<u32> = x.row(u).0.to_vec();
            for &a in &row {
                for &b in &row {
                    let (pa, pb) = (items.binary_search(&a).unwrap(), items.binary_search(&b).unwrap());
                    g[pa * n + pb] += 1.0;
                }
            }
        }
        let b = |i: usize, j: usize| model.weight(items[i], items[j]).unwrap() as f64;
        for i in 0..n {
            prop_assert_eq!(b(i, i), 0.0);
            for j in 0..n {
                if i == j {
                    continue;
                }
                let lhs: f64 = (0..n).map(|k| (g[i * n + k] + if i == k { lambda } else { 0.0 }) * b(k, j)).sum();
                let residual = lhs - g[i * n + j];
                prop_assert!(residual.abs() < 1e-3 * (1.0 + g[i * n + j]), "({i}, {j}): {residual}");
            }
        }
    }
}

#[test]
fn a_catalogue_past_the_cap_is_a_typed_error_and_top_items_cuts_it_on_purpose() {
    let pairs: Vec<(u32, u32)> = (0..40u32)
        .flat_map(|u| {
            (0..30u32)
                .filter(move |i| (u + i) % 4 != 0)
                .map(move |i| (u, i))
        })
        .collect();
    let d = data(&pairs);
    let capped = EaseConfig {
        max_items: 10,
        ..config(10.0)
    };
    match fit(&d, &capped) {
        Err(EaseError::TooManyItems { items: 30, max: 10 }) => {}
        other => panic!("expected TooManyItems, got {other:?}"),
    }
    // Through the platform, the same error comes back typed inside RecsysError::Algorithm.
    let err = Model::train(&Ease, &d, &capped.to_settings()).unwrap_err();
    assert!(
        matches!(
            err.algorithm_cause::<EaseError>(),
            Some(EaseError::TooManyItems { items: 30, max: 10 })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("ease"), "{err}");
    let cut = EaseConfig {
        top_items: Some(10),
        ..capped
    };
    let model = fit(&d, &cut).unwrap();
    assert_eq!(model.modelled_items().len(), 10);
}

#[test]
fn parameters_round_trip_and_corruption_is_refused() {
    let pairs: Vec<(u32, u32)> = (0..30u32)
        .flat_map(|u| {
            (0..12u32)
                .filter(move |i| (u * 7 + i) % 3 == 0)
                .map(move |i| (u, i))
        })
        .collect();
    let d = data(&pairs);
    let model = fit(&d, &config(5.0)).unwrap();
    let bytes = model.to_parameters();
    let n = d.n_items();
    let back = EaseModel::from_parameters(*model.config(), &bytes, n).unwrap();
    assert_eq!(back, model);
    let history = (&[0u32, 3][..], &[1.0f32, 1.0][..]);
    assert_eq!(
        back.recommend(history, 5, true),
        model.recommend(history, 5, true)
    );
    assert!(model
        .recommend(history, 5, true)
        .iter()
        .all(|s| s.item != 0 && s.item != 3));

    let corrupt = |b: &[u8], n: usize| EaseModel::from_parameters(*model.config(), b, n);
    assert!(matches!(
        corrupt(&bytes[..bytes.len() - 1], n),
        Err(EaseError::Corrupt(_))
    ));
    assert!(matches!(corrupt(&bytes, n + 1), Err(EaseError::Corrupt(_))));
    let mut t = bytes.clone();
    t[0] = b'X';
    assert!(matches!(corrupt(&t, n), Err(EaseError::Corrupt(_))));
    // Modelled items out of order, or a weight that is not a number.
    let mut t = bytes.clone();
    t[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(corrupt(&t, n), Err(EaseError::Corrupt(_))));
    let mut t = bytes.clone();
    let at = t.len() - 4;
    t[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(matches!(corrupt(&t, n), Err(EaseError::Corrupt(_))));
    // A length that would make the reader allocate beyond the bytes it has.
    let mut t = bytes.clone();
    t[5..9].copy_from_slice(&6_000u32.to_le_bytes());
    t[9..13].copy_from_slice(&5_000u32.to_le_bytes());
    assert!(matches!(
        EaseModel::from_parameters(
            EaseConfig {
                max_items: 100_000,
                ..*model.config()
            },
            &t,
            6_000
        ),
        Err(EaseError::Corrupt(_))
    ));
}

#[test]
fn settings_are_checked() {
    let bad = [
        json!({ "lambda": 0.0 }),
        json!({ "lambda": -3.0 }),
        json!({ "max_items": 0 }),
        json!({ "top_items": 0 }),
        json!({ "lamda": 10.0 }),
        json!({ "lambda": "big" }),
    ];
    for settings in bad {
        assert!(EaseConfig::from_settings(&settings).is_err(), "{settings}");
    }
    let c = EaseConfig::from_settings(&json!({ "lambda": 75.5 })).unwrap();
    assert_eq!(c.lambda, 75.5);
    assert_eq!(c.max_items, EaseConfig::default().max_items);
    assert_eq!(
        EaseConfig::from_settings(&json!(null)).unwrap(),
        EaseConfig::default()
    );
}

#[test]
fn ease_learns_the_world_better_than_popularity() {
    let world = World::generate(WorldConfig {
        users: 1_500,
        videos: 600,
        events: 60_000,
        seed: 11,
        ..WorldConfig::default()
    })
    .unwrap();
    let d = world.interactions(&ConfidenceWeights::default());
    let (train, test) = split(
        &d,
        Holdout::Random {
            fraction: 0.2,
            seed: 5,
        },
    )
    .unwrap();
    let ease = Model::train(&Ease, &train, &json!({ "lambda": 100.0, "threads": 2 })).unwrap();
    let popularity = domicile_recommender::BuiltIn::new(ModelKind::Popularity);
    let pop = Model::train(&popularity, &train, &json!({})).unwrap();
    let m_ease = evaluate(&ease, &train, &test, 10, Strategy::Default).unwrap();
    let m_pop = evaluate(&pop, &train, &test, 10, Strategy::Default).unwrap();
    println!("ease {m_ease:?}\npopularity {m_pop:?}");
    assert!(
        m_ease.ndcg > 1.2 * m_pop.ndcg,
        "{} vs {}",
        m_ease.ndcg,
        m_pop.ndcg
    );
    assert!(m_ease.precision > m_pop.precision);
    // The hyper-parameters the manifest records are the ones trained with, defaults filled in.
    let hyper = ease.hyper_parameters();
    assert_eq!(hyper["lambda"], 100.0);
    assert_eq!(hyper["max_items"], 10_000);
    // A strategy other than the algorithm's own is a typed error, not a silent default.
    let err = evaluate(&ease, &train, &test, 10, Strategy::Als).unwrap_err();
    assert!(matches!(err, RecsysError::InvalidConfig { .. }), "{err}");
}
