//! Crash test: a child process appends from many threads and is killed with SIGKILL at a
//! random moment. Every entry it was given a receipt for must be in the log after reopening,
//! at the position and with the leaf hash of its receipt, and `verify` must pass.
//!
//! The child is this test binary itself, re-run with `AUDIT_CRASH_CHILD` set to the log
//! directory; it prints one `ACK <seq> <leaf hash>` line per receipt. With `AUDIT_CRASH_ASYNC`
//! set, its appenders are tasks on a two-thread runtime using `append_async`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domicile_audit::merkle::{hex, verify_inclusion};
use domicile_audit::{doc_example_entry, verify, AuditLog, KeyKind, LogConfig, SigningKey};

const CHILD_ENV: &str = "AUDIT_CRASH_CHILD";
const ASYNC_ENV: &str = "AUDIT_CRASH_ASYNC";

fn key() -> SigningKey {
    SigningKey::from_seed("audit.example/crash", KeyKind::Ed25519, [8; 32]).unwrap()
}

fn config() -> LogConfig {
    let mut c = LogConfig::new(key());
    c.checkpoint_every = 50;
    c.checkpoint_interval = Some(Duration::from_millis(20));
    c.segment_bytes = 64 << 10; // many segment rotations, so kills land in them too
    c
}

/// The child's body. Runs only when re-executed by the parent.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let log = Arc::new(AuditLog::open(&dir, config()).unwrap());
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    if std::env::var_os(ASYNC_ENV).is_some() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            let tasks: Vec<_> = (0..64)
                .map(|t| {
                    let (log, out) = (Arc::clone(&log), Arc::clone(&out));
                    tokio::spawn(async move {
                        for i in 0.. {
                            let mut e = doc_example_entry().unwrap();
                            e.request_id = format!("a{t}-{i}");
                            let r = log.append_async(e).await.unwrap();
                            let mut o = out.lock().unwrap();
                            writeln!(o, "ACK {} {}", r.seq, hex(&r.leaf_hash)).unwrap();
                            o.flush().unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
        });
        return;
    }
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let log = Arc::clone(&log);
            let out = Arc::clone(&out);
            std::thread::spawn(move || {
                for i in 0.. {
                    let mut e = doc_example_entry().unwrap();
                    e.request_id = format!("t{t}-{i}");
                    let r = log.append(e).unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {} {}", r.seq, hex(&r.leaf_hash)).unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn run_round(dir: &Path, round: u64, tasks: bool) -> Vec<(u64, String)> {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(exe);
    if tasks {
        command.env(ASYNC_ENV, "1");
    }
    let mut child = command
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // Kill after a varying number of receipts (or a time limit, if the child is slow).
    let target = 300 + round * 257 % 900;
    let started = Instant::now();
    let mut acked = Vec::new();
    while (acked.len() as u64) < target && started.elapsed() < Duration::from_secs(10) {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.strip_prefix("ACK ") {
                    let (seq, hash) = rest.split_once(' ').unwrap();
                    acked.push((seq.parse().unwrap(), hash.to_owned()));
                }
            }
            _ => break,
        }
    }
    // SIGKILL: no destructors, no final checkpoint, writes cut wherever they were.
    child.kill().unwrap();
    // Receipts printed before the kill are still in the pipe.
    for line in lines.map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("ACK ") {
            if let Some((seq, hash)) = rest.split_once(' ') {
                if hash.len() == 64 {
                    acked.push((seq.parse().unwrap(), hash.to_owned()));
                }
            }
        }
    }
    child.wait().unwrap();
    acked
}

#[test]
fn sigkill_during_concurrent_appends_loses_no_receipted_entry() {
    sigkill_rounds(false);
}

#[test]
fn sigkill_during_async_appends_loses_no_receipted_entry() {
    sigkill_rounds(true);
}

/// Five rounds of a child appending (from threads, or from `tasks`) killed mid-flight, each
/// checked against the reopened log.
fn sigkill_rounds(tasks: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut total_acked = 0;
    for round in 0..5 {
        let acked = run_round(dir.path(), round, tasks);
        assert!(
            !acked.is_empty(),
            "round {round}: the child acknowledged nothing"
        );
        total_acked += acked.len();

        let log = AuditLog::open(dir.path(), config()).unwrap();
        let size = log.size();
        let root = log.root();
        eprintln!(
            "round {round}: {} receipts, {size} entries after reopen, {:?}",
            acked.len(),
            log.open_report()
        );
        for (seq, hash) in &acked {
            assert!(
                *seq < size,
                "round {round}: receipted entry {seq} is missing (size {size})"
            );
            let proof = log.prove_inclusion(*seq, size).unwrap();
            let mut leaf = [0u8; 32];
            for (i, b) in leaf.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hash[2 * i..2 * i + 2], 16).unwrap();
            }
            verify_inclusion(&leaf, *seq, size, &proof, &root)
                .unwrap_or_else(|e| panic!("round {round}: entry {seq}: {e}"));
        }
        log.close().unwrap();
        drop(log);
        let report = verify(dir.path(), &key().verifier(), None, &mut |_, _| {}).unwrap();
        assert_eq!(report.entries, size);
    }
    assert!(
        total_acked > 1000,
        "only {total_acked} receipts over all rounds"
    );
}
