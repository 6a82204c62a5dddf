//! Gate reads (decide + durable audit entry + open) against bare `SealedStore::get_raw` (a
//! sealed get: the backend read and the record opened) on the same records, with many
//! concurrent callers so that the log's group commit batches their entries into one fdatasync.
//! Prints both throughputs, the ratio and p50/p99 latency for each concurrency, with the log on
//! the same disk as the store: blocking callers (`Gate::read`, one thread each) and async
//! callers (`Gate::read_async`, tasks on a two-thread tokio runtime, one read in flight each).
//!
//! ```text
//! cargo bench -p domicile-access --bench gate_reads                 # 64 and 1,024 callers
//! cargo bench -p domicile-access --bench gate_reads -- --profile 10  # one caller, 10 s, for perf
//! cargo bench -p domicile-access --bench gate_reads -- --profile-async 10  # 1,024 async callers
//! ```
//!
//! Target: with 1,024 callers, gate reads >= 0.2x bare sealed gets.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domicile_access::{ApprovalBook, Gate, Principal, PrincipalKind, RecordRef, SystemClock};
use domicile_audit::{AuditKey, AuditLog, KeyKind, LogConfig, SigningKey};
use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, Subject, SubjectId};
use domicile_store::{Collection, FileCustodian, NewRecord, RecordKey, SealedStore};

/// Both sides run on mimalloc, the allocator of the `domicile` binary, whose `serve` runs the
/// region node that calls `Gate::read_async`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SUBJECTS: usize = 1_000;
const RECORDS_PER_SUBJECT: usize = 10;
const RUN: Duration = Duration::from_secs(3);

/// What a run measured: operations per second and every operation's latency, sorted.
struct Run {
    rate: f64,
    latencies: Vec<Duration>,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        self.latencies
            .get(((self.latencies.len().saturating_sub(1)) as f64 * p) as usize)
            .copied()
            .unwrap_or_default()
    }
}

fn run(threads: usize, length: Duration, op: Arc<dyn Fn(usize) + Send + Sync>) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, done, op) = (stop.clone(), done.clone(), op.clone());
            std::thread::spawn(move || {
                let mut i = t * 7919;
                let mut latencies = Vec::with_capacity(4096);
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    op(i);
                    latencies.push(t0.elapsed());
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    std::thread::sleep(length);
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.join().expect("bench thread"));
    }
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Run { rate, latencies }
}

/// `tasks` async callers on a two-thread tokio runtime, each running `op` in a loop for
/// `length`, one call in flight each.
fn run_async<F, Fut>(tasks: usize, length: Duration, op: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (stop, done, op) = (stop.clone(), done.clone(), op.clone());
                tokio::spawn(async move {
                    let mut i = t * 7919;
                    let mut latencies = Vec::with_capacity(4096);
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        op(i).await;
                        latencies.push(t0.elapsed());
                        i += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies
                })
            })
            .collect();
        tokio::time::sleep(length).await;
        stop.store(true, Ordering::Relaxed);
        let mut latencies = Vec::new();
        for h in handles {
            latencies.extend(h.await.expect("bench task"));
        }
        let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
        latencies.sort_unstable();
        Run { rate, latencies }
    })
}

/// What an async caller reads with, shared by every task (one `Arc` clone per read).
struct Reader {
    gate: Arc<Gate>,
    refs: Arc<Vec<RecordRef>>,
    who: Principal,
    purpose: Purpose,
}

/// An async caller's read of record `i` (modulo the records) through `Gate::read_async`.
fn async_reader(
    ctx: &Arc<Reader>,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
       + Send
       + Sync
       + 'static {
    let ctx = Arc::clone(ctx);
    move |i| {
        let ctx = Arc::clone(&ctx);
        Box::pin(async move {
            let r = &ctx.refs[i % ctx.refs.len()];
            ctx.gate
                .read_async(&ctx.who, &ctx.purpose, r, None)
                .await
                .expect("gate read");
        })
    }
}

/// The machine's load average, to print beside the numbers it weighs on.
fn load() -> String {
    let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "load average (1, 5, 15 min): {}",
        avg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
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
    let ctx = Arc::new(Reader {
        gate: gate.clone(),
        refs: refs.clone(),
        who: alice.clone(),
        purpose: purpose.clone(),
    });
    let args: Vec<String> = std::env::args().collect();
    if let Some(secs) = args
        .iter()
        .position(|a| a == "--profile")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse::<u64>().ok())
    {
        // One caller reading through the Gate for `secs`: what one read costs, for a profiler.
        let r = run(
            1,
            Duration::from_secs(secs),
            Arc::new(move |i| {
                let r = &refs[i % refs.len()];
                gate.read(&alice, &purpose, r, None).expect("gate read");
            }),
        );
        println!(
            "one caller, {secs} s: {:.0} gate reads/s, p50 {:?}, p99 {:?}",
            r.rate,
            r.percentile(0.5),
            r.percentile(0.99)
        );
        return;
    }
    if let Some(secs) = args
        .iter()
        .position(|a| a == "--profile-async")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse::<u64>().ok())
    {
        // 1,024 async callers for `secs`: where the CPU goes when the log is not the bound.
        let r = run_async(1024, Duration::from_secs(secs), async_reader(&ctx));
        println!(
            "1,024 async callers, {secs} s: {:.0} gate reads/s, p50 {:?}, p99 {:?}",
            r.rate,
            r.percentile(0.5),
            r.percentile(0.99)
        );
        return;
    }
    println!(
        "{} records of 256 B; each run {} s; {}",
        refs.len(),
        RUN.as_secs(),
        load()
    );
    for threads in [64, 1024] {
        let bare = {
            let (store, refs) = (store.clone(), refs.clone());
            run(
                threads,
                RUN,
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
                RUN,
                Arc::new(move |i| {
                    let r = &refs[i % refs.len()];
                    gate.read(&alice, &purpose, r, None).expect("gate read");
                }),
            )
        };
        let gated_async = { run_async(threads, RUN, async_reader(&ctx)) };
        println!(
            "{threads:>5} callers: bare sealed get {:>9.0}/s (p50 {:?}, p99 {:?})",
            bare.rate,
            bare.percentile(0.5),
            bare.percentile(0.99),
        );
        for (how, gated) in [
            ("blocking threads, Gate::read", &gated),
            ("async tasks, Gate::read_async", &gated_async),
        ] {
            let ratio = gated.rate / bare.rate;
            println!(
                "       gate read, {how:<30} {:>9.0}/s (p50 {:?}, p99 {:?}); ratio to bare {ratio:.3}{}",
                gated.rate,
                gated.percentile(0.5),
                gated.percentile(0.99),
                if threads == 1024 {
                    format!(" (target >= 0.2: {})", if ratio >= 0.2 { "met" } else { "NOT met" })
                } else {
                    String::new()
                }
            );
        }
    }
    println!("{}", load());
}
