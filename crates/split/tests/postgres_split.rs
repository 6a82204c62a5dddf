//! A split across backends: a sled `global` deployment split into PostgreSQL `us` and `row`
//! (chosen by `DOMICILE_DATABASE_URL_US` / `_ROW`), every record read back from the database,
//! the region refused when reopened without its variable, and a `pg_dump` of the database
//! after the split showing no subject id, record key or plaintext value.
#![cfg(feature = "postgres")]

#[path = "../../store/tests/pg/mod.rs"]
mod pg;

use std::collections::BTreeMap;
use std::sync::Arc;

use domicile_access::RecordRef;
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, ResidencyPolicy, Subject};
use domicile_split::{run, Deployment, RunOptions};
use domicile_store::{
    Collection, FileCustodian, KeyCustodian, PostgresBackend, PostgresConfig, SealedStore,
};

const MARKER: &str = "PLAINTEXT-MARKER-pg-4d2a";

fn policies() -> domicile_residency::PolicyResolver {
    domicile_residency::PolicyResolver::new()
        .with(Arc::new(domicile_policy_global::GlobalPolicy::new()))
        .with(Arc::new(domicile_policy_us_split::UsSplitPolicy::new()))
}

// One test in this binary: it sets process-wide environment variables.
#[test]
fn a_sled_global_splits_into_postgres_us_and_row() {
    let Some(server) = pg::PgServer::start("a_sled_global_splits_into_postgres_us_and_row") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (data, keys) = (tmp.path().join("data"), tmp.path().join("keys"));

    // The source: `global` on sled (no variable for it).
    let expected = global_world(&data, &keys);

    // The targets: `us` and `row` on PostgreSQL.
    std::env::set_var("DOMICILE_DATABASE_URL_US", server.url());
    std::env::set_var("DOMICILE_DATABASE_URL_ROW", server.url());
    run(
        &data,
        &keys,
        &policies(),
        "us-split",
        &RunOptions {
            batch_subjects: 5,
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert!(data.join("us/store.postgres").exists());
    assert!(
        !data.join("us/store").exists(),
        "us was given a sled store too"
    );

    // Every record rests in the database of exactly its home region, whole.
    let policy: Arc<dyn ResidencyPolicy> = policies().resolve("us-split").unwrap();
    let custodian: Arc<dyn KeyCustodian> = Arc::new(FileCustodian::open(&keys).unwrap());
    let mut found = 0;
    for region in ["us", "row"] {
        let config = PostgresConfig::new(&server.url())
            .unwrap()
            .schema(&format!("domicile_{region}"))
            .unwrap();
        let store = SealedStore::with_backend(
            Box::new(PostgresBackend::connect(&config).unwrap()),
            Region::parse(region).unwrap(),
            policy.clone(),
            custodian.clone(),
        )
        .unwrap();
        for s in store.subjects().unwrap() {
            for r in store.scan_subject(&s.subject.id).unwrap() {
                let k = (
                    s.subject.id.to_string(),
                    r.meta.collection.to_string(),
                    r.meta.key.to_string(),
                );
                let (home, value) = expected.get(&k).expect("a record that was never written");
                assert_eq!(*home, region, "{k:?} rests outside its home region");
                assert_eq!(&r.value, value, "{k:?}");
                found += 1;
            }
        }
    }
    assert_eq!(found, expected.len(), "records lost in the split");

    // What the database operator sees: no subject id, record key or value, raw or as hex.
    let dump = server.pg_dump();
    assert!(dump.windows(11).any(|w| w == b"domicile_us"));
    let hex = |s: &str| -> Vec<u8> {
        s.bytes()
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .collect()
    };
    let mut needles = vec![MARKER.to_owned()];
    for (id, _, key) in expected.keys() {
        needles.push(id.clone());
        needles.push(key.clone());
    }
    for needle in &needles {
        for form in [needle.as_bytes().to_vec(), hex(needle)] {
            assert!(
                !dump.windows(form.len()).any(|w| w == form.as_slice()),
                "the pg_dump shows {needle:?}"
            );
        }
    }

    // Without its variable the region is refused, not opened as an empty sled store.
    std::env::remove_var("DOMICILE_DATABASE_URL_US");
    let err = Deployment::open(&data, &keys, &policies()).unwrap_err();
    assert!(
        err.to_string().contains("DOMICILE_DATABASE_URL_US"),
        "{err}"
    );
    assert!(!data.join("us/store").exists());
}

type Expected = BTreeMap<(String, String, String), (&'static str, Vec<u8>)>;

/// A global deployment on sled with 24 subjects (a third of them homed in `row`), two Protected
/// records each: (subject, collection, key) → (home region, value).
fn global_world(data: &std::path::Path, keys: &std::path::Path) -> Expected {
    let global = Deployment::create(
        data,
        keys,
        policies().resolve("global").unwrap(),
        "domicile.example",
    )
    .unwrap();
    let node = global.regions().next().unwrap();
    let app = global.migration_principal(&node.region);
    let why = Purpose::new(JustificationCode::Migration);
    // (subject, collection, key) → (home, value)
    let mut expected: Expected = BTreeMap::new();
    for i in 0..24 {
        let id = format!("pgsubject-{i:03}");
        let (country, home) = if i % 3 == 0 {
            ("DE", "row")
        } else {
            ("US", "us")
        };
        node.gate
            .register_subject(
                &app,
                &why,
                &Subject::parse(&id, Some(country), None).unwrap(),
            )
            .unwrap();
        for collection in ["profile", "behaviour"] {
            let key = format!("{id}-{collection}");
            let value = format!("{{\"who\":\"{id}\",\"m\":\"{MARKER}\"}}").into_bytes();
            let record = RecordRef {
                subject: id.parse().unwrap(),
                class: DataClass::Protected,
                collection: Collection::parse(collection).unwrap(),
                key: key.parse().unwrap(),
            };
            node.gate.write(&app, &why, &record, &value, None).unwrap();
            expected.insert((id.clone(), collection.to_owned(), key), (home, value));
        }
    }
    global.close().unwrap();
    expected
}
