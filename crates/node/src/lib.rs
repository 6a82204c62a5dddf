//! A region's server, over mutual TLS: `domicile serve`, `domicile gateway` and `domicile pki`.
//!
//! A **node** serves one region of a deployment: its [`Gate`](domicile_access::Gate) — the only
//! door to the region's sealed store — as JSON endpoints, one per Gate operation, over HTTPS
//! with mutual TLS. The caller is the SPIFFE id of its X.509-SVID (exactly one URI SAN, this
//! trust domain, a chain to the deployment's CA), and what that id may do is the principal the
//! operator's signed directory gives it. Refusals are RFC 9457 problems with stable codes and
//! no personal data. Bodies, headers and requests are bounded in size and time; SIGTERM drains
//! the requests in flight, with their audit entries, before the log signs its last checkpoint.
//!
//! A **gateway** takes requests for any subject and forwards each to the node of the subject's
//! home region under the deployment's residency policy, and nowhere else; it keeps nothing.
//!
//! [`pki`] is a development CA that issues SVIDs; production brings its own (SPIRE, a
//! corporate PKI). TLS is rustls with the ring provider only.
//!
//! ```
//! use domicile_access::SpiffeId;
//! use domicile_node::pki::DevCa;
//! use domicile_node::{spiffe_id_of, IdentityError, Identity};
//!
//! let dir = tempfile::tempdir()?;
//! let ca = DevCa::generate("domicile.example")?;
//! ca.save(&dir.path().join("ca"))?;
//! let alice = SpiffeId::parse("spiffe://domicile.example/us/usds/alice")?;
//! DevCa::load(&dir.path().join("ca"))?
//!     .issue(&alice, &[], &[])?
//!     .save(&dir.path().join("alice"), ca.cert_pem())?;
//!
//! let me = Identity::load(&dir.path().join("alice/bundle.pem"), &dir.path().join("alice/svid.pem"),
//!                         &dir.path().join("alice/svid.key"), "domicile.example")?;
//! assert_eq!(me.id(), &alice);
//! // Another trust domain's id names nobody here.
//! let der = rustls_pki_types::pem::PemObject::from_pem_slice(
//!     std::fs::read(dir.path().join("alice/svid.pem"))?.as_slice())?;
//! let der: rustls_pki_types::CertificateDer = der;
//! assert!(matches!(spiffe_id_of(&der, "other.example"), Err(IdentityError::OtherTrustDomain { .. })));
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod api;
mod client;
mod gateway;
mod identity;
mod node;
pub mod pki;
mod problem;
mod run;
mod serve;
mod tls;

pub use client::{Answer, ClientError, NodeClient, DEFAULT_MAX_RESPONSE};
pub use gateway::{router as gateway_router, Gateway};
pub use identity::{spiffe_id_of, IdentityError};
pub use node::{
    public_log_routes, read_body, read_json, router as node_router, NodeState, Peer, ON_BEHALF_OF,
};
pub use problem::{Problem, PROBLEM_JSON, TYPE_PREFIX};
pub use run::{run_gateway, run_node, GatewayConfig, NodeConfig, NodeError};
pub use serve::{serve, termination, Limits, LONG_REQUESTS};
pub use tls::{provider, Identity, SpiffeClientVerifier, SpiffeServerVerifier, TlsError};
