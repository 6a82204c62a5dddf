//! A split of a split: a global deployment split to `us-split`, then to `eu-split`, which keeps
//! `us` and `row` and adds `eu`. Only Europeans move (out of `row`, into `eu`); everyone else
//! stays where they are, untouched. Invariants 1 and 8 are checked by reading every store
//! directly after the second split, and no file holds plaintext.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use domicile_access::RecordRef;
use domicile_policy_eu_split::EuSplitPolicy;
use domicile_residency::{
    CountryCode, DataClass, JustificationCode, PolicyResolver, Purpose, Region, ResidencyPolicy,
    Subject,
};
use domicile_split::{run, Deployment, RunOptions};
use domicile_store::{Collection, FileCustodian, KeyCustodian, SealedStore};

fn policies() -> PolicyResolver {
    PolicyResolver::new()
        .with(Arc::new(domicile_policy_global::GlobalPolicy::new()))
        .with(Arc::new(domicile_policy_us_split::UsSplitPolicy::new()))
        .with(Arc::new(EuSplitPolicy::new()))
}

const MARKER: &str = "PLAINTEXT-MARKER-e5a9";
/// Residences: Europeans of the EU, the EEA outside it, the UK and Switzerland; Americans; and
/// the rest of the world (Turkey is in Europe but in none of those).
const COUNTRIES: [&str; 10] = ["DE", "US", "NO", "BR", "GB", "PR", "CH", "TR", "FR", "JP"];

/// (subject, collection) → (residence, value).
type World = BTreeMap<(String, String), (String, Vec<u8>)>;

/// A global deployment with `n` subjects, each with a profile and history (Protected), a device
/// record (Excepted) and a public video.
fn world(data: &Path, keys: &Path, n: usize) -> World {
    let global = Deployment::create(
        data,
        keys,
        policies().resolve("global").unwrap(),
        "domicile.example",
    )
    .unwrap();
    let node = global.regions().next().unwrap();
    let app = global.migration_principal(&node.region);
    let why = Purpose::new(JustificationCode::Migration);
    let mut out = World::new();
    for i in 0..n {
        let id = format!("user-{i:03}");
        let country = COUNTRIES[i % COUNTRIES.len()];
        node.gate
            .register_subject(
                &app,
                &why,
                &Subject::parse(&id, Some(country), None).unwrap(),
            )
            .unwrap();
        for (class, collection) in [
            (DataClass::Protected, "profile"),
            (DataClass::Protected, "behaviour"),
            (DataClass::Excepted, "devices"),
            (DataClass::Public, "videos"),
        ] {
            let value = format!("{{\"{collection}\":\"{id}\",\"m\":\"{MARKER}\"}}");
            let record = RecordRef {
                subject: id.parse().unwrap(),
                class,
                collection: Collection::parse(collection).unwrap(),
                key: format!("{id}-{collection}").parse().unwrap(),
            };
            node.gate
                .write(&app, &why, &record, value.as_bytes(), None)
                .unwrap();
            out.insert(
                (id.clone(), collection.to_owned()),
                (country.to_owned(), value.into_bytes()),
            );
        }
    }
    global.close().unwrap();
    out
}

/// Every record of every region of `policy`, read directly from the stores, each checked
/// against invariant 1: region → (subject, collection) → value.
fn read_all(
    data: &Path,
    keys: &Path,
    policy: Arc<dyn ResidencyPolicy>,
) -> BTreeMap<String, BTreeMap<(String, String), Vec<u8>>> {
    let custodian: Arc<dyn KeyCustodian> = Arc::new(FileCustodian::open(keys).unwrap());
    let mut out = BTreeMap::new();
    for region in policy.regions() {
        let store =
            SealedStore::open(data, region.clone(), policy.clone(), custodian.clone()).unwrap();
        let mut records = BTreeMap::new();
        for s in store.subjects().unwrap() {
            for r in store.scan_subject(&s.subject.id).unwrap() {
                let rest = policy.may_rest_in(r.meta.class, &s.home, region).unwrap();
                assert!(
                    rest.allowed,
                    "invariant 1: {region} holds a {} record of a subject homed in {} ({})",
                    r.meta.class, s.home, rest.rule
                );
                records.insert(
                    (s.subject.id.to_string(), r.meta.collection.to_string()),
                    r.value,
                );
            }
        }
        out.insert(region.to_string(), records);
    }
    out
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

fn options() -> RunOptions<'static> {
    RunOptions {
        batch_subjects: 3,
        ..RunOptions::default()
    }
}

fn is_european(country: &str) -> bool {
    EuSplitPolicy::is_eu_country(CountryCode::parse(country).unwrap())
}

#[test]
fn a_us_split_moved_to_eu_split_moves_europeans_out_of_row_into_eu_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    let world = world(&data, &keys, 30);
    let first = run(&data, &keys, &policies(), "us-split", &options()).unwrap();
    let us_split: Arc<dyn ResidencyPolicy> = policies().resolve("us-split").unwrap();
    let before = read_all(&data, &keys, us_split);

    let second = run(&data, &keys, &policies(), "eu-split", &options()).unwrap();
    let eu_split: Arc<dyn ResidencyPolicy> = Arc::new(EuSplitPolicy::new());
    let after = read_all(&data, &keys, eu_split.clone());

    // Invariant 8: every record is in exactly the regions the plan of each split put it, with
    // the bytes it was written with. Under eu-split Protected and Excepted data is at home;
    // a public video stays where the US split replicated it (us and row), except that a
    // European leaves row, so theirs is in eu and us.
    let mut want: BTreeMap<String, BTreeMap<(String, String), Vec<u8>>> = BTreeMap::new();
    for ((id, collection), (country, value)) in &world {
        let subject = Subject::parse(id, Some(country), None).unwrap();
        let home = eu_split.home_region(&subject).unwrap().to_string();
        let regions: Vec<String> = match (collection.as_str(), is_european(country)) {
            ("videos", true) => vec!["eu".into(), "us".into()],
            ("videos", false) => vec!["us".into(), "row".into()],
            _ => vec![home],
        };
        for region in regions {
            want.entry(region)
                .or_default()
                .insert((id.clone(), collection.clone()), value.clone());
        }
    }
    assert_eq!(after, want);

    // Nobody but the Europeans was touched: every record of a non-European in us and row is
    // the one the first split left there.
    let europeans: BTreeSet<String> = world
        .iter()
        .filter(|(_, (c, _))| is_european(c))
        .map(|((id, _), _)| id.clone())
        .collect();
    assert_eq!(europeans.len(), 15);
    for region in ["us", "row"] {
        let untouched = |m: &BTreeMap<(String, String), Vec<u8>>| {
            m.iter()
                .filter(|((id, _), _)| !europeans.contains(id))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            untouched(&before[region]),
            untouched(&after[region]),
            "{region}"
        );
    }
    // Row held every European before (homed there under the US split); it holds none now.
    assert!(before["row"].keys().any(|(id, _)| europeans.contains(id)));
    assert!(!after["row"].keys().any(|(id, _)| europeans.contains(id)));

    // The report: Europeans shredded in row only, after their records were read back.
    let report = &second.report;
    assert_eq!(report.source_policy.name, "us-split");
    assert_eq!(report.target_policy.name, "eu-split");
    let row = Region::parse("row").unwrap();
    assert_eq!(
        report.shredded_subjects,
        BTreeMap::from([(row.clone(), europeans.len() as u64)])
    );
    // The report counts what rests in each region after the shred.
    for (region, records) in &after {
        let counted: u64 = report.verification.per_region[&Region::parse(region).unwrap()]
            .values()
            .sum();
        assert_eq!(counted, records.len() as u64, "{region}");
    }
    // Profile, history, device record and video of each European, the video to two regions.
    assert_eq!(
        report.verification.records_checked,
        5 * europeans.len() as u64
    );
    assert_eq!(
        Deployment::manifest(&data).unwrap().unwrap().policy,
        "eu-split"
    );
    // The first split's journal and report are kept beside the second's.
    let kept = data.join("split/previous/1");
    assert!(kept.join("journal.jsonl").is_file() && kept.join("report.json").is_file());
    let kept: domicile_split::SignedReport =
        serde_json::from_slice(&std::fs::read(kept.join("report.json")).unwrap()).unwrap();
    assert_eq!(kept, first);

    // No plaintext anywhere; every region's log verifies; rerunning returns the same report.
    assert_eq!(
        files_contain(&data, MARKER.as_bytes()),
        Vec::<String>::new()
    );
    assert_eq!(
        files_contain(&keys, MARKER.as_bytes()),
        Vec::<String>::new()
    );
    for region in ["eu", "us", "row"] {
        let vkey = std::fs::read_to_string(data.join(region).join("log.vkey")).unwrap();
        let vkey = domicile_audit::VerifierKey::parse(vkey.trim()).unwrap();
        domicile_audit::verify(
            &data.join(region).join("audit"),
            &vkey,
            None,
            &mut |_, _| {},
        )
        .unwrap_or_else(|e| panic!("the {region} log does not verify: {e}"));
    }
    // Row's log: each migration read of Europeans out of row was decided by the residency
    // policy too, as a move toward their home, and names the rule.
    let mut migrations = Vec::new();
    domicile_audit::for_each_entry(&data.join("row/audit"), &mut |_, _| {}, |_, bytes, _| {
        let entry = domicile_audit::Entry::from_canonical(bytes)?;
        if entry.action == domicile_audit::Action::Migrate
            && entry.policy.name == "eu-split"
            && entry.decision.allowed
        {
            migrations.push(entry);
        }
        Ok(())
    })
    .unwrap();
    assert!(!migrations.is_empty());
    for entry in &migrations {
        assert!(
            entry
                .decision
                .rules
                .iter()
                .any(|r| r.as_str() == "eu-split/protected-moves-only-toward-home-for-migration"),
            "{:?}",
            entry.decision.rules
        );
    }
    let again = run(&data, &keys, &policies(), "eu-split", &options()).unwrap();
    assert_eq!(again, second);
    // And the deployment opens under the new policy, through its manifest.
    let deployment = Deployment::open(&data, &keys, &policies()).unwrap();
    assert_eq!(deployment.policy().id().name, "eu-split");
    deployment.close().unwrap();
}

/// Back from eu-split to us-split would keep `us` and `row` but drop `eu`, leaving its data
/// behind: refused before anything is done, and the deployment stays under eu-split.
#[test]
fn a_split_that_keeps_regions_but_drops_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    world(&data, &keys, 10);
    run(&data, &keys, &policies(), "us-split", &options()).unwrap();
    run(&data, &keys, &policies(), "eu-split", &options()).unwrap();
    let eu_split: Arc<dyn ResidencyPolicy> = Arc::new(EuSplitPolicy::new());
    let before = read_all(&data, &keys, eu_split.clone());
    let err = run(&data, &keys, &policies(), "us-split", &options()).unwrap_err();
    assert!(
        matches!(&err, domicile_split::SplitError::RegionDropped { region } if region == "eu"),
        "{err}"
    );
    assert_eq!(
        Deployment::manifest(&data).unwrap().unwrap().policy,
        "eu-split"
    );
    assert_eq!(read_all(&data, &keys, eu_split), before);
    // Nothing was moved aside: rerunning the finished split still returns its report.
    assert!(!data.join("split/previous/2").exists());
    run(&data, &keys, &policies(), "eu-split", &options()).unwrap();
}

/// Ctrl-C during the second split, after its first batch: the rerun resumes from the journal and
/// ends exactly where an uninterrupted split of an identical world ends.
#[test]
fn an_interrupted_split_of_a_split_resumes_to_the_same_state() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let finished = |interrupt: bool| {
        let dir = tempfile::tempdir().unwrap();
        let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
        world(&data, &keys, 20);
        run(&data, &keys, &policies(), "us-split", &options()).unwrap();
        if interrupt {
            let stop = AtomicBool::new(false);
            let after_one = |_: &domicile_split::Progress| stop.store(true, Ordering::Relaxed);
            let stopping = RunOptions {
                stop: Some(&stop),
                progress: Some(&after_one),
                ..options()
            };
            let err = run(&data, &keys, &policies(), "eu-split", &stopping).unwrap_err();
            assert!(
                matches!(err, domicile_split::SplitError::Interrupted { .. }),
                "{err}"
            );
            assert_eq!(
                Deployment::manifest(&data).unwrap().unwrap().policy,
                "us-split",
                "an interrupted split leaves the deployment under its old policy"
            );
        }
        let report = run(&data, &keys, &policies(), "eu-split", &options()).unwrap();
        let stores = read_all(&data, &keys, Arc::new(EuSplitPolicy::new()));
        (stores, report.report.shredded_subjects, dir)
    };
    let (resumed, resumed_shreds, _a) = finished(true);
    let (straight, straight_shreds, _b) = finished(false);
    assert_eq!(resumed, straight);
    assert_eq!(resumed_shreds, straight_shreds);
}
