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

/// The CSRF token of a session: derived from the session token, so it needs no storage, and
/// one-way, so it reveals nothing about the session token. The web client reads it from the
/// `confab_csrf` cookie (or the login answer) and sends it as `X-CSRF-Token`.
pub fn csrf_token(token: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"confab csrf v1\0");
    hasher.update(token.as_bytes());
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// Whether `presented` is the CSRF token of session `token`, in constant time.
pub fn csrf_matches(token: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    csrf_token(token).as_bytes().ct_eq(presented.as_bytes()).into()
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
    /// The last request made with this session (idle timeout).
    pub last_used_ms: i64,
    /// When `last_used_ms` was last written to the database: it is written at most once a
    /// minute, not on every request.
    pub stored_last_used_ms: i64,
}

/// How stale the stored last use of a session may get.
pub const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// What [`SessionCache::use_session`] found.
pub enum Lookup {
    /// Live; `store_last_used` says the database's last use is due for an update.
    Live {
        session: CachedSession,
        store_last_used: bool,
    },
    /// Expired or idle too long: removed.
    Ended,
    NotCached,
}

/// Sessions known to be valid, by token hash.
pub struct SessionCache {
    capacity: usize,
    // std Mutex: held for a map lookup or insert only, never across an .await.
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    sessions: HashMap<String, CachedSession>,
    /// Removals so far. A session read from the database is cached only if none happened
    /// during the read: the row read may be one that a sign-out deleted meanwhile.
    removals: u64,
}

impl CachedSession {
    /// Neither expired nor unused for longer than `idle_ms`, at `now`.
    pub fn is_live(&self, now: i64, idle_ms: i64) -> bool {
        self.expires_at_ms > now && now - self.last_used_ms <= idle_ms
    }
}

impl SessionCache {
    pub fn new(capacity: usize) -> SessionCache {
        SessionCache { capacity, entries: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session for `hash`, marked used now. Sessions past their expiry or idle for longer
    /// than `idle_ms` are dropped.
    pub fn use_session(&self, hash: &str, idle_ms: i64) -> Lookup {
        let now = now_ms();
        let mut entries = self.lock();
        let Some(s) = entries.sessions.get_mut(hash) else {
            return Lookup::NotCached;
        };
        if !s.is_live(now, idle_ms) {
            entries.sessions.remove(hash);
            entries.removals += 1;
            return Lookup::Ended;
        }
        s.last_used_ms = now;
        let store_last_used = now - s.stored_last_used_ms >= LAST_USED_GRANULARITY_MS;
        if store_last_used {
            s.stored_last_used_ms = now;
        }
        Lookup::Live { session: s.clone(), store_last_used }
    }

    /// Whether the cached session for `hash` is current (not expired, not idle too long),
    /// without marking it used; `None` when it is not cached.
    pub fn is_current(&self, hash: &str, idle_ms: i64) -> Option<bool> {
        Some(self.lock().sessions.get(hash)?.is_live(now_ms(), idle_ms))
    }

    /// The removal count, to pass to [`SessionCache::insert_unless_removed_since`] after a
    /// database read that began after this call.
    pub fn removals(&self) -> u64 {
        self.lock().removals
    }

    /// Caches a session read from the database, unless some session was removed since
    /// `removals` was taken (false then: the caller must read again, and the sign-out that
    /// removed it has deleted its row first).
    pub fn insert_unless_removed_since(
        &self,
        removals: u64,
        hash: String,
        session: CachedSession,
    ) -> bool {
        let mut entries = self.lock();
        if entries.removals != removals {
            return false;
        }
        self.put(&mut entries, hash, session);
        true
    }

    pub fn insert(&self, hash: String, session: CachedSession) {
        self.put(&mut self.lock(), hash, session);
    }

    fn put(&self, entries: &mut Entries, hash: String, session: CachedSession) {
        if entries.sessions.len() >= self.capacity {
            entries.sessions.clear();
        }
        entries.sessions.insert(hash, session);
    }

    pub fn remove(&self, hash: &str) {
        let mut entries = self.lock();
        entries.sessions.remove(hash);
        entries.removals += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(user: &str) -> CachedSession {
        CachedSession {
            user: User {
                id: user.into(),
                username: user.into(),
                created_at: time::OffsetDateTime::UNIX_EPOCH,
            },
            expires_at_ms: now_ms() + 60_000,
            last_used_ms: now_ms(),
            stored_last_used_ms: now_ms(),
        }
    }

    #[test]
    fn a_session_read_while_another_was_removed_is_not_cached() {
        let cache = SessionCache::new(16);
        let before = cache.removals();
        cache.remove("revoked meanwhile");

        let kept = cache.insert_unless_removed_since(before, "h".into(), cached("alice"));
        let now = cache.removals();
        let kept_later = cache.insert_unless_removed_since(now, "h".into(), cached("alice"));

        assert!(!kept, "a read that overlapped a removal must read again");
        assert!(kept_later);
        assert_eq!(cache.is_current("h", 60_000), Some(true));
        assert_eq!(cache.is_current("other", 60_000), None);
    }

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
        let now = now_ms();
        let session = |expires_at_ms, last_used_ms| CachedSession {
            user: user.clone(),
            expires_at_ms,
            last_used_ms,
            stored_last_used_ms: last_used_ms,
        };
        cache.insert("live".into(), session(now + 60_000, now));
        cache.insert("old".into(), session(now - 1, now));
        cache.insert("idle".into(), session(now + 60_000, now - 10_000));
        let live = |l: Lookup| matches!(l, Lookup::Live { .. });

        assert!(live(cache.use_session("live", 5_000)));
        assert!(matches!(cache.use_session("old", 5_000), Lookup::Ended));
        assert!(matches!(cache.use_session("idle", 5_000), Lookup::Ended));
        cache.remove("live");
        assert!(matches!(cache.use_session("live", 5_000), Lookup::NotCached));
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let (a, b) = (new_token(), new_token());

        assert!(csrf_matches(&a, &csrf_token(&a)));
        assert!(!csrf_matches(&a, &csrf_token(&b)));
        assert!(!csrf_matches(&a, ""));
        assert_ne!(csrf_token(&a), a);
    }
}
