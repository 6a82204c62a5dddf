//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};

use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, Region, ResidencyPolicy, Subject};
use domicile_store::{
    BackendKind, Collection, FileCustodian, KeyCustodian, NewRecord, RecordKey, RecordMeta,
    SealedStore, StoreError,
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

/// A new `us` store on `kind` with two US subjects registered (`dirs` must outlive it).
pub(crate) fn with_two_subjects(
    dirs: &Dirs,
    kind: BackendKind,
    (a, b): (&str, &str),
) -> (SealedStore, Subject, Subject) {
    let store = open(&dirs.data(), kind, "us", dirs.custodian());
    let (a, b) = (subject(a, "US"), subject(b, "US"));
    store.register_subjects(&[a.clone(), b.clone()]).unwrap();
    (store, a, b)
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

/// A batch of `who`'s records at `keys` of `collection`, each holding `who`'s id.
pub(crate) fn owned_batch<'a>(
    who: &'a Subject,
    collection: &'a Collection,
    keys: &'a [RecordKey],
) -> Vec<NewRecord<'a>> {
    keys.iter()
        .map(|k| NewRecord {
            subject: &who.id,
            class: DataClass::Protected,
            collection,
            key: k,
            value: who.id.as_str().as_bytes(),
        })
        .collect()
}

type PutResult = Result<Vec<RecordMeta>, StoreError>;

/// `alice` through `first` and `bob` through `second` (the same store or two handles) put
/// batches at the same `keys` at once, in opposite orders.
pub(crate) fn race_batches(
    (first, alice): (&SealedStore, &Subject),
    (second, bob): (&SealedStore, &Subject),
    collection: &Collection,
    keys: &[RecordKey],
) -> (PutResult, PutResult) {
    let mut reversed = keys.to_vec();
    reversed.reverse();
    std::thread::scope(|s| {
        let a = s.spawn(|| first.put_batch(&owned_batch(alice, collection, keys)));
        let b = s.spawn(|| second.put_batch(&owned_batch(bob, collection, &reversed)));
        (a.join().unwrap(), b.join().unwrap())
    })
}

/// A backend by the name a crash test passes its child.
pub(crate) fn backend_named(name: &str) -> BackendKind {
    match name {
        "sled" => BackendKind::Sled,
        "redb" => BackendKind::Redb,
        other => panic!("unknown backend {other}"),
    }
}

/// A crash test's child process: this test binary run again for one ignored test.
pub(crate) struct Child {
    process: std::process::Child,
    /// Its standard output, line by line, as it comes.
    pub lines: mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<()>,
}

impl Child {
    /// Runs the ignored test `test` of this binary with `envs`, its standard error into the
    /// file `stderr`.
    pub(crate) fn spawn(test: &str, envs: &[(&str, &str)], stderr: &Path) -> Child {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                test,
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(stderr).unwrap()))
            .spawn()
            .unwrap();
        let stdout = process.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Child {
            process,
            lines,
            reader,
        }
    }

    /// Kills it with SIGKILL and waits for it; returns the lines it wrote that were not taken.
    pub(crate) fn kill(mut self) -> Vec<String> {
        self.process.kill().unwrap(); // SIGKILL on Unix
        self.process.wait().unwrap();
        self.reader.join().unwrap();
        self.lines.try_iter().collect()
    }
}
