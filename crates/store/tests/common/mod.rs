//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{Region, ResidencyPolicy, Subject};
use domicile_store::{
    BackendKind, Collection, FileCustodian, KeyCustodian, RecordKey, SealedStore,
};

/// Every backend this build has.
pub(crate) fn backends() -> Vec<BackendKind> {
    vec![BackendKind::Sled, BackendKind::Redb]
}

pub(crate) fn policy() -> Arc<dyn ResidencyPolicy> {
    Arc::new(UsSplitPolicy::new())
}

pub(crate) fn region(name: &str) -> Region {
    Region::parse(name).unwrap()
}

pub(crate) fn collection(name: &str) -> Collection {
    Collection::parse(name).unwrap()
}

pub(crate) fn key(name: &str) -> RecordKey {
    RecordKey::parse(name).unwrap()
}

pub(crate) fn subject(id: &str, residence: &str) -> Subject {
    Subject::parse(id, Some(residence), None).unwrap()
}

/// A data root and a key root side by side in a temporary directory.
pub(crate) struct Dirs {
    pub tmp: tempfile::TempDir,
}

impl Dirs {
    pub(crate) fn new() -> Self {
        Dirs {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    pub(crate) fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }
    pub(crate) fn keys(&self) -> PathBuf {
        self.tmp.path().join("keys")
    }
    pub(crate) fn custodian(&self) -> Arc<FileCustodian> {
        Arc::new(FileCustodian::open(self.keys()).unwrap())
    }
}

pub(crate) fn open(
    data: &Path,
    kind: BackendKind,
    region_name: &str,
    custodian: Arc<dyn KeyCustodian>,
) -> SealedStore {
    SealedStore::open_with(data, kind, region(region_name), policy(), custodian).unwrap()
}

/// Every regular file under `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    // Candidates by first byte, then a slice compare: fast enough in debug builds for the
    // megabyte-sized database files these tests search for dozens of needles.
    let Some((&first, _)) = needle.split_first() else {
        return true;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == first)
        .any(|(i, _)| haystack[i..].starts_with(needle))
}
