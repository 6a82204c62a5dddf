//! Prints, side by side for the global and the US-split policies, the decision and the rule that
//! made it over a grid of data class × subject × region, for transfers, and for model
//! deployment, so a reader sees exactly what swapping the policy crate changes.
//!
//! Run it with `cargo run --example policy_matrix`.

use std::collections::BTreeSet;

use domicile_policy_global::GlobalPolicy;
use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{
    DataClass, Decision, JustificationCode, Purpose, Region, ResidencyError, ResidencyPolicy,
    Subject,
};

/// A decision in a cell: verdict, rule (without the policy prefix), obligations.
fn cell(d: &Decision) -> String {
    let verdict = if d.allowed { "allow" } else { "DENY " };
    let rule = d.rule.as_str().split_once('/').map_or("", |(_, r)| r);
    let mut out = format!("{verdict} {rule}");
    for o in &d.obligations {
        out.push_str(&format!(" [{o}]"));
    }
    out
}

/// Prints, side by side for each policy, the residency decisions and the access rules, with the
/// rule that made each one.
#[derive(Debug, clap::Parser)]
#[command(name = "policy_matrix")]
struct Args {}

fn main() -> Result<(), ResidencyError> {
    let Args {} = clap::Parser::parse();
    let global = GlobalPolicy::new();
    let split = UsSplitPolicy::new();
    let policies: [&dyn ResidencyPolicy; 2] = [&global, &split];
    let subjects = [
        Subject::parse("ana", Some("US"), None)?,
        Subject::parse("pedro", Some("PR"), None)?,
        Subject::parse("lena", Some("DE"), None)?,
        Subject::parse("wei", Some("SG"), None)?,
    ];

    println!("Policies compared:");
    for p in policies {
        println!("  {}", p.id());
    }

    println!("\n== May data of this class, about this subject, rest in this region? ==\n");
    println!(
        "{:<15} {:<14} {:<24} decision and rule",
        "class", "whose data", "policy: region"
    );
    for class in DataClass::ALL {
        let about_subjects = matches!(
            class,
            DataClass::Protected | DataClass::Excepted | DataClass::Public
        );
        if about_subjects {
            for subject in &subjects {
                let who = format!(
                    "{} ({})",
                    subject.id,
                    subject
                        .attributes
                        .residence
                        .as_ref()
                        .map_or("?", |c| c.as_str())
                );
                for p in policies {
                    let home = p.home_region(subject)?;
                    for region in p.regions() {
                        let d = p.may_rest_in(class, &home, region)?;
                        let place = format!("{}: {region}", p.id().name);
                        println!(
                            "{:<15} {:<14} {:<24} {}",
                            class.as_str(),
                            who,
                            place,
                            cell(&d)
                        );
                    }
                }
            }
        } else {
            // Models, audit records and keys belong to the region that made them.
            for p in policies {
                for home in p.regions() {
                    for region in p.regions() {
                        let d = p.may_rest_in(class, home, region)?;
                        let place = format!("{}: {region}", p.id().name);
                        let made = format!("made in {home}");
                        println!(
                            "{:<15} {:<14} {:<24} {}",
                            class.as_str(),
                            made,
                            place,
                            cell(&d)
                        );
                    }
                }
            }
        }
        println!();
    }

    println!("== May it be transferred from one region to another? (US split only: global has one region) ==\n");
    let us = Region::parse("us")?;
    let row = Region::parse("row")?;
    let purposes = [
        Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1"),
        Purpose::new(JustificationCode::Migration),
    ];
    println!(
        "{:<15} {:<6} {:<11} {:<24} decision and rule",
        "class", "home", "transfer", "purpose"
    );
    for class in DataClass::ALL {
        for home in [&us, &row] {
            for (from, to) in [(&us, &row), (&row, &us)] {
                for purpose in &purposes {
                    let d = split.may_transfer(class, home, from, to, purpose)?;
                    println!(
                        "{:<15} {:<6} {:<11} {:<24} {}",
                        class.as_str(),
                        home.as_str(),
                        format!("{from} -> {to}"),
                        purpose.code.as_str(),
                        cell(&d)
                    );
                }
            }
        }
    }

    println!("\n== May a model trained on data from these regions be deployed here? ==\n");
    println!(
        "{:<24} {:<24} decision and rule",
        "trained on", "policy: region"
    );
    for p in policies {
        let regions = p.regions().to_vec();
        let mut sets: Vec<BTreeSet<Region>> = regions
            .iter()
            .map(|r| BTreeSet::from([r.clone()]))
            .collect();
        if regions.len() > 1 {
            sets.push(regions.iter().cloned().collect());
        }
        for set in &sets {
            let names: Vec<&str> = set.iter().map(Region::as_str).collect();
            for region in &regions {
                let d = p.may_deploy_model(set, region)?;
                println!(
                    "{:<24} {:<24} {}",
                    format!("{{{}}}", names.join(", ")),
                    format!("{}: {region}", p.id().name),
                    cell(&d)
                );
            }
        }
    }

    println!("\n== What swapping the policy crate changes ==\n");
    for subject in &subjects {
        let before = global.home_region(subject)?;
        let after = split.home_region(subject)?;
        println!(
            "{:<6} lives in {}: home {} -> {}; Protected data may no longer rest in {}",
            subject.id.as_str(),
            subject
                .attributes
                .residence
                .as_ref()
                .map_or("?", |c| c.as_str()),
            before,
            after,
            if after == us { "row" } else { "us" },
        );
    }
    println!("\n== who may do what: each policy's access rules (Cedar), then the Gate's own");
    for p in policies {
        println!("-- {}", p.id());
        for rule in p
            .rules()
            .iter()
            .filter(|r| r.id.as_str().contains("/access/"))
        {
            println!("   {:<62} {}", rule.id.as_str(), rule.summary);
        }
    }
    println!("-- every Gate");
    for rule in domicile_access::gate_rules() {
        println!("   {:<62} {}", rule.id.as_str(), rule.summary);
    }
    Ok(())
}
