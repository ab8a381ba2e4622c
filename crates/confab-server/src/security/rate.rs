//! Rate limits: token buckets (GCRA, from `governor`) per IP and per user, and the per-account
//! back-off after wrong passwords.
//!
//! A refused call costs nothing but the check: the caller gets `retry_after` and the request
//! changes no state. Buckets live in this process; idle keys are dropped by [`RateLimits::sweep`].
//! With Redis (several nodes), the same buckets and the login back-off live in Redis instead
//! ([`shared`]), so a client cannot multiply its allowance by spreading over nodes; when
//! Redis cannot be reached, each node falls back to its own buckets.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// A rate as written in the configuration: `N/s`, `N/m` or `N/h` (N per second, minute or
/// hour, with bursts of N), optionally `,B` for bursts of B; or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
    pub burst: u32,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        let expected = || format!("expected N/s, N/m or N/h with an optional ,BURST; got {s:?}");
        let (rate, burst) = match s.split_once(',') {
            Some((rate, burst)) => (rate, Some(burst.trim())),
            None => (s, None),
        };
        let (count, unit) = rate.trim().split_once('/').ok_or_else(expected)?;
        let count: u32 = count.trim().parse().map_err(|_| expected())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(expected()),
        };
        let burst = match burst {
            Some(b) => b.parse().map_err(|_| expected())?,
            None => count,
        };
        if count == 0 || burst == 0 || count > 1_000_000 || burst > 1_000_000 {
            return Err(format!("{s:?}: counts must be between 1 and 1000000"));
        }
        Ok(Rate { count, per, burst })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit},{}", self.count, self.burst)
    }
}

/// Which bucket a call draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Register and login attempts, per client IP.
    Auth,
    /// Message sends and edits, per user.
    Send,
    /// Typing notices, per user.
    Typing,
    /// WebSocket, SSE and long-poll connection attempts, per client IP.
    Connect,
    /// Searches and history pages, per user.
    Read,
}

/// The configured rates; `None` turns a limit off.
#[derive(Debug, Clone)]
pub struct RateConfig {
    pub auth_per_ip: Option<Rate>,
    pub send_per_user: Option<Rate>,
    pub typing_per_user: Option<Rate>,
    pub connect_per_ip: Option<Rate>,
    pub read_per_user: Option<Rate>,
    /// Wrong passwords an account may take in a row before each attempt must wait.
    pub login_failures: u32,
}

impl Default for RateConfig {
    fn default() -> RateConfig {
        let rate = |count, per, burst| Some(Rate { count, per: Duration::from_secs(per), burst });
        RateConfig {
            auth_per_ip: rate(10, 1, 300),
            send_per_user: rate(50, 1, 500),
            typing_per_user: rate(5, 1, 20),
            connect_per_ip: rate(20, 1, 500),
            read_per_user: rate(50, 1, 500),
            login_failures: 5,
        }
    }
}

impl RateConfig {
    /// No limits at all (benchmarks drive the server far beyond any one person).
    pub fn off() -> RateConfig {
        RateConfig {
            auth_per_ip: None,
            send_per_user: None,
            typing_per_user: None,
            connect_per_ip: None,
            read_per_user: None,
            login_failures: 1000,
        }
    }
}

/// The key a bucket is kept under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Ip(IpAddr),
    User(String),
}

struct Bucket {
    limiter: DefaultKeyedRateLimiter<Key>,
}

impl Bucket {
    fn new(rate: Rate) -> Option<Bucket> {
        let period = rate.per / rate.count;
        let quota = Quota::with_period(period)?.allow_burst(NonZeroU32::new(rate.burst)?);
        Some(Bucket { limiter: DefaultKeyedRateLimiter::keyed(quota) })
    }
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Auth => "auth",
            Limit::Send => "send",
            Limit::Typing => "typing",
            Limit::Connect => "connect",
            Limit::Read => "read",
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Ip(ip) => write!(f, "ip:{ip}"),
            Key::User(id) => write!(f, "user:{id}"),
        }
    }
}

/// Every bucket of one server.
pub struct RateLimits {
    rates: HashMap<Limit, Rate>,
    buckets: HashMap<Limit, Bucket>,
    clock: DefaultClock,
    logins: LoginBackoff,
}

impl RateLimits {
    pub fn new(config: &RateConfig) -> RateLimits {
        let (mut buckets, mut rates) = (HashMap::new(), HashMap::new());
        for (limit, rate) in [
            (Limit::Auth, config.auth_per_ip),
            (Limit::Send, config.send_per_user),
            (Limit::Typing, config.typing_per_user),
            (Limit::Connect, config.connect_per_ip),
            (Limit::Read, config.read_per_user),
        ] {
            if let Some(bucket) = rate.and_then(Bucket::new) {
                buckets.insert(limit, bucket);
                rates.extend(rate.map(|r| (limit, r)));
            }
        }
        RateLimits {
            rates,
            buckets,
            clock: DefaultClock::default(),
            logins: LoginBackoff::new(config.login_failures),
        }
    }

    /// Takes one token for `key` from `limit`'s bucket, or answers how long to wait.
    pub fn check(&self, limit: Limit, key: Key) -> Result<(), Duration> {
        let Some(bucket) = self.buckets.get(&limit) else {
            return Ok(());
        };
        bucket.limiter.check_key(&key).map_err(|not_until| {
            not_until.wait_time_from(self.clock.now()).max(Duration::from_millis(1))
        })
    }

    /// The configured rate of `limit`, `None` when it is off.
    pub fn rate(&self, limit: Limit) -> Option<Rate> {
        self.rates.get(&limit).copied()
    }

    pub fn logins(&self) -> &LoginBackoff {
        &self.logins
    }

    /// Forgets keys whose buckets are full again, so memory follows the active clients.
    pub fn sweep(&self) {
        for bucket in self.buckets.values() {
            bucket.limiter.retain_recent();
            bucket.limiter.shrink_to_fit();
        }
        self.logins.sweep();
    }
}

/// After `free` wrong passwords in a row, an account's next login attempt must wait: 5 s,
/// then twice as long after each further failure, up to 15 minutes. A success or 15 quiet
/// minutes clear the count. Keyed by account, whatever the IP, so spreading guesses over many
/// addresses does not help; the cost is that anyone can slow logins to an account for a while,
/// never lock it for good.
pub struct LoginBackoff {
    free: u32,
    // std Mutex: held for a map lookup or update only, never across an .await.
    failures: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

impl LoginBackoff {
    fn new(free: u32) -> LoginBackoff {
        LoginBackoff { free, failures: Mutex::new(HashMap::new()) }
    }

    fn wait_after(&self, f: Failures) -> Duration {
        self.wait_after_failures(f.count)
    }

    /// How long after the last of `count` failures in a row the next attempt must wait.
    pub fn wait_after_failures(&self, count: u32) -> Duration {
        if count < self.free {
            return Duration::ZERO;
        }
        let doublings = (count - self.free).min(10);
        (BACKOFF_BASE * 2u32.pow(doublings)).min(BACKOFF_MAX)
    }

    /// Whether `account` may try a password now, or how long it must wait.
    pub fn check(&self, account: &str) -> Result<(), Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(f) = failures.get(account).copied() else {
            return Ok(());
        };
        let elapsed = f.last.elapsed();
        match self.wait_after(f).checked_sub(elapsed) {
            Some(wait) if !wait.is_zero() => Err(wait),
            _ => Ok(()),
        }
    }

    pub fn failed(&self, account: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = failures
            .entry(account.to_owned())
            .or_insert(Failures { count: 0, last: Instant::now() });
        if entry.last.elapsed() > BACKOFF_MAX {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = Instant::now();
    }

    pub fn succeeded(&self, account: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(account);
    }

    fn sweep(&self) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.retain(|_, f| f.last.elapsed() <= BACKOFF_MAX);
    }
}

/// The buckets and the login back-off in Redis, shared by every node of a cluster. Keys are
/// `<prefix>:rate:<limit>:<key>` and `<prefix>:login:<account>`; each expires when it no
/// longer matters.
pub mod shared {
    use std::sync::LazyLock;
    use std::time::Duration;

    use redis::aio::ConnectionManager;

    use super::{BACKOFF_MAX, Key, Limit, Rate};

    /// GCRA, the algorithm `governor` runs locally, on Redis's clock. KEYS[1] holds the
    /// bucket's theoretical arrival time in milliseconds; ARGV[1] is the interval between
    /// tokens (ms) and ARGV[2] the burst. Answers 0 (a token was taken) or the milliseconds to
    /// wait.
    static GCRA: LazyLock<redis::Script> = LazyLock::new(|| {
        redis::Script::new(
            r"
            local t = redis.call('TIME')
            local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
            local interval = tonumber(ARGV[1])
            local tolerance = interval * (tonumber(ARGV[2]) - 1)
            local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
            if tat < now then tat = now end
            if now < tat - tolerance then
                return math.max(1, math.ceil(tat - tolerance - now))
            end
            local next = tat + interval
            redis.call('SET', KEYS[1], string.format('%.3f', next), 'PX', math.ceil(next - now) + 1)
            return 0
            ",
        )
    });

    /// Takes a token for `key` from the cluster's `limit` bucket, or answers how long to wait.
    pub async fn take(
        conn: &mut ConnectionManager,
        prefix: &str,
        limit: Limit,
        rate: Rate,
        key: &Key,
    ) -> redis::RedisResult<Result<(), Duration>> {
        let interval_ms = rate.per.as_secs_f64() * 1000.0 / f64::from(rate.count);
        let wait_ms: u64 = GCRA
            .key(format!("{prefix}:rate:{}:{key}", limit.name()))
            .arg(interval_ms)
            .arg(rate.burst)
            .invoke_async(conn)
            .await?;
        Ok(if wait_ms == 0 { Ok(()) } else { Err(Duration::from_millis(wait_ms)) })
    }

    fn login_key(prefix: &str, account: &str) -> String {
        format!("{prefix}:login:{account}")
    }

    /// Wrong passwords in a row for `account` and when the last one was (unix ms).
    pub async fn login_failures(
        conn: &mut ConnectionManager,
        prefix: &str,
        account: &str,
    ) -> redis::RedisResult<Option<(u32, i64)>> {
        let (count, last): (Option<u32>, Option<i64>) = redis::cmd("HMGET")
            .arg(login_key(prefix, account))
            .arg("count")
            .arg("last")
            .query_async(conn)
            .await?;
        Ok(count.zip(last))
    }

    /// Counts one more wrong password; the record goes after 15 quiet minutes.
    pub async fn login_failed(
        conn: &mut ConnectionManager,
        prefix: &str,
        account: &str,
        now_ms: i64,
    ) -> redis::RedisResult<()> {
        let key = login_key(prefix, account);
        redis::pipe()
            .atomic()
            .cmd("HINCRBY")
            .arg(&key)
            .arg("count")
            .arg(1)
            .ignore()
            .cmd("HSET")
            .arg(&key)
            .arg("last")
            .arg(now_ms)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(BACKOFF_MAX.as_millis() as i64)
            .ignore()
            .query_async(conn)
            .await
    }

    pub async fn login_succeeded(
        conn: &mut ConnectionManager,
        prefix: &str,
        account: &str,
    ) -> redis::RedisResult<()> {
        redis::cmd("DEL").arg(login_key(prefix, account)).query_async(conn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_and_without_bursts() {
        assert_eq!(
            "10/s".parse::<Rate>(),
            Ok(Rate { count: 10, per: Duration::from_secs(1), burst: 10 })
        );
        assert_eq!(
            "30/m,100".parse::<Rate>(),
            Ok(Rate { count: 30, per: Duration::from_secs(60), burst: 100 })
        );
        for bad in ["", "10", "10/d", "0/s", "x/s", "10/s,0", "10/s,"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        let rate: Rate = "30/m,100".parse().expect("valid");
        assert_eq!(rate.to_string().parse::<Rate>(), Ok(rate));
    }

    #[test]
    fn a_bucket_refuses_past_its_burst_and_keys_are_separate() {
        let limits = RateLimits::new(&RateConfig {
            send_per_user: Some("1/h,3".parse().expect("valid")),
            ..RateConfig::default()
        });
        let alice = || Key::User("alice".into());

        for _ in 0..3 {
            assert_eq!(limits.check(Limit::Send, alice()), Ok(()));
        }
        let wait = limits.check(Limit::Send, alice()).expect_err("over the burst");
        assert!(wait > Duration::from_secs(1000), "{wait:?}");
        assert_eq!(limits.check(Limit::Send, Key::User("bob".into())), Ok(()));
    }

    #[test]
    fn wrong_passwords_back_off_after_the_free_ones_and_success_clears() {
        let backoff = LoginBackoff::new(5);
        for _ in 0..5 {
            assert_eq!(backoff.check("alice"), Ok(()));
            backoff.failed("alice");
        }
        let wait = backoff.check("alice").expect_err("sixth attempt waits");
        assert!(wait <= BACKOFF_BASE && wait > Duration::ZERO);
        assert_eq!(backoff.check("bob"), Ok(()));

        backoff.succeeded("alice");
        assert_eq!(backoff.check("alice"), Ok(()));
    }
}
