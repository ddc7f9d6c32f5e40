//! Butterfly's pre-shared-key encryption (`Encrypted.aes256cbc_sha512`).
//!
//! Blob = 16-byte IV || X, where X is the plaintext
//! `SHA-512(payload) || payload || PKCS#7 padding` run through AES-256 in
//! Butterfly's *inverted* CBC construction: the sender applies CBC with the
//! block cipher's **decrypt** direction (`X_i = D_K(P_i) ^ P_{i-1}`,
//! `P_0 = IV`) and the receiver applies CBC-encrypt
//! (`P_i = E_K(X_i ^ P_{i-1})`). This is what OpenSSL's
//! `EVP_CipherInit_ex(.., enc=0)` on the sending side produces; it is kept
//! for compatibility with existing Butterfly clients and servers.

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes256;
use base64::Engine as _;
use sha2::{Digest, Sha512};
use std::path::Path;

/// Key length in bytes.
pub const KEY_LEN: usize = 32;
const BLOCK: usize = 16;
const HASH: usize = 64;

/// Encryption errors.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The key text is not base64.
    #[error("key is not valid base64")]
    Base64,
    /// The decoded key is not 32 bytes long.
    #[error("key must decode to 32 bytes, got {0}")]
    KeyLength(usize),
    /// The blob is shorter than 96 bytes or not a multiple of 16.
    #[error("encrypted blob has a bad length ({0} bytes)")]
    BlobLength(usize),
    /// The padding is invalid (wrong key?).
    #[error("bad padding (wrong key?)")]
    Padding,
    /// The SHA-512 does not match (wrong key or tampering).
    #[error("integrity check failed (wrong key?)")]
    Integrity,
    /// No randomness available for the IV.
    #[error("random generator failed")]
    Random,
}

/// A 32-byte AES-256 key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Key from raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Key(bytes)
    }
    /// Parses a key file's text: base64 of exactly 32 bytes; surrounding
    /// whitespace (trailing newline) is ignored.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let cleaned: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let raw =
            base64::engine::general_purpose::STANDARD.decode(cleaned).map_err(|_| CryptoError::Base64)?;
        let arr: [u8; KEY_LEN] = raw.as_slice().try_into().map_err(|_| CryptoError::KeyLength(raw.len()))?;
        Ok(Key(arr))
    }
    /// Loads a key file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CryptoError> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p)
            .map_err(|source| CryptoError::Io { path: p.display().to_string(), source })?;
        Self::from_base64(&text)
    }
    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = [0u8; KEY_LEN];
        getrandom::fill(&mut k).map_err(|_| CryptoError::Random)?;
        Ok(Key(k))
    }
    /// Base64 text (the key file format, without newline).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

/// Encrypts a payload with a random IV.
pub fn encrypt(key: &Key, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut iv = [0u8; BLOCK];
    getrandom::fill(&mut iv).map_err(|_| CryptoError::Random)?;
    Ok(encrypt_with_iv(key, &iv, payload))
}

/// Encrypts a payload with a given IV (deterministic; for tests).
pub fn encrypt_with_iv(key: &Key, iv: &[u8; BLOCK], payload: &[u8]) -> Vec<u8> {
    let cipher = Aes256::new(GenericArray::from_slice(&key.0));
    let mut plain = Vec::with_capacity(HASH + payload.len() + BLOCK);
    plain.extend_from_slice(&Sha512::digest(payload));
    plain.extend_from_slice(payload);
    let pad = BLOCK - plain.len() % BLOCK;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    let mut out = Vec::with_capacity(BLOCK + plain.len());
    out.extend_from_slice(iv);
    let mut prev = *iv;
    for chunk in plain.chunks_exact(BLOCK) {
        let mut block = GenericArray::clone_from_slice(chunk);
        cipher.decrypt_block(&mut block);
        for (b, p) in block.iter_mut().zip(prev.iter()) {
            *b ^= p;
        }
        out.extend_from_slice(&block);
        prev.copy_from_slice(chunk);
    }
    out
}

/// Decrypts and checks a blob, returning the payload.
pub fn decrypt(key: &Key, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if blob.len() < BLOCK + HASH + BLOCK || blob.len() % BLOCK != 0 {
        return Err(CryptoError::BlobLength(blob.len()));
    }
    let cipher = Aes256::new(GenericArray::from_slice(&key.0));
    let mut prev = [0u8; BLOCK];
    prev.copy_from_slice(&blob[..BLOCK]);
    let mut plain = Vec::with_capacity(blob.len() - BLOCK);
    for chunk in blob[BLOCK..].chunks_exact(BLOCK) {
        let mut block = GenericArray::clone_from_slice(chunk);
        for (b, p) in block.iter_mut().zip(prev.iter()) {
            *b ^= p;
        }
        cipher.encrypt_block(&mut block);
        prev.copy_from_slice(&block);
        plain.extend_from_slice(&block);
    }
    let pad = usize::from(*plain.last().ok_or(CryptoError::Padding)?);
    if pad == 0 || pad > BLOCK || plain[plain.len() - pad..].iter().any(|&b| usize::from(b) != pad) {
        return Err(CryptoError::Padding);
    }
    plain.truncate(plain.len() - pad);
    if plain.len() < HASH {
        return Err(CryptoError::Padding);
    }
    let payload = plain.split_off(HASH);
    // Every byte compared, whatever the first difference (no early exit to time).
    let diff = Sha512::digest(&payload).iter().zip(&plain).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if std::hint::black_box(diff) != 0 {
        return Err(CryptoError::Integrity);
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let key = Key::from_bytes([7; 32]);
        for len in [0usize, 1, 15, 16, 17, 100] {
            let payload: Vec<u8> = (0..len as u8).collect();
            let blob = encrypt(&key, &payload).unwrap();
            assert_eq!(blob.len() % 16, 0);
            assert_eq!(decrypt(&key, &blob).unwrap(), payload);
            let mut bad = blob.clone();
            let last = bad.len() - 20;
            bad[last] ^= 1;
            assert!(decrypt(&key, &bad).is_err());
            assert!(decrypt(&Key::from_bytes([8; 32]), &blob).is_err());
        }
    }

    #[test]
    fn key_parsing() {
        let k = Key::from_bytes([1; 32]);
        assert_eq!(Key::from_base64(&format!("{}\n", k.to_base64())).unwrap(), k);
        assert!(matches!(Key::from_base64("AAAA"), Err(CryptoError::KeyLength(3))));
        assert!(matches!(Key::from_base64("!!"), Err(CryptoError::Base64)));
    }
}
