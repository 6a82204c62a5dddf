//! One access decision (Cedar rules + residency, no I/O): p50 and p99 latency.
//!
//! Run with `cargo bench -p domicile-access --bench decision`. Target: p50 ≤ 5 µs.

use std::hint::black_box;
use std::time::Instant;

use domicile_access::{
    AccessAction, AccessRequest, AccessRules, Principal, PrincipalKind, Resource,
};
use domicile_policy_us_split::UsSplitPolicy;
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, ResidencyPolicy, Subject};

fn main() {
    let policy = UsSplitPolicy::new();
    let cached = AccessRules::new(&policy).expect("rules load");
    let uncached = AccessRules::new(&policy)
        .expect("rules load")
        .with_cache_capacity(0);
    for (name, rules) in [
        ("cached", &cached),
        ("uncached (Cedar every time)", &uncached),
    ] {
        measure(name, &policy, rules);
    }
}

fn measure(name: &str, policy: &UsSplitPolicy, rules: &AccessRules) {
    let alice = Principal::parse(
        "spiffe://d/us/usds/alice",
        PrincipalKind::Person,
        ("usds", "US"),
        "US",
        "US",
        &["engineer"],
    )
    .expect("valid principal");
    let subject = Subject::parse("user-1", Some("US"), None).expect("valid subject");
    let us = Region::parse("us").expect("valid region");
    let purpose = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-1");

    let decide = || {
        let home = policy.home_region(&subject).expect("home");
        let rest = policy
            .may_rest_in(DataClass::Protected, &home, &us)
            .expect("rest");
        let access = rules
            .decide(&AccessRequest {
                principal: &alice,
                action: AccessAction::Read,
                resource: Resource::Records {
                    class: DataClass::Protected,
                    region: us.clone(),
                    subject_home: Some(home),
                    collection: "profile".into(),
                },
                purpose: &purpose,
                approval: None,
            })
            .expect("decide");
        assert!(rest.allowed && access.allowed);
        black_box((rest, access))
    };

    for _ in 0..2_000 {
        decide();
    }
    let n = 50_000;
    let mut samples = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        decide();
        samples.push(t.elapsed().as_nanos() as u64);
    }
    let total = start.elapsed();
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    println!(
        "one decision (residency + Cedar), {name}, {n} runs: p50 {:.2} µs, p99 {:.2} µs, {:.0} decisions/s (target p50 <= 5 µs)",
        pct(0.50),
        pct(0.99),
        n as f64 / total.as_secs_f64()
    );
}
