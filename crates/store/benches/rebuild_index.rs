//! What `SealedStore::rebuild_index` (`domicile store reindex`) costs: its time against one
//! bare pass over the same record entries (the read it cannot avoid), same run, and the peak
//! memory it adds per record, which is what sizing a repair of a large store needs.
//!
//! Workload: `DOMICILE_BENCH_RECORDS` records (default 300,000) of 64 bytes, of 10,000
//! subjects in 4 collections, written in durable batches of 1,000. Each round runs the bare
//! pass, then a rebuild: the first replaces the many lists the writes' journal folds left (a
//! fold writes a new list for each subject it names), the later ones one list per subject.
//! The memory is the growth of the process's resident high-water mark
//! (reset through `/proc/self/clear_refs`) over its resident size when the rebuild began: the
//! first round is what a `domicile store reindex` process adds; later rounds reuse what the
//! allocator kept from it. Last, on a copy of the store as the writes left it, every subject
//! is read (`scan_subject`) twice: the first read of a subject with sixteen lists or more
//! merges them into one, and the second reads that one, to show what the merge costs a read
//! and what it saves the next.
//!
//! Run: `cargo bench -p domicile-store --bench rebuild_index`

use std::sync::Arc;
use std::time::{Duration, Instant};

use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, Region, Subject, SubjectId};
use domicile_store::{Collection, FileCustodian, NewRecord, RecordKey, SealedStore};

/// The allocator the `domicile` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A field of `/proc/self/status` (`VmRSS`, `VmHWM`), in bytes.
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|v| v.trim_start_matches(':').trim().strip_suffix(" kB"))
                    .and_then(|kb| kb.trim().parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024)
}

/// Resets the resident high-water mark to the resident size now; false where it cannot.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

const SUBJECTS: usize = 10_000;
const COLLECTIONS: usize = 4;
const BATCH: usize = 1_000;
const ROUNDS: usize = 3;

fn main() {
    let records: usize = std::env::var("DOMICILE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).unwrap());
    let open = |data: &str| {
        SealedStore::open(
            dir.path().join(data),
            Region::parse("us").unwrap(),
            Arc::new(UsSplitPolicy::new()),
            custodian.clone(),
        )
        .unwrap()
    };
    let store = open("data");
    let subjects: Vec<SubjectId> = (0..SUBJECTS)
        .map(|i| {
            let s = Subject::parse(&format!("subject-{i}"), Some("US"), None).unwrap();
            store.register_subject(&s).unwrap();
            s.id
        })
        .collect();
    let collections: Vec<Collection> = (0..COLLECTIONS)
        .map(|i| Collection::parse(&format!("collection-{i}")).unwrap())
        .collect();
    let value = [7u8; 64];
    let filling = Instant::now();
    for start in (0..records).step_by(BATCH) {
        let keys: Vec<RecordKey> = (start..(start + BATCH).min(records))
            .map(|i| RecordKey::parse(&format!("record-{i:08}")).unwrap())
            .collect();
        let batch: Vec<NewRecord<'_>> = keys
            .iter()
            .enumerate()
            .map(|(j, key)| NewRecord {
                subject: &subjects[(start + j) % SUBJECTS],
                class: DataClass::Protected,
                collection: &collections[(start + j) % COLLECTIONS],
                key,
                value: &value,
            })
            .collect();
        store.put_batch(&batch).unwrap();
    }
    println!(
        "{records} records of {SUBJECTS} subjects written in {:.1} s",
        filling.elapsed().as_secs_f64()
    );

    // A copy of the store as the writes left it, for the reads: its files once flushed, with
    // nothing writing (what a crash would leave), while the store stays open and its cache
    // warm for the rebuilds.
    store.flush().unwrap();
    copy_dir(&dir.path().join("data"), &dir.path().join("data-reads"));

    let read_all = |store: &SealedStore| {
        let start = Instant::now();
        let mut found = 0;
        for id in &subjects {
            found += store.scan_subject(id).unwrap().len();
        }
        assert_eq!(found, records);
        start.elapsed()
    };
    let lists = |store: &SealedStore| store.backend().scan_prefix(b"i").count();

    let mut ratios = Vec::new();
    for round in 1..=ROUNDS {
        let start = Instant::now();
        let entries = store
            .backend()
            .scan_prefix(b"d")
            .map(|item| item.unwrap().1.len())
            .filter(|len| *len > 0)
            .count();
        let bare: Duration = start.elapsed();
        assert_eq!(entries, records);

        let peak_known = reset_peak();
        let before = status_bytes("VmRSS");
        let start = Instant::now();
        let rebuilt = store.rebuild_index().unwrap();
        let took = start.elapsed();
        let grown = status_bytes("VmHWM").saturating_sub(before);
        assert_eq!(rebuilt.records, records);
        let ratio = took.as_secs_f64() / bare.as_secs_f64();
        ratios.push(ratio);
        let memory = if peak_known {
            format!(
                "resident memory grew by {:.0} MB at most, {:.0} bytes a record",
                grown as f64 / 1e6,
                grown as f64 / records as f64
            )
        } else {
            "resident memory not measured here (no /proc/self/clear_refs)".to_owned()
        };
        println!(
            "round {round}: bare pass {:.0} ms, rebuild {:.0} ms ({ratio:.2}× the bare pass; {} \
             lists replaced by {}); {memory}",
            bare.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e3,
            rebuilt.lists_replaced,
            rebuilt.subjects,
        );
    }
    drop(store);
    let store = open("data-reads");
    // Every entry read once first, so that both timed reads find the copy's cache warm.
    let left = lists(&store);
    assert!(store.backend().scan_prefix(b"").count() > records);
    let first = read_all(&store);
    let merged = lists(&store);
    let second = read_all(&store);
    println!(
        "every subject read: {:.0} ms the first time, merging the {left} lists the writes left \
         into {merged}; {:.0} ms the second ({:.2}×)",
        first.as_secs_f64() * 1e3,
        second.as_secs_f64() * 1e3,
        first.as_secs_f64() / second.as_secs_f64()
    );
    ratios.sort_by(f64::total_cmp);
    println!(
        "rebuild_index: median {:.2}× the time of a bare pass over the same entries",
        ratios[ROUNDS / 2]
    );
}

/// Copies the files of directory `from` into a new directory `to`, recursively.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
