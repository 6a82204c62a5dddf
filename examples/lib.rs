//! Runnable walkthroughs of domicile, and the pieces they share. Run one from the workspace root
//! with `cargo run --release --example NAME`:
//!
//! - `region_split`: the main demo, a global deployment becomes a US split;
//! - `access_walkthrough`: the access scenarios against a US-split deployment, then its log;
//! - `auditor`: an auditor verifies a log and catches a tampered copy;
//! - `embed_store`: a service embedding the sealed store;
//! - `policy_matrix`: the three policies side by side, and who may read what under each.

use std::path::Path;
use std::time::Duration;

/// `docs/embedding.md`, the guide for engineers who embed domicile, included here so that every
/// code block in it compiles and runs as a doctest.
#[doc = include_str!("../docs/embedding.md")]
pub mod embedding_guide {}

use domicile_access::{
    ApprovalScope, ApproverKey, Gate, GateError, Principal, PrincipalKind, RecordRef, ScanRequest,
};
use domicile_audit::Entry;
use domicile_residency::{DataClass, JustificationCode, Purpose, Region, SubjectId};
use domicile_store::{Collection, RecordKey};
use serde::Serialize;

/// The error type of the walkthroughs.
pub type Error = Box<dyn std::error::Error>;

/// The recommendation algorithms the walkthroughs link: the built-in models and the buyer's
/// EASE, as in the `domicile` binary's composition root.
pub fn algorithms() -> domicile_recommender::AlgorithmRegistry {
    domicile_recommender::BuiltIn::all()
        .into_iter()
        .fold(domicile_recommender::AlgorithmRegistry::new(), |r, a| {
            r.with(std::sync::Arc::new(a))
        })
        .with(std::sync::Arc::new(domicile_recommender_ease::Ease))
}

/// The residency policies the walkthroughs link: like the `domicile` binary, the examples are a
/// composition root, and this is their list.
pub fn policies() -> domicile_residency::PolicyResolver {
    domicile_residency::PolicyResolver::new()
        .with(std::sync::Arc::new(
            domicile_policy_global::GlobalPolicy::new(),
        ))
        .with(std::sync::Arc::new(
            domicile_policy_us_split::UsSplitPolicy::new(),
        ))
        .with(std::sync::Arc::new(
            domicile_policy_eu_split::EuSplitPolicy::new(),
        ))
}

/// The trust domain of the walkthroughs' principals.
pub const TRUST_DOMAIN: &str = "domicile.example";

/// One access scenario and what happened.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// The principal's id.
    pub who: String,
    /// What was tried.
    pub what: String,
    /// What the policy says should happen.
    pub expected_allowed: bool,
    /// What happened.
    pub allowed: bool,
    /// The decision, its rules and the audit entry.
    pub detail: String,
}

/// A person of `org` (name, country of incorporation), working and located in that country.
pub fn person(region: &str, org: (&str, &str), name: &str, roles: &[&str]) -> Principal {
    let kind = if roles.contains(&"auditor") {
        PrincipalKind::Auditor
    } else {
        PrincipalKind::Person
    };
    Principal::parse(
        &format!("spiffe://{TRUST_DOMAIN}/{region}/{}/{name}", org.0),
        kind,
        org,
        org.1,
        org.1,
        roles,
    )
    .expect("a valid principal")
}

/// A service of `org` holding one role.
pub fn service(region: &str, org: (&str, &str), name: &str, role: &str) -> Principal {
    Principal::parse(
        &format!("spiffe://{TRUST_DOMAIN}/{region}/{}/{name}", org.0),
        PrincipalKind::Service,
        org,
        org.1,
        org.1,
        &[role],
    )
    .expect("a valid principal")
}

/// The walkthroughs' principal directory: every principal they use, as the operator of each
/// region would sign it. A principal not named here, or claiming other attributes, is refused
/// (`gate/unverified-principal`).
pub fn directory() -> domicile_access::PrincipalDirectory {
    let cast = [
        service("global", ("tiktok-global", "SG"), "ingest", "app-service"),
        service(
            "global",
            ("tiktok-global", "SG"),
            "trainer",
            "training-service",
        ),
        service("us", ("usds", "US"), "profile-service", "app-service"),
        service("us", ("usds", "US"), "trainer", "training-service"),
        service(
            "row",
            ("bytedance-sg", "SG"),
            "profile-service",
            "app-service",
        ),
        service("row", ("bytedance-sg", "SG"), "trainer", "training-service"),
        person("us", ("usds", "US"), "alice", &["engineer"]),
        person("row", ("bytedance-sg", "SG"), "bo", &["engineer"]),
        person("row", ("bytedance-sg", "SG"), "dan", &["approver"]),
        person("us", ("usds", "US"), "carol", &["approver"]),
        person("us", ("usds", "US"), "sofia", &["security"]),
        person("us", ("audit-firm", "US"), "eve", &["auditor"]),
        person("us", ("other-audit", "US"), "kim", &["auditor"]),
        person("row", ("bytedance-cn", "CN"), "wu", &["engineer"]),
        usds_engineer_abroad(),
        person("us", ("bytedance-us", "US"), "sam", &["engineer"]),
        person("us", ("techpartner", "US"), "oscar", &["engineer"]),
        service(
            "us",
            ("bytedance-cn", "CN"),
            "profile-service",
            "app-service",
        ),
        service(
            "us",
            ("bytedance-sg", "SG"),
            "migration",
            "migration-service",
        ),
        person("us", ("usds", "US"), "paul", &["app-service"]),
        person("us", ("usds", "US"), "frank", &["engineer"]).with_person("frank"),
        frank_as_approver(),
    ];
    domicile_access::PrincipalDirectory::from_entries(cast)
        .expect("the walkthroughs' cast has distinct ids matching their organisations")
}

/// A USDS engineer whose directory entry says he is located in China.
pub fn usds_engineer_abroad() -> Principal {
    Principal::parse(
        &format!("spiffe://{TRUST_DOMAIN}/us/usds/mike"),
        PrincipalKind::Person,
        ("usds", "US"),
        "US",
        "CN",
        &["engineer"],
    )
    .expect("a valid principal")
}

/// frank's second id, as an approver: the same person, so he cannot approve his own request.
pub fn frank_as_approver() -> Principal {
    person("us", ("usds", "US"), "frank-approver", &["approver"]).with_person("frank")
}

/// Whether a Gate call went ahead, and the decision in a line.
pub fn outcome<T>(result: Result<T, GateError>) -> (bool, String) {
    match result {
        Ok(_) => (true, "allowed".into()),
        Err(GateError::Denied {
            rules, reason, seq, ..
        }) => (
            false,
            format!(
                "denied by {} ({reason}; audit entry {seq})",
                rules
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Err(other) => (false, format!("refused: {other}")),
    }
}

/// The access scenarios of domicile-access, played against a US-split deployment's `us` Gate,
/// about one US subject who has a `profile` record: each printed as it happens.
pub fn scenarios(us: &Gate, us_subject: &SubjectId) -> Result<Vec<Scenario>, Error> {
    let mut out = Vec::new();
    let mut record =
        |who: &Principal, what: &str, expected: bool, (allowed, detail): (bool, String)| {
            println!(
                "   {} {:<58} {}",
                if allowed { "ALLOW" } else { "DENY " },
                what,
                detail
            );
            out.push(Scenario {
                who: who.id.to_string(),
                what: what.to_owned(),
                expected_allowed: expected,
                allowed,
                detail,
            });
        };
    let profile = RecordRef {
        subject: us_subject.clone(),
        class: DataClass::Protected,
        collection: Collection::parse("profile")?,
        key: RecordKey::parse(us_subject.as_str())?,
    };
    let support = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("SUP-4242");
    let legal = Purpose::new(JustificationCode::LegalRequest).with_ticket("LEG-4242");
    let alice = person("us", ("usds", "US"), "alice", &["engineer"]);
    record(
        &alice,
        "USDS engineer in the US reads a US user's profile (ticket)",
        true,
        outcome(us.read(&alice, &support, &profile, None)),
    );
    let sloppy = Purpose::new(JustificationCode::UserRequestedSupport).with_ticket("x");
    record(
        &alice,
        "... with \"x\" as the ticket",
        false,
        outcome(us.read(&alice, &sloppy, &profile, None)),
    );
    let bo = person("row", ("bytedance-sg", "SG"), "bo", &["engineer"]);
    record(
        &bo,
        "Engineer of the parent's Singapore entity reads it",
        false,
        outcome(us.read(&bo, &support, &profile, None)),
    );
    let mut wu = person("row", ("bytedance-cn", "CN"), "wu", &["engineer"]);
    wu.organisation = domicile_access::Organisation {
        name: "usds".into(),
        country: "US".parse()?,
    };
    wu.location_country = "US".parse()?;
    record(
        &wu,
        "row/bytedance-cn/wu claims to be USDS in the US",
        false,
        outcome(us.read(&wu, &support, &profile, None)),
    );
    let mike = usds_engineer_abroad();
    record(
        &mike,
        "USDS engineer located in China reads it",
        false,
        outcome(us.read(&mike, &support, &profile, None)),
    );
    let sub = person("us", ("bytedance-us", "US"), "sam", &["engineer"]);
    record(
        &sub,
        "Engineer of the parent's US subsidiary reads it",
        false,
        outcome(us.read(&sub, &support, &profile, None)),
    );
    let oscar = person("us", ("techpartner", "US"), "oscar", &["engineer"]);
    record(
        &oscar,
        "The technology partner's operator reads it",
        false,
        outcome(us.read(&oscar, &support, &profile, None)),
    );
    let foreign_app = service(
        "us",
        ("bytedance-cn", "CN"),
        "profile-service",
        "app-service",
    );
    record(
        &foreign_app,
        "A Chinese organisation's service with a us/ id reads it",
        false,
        outcome(us.read(&foreign_app, &support, &profile, None)),
    );
    let paul = person("us", ("usds", "US"), "paul", &["app-service"]);
    record(
        &paul,
        "A person holding the app-service role reads it",
        false,
        outcome(us.read(&paul, &support, &profile, None)),
    );
    record(
        &paul,
        "... and crypto-shreds the subject",
        false,
        outcome(us.shred_subject(&paul, &support, us_subject)),
    );
    let frank = person("us", ("usds", "US"), "frank", &["engineer"]).with_person("frank");
    record(
        &frank,
        "USDS engineer reads it for a legal request, no approval",
        false,
        outcome(us.read(&frank, &legal, &profile, None)),
    );
    let everyone = ApprovalScope {
        class: DataClass::Protected,
        region: Region::parse("us")?,
        subjects: None,
        purpose: legal.clone(),
    };
    record(
        &frank,
        "... asks for an approval covering every subject",
        false,
        outcome(us.request_approval(&frank, everyone, 2, 3_600)),
    );
    let scope = ApprovalScope {
        class: DataClass::Protected,
        region: Region::parse("us")?,
        subjects: Some([us_subject.clone()].into()),
        purpose: legal.clone(),
    };
    let request = us.request_approval(&frank, scope, 2, 3_600)?;
    let dan = person("row", ("bytedance-sg", "SG"), "dan", &["approver"]);
    let dan_key = ApproverKey::generate()?;
    us.register_approver(dan.id.clone(), dan_key.public_key_base64());
    record(
        &dan,
        "Singapore approver grants it",
        false,
        outcome(us.approve(&dan, &dan_key, &request.id)),
    );
    let frank_approver = frank_as_approver();
    let frank_key = ApproverKey::generate()?;
    us.register_approver(frank_approver.id.clone(), frank_key.public_key_base64());
    record(
        &frank_approver,
        "frank, under his approver id, grants his own request",
        false,
        outcome(us.approve(&frank_approver, &frank_key, &request.id)),
    );
    let carol = person("us", ("usds", "US"), "carol", &["approver"]);
    let carol_key = ApproverKey::generate()?;
    us.register_approver(carol.id.clone(), carol_key.public_key_base64());
    let grant = us.approve(&carol, &carol_key, &request.id);
    let expires_at = grant.as_ref().map_or(0, |g| g.expires_at);
    record(
        &carol,
        "USDS approver in the US grants it for 2 seconds",
        true,
        outcome(grant),
    );
    record(
        &frank,
        "USDS engineer reads it with the approval",
        true,
        outcome(us.read(&frank, &legal, &profile, Some(&request.id))),
    );
    let unrelated = Purpose::new(JustificationCode::LegalRequest).with_ticket("LEG-9999");
    record(
        &frank,
        "... with the approval, under an unrelated ticket",
        false,
        outcome(us.read(&frank, &unrelated, &profile, Some(&request.id))),
    );
    record(
        &frank,
        "The requester revokes the grant",
        false,
        outcome(us.revoke_approval(&frank, &request.id)),
    );
    // Until the grant's end (whole seconds, exclusive), and a little more.
    let end = std::time::UNIX_EPOCH + Duration::from_secs(expires_at) + Duration::from_millis(20);
    if let Ok(left) = end.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(left);
    }
    record(
        &frank,
        "... reads again after the approval expired",
        false,
        outcome(us.read(&frank, &legal, &profile, Some(&request.id))),
    );
    let eve = person("us", ("audit-firm", "US"), "eve", &["auditor"]);
    let audit = Purpose::new(JustificationCode::Audit).with_ticket("AUD-2026-11");
    record(
        &eve,
        "The named monitor's auditor opens the us audit log",
        true,
        outcome(us.open_log(&eve, &audit)),
    );
    record(
        &eve,
        "... without a ticket",
        false,
        outcome(us.open_log(&eve, &Purpose::new(JustificationCode::Audit))),
    );
    let kim = person("us", ("other-audit", "US"), "kim", &["auditor"]);
    record(
        &kim,
        "An auditor of an organisation the policy does not name opens it",
        false,
        outcome(us.open_log(&kim, &audit)),
    );
    record(
        &eve,
        "Auditor reads a user's profile",
        false,
        outcome(us.read(&eve, &audit, &profile, None)),
    );
    let row_trainer = service("row", ("bytedance-sg", "SG"), "trainer", "training-service");
    let training = Purpose::new(JustificationCode::RecommendationTraining);
    let behaviour = ScanRequest {
        class: DataClass::Protected,
        collection: Collection::parse("behaviour")?,
        destination: None,
    };
    record(
        &row_trainer,
        "The row training service scans US behaviour",
        false,
        outcome(us.scan(&row_trainer, &training, &behaviour)),
    );
    let migration = service(
        "us",
        ("bytedance-sg", "SG"),
        "migration",
        "migration-service",
    );
    record(
        &migration,
        "A migration-service of another organisation scans US behaviour",
        false,
        outcome(us.scan(
            &migration,
            &Purpose::new(JustificationCode::Migration),
            &behaviour,
        )),
    );
    Ok(out)
}

/// The last `n` entries of a log, as `domicile audit query` prints them.
pub fn print_tail(dir: &Path, n: usize) -> Result<(), Error> {
    let mut entries: std::collections::VecDeque<Entry> = std::collections::VecDeque::new();
    domicile_audit::for_each_entry(dir, &mut |_, _| {}, |_, bytes, _| {
        entries.push_back(Entry::from_canonical(bytes)?);
        if entries.len() > n {
            entries.pop_front();
        }
        Ok(())
    })?;
    let entries: Vec<Entry> = entries.into();
    print!("{}", domicile_audit::query::table(&entries));
    Ok(())
}

/// Keeps the memory the allocator frees for reuse instead of returning it to the OS.
///
/// mimalloc returns freed memory to the OS a second after it falls idle; during an ingest or a
/// split, sled frees node copies and allocates new ones at such a rate that the same memory is
/// returned and faulted back in over and over, each fault zeroing a 2 MiB transparent huge page.
/// A batch process gains more by keeping it (the demo ran about 10% faster, with 15% more resident
/// memory at its peak). Call it first thing in `main` of a process that exits when its job is
/// done; a long-running server should leave the default.
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    /// `mi_option_purge_delay` in mimalloc's `mi_option_e` (its index since mimalloc 2.1).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: `mi_option_set` stores a value in mimalloc's option table; it takes no pointer and
    // may be called at any time from any thread. -1 means "never purge".
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}
