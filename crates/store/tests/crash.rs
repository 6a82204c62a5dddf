//! Crash safety: a child process writes records and prints each acknowledgement; the test kills
//! it with SIGKILL at random moments, reopens the store, and checks that every acknowledged write
//! is there (and every acknowledged delete is not), every subject registered with its records
//! in one flush (`register_and_put`) is registered, and the store checks sound
//! (`SealedStore::check`) — for both backends.
//!
//! The child is this test binary itself, re-run with `--ignored --exact crash_child` and the
//! directory and backend in environment variables.

mod common;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use domicile_residency::DataClass;
use domicile_store::{BackendKind, NewRecord, RecordDigest};
use rand::Rng;

const ROUNDS: u32 = 12;
const DIR_VAR: &str = "DOMICILE_CRASH_DIR";
const BACKEND_VAR: &str = "DOMICILE_CRASH_BACKEND";
const ROUND_VAR: &str = "DOMICILE_CRASH_ROUND";

/// The child: writes until killed, printing `@@ack <collection> <key> <digest>` after each put
/// returns, and `@@deleting <collection> <key>` before and `@@del <collection> <key>` after each
/// delete.
#[test]
#[ignore = "the child process of the crash tests; run by them"]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let kind = backend_named(&std::env::var(BACKEND_VAR).unwrap());
    let round: u32 = std::env::var(ROUND_VAR).unwrap().parse().unwrap();
    let dir = std::path::PathBuf::from(dir);
    let custodian =
        std::sync::Arc::new(domicile_store::FileCustodian::open(dir.join("keys")).unwrap());
    let store = open(&dir.join("data"), kind, "us", custodian);
    let mut rng = rand::rng();
    let collections = [collection("likes"), collection("messages")];
    for i in 0u32.. {
        let s = subject(&format!("s{round}-{}", i % 5), "US");
        if i < 5 {
            store.register_subject(&s).unwrap();
        }
        let c = &collections[(i % 2) as usize];
        let len = rng.random_range(1..3000);
        let value: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j) as u8).collect();
        if i % 10 == 4 {
            // New subjects with their records, registered and written with one flush, as an
            // ingest does: both acknowledged together.
            let new: Vec<_> = (0..2)
                .map(|j| subject(&format!("n{round}-{i}-{j}"), "US"))
                .collect();
            let keys: Vec<_> = (0..2).map(|j| key(&format!("r{round}-{i}-n{j}"))).collect();
            let batch: Vec<NewRecord<'_>> = new
                .iter()
                .zip(&keys)
                .map(|(n, k)| NewRecord {
                    subject: &n.id,
                    class: DataClass::Protected,
                    collection: c,
                    key: k,
                    value: &value,
                })
                .collect();
            store.register_and_put(&new, &batch).unwrap();
            for (n, k) in new.iter().zip(&keys) {
                println!("@@subject {}", n.id);
                println!("@@ack {c} {k} {}", RecordDigest::of(&value));
            }
        } else if i % 10 == 9 {
            let keys: Vec<_> = (0..3).map(|j| key(&format!("r{round}-{i}-b{j}"))).collect();
            let batch: Vec<NewRecord<'_>> = keys
                .iter()
                .map(|k| NewRecord {
                    subject: &s.id,
                    class: DataClass::Protected,
                    collection: c,
                    key: k,
                    value: &value,
                })
                .collect();
            store.put_batch(&batch).unwrap();
            for k in &keys {
                println!("@@ack {c} {k} {}", RecordDigest::of(&value));
            }
        } else {
            let k = key(&format!("r{round}-{i}"));
            store
                .put_raw(&s.id, DataClass::Protected, c, &k, &value)
                .unwrap();
            println!("@@ack {c} {k} {}", RecordDigest::of(&value));
        }
        if i % 7 == 6 {
            let k = key(&format!("r{round}-{}", i - 3));
            let c = &collections[((i - 3) % 2) as usize];
            // Announced first: a delete the child is killed in may or may not have happened.
            println!("@@deleting {c} {k}");
            store.delete(c, &k).unwrap();
            println!("@@del {c} {k}");
        }
    }
}

/// What the parent knows about a record from the child's acknowledgements.
enum Expect {
    /// Acknowledged with this digest.
    Present(String),
    /// Acknowledged, then a delete was started but not acknowledged.
    PresentOrDeleted(String),
    /// The delete was acknowledged.
    Deleted,
}

fn crash_rounds(kind: BackendKind, name: &str) {
    let dirs = Dirs::new();
    let mut expected: BTreeMap<(String, String), Expect> = BTreeMap::new();
    let mut rng = rand::rng();
    let mut killed_with_acks = 0;
    // Subjects registered by `register_and_put` and acknowledged.
    let mut subjects: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let stderr = dirs.tmp.path().join(format!("child-{round}.stderr"));
        let child = Child::spawn(
            "crash_child",
            &[
                (DIR_VAR, dirs.tmp.path().to_str().unwrap()),
                (BACKEND_VAR, name),
                (ROUND_VAR, &round.to_string()),
            ],
            &stderr,
        );
        // One round in four kills the child early, while it may still be creating the store
        // and its keys; the others wait for its first acknowledgement, then kill it at a random
        // moment while it writes.
        let early = round % 4 == 0;
        let mut lines = Vec::new();
        if early {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..80)));
        } else {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                match child.lines.recv_timeout(Duration::from_millis(10)) {
                    Ok(line) => {
                        let acked = line.contains("@@ack ");
                        lines.push(line);
                        if acked {
                            break;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(5..300)));
        }
        lines.extend(child.kill());
        let mut acks = 0;
        for line in &lines {
            if let Some(at) = line.find("@@subject ") {
                subjects.push(line[at + 10..].trim().to_owned());
            } else if let Some(at) = line.find("@@ack ") {
                let mut parts = line[at + 6..].split(' ');
                let (c, k, d) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                expected.insert((c.into(), k.into()), Expect::Present(d.into()));
                acks += 1;
            } else if let Some(at) = line.find("@@deleting ") {
                let mut parts = line[at + 11..].split(' ');
                let (c, k) = (parts.next().unwrap(), parts.next().unwrap());
                if let Some(Expect::Present(d)) = expected.get(&(c.into(), k.into())) {
                    let d = d.clone();
                    expected.insert((c.into(), k.into()), Expect::PresentOrDeleted(d));
                }
            } else if let Some(at) = line.find("@@del ") {
                let mut parts = line[at + 6..].split(' ');
                let (c, k) = (parts.next().unwrap(), parts.next().unwrap());
                expected.insert((c.into(), k.into()), Expect::Deleted);
            }
        }
        if !early {
            assert!(
                acks > 0,
                "{name} round {round}: the child acknowledged nothing; its stderr:\n{}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
            killed_with_acks += 1;
        }
        // Reopen (as the next child will) and check everything acknowledged so far.
        let store = domicile_store::SealedStore::open_with(
            dirs.data(),
            kind,
            region("us"),
            policy(),
            dirs.custodian(),
        )
        .unwrap_or_else(|e| {
            panic!("{name} round {round} ({acks} acks this round): cannot reopen the store: {e}")
        });
        for ((c, k), digest) in &expected {
            let got = store.get_raw(&collection(c), &key(k)).unwrap_or_else(|e| {
                panic!("{name} round {round}: acknowledged record {c}/{k} does not open: {e}")
            });
            match (digest, got) {
                (Expect::Present(d) | Expect::PresentOrDeleted(d), Some(r)) => {
                    assert_eq!(&r.digest().to_string(), d, "{name} {c}/{k}")
                }
                (Expect::Present(_), None) => {
                    panic!("{name} round {round}: acknowledged record {c}/{k} is missing")
                }
                (Expect::Deleted, Some(_)) => {
                    panic!("{name} round {round}: acknowledged delete of {c}/{k} was undone")
                }
                (Expect::PresentOrDeleted(_) | Expect::Deleted, None) => {}
            }
        }
        // Every subject acknowledged with its records is registered, and its record is listed
        // under it.
        for id in &subjects {
            let s = subject(id, "US");
            assert!(
                store.subject(&s.id).unwrap().is_some(),
                "{name} round {round}: acknowledged subject {id} is not registered"
            );
            assert_eq!(store.scan_subject(&s.id).unwrap().len(), 1, "{name} {id}");
        }
        // The index agrees with the records: every record a subject scan finds opens.
        for i in 0..5 {
            for r in store
                .scan_subject(&subject(&format!("s{round}-{i}"), "US").id)
                .unwrap()
            {
                assert_eq!(r.meta.subject.as_str(), format!("s{round}-{i}"));
            }
        }
        // And the whole store checks sound: every record opens and is indexed under its owner.
        let report = store.check().unwrap();
        assert!(
            report.is_sound(),
            "{name} round {round}: not sound after a SIGKILL: {report:?}"
        );
    }
    eprintln!(
        "{name}: {} acknowledged writes and deletes over {ROUNDS} rounds, {killed_with_acks} of them killed mid-write",
        expected.len()
    );
    assert!(
        expected.len() > 20,
        "{name}: only {} writes were acknowledged",
        expected.len()
    );
    assert!(
        !subjects.is_empty(),
        "{name}: no subject registered with its records was acknowledged"
    );
}

#[test]
fn sled_keeps_every_acknowledged_write_across_sigkill() {
    crash_rounds(BackendKind::Sled, "sled");
}

#[test]
fn redb_keeps_every_acknowledged_write_across_sigkill() {
    crash_rounds(BackendKind::Redb, "redb");
}
