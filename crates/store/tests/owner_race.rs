//! A record key belongs to one subject: of two writers of one store racing for the same keys
//! as different subjects, one wins and the other is refused (`KeyHeldByOtherSubject`). Never
//! both: the loser's acknowledged record would be overwritten by the winner's, lost to its
//! subject. (PostgreSQL, with two handles, is tested in `postgres.rs`.)

mod common;

use common::*;
use domicile_residency::{DataClass, Subject};
use domicile_store::{Collection, RecordKey, SealedStore, StoreError};

/// Who holds `k`, checked against what each writer was told.
fn winner<'a>(
    store: &SealedStore,
    likes: &Collection,
    k: &RecordKey,
    contenders: [(&'a Subject, bool); 2],
    what: &str,
) -> &'a Subject {
    let acknowledged: Vec<_> = contenders.iter().filter(|(_, ok)| *ok).collect();
    assert_eq!(
        acknowledged.len(),
        1,
        "{what}: {} writers were told the key is theirs",
        acknowledged.len()
    );
    let record = store
        .get_raw(likes, k)
        .unwrap()
        .expect("the winner's record");
    let (who, _) = acknowledged[0];
    assert_eq!(record.meta.subject, who.id, "{what}");
    assert_eq!(record.value, who.id.as_str().as_bytes(), "{what}");
    who
}

#[test]
fn of_two_threads_racing_for_the_same_keys_exactly_one_wins_each() {
    for kind in backends() {
        let dirs = Dirs::new();
        let (store, alice, bob) = with_two_subjects(&dirs, kind, ("alice", "bob"));
        let likes = collection("likes");
        let mut won = std::collections::BTreeMap::new();

        // Batches: each round, both write the same fresh keys, in opposite orders.
        for round in 0..40 {
            let keys: Vec<_> = (0..50).map(|i| key(&format!("r{round}-{i}"))).collect();
            let (a, b) = race_batches((&store, &alice), (&store, &bob), &likes, &keys);
            for r in [&a, &b] {
                assert!(
                    matches!(r, Ok(_) | Err(StoreError::KeyHeldByOtherSubject { .. })),
                    "{kind:?} round {round}: {r:?}"
                );
            }
            let what = format!("{kind:?} batch round {round}");
            for k in &keys {
                let who = winner(
                    &store,
                    &likes,
                    k,
                    [(&alice, a.is_ok()), (&bob, b.is_ok())],
                    &what,
                );
                won.insert(k.clone(), who.id.clone());
            }
        }

        // One record at a time: both put each key at once.
        for i in 0..200 {
            let k = key(&format!("one-{i}"));
            let (a, b) = std::thread::scope(|s| {
                let a = s
                    .spawn(|| store.put_raw(&alice.id, DataClass::Protected, &likes, &k, b"alice"));
                let b =
                    s.spawn(|| store.put_raw(&bob.id, DataClass::Protected, &likes, &k, b"bob"));
                (a.join().unwrap(), b.join().unwrap())
            });
            let acknowledged = [a.is_ok(), b.is_ok()];
            assert_eq!(
                acknowledged.iter().filter(|ok| **ok).count(),
                1,
                "{kind:?} record {i}: {a:?} {b:?}"
            );
            let record = store
                .get_raw(&likes, &k)
                .unwrap()
                .expect("the winner's record");
            let who = if a.is_ok() { &alice } else { &bob };
            assert_eq!(record.meta.subject, who.id, "{kind:?} record {i}");
            won.insert(k, who.id.clone());
        }

        // Every record is in its owner's index, and in no one else's.
        for who in [&alice, &bob] {
            let indexed: std::collections::BTreeSet<_> = store
                .scan_subject(&who.id)
                .unwrap()
                .into_iter()
                .map(|r| {
                    assert_eq!(r.meta.subject, who.id);
                    r.meta.key
                })
                .collect();
            let expected: std::collections::BTreeSet<_> = won
                .iter()
                .filter(|(_, owner)| **owner == who.id)
                .map(|(k, _)| k.clone())
                .collect();
            assert_eq!(indexed, expected, "{kind:?}: {}'s index", who.id);
        }
    }
}
