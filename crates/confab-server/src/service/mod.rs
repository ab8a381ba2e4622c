//! The use cases: who may do what, validation, orchestration. The only place that decides
//! permissions. Services never see HTTP types; handlers in `api/` call one method each.
//!
//! Every method that takes a conversation id starts with [`Service::access_conversation`], the
//! single gate: a missing conversation and one the caller is not in are the same `NotFound`.

mod accounts;
mod conversations;
mod messages;
mod realtime;

use std::sync::Arc;
use std::time::Duration;

use crate::bus::Bus;
use crate::config::Config;
use crate::realtime::Hub;
use crate::realtime::typing::TypingState;
use crate::security::password::Passwords;
use crate::security::rate::{self, Key, Limit, RateConfig, RateLimits};
use crate::security::session::SessionCache;
use crate::store::{Membership, Store, StoreError};
use crate::time::now_ms;

pub use accounts::{AuthUser, skeleton};
pub use messages::HistoryQuery;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Also "exists, but you are not a participant".
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller can see the thing but lacks the right to do this to it.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Well-formed input with a value that breaks a rule (422).
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// Input that cannot be parsed (400).
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// Over a rate limit: retry after this many seconds.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    /// The server is shutting down (503).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ServiceError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> ServiceError {
        ServiceError::Invalid { field, reason: reason.into() }
    }

    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> ServiceError {
        ServiceError::RateLimited { message: message.into(), retry_after_secs }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ServiceError::NotFound,
            StoreError::Conflict(what) => ServiceError::Conflict(what.to_owned()),
            StoreError::Backend(e) => ServiceError::Internal(e),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Limits the services enforce, from [`Config`].
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_group_members: usize,
    pub session_ttl_ms: i64,
    /// A session unused for this long ends.
    pub session_idle_ms: i64,
    /// Most missed events a stream replays before answering `resync_required`.
    pub replay_limit: i64,
    pub event_retention_ms: i64,
}

impl From<&Config> for Limits {
    fn from(c: &Config) -> Limits {
        Limits {
            max_message_bytes: c.max_message_bytes,
            max_group_members: c.max_group_members,
            session_ttl_ms: c.session_ttl_ms,
            session_idle_ms: c.session_idle_ms,
            replay_limit: c.replay_limit,
            event_retention_ms: c.event_retention_ms,
        }
    }
}

pub struct Service {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    bus: Arc<Bus>,
    typing: TypingState,
    passwords: Passwords,
    sessions: SessionCache,
    rates: RateLimits,
    limits: Limits,
}

/// Who is calling, as far as accounts and rate limits care: never an HTTP type.
#[derive(Debug, Clone)]
pub struct ClientMeta {
    pub ip: std::net::IpAddr,
    pub user_agent: Option<String>,
}

impl Service {
    pub async fn new(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        bus: Arc<Bus>,
        limits: Limits,
        rates: &RateConfig,
    ) -> anyhow::Result<Service> {
        Ok(Service {
            store,
            hub,
            bus,
            typing: TypingState::default(),
            passwords: Passwords::new().await?,
            sessions: SessionCache::new(100_000),
            rates: RateLimits::new(rates),
            limits,
        })
    }

    /// Takes a token from `limit`'s bucket for `key`, or answers `RateLimited` with the wait.
    /// With Redis the bucket is the cluster's; if Redis fails, this node's own.
    pub async fn check_rate(&self, limit: Limit, key: Key) -> ServiceResult<()> {
        let Some(configured) = self.rates.rate(limit) else { return Ok(()) };
        let shared = match (self.bus.prefix(), self.bus.connection().await) {
            (Some(prefix), Some(mut conn)) => {
                match rate::shared::take(&mut conn, prefix, limit, configured, &key).await {
                    Ok(verdict) => Some(verdict),
                    Err(e) => {
                        tracing::warn!(error = %e, "shared rate limit unavailable; using this node's");
                        None
                    }
                }
            }
            _ => None,
        };
        let verdict = match shared {
            Some(verdict) => verdict,
            None => self.rates.check(limit, key),
        };
        verdict.map_err(|wait| {
            let what = match limit {
                Limit::Auth => "too many sign-in attempts from this address",
                Limit::Send => "too many messages",
                Limit::Typing => "too many typing notices",
                Limit::Connect => "too many connection attempts from this address",
                Limit::Read => "too many requests",
            };
            ServiceError::rate_limited(format!("{what}; slow down"), ceil_secs(wait))
        })
    }

    /// Whether `account` may try a password now (the back-off after wrong ones), cluster-wide
    /// with Redis.
    pub(crate) async fn login_allowed(&self, account: &str) -> Result<(), Duration> {
        if let (Some(prefix), Some(mut conn)) = (self.bus.prefix(), self.bus.connection().await)
            && let Ok(record) = rate::shared::login_failures(&mut conn, prefix, account).await
        {
            let Some((count, last_ms)) = record else { return Ok(()) };
            let wait = self.rates.logins().wait_after_failures(count);
            let elapsed = Duration::from_millis(now_ms().saturating_sub(last_ms).max(0) as u64);
            return match wait.checked_sub(elapsed) {
                Some(left) if !left.is_zero() => Err(left),
                _ => Ok(()),
            };
        }
        self.rates.logins().check(account)
    }

    pub(crate) async fn login_failed(&self, account: &str) {
        if let (Some(prefix), Some(mut conn)) = (self.bus.prefix(), self.bus.connection().await)
            && rate::shared::login_failed(&mut conn, prefix, account, now_ms()).await.is_ok()
        {
            return;
        }
        self.rates.logins().failed(account);
    }

    pub(crate) async fn login_succeeded(&self, account: &str) {
        if let (Some(prefix), Some(mut conn)) = (self.bus.prefix(), self.bus.connection().await) {
            let _ = rate::shared::login_succeeded(&mut conn, prefix, account).await;
        }
        self.rates.logins().succeeded(account);
    }

    pub(crate) fn sweep_rate_limits(&self) {
        self.rates.sweep();
    }

    /// Per-user limit on an expensive read (search, history pages).
    pub async fn check_read_rate(&self, user: &AuthUser) -> ServiceResult<()> {
        self.check_rate(Limit::Read, Key::User(user.id.clone())).await
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The gate: the caller's membership of `conversation_id`, or `NotFound`.
    pub async fn access_conversation(
        &self,
        user: &AuthUser,
        conversation_id: &str,
    ) -> ServiceResult<Membership> {
        if !plausible_id(conversation_id) {
            return Err(ServiceError::NotFound);
        }
        self.store.membership(conversation_id, &user.id).await?.ok_or(ServiceError::NotFound)
    }

    pub async fn close(&self) {
        self.store.close().await;
    }
}

/// Whole seconds to wait, at least one (`Retry-After` takes seconds).
pub(crate) fn ceil_secs(wait: std::time::Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

/// Ids are opaque to clients, but ours are short ASCII: anything else cannot exist, and
/// answering `NotFound` early keeps hostile ids away from the database.
pub(crate) fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A new opaque id: a UUIDv7 (time-ordered, so inserts append to indexes).
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
