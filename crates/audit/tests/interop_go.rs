//! Interoperability: our checkpoints, tree and proofs checked by Go's golang.org/x/mod/sumdb/note
//! and golang.org/x/mod/sumdb/tlog (`interop/checklog.go`), code that shares nothing with ours.
//!
//! Needs `go` and the x/mod sources in GOPATH mode (Debian: `apt-get install golang-go
//! golang-golang-x-mod-dev`, which puts them in /usr/share/gocode). Without them the test says it
//! skipped; Go is an optional check, and the reference vectors from the same implementations run
//! everywhere.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use domicile_audit::{
    doc_example_entry, load_tree, prove, stored_checkpoints, AuditLog, Checkpoint, KeyKind,
    LogConfig, SigningKey,
};

fn gopath() -> Option<PathBuf> {
    let gopath = std::env::var_os("DOMICILE_GOPATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/gocode"));
    let has_go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    let has_mod = gopath.join("src/golang.org/x/mod/sumdb/tlog").is_dir();
    if has_go && has_mod {
        Some(gopath)
    } else {
        // Straight to stderr: the harness hides eprintln! output of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: Go interoperability check (go found: {has_go}, golang.org/x/mod in {}: {has_mod})",
            gopath.display()
        );
        None
    }
}

fn checklog(gopath: &Path, args: &[String]) -> std::process::Output {
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/checklog.go");
    Command::new("go")
        .arg("run")
        .arg(program)
        .args(args)
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env("GOFLAGS", "")
        .output()
        .unwrap()
}

#[test]
fn go_sumdb_note_and_tlog_accept_our_log_and_proofs() {
    let Some(gopath) = gopath() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let key = SigningKey::from_seed("audit.example.com/us", KeyKind::Ed25519, [21; 32]).unwrap();
    let vkey = tmp.path().join("log.vkey");
    std::fs::write(&vkey, format!("{}\n", key.verifier())).unwrap();
    let mut cfg = LogConfig::new(key);
    cfg.checkpoint_every = 13;
    cfg.checkpoint_interval = None;
    cfg.segment_bytes = 4000;
    let log = AuditLog::open(&dir, cfg).unwrap();
    for i in 0..100u64 {
        let mut e = doc_example_entry().unwrap();
        e.request_id = format!("req-{i}");
        log.append(e).unwrap();
    }
    log.close().unwrap();
    drop(log);

    let mut args = vec![
        "-log".to_owned(),
        dir.display().to_string(),
        "-vkey".to_owned(),
        vkey.display().to_string(),
    ];
    for seq in [0u64, 1, 12, 13, 63, 64, 98, 99] {
        let f = tmp.path().join(format!("entry-{seq}.tlog-proof"));
        std::fs::write(&f, prove(&dir, seq).unwrap().to_text()).unwrap();
        args.extend(["-proof".to_owned(), f.display().to_string()]);
    }
    let tree = load_tree(&dir).unwrap();
    let sizes: Vec<Checkpoint> = stored_checkpoints(&dir)
        .unwrap()
        .iter()
        .map(|n| Checkpoint::parse(&n.text).unwrap())
        .collect();
    for (a, b) in [(0, sizes.len() - 1), (1, 2), (2, sizes.len() - 1)] {
        let (a, b) = (&sizes[a], &sizes[b]);
        let proof = tree.consistency_proof(a.size, b.size).unwrap();
        let mut text = format!(
            "{} {}\n{}\n{}\n",
            a.size,
            b.size,
            B64.encode(a.root),
            B64.encode(b.root)
        );
        for h in proof {
            text.push_str(&B64.encode(h));
            text.push('\n');
        }
        let f = tmp
            .path()
            .join(format!("consistency-{}-{}", a.size, b.size));
        std::fs::write(&f, text).unwrap();
        args.extend(["-consistency".to_owned(), f.display().to_string()]);
    }
    let out = checklog(&gopath, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "checklog failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{stdout}");
    let want = format!("note+tlog: 100 entries, {} checkpoints", sizes.len());
    assert!(stdout.contains(&want), "{stdout}");
    assert!(sizes.len() >= 3, "{sizes:?}");
    assert_eq!(stdout.matches(" proves ").count(), 8 + 3, "{stdout}");

    // And Go rejects what it should: a proof moved to another index.
    let f = tmp.path().join("entry-12.tlog-proof");
    let moved = std::fs::read_to_string(&f)
        .unwrap()
        .replacen("index 12", "index 11", 1);
    std::fs::write(&f, moved).unwrap();
    let out = checklog(&gopath, &args);
    assert!(!out.status.success(), "Go accepted a moved proof");
}
