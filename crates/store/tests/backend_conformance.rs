//! The backend conformance suite, run against every backend.

use domicile_store::{conformance, Backend, RedbBackend, SledBackend};

#[test]
fn sled_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run(dir.path(), &|path| {
        Ok(Box::new(SledBackend::open(path)?) as Box<dyn Backend>)
    });
}

#[test]
fn redb_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run(dir.path(), &|path| {
        Ok(Box::new(RedbBackend::open(path)?) as Box<dyn Backend>)
    });
}

#[test]
fn one_backend_refuses_the_others_directory() {
    let dir = tempfile::tempdir().unwrap();
    let sled_dir = dir.path().join("s");
    let redb_dir = dir.path().join("r");
    drop(SledBackend::open(&sled_dir).unwrap());
    drop(RedbBackend::open(&redb_dir).unwrap());
    let err = RedbBackend::open(&sled_dir).unwrap_err();
    assert!(err.to_string().contains("sled store"), "{err}");
    let err = SledBackend::open(&redb_dir).unwrap_err();
    assert!(err.to_string().contains("redb store"), "{err}");
}
