//! The gateway routes every subject of a generated world to its home region and nowhere else;
//! a subject without a known home is refused, and a home region that is down is a 503 with no
//! fallback.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::*;
use domicile_audit::Entry;
use domicile_node::{Gateway, Limits, NodeClient};
use domicile_residency::{Region, ResidencyPolicy, Subject};

/// Every subject pseudonym named by a single-record entry of the log in `dir`.
fn pseudonyms_in(dir: &std::path::Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    domicile_audit::for_each_entry(dir, &mut |_, _| {}, |_, bytes, _| {
        let e = Entry::from_canonical(bytes)?;
        if let Some(p) = e.resource.subject {
            out.insert(p.to_string());
        }
        Ok(())
    })
    .unwrap();
    out
}

/// A deterministic world: subject `s<i>` living in one of these countries.
fn world_subjects(n: usize) -> Vec<(String, Option<&'static str>, Option<&'static str>)> {
    const COUNTRIES: [&str; 12] = [
        "US", "PR", "GU", "VI", "DE", "SG", "IN", "BR", "JP", "FR", "CA", "MX",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let residence = COUNTRIES[(state >> 33) as usize % COUNTRIES.len()];
            let account = if (state >> 20).is_multiple_of(3) {
                Some(residence)
            } else {
                None
            };
            (format!("s{i}"), Some(residence), account)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subject_reaches_its_home_region_and_no_other() {
    let world = World::new();
    let us = start_node(&world, "us", Limits::default(), &["us/usds/gateway"]).await;
    let row = start_node(&world, "row", Limits::default(), &["us/usds/gateway"]).await;
    let policy: Arc<dyn ResidencyPolicy> = Arc::new(domicile_policy_us_split::UsSplitPolicy::new());
    let gateway_id = world.identity("us/usds/gateway");
    let mut nodes = BTreeMap::new();
    for (region, addr) in [("us", us.addr), ("row", row.addr)] {
        let r = Region::parse(region).unwrap();
        nodes.insert(
            r.clone(),
            NodeClient::new(addr, gateway_id.client_config(Some(r)).unwrap()),
        );
    }
    let gateway = Arc::new(Gateway::new(policy.clone(), nodes, 1 << 20));
    let gw = serve_app(
        &gateway_id,
        domicile_node::gateway_router(gateway),
        Limits::default(),
    )
    .await;
    let app = client(&world, "us/usds/profile-service", gw.addr, None);

    let subjects = world_subjects(80);
    let mut homes: BTreeMap<String, Region> = BTreeMap::new();
    for (id, residence, account) in &subjects {
        let subject = Subject::parse(id, *residence, *account).unwrap();
        let home = policy.home_region(&subject).unwrap();
        let answer = app
            .post(
                "/v1/subjects/register",
                &serde_json::json!({
                    "purpose": {"code": "user_requested_support", "detail": "sign-up"},
                    "subject": subject,
                    "home": {"residence": residence, "account_country": account},
                }),
            )
            .await
            .unwrap();
        assert_eq!(
            answer.headers["domicile-region"].to_str().unwrap(),
            home.as_str(),
            "subject {id} routed to the wrong region"
        );
        // A US service registers US subjects; the rest of the world's node refuses it, and logs
        // the refusal — in the subject's home region.
        if home.as_str() == "us" {
            assert_eq!(answer.status, 200, "{:?}", answer.json());
        } else {
            assert_eq!(answer.status, 403, "{:?}", answer.json());
        }
        homes.insert(id.clone(), home);
    }
    assert!(homes.values().any(|r| r.as_str() == "us"));
    assert!(homes.values().any(|r| r.as_str() == "row"));

    for region in ["us", "row"] {
        let node = world.region(region);
        let logged = pseudonyms_in(&node.log_dir);
        for (id, home) in &homes {
            let p = node.gate.pseudonym(&id.parse().unwrap());
            assert_eq!(
                logged.contains(&p),
                home.as_str() == region,
                "subject {id} (home {home}) in the {region} log: {}",
                logged.contains(&p)
            );
        }
    }

    // A store check names no subject: through the gateway, the caller names a home of the
    // region whose store it means, and the check reaches that region's node only, on behalf of
    // the caller (whose rules decide it there).
    let sam = client(&world, "us/usds/sam", gw.addr, None);
    let answer = sam
        .post(
            "/v1/store/check",
            &serde_json::json!({"purpose": {"code": "audit", "ticket": "AUD-9"},
                                "home": {"residence": "US"}}),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert_eq!(answer.headers["domicile-region"].to_str().unwrap(), "us");
    assert_eq!(answer.json()["region"], "us");
    assert_eq!(answer.json()["sound"], true, "{:?}", answer.json());
    // Or it names the region, as a region-wide request may; another region's store is that
    // region's rules to decide (USDS's security staff are refused there, and it is logged).
    let check_of = |routing: serde_json::Value| {
        let mut body = serde_json::json!({"purpose": {"code": "audit", "ticket": "AUD-9"}});
        body.as_object_mut()
            .unwrap()
            .extend(routing.as_object().unwrap().clone());
        body
    };
    let answer = sam
        .post(
            "/v1/store/check",
            &check_of(serde_json::json!({"region": "us"})),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert_eq!(answer.headers["domicile-region"].to_str().unwrap(), "us");
    let row_size = world.region("row").gate.log().size();
    let answer = sam
        .post(
            "/v1/store/check",
            &check_of(serde_json::json!({"region": "row"})),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 403, "{:?}", answer.json());
    assert_eq!(answer.headers["domicile-region"].to_str().unwrap(), "row");
    assert_eq!(world.region("row").gate.log().size(), row_size + 1);
    // A region the policy does not have, a region on a subject's request, and both ways of
    // routing at once: refused at the gateway, sent nowhere.
    let sizes = (
        world.region("us").gate.log().size(),
        world.region("row").gate.log().size(),
    );
    for (path, body) in [
        (
            "/v1/store/check",
            check_of(serde_json::json!({"region": "mars"})),
        ),
        (
            "/v1/store/check",
            check_of(serde_json::json!({"region": 7})),
        ),
        (
            "/v1/store/check",
            check_of(serde_json::json!({"region": "us", "home": {"residence": "US"}})),
        ),
        (
            "/v1/records/read",
            serde_json::json!({"purpose": support(), "record": record("s1", "profile"),
                               "region": "us"}),
        ),
    ] {
        let answer = sam.post(path, &body).await.unwrap();
        assert_eq!(answer.status, 422, "{path} {body}: {:?}", answer.json());
        assert_eq!(answer.json()["code"], "invalid_field", "{body}");
        assert!(answer.headers.get("domicile-region").is_none());
    }
    assert_eq!(
        sizes,
        (
            world.region("us").gate.log().size(),
            world.region("row").gate.log().size(),
        )
    );

    // No home can be decided: refused, sent nowhere.
    let sizes = (
        world.region("us").gate.log().size(),
        world.region("row").gate.log().size(),
    );
    let answer = app
        .post(
            "/v1/records/read",
            &serde_json::json!({"purpose": support(), "record": record("s1", "profile"), "home": {}}),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 422);
    assert_eq!(answer.json()["code"], "unknown_home");
    let answer = app
        .post(
            "/v1/records/read",
            &serde_json::json!({"purpose": support(), "record": record("s1", "profile")}),
        )
        .await
        .unwrap();
    assert_eq!(answer.json()["code"], "unknown_home");

    // The rest of the world's node goes down: its subjects get a 503, never the US node.
    row.stop().await;
    let answer = app
        .post(
            "/v1/records/read",
            &serde_json::json!({"purpose": support(), "record": record("s1", "profile"),
                                "home": {"residence": "DE"}}),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers["content-type"], "application/problem+json");
    assert_eq!(answer.json()["code"], "region_unavailable");
    assert_eq!(
        (
            world.region("us").gate.log().size(),
            world.region("row").gate.log().size()
        ),
        sizes,
        "a request that could not be routed touched a log"
    );
    // A caller without a certificate is refused by the gateway itself.
    let anonymous = raw_client(&world, gw.addr, None);
    let answer = anonymous
        .post(
            "/v1/records/read",
            &serde_json::json!({"home": {"residence": "US"}}),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 401);
    gw.stop().await;
    us.stop().await;
}
