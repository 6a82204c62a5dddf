//! Gate reads (decide + durable audit entry + open) against bare `SealedStore::get_raw` on the
//! same records, with many concurrent callers so that the log's group commit batches their
//! entries into one fdatasync. Prints both throughputs and the ratio for each concurrency.
//!
//! Run with `cargo bench -p domicile-access --bench gate_reads`. Target: ratio ≥ 0.5.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domicile_access::{ApprovalBook, Gate, Principal, PrincipalKind, RecordRef, SystemClock};
use domicile_audit::{AuditKey, AuditLog, KeyKind, LogConfig, SigningKey};
use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, Subject, SubjectId};
use domicile_store::{Collection, FileCustodian, NewRecord, RecordKey, SealedStore};

const SUBJECTS: usize = 1_000;
const RECORDS_PER_SUBJECT: usize = 10;
const RUN: Duration = Duration::from_secs(3);

fn run(threads: usize, op: Arc<dyn Fn(usize) + Send + Sync>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, done, op) = (stop.clone(), done.clone(), op.clone());
            std::thread::spawn(move || {
                let mut i = t * 7919;
                while !stop.load(Ordering::Relaxed) {
                    op(i);
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("bench thread");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let us = Region::parse("us").expect("region");
    let custodian = Arc::new(FileCustodian::open(dir.path().join("keys")).expect("custodian"));
    let store = Arc::new(
        SealedStore::open(
            dir.path().join("data"),
            us.clone(),
            Arc::new(UsSplitPolicy::new()),
            custodian,
        )
        .expect("store"),
    );
    let collection = Collection::parse("profile").expect("collection");
    let value = vec![b'x'; 256];
    let mut refs = Vec::new();
    for s in 0..SUBJECTS {
        let subject = Subject::parse(&format!("user-{s}"), Some("US"), None).expect("subject");
        store.register_subject(&subject).expect("register");
        let keys: Vec<RecordKey> = (0..RECORDS_PER_SUBJECT)
            .map(|r| RecordKey::parse(&format!("user-{s}-{r}")).expect("key"))
            .collect();
        let batch: Vec<NewRecord<'_>> = keys
            .iter()
            .map(|key| NewRecord {
                subject: &subject.id,
                class: DataClass::Protected,
                collection: &collection,
                key,
                value: &value,
            })
            .collect();
        store.put_batch(&batch).expect("put");
        for key in keys {
            refs.push(RecordRef {
                subject: SubjectId::parse(&format!("user-{s}")).expect("id"),
                class: DataClass::Protected,
                collection: collection.clone(),
                key,
            });
        }
    }
    let signing = SigningKey::generate("audit.domicile.example/us", KeyKind::Ed25519).expect("key");
    // DOMICILE_BENCH_LOG_DIR puts the log elsewhere (a tmpfs, say, to see what fsync costs).
    let log_dir = std::env::var_os("DOMICILE_BENCH_LOG_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("data/us/audit"));
    let log = Arc::new(AuditLog::open(&log_dir, LogConfig::new(signing)).expect("log"));
    let gate = Arc::new(
        Gate::new(
            store.clone(),
            log,
            AuditKey::generate().expect("key"),
            ApprovalBook::in_memory(),
            Arc::new(SystemClock),
        )
        .expect("gate"),
    );
    let alice = Principal::parse(
        "spiffe://d/us/usds/alice",
        PrincipalKind::Person,
        ("usds", "US"),
        "US",
        "US",
        &["engineer"],
    )
    .expect("principal");
    gate.enrol(alice.clone()).expect("enrol");
    let purpose = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1");
    let refs = Arc::new(refs);
    println!(
        "{} records of 256 B; each run {} s",
        refs.len(),
        RUN.as_secs()
    );
    for threads in [64, 256, 1024] {
        let bare = {
            let (store, refs) = (store.clone(), refs.clone());
            run(
                threads,
                Arc::new(move |i| {
                    let r = &refs[i % refs.len()];
                    store
                        .get_raw(&r.collection, &r.key)
                        .expect("get")
                        .expect("present");
                }),
            )
        };
        let gated = {
            let (gate, refs, alice, purpose) =
                (gate.clone(), refs.clone(), alice.clone(), purpose.clone());
            run(
                threads,
                Arc::new(move |i| {
                    let r = &refs[i % refs.len()];
                    gate.read(&alice, &purpose, r, None).expect("gate read");
                }),
            )
        };
        println!(
            "{threads:>5} callers: bare get {bare:>9.0}/s, gate read {gated:>9.0}/s, ratio {:.2} (target >= 0.5)",
            gated / bare
        );
    }
}
