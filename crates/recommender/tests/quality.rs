//! The models learn the planted structure of a generated world, and a model trained on a mix of
//! regions says so in its manifest.

use domicile_policy_us_split::UsSplitPolicy;
use domicile_recommender::{
    evaluate, read_artifact, restrict_users, split, write_artifact, AlgorithmRegistry, BuiltIn,
    ConfidenceWeights, Holdout, Model, ModelKind, Recommender, Screen, Strategy, TrainConfig,
    Trust, World, WorldConfig,
};
use domicile_residency::{ResidencyPolicy, Subject, SubjectId};

fn world() -> World {
    World::generate(WorldConfig {
        users: 1_500,
        videos: 600,
        events: 60_000,
        seed: 7,
        topics: 12,
        ..WorldConfig::default()
    })
    .expect("a valid world")
}

fn config(kind: ModelKind) -> TrainConfig {
    let mut c = TrainConfig::for_kind(kind);
    c.als.factors = 16;
    c.als.iterations = 8;
    c.als.threads = 2;
    c.item_knn.threads = 2;
    c
}

#[test]
fn als_recovers_the_planted_structure_far_better_than_popularity() {
    let data = world().interactions(&ConfidenceWeights::default());
    let (train, test) = split(
        &data,
        Holdout::Random {
            fraction: 0.2,
            seed: 1,
        },
    )
    .unwrap();
    let recall = |kind, strategy| {
        let model = Recommender::train(&train, &config(kind)).unwrap();
        evaluate(&model, &train, &test, 10, strategy).unwrap()
    };
    let pop = recall(ModelKind::Popularity, Strategy::Default);
    let als = recall(ModelKind::Als, Strategy::Default);
    let blend = recall(ModelKind::Blend, Strategy::Default);
    let knn = recall(ModelKind::ItemKnn, Strategy::Default);
    assert!(als.users > 1000);
    assert!(
        als.recall > 1.5 * pop.recall,
        "ALS recall {} vs popularity {}",
        als.recall,
        pop.recall
    );
    assert!(
        als.ndcg > 1.5 * pop.ndcg,
        "ALS NDCG {} vs popularity {}",
        als.ndcg,
        pop.ndcg
    );
    assert!(
        knn.recall > 1.3 * pop.recall,
        "item-item recall {} vs popularity {}",
        knn.recall,
        pop.recall
    );
    assert!(
        blend.recall > 1.5 * pop.recall,
        "blend recall {} vs popularity {}",
        blend.recall,
        pop.recall
    );
    assert!(als.coverage > pop.coverage);
}

#[test]
fn temporal_holdout_is_learnable_too() {
    let data = world().interactions(&ConfidenceWeights::default());
    let (train, test) = split(&data, Holdout::Temporal { fraction: 0.2 }).unwrap();
    let model = Recommender::train(&train, &config(ModelKind::Als)).unwrap();
    let als = evaluate(&model, &train, &test, 10, Strategy::Default).unwrap();
    let pop = evaluate(&model, &train, &test, 10, Strategy::Popularity).unwrap();
    assert!(
        als.recall > 1.5 * pop.recall,
        "ALS {} vs popularity {}",
        als.recall,
        pop.recall
    );
}

#[test]
fn trained_on_names_every_contributing_region() {
    let world = world();
    let data = world.interactions(&ConfidenceWeights::default());
    let policy = UsSplitPolicy::new();
    let home = |user: &str, country: Option<domicile_residency::CountryCode>| {
        policy.home_region(&Subject::new(
            SubjectId::parse(user)?,
            country.expect("worlds give every user a country"),
        ))
    };
    let mixed = data.provenance(Some(policy.id().clone()), home).unwrap();
    let names: Vec<&str> = mixed.trained_on.iter().map(|r| r.as_str()).collect();
    assert_eq!(names, ["row", "us"]);
    assert_eq!(mixed.subjects as usize, data.active_users());

    // The US-only model: only US residents' pairs, and `trained_on` says `us` alone.
    let us_only = restrict_users(&data, |u| {
        data.user_country[u as usize].is_some_and(|c| c.as_str() == "US")
    });
    let prov = us_only.provenance(Some(policy.id().clone()), home).unwrap();
    let names: Vec<&str> = prov.trained_on.iter().map(|r| r.as_str()).collect();
    assert_eq!(names, ["us"]);
    assert_ne!(prov.data_digest, mixed.data_digest);

    let als = BuiltIn::new(ModelKind::Als);
    let model = Model::train(&als, &us_only, &BuiltIn::settings(&config(ModelKind::Als))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("us.domrec");
    write_artifact(&path, &model, &prov, None, &Screen::of(&us_only)).unwrap();
    let registry = AlgorithmRegistry::new().with(std::sync::Arc::new(als));
    let loaded = read_artifact(&path, &Trust::allow_untrusted(), &registry).unwrap();
    assert_eq!(loaded.manifest.trained_on, prov.trained_on);
    assert_eq!(loaded.manifest.policy.as_ref(), Some(policy.id()));
    assert_eq!(loaded.manifest.subjects, prov.subjects);
}

#[test]
fn evaluation_matches_by_id_across_separately_built_data() {
    let world = world();
    let data = world.interactions(&ConfidenceWeights::default());
    let (train, test) = split(
        &data,
        Holdout::Random {
            fraction: 0.2,
            seed: 3,
        },
    )
    .unwrap();
    let model = Recommender::train(&train, &config(ModelKind::Als)).unwrap();
    let direct = evaluate(&model, &train, &test, 10, Strategy::Default).unwrap();
    // The same test pairs, rebuilt through CSV with fresh id maps in another order.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.csv");
    test.write_csv(&path).unwrap();
    let reread =
        domicile_recommender::Interactions::read(&path, &ConfidenceWeights::default()).unwrap();
    assert_ne!(reread.items.ids(), test.items.ids());
    let by_id = evaluate(&model, &train, &reread, 10, Strategy::Default).unwrap();
    assert_eq!(by_id.users, direct.users);
    assert!((by_id.recall - direct.recall).abs() < 1e-12);
    assert!((by_id.ndcg - direct.ndcg).abs() < 1e-12);
}
