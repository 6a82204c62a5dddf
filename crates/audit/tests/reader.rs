//! `LogReader` follows a log a writer is appending to, up to its latest checkpoint; entries too
//! long for a tlog-tiles bundle are refused; a witness that cosigned the empty tree goes on.

use std::sync::Arc;

use domicile_audit::merkle::empty_root;
use domicile_audit::{
    doc_example_entry, entry_bytes, AuditError, AuditLog, KeyKind, LogConfig, LogReader,
    SigningKey, Witness, MAX_ENTRY_BYTES,
};

fn key() -> SigningKey {
    SigningKey::from_seed("audit.example/us", KeyKind::Ed25519, [3; 32]).unwrap()
}

fn open(dir: &std::path::Path) -> AuditLog {
    let mut cfg = LogConfig::new(key());
    cfg.checkpoint_every = 0;
    cfg.checkpoint_interval = None;
    cfg.segment_bytes = 4000; // a new segment every dozen entries
    AuditLog::open(dir, cfg).unwrap()
}

#[test]
fn the_reader_follows_the_writer_up_to_each_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(open(tmp.path()));
    let mut reader = LogReader::open(tmp.path()).unwrap();
    assert_eq!((reader.size(), reader.checkpoint()), (0, None));
    let mut n = 0u64;
    for target in [1u64, 13, 14, 100, 101] {
        while n < target {
            let mut e = doc_example_entry().unwrap();
            e.request_id = format!("req-{n}");
            log.append(e).unwrap();
            n += 1;
        }
        // Nothing new is signed: nothing to follow.
        assert!(!reader.refresh().unwrap());
        assert!(reader.size() < log.size());
        log.checkpoint().unwrap();
        // An entry after the checkpoint is not followed.
        let mut e = doc_example_entry().unwrap();
        e.request_id = "unsigned".into();
        log.append(e).unwrap();
        n += 1;
        assert!(reader.is_stale().unwrap());
        assert!(reader.refresh().unwrap());
        let signed = log.size() - 1;
        assert_eq!(reader.size(), signed);
        assert_eq!(reader.tree().root_at(signed).unwrap(), {
            let t = domicile_audit::load_tree(tmp.path()).unwrap();
            t.root_at(signed).unwrap()
        });
        let all = reader.entries(0, signed).unwrap();
        for (i, bytes) in all.iter().enumerate() {
            assert_eq!(*bytes, entry_bytes(tmp.path(), i as u64).unwrap());
        }
        assert!(reader.entries(0, signed + 1).is_err());
    }
}

#[test]
fn the_reader_refuses_a_log_whose_entries_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    for i in 0..5 {
        let mut e = doc_example_entry().unwrap();
        e.request_id = format!("req-{i}");
        log.append(e).unwrap();
    }
    log.checkpoint().unwrap();
    let reader = LogReader::open(tmp.path()).unwrap();
    drop(log);
    let seg = std::fs::read_dir(tmp.path().join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() - 2;
    bytes[at] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    // Read back after the change: the leaf hash no longer matches.
    let err = reader.entries(0, 5).unwrap_err();
    assert!(
        matches!(err, AuditError::BadStoredEntry { seq: 4, .. }),
        "{err}"
    );
    // Opened after the change: the tree does not have the signed root, or the frame fails.
    assert!(LogReader::open(tmp.path()).is_err());
}

#[test]
fn entries_too_long_for_a_bundle_are_refused_and_the_log_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let mut e = doc_example_entry().unwrap();
    e.purpose = e.purpose.with_detail("x".repeat(MAX_ENTRY_BYTES));
    let err = log.append(e).unwrap_err();
    assert!(
        matches!(err, AuditError::EntryTooLong { max: 65_535, .. }),
        "{err}"
    );
    let r = log.append(doc_example_entry().unwrap()).unwrap();
    assert_eq!(r.seq, 0);
}

#[test]
fn a_witness_that_cosigned_the_empty_tree_cosigns_the_next_checkpoint() {
    let wkey = SigningKey::from_seed("w.example", KeyKind::Cosignature, [5; 32]).unwrap();
    let w = Witness::new(wkey, key().verifier(), Some((0, empty_root()))).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    log.append(doc_example_entry().unwrap()).unwrap();
    let note = log.checkpoint().unwrap().unwrap();
    w.cosign(&note, &[], 1).unwrap();
    // A size-0 checkpoint must carry the empty root.
    let bad = key()
        .sign_note("audit.example/us\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
        .unwrap();
    let fresh = Witness::new(
        SigningKey::from_seed("w.example", KeyKind::Cosignature, [5; 32]).unwrap(),
        key().verifier(),
        None,
    )
    .unwrap();
    assert!(fresh.cosign(&bad, &[], 1).is_err());
}
