//! `domicile audit` end to end: the real binary, real files, the way an operator and an auditor
//! use it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn domicile(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = domicile(args, stdin);
    assert!(
        out.status.success(),
        "domicile {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn entry_line(i: u32, subject: &str, principal: &str, allowed: bool) -> String {
    let rule = if allowed {
        "us-split/access/support-reads-with-ticket"
    } else {
        "us-split/access/deny-by-default"
    };
    format!(
        concat!(
            r#"{{"time_ms":{},"region":"us","principal":{{"id":"{}","organisation":"ttusds","#,
            r#""office_country":"US","location_country":"US"}},"action":"read","#,
            r#""resource":{{"class":"protected","collection":"profiles","target":{{"kind":"record","key":"hmac:{:064x}"}}}},"#,
            r#""purpose":{{"code":"user_requested_support","ticket":"SUP-{}"}},"#,
            r#""decision":{{"allowed":{},"rules":["{}"]}},"#,
            r#""policy":{{"name":"us-split","version":"1.0.0","digest":"sha256:{}"}},"#,
            r#""request_id":"req-{}","outcome":{{"status":"ok"}},"subject_id":"{}"}}"#
        ),
        1_750_000_000_000u64 + u64::from(i) * 1000,
        principal,
        i,
        i,
        allowed,
        rule,
        "ab".repeat(32),
        i,
        subject
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn operator_and_auditor_workflow() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let wkeys = tmp.path().join("witness");
    let log = tmp.path().join("log");

    // Keys: private files are 0600, the verifier key is one line.
    let vkey_line = ok(
        &[
            "audit",
            "keygen",
            "--origin",
            "audit.example/us",
            "--out",
            p(&keys),
        ],
        None,
    );
    assert!(vkey_line.starts_with("audit.example/us+"), "{vkey_line}");
    use std::os::unix::fs::PermissionsExt;
    for private in ["log.key", "audit.key"] {
        let mode = std::fs::metadata(keys.join(private))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{private}");
    }
    let vkey = keys.join("log.vkey");
    assert_eq!(std::fs::read_to_string(&vkey).unwrap(), vkey_line);
    // keygen does not overwrite a private key.
    assert!(!domicile(
        &["audit", "keygen", "--origin", "x", "--out", p(&keys)],
        None
    )
    .status
    .success());

    // Append: JSON lines with plaintext subject ids, pseudonymised on the way in.
    let mut lines = String::new();
    for i in 0..30 {
        let subject = if i % 3 == 0 { "user-17" } else { "user-42" };
        let principal = if i % 2 == 0 {
            "spiffe://domicile.example/us/ttusds/alice"
        } else {
            "spiffe://domicile.example/us/ttusds/bob"
        };
        lines.push_str(&entry_line(i, subject, principal, i % 5 != 0));
        lines.push('\n');
    }
    let key = keys.join("log.key");
    let audit_key = keys.join("audit.key");
    let note = ok(
        &[
            "audit",
            "append",
            "--log",
            p(&log),
            "--key",
            p(&key),
            "--audit-key",
            p(&audit_key),
        ],
        Some(&lines),
    );
    assert!(note.starts_with("audit.example/us\n30\n"), "{note}");
    for f in std::fs::read_dir(log.join("segments")).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(7).any(|w| w == b"user-17"),
            "plaintext subject id in the log"
        );
    }

    // A bad line is refused with its line number, and nothing is appended.
    let out = domicile(
        &["audit", "append", "--log", p(&log), "--key", p(&key)],
        Some("{\"time_ms\": \"soon\"}\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin line 1"));
    // The refusal names the line and the field, never the value: a line holds ids.
    for bad in [
        "{\"time_ms\": \"user-17\"}",
        "{\"action\": \"user-17\"}",
        "{\"region\": \"user-17\"}",
        "{\"seq\": 1, \"user-17\": 2}",
        "{\"time_ms\": \"user-17}",
    ] {
        let out = domicile(
            &["audit", "append", "--log", p(&log), "--key", p(&key)],
            Some(&format!("\n{bad}\n")),
        );
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("stdin line 2: "), "{bad}: {err}");
        assert!(!err.contains("user-17"), "{bad}: {err}");
    }
    let out = domicile(
        &["audit", "append", "--log", p(&log), "--key", p(&key)],
        Some("{\"time_ms\": \"soon\"}\n"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stdin line 1: time_ms: invalid type: string …, expected u64"),
        "{err}"
    );
    // A stream with no newline is refused once a line passes the limit, not read forever.
    let out = Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args(["audit", "append", "--log", p(&log), "--key", p(&key)])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stdin line 1: longer than"), "{err}");

    // Verify, checkpoint.
    let report = ok(
        &["audit", "verify", "--log", p(&log), "--vkey", p(&vkey)],
        None,
    );
    assert!(report.starts_with("OK: 30 entries"), "{report}");
    let cp = ok(&["audit", "checkpoint", "--log", p(&log)], None);
    assert!(cp.starts_with("audit.example/us\n30\n"), "{cp}");
    assert!(cp.contains("\n\n\u{2014} audit.example/us "), "{cp}");

    // Query by subject pseudonym, principal, decision, rule, purpose and time.
    let pseudonym = ok(
        &[
            "audit",
            "pseudonym",
            "--audit-key",
            p(&audit_key),
            "user-17",
        ],
        None,
    );
    let pseudonym = pseudonym.trim();
    assert_eq!(pseudonym.len(), 64);
    let jsonl = ok(
        &[
            "audit",
            "query",
            "--log",
            p(&log),
            "--subject",
            pseudonym,
            "--format",
            "jsonl",
        ],
        None,
    );
    assert_eq!(jsonl.lines().count(), 10);
    for line in jsonl.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["resource"]["subject"], pseudonym);
        assert_eq!(v["seq"].as_u64().unwrap() % 3, 0);
    }
    let denied = ok(
        &[
            "audit",
            "query",
            "--log",
            p(&log),
            "--decision",
            "deny",
            "--format",
            "csv",
        ],
        None,
    );
    assert_eq!(denied.lines().count(), 1 + 6, "{denied}");
    assert!(denied.starts_with("seq,time,principal"));
    let by_rule = ok(
        &[
            "audit",
            "query",
            "--log",
            p(&log),
            "--rule",
            "us-split/access/deny-by-default",
            "--principal",
            "spiffe://domicile.example/us/ttusds/alice",
            "--format",
            "jsonl",
        ],
        None,
    );
    assert_eq!(by_rule.lines().count(), 3, "{by_rule}"); // seq 0, 10, 20
    let window = ok(
        &[
            "audit",
            "query",
            "--log",
            p(&log),
            "--since",
            "2025-06-15T15:06:45Z",
            "--until",
            "1750000010000",
            "--purpose",
            "user_requested_support",
            "--format",
            "jsonl",
        ],
        None,
    );
    assert_eq!(window.lines().count(), 5, "{window}"); // seq 5..=9
    let table = ok(&["audit", "query", "--log", p(&log)], None);
    assert!(table.starts_with("SEQ  TIME"), "{table}");
    assert_eq!(table.lines().count(), 31);
    // The columns line up: every row has PURPOSE at the header's offset.
    let at = table.lines().next().unwrap().find("PURPOSE").unwrap();
    for line in table.lines().skip(1) {
        assert!(line[at..].starts_with("user_requested_support"), "{line}");
    }

    // Prove and check a proof offline.
    let proof = tmp.path().join("entry-7.tlog-proof");
    ok(
        &[
            "audit",
            "prove",
            "--log",
            p(&log),
            "--seq",
            "7",
            "--out",
            p(&proof),
        ],
        None,
    );
    let text = std::fs::read_to_string(&proof).unwrap();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
    let entry = ok(
        &["audit", "check-proof", "--vkey", p(&vkey), p(&proof)],
        None,
    );
    let entry: serde_json::Value = serde_json::from_str(&entry).unwrap();
    assert_eq!(entry["seq"], 7);
    assert_eq!(entry["request_id"], "req-7");
    let tampered = text.replacen("index 7", "index 8", 1);
    std::fs::write(&proof, tampered).unwrap();
    assert!(!domicile(
        &["audit", "check-proof", "--vkey", p(&vkey), p(&proof)],
        None
    )
    .status
    .success());

    // A witness cosigns; verification with a witness policy then holds.
    ok(
        &[
            "audit",
            "keygen",
            "--witness",
            "--origin",
            "witness.example/w1",
            "--out",
            p(&wkeys),
        ],
        None,
    );
    let wkey = wkeys.join("witness.key");
    let wvkey = wkeys.join("witness.vkey");
    let state = wkeys.join("state");
    let needs_witness = [
        "audit",
        "verify",
        "--log",
        p(&log),
        "--vkey",
        p(&vkey),
        "--witness-vkey",
        p(&wvkey),
        "--quorum",
        "1",
    ];
    assert!(
        !domicile(&needs_witness, None).status.success(),
        "no cosignature yet"
    );
    let witness = [
        "audit",
        "witness",
        "--log",
        p(&log),
        "--vkey",
        p(&vkey),
        "--key",
        p(&wkey),
        "--state",
        p(&state),
    ];
    let cosigned = ok(&witness, None);
    assert!(
        cosigned.contains("\u{2014} witness.example/w1 "),
        "{cosigned}"
    );
    assert!(ok(&needs_witness, None).contains("1 witness cosignatures"));
    // More entries; the witness checks consistency from what it saw and cosigns again.
    ok(
        &[
            "audit",
            "append",
            "--log",
            p(&log),
            "--key",
            p(&key),
            "--audit-key",
            p(&audit_key),
        ],
        Some(
            &(entry_line(
                30,
                "user-9",
                "spiffe://domicile.example/us/ttusds/carol",
                true,
            ) + "\n"),
        ),
    );
    ok(&witness, None);
    assert!(ok(&needs_witness, None).starts_with("OK: 31 entries"));

    // Damage one byte of one entry: verify fails and names it.
    let seg = std::fs::read_dir(log.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let out = domicile(
        &["audit", "verify", "--log", p(&log), "--vkey", p(&vkey)],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FAILED") && err.contains("entry"), "{err}");
}

#[test]
fn bad_arguments_are_reported_plainly() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.vkey");
    let out = domicile(
        &[
            "audit",
            "verify",
            "--log",
            p(tmp.path()),
            "--vkey",
            p(&missing),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.vkey"));
    let bad_key = tmp.path().join("bad.vkey");
    std::fs::write(&bad_key, "not-a-key\n").unwrap();
    let out = domicile(
        &[
            "audit",
            "verify",
            "--log",
            p(tmp.path()),
            "--vkey",
            p(&bad_key),
        ],
        None,
    );
    assert!(!out.status.success());
    // The key text is not echoed (a file given as a key may hold a secret), the reason is.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected name+id+key"), "{err}");
    assert!(!err.contains("not-a-key"), "{err}");
    let out = domicile(
        &[
            "audit",
            "query",
            "--log",
            p(tmp.path()),
            "--subject",
            "user-17",
        ],
        None,
    );
    assert!(!out.status.success());
    // A subject id given where a pseudonym is expected: the error says what to give instead,
    // and does not echo what may be a person's id.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--audit-key"), "{err}");
    assert!(!err.contains("user-17"), "{err}");
}

/// An auditor given a subject id, or a record's collection and key, finds the lines about it:
/// the pseudonyms `domicile audit pseudonym` computes are the ones the Gate wrote.
#[test]
fn pseudonyms_computed_by_the_cli_match_the_ones_the_gate_logged() {
    use std::sync::Arc;

    use domicile_access::{ApprovalBook, Gate, ManualClock, Principal, PrincipalKind, RecordRef};
    use domicile_audit::{AuditKey, AuditLog, Entry, LogConfig, SigningKey, Target};
    use domicile_policy_us_split::UsSplitPolicy;
    use domicile_residency::{DataClass, JustificationCode, Purpose, Region, Subject};
    use domicile_store::{Collection, FileCustodian, RecordKey, SealedStore};

    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    ok(
        &[
            "audit",
            "keygen",
            "--origin",
            "audit.example/us",
            "--out",
            p(&keys),
        ],
        None,
    );
    let audit_key_file = keys.join("audit.key");
    let audit_key = AuditKey::parse(&std::fs::read_to_string(&audit_key_file).unwrap()).unwrap();

    let us = Region::parse("us").unwrap();
    let custodian = Arc::new(FileCustodian::open(tmp.path().join("custodian")).unwrap());
    let store = SealedStore::open(
        tmp.path().join("data"),
        us,
        Arc::new(UsSplitPolicy::new()),
        custodian,
    )
    .unwrap();
    let signing = SigningKey::parse(&std::fs::read_to_string(keys.join("log.key")).unwrap());
    let log_dir = tmp.path().join("data/us/audit");
    let log = AuditLog::open(&log_dir, LogConfig::new(signing.unwrap())).unwrap();
    let gate = Gate::new(
        Arc::new(store),
        Arc::new(log),
        audit_key,
        ApprovalBook::in_memory(),
        Arc::new(ManualClock::at_unix_secs(1_790_000_000)),
    )
    .unwrap();
    let app = Principal::parse(
        "spiffe://domicile.example/us/usds/profile-service",
        PrincipalKind::Service,
        ("usds", "US"),
        "US",
        "US",
        &["app-service"],
    )
    .unwrap();
    gate.enrol(app.clone()).unwrap();
    let why = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1");
    gate.register_subject(
        &app,
        &why,
        &Subject::parse("ana-7f3a", Some("US"), None).unwrap(),
    )
    .unwrap();
    let record = RecordRef {
        subject: "ana-7f3a".parse().unwrap(),
        class: DataClass::Protected,
        collection: Collection::parse("profile").unwrap(),
        key: RecordKey::parse("profile-ana-7f3a").unwrap(),
    };
    gate.write(&app, &why, &record, b"{}", None).unwrap();

    let mut written = None;
    domicile_audit::for_each_entry(&log_dir, &mut |_, _| {}, |_, bytes, _| {
        written = Some(Entry::from_canonical(bytes)?);
        Ok(())
    })
    .unwrap();
    let written = written.expect("the write is in the log");

    let subject = ok(
        &[
            "audit",
            "pseudonym",
            "--audit-key",
            p(&audit_key_file),
            "--subject",
            "ana-7f3a",
        ],
        None,
    );
    assert_eq!(
        Some(subject.trim()),
        written.resource.subject.map(|s| s.to_string()).as_deref()
    );
    let record_key = ok(
        &[
            "audit",
            "pseudonym",
            "--audit-key",
            p(&audit_key_file),
            "--collection",
            "profile",
            "--key",
            "profile-ana-7f3a",
        ],
        None,
    );
    let Target::Record { key: logged_key } = &written.resource.target else {
        panic!("a write names one record: {:?}", written.resource.target);
    };
    assert!(record_key.trim().starts_with("hmac:"), "{record_key}");
    assert_eq!(record_key.trim(), logged_key);
    assert!(!logged_key.contains("ana-7f3a"), "the record key is keyed");

    // Neither a subject and a record at once, nor half a record.
    for args in [
        &[
            "--subject",
            "ana-7f3a",
            "--collection",
            "profile",
            "--key",
            "k",
        ][..],
        &["--collection", "profile"][..],
        &[][..],
    ] {
        let mut all = vec!["audit", "pseudonym", "--audit-key", p(&audit_key_file)];
        all.extend_from_slice(args);
        assert!(!domicile(&all, None).status.success(), "{args:?}");
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The attacks on the log's edges through the binary: a missing or empty log, the secret audit
/// key given as the verifier key, a rollback of entries and checkpoints together (found with a
/// held checkpoint, refused by `append`), and one witness key given twice.
#[test]
fn the_auditor_pins_checkpoints_and_the_writer_refuses_rollbacks() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let log = tmp.path().join("log");
    ok(
        &[
            "audit",
            "keygen",
            "--origin",
            "audit.example/us",
            "--out",
            p(&keys),
        ],
        None,
    );
    let (key, vkey, audit_key) = (
        keys.join("log.key"),
        keys.join("log.vkey"),
        keys.join("audit.key"),
    );
    // A missing log is an error unless --allow-empty.
    let out = domicile(
        &["audit", "verify", "--log", p(&log), "--vkey", p(&vkey)],
        None,
    );
    assert!(!out.status.success());
    ok(
        &[
            "audit",
            "verify",
            "--log",
            p(&log),
            "--vkey",
            p(&vkey),
            "--allow-empty",
        ],
        None,
    );
    // The secret audit key where the verifier key belongs: an error that does not echo it.
    let secret = std::fs::read_to_string(&audit_key).unwrap();
    let out = domicile(
        &["audit", "verify", "--log", p(&log), "--vkey", p(&audit_key)],
        None,
    );
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains(secret.trim()),
        "the secret key was printed: {all}"
    );
    // Three entries, then a snapshot, then two more.
    let lines = |range: std::ops::Range<u32>| {
        range
            .map(|i| {
                entry_line(
                    i,
                    "user-17",
                    "spiffe://domicile.example/us/ttusds/alice",
                    true,
                ) + "\n"
            })
            .collect::<String>()
    };
    let append = |text: &str| {
        domicile(
            &[
                "audit",
                "append",
                "--log",
                p(&log),
                "--key",
                p(&key),
                "--audit-key",
                p(&audit_key),
            ],
            Some(text),
        )
    };
    assert!(append(&lines(0..3)).status.success());
    let snapshot = tmp.path().join("snapshot");
    copy_tree(&log, &snapshot);
    let out = append(&lines(3..5));
    assert!(out.status.success());
    let held = tmp.path().join("held.note");
    std::fs::write(&held, &out.stdout).unwrap();
    ok(
        &[
            "audit",
            "verify",
            "--log",
            p(&log),
            "--vkey",
            p(&vkey),
            "--checkpoint",
            p(&held),
        ],
        None,
    );
    // Roll back: entries and checkpoints as they were at size 3.
    std::fs::remove_dir_all(&log).unwrap();
    copy_tree(&snapshot, &log);
    ok(
        &["audit", "verify", "--log", p(&log), "--vkey", p(&vkey)],
        None,
    );
    let out = domicile(
        &[
            "audit",
            "verify",
            "--log",
            p(&log),
            "--vkey",
            p(&vkey),
            "--checkpoint",
            p(&held),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back"));
    // The writer refuses to append to it (and so to sign a fork), naming both sizes.
    let out = append(&lines(100..102));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("holds 3 entries") && err.contains("size 5"),
        "{err}"
    );
    // One witness given twice does not make a quorum of two.
    ok(
        &[
            "audit",
            "keygen",
            "--witness",
            "--origin",
            "witness.example/a",
            "--out",
            p(&tmp.path().join("w")),
        ],
        None,
    );
    let w = tmp.path().join("w/witness.vkey");
    let out = domicile(
        &[
            "audit",
            "verify",
            "--log",
            p(&snapshot),
            "--vkey",
            p(&vkey),
            "--witness-vkey",
            p(&w),
            "--witness-vkey",
            p(&w),
            "--quorum",
            "2",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("distinct"));
}

#[test]
fn append_refuses_a_record_key_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (log, keys) = (dir.path().join("log"), dir.path().join("keys"));
    ok(
        &[
            "audit",
            "keygen",
            "--origin",
            "audit.example/us",
            "--out",
            p(&keys),
        ],
        None,
    );
    let line = entry_line(
        0,
        "user-17",
        "spiffe://domicile.example/us/usds/alice",
        true,
    )
    .replacen(&format!("hmac:{:064x}", 0), "profile/alice@example.com", 1);
    assert!(line.contains("profile/alice@example.com"));
    let out = domicile(
        &[
            "audit",
            "append",
            "--log",
            p(&log),
            "--key",
            p(&keys.join("log.key")),
            "--audit-key",
            p(&keys.join("audit.key")),
        ],
        Some(&line),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a record-key pseudonym"), "{err}");
    assert!(
        !err.contains("alice@example.com"),
        "the refusal echoes the key: {err}"
    );
    let written = walk_bytes(&log);
    assert!(
        !written.windows(5).any(|w| w == b"alice"),
        "the refused entry reached the log"
    );
}

fn walk_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk_bytes(&path));
            } else {
                out.extend(std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    out
}
