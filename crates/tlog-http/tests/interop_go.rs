//! Interoperability: a log served by `public_routes` followed by Go's golang.org/x/mod/sumdb/tlog
//! tile client and sumdb/note (`interop/followtiles.go`), code that shares nothing with ours.
//!
//! Needs `go` and the x/mod sources in GOPATH mode (Debian: `apt-get install golang-go
//! golang-golang-x-mod-dev`). Without them the test says it skipped, as crates/audit's does.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{grow, log_key, open_log, serve, tempdir};
use domicile_tlog_http::public_routes;

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
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: Go tlog-tiles interoperability check (go found: {has_go}, golang.org/x/mod in {}: {has_mod})",
            gopath.display()
        );
        None
    }
}

fn followtiles(gopath: &Path, url: &str, vkey: &Path) -> std::process::Output {
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/followtiles.go");
    Command::new("go")
        .arg("run")
        .arg(program)
        .args(["-url", url, "-vkey"])
        .arg(vkey)
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env("GOFLAGS", "")
        .output()
        .unwrap()
}

#[test]
fn go_sumdb_tlog_follows_our_tiles() {
    let Some(gopath) = gopath() else { return };
    let tmp = tempdir();
    let key = log_key("audit.example.com/us");
    let vkey = key.verifier();
    let vkey_file = tmp.path().join("log.vkey");
    std::fs::write(&vkey_file, format!("{vkey}\n")).unwrap();
    let log = Arc::new(open_log(&tmp.path().join("log"), key));
    let addr = serve(public_routes(tmp.path().join("log")));
    let url = format!("http://{addr}");
    // Level-0, level-1 and level-2 tiles, full and partial.
    for size in [1u64, 300, 65_536 + 300] {
        grow(&log, size);
        log.checkpoint().unwrap();
        let out = followtiles(&gopath, &url, &vkey_file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.starts_with(&format!("OK {size} ")),
            "size {size}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Another key of the same name: the Go note verifier refuses the checkpoint.
    let other = domicile_audit::SigningKey::generate(
        "audit.example.com/us",
        domicile_audit::KeyKind::Ed25519,
    )
    .unwrap();
    std::fs::write(&vkey_file, format!("{}\n", other.verifier())).unwrap();
    assert!(!followtiles(&gopath, &url, &vkey_file).status.success());
}
