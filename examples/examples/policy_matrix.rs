//! Prints, side by side for the global, the US-split and the EU-split policies, the decision and
//! the rule that made it over a grid of data class × subject × region, for transfers, and for
//! model deployment, so a reader sees exactly what swapping the policy crate changes; then each
//! policy's access rules (who may do what) and the Gate's own.
//!
//! Run it with `cargo run --example policy_matrix`.

use std::collections::BTreeSet;

use domicile_policy_eu_split::EuSplitPolicy;
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
    let eu_split = EuSplitPolicy::new();
    let policies: [&dyn ResidencyPolicy; 3] = [&global, &split, &eu_split];
    let subjects = [
        Subject::parse("ana", Some("US"), None)?,
        Subject::parse("pedro", Some("PR"), None)?,
        Subject::parse("lena", Some("DE"), None)?,
        Subject::parse("sam", Some("GB"), None)?,
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

    println!("== May it be transferred from one region to another? (the splits: global has one region) ==\n");
    let purposes = [
        Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1"),
        Purpose::new(JustificationCode::Migration),
    ];
    println!(
        "{:<15} {:<6} {:<24} {:<24} decision and rule",
        "class", "home", "policy: transfer", "purpose"
    );
    for p in policies.iter().filter(|p| p.regions().len() > 1) {
        for class in DataClass::ALL {
            for home in p.regions() {
                for from in p.regions() {
                    for to in p.regions().iter().filter(|to| *to != from) {
                        for purpose in &purposes {
                            let d = p.may_transfer(class, home, from, to, purpose)?;
                            println!(
                                "{:<15} {:<6} {:<24} {:<24} {}",
                                class.as_str(),
                                home.as_str(),
                                format!("{}: {from} -> {to}", p.id().name),
                                purpose.code.as_str(),
                                cell(&d)
                            );
                        }
                    }
                }
            }
        }
        println!();
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
        let homes: Vec<String> = policies
            .iter()
            .map(|p| {
                p.home_region(subject)
                    .map(|h| format!("{} under {}", h, p.id().name))
            })
            .collect::<Result<_, _>>()?;
        println!(
            "{:<6} lives in {}: home {}",
            subject.id.as_str(),
            subject
                .attributes
                .residence
                .as_ref()
                .map_or("?", |c| c.as_str()),
            homes.join(" -> "),
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
    who_reads_protected_data(&policies);
    Ok(())
}

/// Who may read a Protected profile for user support (ticket `SUP-1`, no approval) in each
/// region of each policy, decided by the policy's Cedar rules, with the rules that decided.
fn who_reads_protected_data(policies: &[&dyn ResidencyPolicy]) {
    use domicile_access::{AccessAction, AccessRequest, AccessRules, Principal, PrincipalKind};
    let person = |id: &str, org: (&str, &str), located: &str| {
        Principal::parse(
            id,
            PrincipalKind::Person,
            org,
            org.1,
            located,
            &["engineer"],
        )
        .expect("the matrix's principals are valid")
    };
    let who = [
        (
            "USDS engineer in the US",
            person("spiffe://d/us/usds/alice", ("usds", "US"), "US"),
        ),
        (
            "USDS engineer in China",
            person("spiffe://d/us/usds/alice", ("usds", "US"), "CN"),
        ),
        (
            "partner operator",
            person("spiffe://d/us/techpartner/op", ("techpartner", "US"), "US"),
        ),
        (
            "parent's US subsidiary",
            person(
                "spiffe://d/us/bytedance-us/bo",
                ("bytedance-us", "US"),
                "US",
            ),
        ),
        (
            "parent's engineer in China",
            person(
                "spiffe://d/row/bytedance-cn/wu",
                ("bytedance-cn", "CN"),
                "CN",
            ),
        ),
        (
            "EU entity engineer in Ireland",
            person("spiffe://d/eu/tiktok-ie/anna", ("tiktok-ie", "IE"), "IE"),
        ),
        (
            "EU entity engineer in China",
            person("spiffe://d/eu/tiktok-ie/anna", ("tiktok-ie", "IE"), "CN"),
        ),
    ];
    let support = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1");
    println!(
        "\n== who reads a Protected profile for user support, with a ticket and no approval\n"
    );
    for p in policies {
        let rules = match AccessRules::new(*p) {
            Ok(rules) => rules,
            Err(e) => {
                println!("-- {}: the access rules do not load: {e}", p.id().name);
                continue;
            }
        };
        println!("-- {}", p.id().name);
        for (name, principal) in &who {
            for region in p.regions() {
                let decision = rules.decide(&AccessRequest {
                    principal,
                    action: AccessAction::Read,
                    resource: domicile_access::Resource::Records {
                        class: DataClass::Protected,
                        region: region.clone(),
                        subject_home: Some(region.clone()),
                        collection: "profile".into(),
                    },
                    purpose: &support,
                    approval: None,
                });
                let text = match decision {
                    Ok(d) => {
                        let rules: Vec<&str> = d
                            .rules
                            .iter()
                            .map(|r| r.as_str().split_once('/').map_or("", |(_, r)| r))
                            .collect();
                        format!(
                            "{} {}",
                            if d.allowed { "allow" } else { "DENY " },
                            rules.join(", ")
                        )
                    }
                    Err(e) => format!("error: {e}"),
                };
                println!("   {:<30} in {:<7} {}", name, region.as_str(), text);
            }
        }
    }
}
