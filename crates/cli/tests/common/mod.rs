//! What the CLI tests that start from a global deployment share: the binary, its output, and
//! a small world written through the deployment's Gate.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use domicile_access::RecordRef;
use domicile_residency::{DataClass, JustificationCode, Purpose, Subject};
use domicile_split::Deployment;
use domicile_store::{Collection, RecordKey};

pub(crate) fn policies() -> domicile_residency::PolicyResolver {
    domicile_residency::PolicyResolver::new()
        .with(Arc::new(domicile_policy_global::GlobalPolicy::new()))
        .with(Arc::new(domicile_policy_us_split::UsSplitPolicy::new()))
}

pub(crate) fn domicile(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_domicile"))
        .args(args)
        .output()
        .expect("the domicile binary runs")
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A global deployment: user-0 and user-3 live in the US, user-1 in Germany, user-2 in
/// Brazil; each has a protected profile and a public video.
pub(crate) fn global_world(data: &Path, keys: &Path) {
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
    for (i, country) in ["US", "DE", "BR", "US"].iter().enumerate() {
        let id = format!("user-{i}");
        node.gate
            .register_subject(
                &app,
                &why,
                &Subject::parse(&id, Some(country), None).unwrap(),
            )
            .unwrap();
        for (class, collection) in [
            (DataClass::Protected, "profile"),
            (DataClass::Public, "videos"),
        ] {
            let record = RecordRef {
                subject: id.parse().unwrap(),
                class,
                collection: Collection::parse(collection).unwrap(),
                key: RecordKey::parse(&format!("{id}-{collection}")).unwrap(),
            };
            node.gate
                .write(&app, &why, &record, b"{\"v\":1}", None)
                .unwrap();
        }
    }
    global.close().unwrap();
}
