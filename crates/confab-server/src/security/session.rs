//! Session tokens: 256 random bits, handed to the client once and stored only as SHA-256.
//!
//! Verifying a token is a hash (fast) plus, on the hot path, a lookup in an in-memory cache
//! keyed by that hash. Logout removes the entry at once, so revocation is immediate on this
//! node. Entries also expire with their session. The cache is bounded: when full, it is
//! cleared and refills from the database on the next requests.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use confab_proto::User;
use sha2::{Digest, Sha256};

use crate::time::now_ms;

/// A new random token, as the client sees it.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a token.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

#[derive(Debug, Clone)]
pub struct CachedSession {
    pub user: User,
    pub expires_at_ms: i64,
}

/// Sessions known to be valid, by token hash.
pub struct SessionCache {
    capacity: usize,
    // std Mutex: held for a map lookup or insert only, never across an .await.
    entries: Mutex<HashMap<String, CachedSession>>,
}

impl SessionCache {
    pub fn new(capacity: usize) -> SessionCache {
        SessionCache { capacity, entries: Mutex::new(HashMap::new()) }
    }

    /// The live session for `hash`, if cached. Expired entries are dropped.
    pub fn get(&self, hash: &str) -> Option<CachedSession> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(hash) {
            Some(s) if s.expires_at_ms > now_ms() => Some(s.clone()),
            Some(_) => {
                entries.remove(hash);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, hash: String, session: CachedSession) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(hash, session);
    }

    pub fn remove(&self, hash: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_are_hex_sha256() {
        let (a, b) = (new_token(), new_token());

        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert_eq!(token_hash(&a), token_hash(&a));
    }

    #[test]
    fn removed_and_expired_sessions_are_not_served() {
        let cache = SessionCache::new(10);
        let user = User {
            id: "u".into(),
            username: "alice".into(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        cache.insert(
            "live".into(),
            CachedSession { user: user.clone(), expires_at_ms: now_ms() + 60_000 },
        );
        cache.insert("old".into(), CachedSession { user, expires_at_ms: now_ms() - 1 });

        assert!(cache.get("live").is_some());
        assert!(cache.get("old").is_none());
        cache.remove("live");
        assert!(cache.get("live").is_none());
    }
}
