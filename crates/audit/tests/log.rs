//! The log on real files: group commit, restarts, torn tails, truncation, fail-closed appends,
//! witnesses and offline proofs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use domicile_audit::merkle::{verify_consistency, verify_inclusion};
use domicile_audit::{
    doc_example_entry, prove, stored_checkpoints, verify, AuditError, AuditLog, Checkpoint, Entry,
    InclusionProof, KeyKind, LogConfig, SigningKey, VerifierKey, Witness, WitnessPolicy,
};

fn key() -> SigningKey {
    SigningKey::from_seed("audit.example/us", KeyKind::Ed25519, [1; 32]).unwrap()
}

fn entry(i: u64) -> Entry {
    let mut e = doc_example_entry().unwrap();
    e.time_ms += i;
    e.request_id = format!("req-{i}");
    e
}

fn config() -> LogConfig {
    let mut c = LogConfig::new(key());
    c.checkpoint_every = 7;
    c.checkpoint_interval = None;
    c
}

fn check(dir: &Path) -> Result<domicile_audit::VerifyReport, AuditError> {
    verify(dir, &key().verifier(), None, &mut |_, _| {})
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// A log of five entries, closed, and its last segment.
fn closed_log_of_five() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config()).unwrap();
    for i in 0..5 {
        log.append(entry(i)).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let seg = segments(dir.path()).pop().unwrap();
    (dir, seg)
}

/// Byte offsets of each frame in a segment file.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 16;
    while pos + 12 <= bytes.len() {
        out.push(pos);
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 12 + len;
    }
    out
}

#[test]
fn concurrent_appends_get_distinct_receipts_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path(), config()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| log.append(entry(t * 1000 + i)).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut receipts: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    receipts.sort_by_key(|r| r.seq);
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (0..800).collect::<Vec<_>>()
    );
    log.close().unwrap();
    let report = check(dir.path()).unwrap();
    assert_eq!(report.entries, 800);
    assert_eq!(report.root, log.root());
    assert!(report.checkpoints > 1);

    // Every receipt's leaf hash is provably in the final tree.
    let root = log.root();
    for r in receipts.iter().step_by(37) {
        let proof = log.prove_inclusion(r.seq, 800).unwrap();
        verify_inclusion(&r.leaf_hash, r.seq, 800, &proof, &root).unwrap();
    }
    // And every stored checkpoint is consistent with every later one.
    let cps: Vec<Checkpoint> = stored_checkpoints(dir.path())
        .unwrap()
        .iter()
        .map(|n| Checkpoint::parse(&n.text).unwrap())
        .collect();
    for (i, a) in cps.iter().enumerate() {
        for b in &cps[i..] {
            let proof = log.prove_consistency(a.size, b.size).unwrap();
            verify_consistency(a.size, b.size, &proof, &a.root, &b.root).unwrap();
        }
    }
}

#[test]
fn many_racing_appenders_each_find_their_own_entry_at_their_receipt() {
    // Enough threads on two cores that appenders are preempted between taking a sequence number
    // and queueing their frame, so frames come back out of order and wait for the gap.
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path(), config()).unwrap());
    let threads: Vec<_> = (0..256u64)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..16u64)
                    .map(|i| {
                        let e = entry(t * 1000 + i);
                        let id = e.request_id.clone();
                        (id, log.append(e).unwrap())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let receipts: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    log.close().unwrap();
    assert_eq!(check(dir.path()).unwrap().entries, 4096);
    let mut stored = Vec::new();
    domicile_audit::for_each_entry(dir.path(), &mut |_, _| {}, |_, bytes, hash| {
        stored.push((Entry::from_canonical(bytes).unwrap().request_id, *hash));
        Ok(())
    })
    .unwrap();
    for (id, r) in &receipts {
        let (stored_id, stored_hash) = &stored[r.seq as usize];
        assert_eq!(stored_id, id, "entry {} is another appender's", r.seq);
        assert_eq!(stored_hash, &r.leaf_hash, "entry {}", r.seq);
    }
}

#[test]
fn restarts_continue_the_same_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for round in 0..3 {
        let log = AuditLog::open(dir.path(), config()).unwrap();
        assert_eq!(log.size(), round * 10);
        assert!(
            !log.open_report().tree_rebuilt,
            "the persisted tree was used"
        );
        assert_eq!(
            log.open_report().rehashed,
            0,
            "nothing rehashed after a clean close"
        );
        for i in 0..10 {
            assert_eq!(log.append(entry(i)).unwrap().seq, round * 10 + i);
        }
        log.close().unwrap();
        sizes.push(log.size());
    }
    let report = check(dir.path()).unwrap();
    assert_eq!(report.entries, 30);
    let notes = stored_checkpoints(dir.path()).unwrap();
    let last = Checkpoint::parse(&notes.last().unwrap().text).unwrap();
    assert_eq!(last.size, 30);
    assert_eq!(sizes, [10, 20, 30]);
    // Every checkpoint signed before a restart is provably a prefix of every one after.
    let log = AuditLog::open(dir.path(), config()).unwrap();
    let cps: Vec<Checkpoint> = notes
        .iter()
        .map(|n| Checkpoint::parse(&n.text).unwrap())
        .collect();
    for a in &cps {
        for b in cps.iter().filter(|b| b.size > a.size) {
            let proof = log.prove_consistency(a.size, b.size).unwrap();
            verify_consistency(a.size, b.size, &proof, &a.root, &b.root).unwrap();
        }
    }
}

#[test]
fn a_directory_is_open_by_one_log_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config()).unwrap();
    let err = AuditLog::open(dir.path(), config()).unwrap_err();
    assert!(matches!(err, AuditError::AlreadyOpen { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    drop(log);
    AuditLog::open(dir.path(), config()).unwrap();
}

#[test]
fn a_lost_tree_cache_is_rebuilt_from_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let small = || {
        let mut c = config();
        c.segment_bytes = 2000;
        c
    };
    let log = AuditLog::open(dir.path(), small()).unwrap();
    for i in 0..20 {
        log.append(entry(i)).unwrap();
    }
    let root = log.root();
    log.close().unwrap();
    drop(log);
    assert!(segments(dir.path()).len() > 2);
    std::fs::remove_dir_all(dir.path().join("tree")).unwrap();
    let log = AuditLog::open(dir.path(), small()).unwrap();
    assert_eq!(log.open_report().rehashed, 20);
    assert_eq!(log.root(), root);
}

#[test]
fn refuses_to_sign_a_history_that_forks_the_signed_one() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    for (d, offset) in [(dir.path(), 0), (other.path(), 500)] {
        let log = AuditLog::open(d, config()).unwrap();
        for i in 0..10 {
            log.append(entry(offset + i)).unwrap();
        }
        log.close().unwrap();
    }
    // Replace the entries with a different, well-framed history of the same length.
    std::fs::remove_dir_all(dir.path().join("segments")).unwrap();
    std::fs::remove_dir_all(dir.path().join("tree")).unwrap();
    copy_dir(&other.path().join("segments"), &dir.path().join("segments"));
    let err = AuditLog::open(dir.path(), config()).unwrap_err();
    assert!(matches!(err, AuditError::Inconsistent { .. }), "{err}");
    assert!(check(dir.path()).is_err());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_torn_tail_is_truncated_and_reported() {
    let (dir, seg) = closed_log_of_five();
    let clean_len = std::fs::metadata(&seg).unwrap().len();
    // Half a frame, as a crash in the middle of a write leaves it.
    let frame = std::fs::read(&seg).unwrap()[16..16 + 40].to_vec();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &frame).unwrap();
    drop(f);
    assert!(
        check(dir.path()).is_err(),
        "verify does not accept a torn tail"
    );

    let log = AuditLog::open(dir.path(), config()).unwrap();
    let (path, offset, removed) = log.open_report().torn_tail.clone().unwrap();
    assert_eq!((path, offset, removed), (seg.clone(), clean_len, 40));
    assert_eq!(log.size(), 5);
    assert_eq!(log.append(entry(5)).unwrap().seq, 5);
    log.close().unwrap();
    assert_eq!(check(dir.path()).unwrap().entries, 6);
}

#[test]
fn damage_before_the_tail_is_an_error_not_a_repair() {
    let (dir, seg) = closed_log_of_five();
    let mut bytes = std::fs::read(&seg).unwrap();
    let offsets = frame_offsets(&bytes);
    bytes[offsets[2] + 40] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    let err = AuditLog::open(dir.path(), config()).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(&seg.display().to_string()),
        "{err}"
    );
    assert!(check(dir.path()).is_err());
}

/// A segment replaced by a FIFO (whose open would wait for a writer for ever) or a link to
/// `/dev/zero` is corrupt, named, at once: for the writer opening the log and for the verifier.
#[test]
fn a_segment_that_is_not_a_regular_file_is_an_error_not_a_wait() {
    let (dir, seg) = closed_log_of_five();
    let fifo = |p: &Path| {
        assert!(std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap()
            .success())
    };
    let zero = |p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap();
    for replace in [&fifo as &dyn Fn(&Path), &zero] {
        std::fs::remove_file(&seg).unwrap();
        replace(&seg);
        for err in [
            AuditLog::open(dir.path(), config()).unwrap_err(),
            check(dir.path()).unwrap_err(),
        ] {
            assert!(matches!(err, AuditError::Corrupt { .. }), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("not a regular file") && text.contains(&seg.display().to_string()),
                "{text}"
            );
        }
    }
}

#[test]
fn truncation_below_a_signed_checkpoint_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config()).unwrap();
    for i in 0..20 {
        log.append(entry(i)).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let seg = segments(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    // Cut exactly at a frame boundary, so the framing alone cannot tell.
    let cut = frame_offsets(&bytes)[17];
    std::fs::write(&seg, &bytes[..cut]).unwrap();
    let err = check(dir.path()).unwrap_err();
    // Which checkpoint is the first one cut depends on when the checkpointer ran; the last one
    // (signed on close, at 20) is cut in any case.
    assert!(
        matches!(err, AuditError::Truncated { entries: 17, size, .. } if size > 17 && size <= 20),
        "{err}"
    );
    let err = AuditLog::open(dir.path(), config()).unwrap_err();
    assert!(matches!(err, AuditError::Truncated { .. }), "{err}");
}

#[test]
fn appended_entries_without_a_signature_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let longer = tempfile::tempdir().unwrap();
    for (d, n) in [(dir.path(), 3), (longer.path(), 5)] {
        let log = AuditLog::open(d, config()).unwrap();
        for i in 0..n {
            log.append(entry(i)).unwrap();
        }
        log.close().unwrap();
    }
    // The same history with two more entries that no checkpoint of this log covers.
    let seg = segments(longer.path()).pop().unwrap();
    std::fs::copy(&seg, segments(dir.path()).pop().unwrap()).unwrap();
    let err = check(dir.path()).unwrap_err();
    assert!(
        matches!(err, AuditError::UnsignedTail { size: 3, count: 2 }),
        "{err}"
    );
    // Opening with a key that did not sign the stored checkpoints is refused.
    let other = SigningKey::from_seed("audit.example/us", KeyKind::Ed25519, [2; 32]).unwrap();
    assert!(AuditLog::open(longer.path(), LogConfig::new(other)).is_err());
}

#[test]
fn an_append_that_cannot_be_made_durable_is_refused() {
    if !Path::new("/dev/full").exists() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: /dev/full is not available, the fail-closed test did not run\n",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.segment_bytes = 1; // a new segment per batch
    let log = AuditLog::open(dir.path(), cfg).unwrap();
    assert_eq!(log.append(entry(0)).unwrap().seq, 0);
    // The next segment lands on a full device.
    let next = dir.path().join("segments").join(format!("{:020}.seg", 1));
    std::os::unix::fs::symlink("/dev/full", &next).unwrap();
    let err = log.append(entry(1)).unwrap_err();
    assert!(matches!(err, AuditError::NotDurable { .. }), "{err}");
    assert!(err.to_string().contains("must be refused"), "{err}");
    // And it stays refused: a log that lost a write does not carry on as if it had not.
    assert!(matches!(
        log.append(entry(2)),
        Err(AuditError::NotDurable { .. })
    ));
    assert!(log.close().is_err());
    drop(log);
    std::fs::remove_file(&next).unwrap();
    let log = AuditLog::open(dir.path(), config()).unwrap();
    assert_eq!(log.size(), 1, "only the acknowledged entry is there");
    log.close().unwrap();
    assert_eq!(check(dir.path()).unwrap().entries, 1);
}

#[test]
fn a_failed_sync_in_a_batch_of_many_appenders_refuses_every_one_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.segment_bytes = 1; // a new segment per batch
    let log = Arc::new(AuditLog::open(dir.path(), cfg).unwrap());
    assert_eq!(log.append(entry(0)).unwrap().seq, 0);
    // The next segment is a FIFO: the leader of the next commit blocks opening it until a
    // reader comes, while the other appenders queue behind it; then its write goes into the
    // pipe and its fdatasync fails (a FIFO cannot be synced).
    let fifo = dir.path().join("segments").join(format!("{:020}.seg", 1));
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: mkfifo is not available, the batched fail-closed test did not run\n",
        );
        return;
    }
    const APPENDERS: u64 = 64;
    let started = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let appenders: Vec<_> = (1..=APPENDERS)
        .map(|i| {
            let (log, started) = (Arc::clone(&log), Arc::clone(&started));
            std::thread::spawn(move || {
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                log.append(entry(i))
            })
        })
        .collect();
    while started.load(std::sync::atomic::Ordering::SeqCst) < APPENDERS {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Give the appenders time to queue behind the blocked leader.
    std::thread::sleep(Duration::from_millis(500));
    let reader = std::thread::spawn(move || std::fs::read(&fifo).unwrap());
    let mut refused = 0;
    for a in appenders {
        match a.join().unwrap() {
            Err(AuditError::NotDurable { .. }) => refused += 1,
            other => panic!("an appender was not refused: {other:?}"),
        }
    }
    assert_eq!(refused, APPENDERS, "every appender is refused");
    assert_eq!(
        log.stats().entries,
        1,
        "nothing was acknowledged after entry 0"
    );
    assert!(matches!(
        log.append(entry(99)),
        Err(AuditError::NotDurable { .. })
    ));
    drop(log); // closes the pipe, so the reader sees its end
    let written = reader.join().unwrap();
    let in_batch = frame_offsets(&written).len();
    eprintln!("the failed batch held {in_batch} of {APPENDERS} appenders' entries");
    assert!(
        in_batch > 1,
        "the failed sync covered a batch of several appenders ({in_batch})"
    );
    std::fs::remove_file(dir.path().join("segments").join(format!("{:020}.seg", 1))).unwrap();
    let log = AuditLog::open(dir.path(), config()).unwrap();
    assert_eq!(log.size(), 1, "only the acknowledged entry is there");
    log.close().unwrap();
    assert_eq!(check(dir.path()).unwrap().entries, 1);
}

#[test]
fn checkpoints_are_signed_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.checkpoint_every = 0;
    cfg.checkpoint_interval = Some(Duration::from_millis(30));
    let log = AuditLog::open(dir.path(), cfg).unwrap();
    log.append(entry(0)).unwrap();
    for _ in 0..200 {
        if log.latest_checkpoint().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let note = log.latest_checkpoint().expect("a timed checkpoint");
    assert_eq!(Checkpoint::parse(&note.text).unwrap().size, 1);
}

fn witness_key(name: &str, seed: u8) -> SigningKey {
    SigningKey::from_seed(name, KeyKind::Cosignature, [seed; 32]).unwrap()
}

#[test]
fn witnesses_cosign_consistent_checkpoints_and_policy_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config()).unwrap();
    let w1 = Witness::new(witness_key("w1.example", 11), key().verifier(), None).unwrap();
    let w2 = Witness::new(witness_key("w2.example", 12), key().verifier(), None).unwrap();
    let mut last_size = 0;
    for round in 0..3 {
        for i in 0..5 {
            log.append(entry(round * 5 + i)).unwrap();
        }
        let mut note = log.checkpoint().unwrap().unwrap();
        let size = Checkpoint::parse(&note.text).unwrap().size;
        for w in [&w1, &w2] {
            let proof = match w.last() {
                Some((s, _)) => log.prove_consistency(s, size).unwrap(),
                None => Vec::new(),
            };
            note.signatures
                .push(w.cosign(&note, &proof, 1_750_000_000 + round).unwrap());
        }
        log.add_cosigned(&note).unwrap();
        last_size = size;
    }
    log.close().unwrap();
    assert_eq!(last_size, 15);

    let policy = WitnessPolicy::new(vec![w1.verifier(), w2.verifier()], 2).unwrap();
    let report = verify(dir.path(), &key().verifier(), Some(&policy), &mut |_, _| {}).unwrap();
    assert_eq!(report.witnesses, 2);

    let stranger = witness_key("w3.example", 13).verifier();
    let strict = WitnessPolicy::new(vec![w1.verifier(), stranger.clone()], 2).unwrap();
    let err = verify(dir.path(), &key().verifier(), Some(&strict), &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(err, AuditError::QuorumNotMet { got: 1, want: 2 }),
        "{err}"
    );
    assert!(WitnessPolicy::new(vec![stranger], 2).is_err());

    // A witness refuses a checkpoint that does not extend what it saw (a fork).
    let forked = tempfile::tempdir().unwrap();
    let flog = AuditLog::open(forked.path(), config()).unwrap();
    for i in 0..20 {
        flog.append(entry(900 + i)).unwrap();
    }
    let fnote = flog.checkpoint().unwrap().unwrap();
    let proof = flog.prove_consistency(15, 20).unwrap();
    let err = w1.cosign(&fnote, &proof, 1).unwrap_err();
    assert!(matches!(err, AuditError::Inconsistent { .. }), "{err}");
    // Nor does it accept a note the log did not sign.
    let mut forged = fnote.clone();
    forged.text = forged.text.replace("\n20\n", "\n21\n");
    assert!(w1.cosign(&forged, &[], 1).is_err());
}

#[test]
fn offline_proofs_carry_the_entry_and_check_with_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config()).unwrap();
    for i in 0..13 {
        log.append(entry(i)).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let vkey: VerifierKey = key().verifier().to_string().parse().unwrap();
    for seq in 0..13 {
        let p = prove(dir.path(), seq).unwrap();
        let text = p.to_text();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "));
        let parsed = InclusionProof::parse(&text).unwrap();
        assert_eq!(parsed, p);
        let e = parsed.check(&vkey, None).unwrap();
        assert_eq!(e.seq, seq);
        assert_eq!(e.request_id, format!("req-{seq}"));
        // Another entry's bytes under this proof fail.
        let mut other = parsed.clone();
        other.entry = prove(dir.path(), (seq + 1) % 13).unwrap().entry;
        assert!(other.check(&vkey, None).is_err());
    }
    assert!(prove(dir.path(), 13).is_err());
}

#[test]
fn a_damaged_or_short_tree_cache_is_repaired_from_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let small = || {
        let mut c = config();
        c.segment_bytes = 2000;
        c
    };
    let log = AuditLog::open(dir.path(), small()).unwrap();
    for i in 0..40 {
        log.append(entry(i)).unwrap();
    }
    let root = log.root();
    log.close().unwrap();
    drop(log);

    // A crash before the cache was written: the leaf level is cut short.
    let leaves = dir.path().join("tree/level-00");
    let bytes = std::fs::read(&leaves).unwrap();
    std::fs::write(&leaves, &bytes[..32 * 11]).unwrap();
    let log = AuditLog::open(dir.path(), small()).unwrap();
    assert_eq!(log.open_report().rehashed, 29);
    assert!(!log.open_report().tree_rebuilt);
    assert_eq!(log.root(), root);
    log.close().unwrap();
    drop(log);

    // The cache was brought up to date on close.
    assert_eq!(std::fs::metadata(&leaves).unwrap().len(), 32 * 40);
    // A damaged upper level disagrees with the signed root and is thrown away.
    let upper = dir.path().join("tree/level-05");
    let mut bytes = std::fs::read(&upper).unwrap();
    bytes[5] ^= 0xff;
    std::fs::write(&upper, &bytes).unwrap();
    let log = AuditLog::open(dir.path(), small()).unwrap();
    assert!(log.open_report().tree_rebuilt);
    assert_eq!(log.root(), root);
}

#[test]
fn the_log_is_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<AuditLog>();
    send_sync::<Arc<AuditLog>>();
    send_sync::<Witness>();
}

#[test]
fn verify_checks_checkpoints_inside_and_across_hashing_blocks() {
    // More than a few blocks of 1024 entries, checkpoints at sizes that fall inside them, and
    // segments that start mid-block.
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    for (d, offset) in [(dir.path(), 0), (other.path(), 1)] {
        let mut cfg = config();
        cfg.checkpoint_every = 333;
        cfg.segment_bytes = 150_000;
        let log = AuditLog::open(d, cfg).unwrap();
        for i in 0..3500 {
            // The two logs differ in one entry only, in the middle of the second block.
            let n = if i == 1500 { i + offset * 100_000 } else { i };
            log.append(entry(n)).unwrap();
        }
        log.checkpoint().unwrap();
        log.close().unwrap();
    }
    assert!(segments(dir.path()).len() > 3);
    let report = check(dir.path()).unwrap();
    assert_eq!(report.entries, 3500);
    assert!(report.checkpoints >= 10, "{report:?}");

    // The other log's segments under this log's checkpoints: identical up to entry 1500, so
    // the first checkpoint past it is the first to fail.
    std::fs::remove_dir_all(dir.path().join("segments")).unwrap();
    copy_dir(&other.path().join("segments"), &dir.path().join("segments"));
    let err = check(dir.path()).unwrap_err();
    let cps: Vec<u64> = stored_checkpoints(dir.path())
        .unwrap()
        .iter()
        .map(|n| Checkpoint::parse(&n.text).unwrap().size)
        .collect();
    let first_bad = cps.iter().position(|s| *s > 1500).unwrap();
    assert!(
        matches!(err, AuditError::BadStoredCheckpoint { index, .. } if index == first_bad),
        "{err} (checkpoints {cps:?})"
    );
}

#[test]
fn the_directory_is_locked_against_other_processes_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config()).unwrap();
    // Another open file description (as another process would have) cannot take the lock.
    let other = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("LOCK"))
        .unwrap();
    assert!(matches!(
        other.try_lock(),
        Err(std::fs::TryLockError::WouldBlock)
    ));
    // In this process, the second open is refused by name.
    assert!(matches!(
        AuditLog::open(dir.path(), config()),
        Err(AuditError::AlreadyOpen { .. })
    ));
    drop(log);
    other
        .try_lock()
        .expect("the lock is released when the log is closed");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn remembering(state: &Path) -> LogConfig {
    let mut c = config();
    c.signed_state = Some(state.to_owned());
    c
}

/// The attack: the last entries and the last checkpoint dropped together. The log still
/// verifies against itself, but not against a checkpoint the auditor holds, and the writer
/// (which remembers its last checkpoint beside its key) refuses to append to it or sign it.
#[test]
fn a_rollback_of_entries_and_checkpoints_is_refused_by_the_writer_and_the_auditor() {
    let keys = tempfile::tempdir().unwrap();
    let state = keys.path().join("log.state");
    let dir = tempfile::tempdir().unwrap();
    let snapshot = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), remembering(&state)).unwrap();
    for i in 0..3 {
        log.append(entry(i)).unwrap();
    }
    log.checkpoint().unwrap();
    log.close().unwrap();
    drop(log);
    copy_tree(dir.path(), &snapshot.path().join("log"));
    let log = AuditLog::open(dir.path(), remembering(&state)).unwrap();
    for i in 3..5 {
        log.append(entry(i)).unwrap();
    }
    let held = log.checkpoint().unwrap().unwrap();
    log.close().unwrap();
    drop(log);
    // Roll back: the directory as it was at size 3, checkpoints included.
    std::fs::remove_dir_all(dir.path()).unwrap();
    copy_tree(&snapshot.path().join("log"), dir.path());
    assert_eq!(
        check(dir.path()).unwrap().entries,
        3,
        "it verifies against itself"
    );
    let err = domicile_audit::verify_against(
        dir.path(),
        &key().verifier(),
        None,
        std::slice::from_ref(&held),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::RolledBack {
                entries: 3,
                signed: 5
            }
        ),
        "{err}"
    );
    let err = AuditLog::open(dir.path(), remembering(&state)).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::RolledBack {
                entries: 3,
                signed: 5
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains('3') && err.to_string().contains('5'));
    // A writer without that memory signs a fork: other entries at 3 and 4.
    let log = AuditLog::open(dir.path(), config()).unwrap();
    for i in 100..102 {
        log.append(entry(i)).unwrap();
    }
    log.checkpoint().unwrap();
    log.close().unwrap();
    drop(log);
    // The remembering writer refuses it, and so does the auditor holding the old checkpoint.
    let err = AuditLog::open(dir.path(), remembering(&state)).unwrap_err();
    assert!(matches!(err, AuditError::Inconsistent { .. }), "{err}");
    let err = domicile_audit::verify_against(
        dir.path(),
        &key().verifier(),
        None,
        std::slice::from_ref(&held),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, AuditError::NotConsistentWithHeld { size: 5, .. }),
        "{err}"
    );
}

#[test]
fn a_held_checkpoint_the_log_extends_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config()).unwrap();
    for i in 0..3 {
        log.append(entry(i)).unwrap();
    }
    let held = log.checkpoint().unwrap().unwrap();
    for i in 3..2000 {
        log.append(entry(i)).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let report = domicile_audit::verify_against(
        dir.path(),
        &key().verifier(),
        None,
        &[held],
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(report.entries, 2000);
}

#[test]
fn one_witness_given_twice_counts_once() {
    let w = witness_key("witness.example/a", 9).verifier();
    let err = WitnessPolicy::new(vec![w.clone(), w.clone()], 2).unwrap_err();
    assert!(matches!(err, AuditError::BadPolicy { .. }), "{err}");
    // Pushed twice past the constructor, it still counts once.
    let mut policy = WitnessPolicy::new(vec![w.clone()], 1).unwrap();
    policy.witnesses.push(w);
    policy.quorum = 2;
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config()).unwrap();
    log.append(entry(0)).unwrap();
    let note = log.checkpoint().unwrap().unwrap();
    let witness =
        Witness::new(witness_key("witness.example/a", 9), key().verifier(), None).unwrap();
    let mut cosigned = note.clone();
    cosigned
        .signatures
        .push(witness.cosign(&note, &[], 1_700_000_000).unwrap());
    let err = policy.check(&cosigned).unwrap_err();
    assert!(
        matches!(err, AuditError::QuorumNotMet { got: 1, want: 2 }),
        "{err}"
    );
}

#[test]
fn a_secret_key_given_as_a_verifier_key_is_not_echoed() {
    let audit_key = domicile_audit::AuditKey::generate().unwrap().to_hex();
    let err = VerifierKey::parse(&audit_key).unwrap_err().to_string();
    assert!(!err.contains(&audit_key), "{err}");
    let private = key().to_private_text();
    let err = VerifierKey::parse(&private).unwrap_err().to_string();
    let secret = private.rsplit('+').next().unwrap();
    assert!(!err.contains(secret), "{err}");
    assert!(err.contains("private"), "{err}");
}

/// The tree cache may be thrown away: damaged, it is rebuilt for a proof, never fatal.
#[test]
fn a_damaged_tree_cache_does_not_stop_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config()).unwrap();
    for i in 0..40 {
        log.append(entry(i)).unwrap();
    }
    log.close().unwrap();
    drop(log);
    for f in std::fs::read_dir(dir.path().join("tree")).unwrap() {
        let path = f.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.len() > 40 {
            bytes[33] ^= 0xff; // an interior hash, not the first
            bytes.truncate(bytes.len() - 5); // and a ragged end
        }
        std::fs::write(&path, bytes).unwrap();
    }
    for seq in [0, 17, 39] {
        let proof = prove(dir.path(), seq).unwrap();
        proof.check(&key().verifier(), None).unwrap();
    }
}
