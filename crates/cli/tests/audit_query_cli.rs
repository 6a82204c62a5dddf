//! `domicile audit query --subject ID --audit-key KEY` across a split: the real binary, on a
//! deployment split by the real binary. Bulk work (the split's inventory, migration reads and
//! writes, shreds) is listed for the people it touched, each with a verified proof, and for no
//! one else.

mod common;

use std::path::Path;
use std::process::Output;

use common::{domicile, global_world, text};

fn query(log: &Path, key: &Path, subject: &str, format: &str) -> Output {
    domicile(&[
        "audit",
        "query",
        "--log",
        log.to_str().unwrap(),
        "--subject",
        subject,
        "--audit-key",
        key.to_str().unwrap(),
        "--format",
        format,
    ])
}

fn jsonl(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn query_by_subject_lists_the_bulk_work_of_a_split_with_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    global_world(&data, &keys);
    let (d, k) = (data.to_str().unwrap(), keys.to_str().unwrap());
    let run = domicile(&[
        "split", "run", "--data", d, "--keys", k, "--to", "us-split", "--quiet",
    ]);
    assert!(run.status.success(), "{}", text(&run));

    let us_log = data.join("us/audit");
    let us_key = keys.join("us/audit/pseudonym.key");
    let global_log = data.join("global/audit");
    let global_key = keys.join("global/audit/pseudonym.key");

    // In the US log, user-0 was written by the split's migration batch: a bulk entry that
    // names them only through its subject set, listed with its proof.
    let out = query(&us_log, &us_key, "user-0", "jsonl");
    assert!(out.status.success(), "{}", text(&out));
    let rows = jsonl(&out);
    let migrated: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|e| e["action"] == "migrate" && e["subject_proof"].is_object())
        .collect();
    assert!(!migrated.is_empty(), "{}", text(&out));
    for e in &migrated {
        assert_eq!(e["resource"]["target"]["kind"], "batch", "{e}");
        // What the batch wrote, per class and collection (not "protected" and "*" alone).
        let parts = e["resource"]["target"]["parts"].as_array().unwrap();
        let names: Vec<&str> = parts
            .iter()
            .map(|p| p["collection"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"profile"), "{e}");
    }
    // user-9 was never anyone's: nothing in the US log touched them.
    let out = query(&us_log, &us_key, "user-9", "jsonl");
    assert!(out.status.success(), "{}", text(&out));
    assert!(jsonl(&out).is_empty(), "{}", text(&out));

    // In the global log, every person was read by the split and shredded: the inventory, the
    // migration reads and the shred all list user-1, with proofs, in an aligned table.
    let out = query(&global_log, &global_key, "user-1", "table");
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    for action in ["scan", "migrate", "shred"] {
        assert!(
            table
                .lines()
                .any(|l| l.contains(&format!("  {action} ")) && l.contains("proof of")),
            "{action} in\n{table}"
        );
    }
    assert!(!text(&out).contains("user-1"), "the id is never printed");
    assert!(
        text(&out).contains("each proven by its subject set"),
        "{}",
        text(&out)
    );

    // The same answer from the pseudonym alone, without the audit key.
    let pseudonym = domicile(&[
        "audit",
        "pseudonym",
        "--audit-key",
        global_key.to_str().unwrap(),
        "--subject",
        "user-1",
    ]);
    let pseudonym = String::from_utf8(pseudonym.stdout).unwrap();
    let by_pseudonym = domicile(&[
        "audit",
        "query",
        "--log",
        global_log.to_str().unwrap(),
        "--subject",
        pseudonym.trim(),
        "--format",
        "jsonl",
    ]);
    assert_eq!(
        jsonl(&by_pseudonym),
        jsonl(&query(&global_log, &global_key, "user-1", "jsonl"))
    );

    // `audit verify` checks the lists beside the log as well as the entries.
    let vkey = data.join("global/log.vkey");
    let verify = |log: &Path| {
        domicile(&[
            "audit",
            "verify",
            "--log",
            log.to_str().unwrap(),
            "--vkey",
            vkey.to_str().unwrap(),
        ])
    };
    let ok = verify(&global_log);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains("bulk entries match their lists"),
        "{}",
        text(&ok)
    );

    // A subject list beside the log edited to drop user-1: the query refuses to answer rather
    // than say the person was not there, and verify fails.
    let sets = global_log.join("subjects");
    let mut edited = 0;
    for f in std::fs::read_dir(&sets).unwrap() {
        let path = f.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if bytes.len() > 16 + 32 {
            let mut cut = bytes[..bytes.len() - 32].to_vec();
            let n = u64::from_be_bytes(cut[8..16].try_into().unwrap()) - 1;
            cut[8..16].copy_from_slice(&n.to_be_bytes());
            std::fs::write(&path, cut).unwrap();
            edited += 1;
        }
    }
    assert!(edited > 0);
    let out = query(&global_log, &global_key, "user-1", "table");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("does not verify"), "{}", text(&out));
    let bad = verify(&global_log);
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(text(&bad).contains("subject set"), "{}", text(&bad));
}

#[test]
fn a_subject_id_without_the_audit_key_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = domicile(&[
        "audit",
        "query",
        "--log",
        dir.path().to_str().unwrap(),
        "--subject",
        "alice@example.com",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--audit-key"), "{}", text(&out));
    assert!(!text(&out).contains("alice"), "{}", text(&out));
}

/// `audit check-proof` reads its input with a size bound: an endless input (here
/// `/dev/urandom`) is refused promptly, not read until memory runs out.
#[test]
fn check_proof_reads_its_input_with_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = domicile(&[
        "audit",
        "keygen",
        "--origin",
        "audit.example/us",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(keygen.status.success(), "{}", text(&keygen));
    let vkey = dir.path().join("log.vkey");
    let out = domicile(&[
        "audit",
        "check-proof",
        "--vkey",
        vkey.to_str().unwrap(),
        "/dev/urandom",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("/dev/urandom"), "{}", text(&out));
}
