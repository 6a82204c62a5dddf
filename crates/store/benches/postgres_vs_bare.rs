//! The sealed store on PostgreSQL against a bare PostgreSQL table holding the same values, and
//! against sled, in the same run; prints records per second and the ratios.
//!
//! Starts a throwaway PostgreSQL 15 server (fsync and synchronous_commit on) the way the tests
//! do. Workload: `DOMICILE_BENCH_RECORDS` records (default 20 000) of 256 B over 100 subjects and
//! 10 collections, written in durable batches of 1 000; then 10 000 random gets; then whole
//! collections scanned. The PostgreSQL sides run interleaved (each batch, each run of 100 gets,
//! each collection's scan goes to every side in turn), and so do the two sled sides, so that a
//! change in the shared machine's load lands on every side alike.
//!
//! Each ratio is printed three ways: the two sides' median rates over their rounds; their rates
//! over the whole run (in brackets); and, in square brackets, the median over the rounds of the
//! two sides' ratio *in that round* (paired: the sides of one round run within milliseconds of
//! each other, so a slow phase of the shared machine moves both). Only sides of one run pair.
//!
//! - **bare table**: `CREATE TABLE bare (key BYTEA PRIMARY KEY, value BYTEA NOT NULL)`; a batch
//!   is one transaction of one prepared `INSERT … SELECT FROM unnest($1, $2)` of the plaintext
//!   values, a get one prepared `SELECT`, a scan one `SELECT … WHERE key >= $1 AND key < $2
//!   ORDER BY key` — the fastest plain way to store the same bytes.
//! - **keys scattered**: the same table with each record key replaced by its SHA-256 after the
//!   collection, so that a batch's rows land at random places in the primary key's B-tree, as a
//!   sealed store's blind-indexed keys do; the bare table's keys arrive in order, its best case.
//! - **sealed on postgres**: `SealedStore::put_batch` / `get_raw` / `scan_collection` on
//!   `PostgresBackend` (placement check, sealing, blind keys, subject index, one
//!   transaction per batch, the owner check inside it).
//! - **owner read first**: the same sealed store on a `PostgresBackend` without its own
//!   `apply_owned`, so the trait's default reads every key's current value before the batch (as
//!   `put_batch` did before the owner check moved into the write's statement).
//! - **PostgresBackend bare**: the backend alone (`apply`, `get`, `scan_prefix`) with the bare
//!   table's keys and values, to tell the backend's cost from the sealing's.
//! - **sealed on sled**, **bare sled**: the same calls on the embedded default.
//!
//! Every side runs on mimalloc, the allocator of the `domicile` binary, whose `serve` and
//! `ingest` are what put a region's records into PostgreSQL.
//!
//! Run: `cargo bench -p domicile-store --features postgres --bench postgres_vs_bare`; with
//! `DOMICILE_BENCH_PG_STATEMENTS=1` it also prints the server's time and WAL bytes per row for
//! each statement (`pg_stat_statements`, in PostgreSQL's contrib).

#[path = "../tests/pg/mod.rs"]
mod pg;

use std::sync::Arc;
use std::time::{Duration, Instant};

use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, Region, Subject, SubjectId};
use domicile_store::{
    Backend, Batch, Collection, FileCustodian, NewRecord, PostgresBackend, PostgresConfig,
    RecordKey, ScanIter, SealedStore, SledBackend, StoreError,
};
use rand::Rng;

/// Every side runs on mimalloc, the allocator the `domicile` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SUBJECTS: usize = 100;
const COLLECTIONS: usize = 10;
const BATCH: usize = 1_000;
const SIZE: usize = 256;
const GETS: usize = 10_000;

/// The bare side's key for a record: collection and key in the clear.
fn bare_key(collection: usize, key: &str) -> Vec<u8> {
    format!("d/c{collection:02}/{key}").into_bytes()
}

/// (put records/s, get/s, scanned records/s)
type Rates = (f64, f64, f64);

/// One side of the comparison: the same three operations on its own storage.
trait Side {
    /// Writes records `first..first + keys.len()` as one durable batch.
    fn put_batch(&mut self, first: usize, keys: &[(usize, RecordKey)], value: &[u8]);
    /// Reads one record; it must be there.
    fn get(&mut self, collection: usize, key: &RecordKey);
    /// Reads a whole collection; returns how many records it holds.
    fn scan(&mut self, collection: usize) -> usize;
}

struct SealedSide<'a> {
    store: &'a SealedStore,
    subjects: Vec<SubjectId>,
    collections: Vec<Collection>,
}

impl<'a> SealedSide<'a> {
    fn new(store: &'a SealedStore) -> Self {
        let subjects = (0..SUBJECTS)
            .map(|i| {
                let s = Subject::parse(&format!("subject-{i}"), Some("US"), None).unwrap();
                store.register_subject(&s).unwrap();
                s.id
            })
            .collect();
        let collections = (0..COLLECTIONS)
            .map(|i| Collection::parse(&format!("c{i:02}")).unwrap())
            .collect();
        SealedSide {
            store,
            subjects,
            collections,
        }
    }
}

impl Side for SealedSide<'_> {
    fn put_batch(&mut self, first: usize, keys: &[(usize, RecordKey)], value: &[u8]) {
        let new: Vec<NewRecord<'_>> = keys
            .iter()
            .enumerate()
            .map(|(j, (c, k))| NewRecord {
                subject: &self.subjects[(first + j) % SUBJECTS],
                class: DataClass::Protected,
                collection: &self.collections[*c],
                key: k,
                value,
            })
            .collect();
        self.store.put_batch(&new).unwrap();
    }

    fn get(&mut self, collection: usize, key: &RecordKey) {
        assert!(self
            .store
            .get_raw(&self.collections[collection], key)
            .unwrap()
            .is_some());
    }

    fn scan(&mut self, collection: usize) -> usize {
        let mut scanned = 0;
        for record in self.store.scan_collection(&self.collections[collection]) {
            record.unwrap();
            scanned += 1;
        }
        scanned
    }
}

struct BackendSide<'a>(&'a dyn Backend);

impl Side for BackendSide<'_> {
    fn put_batch(&mut self, _first: usize, keys: &[(usize, RecordKey)], value: &[u8]) {
        let mut batch = Batch::new();
        for (c, k) in keys {
            batch.put(bare_key(*c, k.as_str()), value.to_vec());
        }
        self.0.apply(&batch).unwrap();
        self.0.flush().unwrap();
    }

    fn get(&mut self, collection: usize, key: &RecordKey) {
        assert!(self
            .0
            .get(&bare_key(collection, key.as_str()))
            .unwrap()
            .is_some());
    }

    fn scan(&mut self, collection: usize) -> usize {
        let mut scanned = 0;
        for item in self
            .0
            .scan_prefix(format!("d/c{collection:02}/").as_bytes())
        {
            item.unwrap();
            scanned += 1;
        }
        scanned
    }
}

/// The PostgreSQL backend without its own `apply_owned`: the trait's default reads every key a
/// batch takes (whole values, one round trip) before writing, as the sealed store did before
/// the owner check moved into the write's statement. The bench's "owner read first" side.
#[derive(Debug)]
struct OwnerReadFirst(PostgresBackend);

impl Backend for OwnerReadFirst {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key)
    }
    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.0.get_many(keys)
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.0.put(key, value)
    }
    fn delete(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.0.delete(key)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> ScanIter<'_> {
        self.0.scan_prefix(prefix)
    }
    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        self.0.apply(batch)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.0.flush()
    }
}

/// The bare side's key with its record key hashed: the collection in the clear, then 32 bytes in
/// random order, the shape of a sealed record's blind-indexed key.
fn scattered_key(collection: usize, key: &str) -> Vec<u8> {
    let mut out = format!("d/c{collection:02}/").into_bytes();
    out.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, key.as_bytes()).as_ref());
    out
}

struct TableSide {
    client: postgres::Client,
    insert: postgres::Statement,
    get: postgres::Statement,
    scan: postgres::Statement,
    key: fn(usize, &str) -> Vec<u8>,
}

impl TableSide {
    /// A bare table named `table`, its rows keyed by `key`.
    fn new(url: &str, table: &str, key: fn(usize, &str) -> Vec<u8>) -> Self {
        let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (key BYTEA PRIMARY KEY, value BYTEA NOT NULL)"
            ))
            .unwrap();
        let insert = client
            .prepare(&format!(
                "INSERT INTO {table} (key, value) SELECT * FROM unnest($1::BYTEA[], $2::BYTEA[])"
            ))
            .unwrap();
        let get = client
            .prepare(&format!("SELECT value FROM {table} WHERE key = $1"))
            .unwrap();
        let scan = client
            .prepare(&format!(
                "SELECT key, value FROM {table} WHERE key >= $1 AND key < $2 ORDER BY key"
            ))
            .unwrap();
        TableSide {
            client,
            insert,
            get,
            scan,
            key,
        }
    }
}

impl Side for TableSide {
    fn put_batch(&mut self, _first: usize, keys: &[(usize, RecordKey)], value: &[u8]) {
        let keys: Vec<Vec<u8>> = keys
            .iter()
            .map(|(c, k)| (self.key)(*c, k.as_str()))
            .collect();
        let values: Vec<&[u8]> = keys.iter().map(|_| value).collect();
        let mut tx = self.client.transaction().unwrap();
        tx.execute(&self.insert, &[&keys, &values]).unwrap();
        tx.commit().unwrap();
    }

    fn get(&mut self, collection: usize, key: &RecordKey) {
        let row = self
            .client
            .query_opt(&self.get, &[&(self.key)(collection, key.as_str())])
            .unwrap();
        assert!(row.is_some());
    }

    fn scan(&mut self, collection: usize) -> usize {
        let from = format!("d/c{collection:02}/").into_bytes();
        let until = format!("d/c{collection:02}0").into_bytes();
        let rows = self.client.query(&self.scan, &[&from, &until]).unwrap();
        rows.iter()
            .map(|r| r.get::<_, Vec<u8>>(1).len())
            .filter(|len| *len == SIZE)
            .count()
    }
}

/// A side's rates two ways: over the whole run, and the median of its rounds (batches, runs of
/// 100 gets, collections), which a stall of the shared machine in one round does not move; and
/// the rate of each round, to pair with another side's of the same run.
#[derive(Clone)]
struct Measured {
    whole: Rates,
    median: Rates,
    rounds: [Vec<f64>; 3],
}

impl Measured {
    /// The median over rounds of this side's rate against `other`'s in the same round, for
    /// put, get and scan; `other` must be a side of the same run.
    fn paired(&self, other: &Measured) -> Rates {
        let one = |i: usize| {
            let (a, b) = (&self.rounds[i], &other.rounds[i]);
            assert_eq!(a.len(), b.len(), "sides of one run have the same rounds");
            let mut ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
            ratios.sort_by(f64::total_cmp);
            ratios[ratios.len() / 2]
        };
        (one(0), one(1), one(2))
    }
}

/// Time and items of each round of one operation on one side.
#[derive(Default)]
struct Rounds(Vec<(usize, Duration)>);

impl Rounds {
    fn time(&mut self, items: usize, op: impl FnOnce()) {
        let started = Instant::now();
        op();
        self.0.push((items, started.elapsed()));
    }

    fn whole(&self) -> f64 {
        let items: usize = self.0.iter().map(|(n, _)| n).sum();
        rate(items, self.0.iter().map(|(_, t)| *t).sum())
    }

    fn rates(&self) -> Vec<f64> {
        self.0.iter().map(|(n, t)| rate(*n, *t)).collect()
    }

    fn median(&self) -> f64 {
        let mut rates = self.rates();
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    }
}

/// Runs the workload on every side, interleaved — each batch, each run of 100 gets and each
/// collection's scan goes to every side in turn — so that a change in the machine's load
/// (it is shared) lands on all of them alike, and returns each side's rates.
fn run(sides: &mut [&mut dyn Side], w: &Workload) -> Vec<Measured> {
    let mut rounds: Vec<[Rounds; 3]> = sides.iter().map(|_| Default::default()).collect();
    for (chunk_no, chunk) in w.keys.chunks(BATCH).enumerate() {
        for (side, rounds) in sides.iter_mut().zip(&mut rounds) {
            rounds[0].time(chunk.len(), || {
                side.put_batch(chunk_no * BATCH, chunk, &w.value)
            });
        }
    }
    let mut rng = rand::rng();
    let picks: Vec<usize> = (0..GETS)
        .map(|_| rng.random_range(0..w.keys.len()))
        .collect();
    for run in picks.chunks(100) {
        for (side, rounds) in sides.iter_mut().zip(&mut rounds) {
            rounds[1].time(run.len(), || {
                for &i in run {
                    let (c, k) = &w.keys[i];
                    side.get(*c, k);
                }
            });
        }
    }
    for c in 0..COLLECTIONS {
        let expected = w.keys.iter().filter(|(kc, _)| *kc == c).count();
        for (side, rounds) in sides.iter_mut().zip(&mut rounds) {
            rounds[2].time(expected, || assert_eq!(side.scan(c), expected));
        }
    }
    rounds
        .iter()
        .map(|[put, get, scan]| Measured {
            whole: (put.whole(), get.whole(), scan.whole()),
            median: (put.median(), get.median(), scan.median()),
            rounds: [put.rates(), get.rates(), scan.rates()],
        })
        .collect()
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

struct Workload {
    keys: Vec<(usize, RecordKey)>,
    value: Vec<u8>,
}

/// Where the server's time and WAL went, statement by statement (`pg_stat_statements`), for
/// `DOMICILE_BENCH_PG_STATEMENTS=1`.
fn print_statements(url: &str) {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .unwrap();
    let rows = client
        .query(
            "SELECT calls, total_exec_time, rows, wal_bytes::FLOAT8, \
                    regexp_replace(left(query, 100), '[[:space:]]+', ' ', 'g') \
             FROM pg_stat_statements WHERE wal_bytes > 100000 OR calls > 100 \
             ORDER BY total_exec_time DESC LIMIT 12",
            &[],
        )
        .unwrap();
    println!("server time and WAL by statement (pg_stat_statements):");
    println!(
        "{:>6} {:>10} {:>8} {:>12} statement",
        "calls", "exec ms", "rows", "WAL B/row"
    );
    for r in rows {
        let (calls, ms, n, wal, query): (i64, f64, i64, f64, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let per_row = if n > 0 { wal / n as f64 } else { 0.0 };
        println!("{calls:>6} {ms:>10.1} {n:>8} {per_row:>12.0} {query}");
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter or `--list` from the harness is not ours to read.
    let records: usize = std::env::var("DOMICILE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    // Room in the buffer cache for every side's table, so that one side's writes do not evict
    // another's pages in the middle of the run (the tests' 32 MB would).
    let statements = std::env::var("DOMICILE_BENCH_PG_STATEMENTS").as_deref() == Ok("1");
    let mut settings = vec![("shared_buffers", "256MB")];
    if statements {
        settings.push(("shared_preload_libraries", "pg_stat_statements"));
    }
    let Some(server) = pg::PgServer::start_with("postgres_vs_bare", &settings, &[]) else {
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

    let pg_store = SealedStore::with_backend(
        Box::new(PostgresBackend::connect(&PostgresConfig::new(&server.url()).unwrap()).unwrap()),
        us.clone(),
        policy.clone(),
        Arc::new(FileCustodian::open(dir.path().join("pg-keys")).unwrap()),
    )
    .unwrap();
    let unsealed = PostgresBackend::connect(
        &PostgresConfig::new(&server.url())
            .unwrap()
            .schema("unsealed")
            .unwrap(),
    )
    .unwrap();
    let read_first_store = SealedStore::with_backend(
        Box::new(OwnerReadFirst(
            PostgresBackend::connect(
                &PostgresConfig::new(&server.url())
                    .unwrap()
                    .schema("read_first")
                    .unwrap(),
            )
            .unwrap(),
        )),
        us.clone(),
        policy.clone(),
        Arc::new(FileCustodian::open(dir.path().join("pg-keys-2")).unwrap()),
    )
    .unwrap();
    let postgres = run(
        &mut [
            &mut TableSide::new(&server.url(), "bare", bare_key),
            &mut TableSide::new(&server.url(), "scattered", scattered_key),
            &mut BackendSide(&unsealed),
            &mut SealedSide::new(&pg_store),
            &mut SealedSide::new(&read_first_store),
        ],
        &w,
    );
    if statements {
        print_statements(&server.url());
    }
    let [table, scattered, pg_backend, pg_sealed, pg_read_first] = &postgres[..] else {
        unreachable!("five sides")
    };
    let sled_store = SealedStore::open(
        dir.path().join("data"),
        us,
        policy,
        Arc::new(FileCustodian::open(dir.path().join("sled-keys")).unwrap()),
    )
    .unwrap();
    let sled = run(
        &mut [
            &mut BackendSide(&SledBackend::open(dir.path().join("bare")).unwrap()),
            &mut SealedSide::new(&sled_store),
        ],
        &w,
    );
    let [sled_bare, sled_sealed] = &sled[..] else {
        unreachable!("two sides")
    };

    println!(
        "{records} records of {SIZE} B, durable batches of {BATCH}, {GETS} random gets, \
         every collection scanned; rates are the median of the rounds (whole run in brackets); \
         ratios add, in square brackets, the median of the two sides' ratios round by round"
    );
    println!(
        "{:<22} {:>24} {:>20} {:>24}",
        "side", "put records/s", "gets/s", "scanned rec/s"
    );
    for (name, m) in [
        ("bare postgres table", table),
        ("  keys scattered", scattered),
        ("PostgresBackend bare", pg_backend),
        ("sealed on postgres", pg_sealed),
        ("  owner read first", pg_read_first),
        ("bare sled", sled_bare),
        ("sealed on sled", sled_sealed),
    ] {
        let cell = |median: f64, whole: f64| format!("{median:.0} ({whole:.0})");
        println!(
            "{name:<22} {:>24} {:>20} {:>24}",
            cell(m.median.0, m.whole.0),
            cell(m.median.1, m.whole.1),
            cell(m.median.2, m.whole.2),
        );
    }
    let ratio = |a: Rates, b: Rates| (a.0 / b.0, a.1 / b.1, a.2 / b.2);
    let paired = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"));
    // The last field: whether the two sides ran in one run, interleaved (the sled sides run
    // after the PostgreSQL ones).
    for (name, a, b, same_run) in [
        ("sealed postgres / bare table", pg_sealed, table, true),
        ("  / keys scattered", pg_sealed, scattered, true),
        ("  owner read first / table", pg_read_first, table, true),
        ("PostgresBackend / bare table", pg_backend, table, true),
        (
            "sealed postgres / sealed sled",
            pg_sealed,
            sled_sealed,
            false,
        ),
        ("sealed sled / bare sled", sled_sealed, sled_bare, true),
    ] {
        let (p, g, s) = ratio(a.median, b.median);
        let (wp, wg, ws) = ratio(a.whole, b.whole);
        let pairs = same_run.then(|| a.paired(b));
        let (pp, pg, ps) = (
            paired(pairs.map(|r| r.0)),
            paired(pairs.map(|r| r.1)),
            paired(pairs.map(|r| r.2)),
        );
        println!(
            "{name:<30} put {p:.2}x ({wp:.2}x) [{pp}]  get {g:.2}x ({wg:.2}x) [{pg}]  \
             scan {s:.2}x ({ws:.2}x) [{ps}]"
        );
    }
}
