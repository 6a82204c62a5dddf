//! A development certificate authority issuing SPIFFE X.509-SVIDs (`domicile pki`).
//!
//! Production brings its own CA (SPIRE, a corporate PKI): a node needs only the CA bundle, its
//! certificate and its key. This CA is for development, tests and the `cluster` example: an
//! ECDSA P-256 root, and leaf SVIDs with exactly one URI SAN (the SPIFFE id, as the X.509-SVID
//! standard requires), usable for both client and server authentication. Keys are written with
//! mode 0600 through `domicile_durable`, and never overwritten.
//!
//! ```text
//! <ca-dir>/ca.pem          the CA certificate (public: the bundle every party trusts)
//! <ca-dir>/ca.key          its key (0600)
//! <ca-dir>/trust-domain    the trust domain it issues for
//! <out>/svid.pem           an SVID
//! <out>/svid.key           its key (0600)
//! <out>/bundle.pem         the CA bundle, beside it
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use domicile_access::SpiffeId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// How long a development CA is valid.
const CA_DAYS: i64 = 3 * 365;
/// How long an SVID is valid.
const SVID_DAYS: i64 = 90;
/// The largest PEM file read.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Why a CA or an SVID could not be made, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file could not be read or written (an SVID or CA key that exists is never replaced).
    #[error(transparent)]
    File(#[from] domicile_durable::FileError),
    /// The CA directory lacks a file.
    #[error("{path} is missing: not a CA directory made by `domicile pki init`")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// rcgen refused to build or parse a certificate or key.
    #[error("certificate {what} failed: {source}")]
    Certificate {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// The trust domain is not one a SPIFFE id can name.
    #[error("invalid trust domain {0:?}: lowercase letters, digits, '-' and '.'")]
    TrustDomain(String),
    /// The id asked for is of another trust domain than the CA's.
    #[error("the CA issues for trust domain {ca:?}, not {asked:?}")]
    OtherTrustDomain {
        /// The CA's.
        ca: String,
        /// The id's.
        asked: String,
    },
}

fn cert_error(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Certificate { what, source }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

/// A development CA for one trust domain.
pub struct DevCa {
    trust_domain: String,
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// An issued SVID: its certificate and key, in PEM.
pub struct Svid {
    /// Its SPIFFE id.
    pub id: SpiffeId,
    /// The certificate.
    pub cert_pem: String,
    /// The PKCS#8 key.
    key_pem: String,
}

impl std::fmt::Debug for Svid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Svid")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Writing an SVID.
impl Svid {
    /// Writes `svid.pem`, `svid.key` (0600, refused if it exists) and `bundle.pem` (the CA's
    /// certificate) into `dir`.
    pub fn save(&self, dir: &Path, ca_pem: &str) -> Result<(), PkiError> {
        domicile_durable::create_private(&dir.join("svid.key"), self.key_pem.as_bytes())?;
        domicile_durable::write_public(&dir.join("svid.pem"), self.cert_pem.as_bytes())?;
        domicile_durable::write_public(&dir.join("bundle.pem"), ca_pem.as_bytes())?;
        Ok(())
    }
}

/// Making, saving, loading a CA, and issuing SVIDs.
impl DevCa {
    /// A fresh CA for `trust_domain`.
    pub fn generate(trust_domain: &str) -> Result<Self, PkiError> {
        // A trust domain is valid when an id in it is.
        SpiffeId::parse(&format!("spiffe://{trust_domain}/global/ca/ca"))
            .map_err(|_| PkiError::TrustDomain(trust_domain.to_owned()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "domicile development CA");
        dn.push(DnType::CommonName, format!("{trust_domain} development CA"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, CA_DAYS);
        let key = KeyPair::generate().map_err(cert_error("generating the CA key"))?;
        let cert = params
            .clone()
            .self_signed(&key)
            .map_err(cert_error("self-signing the CA"))?;
        Ok(DevCa {
            trust_domain: trust_domain.to_owned(),
            params,
            key,
            cert_pem: cert.pem(),
        })
    }

    /// Writes the CA into `dir`: `ca.pem`, `ca.key` (0600; an existing key is never replaced)
    /// and `trust-domain`.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        domicile_durable::create_private(&dir.join("ca.key"), self.key.serialize_pem().as_bytes())?;
        domicile_durable::write_public(&dir.join("ca.pem"), self.cert_pem.as_bytes())?;
        domicile_durable::write_public(
            &dir.join("trust-domain"),
            format!("{}\n", self.trust_domain).as_bytes(),
        )?;
        Ok(())
    }

    /// Reads the CA that [`save`](Self::save) wrote into `dir`.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let read = |name: &str| -> Result<String, PkiError> {
            let path = dir.join(name);
            if !path.exists() {
                return Err(PkiError::Missing { path });
            }
            let bytes = if name.ends_with(".key") {
                domicile_durable::read_secret(&path)?.ok_or(PkiError::Missing { path })?
            } else {
                domicile_durable::read_bounded(&path, MAX_PEM_BYTES)?
            };
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        let cert_pem = read("ca.pem")?;
        let key = KeyPair::from_pem(&read("ca.key")?).map_err(cert_error("reading the CA key"))?;
        let params = CertificateParams::from_ca_cert_pem(&cert_pem)
            .map_err(cert_error("reading the CA certificate"))?;
        Ok(DevCa {
            trust_domain: read("trust-domain")?.trim().to_owned(),
            params,
            key,
            cert_pem,
        })
    }

    /// The trust domain this CA issues for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The CA certificate, PEM: the bundle every party trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues an SVID for `id`: exactly one URI SAN (the id), plus any DNS names and IP
    /// addresses given (so that tools that check host names, such as curl, accept a node's
    /// certificate), for client and server authentication.
    pub fn issue(&self, id: &SpiffeId, dns: &[String], ips: &[IpAddr]) -> Result<Svid, PkiError> {
        if id.trust_domain() != self.trust_domain {
            return Err(PkiError::OtherTrustDomain {
                ca: self.trust_domain.clone(),
                asked: id.trust_domain().to_owned(),
            });
        }
        let uri = id
            .to_string()
            .try_into()
            .map_err(cert_error("encoding the SPIFFE id"))?;
        let mut sans = vec![SanType::URI(uri)];
        for name in dns {
            let name = name
                .as_str()
                .try_into()
                .map_err(cert_error("encoding a DNS name"))?;
            sans.push(SanType::DnsName(name));
        }
        sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, id.org());
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity(&mut params, SVID_DAYS);
        let key = KeyPair::generate().map_err(cert_error("generating the SVID key"))?;
        let issuer = self
            .params
            .clone()
            .self_signed(&self.key)
            .map_err(cert_error("loading the CA"))?;
        let cert = params
            .signed_by(&key, &issuer, &self.key)
            .map_err(cert_error("signing the SVID"))?;
        Ok(Svid {
            id: id.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
