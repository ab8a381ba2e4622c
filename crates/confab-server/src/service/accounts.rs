//! Accounts and sessions: register, login, logout, authenticate, look up users.

use confab_proto::{AuthResponse, Me, SessionInfo, UpdateMe, User};

use super::{ClientMeta, Service, ServiceError, ServiceResult, ceil_secs, new_id, plausible_id};
use crate::security::rate::{Key, Limit};
use crate::security::session::{CachedSession, Lookup, csrf_token, new_token, token_hash};
use crate::store::{NewSession, NewUser, StoreError};
use crate::time::{from_ms, now_ms};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: String,
    pub username: String,
    /// Which session authenticated the request (logout ends this one).
    pub token_hash: String,
    /// Authenticated by the browser's session cookie rather than a bearer header: such
    /// requests need cross-site protection (Origin checks on WebSocket upgrades).
    pub via_cookie: bool,
}

/// At most this many users per search.
const SEARCH_LIMIT: i64 = 20;

/// 3-32 characters of `[A-Za-z0-9_.-]`; case is kept for display but ignored for uniqueness.
fn validate_username(username: &str) -> ServiceResult<()> {
    if !(3..=32).contains(&username.len()) {
        return Err(ServiceError::invalid("username", "must be 3-32 characters"));
    }
    if !username.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(ServiceError::invalid(
            "username",
            "may contain only letters a-z, digits, '_', '.' and '-'",
        ));
    }
    Ok(())
}

fn validate_password(password: &str) -> ServiceResult<()> {
    if !(8..=1024).contains(&password.len()) {
        return Err(ServiceError::invalid("password", "must be 8-1024 bytes"));
    }
    if password.contains('\0') {
        return Err(ServiceError::invalid("password", "must not contain NUL characters"));
    }
    Ok(())
}

/// The username with look-alike characters folded together, lowercase: two usernames with the
/// same skeleton (`alice` / `AL1CE`, `bob.smith` / `bob_smith`, `modern` / `rnodern`) would be
/// mistaken for each other, so the second is refused. Must match the SQL expression in the
/// migration `0006_username_skeleton.sql` (SQLite and PostgreSQL). Pairs fold towards the
/// longer form (`m` to `rn`, `w` to `vv`): folding `vv` to `w` from the left made `vwx` and
/// `vvvx` (both "vvvx" to the eye) differ.
pub fn skeleton(username: &str) -> String {
    username
        .to_ascii_lowercase()
        .replace('0', "o")
        .replace(['1', 'i'], "l")
        .replace('m', "rn")
        .replace('w', "vv")
        .replace(['-', '.'], "_")
}

/// Keeps what a person needs to recognise a session in a list; the rest is dropped.
fn short_user_agent(user_agent: Option<&str>) -> Option<String> {
    let ua: String = user_agent?.chars().filter(|c| !c.is_control()).take(200).collect();
    (!ua.is_empty()).then_some(ua)
}

impl Service {
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        client: &ClientMeta,
    ) -> ServiceResult<AuthResponse> {
        self.check_rate(Limit::Auth, Key::Ip(client.ip)).await?;
        validate_username(username)?;
        validate_password(password)?;
        let password_hash = self.passwords.hash(password).await?;
        let user = self
            .store
            .insert_user(NewUser {
                id: new_id(),
                username: username.to_owned(),
                username_key: username.to_ascii_lowercase(),
                username_skeleton: skeleton(username),
                password_hash,
                created_at_ms: now_ms(),
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ServiceError::Conflict(
                    "username is taken, or too similar to an existing one".into(),
                ),
                other => other.into(),
            })?;
        self.start_session(user, client).await
    }

    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: &ClientMeta,
    ) -> ServiceResult<AuthResponse> {
        self.check_rate(Limit::Auth, Key::Ip(client.ip)).await?;
        let account = username.to_ascii_lowercase();
        self.login_allowed(&account).await.map_err(|wait| {
            ServiceError::rate_limited(
                "too many wrong passwords for this account; wait before trying again",
                ceil_secs(wait),
            )
        })?;
        // Lengths outside the rules cannot match an account; still spend the hashing time so
        // that an attacker learns nothing from the answer's speed.
        let found = if username.len() <= 32 && password.len() <= 1024 {
            self.store.user_credentials(&account).await?
        } else {
            None
        };
        let password = if password.len() <= 1024 { password } else { "" };
        let ok = self
            .passwords
            .verify(password, found.as_ref().map(|c| c.password_hash.as_str()))
            .await?;
        match found {
            Some(creds) if ok => {
                self.login_succeeded(&account).await;
                self.start_session(creds.user, client).await
            }
            _ => {
                self.login_failed(&account).await;
                Err(ServiceError::Unauthenticated("wrong username or password"))
            }
        }
    }

    async fn start_session(&self, user: User, client: &ClientMeta) -> ServiceResult<AuthResponse> {
        let token = new_token();
        let hash = token_hash(&token);
        let now = now_ms();
        let expires_at_ms = now + self.limits.session_ttl_ms;
        self.store
            .insert_session(NewSession {
                id: new_id().replace('-', ""),
                token_hash: hash.clone(),
                user_id: user.id.clone(),
                created_at_ms: now,
                expires_at_ms,
                user_agent: short_user_agent(client.user_agent.as_deref()),
                ip: Some(client.ip.to_string()),
            })
            .await?;
        let cached = CachedSession {
            user: user.clone(),
            expires_at_ms,
            last_used_ms: now,
            stored_last_used_ms: now,
        };
        self.sessions.insert(hash, cached);
        let csrf_token = csrf_token(&token);
        Ok(AuthResponse { user, token, csrf_token })
    }

    /// How often an open stream checks [`Service::session_stands`]: every 20 s, or a quarter
    /// of the idle timeout when that is shorter (as in tests).
    pub fn session_check_every(&self) -> std::time::Duration {
        let quarter = u64::try_from(self.limits.session_idle_ms / 4).unwrap_or(0);
        std::time::Duration::from_millis(quarter.clamp(100, 20_000))
    }

    /// The session lifetime, for the cookie's Max-Age.
    pub fn session_ttl_secs(&self) -> i64 {
        self.limits.session_ttl_ms / 1000
    }

    /// Resolves a bearer token or cookie value. Cached: no database round trip once warm; the
    /// last use is written at most once a minute per session.
    pub async fn authenticate(&self, token: &str, via_cookie: bool) -> ServiceResult<AuthUser> {
        const INVALID: ServiceError = ServiceError::Unauthenticated("invalid or expired session");
        if token.is_empty() || token.len() > 128 {
            return Err(INVALID);
        }
        let hash = token_hash(token);
        let idle = self.limits.session_idle_ms;
        let session = match self.sessions.use_session(&hash, idle) {
            Lookup::Live { session, store_last_used } => {
                // Once a minute the database confirms the session still exists, so a sign-out
                // whose bus message was lost still takes effect here within a minute.
                if store_last_used && !self.store.touch_session(&hash, session.last_used_ms).await?
                {
                    self.sessions.remove(&hash);
                    return Err(INVALID);
                }
                session
            }
            Lookup::Ended => {
                self.store.delete_session(&hash).await?;
                return Err(INVALID);
            }
            Lookup::NotCached => {
                // A sign-out deletes the row, then drops the cached session. A read that
                // overlapped it may have seen the row: it is cached only if nothing was
                // dropped meanwhile, and read again otherwise.
                let removals = self.sessions.removals();
                let s = self.stored_session(&hash).await?.ok_or(INVALID)?;
                if !self.sessions.insert_unless_removed_since(removals, hash.clone(), s.clone()) {
                    let again = self.stored_session(&hash).await?.ok_or(INVALID)?;
                    self.sessions.insert(hash.clone(), again);
                }
                s
            }
        };
        Ok(AuthUser {
            id: session.user.id,
            username: session.user.username,
            token_hash: hash,
            via_cookie,
        })
    }

    /// Ends the session that authenticated `user`'s request; its token stops working at once
    /// and its live connections close.
    pub async fn logout(&self, user: &AuthUser) -> ServiceResult<()> {
        // The row first, then the cache and the connections: a request that misses the cache
        // in between finds no row, and a stream opened in between is closed by the second step
        // or finds no session when it checks after subscribing (`open_feed`).
        self.store.delete_session(&user.token_hash).await?;
        self.end_sessions(&user.id, std::slice::from_ref(&user.token_hash));
        Ok(())
    }

    /// The stored session for `hash`, if it is still live (an expired or idle one is deleted).
    async fn stored_session(&self, hash: &str) -> ServiceResult<Option<CachedSession>> {
        let Some(record) = self.store.session(hash).await? else { return Ok(None) };
        let now = now_ms();
        if record.expires_at_ms <= now || now - record.last_used_at_ms > self.limits.session_idle_ms
        {
            self.store.delete_session(hash).await?;
            return Ok(None);
        }
        Ok(Some(CachedSession {
            user: record.user,
            expires_at_ms: record.expires_at_ms,
            last_used_ms: now,
            stored_last_used_ms: record.last_used_at_ms,
        }))
    }

    /// Whether the session `hash` still stands: not signed out, expired or idle too long. For
    /// open streams, which check it now and then; not a use of the session.
    pub async fn session_stands(&self, hash: &str) -> ServiceResult<bool> {
        if let Some(live) = self.sessions.is_current(hash, self.limits.session_idle_ms) {
            return Ok(live);
        }
        Ok(self.stored_session(hash).await?.is_some())
    }

    fn end_sessions(&self, user_id: &str, hashes: &[String]) {
        for hash in hashes {
            self.sessions.remove(hash);
        }
        self.bus.revoke_sessions(user_id, hashes);
    }

    /// Drops sessions from this node's cache (they were revoked, here or on another node).
    pub(crate) fn forget_sessions(&self, hashes: &[String]) {
        for hash in hashes {
            self.sessions.remove(hash);
        }
    }

    /// The caller's sessions, most recently used first.
    pub async fn sessions(&self, user: &AuthUser) -> ServiceResult<Vec<SessionInfo>> {
        let now = now_ms();
        let idle = self.limits.session_idle_ms;
        Ok(self
            .store
            .sessions_of(&user.id)
            .await?
            .into_iter()
            .filter(|s| s.expires_at_ms > now && now - s.last_used_at_ms <= idle)
            .map(|s| SessionInfo {
                current: s.token_hash == user.token_hash,
                id: s.id,
                created_at: from_ms(s.created_at_ms),
                last_used_at: from_ms(s.last_used_at_ms),
                expires_at: from_ms(s.expires_at_ms),
                user_agent: s.user_agent,
                ip: s.ip,
            })
            .collect())
    }

    /// Signs out the caller's session `id` (possibly the current one).
    pub async fn revoke_session(&self, user: &AuthUser, id: &str) -> ServiceResult<()> {
        if !plausible_id(id) {
            return Err(ServiceError::NotFound);
        }
        let hash =
            self.store.delete_session_by_id(&user.id, id).await?.ok_or(ServiceError::NotFound)?;
        self.end_sessions(&user.id, &[hash]);
        Ok(())
    }

    /// Signs out every session of the caller but the current one.
    pub async fn revoke_other_sessions(&self, user: &AuthUser) -> ServiceResult<u64> {
        let hashes = self.store.delete_other_sessions(&user.id, &user.token_hash).await?;
        self.end_sessions(&user.id, &hashes);
        Ok(hashes.len() as u64)
    }

    /// Changes the caller's password after checking the current one; every other session is
    /// signed out.
    pub async fn change_password(
        &self,
        user: &AuthUser,
        current: &str,
        new: &str,
    ) -> ServiceResult<()> {
        let account = user.username.to_ascii_lowercase();
        self.login_allowed(&account).await.map_err(|wait| {
            ServiceError::rate_limited("too many wrong passwords; wait", ceil_secs(wait))
        })?;
        validate_password(new)?;
        let creds = self
            .store
            .user_credentials(&account)
            .await?
            .ok_or(ServiceError::Unauthenticated("the account no longer exists"))?;
        let current = if current.len() <= 1024 { current } else { "" };
        if !self.passwords.verify(current, Some(&creds.password_hash)).await? {
            self.login_failed(&account).await;
            return Err(ServiceError::Forbidden("the current password is wrong"));
        }
        let hash = self.passwords.hash(new).await?;
        self.store.set_password_hash(&user.id, &hash).await?;
        self.revoke_other_sessions(user).await?;
        Ok(())
    }

    /// Deletes expired and idle sessions from the database.
    pub async fn prune_sessions(&self) -> ServiceResult<u64> {
        let now = now_ms();
        Ok(self.store.delete_stale_sessions(now, now - self.limits.session_idle_ms).await?)
    }

    pub async fn me(&self, user: &AuthUser) -> ServiceResult<Me> {
        self.store
            .me(&user.id)
            .await?
            .ok_or(ServiceError::Unauthenticated("the account no longer exists"))
    }

    /// Changes the caller's settings; absent fields stay as they are.
    pub async fn update_me(&self, user: &AuthUser, changes: UpdateMe) -> ServiceResult<Me> {
        if let Some(share) = changes.share_read_receipts {
            self.store.set_share_read_receipts(&user.id, share).await?;
        }
        self.me(user).await
    }

    /// Users whose name starts with `prefix`, ignoring case. Characters that cannot be in a
    /// username match nobody.
    pub async fn search_users(&self, user: &AuthUser, prefix: &str) -> ServiceResult<Vec<User>> {
        self.check_read_rate(user).await?;
        let key = prefix.trim().to_ascii_lowercase();
        if key.is_empty()
            || key.len() > 32
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Ok(Vec::new());
        }
        Ok(self.store.users_by_prefix(&key, SEARCH_LIMIT).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_rules() {
        for ok in ["abc", "Alice", "a.b-c_d", "x23456789012345678901234567890yz"] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "", "with space", "émile", "a/b", "x234567890123456789012345678901yz"] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn look_alike_usernames_share_a_skeleton() {
        assert_eq!(skeleton("Alice"), skeleton("AL1CE"));
        assert_eq!(skeleton("bob.smith"), skeleton("bob_smith"));
        assert_eq!(skeleton("modern"), skeleton("rnodern"));
        assert_eq!(skeleton("b0b"), skeleton("bob"));
        // However the v's and w's line up.
        assert_eq!(skeleton("vwx"), skeleton("vvvx"));
        assert_eq!(skeleton("xwv"), skeleton("xvw"));
        assert_eq!(skeleton("wvw"), skeleton("vvvvv"));
        assert_eq!(skeleton("rnm"), skeleton("mrn"));
        assert_ne!(skeleton("alice"), skeleton("alicia"));
    }

    #[test]
    fn passwords_are_8_to_1024_bytes() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"x".repeat(1024)).is_ok());
        assert!(validate_password(&"x".repeat(1025)).is_err());
    }
}
