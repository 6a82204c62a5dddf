//! The log over HTTP from the command line: `domicile audit serve` publishes a log as
//! tlog-tiles, `domicile witness serve` cosigns it, and `domicile audit verify --url` follows it
//! with witness quorum, and fails on a tampered tile or entry bundle served in its place.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domicile_audit::{doc_example_entry, AuditLog, KeyKind, LogConfig, SigningKey};
use domicile_tlog_http::{witness_log, HttpClient, WitnessEndpoint};

/// A server child process, killed when dropped.
struct Server(Child, SocketAddr);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("domicile {args:?} printed {line:?}"))
        .parse()
        .unwrap();
    Server(child, addr)
}

fn domicile(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args(args)
        .output()
        .unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Serves what `upstream` serves, with one byte of `target` flipped.
async fn tamper(
    State((upstream, target)): State<(String, String)>,
    UrlPath(path): UrlPath<String>,
) -> axum::response::Response {
    let client = HttpClient::new(&[]).unwrap();
    match client.get(&format!("{upstream}/{path}")).await.unwrap() {
        Some(bytes) => {
            let mut bytes = bytes.to_vec();
            if path == target {
                let at = bytes.len() / 2;
                bytes[at] ^= 0x20;
            }
            bytes.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn tampering_proxy(rt: &tokio::runtime::Runtime, upstream: String, target: &str) -> String {
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::get(tamper))
        .with_state((upstream, target.to_owned()));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[test]
fn an_auditor_follows_a_witnessed_log_over_http_and_finds_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = SigningKey::generate("audit.example/us", KeyKind::Ed25519).unwrap();
    std::fs::write(dir.join("log.vkey"), format!("{}\n", key.verifier())).unwrap();
    let out = domicile(&[
        "audit",
        "keygen",
        "--origin",
        "witness.example/w1",
        "--out",
        p(&dir.join("w1")),
        "--witness",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A key path is input: a device that never ends is refused by name, not read forever.
    let out = domicile(&[
        "witness",
        "serve",
        "--key",
        p(&dir.join("w1/witness.key")),
        "--log-vkey",
        "/dev/zero",
        "--state",
        p(&dir.join("w1/state")),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/zero"), "{err}");

    let log_dir = dir.join("log");
    let log = AuditLog::open(&log_dir, LogConfig::new(key)).unwrap();
    for i in 0..300 {
        let mut e = doc_example_entry().unwrap();
        e.request_id = format!("req-{i}");
        log.append(e).unwrap();
    }

    let witness = start(&[
        "witness",
        "serve",
        "--key",
        p(&dir.join("w1/witness.key")),
        "--log-vkey",
        p(&dir.join("log.vkey")),
        "--state",
        p(&dir.join("w1/state")),
        "--listen",
        "127.0.0.1:0",
    ]);
    let publisher = start(&[
        "audit",
        "serve",
        "--log",
        p(&log_dir),
        "--listen",
        "127.0.0.1:0",
    ]);
    let url = format!("http://{}", publisher.1);

    // The log gathers the witness's cosignature, as a node does after each checkpoint.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let wvkey = std::fs::read_to_string(dir.join("w1/witness.vkey")).unwrap();
    let endpoints = [WitnessEndpoint::new(
        format!("http://{}", witness.1),
        wvkey.trim().parse().unwrap(),
    )];
    let client = HttpClient::new(&[]).unwrap();
    rt.block_on(witness_log(&client, &endpoints, &log, 1))
        .unwrap();

    let verify = |url: &str, quorum: &str| {
        domicile(&[
            "audit",
            "verify",
            "--url",
            url,
            "--vkey",
            p(&dir.join("log.vkey")),
            "--witness-vkey",
            p(&dir.join("w1/witness.vkey")),
            "--quorum",
            quorum,
        ])
    };
    let out = verify(&url, "1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("OK: 300 entries over HTTP (2 entry bundles, 3 tiles)")
            && stdout.contains("1 witness cosignatures"),
        "{stdout}"
    );

    // A quorum of two fails when only one of the two trusted witnesses cosigned.
    let out = domicile(&[
        "audit",
        "keygen",
        "--origin",
        "witness.example/w2",
        "--out",
        p(&dir.join("w2")),
        "--witness",
    ]);
    assert!(out.status.success());
    let out = domicile(&[
        "audit",
        "verify",
        "--url",
        &url,
        "--vkey",
        p(&dir.join("log.vkey")),
        "--witness-vkey",
        p(&dir.join("w1/witness.vkey")),
        "--witness-vkey",
        p(&dir.join("w2/witness.vkey")),
        "--quorum",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 trusted witnesses cosigned"), "{stderr}");
    // So does another log's key.
    let other = SigningKey::generate("audit.example/us", KeyKind::Ed25519).unwrap();
    std::fs::write(dir.join("other.vkey"), format!("{}\n", other.verifier())).unwrap();
    let out = domicile(&[
        "audit",
        "verify",
        "--url",
        &url,
        "--vkey",
        p(&dir.join("other.vkey")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED"));

    // One byte changed in an entry bundle, or in a hash tile at level 0 or 1, is found.
    for target in [
        "tile/entries/000",
        "tile/entries/001.p/44",
        "tile/0/001.p/44",
        "tile/1/000.p/1",
    ] {
        let proxy = tampering_proxy(&rt, url.clone(), target);
        let out = verify(&proxy, "1");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{target}: {stderr}");
        assert!(
            stderr.contains("FAILED") && stderr.contains("does not verify"),
            "{target}: {stderr}"
        );
    }
    // The proxy itself passes what it does not alter.
    let proxy = tampering_proxy(&rt, url.clone(), "nothing");
    assert!(verify(&proxy, "1").status.success());
}
