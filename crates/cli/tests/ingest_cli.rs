//! `domicile ingest` end to end: `domicile init`, then JSON Lines through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use domicile_residency::Region;
use domicile_store::{Collection, FileCustodian, KeyCustodian, RecordKey, SealedStore};

fn domicile(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args(args)
        .output()
        .expect("the domicile binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn id(i: usize) -> String {
    format!("ingest-person-{i:04}")
}

/// Subjects 0..n, homed in turn in US, DE and PR; lines 5 and 9 (subjects 4 and 8) have no
/// residence and an unassigned country code.
fn jsonl(path: &Path, n: usize) {
    let mut out = String::new();
    for i in 0..n {
        let residence = match i {
            4 => serde_json::Value::Null,
            8 => "XX".into(),
            _ => ["US", "DE", "PR"][i % 3].into(),
        };
        let line = serde_json::json!({
            "subject": {"id": id(i), "residence": residence},
            "records": [
                {"class": "protected", "collection": "profile", "key": format!("{}-profile", id(i)),
                 "value": {"name": format!("name of {}", id(i))}},
                {"class": "public", "collection": "videos", "key": format!("{}-video", id(i)),
                 "value": {"title": "a video"}},
            ]
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

fn init(dir: &Path) -> (PathBuf, PathBuf) {
    let (data, keys) = (dir.join("data"), dir.join("keys"));
    let out = domicile(&[
        "init",
        "--policy",
        "us-split",
        "--data",
        data.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    (data, keys)
}

fn ingest(data: &Path, keys: &Path, file: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "ingest",
        "--data",
        data.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
        "--org",
        "usds",
        "--quiet",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    domicile(&args)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == needle[0])
        .any(|(i, _)| haystack[i..].starts_with(needle))
}

/// Every ingested subject's profile is in its home region and nowhere else.
fn assert_placed(data: &Path, keys: &Path, n: usize) {
    let custodian: Arc<dyn KeyCustodian> = Arc::new(FileCustodian::open_existing(keys).unwrap());
    let policy = Arc::new(domicile_policy_us_split::UsSplitPolicy::new());
    let open = |r: &str| {
        SealedStore::open(
            data,
            Region::parse(r).unwrap(),
            policy.clone(),
            custodian.clone(),
        )
        .unwrap()
    };
    let (us, row) = (open("us"), open("row"));
    let profile = Collection::parse("profile").unwrap();
    for i in (0..n).filter(|i| *i != 4 && *i != 8) {
        let key = RecordKey::parse(&format!("{}-profile", id(i))).unwrap();
        let (home, other) = if i % 3 == 1 { (&row, &us) } else { (&us, &row) };
        let got = home.get::<serde_json::Value>(&profile, &key).unwrap();
        assert_eq!(
            got.unwrap().value["name"],
            format!("name of {}", id(i)),
            "{}",
            id(i)
        );
        assert!(other.get_raw(&profile, &key).unwrap().is_none());
    }
    for i in [4, 8] {
        let key = RecordKey::parse(&format!("{}-profile", id(i))).unwrap();
        assert!(us.get_raw(&profile, &key).unwrap().is_none());
        assert!(row.get_raw(&profile, &key).unwrap().is_none());
    }
}

#[test]
fn ingest_places_each_subject_by_the_policy_and_names_no_one_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = init(dir.path());
    let file = dir.path().join("people.jsonl");
    jsonl(&file, 30);
    let out = ingest(&data, &keys, &file, &["--batch", "7"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("ingested 28 subjects") && t.contains("from 30 lines"),
        "{t}"
    );
    assert!(
        t.contains("skipped line 5: home region unknown: no country of residence"),
        "{t}"
    );
    assert!(t.contains("skipped line 9: home region unknown"), "{t}");
    for i in 0..30 {
        assert!(!t.contains(&id(i)), "the output names {}: {t}", id(i));
    }
    assert_placed(&data, &keys, 30);
    // No file of the deployment or its keys names a person.
    for file in files_under(&data).into_iter().chain(files_under(&keys)) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, b"ingest-person-"),
            "{} names a subject",
            file.display()
        );
    }
    // Run again on the same file: everything is in already.
    let again = ingest(&data, &keys, &file, &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("resumed after line 30")
            && text(&again).contains("ingested 0 subjects"),
        "{}",
        text(&again)
    );
}

/// A deployment under `dir` and twelve subjects ingested in batches of two, refusing unknown
/// homes: it stops at line 5, with lines 1–4 in. (data, keys, the file, the failed ingest).
fn stopped_at_line_5(dir: &Path) -> (PathBuf, PathBuf, PathBuf, Output) {
    let (data, keys) = init(dir);
    let file = dir.join("people.jsonl");
    jsonl(&file, 12);
    let out = ingest(
        &data,
        &keys,
        &file,
        &["--batch", "2", "--on-unknown", "refuse"],
    );
    assert!(!out.status.success());
    (data, keys, file, out)
}

#[test]
fn refusing_an_unknown_home_stops_at_its_line_and_a_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys, file, out) = stopped_at_line_5(dir.path());
    let t = text(&out);
    assert!(
        t.contains("line 5: the subject's home region is unknown: no country of residence"),
        "{t}"
    );
    assert!(!t.contains(&id(4)), "{t}");
    // Lines 1–4 are in (two batches of two); a rerun that skips unknown homes resumes there.
    let out = ingest(&data, &keys, &file, &["--batch", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("resumed after line 4") && t.contains("ingested 6 subjects"),
        "{t}"
    );
    assert_placed(&data, &keys, 12);
}

/// A batch is bounded by its bytes as well as its subjects: with `--batch-bytes 1` every subject
/// is a batch of its own, so the four lines before the refused one are in even though the
/// thousand-subject batch never filled.
#[test]
fn a_batch_is_written_once_its_lines_reach_the_byte_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = init(dir.path());
    let file = dir.path().join("people.jsonl");
    jsonl(&file, 12);
    let refuse = ["--on-unknown", "refuse"];
    let out = ingest(&data, &keys, &file, &refuse);
    assert!(!out.status.success());
    assert!(!data.join("ingest").exists(), "{}", text(&out));
    let out = ingest(
        &data,
        &keys,
        &file,
        &["--batch-bytes", "1", refuse[0], refuse[1]],
    );
    assert!(!out.status.success());
    let progress = files_under(&data.join("ingest")).pop().unwrap();
    let progress: serde_json::Value =
        serde_json::from_slice(&std::fs::read(progress).unwrap()).unwrap();
    assert_eq!(progress["lines"], 4, "{progress}");
}

/// The progress file is input: one edited or damaged so that a rerun would skip lines never
/// ingested, or start inside a line, is refused by name, and the ingest resumes once it is put
/// back or removed.
#[test]
fn a_progress_file_that_does_not_describe_its_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys, file, _) = stopped_at_line_5(dir.path());
    let progress = files_under(&data.join("ingest")).pop().unwrap();
    let kept = std::fs::read_to_string(&progress).unwrap();
    let value: serde_json::Value = serde_json::from_str(&kept).unwrap();
    assert_eq!(value["lines"], 4, "{kept}");
    let input = std::fs::read(&file).unwrap();
    let line_ends: Vec<usize> = input
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    let edit = |lines: u64, bytes: u64| {
        let mut edited = value.clone();
        edited["lines"] = lines.into();
        edited["bytes"] = bytes.into();
        edited.to_string()
    };
    for (edited, why) in [
        (edit(6, line_ends[3] as u64), "claims 6 lines in"),
        (
            edit(4, line_ends[3] as u64 + 7),
            "end in the middle of line 5",
        ),
        (edit(4, input.len() as u64 + 1), "bytes of a"),
        (
            edit(12, input.len() as u64 - 1),
            "end in the middle of line 12",
        ),
        (
            "{\"format\": 1, \"file\": ".to_owned(),
            "not an ingest progress file",
        ),
        (
            kept.replace("\"format\":1", "\"format\":9"),
            "progress format 9",
        ),
    ] {
        std::fs::write(&progress, &edited).unwrap();
        let out = ingest(&data, &keys, &file, &["--batch", "2"]);
        assert!(!out.status.success(), "{edited}");
        let t = text(&out);
        assert!(
            t.contains(&format!(
                "the ingest progress file {} is unusable",
                progress.display()
            )) && t.contains(why),
            "{edited}: {t}"
        );
        assert_eq!(std::fs::read_to_string(&progress).unwrap(), edited);
    }
    // Put back, the ingest resumes where it stopped; from scratch, it writes everything again.
    std::fs::write(&progress, &kept).unwrap();
    let out = ingest(&data, &keys, &file, &["--batch", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("resumed after line 4"),
        "{}",
        text(&out)
    );
    assert_placed(&data, &keys, 12);
    std::fs::remove_file(&progress).unwrap();
    let out = ingest(&data, &keys, &file, &["--batch", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ingested 10 subjects"),
        "{}",
        text(&out)
    );
    assert_placed(&data, &keys, 12);
}

#[test]
fn a_malformed_line_is_refused_by_number_without_quoting_it() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = init(dir.path());
    let file = dir.path().join("bad.jsonl");
    std::fs::write(
        &file,
        "{\"subject\": {\"id\": \"secret-id-77\", \"residence\": \"US\"}}\n{\"subject\": {\"id\": \"secret-id-78\", \"residence\": 5}}\n",
    )
    .unwrap();
    let out = ingest(&data, &keys, &file, &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("line 2: not a subject line"), "{t}");
    assert!(!t.contains("secret-id"), "{t}");
    // A wrong keys directory is refused before anything is written.
    let out = ingest(&data, &dir.path().join("nokeys"), &file, &[]);
    assert!(!out.status.success());
    assert!(!dir.path().join("nokeys").exists());
}

/// What cannot be a resumable ingest file is refused before it is read whole: a device that never
/// ends (`/dev/zero` would be digested forever), a directory, a FIFO, a line longer than the limit (a
/// sparse file of NUL bytes, no newline), and a line that is not UTF-8 — each by line number,
/// never quoting the line.
#[test]
fn streams_overlong_lines_and_bytes_that_are_not_text_are_refused_by_number() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = init(dir.path());
    // Opening a FIFO waits for a writer: it must be refused before it is opened.
    let fifo = dir.path().join("fifo.jsonl");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (input, expected) in [
        (Path::new("/dev/zero"), "not a regular file"),
        (dir.path(), "not a regular file"),
        (fifo.as_path(), "not a regular file"),
    ] {
        let out = ingest(&data, &keys, input, &[]);
        assert!(!out.status.success());
        let t = text(&out);
        assert!(t.contains(expected), "{}: {t}", input.display());
    }

    let long = dir.path().join("long.jsonl");
    let file = std::fs::File::create(&long).unwrap();
    file.set_len(domicile_split::MAX_LINE_BYTES + 10).unwrap();
    drop(file);
    let out = ingest(&data, &keys, &long, &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains(&format!(
            "line 1: longer than {} bytes",
            domicile_split::MAX_LINE_BYTES
        )),
        "{t}"
    );

    let binary = dir.path().join("binary.jsonl");
    let mut bytes =
        b"{\"subject\": {\"id\": \"secret-id-90\", \"residence\": \"US\"}, \"records\": []}\n"
            .to_vec();
    bytes.extend_from_slice(b"{\"subject\": {\"id\": \"secret-id-91\xff\"}}\n");
    std::fs::write(&binary, bytes).unwrap();
    let out = ingest(&data, &keys, &binary, &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("line 2: not UTF-8 (an invalid byte at column 33)"),
        "{t}"
    );
    assert!(!t.contains("secret-id"), "{t}");
}

/// The deployment's manifest is state the tools wrote: a FIFO in its place (whose open would
/// block for ever) or a link to `/dev/zero` (endless) is an error naming it, at once, and the
/// command writes nothing.
#[test]
fn a_manifest_replaced_by_a_fifo_or_a_device_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = init(dir.path());
    let file = dir.path().join("people.jsonl");
    jsonl(&file, 3);
    let manifest = data.join("deployment.json");
    assert!(manifest.is_file());
    let saved = std::fs::read(&manifest).unwrap();
    let fifo = |path: &Path| assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
    let zero = |path: &Path| std::os::unix::fs::symlink("/dev/zero", path).unwrap();
    for replace in [&fifo as &dyn Fn(&Path), &zero] {
        std::fs::remove_file(&manifest).unwrap();
        replace(&manifest);
        let out = ingest(&data, &keys, &file, &[]);
        assert!(!out.status.success());
        let t = text(&out);
        assert!(
            t.contains("deployment.json") && t.contains("not a regular file"),
            "{t}"
        );
        assert!(!data.join("ingest").exists(), "no progress was written");
    }
    // Put back, the same ingest goes through.
    std::fs::remove_file(&manifest).unwrap();
    std::fs::write(&manifest, saved).unwrap();
    let out = ingest(&data, &keys, &file, &[]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A deployment under `dir` with subjects 0..12 of [`jsonl`] ingested (data, keys).
fn ingested_12(dir: &Path) -> (PathBuf, PathBuf) {
    let (data, keys) = init(dir);
    let file = dir.join("people.jsonl");
    jsonl(&file, 12);
    let out = ingest(&data, &keys, &file, &[]);
    assert!(out.status.success(), "{}", text(&out));
    (data, keys)
}

/// `domicile store reindex` repairs a region whose index journal was cut short on disk: before,
/// a subject's read names the corrupt entry; after, every US subject's records read again.
/// Wrong keys and unknown regions are refused, and the command prints counts, never an id.
#[test]
fn store_reindex_repairs_a_corrupt_index_and_refuses_wrong_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = ingested_12(dir.path());
    let us = Region::parse("us").unwrap();
    {
        let backend =
            domicile_store::SledBackend::open(SealedStore::store_dir(&data, &us)).unwrap();
        use domicile_store::Backend;
        let (k, v) = backend.scan_prefix(b"j").next().unwrap().unwrap();
        backend.put(&k, &v[..v.len() / 2]).unwrap();
        backend.flush().unwrap();
    }
    let us_subjects: Vec<usize> = (0..12).filter(|i| ![1, 4, 7, 8, 10].contains(i)).collect();
    let read_us = || {
        let custodian: Arc<dyn KeyCustodian> =
            Arc::new(FileCustodian::open_existing(&keys).unwrap());
        let store = SealedStore::open(
            &data,
            us.clone(),
            Arc::new(domicile_policy_us_split::UsSplitPolicy::new()),
            custodian,
        )
        .unwrap();
        us_subjects
            .iter()
            .map(|i| {
                store
                    .scan_subject(&id(*i).parse().unwrap())
                    .map(|r| r.len())
            })
            .collect::<Vec<_>>()
    };
    let before = read_us();
    assert!(
        before
            .iter()
            .all(|r| matches!(r, Err(domicile_store::StoreError::CorruptIndex { .. }))),
        "{before:?}"
    );
    let reindex_with = |keys: &Path, region: &str, extra: &[&str]| {
        let mut args = vec![
            "store",
            "reindex",
            "--data",
            data.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            "--region",
            region,
        ];
        args.extend_from_slice(extra);
        domicile(&args)
    };
    let reindex = |keys: &Path, region: &str| reindex_with(keys, region, &[]);
    let out = reindex(&keys, "us");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("subject index rebuilt"),
        "{}",
        text(&out)
    );
    for i in 0..12 {
        assert!(!text(&out).contains(&id(i)), "{}", text(&out));
    }
    assert!(
        read_us().iter().all(|r| matches!(r, Ok(2))),
        "{:?}",
        read_us()
    );
    // In steps of one id: a step a subject (each subject's list and its old one go together).
    let stepped = |step: &str| reindex_with(&keys, "us", &["--step", step]);
    let out = stepped("1");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "of {n} subject(s) in {n} durable step(s); replaced {n} list(s)",
            n = us_subjects.len()
        )),
        "{}",
        text(&out)
    );
    assert!(read_us().iter().all(|r| matches!(r, Ok(2))));
    let out = stepped("0");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // Another deployment's keys, an empty directory and an unknown region: refused, nothing made.
    let other = tempfile::tempdir().unwrap();
    let (_, other_keys) = init(other.path());
    let empty = dir.path().join("empty-keys");
    std::fs::create_dir(&empty).unwrap();
    for (keys, region) in [(&other_keys, "us"), (&empty, "us"), (&keys, "mars")] {
        let out = reindex(keys, region);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).starts_with("domicile store: "), "{}", text(&out));
    }
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing created"
    );
    // A region whose store is gone: refused, not recreated empty with nothing to repair.
    let row_store = SealedStore::store_dir(&data, &Region::parse("row").unwrap());
    std::fs::rename(&row_store, dir.path().join("row-store-aside")).unwrap();
    let out = reindex(&keys, "row");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("has no store here"), "{}", text(&out));
    assert!(!row_store.exists(), "no empty store was created");
    // What the rebuild wrote names no one: every file of the data directory, raw bytes.
    for path in files_under(&data) {
        let bytes = std::fs::read(&path).unwrap();
        for i in 0..12 {
            assert!(
                !contains(&bytes, id(i).as_bytes()),
                "{} names {}",
                path.display(),
                id(i)
            );
        }
    }
}

/// Asserts that `out` (stdout and stderr) says `what`.
fn says(out: &Output, what: &str) {
    assert!(text(out).contains(what), "{}", text(out));
}

/// `domicile store check` says a fresh deployment's region is sound (exit 0); after a record's
/// bytes are edited on disk, it names that record by collection and blind index and exits 3;
/// `--json` gives the whole report; wrong keys exit 1, a usage error 2. No output names a subject or a key.
#[test]
fn store_check_finds_a_record_edited_on_disk_and_names_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = ingested_12(dir.path());
    let check = |keys: &Path, extra: &[&str]| {
        let mut args = vec![
            "store",
            "check",
            "--data",
            data.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            "--region",
            "us",
        ];
        args.extend_from_slice(extra);
        domicile(&args)
    };
    let names_no_one = |out: &Output| {
        for i in 0..12 {
            assert!(!text(out).contains(&id(i)), "{}", text(out));
        }
    };
    // A usage error is 2, never taken for a store that is not sound (3).
    let out = domicile(&["store", "check", "--data", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = check(&keys, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Seven US subjects (0, 3, 6, 9 by residence, and the PR ones 2, 5, 11), two records each.
    says(&out, "us: 14 record(s) and 7 subject(s) open");
    assert!(
        text(&out).trim_end().ends_with("us: sound"),
        "{}",
        text(&out)
    );
    names_no_one(&out);

    let us = Region::parse("us").unwrap();
    let edited = {
        let backend =
            domicile_store::SledBackend::open(SealedStore::store_dir(&data, &us)).unwrap();
        use domicile_store::Backend;
        let (k, mut v) = backend.scan_prefix(b"d").nth(3).unwrap().unwrap();
        let at = v.len() / 2;
        v[at] ^= 0x01;
        backend.put(&k, &v).unwrap();
        backend.flush().unwrap();
        domicile_store::BlindIndex(k[k.len() - 32..].try_into().unwrap())
    };
    let out = check(&keys, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    says(&out, "us: 1 unreadable: does not open:");
    says(&out, &edited.to_string());
    says(&out, "us: NOT SOUND");
    names_no_one(&out);

    let out = check(&keys, &["--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["us"]["records"], 13);
    let unreadable = report["us"]["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{report}");
    names_no_one(&out);
    // Every region when none is named: row is sound, us is not, so the exit code is 3.
    let out = domicile(&[
        "store",
        "check",
        "--data",
        data.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let regions: Vec<&String> = report.as_object().unwrap().keys().collect();
    assert_eq!(regions, ["row", "us"], "{report}");
    assert_eq!(
        report["row"]["unreadable"],
        serde_json::json!([]),
        "{report}"
    );
    names_no_one(&out);

    let other = tempfile::tempdir().unwrap();
    let (_, other_keys) = init(other.path());
    let out = check(&other_keys, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).starts_with("domicile store: "), "{}", text(&out));
}
