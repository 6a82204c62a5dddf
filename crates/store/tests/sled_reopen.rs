//! sled releases its lock from a background thread after the last handle is dropped: reopening
//! right after closing must work, and a store that really is open elsewhere is a clear error.

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
        Err(StoreError::Backend { detail, .. }) => {
            assert!(detail.contains("is open elsewhere"), "{detail}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
