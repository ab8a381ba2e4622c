//! Accounts and sessions: register, login, logout, authenticate, look up users.

use confab_proto::{AuthResponse, Me, UpdateMe, User};

use super::{Service, ServiceError, ServiceResult, new_id};
use crate::security::session::{CachedSession, new_token, token_hash};
use crate::store::{NewUser, StoreError};
use crate::time::now_ms;

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
    Ok(())
}

impl Service {
    pub async fn register(&self, username: &str, password: &str) -> ServiceResult<AuthResponse> {
        validate_username(username)?;
        validate_password(password)?;
        let password_hash = self.passwords.hash(password).await?;
        let user = self
            .store
            .insert_user(NewUser {
                id: new_id(),
                username: username.to_owned(),
                username_key: username.to_ascii_lowercase(),
                password_hash,
                created_at_ms: now_ms(),
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ServiceError::Conflict("username is taken".into()),
                other => other.into(),
            })?;
        self.start_session(user).await
    }

    pub async fn login(&self, username: &str, password: &str) -> ServiceResult<AuthResponse> {
        // Lengths outside the rules cannot match an account; still spend the hashing time so
        // that an attacker learns nothing from the answer's speed.
        let found = if username.len() <= 32 && password.len() <= 1024 {
            self.store.user_credentials(&username.to_ascii_lowercase()).await?
        } else {
            None
        };
        let password = if password.len() <= 1024 { password } else { "" };
        let ok = self
            .passwords
            .verify(password, found.as_ref().map(|c| c.password_hash.as_str()))
            .await?;
        match found {
            Some(creds) if ok => self.start_session(creds.user).await,
            _ => Err(ServiceError::Unauthenticated("wrong username or password")),
        }
    }

    async fn start_session(&self, user: User) -> ServiceResult<AuthResponse> {
        let token = new_token();
        let hash = token_hash(&token);
        let now = now_ms();
        let expires_at_ms = now + self.limits.session_ttl_ms;
        self.store.insert_session(&hash, &user.id, now, expires_at_ms).await?;
        self.sessions.insert(hash, CachedSession { user: user.clone(), expires_at_ms });
        Ok(AuthResponse { user, token })
    }

    /// The session lifetime, for the cookie's Max-Age.
    pub fn session_ttl_secs(&self) -> i64 {
        self.limits.session_ttl_ms / 1000
    }

    /// Resolves a bearer token or cookie value. Cached: no database round trip once warm.
    pub async fn authenticate(&self, token: &str, via_cookie: bool) -> ServiceResult<AuthUser> {
        const INVALID: ServiceError = ServiceError::Unauthenticated("invalid or expired session");
        if token.is_empty() || token.len() > 128 {
            return Err(INVALID);
        }
        let hash = token_hash(token);
        let session = match self.sessions.get(&hash) {
            Some(s) => s,
            None => {
                let record = self.store.session(&hash).await?.ok_or(INVALID)?;
                if record.expires_at_ms <= now_ms() {
                    return Err(INVALID);
                }
                let s = CachedSession { user: record.user, expires_at_ms: record.expires_at_ms };
                self.sessions.insert(hash.clone(), s.clone());
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

    /// Ends the session that authenticated `user`'s request; its token stops working at once.
    pub async fn logout(&self, user: &AuthUser) -> ServiceResult<()> {
        self.sessions.remove(&user.token_hash);
        self.store.delete_session(&user.token_hash).await?;
        Ok(())
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
    pub async fn search_users(&self, prefix: &str) -> ServiceResult<Vec<User>> {
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
    fn passwords_are_8_to_1024_bytes() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"x".repeat(1024)).is_ok());
        assert!(validate_password(&"x".repeat(1025)).is_err());
    }
}
