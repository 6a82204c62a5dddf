//! Sealed store against the bare backend (sled), same workload, same run; prints the ratio.
//!
//! Workload: `DOMICILE_BENCH_RECORDS` records (default 100 000) of 256 B and of 4 KiB, spread
//! over 1 000 subjects and 100 collections (so a collection holds 1 % of the records).
//!
//! - `put`: a durable batch of 1 000 new records (sealed: `put_batch`, which checks placement,
//!   seals and writes records and index entries atomically, then flushes; bare: one atomic
//!   `apply` of the same 1 000 values, then a flush). Flushing per batch on both sides keeps the
//!   fsync from drowning the difference; `put_one` shows the one-record-one-fsync case.
//!   `put_batch_1000` takes the keys in insertion order, the bare B-tree's best case (every
//!   batch lands in its last leaves); `put_batch_1000_random` takes them in random order, as ids
//!   arriving from many users do. The sealed side's backend keys are blind indexes, scattered
//!   over the tree either way.
//! - `get`: one random record (sealed: `get_raw`, which authenticates and decrypts).
//! - `scan`: one whole collection (sealed: `scan_collection`, decrypting every record).
//!
//! A third side, `sealed_bytes`, is the bare backend storing what the sealed store stores: the
//! same blind keys and sealed values, copied from it, with no sealing, opening or bookkeeping.
//! It is the best any store could do that keeps no record key in clear on sled, so each row
//! also prints two factors of the ratio: what the blind keys and sealed values cost sled itself
//! (`sealed_bytes` against bare), and what the sealed store adds on top (sealed against
//! `sealed_bytes`: the HMAC, AES-GCM, the owner check, the index journal).
//!
//! Ratios are printed two ways. The whole run: each side's time per operation over all its
//! criterion iterations (each side runs for seconds on its own, so a slow phase of the shared
//! machine can land on one side only). And **paired**, in square brackets: after criterion, a
//! second phase runs the sides in turn, round by round (a batch, 100 gets, one collection's
//! scan: the same records or collection on every side of a round for gets and scans, fresh keys
//! of the same form for puts; the order of the sides rotated from round to round), and prints the median over rounds of the two sides' ratio in that
//! round. `DOMICILE_BENCH_PAIRED=only` runs the paired phase alone (seconds, not minutes);
//! any other value runs it alone for the operations whose `SIZE/operation` contains it
//! (`DOMICILE_BENCH_PAIRED=256B/scan`).
//!
//! Every side runs on mimalloc, the allocator the `domicile` binary and the demo use.
//!
//! Run: `cargo bench -p domicile-store --bench sealed_vs_bare -- --measurement-time 3 --warm-up-time 1`

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, Region, Subject, SubjectId};
use domicile_store::{
    Backend, Batch, Collection, FileCustodian, NewRecord, RecordKey, SealedStore, SledBackend,
};
use rand::seq::SliceRandom;
use rand::Rng;

/// Every side runs on mimalloc, the allocator the `domicile` binary and the demo use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SUBJECTS: usize = 1_000;
const COLLECTIONS: usize = 100;
const PUT_BATCH: usize = 1_000;
/// The side that stores the sealed store's bytes in a bare backend (see the module docs).
const SEALED_BYTES: &str = "sealed_bytes";

/// (operation, value size, side).
type Cell = (String, usize, &'static str);

/// Total iterations and time per cell, to print the ratios at the end.
static TOTALS: Mutex<BTreeMap<Cell, (u64, Duration)>> = Mutex::new(BTreeMap::new());

/// Runs `each` `iters` times, adds the time to the cell's total, and returns it (criterion's
/// `iter_custom`).
fn timed(
    op: &str,
    size: usize,
    side: &'static str,
    iters: u64,
    mut each: impl FnMut(),
) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        each();
    }
    let took = start.elapsed();
    let mut totals = TOTALS.lock().unwrap();
    let entry = totals.entry((op.to_owned(), size, side)).or_default();
    entry.0 += iters;
    entry.1 += took;
    took
}

/// The backend key the sealed store uses for a record, so the bare side stores the same keys.
fn layout_key(collection: &str, key: &str) -> Vec<u8> {
    let mut out = vec![b'd'];
    out.extend_from_slice(&(collection.len() as u16).to_be_bytes());
    out.extend_from_slice(collection.as_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    bare: SledBackend,
    sealed: SealedStore,
    /// The sealed store's record entries, copied as they are into a bare backend.
    sealed_bytes: SledBackend,
    /// The backend key of each of `keys` in the sealed store (its blind index).
    blind_keys: Vec<Vec<u8>>,
    /// How long a sealed value of this size is.
    sealed_len: usize,
    subjects: Vec<SubjectId>,
    collections: Vec<Collection>,
    keys: Vec<(usize, RecordKey)>,
    value: Vec<u8>,
}

fn fixture(records: usize, size: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let bare = SledBackend::open(dir.path().join("bare")).unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let sealed = SealedStore::open(
        dir.path().join("data"),
        Region::parse("us").unwrap(),
        Arc::new(UsSplitPolicy::new()),
        custodian,
    )
    .unwrap();
    let subjects: Vec<SubjectId> = (0..SUBJECTS)
        .map(|i| {
            let s = Subject::parse(&format!("subject-{i}"), Some("US"), None).unwrap();
            sealed.register_subject(&s).unwrap();
            s.id
        })
        .collect();
    let collections: Vec<Collection> = (0..COLLECTIONS)
        .map(|i| Collection::parse(&format!("c{i:02}")).unwrap())
        .collect();
    let keys: Vec<(usize, RecordKey)> = (0..records)
        .map(|i| {
            (
                i % COLLECTIONS,
                RecordKey::parse(&format!("k{i:07}")).unwrap(),
            )
        })
        .collect();
    let value: Vec<u8> = (0..size).map(|i| (i * 131 % 251) as u8).collect();
    for (chunk_no, chunk) in keys.chunks(PUT_BATCH).enumerate() {
        let mut batch = Batch::new();
        let mut new = Vec::with_capacity(chunk.len());
        for (j, (c, k)) in chunk.iter().enumerate() {
            batch.put(
                layout_key(collections[*c].as_str(), k.as_str()),
                value.clone(),
            );
            new.push(NewRecord {
                subject: &subjects[(chunk_no * PUT_BATCH + j) % SUBJECTS],
                class: DataClass::Protected,
                collection: &collections[*c],
                key: k,
                value: &value,
            });
        }
        bare.apply(&batch).unwrap();
        bare.flush().unwrap();
        sealed.put_batch(&new).unwrap();
    }
    // The sealed store's records, byte for byte, into a bare backend, in batches as above and
    // in no useful order, as the sealed store received them: a B-tree filled in key order is
    // laid out better in memory, and scans faster, than one filled at random places.
    let sealed_bytes = SledBackend::open(dir.path().join("sealed-bytes")).unwrap();
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = sealed
        .backend()
        .scan_prefix(b"d")
        .map(Result::unwrap)
        .collect();
    entries.shuffle(&mut rand::rng());
    for chunk in entries.chunks(PUT_BATCH) {
        let mut batch = Batch::with_capacity(PUT_BATCH);
        for (k, v) in chunk {
            batch.put(k.clone(), v.clone());
        }
        sealed_bytes.apply(&batch).unwrap();
        sealed_bytes.flush().unwrap();
    }
    drop(entries);
    let blind_keys: Vec<Vec<u8>> = keys
        .iter()
        .map(|(c, k)| {
            let mut key = layout_key(collections[*c].as_str(), "");
            key.extend_from_slice(&sealed.blind_index(&collections[*c], k).0);
            key
        })
        .collect();
    let sealed_len = sealed_bytes.get(&blind_keys[0]).unwrap().unwrap().len();
    Fixture {
        _dir: dir,
        bare,
        sealed,
        sealed_bytes,
        blind_keys,
        sealed_len,
        subjects,
        collections,
        keys,
        value,
    }
}

/// The sides, in the order the tables print them.
const SIDES: [&str; 3] = ["bare", SEALED_BYTES, "sealed"];

/// What one round of an operation works on, the same for every side of the round.
#[derive(Clone, Copy)]
enum Work {
    /// A batch of new records; `random` takes their keys in no useful order.
    Put { random: bool },
    /// One record, by its index in the fixture's keys.
    Get(usize),
    /// One collection, whole.
    Scan(usize),
}

/// Every side's operations on one fixture, so criterion and the paired phase run the same code.
struct Sides<'f> {
    f: &'f Fixture,
    put_collection: Collection,
    put_prefix: Vec<u8>,
    /// A value as long as a sealed one of this size, for the `sealed_bytes` side's puts.
    sealed_value: Vec<u8>,
    counter: AtomicU64,
    rng: Mutex<rand::rngs::ThreadRng>,
}

impl<'f> Sides<'f> {
    fn new(f: &'f Fixture) -> Self {
        Sides {
            f,
            put_collection: Collection::parse("put").unwrap(),
            put_prefix: layout_key("put", ""),
            sealed_value: (0..f.sealed_len).map(|i| (i * 131 % 251) as u8).collect(),
            counter: AtomicU64::new(0),
            rng: Mutex::new(rand::rng()),
        }
    }

    /// A fresh record key for a put.
    fn put_key(&self, random: bool) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        if random {
            // A fixed permutation of the counter: unique, in no useful order.
            format!("p{:016x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        } else {
            format!("p{n:09}")
        }
    }

    /// Runs `work` on `side` once.
    fn run(&self, side: &str, work: Work) {
        let f = self.f;
        match (side, work) {
            ("bare", Work::Put { random }) => {
                let mut batch = Batch::with_capacity(PUT_BATCH);
                for _ in 0..PUT_BATCH {
                    batch.put(layout_key("put", &self.put_key(random)), f.value.clone());
                }
                f.bare.apply(&batch).unwrap();
                f.bare.flush().unwrap();
            }
            // Blind keys are scattered whatever order the record keys come in.
            (SEALED_BYTES, Work::Put { .. }) => {
                let mut rng = self.rng.lock().unwrap();
                let mut batch = Batch::with_capacity(PUT_BATCH);
                for _ in 0..PUT_BATCH {
                    let mut key = Vec::with_capacity(self.put_prefix.len() + 32);
                    key.extend_from_slice(&self.put_prefix);
                    key.extend_from_slice(&rng.random::<[u8; 32]>());
                    batch.put(key, self.sealed_value.clone());
                }
                f.sealed_bytes.apply(&batch).unwrap();
                f.sealed_bytes.flush().unwrap();
            }
            ("sealed", Work::Put { random }) => {
                let keys: Vec<RecordKey> = (0..PUT_BATCH)
                    .map(|_| RecordKey::parse(&self.put_key(random)).unwrap())
                    .collect();
                let new: Vec<NewRecord<'_>> = keys
                    .iter()
                    .enumerate()
                    .map(|(j, k)| NewRecord {
                        subject: &f.subjects[j % SUBJECTS],
                        class: DataClass::Protected,
                        collection: &self.put_collection,
                        key: k,
                        value: &f.value,
                    })
                    .collect();
                f.sealed.put_batch(&new).unwrap();
            }
            ("bare", Work::Get(i)) => {
                let (c, k) = &f.keys[i];
                let v = f
                    .bare
                    .get(&layout_key(f.collections[*c].as_str(), k.as_str()));
                black_box(v.unwrap().unwrap());
            }
            (SEALED_BYTES, Work::Get(i)) => {
                black_box(f.sealed_bytes.get(&f.blind_keys[i]).unwrap().unwrap());
            }
            ("sealed", Work::Get(i)) => {
                let (c, k) = &f.keys[i];
                black_box(f.sealed.get_raw(&f.collections[*c], k).unwrap().unwrap());
            }
            (side, Work::Scan(c)) => {
                let collection = &f.collections[c];
                let prefix = layout_key(collection.as_str(), "");
                let n = match side {
                    "bare" => count(f.bare.scan_prefix(&prefix)),
                    SEALED_BYTES => count(f.sealed_bytes.scan_prefix(&prefix)),
                    _ => count(f.sealed.scan_collection(collection)),
                };
                assert_eq!(n, f.keys.len() / COLLECTIONS);
            }
            (side, _) => unreachable!("no such side or work: {side}"),
        }
    }
}

/// Consumes a scan, as a caller would, and counts its items.
fn count<T, E: std::fmt::Debug>(items: impl Iterator<Item = Result<T, E>>) -> usize {
    let mut n = 0;
    for item in items {
        black_box(item.unwrap());
        n += 1;
    }
    n
}

fn bench_size(c: &mut Criterion, records: usize, size: usize) {
    let ops = [
        "put_batch_1000",
        "put_batch_1000_random",
        "get",
        "scan_collection",
    ];
    if paired_only() && !ops.iter().any(|op| paired_runs(op, size)) {
        return;
    }
    let started = Instant::now();
    let f = fixture(records, size);
    eprintln!(
        "loaded {records} records of {size} B into each side in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let sides = Sides::new(&f);
    if !paired_only() {
        criterion_size(c, &sides, size);
    }
    paired_size(&sides, size);
}

/// Whether to skip criterion and run only the paired phase (`DOMICILE_BENCH_PAIRED` set).
fn paired_only() -> bool {
    std::env::var_os("DOMICILE_BENCH_PAIRED").is_some()
}

/// Whether the paired phase runs `op` at `size` (`DOMICILE_BENCH_PAIRED`, if not `only`, names
/// a part of `SIZE/operation`).
fn paired_runs(op: &str, size: usize) -> bool {
    match std::env::var("DOMICILE_BENCH_PAIRED") {
        Ok(filter) if filter != "only" => format!("{size}B/{op}").contains(&filter),
        _ => true,
    }
}

fn criterion_size(c: &mut Criterion, sides: &Sides<'_>, size: usize) {
    let f = sides.f;
    let mut group = c.benchmark_group(format!("store/{size}B"));
    group.sample_size(10);

    group.throughput(Throughput::Elements(PUT_BATCH as u64));
    // Keys in insertion order favour the bare B-tree (each batch lands in its last leaves);
    // keys in random order are what ids arriving from many users look like. The sealed side's
    // backend keys are blind indexes, scattered either way.
    for (op, random) in [("put_batch_1000", false), ("put_batch_1000_random", true)] {
        for side in SIDES {
            group.bench_function(BenchmarkId::new(op, side), |b| {
                b.iter_custom(|iters| {
                    timed(op, size, side, iters, || {
                        sides.run(side, Work::Put { random })
                    })
                })
            });
        }
    }

    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("put_one", "bare"), |b| {
        b.iter_custom(|iters| {
            timed("put_one", size, "bare", iters, || {
                let key = sides.put_key(false);
                f.bare.put(&layout_key("put", &key), &f.value).unwrap();
                f.bare.flush().unwrap();
            })
        })
    });
    group.bench_function(BenchmarkId::new("put_one", "sealed"), |b| {
        b.iter_custom(|iters| {
            timed("put_one", size, "sealed", iters, || {
                let n = sides.counter.fetch_add(1, Ordering::Relaxed);
                let k = RecordKey::parse(&format!("p{n:09}")).unwrap();
                let s = &f.subjects[n as usize % SUBJECTS];
                f.sealed
                    .put_raw(s, DataClass::Protected, &sides.put_collection, &k, &f.value)
                    .unwrap();
            })
        })
    });

    group.sample_size(30);
    for side in SIDES {
        group.bench_function(BenchmarkId::new("get", side), |b| {
            let mut rng = rand::rng();
            b.iter_custom(|iters| {
                let picks: Vec<usize> = (0..iters)
                    .map(|_| rng.random_range(0..f.keys.len()))
                    .collect();
                let mut picks = picks.into_iter();
                timed("get", size, side, iters, || {
                    sides.run(side, Work::Get(picks.next().unwrap()))
                })
            })
        });
    }

    group.throughput(Throughput::Elements((f.keys.len() / COLLECTIONS) as u64));
    group.sample_size(10);
    for side in SIDES {
        group.bench_function(BenchmarkId::new("scan_collection", side), |b| {
            let mut rng = rand::rng();
            b.iter_custom(|iters| {
                timed("scan_collection", size, side, iters, || {
                    sides.run(side, Work::Scan(rng.random_range(0..COLLECTIONS)))
                })
            })
        });
    }
    group.finish();
}

/// Rounds of the paired phase for each kind of put: one batch of 1 000 per side per round.
const PUT_ROUNDS: usize = 30;
/// Rounds of gets, of [`GETS_PER_ROUND`] random records each.
const GET_ROUNDS: usize = 300;
const GETS_PER_ROUND: usize = 100;
/// Rounds of scans, of one random collection each.
const SCAN_ROUNDS: usize = 300;

/// Each side's time in each round of one operation, in the order of [`SIDES`].
type SideRounds = [Vec<Duration>; 3];

/// The paired phase's rounds, and operations per round, per (operation, size).
static ROUNDS: Mutex<BTreeMap<(String, usize), (SideRounds, usize)>> = Mutex::new(BTreeMap::new());

/// Runs every side in turn, round by round, and keeps each side's time per round.
fn paired_size(sides: &Sides<'_>, size: usize) {
    let mut rng = rand::rng();
    let mut run =
        |op: &str, rounds: usize, work: &mut dyn FnMut(&mut rand::rngs::ThreadRng) -> Vec<Work>| {
            if !paired_runs(op, size) {
                return;
            }
            let mut times = SideRounds::default();
            let mut per_round = 0;
            for round in 0..rounds {
                let works = work(&mut rng);
                per_round = works.len();
                for turn in 0..SIDES.len() {
                    // Rotate which side goes first, so that none always runs right after another.
                    let s = (round + turn) % SIDES.len();
                    let start = Instant::now();
                    for w in &works {
                        sides.run(SIDES[s], *w);
                    }
                    times[s].push(start.elapsed());
                }
            }
            ROUNDS
                .lock()
                .unwrap()
                .insert((op.to_owned(), size), (times, per_round));
        };
    let keys = sides.f.keys.len();
    for (op, random) in [("put_batch_1000", false), ("put_batch_1000_random", true)] {
        run(op, PUT_ROUNDS, &mut |_| vec![Work::Put { random }]);
    }
    run("get", GET_ROUNDS, &mut |rng| {
        (0..GETS_PER_ROUND)
            .map(|_| Work::Get(rng.random_range(0..keys)))
            .collect()
    });
    run("scan_collection", SCAN_ROUNDS, &mut |rng| {
        vec![Work::Scan(rng.random_range(0..COLLECTIONS))]
    });
}

/// The median over rounds of `a`'s time over `b`'s in the same round: `b`'s throughput
/// against `a`'s.
fn paired(a: &[Duration], b: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

fn print_ratios(records: usize) {
    let totals = TOTALS.lock().unwrap();
    let rounds = ROUNDS.lock().unwrap();
    println!();
    println!("sealed vs bare sled, {records} records per size (throughput ratio = bare time / sealed time; targets: put >= 0.7, get >= 0.8, scan >= 0.7)");
    println!("  sealed bytes: the sealed store's blind keys and sealed values in a bare backend, no crypto;");
    println!("  ratio = keys x store: (bare / sealed bytes) x (sealed bytes / sealed); whole run, then [paired]");
    println!("  time per operation: the median of the paired rounds");
    println!(
        "{:<22} {:>6} {:>11} {:>13} {:>11}  {:>15} {:>15} {:>15}",
        "operation", "size", "bare/op", "sealed bytes", "sealed/op", "ratio", "keys", "store"
    );
    let cells: std::collections::BTreeSet<(String, usize)> = totals
        .keys()
        .map(|(op, size, _)| (op.clone(), *size))
        .chain(rounds.keys().cloned())
        .collect();
    for (op, size) in cells {
        let per_op = |side| {
            totals
                .get(&(op.clone(), size, side))
                .map(|(n, t)| t.as_secs_f64() / *n as f64)
        };
        let times = rounds.get(&(op.clone(), size)).map(|(t, _)| t);
        let median = |side: usize| {
            rounds.get(&(op.clone(), size)).map_or_else(
                || "-".to_owned(),
                |(t, per_round)| {
                    let mut t: Vec<f64> = t[side].iter().map(Duration::as_secs_f64).collect();
                    t.sort_by(f64::total_cmp);
                    format!("{:.2} µs", t[t.len() / 2] / *per_round as f64 * 1e6)
                },
            )
        };
        let ratio = |a: usize, b: usize| {
            let whole = per_op(SIDES[a])
                .zip(per_op(SIDES[b]))
                .map_or_else(|| "-".to_owned(), |(a, b)| format!("{:.2}x", a / b));
            let pair = times.map_or_else(
                || "-".to_owned(),
                |t| format!("{:.2}x", paired(&t[a], &t[b])),
            );
            format!("{whole} [{pair}]")
        };
        println!(
            "{:<22} {:>5}B {:>11} {:>13} {:>11}  {:>15} {:>15} {:>15}",
            op,
            size,
            median(0),
            median(1),
            median(2),
            ratio(0, 2),
            ratio(0, 1),
            ratio(1, 2),
        );
    }
}

fn main() {
    let records: usize = std::env::var("DOMICILE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut c = Criterion::default().configure_from_args();
    for size in [256, 4096] {
        bench_size(&mut c, records, size);
    }
    if !paired_only() {
        c.final_summary();
    }
    print_ratios(records);
}
