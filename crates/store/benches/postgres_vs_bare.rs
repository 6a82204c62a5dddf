//! The sealed store on PostgreSQL against a bare PostgreSQL table holding the same values, and
//! against sled, in the same run; prints records per second and the ratios.
//!
//! Starts a throwaway PostgreSQL 15 server (fsync and synchronous_commit on) the way the tests
//! do. Workload: `DOMICILE_BENCH_RECORDS` records (default 20 000) of 256 B over 100 subjects and
//! 10 collections, written in durable batches of 1 000; then 2 000 random gets; then whole
//! collections scanned.
//!
//! - **bare table**: `CREATE TABLE bare (key BYTEA PRIMARY KEY, value BYTEA NOT NULL)`; a batch
//!   is one transaction of one prepared `INSERT … SELECT FROM unnest($1, $2)` of the plaintext
//!   values, a get one prepared `SELECT`, a scan one `SELECT … WHERE key >= $1 AND key < $2
//!   ORDER BY key` — the fastest plain way to store the same bytes.
//! - **sealed on postgres**: `SealedStore::put_batch` / `get_raw` / `scan_collection` on
//!   `PostgresBackend` (placement check, sealing, blind keys, subject index, one serializable
//!   transaction per batch).
//! - **PostgresBackend bare**: the backend alone (`apply`, `get`, `scan_prefix`) with the bare
//!   table's keys and values, to tell the backend's cost from the sealing's.
//! - **sealed on sled**, **bare sled**: the same calls on the embedded default.
//!
//! Run: `cargo bench -p domicile-store --features postgres --bench postgres_vs_bare`

#[path = "../tests/pg/mod.rs"]
mod pg;

use std::sync::Arc;
use std::time::{Duration, Instant};

use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, Region, Subject, SubjectId};
use domicile_store::{
    Backend, Batch, Collection, FileCustodian, NewRecord, PostgresBackend, PostgresConfig,
    RecordKey, SealedStore, SledBackend,
};
use rand::Rng;

const SUBJECTS: usize = 100;
const COLLECTIONS: usize = 10;
const BATCH: usize = 1_000;
const SIZE: usize = 256;
const GETS: usize = 2_000;

/// The bare side's key for a record: collection and key in the clear.
fn bare_key(collection: usize, key: &str) -> Vec<u8> {
    format!("d/c{collection:02}/{key}").into_bytes()
}

/// (put records/s, get/s, scanned records/s)
type Rates = (f64, f64, f64);

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

struct Workload {
    keys: Vec<(usize, RecordKey)>,
    value: Vec<u8>,
}

fn sealed(store: &SealedStore, w: &Workload) -> Rates {
    let subjects: Vec<SubjectId> = (0..SUBJECTS)
        .map(|i| {
            let s = Subject::parse(&format!("subject-{i}"), Some("US"), None).unwrap();
            store.register_subject(&s).unwrap();
            s.id
        })
        .collect();
    let collections: Vec<Collection> = (0..COLLECTIONS)
        .map(|i| Collection::parse(&format!("c{i:02}")).unwrap())
        .collect();
    let started = Instant::now();
    for (chunk_no, chunk) in w.keys.chunks(BATCH).enumerate() {
        let new: Vec<NewRecord<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(j, (c, k))| NewRecord {
                subject: &subjects[(chunk_no * BATCH + j) % SUBJECTS],
                class: DataClass::Protected,
                collection: &collections[*c],
                key: k,
                value: &w.value,
            })
            .collect();
        store.put_batch(&new).unwrap();
    }
    let put = rate(w.keys.len(), started.elapsed());
    let mut rng = rand::rng();
    let started = Instant::now();
    for _ in 0..GETS {
        let (c, k) = &w.keys[rng.random_range(0..w.keys.len())];
        assert!(store.get_raw(&collections[*c], k).unwrap().is_some());
    }
    let get = rate(GETS, started.elapsed());
    let started = Instant::now();
    let mut scanned = 0;
    for c in &collections {
        for record in store.scan_collection(c) {
            record.unwrap();
            scanned += 1;
        }
    }
    assert_eq!(scanned, w.keys.len());
    (put, get, rate(scanned, started.elapsed()))
}

fn bare_backend(backend: &dyn Backend, w: &Workload) -> Rates {
    let started = Instant::now();
    for chunk in w.keys.chunks(BATCH) {
        let mut batch = Batch::new();
        for (c, k) in chunk {
            batch.put(bare_key(*c, k.as_str()), w.value.clone());
        }
        backend.apply(&batch).unwrap();
        backend.flush().unwrap();
    }
    let put = rate(w.keys.len(), started.elapsed());
    let mut rng = rand::rng();
    let started = Instant::now();
    for _ in 0..GETS {
        let (c, k) = &w.keys[rng.random_range(0..w.keys.len())];
        assert!(backend.get(&bare_key(*c, k.as_str())).unwrap().is_some());
    }
    let get = rate(GETS, started.elapsed());
    let started = Instant::now();
    let mut scanned = 0;
    for c in 0..COLLECTIONS {
        for item in backend.scan_prefix(format!("d/c{c:02}/").as_bytes()) {
            item.unwrap();
            scanned += 1;
        }
    }
    assert_eq!(scanned, w.keys.len());
    (put, get, rate(scanned, started.elapsed()))
}

fn bare_table(url: &str, w: &Workload) -> Rates {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .batch_execute("CREATE TABLE bare (key BYTEA PRIMARY KEY, value BYTEA NOT NULL)")
        .unwrap();
    let insert = client
        .prepare("INSERT INTO bare (key, value) SELECT * FROM unnest($1::BYTEA[], $2::BYTEA[])")
        .unwrap();
    let get = client
        .prepare("SELECT value FROM bare WHERE key = $1")
        .unwrap();
    let scan = client
        .prepare("SELECT key, value FROM bare WHERE key >= $1 AND key < $2 ORDER BY key")
        .unwrap();
    let started = Instant::now();
    for chunk in w.keys.chunks(BATCH) {
        let keys: Vec<Vec<u8>> = chunk
            .iter()
            .map(|(c, k)| bare_key(*c, k.as_str()))
            .collect();
        let values: Vec<&[u8]> = chunk.iter().map(|_| w.value.as_slice()).collect();
        let mut tx = client.transaction().unwrap();
        tx.execute(&insert, &[&keys, &values]).unwrap();
        tx.commit().unwrap();
    }
    let put = rate(w.keys.len(), started.elapsed());
    let mut rng = rand::rng();
    let started = Instant::now();
    for _ in 0..GETS {
        let (c, k) = &w.keys[rng.random_range(0..w.keys.len())];
        let row = client
            .query_opt(&get, &[&bare_key(*c, k.as_str())])
            .unwrap();
        assert!(row.is_some());
    }
    let get_rate = rate(GETS, started.elapsed());
    let started = Instant::now();
    let mut scanned = 0;
    for c in 0..COLLECTIONS {
        let from = format!("d/c{c:02}/").into_bytes();
        let until = format!("d/c{c:02}0").into_bytes();
        let rows = client.query(&scan, &[&from, &until]).unwrap();
        scanned += rows
            .iter()
            .map(|r| r.get::<_, Vec<u8>>(1).len())
            .filter(|len| *len == SIZE)
            .count();
    }
    assert_eq!(scanned, w.keys.len());
    (put, get_rate, rate(scanned, started.elapsed()))
}

fn main() {
    // `cargo bench` passes `--bench`; a filter or `--list` from the harness is not ours to read.
    let records: usize = std::env::var("DOMICILE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let Some(server) = pg::PgServer::start("postgres_vs_bare") else {
        return;
    };
    let w = Workload {
        keys: (0..records)
            .map(|i| {
                (
                    i % COLLECTIONS,
                    RecordKey::parse(&format!("k{i:07}")).unwrap(),
                )
            })
            .collect(),
        value: (0..SIZE).map(|i| (i * 131 % 251) as u8).collect(),
    };
    let dir = tempfile::tempdir().unwrap();
    let policy = Arc::new(UsSplitPolicy::new());
    let us = Region::parse("us").unwrap();

    let table = bare_table(&server.url(), &w);
    let pg_store = SealedStore::with_backend(
        Box::new(PostgresBackend::connect(&PostgresConfig::new(&server.url()).unwrap()).unwrap()),
        us.clone(),
        policy.clone(),
        Arc::new(FileCustodian::open(dir.path().join("pg-keys")).unwrap()),
    )
    .unwrap();
    let pg_sealed = sealed(&pg_store, &w);
    let pg_backend = bare_backend(
        &PostgresBackend::connect(
            &PostgresConfig::new(&server.url())
                .unwrap()
                .schema("unsealed")
                .unwrap(),
        )
        .unwrap(),
        &w,
    );
    let sled_bare = bare_backend(&SledBackend::open(dir.path().join("bare")).unwrap(), &w);
    let sled_store = SealedStore::open(
        dir.path().join("data"),
        us,
        policy,
        Arc::new(FileCustodian::open(dir.path().join("sled-keys")).unwrap()),
    )
    .unwrap();
    let sled_sealed = sealed(&sled_store, &w);

    println!("{records} records of {SIZE} B, durable batches of {BATCH}, {GETS} random gets, every collection scanned");
    println!(
        "{:<22} {:>16} {:>12} {:>16}",
        "side", "put records/s", "gets/s", "scanned rec/s"
    );
    for (name, (p, g, s)) in [
        ("bare postgres table", table),
        ("PostgresBackend bare", pg_backend),
        ("sealed on postgres", pg_sealed),
        ("bare sled", sled_bare),
        ("sealed on sled", sled_sealed),
    ] {
        println!("{name:<22} {p:>16.0} {g:>12.0} {s:>16.0}");
    }
    let ratio = |a: Rates, b: Rates| (a.0 / b.0, a.1 / b.1, a.2 / b.2);
    for (name, (p, g, s)) in [
        ("sealed postgres / bare table", ratio(pg_sealed, table)),
        ("PostgresBackend / bare table", ratio(pg_backend, table)),
        (
            "sealed postgres / sealed sled",
            ratio(pg_sealed, sled_sealed),
        ),
        ("sealed sled / bare sled", ratio(sled_sealed, sled_bare)),
    ] {
        println!("{name:<30} put {p:.2}x  get {g:.2}x  scan {s:.2}x");
    }
}
