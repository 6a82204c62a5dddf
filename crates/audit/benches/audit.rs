//! Benchmarks of domicile-audit, each printed beside the baseline it must be compared with.
//!
//! ```text
//! cargo bench -p domicile-audit --bench audit            # full run, proofs at 1M and 10M
//! cargo bench -p domicile-audit --bench audit -- --quick # smaller, proofs at 1M only
//! ```
//!
//! 1. Durable append with group commit against a raw loop that writes the same bytes with the
//!    same number of write + fdatasync batches (the batching the log chose), with 1, 64 and
//!    1,024 appenders: blocking threads (`append`), tasks on a two-thread tokio runtime with
//!    one entry in flight each (`append_async`), and 64 tasks each keeping a window of entries
//!    in flight (`submit`, then awaiting the oldest ticket).
//! 2. The same appenders: entries/s, entries per fdatasync and p50/p99 time to receipt.
//! 3. Offline verify against the bare SHA-256 leaf hashing of the same entries.
//! 4. Inclusion and consistency proof time at 1M and 10M entries.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use domicile_audit::merkle::{leaf_hash, MerkleTree};
use domicile_audit::{
    doc_example_entry, for_each_entry, verify, AuditLog, Entry, KeyKind, LogConfig, LogStats,
    SigningKey, Ticket,
};

/// The appenders run on mimalloc, the allocator of the `domicile` binary, whose `serve` runs the
/// region node that appends through the Gate (the raw write + fdatasync loops allocate nothing per
/// write either way).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn key() -> SigningKey {
    SigningKey::from_seed("bench.example/us", KeyKind::Ed25519, [3; 32]).expect("key")
}

/// The `n` entries of appender `tag`, each built just before it is appended (from a copy of
/// the template, as the Gate builds its entry per call), so that an appender works on an entry
/// in its cache and frees it on its own thread, not on one built long before by another.
fn entries(n: usize, tag: usize) -> impl Iterator<Item = Entry> {
    let base = doc_example_entry().expect("entry");
    (0..n).map(move |i| {
        let mut e = base.clone();
        e.time_ms += i as u64;
        e.request_id = format!("req-{tag}-{i:08}");
        e
    })
}

struct AppendRun {
    secs: f64,
    stats: LogStats,
    latencies: Vec<Duration>,
}

/// Who appends, and how.
#[derive(Clone, Copy, Debug)]
enum Appenders {
    /// Blocking threads calling `append`, one entry in flight each.
    Threads(usize),
    /// Tasks on a two-thread tokio runtime, each keeping `window` entries in flight
    /// (`append_async` when 1; `submit` and awaiting the oldest ticket otherwise); `gather`:
    /// whether the writer gathers batches (`LogConfig::max_gather`, on by default).
    Tasks {
        tasks: usize,
        window: usize,
        gather: bool,
    },
}

impl Appenders {
    fn label(self) -> String {
        match self {
            Appenders::Threads(n) => format!("{n:>4} blocking threads (append)"),
            Appenders::Tasks {
                tasks,
                window,
                gather,
            } => format!(
                "{tasks:>4} async tasks, {window} in flight each ({}{})",
                if window == 1 {
                    "append_async"
                } else {
                    "submit + tickets"
                },
                if gather { "" } else { ", no gathering" }
            ),
        }
    }
}

fn bench_config(who: Appenders) -> LogConfig {
    let mut config = LogConfig::new(key());
    if let Appenders::Tasks { gather: false, .. } = who {
        config.max_gather = None;
    }
    // Checkpoints are timed separately; here only entries are made durable.
    config.checkpoint_every = 0;
    config.checkpoint_interval = None;
    config.segment_bytes = 1 << 40;
    config
}

/// `who` appends `per_appender` entries each into a fresh log in `dir`.
fn durable_appends(dir: &std::path::Path, who: Appenders, per_appender: usize) -> AppendRun {
    let log = Arc::new(AuditLog::open(dir, bench_config(who)).expect("open"));
    let (secs, latencies) = match who {
        Appenders::Threads(n) => thread_appends(&log, n, per_appender),
        Appenders::Tasks { tasks, window, .. } => task_appends(&log, tasks, window, per_appender),
    };
    let stats = log.stats();
    let log = Arc::into_inner(log).expect("appenders done");
    log.close().expect("close");
    AppendRun {
        secs,
        stats,
        latencies,
    }
}

fn thread_appends(log: &Arc<AuditLog>, threads: usize, per_thread: usize) -> (f64, Vec<Duration>) {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(log);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(per_thread);
                barrier.wait();
                for e in entries(per_thread, t) {
                    let t0 = Instant::now();
                    log.append(e).expect("append");
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.join().expect("appender"));
    }
    (start.elapsed().as_secs_f64(), latencies)
}

fn task_appends(
    log: &Arc<AuditLog>,
    tasks: usize,
    window: usize,
    per_task: usize,
) -> (f64, Vec<Duration>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let log = Arc::clone(log);
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(per_task);
                    if window == 1 {
                        for e in entries(per_task, t) {
                            let t0 = Instant::now();
                            log.append_async(e).await.expect("append");
                            lat.push(t0.elapsed());
                        }
                        return lat;
                    }
                    let mut in_flight: VecDeque<(Instant, Ticket)> =
                        VecDeque::with_capacity(window);
                    for e in entries(per_task, t) {
                        if in_flight.len() == window {
                            let (t0, ticket) = in_flight.pop_front().expect("full");
                            ticket.await.expect("append");
                            lat.push(t0.elapsed());
                        }
                        in_flight.push_back((Instant::now(), log.submit(e).expect("submit")));
                    }
                    for (t0, ticket) in in_flight {
                        ticket.await.expect("append");
                        lat.push(t0.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for h in handles {
            latencies.extend(h.await.expect("task"));
        }
        (start.elapsed().as_secs_f64(), latencies)
    })
}

/// The baseline: the same bytes in the same number of write + fdatasync batches.
fn raw_loop(dir: &std::path::Path, bytes: u64, batches: u64) -> f64 {
    let chunk = vec![0x5au8; (bytes / batches.max(1)) as usize];
    let mut f = File::create(dir.join("raw.seg")).expect("raw file");
    let start = Instant::now();
    for _ in 0..batches {
        f.write_all(&chunk).expect("write");
        f.sync_data().expect("fdatasync");
    }
    start.elapsed().as_secs_f64()
}

/// User and system CPU time of this process so far, in seconds (from `/proc/self/stat`; 0
/// where there is none).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; clock ticks
    // are 100 a second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// The machine's load average, to print beside the numbers it weighs on.
fn load() -> String {
    let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "load average (1, 5, 15 min): {}",
        avg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// Runs log and raw back to back, `rounds` times. The disk and the machine are shared, so the
/// ratio is taken within each pair (same weather) and the median pair ratio is reported.
fn bench_append(
    who: Appenders,
    per_appender: usize,
    rounds: usize,
    target: Option<f64>,
) -> tempfile::TempDir {
    let mut log_rates = Vec::new();
    let mut raw_rates = Vec::new();
    let mut ratios = Vec::new();
    let mut last = None;
    let mut lat = Vec::new();
    let mut batches = 0;
    let mut entries = 0;
    let mut secs = 0.0;
    let mut writing = Duration::ZERO;
    let mut previous: Option<(u64, u64)> = None;
    for round in 0..rounds {
        // The raw loop runs before the log in every other round (with the previous round's
        // bytes and batches), so that neither side always meets the disk the other left.
        let raw_first = match previous {
            Some((bytes, batches)) if round % 2 == 1 => {
                let raw_dir = tempfile::tempdir().expect("tempdir");
                Some(raw_loop(raw_dir.path(), bytes, batches))
            }
            _ => None,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let run = durable_appends(dir.path(), who, per_appender);
        previous = Some((run.stats.bytes, run.stats.batches));
        let raw = match raw_first {
            Some(secs) => secs,
            None => {
                let raw_dir = tempfile::tempdir().expect("tempdir");
                raw_loop(raw_dir.path(), run.stats.bytes, run.stats.batches)
            }
        };
        let n = run.stats.entries as f64;
        log_rates.push(n / run.secs);
        raw_rates.push(n / raw);
        ratios.push(raw / run.secs);

        lat.extend(run.latencies);
        batches += run.stats.batches;
        entries += run.stats.entries;
        secs += run.secs;
        writing += run.stats.write_time;
        last = Some(dir);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    lat.sort();
    let rate = median(&mut log_rates);
    println!(
        "durable append, {}: {rate:>9.0} entries/s (median of {rounds} runs; {:.1} entries per fdatasync batch){}",
        who.label(),
        entries as f64 / batches as f64,
        match target {
            Some(t) => format!(" (target >= {t:.0}/s: {})", if rate >= t { "met" } else { "NOT met" }),
            None => String::new(),
        }
    );
    let per_batch = entries as f64 / batches as f64;
    let raw_rate = median(&mut raw_rates);
    println!(
        "  raw write+fdatasync loop, same bytes and batches: {raw_rate:>9.0} entries/s ({:.2} ms per write+fdatasync)  -> log/raw = {:.2}x, median of paired runs (target >= 0.8x)",
        1e3 * per_batch / raw_rate,
        median(&mut ratios)
    );
    println!(
        "  one commit every {:.3} ms, of which its write + fdatasync {:.3} ms",
        1e3 * secs / batches as f64,
        1e3 * writing.as_secs_f64() / batches as f64,
    );
    println!(
        "  time to receipt: p50 {:?}, p99 {:?}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99)
    );
    last.expect("at least one round")
}

/// Gathering on and off, alternated round by round (same weather), for `tasks` async appenders
/// with one entry in flight each: the median of each and of the paired ratios.
fn bench_gather(tasks: usize, per_task: usize, rounds: usize) {
    let mut on = Vec::new();
    let mut off = Vec::new();
    let mut ratios = Vec::new();
    let mut per_sync = (0.0, 0.0);
    for _ in 0..rounds {
        let rate = |gather: bool| {
            let dir = tempfile::tempdir().expect("tempdir");
            let who = Appenders::Tasks {
                tasks,
                window: 1,
                gather,
            };
            let run = durable_appends(dir.path(), who, per_task);
            let batch = run.stats.entries as f64 / run.stats.batches as f64;
            (run.stats.entries as f64 / run.secs, batch)
        };
        let (a, batch_on) = rate(true);
        let (b, batch_off) = rate(false);
        on.push(a);
        off.push(b);
        ratios.push(a / b);
        per_sync.0 += batch_on / rounds as f64;
        per_sync.1 += batch_off / rounds as f64;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "gathering, {tasks:>4} async tasks, 1 in flight each: on {:>9.0} entries/s ({:.1} per fdatasync), off {:>9.0} entries/s ({:.1} per fdatasync); on/off = {:.2}x, median of {rounds} paired runs",
        median(&mut on),
        per_sync.0,
        median(&mut off),
        per_sync.1,
        median(&mut ratios)
    );
}

/// The same appender runs on tmpfs, where fdatasync costs next to nothing: what the log's own
/// work (encoding, hashing, framing, waking appenders) allows on this machine.
fn cpu_ceiling(who: Appenders, per_appender: usize) {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        println!("cpu ceiling: skipped, no /dev/shm");
        return;
    }
    let dir = tempfile::tempdir_in(shm).expect("tempdir");
    let run = durable_appends(dir.path(), who, per_appender);
    let mut lat = run.latencies;
    lat.sort();
    println!(
        "{} on tmpfs (fdatasync ~free, the log's CPU ceiling): {:>9.0} entries/s, {:.1} entries/batch, p50 {:?}, p99 {:?}",
        who.label(),
        run.stats.entries as f64 / run.secs,
        run.stats.entries as f64 / run.stats.batches as f64,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}

fn bench_verify(entries_per_thread: usize) {
    // Built on tmpfs when there is one (it only has to be quick to write); verify reads it from
    // memory either way, as it would a log already in the page cache.
    let shm = std::path::Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let dir = tmp.path();
    drop(durable_appends(
        dir,
        Appenders::Tasks {
            tasks: 64,
            window: 16,
            gather: true,
        },
        entries_per_thread,
    ));
    // Sign the checkpoint the timed run skipped.
    let log = AuditLog::open(dir, LogConfig::new(key())).expect("reopen");
    log.close().expect("checkpoint");
    drop(log);
    let vkey = key().verifier();
    // Warm the page cache so both sides read from memory.
    let mut leaves: Vec<Vec<u8>> = Vec::new();
    for_each_entry(dir, &mut |_, _| {}, |_, b, _| {
        leaves.push(b.to_vec());
        Ok(())
    })
    .expect("read");
    // The median of five runs (the first also starts verify's worker threads), and the CPU
    // time they took over all threads: on a shared machine the wall time says how much of the
    // cores the run was given, the CPU time what verifying costs.
    let mut times = Vec::new();
    let mut report = None;
    let cpu_before = cpu_seconds();
    for _ in 0..5 {
        let start = Instant::now();
        report = Some(verify(dir, &vkey, None, &mut |_, _| {}).expect("verify"));
        times.push(start.elapsed().as_secs_f64());
    }
    let cpu = (cpu_seconds() - cpu_before) / 5.0;
    times.sort_by(f64::total_cmp);
    let secs = times[times.len() / 2];
    let report = report.expect("verified");
    let start = Instant::now();
    let bare_cpu_before = cpu_seconds();
    let mut x = 0u8;
    for _ in 0..5 {
        for l in &leaves {
            x ^= leaf_hash(l)[0];
        }
    }
    let bare_cpu = (cpu_seconds() - bare_cpu_before) / 5.0;
    let bare = start.elapsed().as_secs_f64() / 5.0;
    std::hint::black_box(x);
    let start = Instant::now();
    for l in &leaves {
        std::hint::black_box(Entry::from_canonical(l).expect("decode"));
    }
    let decode = start.elapsed().as_secs_f64();
    let n = report.entries as f64;
    let avg = leaves.iter().map(Vec::len).sum::<usize>() as f64 / n;
    println!(
        "verify: {:>10.0} entries/s over {} entries of {avg:.0} bytes, median of 5 (framing, canonical check, tree, signatures; target >= 2M/s)",
        n / secs,
        report.entries
    );
    println!(
        "  CPU time per entry, all threads: {:.2} µs ({:.1} cores busy on average while verifying; bare hashing {:.2} µs): {:.1}M entries/s if given two cores",
        cpu / n * 1e6,
        cpu / secs,
        bare_cpu / n * 1e6,
        2.0 * n / cpu / 1e6
    );
    println!(
        "  bare SHA-256 leaf hashing of the same entries: {:>10.0} entries/s -> verify/bare = {:.2}x",
        n / bare,
        bare / secs
    );
    println!(
        "  (decoding every entry into an Entry, one thread: {:>10.0} entries/s; verify checks without building entries, on {} threads)",
        n / decode,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}

fn bench_proofs(size: u64) {
    let start = Instant::now();
    let tree = MerkleTree::from_leaf_hashes((0..size).map(|i| leaf_hash(&i.to_be_bytes())));
    let build = start.elapsed();
    // A cheap deterministic generator for the sample positions.
    let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ size;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let samples = 20_000;
    let mut incl = Vec::with_capacity(samples);
    let mut cons = Vec::with_capacity(samples);
    let mut sink = 0usize;
    for _ in 0..samples {
        let n = size - next() % (size / 4);
        let i = next() % n;
        let t0 = Instant::now();
        sink += tree.inclusion_proof(i, n).expect("inclusion").len();
        incl.push(t0.elapsed());
        let m = 1 + next() % (n - 1);
        let t0 = Instant::now();
        sink += tree.consistency_proof(m, n).expect("consistency").len();
        cons.push(t0.elapsed());
    }
    std::hint::black_box(sink);
    incl.sort();
    cons.sort();
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
    println!(
        "proofs at {size} entries (tree built in {build:.1?}, {} MB of hashes):",
        size * 64 / 1_000_000
    );
    println!(
        "  inclusion:   median {:?}, mean {:?}, p99 {:?}   (target <= 50 µs)",
        percentile(&incl, 0.5),
        mean(&incl),
        percentile(&incl, 0.99)
    );
    println!(
        "  consistency: median {:?}, mean {:?}, p99 {:?}   (target <= 50 µs)",
        percentile(&cons, 0.5),
        mean(&cons),
        percentile(&cons, 0.99)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        // `cargo bench -- --list` and test discovery: nothing to list.
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // `--only NAME` runs one part (ceiling, append1, append64, append64w, append1024, gather,
    // verify, proofs),
    // for profiling it: `perf record -g target/release/deps/audit-* --quick --only append1024`.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    println!(
        "domicile-audit benches{}",
        if quick { " (quick)" } else { "" }
    );
    let rounds = if quick { 5 } else { 9 };
    println!("{}", load());
    let tasks = |tasks, window| Appenders::Tasks {
        tasks,
        window,
        gather: true,
    };
    let ungathered = |tasks| Appenders::Tasks {
        tasks,
        window: 1,
        gather: false,
    };
    if run("ceiling") {
        cpu_ceiling(Appenders::Threads(64), if quick { 1_000 } else { 3_000 });
        cpu_ceiling(Appenders::Threads(1024), if quick { 100 } else { 300 });
        cpu_ceiling(tasks(64, 1), if quick { 1_000 } else { 3_000 });
        cpu_ceiling(tasks(1024, 1), if quick { 100 } else { 300 });
        cpu_ceiling(ungathered(1024), if quick { 100 } else { 300 });
    }
    if run("append1") {
        drop(bench_append(Appenders::Threads(1), 1_000, rounds, None));
        drop(bench_append(tasks(1, 1), 1_000, rounds, None));
    }
    let (n64, n1024) = if quick { (300, 60) } else { (1_000, 200) };
    if run("append64") {
        drop(bench_append(
            Appenders::Threads(64),
            n64,
            rounds,
            Some(250_000.0),
        ));
        drop(bench_append(tasks(64, 1), n64, rounds, Some(250_000.0)));
        drop(bench_append(ungathered(64), n64, rounds, Some(250_000.0)));
    }
    if run("append64w") {
        drop(bench_append(
            tasks(64, 16),
            n64 * 4,
            rounds,
            Some(250_000.0),
        ));
    }
    if run("append1024") {
        drop(bench_append(
            Appenders::Threads(1024),
            n1024,
            rounds,
            Some(500_000.0),
        ));
        // Above 128 entries in flight the writer does not gather: no "no gathering" twin.
        drop(bench_append(tasks(1024, 1), n1024, rounds, Some(500_000.0)));
    }
    if run("gather") {
        bench_gather(64, n64, rounds);
        // The most in flight for which the writer still gathers.
        bench_gather(128, n64, rounds);
    }
    println!("{}", load());
    if run("verify") {
        bench_verify(if quick { 4_000 } else { 16_000 });
    }
    if run("proofs") {
        bench_proofs(1 << 20);
        if !quick {
            bench_proofs(10_000_000);
        }
    }
}
