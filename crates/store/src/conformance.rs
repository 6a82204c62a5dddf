//! The conformance suite every [`Backend`] runs, so a new backend is held to the same contract.
//!
//! Call [`run`] from the backend's tests with a directory to work in and a function that opens
//! the backend at a path (reopening the same path must see what was flushed there). Each case
//! panics with its name and what differed, as test assertions do.

use std::path::Path;

use crate::backend::{Backend, Batch};
use crate::StoreError;

/// Opens a backend at a path.
pub type Opener<'a> = &'a dyn Fn(&Path) -> Result<Box<dyn Backend>, StoreError>;

type Case = (&'static str, fn(&dyn Backend));

/// The single-session cases, each run on a fresh, empty backend.
pub const CASES: &[Case] = &[
    ("a missing key reads as none", missing_key),
    (
        "get_many answers each key in order, repeated and missing ones included",
        get_many_in_order,
    ),
    (
        "put then get returns the value; a second put replaces it",
        put_get_replace,
    ),
    (
        "delete reports whether the key was present",
        delete_reports_presence,
    ),
    (
        "keys and values are arbitrary bytes, including empty and 1 MiB values",
        arbitrary_bytes,
    ),
    (
        "a prefix scan returns exactly the matching keys in ascending byte order",
        prefix_scan_bounds,
    ),
    (
        "a range scan returns exactly the keys from its start, included, to its end, excluded",
        range_scan_bounds,
    ),
    (
        "an empty prefix scans everything, a prefix of 0xff bytes exactly its keys",
        empty_prefix_scans_all,
    ),
    (
        "a batch applies puts and deletes in order; the last write to a key wins",
        batch_applies,
    ),
    ("an empty batch is accepted", empty_batch),
    ("a scan sees thousands of keys in order", many_keys),
    (
        "apply_owned writes a batch whole, or nothing if a key it takes is another owner's",
        owned_keys_are_checked,
    ),
    (
        "clear removes every key, more than a batch of them, and the backend takes writes after",
        clear_removes_everything,
    ),
];

/// Runs every case: the single-session [`CASES`] on fresh backends under `dir`, then the
/// reopen cases (flushed writes and deletes survive closing and reopening).
pub fn run(dir: &Path, open: Opener<'_>) {
    for (i, (name, case)) in CASES.iter().enumerate() {
        let backend = open(&dir.join(format!("case-{i}")))
            .unwrap_or_else(|e| panic!("case {name:?}: cannot open the backend: {e}"));
        case(backend.as_ref());
    }
    flushed_writes_survive_reopen(&dir.join("reopen"), open);
    flushed_clear_survives_reopen(&dir.join("reopen-clear"), open);
}

fn missing_key(b: &dyn Backend) {
    assert_eq!(b.get(b"nothing").unwrap(), None, "missing key");
    assert_eq!(b.scan_prefix(b"").count(), 0, "a new backend is empty");
}

fn get_many_in_order(b: &dyn Backend) {
    assert_eq!(b.get_many(&[]).unwrap(), Vec::<Option<Vec<u8>>>::new());
    b.put(b"a", b"1").unwrap();
    b.put(b"c", b"").unwrap();
    let got = b.get_many(&[b"c", b"missing", b"a", b"c", b""]).unwrap();
    assert_eq!(
        got,
        vec![
            Some(b"".to_vec()),
            None,
            Some(b"1".to_vec()),
            Some(b"".to_vec()),
            None
        ],
        "get_many"
    );
    let keys: Vec<Vec<u8>> = (0u32..5000).map(|i| i.to_be_bytes().to_vec()).collect();
    let mut batch = Batch::new();
    for k in keys.iter().step_by(2) {
        batch.put(k.clone(), k.clone());
    }
    b.apply(&batch).unwrap();
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    for (i, got) in b.get_many(&refs).unwrap().into_iter().enumerate() {
        assert_eq!(
            got,
            (i % 2 == 0).then(|| keys[i].clone()),
            "get_many key {i}"
        );
    }
}

fn put_get_replace(b: &dyn Backend) {
    b.put(b"k", b"one").unwrap();
    assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"one"[..]));
    b.put(b"k", b"two").unwrap();
    assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"two"[..]));
    assert_eq!(
        b.scan_prefix(b"k").count(),
        1,
        "a replaced key appears once"
    );
}

fn delete_reports_presence(b: &dyn Backend) {
    b.put(b"k", b"v").unwrap();
    assert!(b.delete(b"k").unwrap(), "deleting a present key");
    assert!(!b.delete(b"k").unwrap(), "deleting it again");
    assert_eq!(b.get(b"k").unwrap(), None);
}

fn arbitrary_bytes(b: &dyn Backend) {
    let big: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let cases: [(&[u8], &[u8]); 4] = [
        (b"\x00", b""),
        (b"\xff\xfe\x00key", b"\x00\x01\x02"),
        (b"big", &big),
        (&[0u8; 512], b"long key"),
    ];
    for (k, v) in cases {
        b.put(k, v).unwrap();
    }
    for (k, v) in cases {
        assert_eq!(b.get(k).unwrap().as_deref(), Some(v), "key {k:02x?}");
    }
}

fn prefix_scan_bounds(b: &dyn Backend) {
    for k in [
        &b"a"[..],
        b"ab",
        b"abc",
        b"a\xff",
        b"b",
        b"\x00",
        b"aa",
        b"`",
    ] {
        b.put(k, k).unwrap();
    }
    let keys: Vec<Vec<u8>> = b.scan_prefix(b"a").map(|r| r.unwrap().0).collect();
    let expected: Vec<Vec<u8>> = [&b"a"[..], b"aa", b"ab", b"abc", b"a\xff"]
        .iter()
        .map(|k| k.to_vec())
        .collect();
    assert_eq!(keys, expected, "scan of prefix a");
    let ab: Vec<Vec<u8>> = b.scan_prefix(b"ab").map(|r| r.unwrap().1).collect();
    assert_eq!(
        ab,
        vec![b"ab".to_vec(), b"abc".to_vec()],
        "values of prefix ab"
    );
    assert_eq!(b.scan_prefix(b"c").count(), 0, "prefix with no keys");
    assert_eq!(b.scan_prefix(b"\xff").count(), 0, "prefix past every key");
}

fn range_scan_bounds(b: &dyn Backend) {
    for k in ["r", "ra", "rab", "rb", "rba", "rc", "s"] {
        b.put(k.as_bytes(), k.as_bytes()).unwrap();
    }
    let range = |from: &str, until: &str| -> Vec<String> {
        b.scan_range(from.as_bytes(), until.as_bytes())
            .map(|r| String::from_utf8(r.unwrap().0).unwrap())
            .collect()
    };
    assert_eq!(
        range("ra", "rb"),
        ["ra", "rab"],
        "from included, until excluded"
    );
    assert_eq!(range("r", "s"), ["r", "ra", "rab", "rb", "rba", "rc"]);
    assert_eq!(
        range("ra\0", "rc"),
        ["rab", "rb", "rba"],
        "bounds between keys"
    );
    assert_eq!(range("q", "z"), ["r", "ra", "rab", "rb", "rba", "rc", "s"]);
    assert!(range("rb", "rb").is_empty(), "an empty range");
    assert!(range("rc", "ra").is_empty(), "a reversed range");
    assert!(range("t", "u").is_empty(), "a range with no keys");
    // Every range agrees with the full scan, filtered.
    let all: Vec<Vec<u8>> = b.scan_prefix(b"").map(|r| r.unwrap().0).collect();
    for from in &all {
        for until in &all {
            let expected: Vec<&Vec<u8>> = all.iter().filter(|k| *k >= from && *k < until).collect();
            let got: Vec<Vec<u8>> = b.scan_range(from, until).map(|r| r.unwrap().0).collect();
            assert_eq!(
                got.iter().collect::<Vec<_>>(),
                expected,
                "{from:?}..{until:?}"
            );
        }
    }
    for k in ["r", "ra", "rab", "rb", "rba", "rc", "s"] {
        b.delete(k.as_bytes()).unwrap();
    }
}

fn empty_prefix_scans_all(b: &dyn Backend) {
    for k in [&b"x"[..], b"\x00", b"\xff"] {
        b.put(k, b"v").unwrap();
    }
    let keys: Vec<Vec<u8>> = b.scan_prefix(b"").map(|r| r.unwrap().0).collect();
    assert_eq!(
        keys,
        vec![b"\x00".to_vec(), b"x".to_vec(), b"\xff".to_vec()]
    );
    // A prefix of 0xff bytes has no key past it (no `prefix_end`): still exactly its keys.
    b.put(b"\xff\xff", b"v").unwrap();
    let keys: Vec<Vec<u8>> = b.scan_prefix(b"\xff").map(|r| r.unwrap().0).collect();
    assert_eq!(keys, vec![b"\xff".to_vec(), b"\xff\xff".to_vec()]);
    let keys: Vec<Vec<u8>> = b.scan_prefix(b"\xff\xff").map(|r| r.unwrap().0).collect();
    assert_eq!(keys, vec![b"\xff\xff".to_vec()]);
}

fn batch_applies(b: &dyn Backend) {
    b.put(b"gone", b"v").unwrap();
    b.put(b"kept", b"old").unwrap();
    let mut batch = Batch::new();
    batch.put(b"new".to_vec(), b"1".to_vec());
    batch.delete(b"gone".to_vec());
    batch.put(b"kept".to_vec(), b"new".to_vec());
    batch.put(b"twice".to_vec(), b"first".to_vec());
    batch.put(b"twice".to_vec(), b"second".to_vec());
    batch.put(b"back".to_vec(), b"x".to_vec());
    batch.delete(b"back".to_vec());
    batch.delete(b"revived".to_vec());
    batch.put(b"revived".to_vec(), b"y".to_vec());
    assert_eq!(batch.len(), 9);
    b.apply(&batch).unwrap();
    assert_eq!(b.get(b"new").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(b.get(b"gone").unwrap(), None);
    assert_eq!(b.get(b"kept").unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(b.get(b"twice").unwrap().as_deref(), Some(&b"second"[..]));
    assert_eq!(
        b.get(b"back").unwrap(),
        None,
        "a put then delete in one batch"
    );
    assert_eq!(
        b.get(b"revived").unwrap().as_deref(),
        Some(&b"y"[..]),
        "a delete then put in one batch"
    );
}

fn empty_batch(b: &dyn Backend) {
    b.apply(&Batch::new()).unwrap();
    b.flush().unwrap();
    assert_eq!(b.scan_prefix(b"").count(), 0);
}

fn many_keys(b: &dyn Backend) {
    let mut batch = Batch::new();
    for i in (0u32..5000).rev() {
        batch.put(format!("n/{i:06}").into_bytes(), i.to_be_bytes().to_vec());
    }
    b.apply(&batch).unwrap();
    let mut count = 0u32;
    for (i, item) in b.scan_prefix(b"n/").enumerate() {
        let (k, v) = item.unwrap();
        assert_eq!(k, format!("n/{i:06}").into_bytes());
        assert_eq!(v, (i as u32).to_be_bytes());
        count += 1;
    }
    assert_eq!(count, 5000);
}

/// A value naming `owner` in its bytes 2..18, as sealed records do.
fn owned_value(owner: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![1, 2];
    v.extend_from_slice(&[owner; 16]);
    v.extend_from_slice(body);
    v
}

/// A batch of 5,000 keys `{prefix}/00000`… owned by `owner` (more than one statement's worth on
/// PostgreSQL) and a plain put of `plain`, with the owned keys in order.
fn many_owned(prefix: &str, owner: u8, plain: &[u8]) -> (Batch, Vec<Vec<u8>>) {
    let mut batch = Batch::new();
    let keys: Vec<Vec<u8>> = (0u32..5000)
        .map(|i| format!("{prefix}/{i:05}").into_bytes())
        .collect();
    for k in &keys {
        batch.put(k.clone(), owned_value(owner, k));
    }
    batch.put(plain.to_vec(), &b"plain"[..]);
    (batch, keys)
}

fn owned_keys_are_checked(b: &dyn Backend) {
    const OWNER: std::ops::Range<usize> = 2..18;
    // First, while no key has been found there already (a backend may then change how it
    // writes): new owned keys with a plain put.
    let (batch, new) = many_owned("o/new", b'N', b"p/with-new");
    let owned: Vec<&[u8]> = new.iter().map(Vec::as_slice).collect();
    assert_eq!(b.apply_owned(&batch, &owned, OWNER).unwrap(), None);
    b.flush().unwrap();
    assert_eq!(b.scan_prefix(b"o/new/").count(), 5000);
    assert_eq!(
        b.get(b"o/new/04999").unwrap(),
        Some(owned_value(b'N', b"o/new/04999"))
    );
    assert_eq!(b.get(b"p/with-new").unwrap(), Some(b"plain".to_vec()));
    b.put(b"o/a", &owned_value(b'A', b"first")).unwrap();
    b.put(b"o/short", b"short").unwrap();
    b.put(b"p/gone", b"deleted by a batch").unwrap();
    // The same owner, a new key, a value naming no owner, a plain put and a delete.
    let mut batch = Batch::new();
    batch.put(&b"o/a"[..], owned_value(b'A', b"second"));
    batch.put(&b"o/b"[..], owned_value(b'B', b"b"));
    batch.put(&b"o/short"[..], owned_value(b'B', b"now B's"));
    batch.put(&b"p/plain"[..], &b""[..]);
    batch.delete(&b"p/gone"[..]);
    let owned: [&[u8]; 4] = [b"o/a", b"o/b", b"o/short", b"o/a"];
    assert_eq!(b.apply_owned(&batch, &owned, OWNER).unwrap(), None);
    b.flush().unwrap();
    assert_eq!(b.get(b"o/a").unwrap(), Some(owned_value(b'A', b"second")));
    assert_eq!(b.get(b"o/b").unwrap(), Some(owned_value(b'B', b"b")));
    assert_eq!(
        b.get(b"o/short").unwrap(),
        Some(owned_value(b'B', b"now B's"))
    );
    assert_eq!(b.get(b"p/plain").unwrap(), Some(Vec::new()));
    assert_eq!(b.get(b"p/gone").unwrap(), None);
    // B takes A's key among others: nothing of the batch is written, and the key is named.
    let before: Vec<_> = b.scan_prefix(b"").map(|item| item.unwrap()).collect();
    let mut batch = Batch::new();
    batch.put(&b"o/c"[..], owned_value(b'B', b"c"));
    batch.put(&b"o/a"[..], owned_value(b'B', b"taken"));
    batch.put(&b"p/more"[..], &b"x"[..]);
    batch.delete(&b"p/plain"[..]);
    let owned: [&[u8]; 2] = [b"o/c", b"o/a"];
    assert_eq!(
        b.apply_owned(&batch, &owned, OWNER).unwrap(),
        Some(1),
        "the key held by another owner is named by its place in `owned`"
    );
    b.flush().unwrap();
    let after: Vec<_> = b.scan_prefix(b"").map(|item| item.unwrap()).collect();
    assert_eq!(after, before, "a refused batch writes nothing");
    // A batch of many owned keys, one of them held, deep inside: refused whole too.
    let (mut batch, keys) = many_owned("o/many", b'B', b"p/with-many");
    batch.put(&b"o/b"[..], owned_value(b'C', b"C takes B's"));
    let mut owned: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    owned.insert(4500, b"o/b");
    assert_eq!(b.apply_owned(&batch, &owned, OWNER).unwrap(), Some(4500));
    assert_eq!(b.scan_prefix(b"o/many/").count(), 0);
    assert_eq!(b.get(b"p/with-many").unwrap(), None);
    assert_eq!(b.get(b"o/b").unwrap(), Some(owned_value(b'B', b"b")));
}

fn clear_removes_everything(b: &dyn Backend) {
    let n = crate::CLEAR_BATCH + 17;
    let mut batch = Batch::new();
    for i in 0..n {
        batch.put(format!("c/{i:08}").into_bytes(), vec![i as u8; 8]);
    }
    batch.put(b"other".to_vec(), b"x".to_vec());
    b.apply(&batch).unwrap();
    b.clear().unwrap();
    assert_eq!(b.scan_prefix(&[]).count(), 0, "entries left after clear");
    assert_eq!(b.get(b"other").unwrap(), None);
    b.put(b"after", b"v").unwrap();
    assert_eq!(b.get(b"after").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(b.scan_prefix(&[]).count(), 1);
    // Clearing an empty backend is a no-op, not an error.
    b.clear().unwrap();
    b.clear().unwrap();
    assert_eq!(b.scan_prefix(&[]).count(), 0);
}

fn flushed_clear_survives_reopen(dir: &Path, open: Opener<'_>) {
    {
        let b = open(dir).expect("open for writing");
        for i in 0..100u32 {
            b.put(&i.to_be_bytes(), b"gone").unwrap();
        }
        b.flush().unwrap();
        b.clear().unwrap();
        b.put(b"new", b"kept").unwrap();
        b.flush().unwrap();
    }
    let b = open(dir).expect("reopen");
    let left: Vec<_> = b.scan_prefix(&[]).map(|item| item.unwrap().0).collect();
    assert_eq!(left, vec![b"new".to_vec()], "a flushed clear after reopen");
}

fn flushed_writes_survive_reopen(dir: &Path, open: Opener<'_>) {
    {
        let b = open(dir).expect("open for writing");
        b.put(b"kept", b"v1").unwrap();
        b.put(b"deleted", b"v").unwrap();
        let mut batch = Batch::new();
        batch.put(b"batched".to_vec(), b"b".to_vec());
        b.apply(&batch).unwrap();
        b.flush().unwrap();
        b.delete(b"deleted").unwrap();
        b.put(b"kept", b"v2").unwrap();
        b.flush().unwrap();
    }
    let b = open(dir).expect("reopen");
    assert_eq!(
        b.get(b"kept").unwrap().as_deref(),
        Some(&b"v2"[..]),
        "after reopen"
    );
    assert_eq!(
        b.get(b"batched").unwrap().as_deref(),
        Some(&b"b"[..]),
        "after reopen"
    );
    assert_eq!(
        b.get(b"deleted").unwrap(),
        None,
        "a flushed delete after reopen"
    );
}
