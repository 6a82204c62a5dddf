//! `POST /v1/store/check`: a live node checks its own store for the security staff the access
//! rules name, logs the check, and answers with counts and blind names only.

mod common;

use common::*;
use domicile_audit::{Action, Entry, Outcome, ResultDigest};
use domicile_node::Limits;
use serde_json::json;

const SUBJECTS: [(&str, &str); 2] = [("ana-4711", "US"), ("pedro-0815", "PR")];

fn audit() -> serde_json::Value {
    json!({"code": "audit", "ticket": "AUD-2026"})
}

fn entries(world: &World) -> Vec<Entry> {
    let mut out = Vec::new();
    domicile_audit::for_each_entry(
        &world.region("us").log_dir,
        &mut |_, _| {},
        |_, bytes, _| {
            out.push(Entry::from_canonical(bytes)?);
            Ok(())
        },
    )
    .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_staff_check_a_live_store_and_the_check_is_logged() {
    let world = World::new();
    let node = start_node(&world, "us", Limits::default(), &[]).await;
    let app = client(&world, "us/usds/profile-service", node.addr, Some("us"));
    sign_up(&app, &SUBJECTS).await;

    // USDS security staff and the partner's monitoring staff check the store while it serves.
    for id in ["us/usds/sam", "us/techpartner/tess"] {
        let security = client(&world, id, node.addr, Some("us"));
        let a = security
            .post("/v1/store/check", &json!({"purpose": audit()}))
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{id}: {:?}", a.json());
        let answer = a.json();
        assert_eq!(answer["region"], "us");
        assert_eq!(answer["sound"], true, "{answer}");
        assert_eq!(answer["report"]["records"], 4, "{answer}");
        assert_eq!(answer["report"]["subjects"], 2, "{answer}");
        assert_eq!(answer["omitted"], json!({}));
        let seq = answer["audit_entry"].as_u64().unwrap();
        let entry = &entries(&world)[seq as usize];
        assert_eq!(entry.action, Action::StoreCheck);
        assert!(entry.decision.allowed);
        assert_eq!(entry.principal.id, format!("spiffe://{TD}/{id}"));
        assert_eq!(
            serde_json::to_value(&entry.resource.target).unwrap(),
            json!({"kind": "bulk", "count": 4})
        );
        // The entry commits to the report: its result digest is the answer's, which is the
        // SHA-256 of the report as JSON.
        let report: domicile_store::StoreCheck =
            serde_json::from_value(answer["report"].clone()).unwrap();
        let digest = report.digest();
        assert_eq!(answer["report_digest"], digest.to_string());
        assert_eq!(
            entry.outcome,
            Outcome::Ok {
                result_digest: Some(ResultDigest(digest.0))
            }
        );
        // The answer names no one.
        for (subject, _) in SUBJECTS {
            assert!(
                !a.body
                    .windows(subject.len())
                    .any(|w| w == subject.as_bytes()),
                "the check's answer names {subject}"
            );
        }
    }

    // Nothing the checks wrote names anyone: the raw bytes of every file of the deployment
    // (stores, logs, keys) hold neither subject id.
    let files = files_under(world.dir.path());
    assert!(files
        .iter()
        .any(|f| f.starts_with(&world.region("us").log_dir)));
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for (subject, _) in SUBJECTS {
            assert!(
                !bytes
                    .windows(subject.len())
                    .any(|w| w == subject.as_bytes()),
                "{} names {subject}",
                file.display()
            );
        }
    }

    // Everyone else is refused, and the refusal is logged: an engineer who reads US records,
    // the rest of the world's security staff, and security staff without a ticket.
    let refused = [
        ("us/usds/alice", audit()),
        ("row/bytedance-sg/sid", audit()),
        ("us/usds/sam", json!({"code": "audit"})),
        ("us/usds/sam", support()),
    ];
    for (id, purpose) in refused {
        let caller = client(&world, id, node.addr, Some("us"));
        let a = caller
            .post("/v1/store/check", &json!({"purpose": purpose}))
            .await
            .unwrap();
        assert_eq!(a.status, 403, "{id} {purpose}: {:?}", a.json());
        assert_eq!(a.json()["code"], "denied");
        let seq = a.json()["audit_entry"].as_u64().unwrap();
        let entry = &entries(&world)[seq as usize];
        assert_eq!(entry.action, Action::StoreCheck);
        assert!(!entry.decision.allowed);
    }

    // Malformed requests name the field.
    let sam = client(&world, "us/usds/sam", node.addr, Some("us"));
    let a = sam
        .post(
            "/v1/store/check",
            &json!({"purpose": audit(), "max_findings": 10_001}),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 422, "{:?}", a.json());
    assert_eq!(a.json()["code"], "invalid_field");
    let a = sam
        .post(
            "/v1/store/check",
            &json!({"purpose": audit(), "findings": 3}),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 400, "{:?}", a.json());

    // Without a client certificate: the public endpoints only.
    let anonymous = raw_client(&world, node.addr, None);
    let a = anonymous
        .post("/v1/store/check", &json!({"purpose": audit()}))
        .await
        .unwrap();
    assert_eq!(a.status, 401, "{:?}", a.json());
}

/// Checks racing each other through the node, from two security staff at once: each is either
/// answered (200) or refused because another runs (409 `check_in_progress`), never anything
/// else; at least one is answered; and every refusal is in the log, after an allowed decision,
/// as an error with that reason — however the race falls out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_checks_are_answered_or_refused_as_in_progress_and_every_refusal_is_logged() {
    let world = World::new();
    let node = start_node(&world, "us", Limits::default(), &[]).await;
    let app = client(&world, "us/usds/profile-service", node.addr, Some("us"));
    let subjects: Vec<(String, &str)> = (0..40).map(|i| (format!("s-{i:03}"), "US")).collect();
    let named: Vec<(&str, &str)> = subjects.iter().map(|(s, c)| (s.as_str(), *c)).collect();
    sign_up(&app, &named).await;
    let before = entries(&world).len();

    let mut racers = Vec::new();
    for id in ["us/usds/sam", "us/techpartner/tess"] {
        for _ in 0..2 {
            let security = client(&world, id, node.addr, Some("us"));
            racers.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..5 {
                    let a = security
                        .post("/v1/store/check", &json!({"purpose": audit()}))
                        .await
                        .unwrap();
                    if a.status == 409 {
                        assert_eq!(a.json()["code"], "check_in_progress");
                    } else {
                        assert_eq!(a.status, 200, "{:?}", a.json());
                        assert_eq!(a.json()["report"]["records"], 80);
                    }
                    statuses.push(a.status.as_u16());
                }
                statuses
            }));
        }
    }
    let mut statuses = Vec::new();
    for racer in racers {
        statuses.extend(racer.await.unwrap());
    }
    let answered = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    eprintln!("{answered} checks answered, {refused} refused as in progress");
    assert!(answered >= 1);
    assert_eq!(answered + refused, 20);
    let logged = &entries(&world)[before..];
    assert_eq!(logged.len(), 20, "one entry per check");
    let in_progress = logged
        .iter()
        .filter(|e| {
            e.action == Action::StoreCheck
                && e.decision.allowed
                && e.outcome
                    == domicile_audit::Outcome::Error {
                        reason: "check_in_progress".into(),
                    }
        })
        .count();
    assert_eq!(in_progress, refused, "every refusal is logged as such");
}

/// A check reads the whole store, so it has its own time limit (`long_request_timeout`, an
/// hour unless set): with every other request cut off at once, a write times out with 408 and
/// the check is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_has_the_long_time_limit_other_requests_do_not() {
    let world = World::new();
    let node = start_node(&world, "us", Limits::default(), &[]).await;
    let app = client(&world, "us/usds/profile-service", node.addr, Some("us"));
    sign_up(&app, &SUBJECTS).await;
    node.stop().await;

    // No time at all: a request is polled once, so a write (the Gate runs on the blocking pool)
    // always times out, while the check's body, a few bytes sent with its headers, is read at
    // that first poll and only the check's work runs under its own limit.
    let limits = Limits {
        request_timeout: std::time::Duration::ZERO,
        ..Limits::default()
    };
    assert_eq!(
        limits.timeout_for("/v1/store/check"),
        limits.long_request_timeout
    );
    assert_eq!(
        limits.timeout_for("/v1/records/write"),
        limits.request_timeout
    );
    let node = start_node(&world, "us", limits, &[]).await;
    let app = client(&world, "us/usds/profile-service", node.addr, Some("us"));
    let a = app
        .post(
            "/v1/records/write",
            &json!({"purpose": support(), "record": record("ana-4711", "notes"),
                    "value_base64": "AAEC/w=="}),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 408, "{:?}", a.json());
    assert_eq!(a.json()["code"], "request_timeout");

    let security = client(&world, "us/usds/sam", node.addr, Some("us"));
    let a = security
        .post("/v1/store/check", &json!({"purpose": audit()}))
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json());
    assert_eq!(a.json()["sound"], true);
    assert!(a.json()["report"]["records"].as_u64().unwrap() >= 4);
}
