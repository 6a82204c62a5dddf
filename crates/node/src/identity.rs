//! The caller's identity: the SPIFFE id of an X.509-SVID.
//!
//! The SPIFFE X.509-SVID standard (section 2) says an SVID carries exactly one URI SAN, the
//! SPIFFE id; a certificate with none or several is not an SVID and names nobody. The trust
//! domain of the id must be the deployment's: a certificate of another trust domain, even one
//! signed by a CA this node trusts, is refused.

use domicile_access::SpiffeId;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate does not name a principal of this trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The certificate is not DER X.509.
    #[error("the certificate is not a DER X.509 certificate")]
    NotX509,
    /// The certificate carries no URI SAN, or more than one (an SVID carries exactly one).
    #[error("the certificate carries {count} URI SANs; an X.509-SVID carries exactly one")]
    UriSanCount {
        /// How many it carries.
        count: usize,
    },
    /// The URI SAN is not a SPIFFE id of the form `spiffe://<trust-domain>/<region>/<org>/<name>`.
    #[error("the certificate's URI SAN is not a SPIFFE id of the form spiffe://<trust-domain>/<region>/<org>/<name>")]
    NotSpiffe,
    /// The id belongs to another trust domain.
    #[error("the certificate's SPIFFE id is of trust domain {found:?}, not {expected:?}")]
    OtherTrustDomain {
        /// The trust domain expected.
        expected: String,
        /// The one found.
        found: String,
    },
}

/// The SPIFFE id of a DER certificate: its one URI SAN, which must be a SPIFFE id of
/// `trust_domain`.
pub fn spiffe_id_of(cert_der: &[u8], trust_domain: &str) -> Result<SpiffeId, IdentityError> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|_| IdentityError::NotX509)?;
    let uris: Vec<&str> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(uri) => Some(*uri),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(_) => return Err(IdentityError::NotX509),
    };
    let [uri] = uris.as_slice() else {
        return Err(IdentityError::UriSanCount { count: uris.len() });
    };
    let id = SpiffeId::parse(uri).map_err(|_| IdentityError::NotSpiffe)?;
    if id.trust_domain() != trust_domain {
        return Err(IdentityError::OtherTrustDomain {
            expected: trust_domain.to_owned(),
            found: id.trust_domain().to_owned(),
        });
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn cert_with(sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn uri(u: &str) -> SanType {
        SanType::URI(u.try_into().unwrap())
    }

    #[test]
    fn exactly_one_spiffe_uri_of_the_trust_domain_names_a_principal() {
        let ok = cert_with(vec![
            uri("spiffe://d.example/us/usds/alice"),
            SanType::DnsName("localhost".try_into().unwrap()),
        ]);
        assert_eq!(
            spiffe_id_of(&ok, "d.example").unwrap().to_string(),
            "spiffe://d.example/us/usds/alice"
        );
        assert_eq!(
            spiffe_id_of(&cert_with(vec![]), "d.example"),
            Err(IdentityError::UriSanCount { count: 0 })
        );
        let two = cert_with(vec![
            uri("spiffe://d.example/us/usds/alice"),
            uri("spiffe://d.example/us/usds/carol"),
        ]);
        assert_eq!(
            spiffe_id_of(&two, "d.example"),
            Err(IdentityError::UriSanCount { count: 2 })
        );
        assert!(matches!(
            spiffe_id_of(&ok, "other.example"),
            Err(IdentityError::OtherTrustDomain { .. })
        ));
        for not_spiffe in [
            "https://d.example/us/usds/alice",
            "spiffe://d.example/us/usds",
            "spiffe://d.example/us/usds/alice/extra",
            "spiffe://D.example/us/usds/alice",
        ] {
            assert_eq!(
                spiffe_id_of(&cert_with(vec![uri(not_spiffe)]), "d.example"),
                Err(IdentityError::NotSpiffe),
                "{not_spiffe}"
            );
        }
        assert_eq!(
            spiffe_id_of(b"not a certificate", "d.example"),
            Err(IdentityError::NotX509)
        );
    }
}
