//! `domicile init` creates a deployment and its keys; every other command refuses a keys
//! directory that is not the deployment's, and creates nothing.

use std::process::Command;

fn domicile(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn init_creates_and_a_mistyped_keys_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = dir.path().join("keys");
    let (d, k) = (data.to_str().unwrap(), keys.to_str().unwrap());
    init_ok("global", d, k);
    assert!(keys.join("global/pseudonym.key").exists());
    let wrong = dir.path().join("keyz");
    let w = wrong.to_str().unwrap();
    let out = domicile(&[
        "split", "plan", "--data", d, "--keys", w, "--to", "us-split",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--keys") && err.contains("missing"), "{err}");
    assert!(
        !wrong.exists(),
        "a refused command created the keys directory"
    );
    // The right keys still open it; init again is a no-op check.
    let out = domicile(&[
        "split", "plan", "--data", d, "--keys", k, "--to", "us-split",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = domicile(&["init", "--policy", "global", "--data", d, "--keys", w]);
    assert!(
        !out.status.success(),
        "init over a deployment with other keys"
    );
}

/// A manifest edited to another policy used to make `ingest` create a region, keys and a store
/// for it and place subjects there; it is refused against the keys' binding with nothing
/// written. A deployment whose keys are bound to no manifest (made before bindings) is refused
/// until `domicile init` with its own policy binds it.
#[test]
fn an_edited_manifest_is_refused_and_init_binds_an_unbound_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys, input) = us_split_with_one_subject(dir.path(), "bound-person-1");
    let (d, k) = (data.to_str().unwrap(), keys.to_str().unwrap());
    let ingest = || ingest_one(&data, &keys, &input);
    let manifest = data.join("deployment.json");
    let kept = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, kept.replace("\"us-split\"", "\"global\"")).unwrap();
    let (keys_before, data_before) = (files(&keys), files(&data));
    let out = ingest();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not match the keys directory")
            && err.contains("bound to policy \"us-split\""),
        "{err}"
    );
    assert_eq!(files(&keys), keys_before, "keys were created");
    assert_eq!(files(&data), data_before, "data files were created");
    // `init` does not rebind keys to an edited manifest either.
    let out = domicile(&["init", "--policy", "global", "--data", d, "--keys", k]);
    assert!(!out.status.success());
    std::fs::write(&manifest, &kept).unwrap();
    assert!(ingest().status.success());

    // A new deployment does not take over keys bound to this one (which would no longer open).
    let other = dir.path().join("other-data");
    let o = other.to_str().unwrap();
    let keys_before = files(&keys);
    let out = domicile(&["init", "--policy", "global", "--data", o, "--keys", k]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the keys are bound to another deployment (policy \"us-split\""),
        "{err}"
    );
    assert_eq!(files(&keys), keys_before, "keys were created");
    assert!(!other.join("deployment.json").exists());
    assert!(ingest().status.success());

    // Keys bound to no manifest: refused with what to run, then bound by init.
    std::fs::remove_file(keys.join("deployment.binding")).unwrap();
    let out = ingest();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("domicile init --policy us-split"), "{err}");
    let out = domicile(&["init", "--policy", "global", "--data", d, "--keys", k]);
    assert!(!out.status.success(), "init bound keys to another policy");
    assert!(!keys.join("deployment.binding").exists());
    init_ok("us-split", d, k);
    assert!(keys.join("deployment.binding").exists());
    assert!(ingest().status.success());
}

/// A region's store moved away used to be recreated empty on the next open, every record it held
/// then "not found"; every command refuses instead, naming the missing store, and creates nothing.
#[test]
fn a_missing_store_is_refused_not_recreated_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys, input) = us_split_with_one_subject(dir.path(), "stored-person-1");
    let (d, k, i) = (
        data.to_str().unwrap(),
        keys.to_str().unwrap(),
        input.to_str().unwrap(),
    );
    let ingest = || ingest_one(&data, &keys, &input);
    assert!(ingest().status.success());
    let (store, aside) = (data.join("us/store"), dir.path().join("store-aside"));
    std::fs::rename(&store, &aside).unwrap();
    let before = (files(&keys), files(&data));
    let commands = [
        vec![
            "ingest", "--data", d, "--keys", k, "--org", "usds", "--quiet", i,
        ],
        vec!["init", "--policy", "us-split", "--data", d, "--keys", k],
        vec![
            "split", "plan", "--data", d, "--keys", k, "--to", "eu-split",
        ],
        vec![
            "split", "run", "--data", d, "--keys", k, "--to", "eu-split", "--quiet",
        ],
    ];
    for args in &commands {
        let out = domicile(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("region us's store") && err.contains("is missing"),
            "{args:?}: {err}"
        );
        assert_eq!(
            (files(&keys), files(&data)),
            before,
            "{args:?} created files"
        );
    }
    // An empty directory in its place (or an empty sled database) is no store either.
    std::fs::create_dir(&store).unwrap();
    for args in &commands[..3] {
        let out = domicile(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("holds no sealed store, though region us's was made there"),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_dir_all(&store).unwrap();
    std::fs::rename(&aside, &store).unwrap();
    assert!(ingest().status.success());
}

/// `domicile init --policy POLICY --data D --keys K`, which must succeed.
fn init_ok(policy: &str, d: &str, k: &str) {
    let out = domicile(&["init", "--policy", policy, "--data", d, "--keys", k]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `domicile init` of a us-split deployment under `dir`, and a JSON Lines file of one US subject
/// `id` without records: (data, keys, file).
fn us_split_with_one_subject(
    dir: &std::path::Path,
    id: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let (data, keys) = (dir.join("data"), dir.join("keys"));
    let (d, k) = (data.to_str().unwrap(), keys.to_str().unwrap());
    init_ok("us-split", d, k);
    let input = dir.join("in.jsonl");
    let line =
        format!("{{\"subject\": {{\"id\": \"{id}\", \"residence\": \"US\"}}, \"records\": []}}\n");
    std::fs::write(&input, line).unwrap();
    (data, keys, input)
}

/// `domicile ingest` of `input` by USDS's ingest service.
fn ingest_one(
    data: &std::path::Path,
    keys: &std::path::Path,
    input: &std::path::Path,
) -> std::process::Output {
    domicile(&[
        "ingest",
        "--data",
        data.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
        "--org",
        "usds",
        "--quiet",
        input.to_str().unwrap(),
    ])
}

/// Every file under `root`, with its length.
fn files(root: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            let len = std::fs::metadata(&path).unwrap().len();
            out.push((path, len));
        }
    }
    out.sort();
    out
}
