//! The key custodian's batches against bare redb inserts of the same entries, same run; prints
//! the ratio and the bytes each side wrote.
//!
//! Workload: `DOMICILE_BENCH_KEY_BATCHES` batches (default 57, the demo's ingest) of 1,000 new
//! subjects. The custodian side is `FileCustodian::create_data_keys`: a pseudonym (HMAC), a fresh
//! key and its wrap (AES-256-GCM) per subject, one durable commit per batch, written as one
//! pending row and folded into the table by pseudonym 65,536 entries at a time. The bare side is
//! what a commit did before: one redb transaction per batch inserting the same number of
//! entries of the same size under random 16-byte keys, `Durability::Immediate`. Each side starts
//! from an empty directory; the rounds alternate the sides.
//!
//! Run: `cargo bench -p domicile-store --bench key_batches`

use std::time::{Duration, Instant};

use domicile_residency::{Region, SubjectId};
use domicile_store::{FileCustodian, KeyCustodian};
use rand::RngCore;

/// Both sides run on mimalloc, the allocator the `domicile` binary and the demo use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 1_000;
/// A live data key entry's size for an id like `user-12-345` (see `docs/storage.md`).
const ENTRY: usize = 86;
const ROUNDS: usize = 3;

/// Bytes this process has caused to be written to storage so far (`/proc/self/io`).
fn written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes: ").map(str::to_owned))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn custodian(batches: usize) -> (Duration, u64) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let region = Region::parse("global").unwrap();
    let ids: Vec<Vec<SubjectId>> = (0..batches)
        .map(|b| {
            (0..BATCH)
                .map(|i| SubjectId::parse(&format!("user-{b}-{i}")).unwrap())
                .collect()
        })
        .collect();
    let before = written();
    let start = Instant::now();
    {
        let custodian = FileCustodian::open(dir.path()).unwrap();
        for batch in &ids {
            custodian.create_data_keys(&region, batch).unwrap();
        }
        // Closing folds what is pending: counted, as a process that stops pays it.
    }
    (start.elapsed(), written() - before)
}

fn bare(batches: usize) -> (Duration, u64) {
    const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("data_keys");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut rng = rand::rng();
    let batches: Vec<Vec<([u8; 16], [u8; ENTRY])>> = (0..batches)
        .map(|_| {
            (0..BATCH)
                .map(|_| {
                    let mut k = [0u8; 16];
                    let mut v = [0u8; ENTRY];
                    rng.fill_bytes(&mut k);
                    rng.fill_bytes(&mut v);
                    (k, v)
                })
                .collect()
        })
        .collect();
    let before = written();
    let start = Instant::now();
    {
        let db = redb::Database::create(dir.path().join("datakeys.redb")).unwrap();
        for batch in &batches {
            let mut txn = db.begin_write().unwrap();
            txn.set_durability(redb::Durability::Immediate);
            {
                let mut table = txn.open_table(TABLE).unwrap();
                for (k, v) in batch {
                    table.insert(k.as_slice(), v.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
    }
    (start.elapsed(), written() - before)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter or other flags are not used here.
    let batches: usize = std::env::var("DOMICILE_BENCH_KEY_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(57);
    println!("{batches} batches of {BATCH} new subjects, {ROUNDS} rounds, sides alternating");
    println!(
        "{:<6} {:>12} {:>12} {:>12} {:>12} {:>7}",
        "round", "bare", "bare MB", "custodian", "cust. MB", "ratio"
    );
    let (mut bare_total, mut cust_total) = (Duration::ZERO, Duration::ZERO);
    for round in 1..=ROUNDS {
        let (b, b_bytes) = bare(batches);
        let (c, c_bytes) = custodian(batches);
        bare_total += b;
        cust_total += c;
        println!(
            "{round:<6} {:>10.3} s {:>12.1} {:>10.3} s {:>12.1} {:>6.2}x",
            b.as_secs_f64(),
            b_bytes as f64 / 1e6,
            c.as_secs_f64(),
            c_bytes as f64 / 1e6,
            b.as_secs_f64() / c.as_secs_f64()
        );
    }
    println!(
        "all    {:>10.3} s {:>12} {:>10.3} s {:>12} {:>6.2}x  (throughput ratio: bare time / custodian time)",
        bare_total.as_secs_f64(),
        "",
        cust_total.as_secs_f64(),
        "",
        bare_total.as_secs_f64() / cust_total.as_secs_f64()
    );
}
