//! sled releases its lock from a background thread after the last handle is dropped: reopening
//! right after closing must work, and a store that really is open elsewhere is a clear error
//! (on redb as well).

use domicile_store::{Backend, SledBackend, StoreError};

#[test]
fn reopening_right_after_closing_works() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20u8 {
        let db = SledBackend::open(dir.path()).unwrap();
        db.put(&[i], &[i]).unwrap();
        db.flush().unwrap();
        drop(db);
    }
    let db = SledBackend::open(dir.path()).unwrap();
    assert_eq!(db.get(&[19]).unwrap(), Some(vec![19]));
}

#[test]
fn a_store_open_elsewhere_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _held = SledBackend::open(dir.path()).unwrap();
    let start = std::time::Instant::now();
    let second = SledBackend::open(dir.path());
    // It waited for the lock (a closing handle would have let go by then) before refusing.
    assert!(start.elapsed() >= std::time::Duration::from_secs(4));
    match second {
        Err(e @ StoreError::InUse { .. }) => {
            assert!(e.to_string().contains("open in another process"), "{e}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_redb_store_open_elsewhere_is_the_same_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _held = domicile_store::RedbBackend::open(dir.path()).unwrap();
    match domicile_store::RedbBackend::open(dir.path()) {
        Err(StoreError::InUse { backend, path, .. }) => {
            assert_eq!(backend, "redb");
            assert_eq!(
                path,
                dir.path().join(domicile_store::RedbBackend::FILE_NAME)
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A process killed while sled was writing a snapshot leaves `snap.<lsn>.generating`, cut
/// short (sled renames it into place only once complete and synced). sled 0.34 takes it for the
/// latest snapshot and refuses to open ("Read corrupted data"), which the SIGKILL rounds of
/// `crash.rs` hit now and then. The store removes it, under the database's lock, and every
/// acknowledged write is there.
#[test]
fn a_snapshot_cut_short_by_a_crash_does_not_stop_the_store_opening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = SledBackend::open(dir.path()).unwrap();
        for i in 0..200u8 {
            db.put(&[i], &[i; 64]).unwrap();
        }
        db.flush().unwrap();
    }
    // Whatever snapshots sled left, one it was writing when the process died is newest.
    let generating = dir.path().join("snap.FFFFFFFFFFFFFFF0.generating");
    std::fs::write(&generating, b"a snapshot cut sh").unwrap();
    // The database's lock is still held for a moment when the open starts, as it is right after
    // the last handle closes (sled lets go from a background thread): the open waits for it
    // before looking for unfinished snapshots, rather than skip the look.
    let lock = std::fs::File::open(dir.path().join("db")).unwrap();
    lock.lock().unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(lock);
    });
    let db = SledBackend::open(dir.path()).unwrap();
    release.join().unwrap();
    for i in 0..200u8 {
        assert_eq!(db.get(&[i]).unwrap(), Some(vec![i; 64]));
    }
    assert!(!generating.exists());
}

/// sled writes a node too large for its log to a blob file of its own and never syncs it (nor
/// its directory); the backend's flush does, once per file, and a value that large reads back
/// after reopening.
#[test]
fn a_flush_syncs_the_blob_files_sled_writes_for_large_values() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    {
        let db = SledBackend::open(dir.path()).unwrap();
        db.put(b"big", &big).unwrap();
        db.flush().unwrap();
        let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
        assert!(blobs >= 1, "sled wrote no blob file for a 1 MB value");
        assert_eq!(db.synced_blob_count(), blobs);
        // Nothing new: nothing synced again, and the count stays.
        db.flush().unwrap();
        assert_eq!(db.synced_blob_count(), blobs);
    }
    let db = SledBackend::open(dir.path()).unwrap();
    assert_eq!(db.get(b"big").unwrap().as_deref(), Some(&big[..]));
}
