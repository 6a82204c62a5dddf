//! AES-256-GCM with fresh random nonces, and the length-prefixed encoding every AAD uses.

use ring::aead::{Aad, LessSafeKey, Nonce, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::StoreError;

/// The GCM tag length.
pub(crate) const TAG_LEN: usize = 16;

/// Appends `bytes` with a 4-byte big-endian length prefix, so that no two different field
/// sequences encode to the same AAD.
pub(crate) fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// 32 bytes from the system generator.
pub(crate) fn random_key(rng: &SystemRandom) -> Result<[u8; 32], StoreError> {
    let mut key = [0u8; 32];
    rng.fill(&mut key).map_err(|_| StoreError::Crypto {
        what: "drawing a key from the system random generator",
    })?;
    Ok(key)
}

/// Seals `plaintext` under `key` with a fresh 96-bit random nonce; appends `nonce ‖ ciphertext ‖
/// tag` to `out`.
pub(crate) fn seal_into(
    key: &LessSafeKey,
    rng: &SystemRandom,
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    seal_parts_into(key, rng, aad, &[plaintext], out)
}

/// [`seal_into`] of a plaintext given in parts, concatenated as they are sealed: no copy of
/// the whole is made first.
pub(crate) fn seal_parts_into(
    key: &LessSafeKey,
    rng: &SystemRandom,
    aad: &[u8],
    plaintext: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce).map_err(|_| StoreError::Crypto {
        what: "drawing a nonce from the system random generator",
    })?;
    out.extend_from_slice(&nonce);
    let start = out.len();
    for part in plaintext {
        out.extend_from_slice(part);
    }
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[start..],
        )
        .map_err(|_| StoreError::Crypto { what: "sealing" })?;
    out.extend_from_slice(tag.as_ref());
    Ok(())
}

/// Opens `nonce ‖ ciphertext ‖ tag`; `None` if it does not authenticate under `key` and `aad`.
pub(crate) fn open(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = body.to_vec();
    let plain_len = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .ok()?
        .len();
    buf.truncate(plain_len);
    Some(buf)
}

/// Like [`open`], decrypting in place in `buf`, where the sealed part starts at `start`:
/// returns where in `buf` the plaintext now is. Saves a copy of every value read.
pub(crate) fn open_in_buf(
    key: &LessSafeKey,
    aad: &[u8],
    buf: &mut [u8],
    start: usize,
) -> Option<std::ops::Range<usize>> {
    let body = start + NONCE_LEN;
    if buf.len() < body + TAG_LEN {
        return None;
    }
    let nonce = Nonce::try_assume_unique_for_key(&buf[start..body]).ok()?;
    let plain_len = key
        .open_in_place(nonce, Aad::from(aad), &mut buf[body..])
        .ok()?
        .len();
    Some(body..body + plain_len)
}
