//! A database file is state the store wrote: a FIFO or a device in its place (put there by
//! someone who can write the directory) is a clear error naming it, returned at once, where the
//! open or the first read would otherwise wait for ever.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domicile_residency::{Region, SubjectId};
use domicile_store::{Backend, FileCustodian, KeyCustodian, RedbBackend, SledBackend};

/// Replaces `path` by a FIFO, then by a link to `/dev/zero`, and checks that `open` refuses
/// each at once, naming the file.
fn refused_in_place_of(path: &Path, open: impl Fn() -> Result<(), String>) {
    let fifo = |p: &Path| assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
    let zero = |p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap();
    for replace in [&fifo as &dyn Fn(&Path), &zero] {
        std::fs::remove_file(path).unwrap();
        replace(path);
        let started = Instant::now();
        let err = open().expect_err("opened a database that is not a regular file");
        assert!(
            err.contains("not a regular file") && err.contains(&*path.to_string_lossy()),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
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
    refused_in_place_of(&sled_dir.join("db"), || {
        SledBackend::open(&sled_dir)
            .map(drop)
            .map_err(|e| e.to_string())
    });

    let redb_dir = dir.path().join("redb");
    {
        let db = RedbBackend::open(&redb_dir).unwrap();
        db.put(b"k", b"v").unwrap();
        db.flush().unwrap();
    }
    refused_in_place_of(&redb_dir.join(RedbBackend::FILE_NAME), || {
        RedbBackend::open(&redb_dir)
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
    let files = files_named(&keys, "datakeys.redb");
    assert_eq!(files.len(), 1, "{files:?}");
    refused_in_place_of(&files[0], || {
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

fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_named(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
    found
}
