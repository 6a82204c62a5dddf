//! Property: any single changed, dropped, duplicated or swapped byte range in a log's entry
//! segments or its signed checkpoints is caught by `verify`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use domicile_audit::{doc_example_entry, verify, AuditLog, KeyKind, LogConfig, SigningKey};
use proptest::prelude::*;

fn key() -> SigningKey {
    SigningKey::from_seed("audit.example/row", KeyKind::Ed25519, [4; 32]).unwrap()
}

/// A log of 40 entries over three segments with checkpoints at 9, 18, 27, 36 and 40, built once.
fn template() -> &'static (tempfile::TempDir, Vec<PathBuf>) {
    static T: OnceLock<(tempfile::TempDir, Vec<PathBuf>)> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = LogConfig::new(key());
        cfg.checkpoint_every = 9;
        cfg.checkpoint_interval = None;
        cfg.segment_bytes = 6000;
        let log = AuditLog::open(dir.path(), cfg).unwrap();
        for i in 0..40u64 {
            let mut e = doc_example_entry().unwrap();
            e.time_ms += i;
            e.request_id = format!("req-{i}");
            log.append(e).unwrap();
        }
        log.close().unwrap();
        drop(log);
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{files:?}");
        files.push(dir.path().join("checkpoints.notes"));
        let rel = files
            .iter()
            .map(|f| f.strip_prefix(dir.path()).unwrap().to_owned())
            .collect();
        verify(dir.path(), &key().verifier(), None, &mut |_, _| {}).unwrap();
        (dir, rel)
    })
}

#[derive(Debug, Clone)]
enum Damage {
    /// XOR the range with a non-zero byte.
    Change { start: usize, len: usize, xor: u8 },
    /// Remove the range.
    Drop { start: usize, len: usize },
    /// Insert a copy of the range right after it.
    Duplicate { start: usize, len: usize },
    /// Swap the range with the one right after it, of the same length.
    Swap { start: usize, len: usize },
}

fn damage() -> impl Strategy<Value = Damage> {
    let range = (any::<prop::sample::Index>(), 1usize..300);
    prop_oneof![
        (range.clone(), 1u8..=255).prop_map(|((s, len), xor)| Damage::Change {
            start: s.index(1 << 20),
            len,
            xor
        }),
        range.clone().prop_map(|(s, len)| Damage::Drop {
            start: s.index(1 << 20),
            len
        }),
        range.clone().prop_map(|(s, len)| Damage::Duplicate {
            start: s.index(1 << 20),
            len
        }),
        range.prop_map(|(s, len)| Damage::Swap {
            start: s.index(1 << 20),
            len
        }),
    ]
}

/// Applies the damage to `bytes`; the start is taken modulo the file length.
fn apply(bytes: &[u8], d: &Damage) -> Vec<u8> {
    let n = bytes.len();
    let mut out = bytes.to_vec();
    match *d {
        Damage::Change { start, len, xor } => {
            let s = start % n;
            for b in &mut out[s..(s + len).min(n)] {
                *b ^= xor;
            }
        }
        Damage::Drop { start, len } => {
            let s = start % n;
            out.drain(s..(s + len).min(n));
        }
        Damage::Duplicate { start, len } => {
            let s = start % n;
            let e = (s + len).min(n);
            let copy = bytes[s..e].to_vec();
            out.splice(e..e, copy);
        }
        Damage::Swap { start, len } => {
            let len = len.min(n / 2).max(1);
            let s = start % (n - 2 * len + 1);
            let (a, b) = (s..s + len, s + len..s + 2 * len);
            out[a.clone()].copy_from_slice(&bytes[b.clone()]);
            out[b].copy_from_slice(&bytes[a]);
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn any_damaged_byte_range_is_caught(which in any::<prop::sample::Index>(), d in damage()) {
        let (dir, files) = template();
        let file = &files[which.index(files.len())];
        let original = std::fs::read(dir.path().join(file)).unwrap();
        let damaged = apply(&original, &d);
        // A swap of two equal ranges changes nothing, and nothing is there to catch.
        prop_assume!(damaged != original);

        let copy = tempfile::tempdir().unwrap();
        copy_tree(dir.path(), copy.path());
        std::fs::write(copy.path().join(file), &damaged).unwrap();
        let result = verify(copy.path(), &key().verifier(), None, &mut |_, _| {});
        prop_assert!(result.is_err(), "{d:?} in {} went unnoticed", file.display());
    }
}
