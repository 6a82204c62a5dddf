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
    let out = domicile(&["init", "--policy", "global", "--data", d, "--keys", k]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
