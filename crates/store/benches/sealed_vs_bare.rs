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
//! Both sides run on mimalloc, the allocator the `domicile` binary and the demo use.
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
use rand::Rng;

/// Both sides run on mimalloc, the allocator the `domicile` binary and the demo use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SUBJECTS: usize = 1_000;
const COLLECTIONS: usize = 100;
const PUT_BATCH: usize = 1_000;

/// (operation, value size, side).
type Cell = (String, usize, &'static str);

/// Total iterations and time per cell, to print the ratios at the end.
static TOTALS: Mutex<BTreeMap<Cell, (u64, Duration)>> = Mutex::new(BTreeMap::new());

fn record_time(op: &str, size: usize, side: &'static str, iters: u64, took: Duration) {
    let mut totals = TOTALS.lock().unwrap();
    let entry = totals.entry((op.to_owned(), size, side)).or_default();
    entry.0 += iters;
    entry.1 += took;
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
    Fixture {
        _dir: dir,
        bare,
        sealed,
        subjects,
        collections,
        keys,
        value,
    }
}

fn bench_size(c: &mut Criterion, records: usize, size: usize) {
    let started = Instant::now();
    let f = fixture(records, size);
    eprintln!(
        "loaded {records} records of {size} B into each side in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let put_collection = Collection::parse("put").unwrap();
    let counter = AtomicU64::new(0);

    let mut group = c.benchmark_group(format!("store/{size}B"));
    group.sample_size(10);

    group.throughput(Throughput::Elements(PUT_BATCH as u64));
    // Keys in insertion order favour the bare B-tree (each batch lands in its last leaves);
    // keys in random order are what ids arriving from many users look like. The sealed side's
    // backend keys are blind indexes, scattered either way.
    for (op, random) in [("put_batch_1000", false), ("put_batch_1000_random", true)] {
        let key = |n: u64| {
            if random {
                // A fixed permutation of the counter: unique, in no useful order.
                format!("p{:016x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            } else {
                format!("p{n:09}")
            }
        };
        group.bench_function(BenchmarkId::new(op, "bare"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut batch = Batch::new();
                    for _ in 0..PUT_BATCH {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        batch.put(layout_key("put", &key(n)), f.value.clone());
                    }
                    f.bare.apply(&batch).unwrap();
                    f.bare.flush().unwrap();
                }
                let took = start.elapsed();
                record_time(op, size, "bare", iters, took);
                took
            })
        });
        group.bench_function(BenchmarkId::new(op, "sealed"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let keys: Vec<RecordKey> = (0..PUT_BATCH)
                        .map(|_| {
                            let n = counter.fetch_add(1, Ordering::Relaxed);
                            RecordKey::parse(&key(n)).unwrap()
                        })
                        .collect();
                    let new: Vec<NewRecord<'_>> = keys
                        .iter()
                        .enumerate()
                        .map(|(j, k)| NewRecord {
                            subject: &f.subjects[j % SUBJECTS],
                            class: DataClass::Protected,
                            collection: &put_collection,
                            key: k,
                            value: &f.value,
                        })
                        .collect();
                    f.sealed.put_batch(&new).unwrap();
                }
                let took = start.elapsed();
                record_time(op, size, "sealed", iters, took);
                took
            })
        });
    }

    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("put_one", "bare"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                f.bare
                    .put(&layout_key("put", &format!("p{n:09}")), &f.value)
                    .unwrap();
                f.bare.flush().unwrap();
            }
            let took = start.elapsed();
            record_time("put_one", size, "bare", iters, took);
            took
        })
    });
    group.bench_function(BenchmarkId::new("put_one", "sealed"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let k = RecordKey::parse(&format!("p{n:09}")).unwrap();
                let s = &f.subjects[n as usize % SUBJECTS];
                f.sealed
                    .put_raw(s, DataClass::Protected, &put_collection, &k, &f.value)
                    .unwrap();
            }
            let took = start.elapsed();
            record_time("put_one", size, "sealed", iters, took);
            took
        })
    });

    group.sample_size(30);
    group.bench_function(BenchmarkId::new("get", "bare"), |b| {
        let mut rng = rand::rng();
        b.iter_custom(|iters| {
            let picks: Vec<usize> = (0..iters)
                .map(|_| rng.random_range(0..f.keys.len()))
                .collect();
            let start = Instant::now();
            for i in picks {
                let (c, k) = &f.keys[i];
                let v = f
                    .bare
                    .get(&layout_key(f.collections[*c].as_str(), k.as_str()));
                black_box(v.unwrap().unwrap());
            }
            let took = start.elapsed();
            record_time("get", size, "bare", iters, took);
            took
        })
    });
    group.bench_function(BenchmarkId::new("get", "sealed"), |b| {
        let mut rng = rand::rng();
        b.iter_custom(|iters| {
            let picks: Vec<usize> = (0..iters)
                .map(|_| rng.random_range(0..f.keys.len()))
                .collect();
            let start = Instant::now();
            for i in picks {
                let (c, k) = &f.keys[i];
                black_box(f.sealed.get_raw(&f.collections[*c], k).unwrap().unwrap());
            }
            let took = start.elapsed();
            record_time("get", size, "sealed", iters, took);
            took
        })
    });

    let per_collection = (records / COLLECTIONS) as u64;
    group.throughput(Throughput::Elements(per_collection));
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("scan_collection", "bare"), |b| {
        let mut rng = rand::rng();
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let c = &f.collections[rng.random_range(0..COLLECTIONS)];
                let mut n = 0u64;
                let prefix = layout_key(c.as_str(), "");
                for item in f.bare.scan_prefix(&prefix) {
                    black_box(item.unwrap());
                    n += 1;
                }
                assert_eq!(n, per_collection);
            }
            let took = start.elapsed();
            record_time("scan_collection", size, "bare", iters, took);
            took
        })
    });
    group.bench_function(BenchmarkId::new("scan_collection", "sealed"), |b| {
        let mut rng = rand::rng();
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let c = &f.collections[rng.random_range(0..COLLECTIONS)];
                let mut n = 0u64;
                for item in f.sealed.scan_collection(c) {
                    black_box(item.unwrap());
                    n += 1;
                }
                assert_eq!(n, per_collection);
            }
            let took = start.elapsed();
            record_time("scan_collection", size, "sealed", iters, took);
            took
        })
    });
    group.finish();
}

fn print_ratios(records: usize) {
    let totals = TOTALS.lock().unwrap();
    println!();
    println!("sealed vs bare sled, {records} records per size (throughput ratio = bare time / sealed time; targets: put >= 0.7, get >= 0.8, scan >= 0.7)");
    println!(
        "{:<22} {:>6} {:>14} {:>14} {:>7}",
        "operation", "size", "bare/op", "sealed/op", "ratio"
    );
    let ops: Vec<(String, usize)> = totals
        .keys()
        .map(|(op, size, _)| (op.clone(), *size))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for (op, size) in ops {
        if !seen.insert((op.clone(), size)) {
            continue;
        }
        let per_op = |side| {
            totals
                .get(&(op.clone(), size, side))
                .map(|(n, t)| t.as_secs_f64() / *n as f64)
        };
        if let (Some(bare), Some(sealed)) = (per_op("bare"), per_op("sealed")) {
            println!(
                "{:<22} {:>5}B {:>11.2} µs {:>11.2} µs {:>6.2}x",
                op,
                size,
                bare * 1e6,
                sealed * 1e6,
                bare / sealed
            );
        }
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
    c.final_summary();
    print_ratios(records);
}
