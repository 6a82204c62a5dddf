//! The gateway: one door for callers who do not know where a person's data lives.
//!
//! A caller (authenticated by its SVID, like at a node) sends a node's request to the gateway,
//! adding a `home` object with the attributes the deployment's residency policy uses to find
//! the subject's home region (`{"residence": "US", "account_country": "US"}`). The gateway asks
//! the policy for that home region, removes `home`, and forwards the request over mutual TLS,
//! with its own SVID, to that region's node only, naming its caller in the
//! `domicile-on-behalf-of` header (the node accepts it only from gateways its operator names).
//!
//! The gateway keeps nothing: no body is stored or cached, and its logs carry the caller's id,
//! the region and the outcome — never a subject id (the gateway does not even read one: it
//! routes on attributes alone). A subject whose home cannot be decided is refused with
//! `unknown_home`; a home region without a node, or whose node does not answer, is
//! `region_unavailable` (503), never a fallback to another region.
//!
//! A request that concerns a whole region rather than a subject (the store check) names the
//! region instead: `"region": "us"` in place of `home`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Router};
use domicile_access::SpiffeId;
use domicile_residency::{Region, ResidencyPolicy, Subject, SubjectAttributes, SubjectId};

use crate::client::NodeClient;
use crate::node::{read_json, Peer, ON_BEHALF_OF};
use crate::problem::Problem;

/// A gateway's routing table and policy.
pub struct Gateway {
    policy: Arc<dyn ResidencyPolicy>,
    nodes: BTreeMap<Region, NodeClient>,
    max_body: usize,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("policy", &self.policy.id().to_string())
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// Where a request goes.
impl Gateway {
    /// A gateway routing under `policy` to `nodes` (one client per region).
    pub fn new(
        policy: Arc<dyn ResidencyPolicy>,
        nodes: BTreeMap<Region, NodeClient>,
        max_body: usize,
    ) -> Self {
        Gateway {
            policy,
            nodes,
            max_body,
        }
    }

    /// The region a region-wide request for `path` names in its `region` field: one of the
    /// policy's regions, and only for the requests that concern a whole region rather than a
    /// subject ([`LONG_REQUESTS`](crate::LONG_REQUESTS): the store check). A subject's data is
    /// routed by its `home` alone.
    pub fn named_region(&self, path: &str, region: serde_json::Value) -> Result<Region, Problem> {
        if !crate::LONG_REQUESTS.contains(&path) {
            return Err(Problem::invalid_field(
                "region",
                "only region-wide requests (the store check) are routed by `region`; a subject's data is routed by its `home`",
            ));
        }
        let region = region
            .as_str()
            .and_then(|r| Region::parse(r).ok())
            .filter(|r| self.policy.has_region(r))
            .ok_or_else(|| {
                Problem::invalid_field(
                    "region",
                    &format!(
                        "expected one of the policy's regions: {}",
                        self.policy
                            .regions()
                            .iter()
                            .map(Region::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
        Ok(region)
    }

    /// The home region of a subject with these attributes, under the policy.
    pub fn home_of(&self, home: &SubjectAttributes) -> Result<Region, Problem> {
        // The policy decides from the attributes; the id it is given is a placeholder, so no
        // subject id enters the gateway, its errors or its logs.
        let subject = Subject {
            id: SubjectId::parse("routed-subject").expect("a valid placeholder id"),
            attributes: home.clone(),
        };
        self.policy.home_region(&subject).map_err(|e| {
            use domicile_residency::ResidencyError as R;
            let why = match e {
                R::MissingResidence { .. } => "no country of residence was given",
                R::InvalidResidence { .. } => "the country of residence is not valid",
                R::ContradictoryResidence { .. } => {
                    "the residence attributes contradict each other"
                }
                _ => "the policy could not decide it",
            };
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_home",
                "Home region unknown",
                format!("the subject's home region cannot be determined: {why}"),
            )
        })
    }
}

/// The gateway's router: every `/v1/…` request is routed; `/healthz` answers locally.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/{*rest}", any(forward))
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "no_such_endpoint",
                "No such endpoint",
                "the gateway routes /v1/… requests only",
            )
        })
        .with_state(gateway)
}

async fn forward(
    State(gateway): State<Arc<Gateway>>,
    Extension(peer): Extension<Peer>,
    request: Request,
) -> Response {
    let Some(caller) = peer.0 else {
        return Problem::certificate_required().into_response();
    };
    if request.method() != Method::POST {
        return Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            "data endpoints take POST",
        )
        .into_response();
    }
    let path = request.uri().path().to_owned();
    let body: serde_json::Value = match read_json(request.into_body(), gateway.max_body).await {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let serde_json::Value::Object(mut fields) = body else {
        return Problem::malformed_json("the body is not a JSON object").into_response();
    };
    let routed = match (fields.remove("region"), fields.remove("home")) {
        (Some(region), None) => gateway.named_region(&path, region),
        (None, Some(home)) => match serde_json::from_value::<SubjectAttributes>(home) {
            Ok(home) => gateway.home_of(&home),
            Err(_) => Err(Problem::invalid_field(
                "home",
                "expected {\"residence\": \"CC\", \"account_country\": \"CC\"}",
            )),
        },
        (Some(_), Some(_)) => Err(Problem::invalid_field(
            "region",
            "give `home` (a subject's attributes) or `region` (for a region-wide request), not both",
        )),
        (None, None) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_home",
            "Home region unknown",
            "the request carries no `home` attributes: the gateway cannot route it",
        )),
    };
    let region = match routed {
        Ok(region) => region,
        Err(p) => {
            tracing::info!(caller = %caller, path = %path, code = %p.code, "not routed");
            return p.into_response();
        }
    };
    relay(&gateway, &caller, &region, &path, fields).await
}

async fn relay(
    gateway: &Gateway,
    caller: &SpiffeId,
    region: &Region,
    path: &str,
    fields: serde_json::Map<String, serde_json::Value>,
) -> Response {
    let unavailable = |why: String| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "region_unavailable",
            "Home region unavailable",
            format!(
                "the subject's home region {region} {why}; the request was not sent anywhere else"
            ),
        )
    };
    let Some(node) = gateway.nodes.get(region) else {
        tracing::warn!(caller = %caller, region = %region, "no node for the home region");
        return unavailable("has no node configured at this gateway".into()).into_response();
    };
    let on_behalf = match HeaderValue::from_str(&caller.to_string()) {
        Ok(v) => v,
        Err(_) => return Problem::internal("caller_id_not_a_header").into_response(),
    };
    let body =
        serde_json::to_vec(&serde_json::Value::Object(fields)).expect("a JSON object serialises");
    let header = [(HeaderName::from_static(ON_BEHALF_OF), on_behalf)];
    match node.send(Method::POST, path, &header, body).await {
        Ok(answer) => {
            tracing::info!(caller = %caller, region = %region, path = %path, status = answer.status.as_u16(), "forwarded");
            let mut response = (answer.status, answer.body).into_response();
            if let Some(ct) = answer.headers.get("content-type") {
                response.headers_mut().insert("content-type", ct.clone());
            }
            response.headers_mut().insert(
                "domicile-region",
                HeaderValue::from_str(region.as_str()).expect("a region is a valid header value"),
            );
            response
        }
        Err(e) => {
            tracing::warn!(caller = %caller, region = %region, error = %e, "home region unreachable");
            unavailable("did not answer".into()).into_response()
        }
    }
}
