//! Crash safety on PostgreSQL: writers apply batches and record each acknowledgement while the
//! test stops the server in the middle of them — `pg_ctl stop -m immediate` in some rounds,
//! SIGKILL to the postmaster and every server process in the others. After a restart, every
//! acknowledged batch is there whole, and no batch is there in part.
#![cfg(feature = "postgres")]

mod common;
mod pg;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use domicile_residency::DataClass;
use domicile_store::{
    Backend, Batch, NewRecord, PostgresBackend, PostgresConfig, RecordDigest, SealedStore,
};
use pg::PgServer;
use rand::Rng;

const ROUNDS: u32 = 6;
const WRITERS: u32 = 3;
const BATCH: usize = 40;

fn connect(server: &PgServer, schema: &str) -> PostgresBackend {
    let config = PostgresConfig::new(&server.url())
        .unwrap()
        .schema(schema)
        .unwrap()
        .pool_size(WRITERS)
        .connect_timeout(Duration::from_secs(3));
    PostgresBackend::connect(&config).unwrap()
}

/// The value of record `i` of batch `n` of writer `w` in round `round`: distinct per record.
fn value(round: u32, w: u32, n: u32, i: usize) -> Vec<u8> {
    let len = 64 + (n as usize * 37 + i * 11) % 2000;
    (0..len)
        .map(|j| (j as u32 ^ round ^ (w << 3) ^ n ^ i as u32) as u8)
        .collect()
}

fn batch_key(round: u32, w: u32, n: u32, i: usize) -> Vec<u8> {
    format!("r{round:02}/w{w}/b{n:06}/{i:03}").into_bytes()
}

#[test]
fn no_acknowledged_batch_is_lost_and_none_is_partial_when_the_server_dies() {
    let Some(server) = PgServer::start("postgres_crash") else {
        return;
    };
    let mut rng = rand::rng();
    // (round, writer) → the batches acknowledged.
    let mut acked: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
    for round in 0..ROUNDS {
        let backend = Arc::new(connect(&server, "crash"));
        let acks = Arc::new(Mutex::new(Vec::<(u32, u32)>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (backend, acks, stop) = (backend.clone(), acks.clone(), stop.clone());
                std::thread::spawn(move || {
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let mut batch = Batch::new();
                        for i in 0..BATCH {
                            batch.put(batch_key(round, w, n, i), value(round, w, n, i));
                        }
                        // A delete in every batch, of a key the same batch first wrote, so a
                        // half-applied batch could also show up as that key being present.
                        batch.put(format!("r{round:02}/w{w}/gone").into_bytes(), b"x".to_vec());
                        batch.delete(format!("r{round:02}/w{w}/gone").into_bytes());
                        if backend
                            .apply(&batch)
                            .and_then(|()| backend.flush())
                            .is_err()
                        {
                            return;
                        }
                        acks.lock().unwrap().push((w, n));
                    }
                })
            })
            .collect();
        // Let the writers get going, then stop the server under them.
        let started = Instant::now();
        while acks.lock().unwrap().len() < WRITERS as usize {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "round {round}: the writers acknowledged nothing"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        if round % 2 == 0 {
            server.stop_immediate();
        } else {
            server.sigkill();
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        drop(backend);
        for (w, n) in acks.lock().unwrap().iter() {
            acked.entry((round, *w)).or_default().push(*n);
        }
        server.start_again();

        // Every acknowledged batch of every round so far is whole.
        let backend = connect(&server, "crash");
        for (&(r, w), batches) in &acked {
            for &n in batches {
                for i in 0..BATCH {
                    assert_eq!(
                        backend.get(&batch_key(r, w, n, i)).unwrap(),
                        Some(value(r, w, n, i)),
                        "round {r}: record {i} of acknowledged batch {n} of writer {w}"
                    );
                }
            }
        }
        // No batch is there in part: group this round's keys by batch.
        let mut found: BTreeMap<(u32, u32), usize> = BTreeMap::new();
        for item in backend.scan_prefix(format!("r{round:02}/").as_bytes()) {
            let (k, v) = item.unwrap();
            let k = String::from_utf8(k).unwrap();
            let parts: Vec<&str> = k.split('/').collect();
            assert_ne!(parts[2], "gone", "round {round}: a batch's delete was lost");
            let w: u32 = parts[1][1..].parse().unwrap();
            let n: u32 = parts[2][1..].parse().unwrap();
            let i: usize = parts[3].parse().unwrap();
            assert_eq!(v, value(round, w, n, i), "round {round}: {k}");
            *found.entry((w, n)).or_default() += 1;
        }
        for ((w, n), count) in &found {
            assert_eq!(
                *count, BATCH,
                "round {round}: batch {n} of writer {w} is there in part ({count} of {BATCH})"
            );
        }
        let acked_now: usize = (0..WRITERS)
            .map(|w| acked.get(&(round, w)).map_or(0, Vec::len))
            .sum();
        assert!(found.len() >= acked_now, "round {round}");
        eprintln!(
            "round {round} ({}): {acked_now} batches acknowledged, {} present after restart",
            if round % 2 == 0 {
                "pg_ctl stop -m immediate"
            } else {
                "SIGKILL"
            },
            found.len()
        );
    }
}

/// The same through the sealed store: records and their index entries are written by one
/// `put_batch`, which is one backend batch, so after the crash every acknowledged record opens
/// and every record a subject scan finds is whole.
#[test]
fn a_sealed_store_on_postgres_keeps_every_acknowledged_record_across_a_crash() {
    let Some(server) = PgServer::start("postgres_sealed_crash") else {
        return;
    };
    let dirs = Dirs::new();
    let open = || {
        SealedStore::with_backend(
            Box::new(connect(&server, "sealed")),
            region("us"),
            policy(),
            dirs.custodian(),
        )
        .unwrap()
    };
    let store = Arc::new(open());
    let likes = collection("likes");
    let subjects: Vec<_> = (0..4).map(|i| subject(&format!("s{i}"), "US")).collect();
    for s in &subjects {
        store.register_subject(s).unwrap();
    }
    let acks = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let writer = {
        let (store, acks, likes, subjects) =
            (store.clone(), acks.clone(), likes.clone(), subjects.clone());
        std::thread::spawn(move || {
            for n in 0u32.. {
                let s = &subjects[(n % 4) as usize];
                let keys: Vec<_> = (0..10)
                    .map(|i| domicile_store::RecordKey::parse(&format!("b{n}-{i}")).unwrap())
                    .collect();
                let value = format!("batch {n}").into_bytes();
                let batch: Vec<NewRecord<'_>> = keys
                    .iter()
                    .map(|k| NewRecord {
                        subject: &s.id,
                        class: DataClass::Protected,
                        collection: &likes,
                        key: k,
                        value: &value,
                    })
                    .collect();
                if store.put_batch(&batch).is_err() {
                    return;
                }
                let digest = RecordDigest::of(&value).to_string();
                let mut acks = acks.lock().unwrap();
                for k in &keys {
                    acks.push((k.to_string(), digest.clone()));
                }
            }
        })
    };
    let started = Instant::now();
    while acks.lock().unwrap().len() < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing acknowledged"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(150));
    server.sigkill();
    writer.join().unwrap();
    drop(store);
    server.start_again();
    let store = open();
    let acks = acks.lock().unwrap();
    for (k, digest) in acks.iter() {
        let record = store
            .get_raw(&likes, &key(k))
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged record {k} is missing"));
        assert_eq!(&record.digest().to_string(), digest, "{k}");
    }
    let mut total = 0;
    for s in &subjects {
        let records = store.scan_subject(&s.id).unwrap();
        for r in &records {
            assert_eq!(r.meta.subject, s.id);
        }
        total += records.len();
    }
    assert_eq!(total % 10, 0, "a batch of ten records is there in part");
    assert!(total >= acks.len());
    let report = store.check().unwrap();
    assert!(report.is_sound(), "not sound after the crash: {report:?}");
    assert_eq!((report.records, report.subjects), (total, subjects.len()));
    eprintln!(
        "{} records acknowledged, {total} present after SIGKILL",
        acks.len()
    );
}
