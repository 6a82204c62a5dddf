//! A rebuild of the subject index killed with SIGKILL at random moments: a child process
//! rebuilds in small durable steps (`rebuild_index_in_steps`) and the test kills it, reopens the
//! store, and checks that every record the test wrote is found through its subject's index
//! exactly once, opens, and that the store checks sound — for both embedded backends. Before
//! each round the test writes a batch more, so every rebuild has journal entries to fold and
//! lists to replace; the rounds go on until kills have landed between steps (some of the lists
//! the round began with replaced and some not), and a last rebuild leaves one list a subject.
//!
//! The child is this test binary itself, re-run with `--ignored --exact rebuild_child` and the
//! directory and backend in environment variables.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use domicile_residency::{DataClass, SubjectId};
use domicile_store::{BackendKind, NewRecord, SealedStore};
use rand::Rng;

const DIR_VAR: &str = "DOMICILE_REBUILD_CRASH_DIR";
const BACKEND_VAR: &str = "DOMICILE_REBUILD_CRASH_BACKEND";
/// The child's step, in ids and deleted lists: small, so that a rebuild of this test's store
/// takes a few dozen durable steps and most kills land between two of them.
const STEP: usize = 60;
const SUBJECTS: usize = 300;
/// Records written before each round, over all subjects.
const PER_ROUND: usize = 2_000;
/// Rounds stop once this many kills left a rebuild cut short between steps…
const CUT_SHORT_WANTED: usize = 3;
/// …or after this many.
const MAX_ROUNDS: usize = 24;

/// The child: opens the store, prints `@@opened`, rebuilds its index in steps of [`STEP`] and
/// prints `@@rebuilt` (if it is not killed first).
#[test]
#[ignore = "the child process of the rebuild crash tests; run by them"]
fn rebuild_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let kind = backend_named(&std::env::var(BACKEND_VAR).unwrap());
    let dir = std::path::PathBuf::from(dir);
    let custodian =
        std::sync::Arc::new(domicile_store::FileCustodian::open(dir.join("keys")).unwrap());
    let store = open(&dir.join("data"), kind, "us", custodian);
    println!("@@opened");
    let rebuilt = store.rebuild_index_in_steps(STEP).unwrap();
    println!("@@rebuilt {}", rebuilt.records);
}

fn open_store(dirs: &Dirs, kind: BackendKind) -> SealedStore {
    open(&dirs.data(), kind, "us", dirs.custodian())
}

/// The keys of the store's subject lists.
fn list_keys(store: &SealedStore) -> BTreeSet<Vec<u8>> {
    store
        .backend()
        .scan_prefix(b"i")
        .map(|item| item.unwrap().0)
        .collect()
}

/// Writes [`PER_ROUND`] records of round `round`, spread over every subject, in batches (each
/// its own journal entry), folds the journal into a list for each subject, and writes one
/// record more for each subject, left in the journal; adds them all to `expected`.
fn write_round(
    store: &SealedStore,
    subjects: &[SubjectId],
    round: usize,
    expected: &mut BTreeMap<SubjectId, BTreeSet<String>>,
) {
    let c = collection("notes");
    let keys: Vec<_> = (0..PER_ROUND + SUBJECTS)
        .map(|i| key(&format!("r{round:02}-{i:04}")))
        .collect();
    let (folded, left) = keys.split_at(PER_ROUND);
    for (n, chunk) in folded.chunks(100).chain([left]).enumerate() {
        if n == PER_ROUND / 100 {
            // A subject's read folds the journal.
            store.scan_subject(&subjects[0]).unwrap();
        }
        let batch: Vec<NewRecord<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(j, k)| NewRecord {
                subject: &subjects[(n * 100 + j) % SUBJECTS],
                class: DataClass::Protected,
                collection: &c,
                key: k,
                value: k.as_str().as_bytes(),
            })
            .collect();
        store.put_batch(&batch).unwrap();
        for r in &batch {
            expected
                .entry(r.subject.clone())
                .or_default()
                .insert(r.key.as_str().to_owned());
        }
    }
    assert!(store.backend().scan_prefix(b"j").count() > 0);
}

/// Every record the test wrote is found through its subject's index exactly once and opens
/// with its own key as its value, and the store checks sound.
fn assert_whole(store: &SealedStore, expected: &BTreeMap<SubjectId, BTreeSet<String>>, what: &str) {
    let mut records = 0;
    for (id, keys) in expected {
        let found = store.scan_subject(id).unwrap_or_else(|e| {
            panic!("{what}: a subject's records cannot be read through the index: {e}")
        });
        let mut listed: Vec<String> = found
            .iter()
            .map(|r| {
                assert_eq!(r.value, r.meta.key.as_str().as_bytes(), "{what}");
                r.meta.key.as_str().to_owned()
            })
            .collect();
        listed.sort();
        let unique: BTreeSet<String> = listed.iter().cloned().collect();
        assert_eq!(unique.len(), listed.len(), "{what}: a record listed twice");
        assert_eq!(&unique, keys, "{what}: the index lost or added records");
        records += keys.len();
    }
    let report = store.check().unwrap();
    assert!(report.is_sound(), "{what}: not sound: {report:?}");
    assert_eq!(report.records, records, "{what}");
}

fn rebuild_rounds(kind: BackendKind, name: &str) {
    let dirs = Dirs::new();
    let subjects: Vec<SubjectId> = (0..SUBJECTS)
        .map(|i| subject(&format!("rebuild-{i:02}"), "US").id)
        .collect();
    let mut expected: BTreeMap<SubjectId, BTreeSet<String>> = BTreeMap::new();
    {
        let store = open_store(&dirs, kind);
        let registered: Vec<_> = subjects
            .iter()
            .map(|id| subject(id.as_str(), "US"))
            .collect();
        store.register_subjects(&registered).unwrap();
    }
    let mut rng = rand::rng();
    // How long the child's rebuild takes from `@@opened` (round 0 runs to the end to tell).
    let mut rebuild_takes = Duration::ZERO;
    let mut scale = 1.0;
    let (mut cut_short, mut untouched, mut finished) = (0, 0, 0);
    let mut rounds = 0;
    while rounds < MAX_ROUNDS && cut_short < CUT_SHORT_WANTED {
        let lists_before = {
            let store = open_store(&dirs, kind);
            write_round(&store, &subjects, rounds, &mut expected);
            list_keys(&store)
        };
        let stderr_file = dirs.tmp.path().join(format!("child-{rounds}.stderr"));
        let child = Child::spawn(
            "rebuild_child",
            &[
                (DIR_VAR, dirs.tmp.path().to_str().unwrap()),
                (BACKEND_VAR, name),
            ],
            &stderr_file,
        );
        let wait_for = |marker: &str| -> Option<Instant> {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(120) {
                match child.lines.recv_timeout(Duration::from_millis(5)) {
                    Ok(line) if line.contains(marker) => return Some(Instant::now()),
                    Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                }
            }
            None
        };
        let stderr = || std::fs::read_to_string(&stderr_file).unwrap_or_default();
        let opened = wait_for("@@opened")
            .unwrap_or_else(|| panic!("{name}: the child never opened the store:\n{}", stderr()));
        if rounds == 0 {
            let done = wait_for("@@rebuilt").unwrap_or_else(|| {
                panic!("{name}: the child's rebuild did not finish:\n{}", stderr())
            });
            rebuild_takes = done - opened;
        } else {
            // A moment in the rebuild, which grows with the store: the first one's time for
            // each round's records, scaled by what the kills so far found (a machine under
            // load starts the child's rebuild later and runs it slower).
            let within = rebuild_takes.as_secs_f64()
                * (rounds + 1) as f64
                * scale
                * rng.random_range(0.2..1.0);
            std::thread::sleep(Duration::from_secs_f64(within));
        }
        child.kill();

        let store = open_store(&dirs, kind);
        let lists_after = list_keys(&store);
        let replaced = lists_before.difference(&lists_after).count();
        match replaced {
            0 if lists_after == lists_before => {
                untouched += 1;
                scale *= 1.5;
            }
            n if n == lists_before.len() => {
                finished += 1;
                scale *= 0.6;
            }
            _ => cut_short += 1,
        }
        assert_whole(
            &store,
            &expected,
            &format!(
                "{name} round {rounds} ({replaced} of {} lists replaced)",
                lists_before.len()
            ),
        );
        rounds += 1;
    }
    eprintln!(
        "{name}: {rounds} rounds, the first rebuild {rebuild_takes:?}; killed between steps \
         {cut_short}, before the first step {untouched}, after the last {finished}"
    );
    assert!(
        cut_short >= 1,
        "{name}: no kill of {rounds} landed between a rebuild's steps"
    );
    // What a kill left is finished by the next rebuild: one list a subject, no journal.
    let store = open_store(&dirs, kind);
    let rebuilt = store.rebuild_index().unwrap();
    assert_eq!(rebuilt.subjects, SUBJECTS);
    assert_eq!(list_keys(&store).len(), SUBJECTS);
    assert_eq!(store.backend().scan_prefix(b"j").count(), 0);
    assert_whole(&store, &expected, &format!("{name} after a last rebuild"));
}

#[test]
fn sled_rebuild_killed_between_steps_keeps_every_record_indexed_once() {
    rebuild_rounds(BackendKind::Sled, "sled");
}

#[test]
fn redb_rebuild_killed_between_steps_keeps_every_record_indexed_once() {
    rebuild_rounds(BackendKind::Redb, "redb");
}
