//! The witness answers as C2SP tlog-witness says, for each status code, over a real socket;
//! its state survives a restart; rollbacks, forks and races are refused; a log gathers a quorum
//! of cosignatures with `submit_to_witnesses` and an auditor checks them with `follow`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::{grow, log_key, open_log, request, serve, tempdir};
use domicile_audit::{
    verify_cosignature, AuditLog, KeyKind, Note, SigningKey, VerifierKey, WitnessPolicy,
};
use domicile_tlog_http::{
    follow, public_routes, state_path, submit_to_witnesses, witness_log, witness_routes,
    HttpClient, WitnessEndpoint, WitnessService,
};

const ORIGIN: &str = "audit.example/us";

fn witness_key(name: &str, seed: u8) -> SigningKey {
    SigningKey::from_seed(name, KeyKind::Cosignature, [seed; 32]).unwrap()
}

fn start_witness(key: &SigningKey, logs: Vec<VerifierKey>, state: &Path) -> SocketAddr {
    let service = WitnessService::open(key, logs, state).unwrap();
    serve(witness_routes(Arc::new(service)))
}

fn body(old: u64, proof: &[[u8; 32]], note: &Note) -> Vec<u8> {
    let mut out = format!("old {old}\n");
    for h in proof {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&note.to_text());
    out.into_bytes()
}

fn add(addr: SocketAddr, body: &[u8]) -> common::Answer {
    request(addr, "POST", "/add-checkpoint", body)
}

fn text(a: &common::Answer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

/// A log with `size` entries and a checkpoint signed for it.
fn log_at(dir: &Path, key: SigningKey, size: u64) -> (Arc<AuditLog>, Note) {
    let log = Arc::new(open_log(dir, key));
    grow(&log, size);
    let note = log.checkpoint().unwrap().unwrap();
    (log, note)
}

#[test]
fn each_status_code_as_the_spec_says() {
    let tmp = tempdir();
    let key = log_key(ORIGIN);
    let vkey = key.verifier();
    let wkey = witness_key("witness.example/w1", 1);
    let addr = start_witness(&wkey, vec![vkey.clone()], &tmp.path().join("state"));
    let (log, note10) = log_at(&tmp.path().join("log"), key, 10);

    // 200: the first checkpoint, from size 0 with no proof; a valid cosignature line.
    let a = add(addr, &body(0, &[], &note10));
    assert_eq!(a.status, 200, "{}", text(&a));
    let line = text(&a);
    assert!(line.starts_with("\u{2014} witness.example/w1 ") && line.ends_with('\n'));
    let mut cosigned = note10.clone();
    cosigned.signatures.extend(
        Note::parse(format!("{}\n{line}", note10.text).as_bytes())
            .unwrap()
            .signatures,
    );
    let time = verify_cosignature(&cosigned, &wkey.verifier()).unwrap();
    assert!(time > 0);

    grow(&log, 25);
    let note25 = log.checkpoint().unwrap().unwrap();
    let proof = log.prove_consistency(10, 25).unwrap();

    // 409: the old size is not the witness's; the body is its size, as text/x.tlog.size.
    let a = add(addr, &body(0, &[], &note25));
    assert_eq!(a.status, 409);
    assert_eq!(a.header("content-type"), Some("text/x.tlog.size"));
    assert_eq!(text(&a), "10\n");
    assert_eq!(add(addr, &body(11, &proof, &note25)).status, 409);

    // 422: a proof that does not verify, a proof one hash short.
    let mut bad = proof.clone();
    bad[0][0] ^= 1;
    assert_eq!(add(addr, &body(10, &bad, &note25)).status, 422);
    assert_eq!(
        add(addr, &body(10, &proof[..proof.len() - 1], &note25)).status,
        422
    );

    // 400: old larger than the checkpoint; malformed bodies.
    assert_eq!(add(addr, &body(26, &proof, &note25)).status, 400);
    for bad in [
        &b"old 10\n"[..],
        b"old 010\n\nx",
        b"new 10\n\n",
        b"old 10\nnot base64!\n\n",
    ] {
        assert_eq!(
            add(addr, bad).status,
            400,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut b = body(10, &proof, &note25);
    b.extend_from_slice(b"trailing garbage");
    assert_eq!(add(addr, &b).status, 400);

    // 404: a log the witness does not follow.
    let other = log_key("audit.example/row");
    let foreign = other
        .sign_note(&note25.text.replace(ORIGIN, "audit.example/row"))
        .unwrap();
    assert_eq!(add(addr, &body(10, &proof, &foreign)).status, 404);

    // 403: the right origin signed by another key; the log's own signature altered.
    let impostor = SigningKey::from_seed(ORIGIN, KeyKind::Ed25519, [7; 32]).unwrap();
    let forged = impostor.sign_note(&note25.text).unwrap();
    assert_eq!(add(addr, &body(10, &proof, &forged)).status, 403);
    let mut altered = note25.clone();
    altered.signatures[0].bytes[5] ^= 1;
    assert_eq!(add(addr, &body(10, &proof, &altered)).status, 403);

    // None of that moved the witness: the good request still succeeds, and re-submitting the
    // same checkpoint from its own size is fine too.
    assert_eq!(add(addr, &body(10, &proof, &note25)).status, 200);
    assert_eq!(add(addr, &body(25, &[], &note25)).status, 200);

    // 422: the same size with another root.
    let same_size_fork = with_root(&note25.text, &[3; 32]);
    let fork_note = log_key(ORIGIN).sign_note(&same_size_fork).unwrap();
    assert_eq!(add(addr, &body(25, &[], &fork_note)).status, 422);
}

/// A checkpoint body like `text` but with another root.
fn with_root(text: &str, root: &[u8; 32]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[2] = B64.encode(root);
    format!("{}\n", lines.join("\n"))
}

#[test]
fn rollbacks_and_forks_are_refused_and_the_state_survives_a_restart() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let key = log_key(ORIGIN);
    let vkey = key.verifier();
    let wkey = witness_key("witness.example/w1", 1);
    let (log, note20) = log_at(&tmp.path().join("log"), key, 20);
    let addr = start_witness(&wkey, vec![vkey.clone()], &state);
    assert_eq!(add(addr, &body(0, &[], &note20)).status, 200);

    // A fork: another history under the same key, 30 entries whose first 20 differ.
    let fork_dir = tmp.path().join("fork");
    let fork = Arc::new(open_log(&fork_dir, log_key(ORIGIN)));
    {
        let mut e = domicile_audit::doc_example_entry().unwrap();
        e.request_id = "the-fork".into();
        fork.append(e).unwrap();
    }
    grow(&fork, 30);
    let fork30 = fork.checkpoint().unwrap().unwrap();
    let fork_proof = fork.prove_consistency(20, 30).unwrap();
    assert_eq!(add(addr, &body(20, &fork_proof, &fork30)).status, 422);

    // A rollback to a smaller size of the true log: 409 from its own size, 400 from 20.
    let small_dir = tmp.path().join("small");
    let small = Arc::new(open_log(&small_dir, log_key(ORIGIN)));
    grow(&small, 5);
    let note5 = small.checkpoint().unwrap().unwrap();
    assert_eq!(add(addr, &body(5, &[], &note5)).status, 409);
    assert_eq!(add(addr, &body(20, &[], &note5)).status, 400);

    // Monitors read what it cosigned: the log's signature and the cosignature, both valid.
    let hash = state_path(Path::new(""), ORIGIN).display().to_string();
    let a = common::get(addr, &format!("/{hash}/checkpoint"));
    assert_eq!(a.status, 200);
    let served = Note::parse(&a.body).unwrap();
    assert_eq!(served.text, note20.text);
    served.verify(&log_key(ORIGIN).verifier()).unwrap();
    verify_cosignature(&served, &wkey.verifier()).unwrap();
    assert_eq!(
        common::get(addr, &format!("/{}/checkpoint", "0".repeat(64))).status,
        404
    );

    // A new witness process on the same state remembers size 20.
    let addr2 = start_witness(&wkey, vec![vkey], &state);
    let a = add(addr2, &body(0, &[], &note20));
    assert_eq!((a.status, text(&a)), (409, "20\n".to_owned()));
    grow(&log, 40);
    let note40 = log.checkpoint().unwrap().unwrap();
    let proof = log.prove_consistency(20, 40).unwrap();
    assert_eq!(add(addr2, &body(20, &proof, &note40)).status, 200);
}

#[test]
fn racing_submissions_from_one_size_get_exactly_one_cosignature() {
    let tmp = tempdir();
    let key = log_key(ORIGIN);
    let vkey = key.verifier();
    let wkey = witness_key("witness.example/w1", 1);
    let (log, note10) = log_at(&tmp.path().join("log"), key, 10);
    let addr = start_witness(&wkey, vec![vkey], &tmp.path().join("state"));
    assert_eq!(add(addr, &body(0, &[], &note10)).status, 200);
    // Eight copies of one request from size 10, sent at once: one wins, the others find the
    // witness already moved (the check and the update are one step).
    grow(&log, 18);
    let note = log.checkpoint().unwrap().unwrap();
    let proof = log.prove_consistency(10, 18).unwrap();
    let bodies: Vec<Vec<u8>> = (0..8).map(|_| body(10, &proof, &note)).collect();
    let answers: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|b| s.spawn(move || add(addr, b).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        answers.iter().filter(|s| **s == 200).count(),
        1,
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|s| *s == 200 || *s == 409),
        "{answers:?}"
    );
}

#[test]
fn a_log_gathers_a_quorum_and_an_auditor_checks_it_over_http() {
    let tmp = tempdir();
    let key = log_key(ORIGIN);
    let vkey = key.verifier();
    let w1 = witness_key("witness.example/w1", 1);
    let w2 = witness_key("witness.example/w2", 2);
    let w3 = witness_key("witness.example/w3", 3);
    let a1 = start_witness(&w1, vec![vkey.clone()], &tmp.path().join("s1"));
    let a2 = start_witness(&w2, vec![vkey.clone()], &tmp.path().join("s2"));
    let log_dir = tmp.path().join("log");
    let log = Arc::new(open_log(&log_dir, key));
    let server = serve(public_routes(log_dir.clone()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = HttpClient::new(&[]).unwrap();
    let endpoints = vec![
        WitnessEndpoint::new(format!("http://{a1}"), w1.verifier()),
        WitnessEndpoint::new(format!("http://{a2}/"), w2.verifier()),
        // Nobody listens here: a refusal, not a failure, while the quorum is met.
        WitnessEndpoint::new("http://127.0.0.1:9", w3.verifier()),
    ];
    for size in [5u64, 300, 301] {
        grow(&log, size);
        let cosigned = rt
            .block_on(witness_log(&client, &endpoints, &log, 2))
            .unwrap();
        assert_eq!(cosigned.cosigned_by.len(), 2);
        assert_eq!(cosigned.refusals.len(), 1);
    }
    // A witness that accepts connections but never answers is a refusal once the client's
    // timeout passes, not a stalled log.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let slow_client = HttpClient::new(&[])
        .unwrap()
        .with_timeout(std::time::Duration::from_millis(300));
    let silent_endpoint = [WitnessEndpoint::new(
        format!("http://{}", silent.local_addr().unwrap()),
        w3.verifier(),
    )];
    let cosigned = rt
        .block_on(submit_to_witnesses(
            &slow_client,
            &silent_endpoint,
            &log.latest_checkpoint().unwrap(),
            |a, b| log.prove_consistency(a, b),
            0,
        ))
        .unwrap();
    assert!(
        cosigned.refusals[0].1.contains("no complete answer within"),
        "{:?}",
        cosigned.refusals
    );

    // A third witness that never cosigned cannot make a quorum of three.
    let err = rt
        .block_on(submit_to_witnesses(
            &client,
            &endpoints,
            &log.latest_checkpoint().unwrap(),
            |a, b| log.prove_consistency(a, b),
            3,
        ))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("2 witnesses cosigned, 3 are needed"),
        "{err}"
    );

    let url = format!("http://{server}");
    let two = WitnessPolicy::new(vec![w1.verifier(), w2.verifier()], 2).unwrap();
    let report = rt
        .block_on(follow(&client, &url, &vkey, Some(&two), &[]))
        .unwrap();
    assert_eq!((report.entries, report.witnesses), (301, 2));
    assert_eq!(report.bundles, 2);
    assert_eq!(report.tiles, 3);
    let three = WitnessPolicy::new(vec![w1.verifier(), w2.verifier(), w3.verifier()], 3).unwrap();
    let err = rt
        .block_on(follow(&client, &url, &vkey, Some(&three), &[]))
        .unwrap_err();
    assert!(
        err.to_string().contains("2 trusted witnesses cosigned"),
        "{err}"
    );
}

#[test]
fn a_witness_that_cannot_persist_its_state_cosigns_nothing_more() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let key = log_key(ORIGIN);
    let wkey = witness_key("witness.example/w1", 1);
    let (log, note5) = log_at(&tmp.path().join("log"), key, 5);
    let addr = start_witness(&wkey, vec![log_key(ORIGIN).verifier()], &state);
    assert_eq!(add(addr, &body(0, &[], &note5)).status, 200);
    // The state directory becomes a file: the next state cannot be written.
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::write(&state, b"not a directory").unwrap();
    grow(&log, 9);
    let note9 = log.checkpoint().unwrap().unwrap();
    let proof = log.prove_consistency(5, 9).unwrap();
    let a = add(addr, &body(5, &proof, &note9));
    assert_eq!(a.status, 500, "{}", text(&a));
    assert!(
        !text(&a).contains(&*state.to_string_lossy()),
        "{}",
        text(&a)
    );
    // No cosignature was handed out for 9, and none will be until a restart reads the disk.
    assert_eq!(add(addr, &body(9, &[], &note9)).status, 503);
    assert_eq!(add(addr, &body(5, &proof, &note9)).status, 503);
}
