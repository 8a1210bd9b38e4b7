//! A session as the cluster's key-value bucket holds it: everything an instance needs
//! to follow the chat, with the ParticipantToken sealed (AES-256-GCM, a fresh nonce per
//! write) under the key every instance reads from `key_file`, and a keyed fingerprint
//! (HMAC-SHA-256) so "the same token twice" is recognised without the token. A reader of
//! the bucket without the key learns neither.

use crate::secret::Secret;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a key or a sealed token is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the key must be 32 bytes: 64 hex digits or 44 base64 characters ({0})")]
    Malformed(String),
    #[error("a sealed token does not open with this key (a different key_file?)")]
    Open,
}

/// The cluster's shared secret key.
#[derive(Clone)]
pub struct ClusterKey {
    bytes: [u8; 32],
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(…)")
    }
}

impl ClusterKey {
    /// From `key_file`'s text: 64 hex digits, or the base64 of 32 bytes (surrounding
    /// whitespace ignored). `openssl rand -hex 32` makes one.
    pub fn parse(text: &str) -> Result<ClusterKey, KeyError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).expect("hex checked"))
                .collect::<Vec<u8>>()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|_| KeyError::Malformed("neither hex nor base64".into()))?
        };
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| KeyError::Malformed(format!("{} bytes", b.len())))?;
        Ok(ClusterKey { bytes })
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.bytes).expect("a 32-byte AES-256 key"))
    }

    /// `base64(nonce ‖ ciphertext ‖ tag)`; the session name is authenticated with it, so a
    /// sealed token cannot be moved to another session's entry.
    pub fn seal(&self, session: &str, token: &Secret) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system's random source");
        let mut data = token.expose().as_bytes().to_vec();
        self.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(session.as_bytes()),
                &mut data,
            )
            .expect("sealing cannot fail for a short token");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    pub fn open(&self, session: &str, sealed: &str) -> Result<Secret, KeyError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| KeyError::Open)?;
        if raw.len() < NONCE_LEN {
            return Err(KeyError::Open);
        }
        let (nonce, data) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Open)?;
        let mut data = data.to_vec();
        let plain = self
            .aead()
            .open_in_place(nonce, Aad::from(session.as_bytes()), &mut data)
            .map_err(|_| KeyError::Open)?;
        let text = std::str::from_utf8(plain).map_err(|_| KeyError::Open)?;
        Ok(Secret::new(text))
    }

    /// The keyed fingerprint of a ParticipantToken (hex HMAC-SHA-256).
    pub fn fingerprint(&self, token: &Secret) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.bytes).expect("any key length");
        mac.update(token.expose().as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// One session in the bucket (key: the session's name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEntry {
    pub name: String,
    /// The ParticipantToken, sealed ([`ClusterKey::seal`]).
    pub token: String,
    /// [`ClusterKey::fingerprint`] of the token.
    pub fingerprint: String,
    /// `all` or `none`.
    pub history: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub receipts: bool,
    /// `config` or `api`.
    pub source: String,
    /// The instance that follows the chat; `None` while unassigned.
    pub owner: Option<String>,
    /// The state its owner last reported (`connecting` until it has).
    pub state: String,
    #[serde(default)]
    pub contact_id: Option<String>,
    #[serde(default)]
    pub participant_id: Option<String>,
    #[serde(default)]
    pub last_item_at: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Set by `DELETE …?disconnect=true` on an instance that is not the owner: the
    /// owner calls DisconnectParticipant, then deletes the entry.
    #[serde(default)]
    pub disconnect: bool,
}

impl SessionEntry {
    /// A chat nobody needs to follow any more.
    pub fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "ended" | "failed")
    }

    pub fn to_bytes(&self) -> axum::body::Bytes {
        serde_json::to_vec(self).expect("an entry serialises").into()
    }

    pub fn from_bytes(b: &[u8]) -> Option<SessionEntry> {
        serde_json::from_slice(b).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ClusterKey {
        ClusterKey::parse(&"ab".repeat(32)).unwrap()
    }

    #[test]
    fn a_sealed_token_opens_only_with_its_key_and_session() {
        let token = Secret::new("pt-very-secret");
        let sealed = key().seal("s1", &token);
        assert!(!sealed.contains("very-secret"));
        assert_ne!(sealed, key().seal("s1", &token), "a fresh nonce each time");
        assert_eq!(key().open("s1", &sealed).unwrap().expose(), "pt-very-secret");
        assert_eq!(key().open("s2", &sealed).unwrap_err(), KeyError::Open);
        let other = ClusterKey::parse(&"cd".repeat(32)).unwrap();
        assert_eq!(other.open("s1", &sealed).unwrap_err(), KeyError::Open);
        assert_eq!(key().open("s1", "garbage!").unwrap_err(), KeyError::Open);
    }

    #[test]
    fn keys_are_hex_or_base64_of_32_bytes() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(ClusterKey::parse(&format!("  {b64}\n")).is_ok());
        assert!(matches!(ClusterKey::parse("abcd"), Err(KeyError::Malformed(_))));
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        assert!(matches!(ClusterKey::parse(&short), Err(KeyError::Malformed(_))));
        assert_eq!(format!("{:?}", key()), "ClusterKey(…)");
    }

    #[test]
    fn fingerprints_are_keyed() {
        let t = Secret::new("pt-1");
        assert_eq!(key().fingerprint(&t), key().fingerprint(&t));
        let other = ClusterKey::parse(&"cd".repeat(32)).unwrap();
        assert_ne!(key().fingerprint(&t), other.fingerprint(&t));
        assert!(!key().fingerprint(&t).contains("pt-1"));
    }
}
