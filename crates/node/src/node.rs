//! A region's node: the Gate's operations as JSON endpoints, called over mutual TLS.
//!
//! The caller is the SPIFFE id of its client certificate (verified in the handshake); what that
//! id may do is the principal the operator's signed directory gives it
//! ([`Gate::principal`]) — the request asserts nothing about its sender. A gateway the operator
//! names (`--gateway`) may forward on behalf of a caller it authenticated, naming it in the
//! `domicile-on-behalf-of` header; from anyone else that header is refused.
//!
//! Every Gate call runs on tokio's blocking pool: it waits for its audit entry to be durable.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use domicile_access::{
    ApprovalId, ApproverKey, Gate, GateError, Principal, ScanRequest, SpiffeId,
    DEFAULT_PENDING_TTL_SECS,
};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{
    write_value, ApprovalRequestBody, DeleteRequest, DeployRequest, Done, ExportRequest,
    ExportResponse, ReadRequest, RecordJson, RegisterRequest, ScanBody, ScanResponse, ShredRequest,
    StoreCheckRequest, StoreCheckResponse, WriteRequest, DEFAULT_MAX_FINDINGS, MAX_FINDINGS,
};
use crate::problem::Problem;

/// The header a trusted gateway names its caller in.
pub const ON_BEHALF_OF: &str = "domicile-on-behalf-of";

/// The verified SPIFFE id of the connection's client certificate, if it sent one.
#[derive(Debug, Clone, Default)]
pub struct Peer(pub Option<SpiffeId>);

/// What every handler of a node shares.
pub struct NodeState {
    gate: Arc<Gate>,
    gateways: BTreeSet<SpiffeId>,
    grant_key: ApproverKey,
    log_dir: PathBuf,
    max_body: usize,
    draining: Arc<AtomicBool>,
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState")
            .field("region", self.gate.region())
            .field("gateways", &self.gateways)
            .finish_non_exhaustive()
    }
}

/// Building a node's state.
impl NodeState {
    /// A node in front of `gate`, whose log lives in `log_dir`.
    ///
    /// `grant_key` signs the grants approvers give over the API: the node records, under its
    /// own key, the grant of an approver it authenticated by mutual TLS. It is registered here
    /// as the grant key of every principal of the Gate's directory in `approvers`, so a grant
    /// signed by any other key is still refused. `gateways` are the ids allowed to forward on
    /// behalf of their callers.
    pub fn new(
        gate: Arc<Gate>,
        log_dir: PathBuf,
        grant_key: ApproverKey,
        approvers: impl IntoIterator<Item = SpiffeId>,
        gateways: BTreeSet<SpiffeId>,
        max_body: usize,
        draining: Arc<AtomicBool>,
    ) -> Self {
        for approver in approvers {
            gate.register_approver(approver, grant_key.public_key_base64());
        }
        NodeState {
            gate,
            gateways,
            grant_key,
            log_dir,
            max_body,
            draining,
        }
    }

    /// The Gate.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// The log's directory (what the public routes serve).
    pub fn log_dir(&self) -> &std::path::Path {
        &self.log_dir
    }
}

type Shared = Arc<NodeState>;

/// The node's router: data endpoints under `/v1`, health, and the public log routes.
pub fn router(state: Shared) -> Router {
    let data = Router::new()
        .route("/v1/subjects/register", post(register))
        .route("/v1/records/read", post(read))
        .route("/v1/records/write", post(write))
        .route("/v1/records/delete", post(delete))
        .route("/v1/scan", post(scan))
        .route("/v1/aggregate", post(aggregate))
        .route("/v1/export", post(export))
        .route("/v1/shred", post(shred))
        .route("/v1/store/check", post(check_store))
        .route("/v1/approvals", post(request_approval))
        .route("/v1/approvals/{id}/grant", post(grant))
        .route("/v1/approvals/{id}/deny", post(deny))
        .route("/v1/approvals/{id}/revoke", post(revoke))
        .route("/v1/models/deploy", post(deploy))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state.clone());
    data.merge(public_log_routes(&state))
}

/// The public log routes: the region's log as C2SP tlog-tiles (`/checkpoint`,
/// `/tile/<L>/<N>[.p/<W>]`, `/tile/entries/<N>[.p/<W>]`), served by
/// [`domicile_tlog_http::public_routes`] from the log's directory. Public and read-only: no
/// client certificate is needed, and nothing here names a subject (entries carry pseudonyms).
/// The checkpoint is `no-store`, tiles `public, max-age=604800, immutable`.
pub fn public_log_routes(state: &Shared) -> Router {
    domicile_tlog_http::public_routes(state.log_dir().to_owned())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Shared>) -> Response {
    if state.draining.load(Ordering::SeqCst) {
        return Problem::shutting_down().into_response();
    }
    Json(serde_json::json!({
        "ready": true,
        "region": state.gate.region(),
        "log_size": state.gate.log().size(),
    }))
    .into_response()
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no_such_endpoint",
        "No such endpoint",
        "no endpoint at this path (see docs/node.md)",
    )
}

/// Reads a JSON body of at most `limit` bytes. Errors name the position and the kind of
/// mistake, never the value (a serde message may quote a subject id).
pub async fn read_json<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, Problem> {
    let bytes = read_body(body, limit).await?;
    let bytes = if bytes.is_empty() {
        bytes::Bytes::from_static(b"{}")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        let kind = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => "not well-formed JSON",
            Category::Data => "a field is missing, unknown, or has an invalid value",
        };
        Problem::malformed_json(format!(
            "the body is {kind} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Reads a body of at most `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, Problem> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Problem::too_large(limit)),
        Err(_) => Err(Problem::malformed_json("the body could not be read")),
    }
}

/// The principal making the request: the directory's entry for the connection's SPIFFE id, or
/// for the id a trusted gateway names.
fn caller(state: &NodeState, peer: &Peer, headers: &HeaderMap) -> Result<Principal, Problem> {
    if state.draining.load(Ordering::SeqCst) {
        return Err(Problem::shutting_down());
    }
    let Some(id) = &peer.0 else {
        return Err(Problem::certificate_required());
    };
    let id = match headers.get(ON_BEHALF_OF) {
        None => id.clone(),
        Some(_) if !state.gateways.contains(id) => {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "delegation_refused",
                "Delegation refused",
                format!("{id} is not a gateway of this node: it may not act on behalf of others"),
            ))
        }
        Some(value) => {
            let named = value
                .to_str()
                .ok()
                .and_then(|v| SpiffeId::parse(v).ok())
                .filter(|v| v.trust_domain() == id.trust_domain())
                .ok_or_else(|| {
                    Problem::invalid_field(ON_BEHALF_OF, "not a SPIFFE id of this trust domain")
                })?;
            named
        }
    };
    state.gate.principal(&id).map_err(|e| {
        tracing::warn!(caller = %id, "refused: not in the principal directory");
        Problem::from_gate(&e)
    })
}

/// Runs a Gate call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, GateError> + Send + 'static,
) -> Result<T, Problem> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(Problem::from),
        Err(_) => Err(Problem::internal("gate_call_panicked")),
    }
}

/// Logs the outcome of one call, with the caller's id and the subject's pseudonym only.
fn outcome<T: Serialize>(
    op: &'static str,
    who: &Principal,
    subject: Option<String>,
    result: Result<T, Problem>,
) -> Response {
    let subject = subject.unwrap_or_default();
    match result {
        Ok(value) => {
            tracing::info!(op, caller = %who.id, subject_pseudonym = %subject, "allowed");
            Json(value).into_response()
        }
        Err(problem) => {
            tracing::info!(op, caller = %who.id, subject_pseudonym = %subject, code = %problem.code, "refused");
            problem.into_response()
        }
    }
}

macro_rules! try_problem {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(p) => return Problem::from(p).into_response(),
        }
    };
}

async fn register(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = try_problem!(caller(&state, &peer, &headers));
    let req: RegisterRequest = try_problem!(read_json(body, state.max_body).await);
    let pseudonym = state.gate.pseudonym(&req.subject.id);
    let gate = state.gate.clone();
    let w = who.clone();
    let result = blocking(move || gate.register_subject(&w, &req.purpose, &req.subject))
        .await
        .map(|home| Done {
            done: "register".into(),
            region: home,
            existed: None,
            audit_entry: None,
        });
    outcome("register", &who, Some(pseudonym), result)
}

async fn read(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = try_problem!(caller(&state, &peer, &headers));
    let req: ReadRequest = try_problem!(read_json(body, state.max_body).await);
    let pseudonym = state.gate.pseudonym(&req.record.subject);
    // The decision and the store read take microseconds; the task (not a blocking-pool
    // thread) waits for the read's audit entry to be durable.
    let result = state
        .gate
        .read_async(
            &who,
            &req.purpose,
            &req.record.into(),
            req.approval.as_ref(),
        )
        .await
        .map(RecordJson::from)
        .map_err(Problem::from);
    outcome("read", &who, Some(pseudonym), result)
}

async fn write(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = try_problem!(caller(&state, &peer, &headers));
    let req: WriteRequest = try_problem!(read_json(body, state.max_body).await);
    let value = try_problem!(write_value(&req).map_err(|why| Problem::invalid_field("value", why)));
    let pseudonym = state.gate.pseudonym(&req.record.subject);
    let gate = state.gate.clone();
    let w = who.clone();
    let region = state.gate.region().clone();
    let result = blocking(move || {
        gate.write(
            &w,
            &req.purpose,
            &req.record.into(),
            &value,
            req.approval.as_ref(),
        )
    })
    .await
    .map(|_| Done {
        done: "write".into(),
        region,
        existed: None,
        audit_entry: None,
    });
    outcome("write", &who, Some(pseudonym), result)
}

async fn delete(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = try_problem!(caller(&state, &peer, &headers));
    let req: DeleteRequest = try_problem!(read_json(body, state.max_body).await);
    let pseudonym = state.gate.pseudonym(&req.record.subject);
    let gate = state.gate.clone();
    let w = who.clone();
    let region = state.gate.region().clone();
    let result = blocking(move || gate.delete(&w, &req.purpose, &req.record.into()))
        .await
        .map(|existed| Done {
            done: "delete".into(),
            region,
            existed: Some(existed),
            audit_entry: None,
        });
    outcome("delete", &who, Some(pseudonym), result)
}

fn scan_request(body: &ScanBody) -> ScanRequest {
    ScanRequest {
        class: body.class,
        collection: body.collection.clone(),
        destination: body.destination.clone(),
    }
}

async fn scan(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = try_problem!(caller(&state, &peer, &headers));
    let req: ScanBody = try_problem!(read_json(body, state.max_body).await);
    if req.group_by.is_some() {
        return Problem::invalid_field("group_by", "only aggregates group").into_response();
    }
    let gate = state.gate.clone();
    let w = who.clone();
    let result = blocking(move || gate.scan(&w, &req.purpose, &scan_request(&req)))
        .await
        .map(|scan| ScanResponse {
            records: scan.records.into_iter().map(RecordJson::from).collect(),
            skipped_misplaced: scan.skipped_misplaced,
            withheld_not_deidentifiable: scan.withheld_not_deidentifiable,
            obligations: scan.obligations.iter().map(|o| o.to_string()).collect(),
            audit_entry: scan.receipt.seq,
        });
    outcome("scan", &who, None, result)
}

async fn aggregate(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = try_problem!(caller(&state, &peer, &headers));
    let req: ScanBody = try_problem!(read_json(body, state.max_body).await);
    let gate = state.gate.clone();
    let w = who.clone();
    let result = blocking(move || {
        let field = req.group_by.clone();
        let group_of = move |raw: &domicile_store::RawRecord| -> String {
            let Some(field) = &field else {
                return "all".into();
            };
            serde_json::from_slice::<serde_json::Value>(&raw.value)
                .ok()
                .and_then(|v| v.get(field).cloned())
                .map(|v| match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "(none)".into())
        };
        gate.aggregate(&w, &req.purpose, &scan_request(&req), &group_of)
    })
    .await;
    outcome("aggregate", &who, None, result)
}

async fn export(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = try_problem!(caller(&state, &peer, &headers));
    let req: ExportRequest = try_problem!(read_json(body, state.max_body).await);
    let pseudonym = state.gate.pseudonym(&req.subject);
    let gate = state.gate.clone();
    let w = who.clone();
    let result = blocking(move || {
        gate.export(
            &w,
            &req.purpose,
            &req.subject,
            &req.destination,
            req.licence.as_ref(),
        )
    })
    .await
    .map(|(bundle, key)| ExportResponse {
        bundle,
        transfer_key_base64: B64.encode(key.to_bytes()),
    });
    outcome("export", &who, Some(pseudonym), result)
}

async fn shred(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = try_problem!(caller(&state, &peer, &headers));
    let req: ShredRequest = try_problem!(read_json(body, state.max_body).await);
    let pseudonym = state.gate.pseudonym(&req.subject);
    let gate = state.gate.clone();
    let w = who.clone();
    let region = state.gate.region().clone();
    let result = blocking(move || gate.shred_subject(&w, &req.purpose, &req.subject))
        .await
        .map(|_| Done {
            done: "shred".into(),
            region,
            existed: Some(true),
            audit_entry: None,
        });
    outcome("shred", &who, Some(pseudonym), result)
}

async fn check_store(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = try_problem!(caller(&state, &peer, &headers));
    let req: StoreCheckRequest = try_problem!(read_json(body, state.max_body).await);
    let max = req.max_findings.unwrap_or(DEFAULT_MAX_FINDINGS);
    if max > MAX_FINDINGS {
        return Problem::invalid_field(
            "max_findings",
            &format!("at most {MAX_FINDINGS} findings of each kind are listed"),
        )
        .into_response();
    }
    let gate = state.gate.clone();
    let w = who.clone();
    let region = state.gate.region().clone();
    // One check at a time is the Gate's rule (409 `check_in_progress`, logged after the
    // decision); a request that times out leaves its check running until it ends.
    let result = blocking(move || gate.check_store(&w, &req.purpose))
        .await
        .map(|(report, receipt)| StoreCheckResponse::new(region, report, max, receipt.seq));
    outcome("check_store", &who, None, result)
}

async fn request_approval(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = try_problem!(caller(&state, &peer, &headers));
    let req: ApprovalRequestBody = try_problem!(read_json(body, state.max_body).await);
    let gate = state.gate.clone();
    let w = who.clone();
    let result = blocking(move || {
        gate.request_approval(
            &w,
            req.scope,
            req.duration_secs,
            req.pending_ttl_secs.unwrap_or(DEFAULT_PENDING_TTL_SECS),
        )
    })
    .await;
    outcome("approval-request", &who, None, result)
}

/// The approval id in the path.
fn approval_id(id: &str) -> Result<ApprovalId, Problem> {
    ApprovalId::parse(id).map_err(|_| Problem::invalid_field("id", "not 32 lowercase hex digits"))
}

/// Reads an answer's body, which carries nothing (`{}` or empty).
async fn empty_body(body: Body, limit: usize) -> Result<(), Problem> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nothing {}
    read_json::<Nothing>(body, limit).await.map(|_| ())
}

async fn grant(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = try_problem!(caller(&state, &peer, &headers));
    let id = try_problem!(approval_id(&id));
    try_problem!(empty_body(body, state.max_body).await);
    let st = state.clone();
    let w = who.clone();
    let result = blocking(move || st.gate.approve(&w, &st.grant_key, &id)).await;
    outcome("approval-grant", &who, None, result)
}

async fn deny(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer_approval(
        state,
        peer,
        id,
        headers,
        body,
        "approval-deny",
        |gate, who, id| gate.deny_approval(who, id),
    )
    .await
}

async fn revoke(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer_approval(
        state,
        peer,
        id,
        headers,
        body,
        "approval-revoke",
        |gate, who, id| gate.revoke_approval(who, id),
    )
    .await
}

/// Denying and revoking: the caller, the approval id, an empty body, then `act` on the Gate.
async fn answer_approval(
    state: Shared,
    peer: Peer,
    id: String,
    headers: HeaderMap,
    body: Body,
    done: &'static str,
    act: impl FnOnce(&Gate, &Principal, &ApprovalId) -> Result<(), GateError> + Send + 'static,
) -> Response {
    let who = try_problem!(caller(&state, &peer, &headers));
    let id = try_problem!(approval_id(&id));
    try_problem!(empty_body(body, state.max_body).await);
    let gate = state.gate.clone();
    let w = who.clone();
    let region = state.gate.region().clone();
    let result = blocking(move || act(&gate, &w, &id)).await.map(|()| Done {
        done: done.into(),
        region,
        existed: None,
        audit_entry: None,
    });
    outcome(done, &who, None, result)
}

async fn deploy(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = try_problem!(caller(&state, &peer, &headers));
    let req: DeployRequest = try_problem!(read_json(body, state.max_body).await);
    let artifact = try_problem!(B64
        .decode(&req.artifact_base64)
        .map_err(|_| Problem::invalid_field("artifact_base64", "not base64")));
    let gate = state.gate.clone();
    let w = who.clone();
    let region = state.gate.region().clone();
    let result = blocking(move || gate.deploy_model(&w, &req.purpose, &req.trained_on, &artifact))
        .await
        .map(|receipt| Done {
            done: "deploy".into(),
            region,
            existed: None,
            audit_entry: Some(receipt.seq),
        });
    outcome("deploy", &who, None, result)
}
