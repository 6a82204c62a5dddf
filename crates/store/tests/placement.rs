//! Placement under the US-split policy: no Protected record rests outside its subject's home.

mod common;

use std::sync::Arc;

use common::*;
use domicile_policy_global::GlobalPolicy;
use domicile_residency::{DataClass, ResidencyPolicy, Subject};
use domicile_store::{BackendKind, SealedStore, StoreError};
use proptest::prelude::*;

const COUNTRIES: &[&str] = &[
    "US", "PR", "GU", "VI", "AS", "MP", "UM", "DE", "FR", "GB", "CA", "MX", "BR", "JP", "IN", "NG",
];

fn class() -> impl Strategy<Value = DataClass> {
    prop::sample::select(DataClass::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Whatever the subject, class and store region: a put succeeds exactly when the policy lets
    /// the class rest there; a Protected record lands only in its subject's home region; a
    /// refusal names the rule and leaves nothing behind.
    #[test]
    fn protected_records_rest_only_at_home(
        country in prop::sample::select(COUNTRIES),
        class in class(),
        store_in_us in any::<bool>(),
        n in 0u32..1_000_000,
    ) {
        thread_local! {
            static STORES: (Dirs, SealedStore, SealedStore) = {
                let dirs = Dirs::new();
                let custodian = dirs.custodian();
                let us = open(&dirs.data(), BackendKind::Sled, "us", custodian.clone());
                let row = open(&dirs.data(), BackendKind::Sled, "row", custodian);
                (dirs, us, row)
            };
        }
        STORES.with(|(_dirs, us, row)| {
            let store = if store_in_us { us } else { row };
            let policy = policy();
            let subject = Subject::parse(&format!("s-{country}-{n}"), Some(country), None).unwrap();
            let home = store.register_subject(&subject).unwrap();
            prop_assert_eq!(&home, &policy.home_region(&subject).unwrap());
            let (c, k) = (collection("things"), key(&format!("{country}-{n}-{class}")));
            let before = store.backend().scan_prefix(b"d").count();
            let result = store.put(&subject.id, class, &c, &k, &"value");
            let allowed = policy.may_rest_in(class, &home, store.region()).unwrap();
            prop_assert_eq!(result.is_ok(), allowed.allowed, "{:?}", result);
            if class == DataClass::Protected {
                prop_assert_eq!(result.is_ok(), &home == store.region());
            }
            match result {
                Ok(meta) => {
                    prop_assert_eq!(meta.class, class);
                    let back = store.get::<String>(&c, &k).unwrap().unwrap();
                    prop_assert_eq!(back.value, "value");
                }
                Err(StoreError::PlacementRefused(refusal)) => {
                    prop_assert_eq!(&refusal.rule, &allowed.rule);
                    prop_assert_eq!(&refusal.home, &home);
                    prop_assert_eq!(&refusal.region, store.region());
                    prop_assert_eq!(refusal.class, class);
                    prop_assert!(store.get_raw(&c, &k).unwrap().is_none());
                    prop_assert_eq!(store.backend().scan_prefix(b"d").count(), before);
                    prop_assert!(store.scan_subject(&subject.id).unwrap().is_empty());
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
            Ok(())
        })?;
    }
}

#[test]
fn a_refused_batch_writes_nothing() {
    let dirs = Dirs::new();
    let store = open(&dirs.data(), BackendKind::Sled, "us", dirs.custodian());
    let (home, away) = (subject("h", "US"), subject("away-person-9", "FR"));
    store.register_subject(&home).unwrap();
    store.register_subject(&away).unwrap();
    let c = collection("profiles");
    let (k1, k2) = (key("1"), key("2"));
    let err = store
        .put_batch(&[
            domicile_store::NewRecord {
                subject: &home.id,
                class: DataClass::Protected,
                collection: &c,
                key: &k1,
                value: b"ok",
            },
            domicile_store::NewRecord {
                subject: &away.id,
                class: DataClass::Protected,
                collection: &c,
                key: &k2,
                value: b"no",
            },
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::PlacementRefused { .. }), "{err}");
    // Named by blind index and pseudonym, never by key or id.
    let named = format!("profiles/{}", store.blind_index(&c, &k2));
    assert!(err.to_string().contains(&named), "{err}");
    assert!(
        err.to_string()
            .contains(&store.pseudonym(&away.id).to_hex()),
        "{err}"
    );
    assert!(!err.to_string().contains(away.id.as_str()), "{err}");
    assert!(store.get_raw(&c, &k1).unwrap().is_none());
}

#[test]
fn under_the_global_policy_everything_rests_in_global() {
    let dirs = Dirs::new();
    let policy: Arc<dyn ResidencyPolicy> = Arc::new(GlobalPolicy::new());
    let store = SealedStore::open(dirs.data(), region("global"), policy, dirs.custodian()).unwrap();
    for country in ["US", "DE"] {
        let s = subject(&format!("g-{country}"), country);
        store.register_subject(&s).unwrap();
        store
            .put(
                &s.id,
                DataClass::Protected,
                &collection("p"),
                &key(country),
                &1,
            )
            .unwrap();
    }
    let err = store
        .register_subject(&Subject::parse("nowhere", None, None).unwrap())
        .unwrap_err();
    // Messages reach logs: the reason, not the subject id.
    assert!(err.to_string().contains("no country of residence"), "{err}");
    assert!(!err.to_string().contains("nowhere"), "{err}");
}
