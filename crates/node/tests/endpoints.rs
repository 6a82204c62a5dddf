//! Every Gate operation over HTTPS, as the access rules decide it: writes, reads, a scan, a
//! model deployment, an export, a delete and a shred; and approvals requested, refused to a
//! Singapore approver, granted by the US approver, used, and revoked.

mod common;

use common::*;
use domicile_node::Limits;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_over_https() {
    let world = World::new();
    let node = start_node(&world, "us", Limits::default(), &[]).await;
    let app = client(&world, "us/usds/profile-service", node.addr, Some("us"));
    sign_up(&app, &[("ana", "US"), ("pedro", "PR")]).await;

    // A binary value comes back as base64.
    let alice = client(&world, "us/usds/alice", node.addr, Some("us"));
    let a = alice
        .post(
            "/v1/records/read",
            &json!({"purpose": support(), "record": record("ana", "profile")}),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json());
    assert_eq!(a.json()["value_base64"], "AAEC/w==");

    // The US training service scans US behaviour.
    let trainer = client(&world, "us/usds/trainer", node.addr, Some("us"));
    let a = trainer
        .post(
            "/v1/scan",
            &json!({"purpose": {"code": "recommendation_training"}, "class": "protected",
                    "collection": "behaviour"}),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json());
    assert_eq!(a.json()["records"].as_array().unwrap().len(), 2);
    assert!(a.json()["audit_entry"].is_u64());

    // A model trained on the rest of the world's data is refused here; one trained here is not.
    let deploy = |trained_on: serde_json::Value| {
        json!({"purpose": {"code": "recommendation_training"}, "trained_on": trained_on,
               "artifact_base64": "bW9kZWw="})
    };
    let a = trainer
        .post("/v1/models/deploy", &deploy(json!(["row"])))
        .await
        .unwrap();
    assert_eq!(a.status, 403, "{:?}", a.json());
    assert_eq!(a.json()["code"], "denied");
    assert!(a.json()["audit_entry"].is_u64());
    let a = trainer
        .post("/v1/models/deploy", &deploy(json!(["us"])))
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json());

    // An export of a US subject's data to the rest of the world is refused, and logged.
    let a = alice
        .post(
            "/v1/export",
            &json!({"purpose": support(), "subject": "ana", "destination": "row"}),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 403, "{:?}", a.json());
    assert!(a.json()["audit_entry"].is_u64());

    // Delete and shred, by the app service on the user's request.
    let a = app
        .post(
            "/v1/records/delete",
            &json!({"purpose": support(), "record": record("pedro", "behaviour")}),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json());
    assert_eq!(a.json()["existed"], true);
    let a = app
        .post(
            "/v1/shred",
            &json!({"purpose": support(), "subject": "pedro"}),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json());
    let a = alice
        .post(
            "/v1/records/read",
            &json!({"purpose": support(), "record": record("pedro", "profile")}),
        )
        .await
        .unwrap();
    assert!(
        a.status.is_client_error(),
        "a shredded subject's record was read: {:?}",
        a.json()
    );

    // Approvals.
    let legal = json!({"code": "legal_request", "ticket": "LEG-4242"});
    let frank = client(&world, "us/usds/frank", node.addr, Some("us"));
    let read_with = |approval: Option<&str>| {
        let mut body = json!({"purpose": legal, "record": record("ana", "profile")});
        if let Some(id) = approval {
            body["approval"] = json!(id);
        }
        body
    };
    let a = frank
        .post("/v1/records/read", &read_with(None))
        .await
        .unwrap();
    assert_eq!(a.status, 403);
    let a = frank
        .post(
            "/v1/approvals",
            &json!({"duration_secs": 600,
                    "scope": {"class": "protected", "region": "us", "subjects": ["ana"], "purpose": legal}}),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json());
    let id = a.json()["id"].as_str().unwrap().to_owned();
    // The request as returned names the subject by pseudonym only.
    assert!(!a.body.windows(5).any(|w| w == b"\"ana\""));
    let dan = client(&world, "row/bytedance-sg/dan", node.addr, Some("us"));
    let a = dan
        .post(&format!("/v1/approvals/{id}/grant"), &json!({}))
        .await
        .unwrap();
    assert_eq!(a.status, 403, "{:?}", a.json());
    let a = frank
        .post(&format!("/v1/approvals/{id}/grant"), &json!({}))
        .await
        .unwrap();
    assert_eq!(
        a.status,
        403,
        "a requester granted their own request: {:?}",
        a.json()
    );
    let carol = client(&world, "us/usds/carol", node.addr, Some("us"));
    let a = carol
        .post(&format!("/v1/approvals/{id}/grant"), &json!({}))
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json());
    let a = frank
        .post("/v1/records/read", &read_with(Some(&id)))
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json());
    let a = carol
        .post(&format!("/v1/approvals/{id}/revoke"), &json!({}))
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json());
    let a = frank
        .post("/v1/records/read", &read_with(Some(&id)))
        .await
        .unwrap();
    assert_eq!(a.status, 403, "{:?}", a.json());
    let a = carol
        .post("/v1/approvals/not-an-id/grant", &json!({}))
        .await
        .unwrap();
    assert_eq!(a.status, 422);
    assert_eq!(a.json()["code"], "invalid_field");

    // The public checkpoint verifies under the log's key.
    let anonymous = raw_client(&world, node.addr, None);
    tokio::task::spawn_blocking({
        let gate = world.region("us").gate.clone();
        move || gate.log().checkpoint().unwrap()
    })
    .await
    .unwrap();
    let a = anonymous.get("/checkpoint").await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["cache-control"], "no-store");
    let note = domicile_audit::Note::parse(&a.body).unwrap();
    note.verify(&world.region("us").verifier).unwrap();
    // The log as C2SP tlog-tiles, public too: the partial level-0 tile and entry bundle of the
    // checkpointed size, immutable; a tile beyond it is not there.
    let size = domicile_audit::Checkpoint::parse(&note.text).unwrap().size;
    assert!(size > 0 && size < 256, "{size}");
    let tile = anonymous
        .get(&format!("/tile/0/000.p/{size}"))
        .await
        .unwrap();
    assert_eq!(tile.status, 200);
    assert_eq!(tile.body.len() as u64, 32 * size);
    assert_eq!(
        tile.headers["cache-control"],
        "public, max-age=604800, immutable"
    );
    let bundle = anonymous
        .get(&format!("/tile/entries/000.p/{size}"))
        .await
        .unwrap();
    assert_eq!(bundle.status, 200);
    let beyond = anonymous.get("/tile/0/001").await.unwrap();
    assert_eq!(beyond.status, 404);
    node.stop().await;
}
