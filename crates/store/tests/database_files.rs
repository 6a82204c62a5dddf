//! A database file is state the store wrote: a FIFO or a device in its place (put there by
//! someone who can write the directory) is a clear error naming it, returned at once, where the
//! open or the first read would otherwise wait for ever.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use domicile_residency::{Region, SubjectId};
use domicile_store::{Backend, FileCustodian, KeyCustodian, RedbBackend, SledBackend};

/// Replaces `path` by a FIFO, then by a link to `/dev/zero`, and checks that `open` refuses
/// each within 10 s, naming the file. `open` runs on a thread of its own, so an open that blocks
/// fails the test instead of hanging it.
fn refused_in_place_of(path: &Path, open: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
    let open = Arc::new(open);
    let fifo = |p: &Path| assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
    let zero = |p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap();
    for replace in [&fifo as &dyn Fn(&Path), &zero] {
        std::fs::remove_file(path).unwrap();
        replace(path);
        let (tx, rx) = std::sync::mpsc::channel();
        let opening = Arc::clone(&open);
        std::thread::spawn(move || {
            let _ = tx.send(opening());
        });
        let err = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the open blocked on a file that is not a regular file")
            .expect_err("opened a database that is not a regular file");
        assert!(
            err.contains("not a regular file") && err.contains(&*path.to_string_lossy()),
            "{err}"
        );
    }
}

#[test]
fn a_sled_or_redb_store_whose_file_is_a_fifo_or_a_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sled_dir = dir.path().join("sled");
    {
        let db = SledBackend::open(&sled_dir).unwrap();
        db.put(b"k", b"v").unwrap();
        db.flush().unwrap();
    }
    // sled lets go of its lock from a background thread: wait until a reopen works.
    drop(SledBackend::open(&sled_dir).unwrap());
    let dir_for = sled_dir.clone();
    refused_in_place_of(&sled_dir.join("db"), move || {
        SledBackend::open(&dir_for)
            .map(drop)
            .map_err(|e| e.to_string())
    });

    let redb_dir = dir.path().join("redb");
    {
        let db = RedbBackend::open(&redb_dir).unwrap();
        db.put(b"k", b"v").unwrap();
        db.flush().unwrap();
    }
    let dir_for = redb_dir.clone();
    refused_in_place_of(&redb_dir.join(RedbBackend::FILE_NAME), move || {
        RedbBackend::open(&dir_for)
            .map(drop)
            .map_err(|e| e.to_string())
    });
}

#[test]
fn a_key_store_whose_file_is_a_fifo_or_a_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let us = Region::parse("us").unwrap();
    let subject = SubjectId::parse("key-store-person").unwrap();
    {
        let custodian = FileCustodian::open(&keys).unwrap();
        custodian
            .create_data_keys(&us, std::slice::from_ref(&subject))
            .unwrap();
    }
    let files: Vec<PathBuf> = common::files_under(&keys)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "datakeys.redb"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    refused_in_place_of(&files[0], move || {
        let custodian = Arc::new(FileCustodian::open(&keys).map_err(|e| e.to_string())?);
        custodian
            .data_key(
                &us,
                &custodian.pseudonym_key(&us).unwrap().pseudonym(&subject),
            )
            .map(drop)
            .map_err(|e| e.to_string())
    });
}
