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

/// Random values that are stored in the clear (nonces, subject-list tags), drawn from the
/// system generator in bulk: one `getrandom` call for up to [`PublicRandom::MAX_DRAW_BYTES`]
/// of them, where one call per record cost more than sealing the record (about 0.4 µs for the
/// call against 0.2 µs to seal 256 bytes, on the machine the benchmarks run on). Each value is
/// handed out once and is as random as one drawn alone. Since the values are public, drawing a
/// few ahead of their use reveals nothing; keys are never drawn this way.
pub(crate) struct PublicRandom<'a, const N: usize> {
    rng: &'a SystemRandom,
    drawn: Vec<u8>,
    next: usize,
    /// How many more the caller expects to take: the size of the next draw.
    expected: usize,
}

/// AES-GCM nonces, a batch's at a time.
pub(crate) type Nonces<'a> = PublicRandom<'a, NONCE_LEN>;

impl<'a, const N: usize> PublicRandom<'a, N> {
    /// The most bytes one draw takes (256 nonces).
    pub(crate) const MAX_DRAW_BYTES: usize = 256 * NONCE_LEN;

    /// A source for about `expected` values; nothing is drawn until the first is taken, and more
    /// than `expected` may be taken.
    pub(crate) fn new(rng: &'a SystemRandom, expected: usize) -> Self {
        PublicRandom {
            rng,
            drawn: Vec::new(),
            next: 0,
            expected,
        }
    }

    /// The next unused value.
    pub(crate) fn take(&mut self) -> Result<[u8; N], StoreError> {
        if self.next == self.drawn.len() {
            let count = self.expected.clamp(1, (Self::MAX_DRAW_BYTES / N).max(1));
            self.drawn.resize(count * N, 0);
            self.rng
                .fill(&mut self.drawn)
                .map_err(|_| StoreError::Crypto {
                    what: "drawing nonces or tags from the system random generator",
                })?;
            self.next = 0;
        }
        let mut value = [0u8; N];
        value.copy_from_slice(&self.drawn[self.next..self.next + N]);
        self.next += N;
        self.expected = self.expected.saturating_sub(1);
        Ok(value)
    }
}

/// Seals `plaintext` under `key` with the next of `nonces` (96 random bits); appends `nonce ‖
/// ciphertext ‖ tag` to `out`.
pub(crate) fn seal_into(
    key: &LessSafeKey,
    nonces: &mut Nonces<'_>,
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    seal_parts_into(key, nonces, aad, &[plaintext], out)
}

/// [`seal_into`] of a plaintext given in parts, concatenated as they are sealed: no copy of
/// the whole is made first.
pub(crate) fn seal_parts_into(
    key: &LessSafeKey,
    nonces: &mut Nonces<'_>,
    aad: &[u8],
    plaintext: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let nonce = nonces.take()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn nonces_are_handed_out_once_across_draws() {
        let rng = SystemRandom::new();
        // Fewer expected than taken, and more than one draw's worth.
        let mut nonces = Nonces::new(&rng, 3);
        assert!(
            nonces.drawn.is_empty(),
            "nothing is drawn before the first take"
        );
        let mut seen = HashSet::new();
        let per_draw = Nonces::MAX_DRAW_BYTES / NONCE_LEN;
        for _ in 0..(2 * per_draw + 7) {
            assert!(
                seen.insert(nonces.take().unwrap()),
                "a nonce was handed out twice"
            );
        }
        // A large batch draws at most MAX_DRAW_BYTES at a time.
        let mut nonces = Nonces::new(&rng, 100_000);
        nonces.take().unwrap();
        assert_eq!(nonces.drawn.len(), Nonces::MAX_DRAW_BYTES);
        // Other widths draw whole values.
        let mut tags = PublicRandom::<8>::new(&rng, 1_000);
        let first = tags.take().unwrap();
        assert_eq!(tags.drawn.len(), 384 * 8);
        assert_ne!(first, tags.take().unwrap());
    }

    #[test]
    fn a_sealed_value_opens_with_its_own_nonce() {
        let rng = SystemRandom::new();
        let key = LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &[9; 32]).unwrap(),
        );
        let mut nonces = Nonces::new(&rng, 2);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        seal_into(&key, &mut nonces, b"aad", b"same plaintext", &mut a).unwrap();
        seal_into(&key, &mut nonces, b"aad", b"same plaintext", &mut b).unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert_eq!(open(&key, b"aad", &a).unwrap(), b"same plaintext");
        assert_eq!(open(&key, b"aad", &b).unwrap(), b"same plaintext");
        assert!(open(&key, b"other", &a).is_none());
    }
}
