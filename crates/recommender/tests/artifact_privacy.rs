//! Invariant 10: a model artifact is the algorithm only. A model trained through a real Gate
//! (sealed store on sled, audit log on disk, the US-split policy) is written as an artifact in
//! which no subject id, no pseudonym and no user-factor vector can be found; serving folds each
//! user's factors in from their own history, and agrees with the full model.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use domicile_access::{
    ApprovalBook, Gate, ManualClock, Principal, PrincipalKind, ScanRequest, SubjectRef,
};
use domicile_audit::{AuditKey, AuditLog, KeyKind, LogConfig};
use domicile_policy_us_split::UsSplitPolicy;
use domicile_recommender::{
    read_artifact, top_k_inner_product, write_artifact, AlgorithmRegistry, BuiltIn,
    ConfidenceWeights, InteractionsBuilder, Model, ModelKind, RecommendOptions, Recommender,
    Screen, SigningKey, Strategy, TrainConfig, Trust, World, WorldConfig,
};
use domicile_residency::{
    DataClass, JustificationCode, Purpose, Region, ResidencyPolicy, Subject, SubjectId,
};
use domicile_store::{Collection, FileCustodian, RawRecord, RecordKey, RecordMeta, SealedStore};

fn principal(id: &str, roles: &[&str]) -> Principal {
    Principal::parse(
        id,
        PrincipalKind::Service,
        ("usds", "US"),
        "US",
        "US",
        roles,
    )
    .unwrap()
}

/// Whether `needle` occurs anywhere in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn an_artifact_trained_through_a_gate_holds_no_personal_data_and_fold_in_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let policy: Arc<dyn ResidencyPolicy> = Arc::new(UsSplitPolicy::new());
    let us = Region::parse("us").unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let store = SealedStore::open(
        dir.path().join("data"),
        us.clone(),
        policy.clone(),
        custodian,
    )
    .unwrap();
    let log_key =
        domicile_audit::SigningKey::generate("audit.domicile.example/us", KeyKind::Ed25519)
            .unwrap();
    let log = AuditLog::open(dir.path().join("data/us/audit"), LogConfig::new(log_key)).unwrap();
    let gate = Gate::new(
        Arc::new(store),
        Arc::new(log),
        AuditKey::generate().unwrap(),
        ApprovalBook::in_memory(),
        Arc::new(ManualClock::at_unix_secs(1_790_000_000)),
    )
    .unwrap();

    // A world's US residents, under ids long enough that a chance match in binary data is
    // impossible: each is written with their watch history as one Protected record.
    let world = World::generate(WorldConfig {
        users: 900,
        videos: 300,
        events: 36_000,
        seed: 11,
        topics: 8,
        ..WorldConfig::default()
    })
    .unwrap();
    let id_of = |u: usize| format!("person-{u:05}-{}", world.users[u].country);
    let mut histories: BTreeMap<usize, Vec<(String, f32, i64)>> = BTreeMap::new();
    let weights = ConfidenceWeights::default();
    world.for_each_event(|e| {
        let event = world.event(&e);
        histories.entry(e.user as usize).or_default().push((
            event.video.clone(),
            weights.weight(&event.kind),
            event.timestamp,
        ));
    });
    let app = principal("spiffe://domicile.example/us/usds/ingest", &["app-service"]);
    gate.enrol(app.clone()).unwrap();
    let why = Purpose::new(JustificationCode::UserRequestedSupport);
    let mut batch = Vec::new();
    let mut subjects = Vec::new();
    for (&u, events) in &histories {
        let subject = Subject::new(SubjectId::parse(&id_of(u)).unwrap(), world.users[u].country);
        if policy.home_region(&subject).unwrap() != us {
            continue;
        }
        let record = RawRecord {
            meta: RecordMeta {
                collection: Collection::parse("behaviour").unwrap(),
                key: RecordKey::parse(&id_of(u)).unwrap(),
                subject: subject.id.clone(),
                class: DataClass::Protected,
                data_key_version: 0,
            },
            value: serde_json::to_vec(events).unwrap(),
        };
        subjects.push(subject.clone());
        batch.push((subject, vec![record]));
    }
    assert!(subjects.len() > 200, "{} US subjects", subjects.len());
    gate.write_batch(&app, &why, &batch).unwrap();

    // The training service reads the histories through the Gate, with a training purpose.
    let trainer = principal(
        "spiffe://domicile.example/us/usds/trainer",
        &["training-service"],
    );
    gate.enrol(trainer.clone()).unwrap();
    let training = Purpose::new(JustificationCode::RecommendationTraining).with_ticket("RECSYS-1");
    let scanned = gate
        .scan(
            &trainer,
            &training,
            &ScanRequest {
                class: DataClass::Protected,
                collection: Collection::parse("behaviour").unwrap(),
                destination: None,
            },
        )
        .unwrap();
    assert_eq!(scanned.records.len(), subjects.len());
    let country: BTreeMap<String, _> = subjects
        .iter()
        .map(|s| (s.id.as_str().to_owned(), s.attributes.residence))
        .collect();
    let mut builder = InteractionsBuilder::named("gate scan");
    for record in &scanned.records {
        let SubjectRef::Id(id) = &record.subject else {
            panic!("a training scan inside the region returned pseudonyms")
        };
        let events: Vec<(String, f32, i64)> = serde_json::from_slice(&record.value).unwrap();
        for (video, weight, t) in events {
            let (u, _) = builder.add(id.as_str(), &video, weight, t);
            if let Some(Some(c)) = country.get(id.as_str()) {
                builder.set_country(u, *c);
            }
        }
    }
    let data = builder.build().unwrap();
    let provenance = data
        .provenance(Some(policy.id().clone()), |id, c| {
            policy.home_region(&Subject::new(
                SubjectId::parse(id)?,
                c.expect("countries set"),
            ))
        })
        .unwrap();
    assert_eq!(
        provenance
            .trained_on
            .iter()
            .map(Region::as_str)
            .collect::<Vec<_>>(),
        ["us"]
    );

    let mut config = TrainConfig::for_kind(ModelKind::Blend);
    config.als.factors = 16;
    config.als.threads = 2;
    config.item_knn.threads = 2;
    // Fixed weights: the test needs both components in the artifact.
    config.blend.validation = 0.0;
    let (model, trained) = Recommender::train_with_subjects(&data, &config).unwrap();
    let key = SigningKey::from_seed(&[3u8; 32]).unwrap();
    let path = dir.path().join("us.domrec");
    // The platform screens the parameters for every subject id and pseudonym it handed over.
    let screen = Screen::of(&data).with_pseudonyms(subjects.iter().map(|s| gate.pseudonym(&s.id)));
    let hosted = Model::from_recommender(model.clone());
    write_artifact(&path, &hosted, &provenance, Some(&key), &screen).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    // The search can find what it looks for: item ids and item-factor rows are in the file.
    let als = model.als().unwrap();
    assert!(contains(&bytes, model.items().id(0).as_bytes()));
    assert!(contains(&bytes, &le_bytes(als.item(7))));

    let mut ids = 0;
    let mut pseudonyms = 0;
    for subject in &subjects {
        assert!(
            !contains(&bytes, subject.id.as_str().as_bytes()),
            "a subject id is in the artifact"
        );
        ids += 1;
        let pseudonym = gate.pseudonym(&subject.id);
        assert!(pseudonym.len() >= 16, "{pseudonym}");
        assert!(
            !contains(&bytes, pseudonym.as_bytes()),
            "a pseudonym is in the artifact"
        );
        pseudonyms += 1;
    }
    let mut vectors = 0;
    for subject in subjects.iter().step_by(subjects.len() / 25) {
        let x = trained
            .factors_of(subject.id.as_str())
            .expect("a trained user");
        assert!(x.iter().any(|&v| v != 0.0));
        assert!(
            !contains(&bytes, &le_bytes(x)),
            "a user-factor vector is in the artifact"
        );
        // Not even the first four factors.
        assert!(!contains(&bytes, &le_bytes(&x[..4])));
        vectors += 1;
    }
    println!(
        "artifact of {} bytes: 0 of {ids} subject ids, 0 of {pseudonyms} pseudonyms, 0 of {vectors} user-factor vectors found",
        bytes.len()
    );

    // Served from the artifact, with the pinned key: each user's factors are folded in from
    // their own history, and the top-10 agrees with the full model's (trained user factors).
    let registry = BuiltIn::all()
        .into_iter()
        .fold(AlgorithmRegistry::new(), |r, a| r.with(Arc::new(a)));
    let loaded = read_artifact(&path, &Trust::pinned(key.public_key()), &registry).unwrap();
    assert!(loaded.signature.is_trusted());
    let served = loaded.model.as_recommender().expect("a built-in blend");
    let histories = served.histories(&data);
    let options = RecommendOptions {
        strategy: Strategy::Als,
        ..RecommendOptions::top(10)
    };
    let (mut overlap, mut users) = (0usize, 0usize);
    let mut identical = 0;
    for subject in &subjects {
        let history = histories.of(subject.id.as_str());
        if history.0.is_empty() {
            continue;
        }
        let full = top_k_inner_product(
            trained.factors_of(subject.id.as_str()).unwrap(),
            served.als().unwrap().item_factors(),
            10,
            history.0,
        );
        let folded = served.recommend_history(history, &options).unwrap();
        let a: HashSet<u32> = full.iter().map(|s| s.item).collect();
        let shared = folded.iter().filter(|s| a.contains(&s.item)).count();
        overlap += shared;
        identical += usize::from(shared == 10);
        users += 1;
    }
    let share = overlap as f64 / (10 * users) as f64;
    println!(
        "fold-in vs full model, ALS top-10 of {users} trained users: {:.1} % overlap, {identical} lists identical as sets",
        share * 100.0
    );
    assert!(share >= 0.9, "fold-in top-10 overlap {share:.3} < 0.9");
}
