//! Mutual TLS with SPIFFE X.509-SVIDs, on rustls with the ring provider only.
//!
//! A node's server verifies a client's certificate chain against the deployment's CA bundle and
//! then its identity ([`spiffe_id_of`]): exactly one URI SAN, a SPIFFE id of the deployment's
//! trust domain. A certificate that fails either is refused in the handshake. A client that
//! sends no certificate completes the handshake (the public endpoints, `/checkpoint`, `/healthz`
//! and `/readyz`, need none) and is refused by every data endpoint.
//!
//! A client (the gateway, the tests, the benchmark) verifies the server the SPIFFE way: the chain
//! against the CA bundle, then the server's SPIFFE id — of the trust domain and, when the client
//! knows which region it is calling, of that region — rather than a DNS name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use domicile_access::SpiffeId;
use domicile_residency::Region;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring as ring_provider, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};

use crate::identity::{spiffe_id_of, IdentityError};

/// The largest PEM file read (a certificate chain or a key).
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Why TLS material could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error(transparent)]
    File(#[from] domicile_durable::FileError),
    /// A file holds no PEM object of the kind expected.
    #[error("{path} holds no {what} in PEM form")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
    },
    /// rustls refused the material (a key that does not match its certificate, say).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built from the CA bundle.
    #[error("the CA bundle cannot verify clients: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The node's own certificate is not an SVID of the trust domain.
    #[error("the certificate {path} is not an X.509-SVID of this trust domain: {source}")]
    OwnIdentity {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        #[source]
        source: IdentityError,
    },
}

/// The ring provider: the only crypto provider domicile uses (never aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring_provider::default_provider())
}

/// A party's TLS material: the CA bundle it trusts, its SVID chain and key, and its SPIFFE id.
#[derive(Clone)]
pub struct Identity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    id: SpiffeId,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

/// Loading an identity and building TLS configurations from it.
impl Identity {
    /// Loads a CA bundle (`ca`), an SVID chain (`cert`) and its key (`key`, which must not be
    /// readable by others), and checks that the SVID names a SPIFFE id of `trust_domain`.
    pub fn load(ca: &Path, cert: &Path, key: &Path, trust_domain: &str) -> Result<Self, TlsError> {
        let pem_error = |path: &Path, what| TlsError::Pem {
            path: path.to_owned(),
            what,
        };
        let ca_pem = domicile_durable::read_bounded(ca, MAX_PEM_BYTES)?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            let cert = cert.map_err(|_| pem_error(ca, "certificate"))?;
            roots.add(cert)?;
        }
        if roots.is_empty() {
            return Err(pem_error(ca, "certificate"));
        }
        let cert_pem = domicile_durable::read_bounded(cert, MAX_PEM_BYTES)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| pem_error(cert, "certificate"))?;
        let leaf = chain
            .first()
            .ok_or_else(|| pem_error(cert, "certificate"))?;
        let id = spiffe_id_of(leaf, trust_domain).map_err(|source| TlsError::OwnIdentity {
            path: cert.to_owned(),
            source,
        })?;
        let key_pem = domicile_durable::read_secret(key)?.ok_or_else(|| pem_error(key, "key"))?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| pem_error(key, "key"))?;
        Ok(Identity {
            roots: Arc::new(roots),
            chain,
            key: Arc::new(key_der),
            id,
        })
    }

    /// This party's SPIFFE id.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The trust domain of this party's id: the only one it accepts from others.
    pub fn trust_domain(&self) -> &str {
        self.id.trust_domain()
    }

    /// A server configuration: this SVID, and client certificates verified by
    /// [`SpiffeClientVerifier`] (optional at the handshake; data endpoints require one).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let inner =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .allow_unauthenticated()
                .build()?;
        let verifier = Arc::new(SpiffeClientVerifier {
            inner,
            trust_domain: self.trust_domain().to_owned(),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A client configuration presenting this SVID, accepting a server whose SVID is of this
    /// trust domain and, when `region` is given, of that region.
    pub fn client_config(&self, region: Option<Region>) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = provider();
        let verifier = Arc::new(SpiffeServerVerifier {
            roots: self.roots.clone(),
            algorithms: provider.signature_verification_algorithms,
            trust_domain: self.trust_domain().to_owned(),
            region,
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn refused(e: IdentityError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Verifies a client's chain with webpki against the CA bundle, then its SPIFFE id.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // The public endpoints need no certificate; every data endpoint checks for one.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        spiffe_id_of(end_entity, &self.trust_domain).map_err(refused)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Verifies a server's chain against the CA bundle and its SPIFFE id (trust domain, and region
/// when one is expected), not a DNS name: an SVID names a workload, not a host.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
    trust_domain: String,
    region: Option<Region>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        let id = spiffe_id_of(end_entity, &self.trust_domain).map_err(refused)?;
        if let Some(region) = &self.region {
            if id.region() != region {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName,
                ));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
