//! `domicile recsys` end to end: the real binary generates a world, trains signed models,
//! serves them (folding each user in from their history), evaluates them, and refuses tampered,
//! unsigned, foreign-signed, forged and malformed input.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output};

fn domicile(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_domicile"))
        .arg("recsys")
        .args(args)
        .output()
        .expect("the domicile binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = domicile(args);
    assert!(
        out.status.success(),
        "domicile recsys {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn fails(args: &[&str]) -> String {
    let out = domicile(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "domicile recsys {args:?} should fail"
    );
    String::from_utf8(out.stderr).expect("UTF-8 errors")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

const SMALL: [&str; 8] = [
    "--factors",
    "8",
    "--iterations",
    "3",
    "--threads",
    "2",
    "--neighbours",
    "20",
];

#[test]
fn generate_train_sign_recommend_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.csv");
    ok(&[
        "generate",
        "--users",
        "400",
        "--videos",
        "150",
        "--events",
        "15000",
        "--seed",
        "3",
        "--out",
        s(&world),
    ]);
    let key = dir.path().join("region.key");
    let public = ok(&["keygen", "--out", s(&key)]);
    assert_eq!(public.trim().len(), 64);
    let pub_file = dir.path().join("region.key.pub");

    let model = dir.path().join("blend.domrec");
    let mut args = vec![
        "train",
        "--interactions",
        s(&world),
        "--model-out",
        s(&model),
        "--model",
        "blend",
    ];
    args.extend(["--signing-key", s(&key), "--policy", "us-split"]);
    args.extend(SMALL);
    let out = ok(&args);
    assert!(out.contains("fitted blend in"), "{out}");
    assert!(
        out.contains("blend weights chosen on 10 % of the training pairs held out"),
        "{out}"
    );
    assert!(out.contains("trained_on row,us;"), "{out}");
    assert!(
        out.contains(&format!("signed by {}", public.trim())),
        "{out}"
    );

    let recs = dir.path().join("recs.csv");
    ok(&[
        "recommend",
        "--model",
        s(&model),
        "--interactions",
        s(&world),
        "--users",
        "all",
        "--k",
        "5",
        "--exclude-seen",
        "--trusted-key",
        s(&pub_file),
        "--out",
        s(&recs),
    ]);
    let text = std::fs::read_to_string(&recs).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("user,item,rank,score"));
    let mut seen: HashMap<String, HashSet<String>> = HashMap::new();
    for line in std::fs::read_to_string(&world).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        seen.entry(f[0].to_owned())
            .or_default()
            .insert(f[1].to_owned());
    }
    let mut per_user: HashMap<&str, Vec<u32>> = HashMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 4, "{line}");
        assert!(!seen[f[0]].contains(f[1]), "{line} recommends a seen item");
        per_user
            .entry(f[0])
            .or_default()
            .push(f[2].parse().unwrap());
    }
    assert_eq!(per_user.len(), seen.len());
    assert!(per_user.values().all(|ranks| ranks == &[1, 2, 3, 4, 5]));

    // A listed user file, with an unknown user who gets the cold-start ranking.
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "user\nu1\nstranger\n").unwrap();
    let capped = dir.path().join("capped.csv");
    ok(&[
        "recommend",
        "--model",
        s(&model),
        "--interactions",
        s(&world),
        "--trusted-key",
        public.trim(),
        "--users",
        s(&users),
        "--k",
        "4",
        "--per-creator-cap",
        "1",
        "--out",
        s(&capped),
    ]);
    let text = std::fs::read_to_string(&capped).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("stranger,")).count(),
        4
    );

    // Another key's public key: refused, naming both keys.
    let other = dir.path().join("other.key");
    ok(&["keygen", "--out", s(&other)]);
    let other_pub = std::fs::read_to_string(dir.path().join("other.key.pub")).unwrap();
    let err = fails(&[
        "recommend",
        "--model",
        s(&model),
        "--interactions",
        s(&world),
        "--users",
        "all",
        "--trusted-key",
        other_pub.trim(),
        "--out",
        s(&recs),
    ]);
    assert!(err.contains("not by the trusted key"), "{err}");

    // No trusted key at all: refused, saying what to pass.
    let err = fails(&[
        "recommend",
        "--model",
        s(&model),
        "--interactions",
        s(&world),
        "--users",
        "all",
        "--out",
        s(&recs),
    ]);
    assert!(err.contains("no trusted key was given"), "{err}");

    // A forged provenance: the blend relabelled as trained on `us` alone and re-signed with
    // another key. Its signature is valid under its own key; it is refused all the same.
    let builtins = domicile_recommender::BuiltIn::all()
        .into_iter()
        .fold(domicile_recommender::AlgorithmRegistry::new(), |r, a| {
            r.with(std::sync::Arc::new(a))
        });
    let loaded = domicile_recommender::read_artifact(
        &model,
        &domicile_recommender::Trust::allow_untrusted(),
        &builtins,
    )
    .unwrap();
    let forger =
        domicile_recommender::SigningKey::from_pkcs8(&std::fs::read(&other).unwrap()).unwrap();
    let forged_provenance = domicile_recommender::Provenance {
        trained_on: [domicile_residency::Region::parse("us").unwrap()]
            .into_iter()
            .collect(),
        subjects: loaded.manifest.subjects,
        events: loaded.manifest.events,
        data_digest: [0; 32],
        policy: loaded.manifest.policy.clone(),
    };
    let forged = dir.path().join("forged.domrec");
    domicile_recommender::write_artifact(
        &forged,
        &loaded.model,
        &forged_provenance,
        Some(&forger),
        &domicile_recommender::Screen::default(),
    )
    .unwrap();
    let err = fails(&[
        "recommend",
        "--model",
        s(&forged),
        "--interactions",
        s(&world),
        "--users",
        "all",
        "--trusted-key",
        s(&pub_file),
        "--out",
        s(&recs),
    ]);
    assert!(err.contains("not by the trusted key"), "{err}");
    // Allowed explicitly, it is served, and stderr says loudly that it is not trusted.
    let out = domicile(&[
        "recommend",
        "--model",
        s(&forged),
        "--interactions",
        s(&world),
        "--users",
        "all",
        "--trusted-key",
        s(&pub_file),
        "--allow-unsigned",
        "--out",
        s(&recs),
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARNING") && err.contains("not a trusted key"),
        "{err}"
    );

    // One flipped byte in the manifest: the signature no longer verifies.
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[40] ^= 0x01;
    let tampered = dir.path().join("tampered.domrec");
    std::fs::write(&tampered, &bytes).unwrap();
    let err = fails(&[
        "recommend",
        "--model",
        s(&tampered),
        "--interactions",
        s(&world),
        "--users",
        "all",
        "--trusted-key",
        public.trim(),
        "--out",
        s(&recs),
    ]);
    assert!(err.contains("signature does not verify"), "{err}");

    // An unsigned model is refused, unless --allow-unsigned is given, and then with a warning.
    let unsigned = dir.path().join("unsigned.domrec");
    let mut args = vec![
        "train",
        "--interactions",
        s(&world),
        "--model-out",
        s(&unsigned),
        "--region",
        "us",
    ];
    args.extend(SMALL);
    let out = ok(&args);
    assert!(out.contains("unsigned; trained_on us;"), "{out}");
    let out = domicile(&[
        "recommend",
        "--model",
        s(&unsigned),
        "--interactions",
        s(&world),
        "--users",
        "all",
        "--allow-unsigned",
        "--out",
        s(&recs),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING: model"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is UNSIGNED"));
    let err = fails(&[
        "recommend",
        "--model",
        s(&unsigned),
        "--interactions",
        s(&world),
        "--users",
        "all",
        "--trusted-key",
        public.trim(),
        "--out",
        s(&recs),
    ]);
    assert!(err.contains("is unsigned"), "{err}");
}

#[test]
fn eval_prints_every_model() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.csv");
    ok(&[
        "generate",
        "--users",
        "400",
        "--videos",
        "150",
        "--events",
        "15000",
        "--out",
        s(&world),
    ]);
    let mut args = vec![
        "eval",
        "--interactions",
        s(&world),
        "--holdout",
        "0.2",
        "--seed",
        "42",
        "--k",
        "10",
    ];
    args.extend(SMALL);
    let out = ok(&args);
    for model in [
        "popularity",
        "als",
        "item-knn-cosine",
        "item-knn-bm25",
        "blend",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(model)),
            "no {model} line in {out}"
        );
    }
    args.extend(["--temporal", "--json", "--models", "als"]);
    let out = ok(&args);
    assert!(out.trim().starts_with("{\"model\":\"als\""), "{out}");
}

#[test]
fn events_jsonl_trains_and_bad_input_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    ok(&[
        "generate",
        "--users",
        "100",
        "--videos",
        "50",
        "--events",
        "3000",
        "--out",
        s(&events),
    ]);
    let model = dir.path().join("knn.domrec");
    let mut args = vec![
        "train",
        "--interactions",
        s(&events),
        "--model-out",
        s(&model),
        "--model",
        "item-knn",
        "--policy",
        "us-split",
    ];
    args.extend(SMALL);
    ok(&args);

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "user,item,weight\na,x,1\nb,y,lots\n").unwrap();
    let err = fails(&["train", "--interactions", s(&bad), "--model-out", s(&model)]);
    assert!(err.contains("bad.csv:3: weight \"lots\""), "{err}");

    // A policy decides by country, so interactions without one are refused.
    std::fs::write(&bad, "user,item\na,x\nb,y\n").unwrap();
    let err = fails(&[
        "train",
        "--interactions",
        s(&bad),
        "--model-out",
        s(&model),
        "--policy",
        "us-split",
    ]);
    assert!(err.contains("country"), "{err}");

    let err = fails(&[
        "recommend",
        "--model",
        s(&bad),
        "--interactions",
        s(&events),
        "--allow-unsigned",
        "--users",
        "all",
        "--out",
        s(&model),
    ]);
    assert!(err.contains("not a domicile model artifact"), "{err}");

    // A pair whose summed weight overflows f32 is an error naming file and line.
    std::fs::write(&bad, "user,item,weight\na,x,3e38\nb,y,1\na,x,3e38\n").unwrap();
    let err = fails(&["train", "--interactions", s(&bad), "--model-out", s(&model)]);
    assert!(err.contains("bad.csv:4: weight 3e38"), "{err}");
    assert!(err.contains("past the largest finite f32"), "{err}");
}

#[test]
fn keygen_writes_a_private_key_once_and_a_public_half_everyone_may_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("model.key");
    ok(&["keygen", "--out", s(&key)]);
    let first = std::fs::read(&key).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&dir.path().join("model.key.pub")), 0o644);
    let err = fails(&["keygen", "--out", s(&key)]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        first,
        "the key was overwritten"
    );
}

#[test]
fn a_linked_algorithm_trains_signs_serves_and_evaluates_by_name_and_an_unknown_one_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.csv");
    ok(&[
        "generate",
        "--users",
        "300",
        "--videos",
        "120",
        "--events",
        "10000",
        "--out",
        s(&world),
    ]);
    let model = dir.path().join("ease.domrec");
    // An unknown name lists every algorithm the binary links, the buyer's among them.
    let err = fails(&[
        "train",
        "--interactions",
        s(&world),
        "--model-out",
        s(&model),
        "--model",
        "svd",
    ]);
    for name in ["als", "blend", "ease", "item-knn", "popularity"] {
        assert!(err.contains(name), "{name} not listed: {err}");
    }
    assert!(!model.exists());
    // A hyper-parameter the algorithm does not know is its typed error, named.
    let err = fails(&[
        "train",
        "--interactions",
        s(&world),
        "--model-out",
        s(&model),
        "--model",
        "ease",
        "--set",
        "lamda=10",
    ]);
    assert!(err.contains("ease") && err.contains("lamda"), "{err}");

    let key = dir.path().join("us.key");
    ok(&["keygen", "--out", s(&key)]);
    let out = ok(&[
        "train",
        "--interactions",
        s(&world),
        "--model-out",
        s(&model),
        "--model",
        "ease",
        "--set",
        "lambda=50",
        "--set",
        "threads=2",
        "--signing-key",
        s(&key),
        "--policy",
        "us-split",
    ]);
    assert!(out.contains("fitted ease"), "{out}");
    let recs = dir.path().join("recs.csv");
    ok(&[
        "recommend",
        "--model",
        s(&model),
        "--interactions",
        s(&world),
        "--users",
        "all",
        "--exclude-seen",
        "--per-creator-cap",
        "2",
        "--trusted-key",
        s(&dir.path().join("us.key.pub")),
        "--out",
        s(&recs),
    ]);
    let text = std::fs::read_to_string(&recs).unwrap();
    assert!(text.lines().count() > 100, "{text}");
    let out = ok(&[
        "eval",
        "--interactions",
        s(&world),
        "--models",
        "popularity,ease",
        "--set",
        "lambda=50",
        "--threads",
        "2",
    ]);
    assert!(out.lines().any(|l| l.starts_with("ease")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("popularity")), "{out}");
    let err = fails(&["eval", "--interactions", s(&world), "--models", "svd"]);
    assert!(err.contains("ease"), "{err}");
}
