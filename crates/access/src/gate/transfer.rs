//! De-identifying what leaves a region under `Pseudonymize`: the subject becomes a keyed
//! pseudonym and so does every field of the value that the policy names as identifying, both
//! under the Gate's transfer key — never under its audit key, so that nobody holding a released
//! record and the audit log (or the audit key) can join them.

use domicile_residency::{DataClass, SubjectId};
use ring::hmac;

use super::Gate;

/// Domain separators, so that a subject's pseudonym never equals a field value's.
const SUBJECT_DOMAIN: &[u8] = b"domicile transfer subject v1\n";
const FIELD_DOMAIN: &[u8] = b"domicile transfer field v1\n";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The transfer key, and de-identifying with it.
impl Gate {
    /// Uses `key` (32 secret bytes, kept in the region apart from the audit key) for the
    /// pseudonyms of released records, so that they stay the same across restarts and Gates of
    /// the region. Without it a Gate draws a fresh random transfer key: its pseudonyms are then
    /// stable only for its own life, and joinable with nothing else.
    pub fn with_transfer_key(mut self, key: [u8; 32]) -> Self {
        self.transfer_key = hmac::Key::new(hmac::HMAC_SHA256, &key);
        self
    }

    /// A subject's pseudonym in released records: `hmac:` and 64 hex digits of HMAC-SHA256 under
    /// the transfer key. It differs from the subject's pseudonym in the audit log
    /// ([`pseudonym`](Self::pseudonym)).
    pub fn transfer_pseudonym(&self, subject: &SubjectId) -> String {
        let mut msg = SUBJECT_DOMAIN.to_vec();
        msg.extend_from_slice(subject.as_str().as_bytes());
        format!(
            "hmac:{}",
            hex(hmac::sign(&self.transfer_key, &msg).as_ref())
        )
    }

    /// `value` with every field the policy names as identifying for `class` replaced by its
    /// keyed pseudonym (`hmac:` and 64 hex digits over the field name and its JSON value).
    /// `None` when the policy names fields and the value is not a JSON object, so they cannot be
    /// found: such a record is withheld, never released as it is.
    pub(super) fn deidentify(&self, class: DataClass, value: &[u8]) -> Option<Vec<u8>> {
        let fields = self.policy.identifying_fields(class);
        if fields.is_empty() {
            return Some(value.to_vec());
        }
        let mut object = match serde_json::from_slice::<serde_json::Value>(value) {
            Ok(serde_json::Value::Object(object)) => object,
            _ => return None,
        };
        for (name, v) in object.iter_mut() {
            if fields.contains(&name.as_str()) && !v.is_null() {
                let mut msg = FIELD_DOMAIN.to_vec();
                msg.extend_from_slice(name.as_bytes());
                msg.push(b'\n');
                msg.extend_from_slice(v.to_string().as_bytes());
                let tag = hmac::sign(&self.transfer_key, &msg);
                *v = serde_json::Value::String(format!("hmac:{}", hex(tag.as_ref())));
            }
        }
        Some(serde_json::to_vec(&object).expect("a JSON object serialises"))
    }
}
