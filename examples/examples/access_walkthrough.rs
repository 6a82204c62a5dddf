//! The access scenarios of domicile-access, played against a US-split deployment, then the log
//! as an auditor sees it.
//!
//! A US-entity engineer reads a US user's profile for support; an engineer employed in Singapore
//! is refused, then reads it with a US-entity approver's time-boxed approval, and is refused again
//! once it expires; a Singapore approver's grant is rejected; an auditor reads the log and no
//! record; the `us` training service receives only subjects homed in `us`, and the `row` one none.
//! Every decision, allowed or not, is in the `us` region's audit log, which is then verified with
//! the log's public key alone.
//!
//! Run with `cargo run --example access_walkthrough [-- --dir PATH]`.

use std::path::PathBuf;

use clap::Parser;
use domicile_access::{RecordRef, ScanRequest, SubjectRef};
use domicile_audit::VerifierKey;
use domicile_examples::{print_tail, scenarios, service, Error};
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, Subject};
use domicile_split::Deployment;
use domicile_store::{Collection, RecordKey};

/// The access scenarios against a US-split deployment.
#[derive(Debug, Parser)]
struct Args {
    /// Where the deployment goes (a temporary directory if not given).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let root = args.dir.unwrap_or_else(|| temp.path().to_owned());
    let (data, keys) = (root.join("data"), root.join("keys"));
    let deployment = Deployment::create(
        &data,
        &keys,
        domicile_examples::policies().resolve("us-split")?,
        domicile_examples::TRUST_DOMAIN,
    )?;
    deployment.set_directory(domicile_examples::directory())?;
    let us = Region::parse("us")?;
    let row = Region::parse("row")?;

    println!("== a US-split deployment in {}", data.display());
    for (region, org, people) in [
        (
            &us,
            ("usds", "US"),
            [("ana", "US"), ("pedro", "PR"), ("gus", "GU")],
        ),
        (
            &row,
            ("bytedance-sg", "SG"),
            [("lena", "DE"), ("wei", "SG"), ("ravi", "IN")],
        ),
    ] {
        let gate = &deployment.region(region).ok_or("missing region")?.gate;
        let app = service(region.as_str(), org, "profile-service", "app-service");
        let why = Purpose::new(JustificationCode::UserRequestedSupport).with_detail("sign-up");
        for (id, country) in people {
            gate.register_subject(&app, &why, &Subject::parse(id, Some(country), None)?)?;
            for (collection, value) in [
                ("profile", format!("{{\"name\":\"{id}\"}}")),
                ("behaviour", "[\"v1\",\"v7\"]".to_owned()),
            ] {
                let record = RecordRef {
                    subject: id.parse()?,
                    class: DataClass::Protected,
                    collection: Collection::parse(collection)?,
                    key: RecordKey::parse(id)?,
                };
                gate.write(&app, &why, &record, value.as_bytes(), None)?;
            }
            println!("   {id:<6} lives in {country}: registered and written in {region}");
        }
    }

    let us_node = deployment.region(&us).ok_or("missing region")?;
    println!("\n== the scenarios, in the us region");
    let results = scenarios(&us_node.gate, &"ana".parse()?)?;

    let training = Purpose::new(JustificationCode::RecommendationTraining).with_ticket("RECSYS-1");
    let behaviour = ScanRequest {
        class: DataClass::Protected,
        collection: Collection::parse("behaviour")?,
        destination: None,
    };
    let trainer = service("us", ("usds", "US"), "trainer", "training-service");
    let scanned = us_node.gate.scan(&trainer, &training, &behaviour)?;
    let ids: Vec<String> = scanned
        .records
        .iter()
        .map(|r| match &r.subject {
            SubjectRef::Id(id) => id.to_string(),
            SubjectRef::Pseudonym(p) => p.clone(),
        })
        .collect();
    println!(
        "   ALLOW {:<58} it received {}",
        "The us training service scans behaviour",
        ids.join(", ")
    );
    let unexpected = results
        .iter()
        .filter(|s| s.allowed != s.expected_allowed)
        .count();

    let log_dir = us_node.log_dir.clone();
    deployment.close()?;
    drop(deployment);
    println!(
        "\n== the us log, as an auditor sees it (`domicile audit query --log {}`)",
        log_dir.display()
    );
    print_tail(&log_dir, 100)?;
    let vkey =
        VerifierKey::parse(std::fs::read_to_string(data.join("us").join("log.vkey"))?.trim())?;
    let report = domicile_audit::verify(&log_dir, &vkey, None, &mut |_, _| {})?;
    println!(
        "\n== `domicile audit verify --log {} --vkey {}`: {} entries, {} checkpoints, all consistent",
        log_dir.display(),
        data.join("us").join("log.vkey").display(),
        report.entries,
        report.checkpoints
    );
    if unexpected > 0 {
        return Err(format!("{unexpected} scenario(s) did not go as the policy says").into());
    }
    Ok(())
}
