//! `POST /v1/store/check`: a live node checks its own store for the security staff the access
//! rules name, logs the check, and answers with counts and blind names only.

mod common;

use common::*;
use domicile_audit::{Action, Entry};
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
