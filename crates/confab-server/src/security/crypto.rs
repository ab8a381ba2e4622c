//! Encryption at rest for message content: XChaCha20-Poly1305 with a random 192-bit nonce per
//! value and the message id as associated data, so a ciphertext moved to another row does not
//! decrypt.
//!
//! A stored value is `"\0cf1:" + key id + ":" + base64(nonce ‖ ciphertext ‖ tag)`. The leading
//! NUL cannot start real content (message text with NUL bytes is refused at the API), so
//! plain text written before a key was configured is told apart and still served. The key id is
//! the first 8 hex digits of SHA-256 of the key: a keyring holds the current key, which
//! encrypts, and retired keys, which only decrypt until `confab keys rotate` has re-encrypted
//! everything under the current one.

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::Aead;
use chacha20poly1305::aead::Payload;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What every encrypted value starts with.
pub const MARKER: &str = "\0cf1:";

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The current key and the retired ones.
pub struct Keyring {
    current: Key,
    retired: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: never the keys.
        let retired: Vec<&str> = self.retired.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("retired", &retired)
            .finish()
    }
}

/// A new random key, base64 (standard alphabet), as `confab keys generate` prints it.
pub fn generate_key() -> String {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::fill(&mut bytes[..]);
    STANDARD.encode(&bytes[..])
}

fn parse_key(text: &str) -> anyhow::Result<Key> {
    let text = text.trim();
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .context("an encryption key must be base64")?,
    );
    if bytes.len() != 32 {
        bail!(
            "an encryption key must be 32 bytes (base64 of 32 random bytes), got {}",
            bytes.len()
        );
    }
    let digest = Sha256::digest(&bytes[..]);
    let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let cipher = XChaCha20Poly1305::new_from_slice(&bytes[..])
        .map_err(|_| anyhow!("an encryption key must be 32 bytes"))?;
    Ok(Key { id, cipher })
}

impl Keyring {
    /// `current` encrypts; `retired` (comma-separated, may be empty) only decrypt.
    pub fn new(current: &str, retired: &str) -> anyhow::Result<Keyring> {
        let current = parse_key(current).context("the current encryption key")?;
        let retired = retired
            .split(',')
            .filter(|k| !k.trim().is_empty())
            .map(|k| parse_key(k).context("a retired encryption key"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Keyring { current, retired })
    }

    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// `content` of message `message_id`, encrypted under the current key. Empty content (a
    /// deleted message's) stays empty.
    pub fn seal(&self, message_id: &str, content: &str) -> String {
        if content.is_empty() {
            return String::new();
        }
        let mut nonce = [0u8; 24];
        rand::fill(&mut nonce);
        let nonce = XNonce::from(nonce);
        let sealed = self
            .current
            .cipher
            .encrypt(&nonce, Payload { msg: content.as_bytes(), aad: message_id.as_bytes() })
            .expect("XChaCha20-Poly1305 encrypts any message below 256 GiB");
        let mut blob = Vec::with_capacity(24 + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        format!("{MARKER}{}:{}", self.current.id, URL_SAFE_NO_PAD.encode(blob))
    }

    /// The plain text of a stored value: plain text passes through, ciphertext is opened with
    /// the key it names.
    pub fn open(&self, message_id: &str, stored: &str) -> anyhow::Result<String> {
        let Some(rest) = stored.strip_prefix(MARKER) else {
            return Ok(stored.to_owned());
        };
        let (id, body) = rest.split_once(':').context("encrypted value without a key id")?;
        let key = std::iter::once(&self.current)
            .chain(&self.retired)
            .find(|k| k.id == id)
            .with_context(|| format!("message {message_id} is encrypted with unknown key {id}"))?;
        let blob = URL_SAFE_NO_PAD.decode(body).context("encrypted value is not base64")?;
        if blob.len() < 24 {
            bail!("encrypted value of message {message_id} is truncated");
        }
        let (nonce, sealed) = blob.split_at(24);
        let nonce = XNonce::try_from(nonce).map_err(|_| anyhow!("bad nonce length"))?;
        let plain = key
            .cipher
            .decrypt(&nonce, Payload { msg: sealed, aad: message_id.as_bytes() })
            .map_err(|_| anyhow!("message {message_id} does not decrypt: wrong key or tampered"))?;
        String::from_utf8(plain).context("decrypted content is not UTF-8")
    }

    /// Whether a stored value still needs rotating: plain text, or another key's ciphertext.
    pub fn needs_rotation(&self, stored: &str) -> bool {
        if stored.is_empty() {
            return false;
        }
        match stored.strip_prefix(MARKER).and_then(|rest| rest.split_once(':')) {
            Some((id, _)) => id != self.current.id,
            None => true,
        }
    }
}

/// Opens a stored value when a keyring is configured; without one, values are plain text.
pub fn open_opt(
    keys: Option<&Keyring>,
    message_id: &str,
    stored: String,
) -> anyhow::Result<String> {
    match keys {
        Some(k) if stored.starts_with(MARKER) => k.open(message_id, &stored),
        None if stored.starts_with(MARKER) => {
            bail!("message {message_id} is encrypted but no encryption key is configured")
        }
        _ => Ok(stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_content_opens_only_for_its_message_and_hides_the_text() {
        let keys = Keyring::new(&generate_key(), "").expect("keyring");
        let sealed = keys.seal("m1", "meet me at noon");

        assert!(sealed.starts_with(MARKER));
        assert!(!sealed.contains("noon"));
        assert_ne!(sealed, keys.seal("m1", "meet me at noon"), "nonces are random");
        assert_eq!(keys.open("m1", &sealed).expect("opens"), "meet me at noon");
        assert!(keys.open("m2", &sealed).is_err(), "bound to its message id");
        assert_eq!(keys.open("m1", "plain").expect("plain passes"), "plain");
        assert_eq!(keys.seal("m1", ""), "");
    }

    #[test]
    fn retired_keys_decrypt_and_rotation_is_detected() {
        let (old, new) = (generate_key(), generate_key());
        let before = Keyring::new(&old, "").expect("keyring");
        let sealed = before.seal("m1", "hello");
        let after = Keyring::new(&new, &old).expect("keyring");

        assert_eq!(after.open("m1", &sealed).expect("retired key opens"), "hello");
        assert!(after.needs_rotation(&sealed));
        assert!(!after.needs_rotation(&after.seal("m1", "hello")));
        assert!(after.needs_rotation("plain text"));
        assert!(Keyring::new(&new, "").expect("keyring").open("m1", &sealed).is_err());
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(Keyring::new("not base64!", "").is_err());
        assert!(Keyring::new(&STANDARD.encode([1u8; 16]), "").is_err());
        assert!(Keyring::new(&generate_key(), "").is_ok());
    }
}
