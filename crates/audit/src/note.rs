//! C2SP signed notes with Ed25519: keys, signing and verification.
//!
//! A note is UTF-8 text ending in a newline, a blank line, and one signature line per signer:
//! `— <name> base64(key id ‖ signature)`. The key id is the first four bytes of
//! `SHA-256(name ‖ 0x0A ‖ type ‖ public key)`, where the type byte is `0x01` for an Ed25519
//! note signature and `0x04` for a C2SP tlog-cosignature. Verifier keys are written
//! `<name>+<hex key id>+<base64(type ‖ public key)>`, exactly as golang.org/x/mod/sumdb/note
//! reads them.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, Ed25519KeyPair, KeyPair};

use crate::AuditError;

/// The signature scheme of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// An Ed25519 signed-note key (type byte 0x01): the log's checkpoint signing key.
    Ed25519,
    /// An Ed25519 tlog-cosignature key (type byte 0x04): a witness.
    Cosignature,
}

impl KeyKind {
    fn byte(self) -> u8 {
        match self {
            KeyKind::Ed25519 => 0x01,
            KeyKind::Cosignature => 0x04,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(KeyKind::Ed25519),
            0x04 => Some(KeyKind::Cosignature),
            _ => None,
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

fn key_id(name: &str, kind: KeyKind, public: &[u8]) -> u32 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[kind.byte()]);
    ctx.update(public);
    let d = ctx.finish();
    u32::from_be_bytes([d.as_ref()[0], d.as_ref()[1], d.as_ref()[2], d.as_ref()[3]])
}

fn bad_key(text: &str, reason: &'static str) -> AuditError {
    // Never quote key material in an error: a file passed as a public key may hold a secret
    // (a signing key, an audit key). Only a name part that is a valid key name is shown.
    let text = text.trim();
    if text.starts_with("PRIVATE+KEY+") {
        return AuditError::BadKey {
            key: "(a private signing key)".into(),
            reason: "this is a private signing key; give its public verifier key (the .vkey file)",
        };
    }
    let name = text.split('+').next().unwrap_or("");
    let shown = if text.contains('+') && valid_name(name) && name.len() <= 200 {
        format!("{name}+…")
    } else {
        "(key text not shown)".into()
    };
    AuditError::BadKey { key: shown, reason }
}

/// A private signing key: the log's checkpoint key or a witness's cosigning key.
pub struct SigningKey {
    name: String,
    kind: KeyKind,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
    id: u32,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random key named `name` (the log's origin, or the witness's name).
    pub fn generate(name: &str, kind: KeyKind) -> Result<Self, AuditError> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| AuditError::RandomUnavailable)?;
        SigningKey::from_seed(name, kind, seed)
    }

    /// The key with this name and 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, kind: KeyKind, seed: [u8; 32]) -> Result<Self, AuditError> {
        if !valid_name(name) {
            return Err(bad_key(
                name,
                "a key name is non-empty, without spaces or '+'",
            ));
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| AuditError::Crypto("the Ed25519 seed was refused"))?;
        let id = key_id(name, kind, pair.public_key().as_ref());
        Ok(SigningKey {
            name: name.to_owned(),
            kind,
            seed,
            pair,
            id,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(type ‖ seed)>` (the Go note format).
    pub fn parse(text: &str) -> Result<Self, AuditError> {
        let text = text.trim();
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad_key(text, "a private key starts with PRIVATE+KEY+"))?;
        // Base64 may contain '+', so the key data is everything after the second '+'.
        let parts: Vec<&str> = rest.splitn(3, '+').collect();
        let [name, id_hex, data] = parts[..] else {
            return Err(bad_key(text, "expected PRIVATE+KEY+name+id+key"));
        };
        let data = B64
            .decode(data)
            .map_err(|_| bad_key(text, "the key is not base64"))?;
        if data.len() != 33 {
            return Err(bad_key(
                text,
                "the key is not a type byte and a 32-byte seed",
            ));
        }
        let kind = KeyKind::from_byte(data[0])
            .ok_or_else(|| bad_key(text, "unknown key type (want 0x01 or 0x04)"))?;
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&data[1..]);
        let key = SigningKey::from_seed(name, kind, seed)?;
        if format!("{:08x}", key.id) != id_hex {
            return Err(bad_key(text, "the key id does not match the key"));
        }
        Ok(key)
    }

    /// The private key text, `PRIVATE+KEY+…`. Keep it secret (the CLI writes it 0600).
    pub fn to_private_text(&self) -> String {
        let mut data = vec![self.kind.byte()];
        data.extend_from_slice(&self.seed);
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(data)
        )
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        VerifierKey {
            name: self.name.clone(),
            kind: self.kind,
            id: self.id,
            public,
        }
    }

    /// The kind of key.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn sign_bytes(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
    }

    /// Signs `text` (which must end in a newline) as a note with this key alone.
    pub fn sign_note(&self, text: &str) -> Result<Note, AuditError> {
        if self.kind != KeyKind::Ed25519 {
            return Err(bad_key(&self.name, "a cosignature key cannot sign a note"));
        }
        check_text(text)?;
        Ok(Note {
            text: text.to_owned(),
            signatures: vec![NoteSignature {
                name: self.name.clone(),
                id: self.id,
                bytes: self.sign_bytes(text.as_bytes()).to_vec(),
            }],
        })
    }
}

/// A public verifier key, `<name>+<hex id>+<base64(type ‖ public key)>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerifierKey {
    name: String,
    kind: KeyKind,
    id: u32,
    public: [u8; 32],
}

impl VerifierKey {
    /// Parses a verifier key line.
    pub fn parse(text: &str) -> Result<Self, AuditError> {
        let text = text.trim();
        let parts: Vec<&str> = text.splitn(3, '+').collect();
        let [name, id_hex, data] = parts[..] else {
            return Err(bad_key(text, "expected name+id+key"));
        };
        if !valid_name(name) {
            return Err(bad_key(
                text,
                "a key name is non-empty, without spaces or '+'",
            ));
        }
        let data = B64
            .decode(data)
            .map_err(|_| bad_key(text, "the key is not base64"))?;
        if data.len() != 33 {
            return Err(bad_key(text, "the key is not a type byte and 32 bytes"));
        }
        let kind = KeyKind::from_byte(data[0])
            .ok_or_else(|| bad_key(text, "unknown key type (want 0x01 or 0x04)"))?;
        let mut public = [0u8; 32];
        public.copy_from_slice(&data[1..]);
        let id = key_id(name, kind, &public);
        if id_hex.len() != 8 || format!("{id:08x}") != id_hex {
            return Err(bad_key(text, "the key id does not match the key"));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            kind,
            id,
            public,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind of key.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key id (first four bytes of the key hash).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The raw Ed25519 public key: what makes two verifier keys the same signer, whatever
    /// their names.
    pub(crate) fn public_bytes(&self) -> &[u8; 32] {
        &self.public
    }

    pub(crate) fn verify_bytes(&self, msg: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.public)
            .verify(msg, sig)
            .is_ok()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut data = vec![self.kind.byte()];
        data.extend_from_slice(&self.public);
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(data))
    }
}

impl FromStr for VerifierKey {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VerifierKey::parse(s)
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The signer's key name.
    pub name: String,
    /// The signer's key id.
    pub id: u32,
    /// The signature bytes after the key id (64 bytes for Ed25519; timestamp and 64 bytes for a
    /// cosignature).
    pub bytes: Vec<u8>,
}

impl NoteSignature {
    /// The line as it appears in a note, without its newline.
    pub fn to_line(&self) -> String {
        let mut data = self.id.to_be_bytes().to_vec();
        data.extend_from_slice(&self.bytes);
        format!("\u{2014} {} {}", self.name, B64.encode(data))
    }
}

/// A signed note: text and signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in a newline.
    pub text: String,
    /// The signatures, in order.
    pub signatures: Vec<NoteSignature>,
}

fn bad_note(reason: &'static str) -> AuditError {
    AuditError::BadNote { reason }
}

fn check_text(text: &str) -> Result<(), AuditError> {
    if !text.ends_with('\n') {
        return Err(bad_note("the note text does not end in a newline"));
    }
    if text.contains("\n\n") || text.starts_with('\n') {
        return Err(bad_note("the note text contains a blank line"));
    }
    if text.chars().any(|c| c != '\n' && c.is_control()) {
        return Err(bad_note("the note text contains a control character"));
    }
    Ok(())
}

/// The most bytes a note may have, as in the Go implementation.
const MAX_NOTE: usize = 1 << 20;

impl Note {
    /// Parses a note: text, blank line, signature lines, each ending in a newline.
    pub fn parse(bytes: &[u8]) -> Result<Self, AuditError> {
        if bytes.len() > MAX_NOTE {
            return Err(bad_note("the note is larger than 1 MiB"));
        }
        let msg = std::str::from_utf8(bytes).map_err(|_| bad_note("the note is not UTF-8"))?;
        let split = msg
            .rfind("\n\n")
            .ok_or_else(|| bad_note("the note has no blank line before its signatures"))?;
        let text = &msg[..split + 1];
        check_text(text)?;
        let sigs = &msg[split + 2..];
        if !sigs.ends_with('\n') {
            return Err(bad_note("the signature block does not end in a newline"));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| bad_note("a signature line does not start with an em dash"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| bad_note("a signature line has no signature"))?;
            if !valid_name(name) || b64.contains(' ') {
                return Err(bad_note("a signature line is malformed"));
            }
            let data = B64
                .decode(b64)
                .map_err(|_| bad_note("a signature is not base64"))?;
            if data.len() < 5 {
                return Err(bad_note("a signature is too short"));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                id: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
                bytes: data[4..].to_vec(),
            });
        }
        if signatures.is_empty() {
            return Err(bad_note("the note has no signatures"));
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note as text.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.to_line());
            out.push('\n');
        }
        out
    }

    /// Checks the signature by `key` (an Ed25519 note key). Fails when the note carries no
    /// signature by that key, or when one it carries does not verify.
    pub fn verify(&self, key: &VerifierKey) -> Result<(), AuditError> {
        if key.kind != KeyKind::Ed25519 {
            return Err(bad_key(
                &key.to_string(),
                "a cosignature key does not sign notes",
            ));
        }
        let mut found = false;
        for s in self
            .signatures
            .iter()
            .filter(|s| s.name == key.name && s.id == key.id)
        {
            if !key.verify_bytes(self.text.as_bytes(), &s.bytes) {
                return Err(AuditError::BadSignature {
                    signer: key.name.clone(),
                });
            }
            found = true;
        }
        if found {
            Ok(())
        } else {
            Err(AuditError::MissingSignature {
                signer: key.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for seed in 0..=255u8 {
            // Some seeds give public keys whose base64 holds '+'.
            let key = SigningKey::from_seed("n", KeyKind::Ed25519, [seed; 32]).unwrap();
            assert_eq!(
                SigningKey::parse(&key.to_private_text())
                    .unwrap()
                    .verifier(),
                key.verifier()
            );
            assert_eq!(
                VerifierKey::parse(&key.verifier().to_string()).unwrap(),
                key.verifier()
            );
        }
        let key = SigningKey::generate("audit.example/us", KeyKind::Ed25519).unwrap();
        let again = SigningKey::parse(&key.to_private_text()).unwrap();
        assert_eq!(again.verifier(), key.verifier());
        let v = VerifierKey::parse(&key.verifier().to_string()).unwrap();
        assert_eq!(v, key.verifier());
        let note = key.sign_note("hello\n").unwrap();
        let parsed = Note::parse(note.to_text().as_bytes()).unwrap();
        parsed.verify(&v).unwrap();
        let err = VerifierKey::parse("x+00000000+AAAA").unwrap_err();
        // Only the name part is shown: a file passed as a key may hold a secret.
        assert!(err.to_string().contains("\"x+…\""), "{err}");
        assert!(!err.to_string().contains("AAAA"), "{err}");
    }

    #[test]
    fn private_keys_are_not_quoted_in_errors() {
        let key = SigningKey::generate("k", KeyKind::Ed25519).unwrap();
        let text = key.to_private_text();
        let broken = format!("{}x", &text[..text.len() - 4]);
        let err = SigningKey::parse(&broken).unwrap_err().to_string();
        assert!(!err.contains(&broken[20..]), "{err}");
    }
}
