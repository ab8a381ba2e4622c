//! Configuration: CLI flag > `CONFAB_*` environment variable > TOML file > default.
//!
//! clap reads flags and environment variables; the optional TOML file (`--config`) fills what
//! neither set. Everything is validated once, at startup, with errors that name the option.
//! There is no global config: two differently configured servers can run in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use serde::Deserialize;

use crate::security::crypto::Keyring;
use crate::security::rate::{Rate, RateConfig};
use crate::store::postgres::is_postgres_url;

#[derive(Debug, Parser)]
#[command(name = "confab", version, about = "Confab: a self-hostable private messaging server")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `confab serve`, which is what `confab` alone runs.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Encryption keys for message content at rest.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random key (32 bytes, base64) for CONFAB_ENCRYPTION_KEY.
    Generate,
    /// Re-encrypt every stored message under the current key (CONFAB_ENCRYPTION_KEY), reading
    /// old ones with the retired keys. Safe while the server runs: it works in small
    /// transactions. Plain text stored before encryption was enabled is encrypted too.
    Rotate(Box<ServeArgs>),
}

/// Every option is also a `CONFAB_*` environment variable and a key of the TOML file.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "CONFAB_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Folder for the SQLite database and other local data [default: ./data]
    #[arg(long, env = "CONFAB_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH, or postgres://USER@HOST/DB for several nodes sharing one
    /// database [default: SQLite at <data-dir>/confab.db]
    #[arg(long, env = "CONFAB_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Most PostgreSQL read connections of this node (its writer has one more) [default: 10]
    #[arg(long, env = "CONFAB_DATABASE_MAX_CONNECTIONS", value_name = "N")]
    pub database_max_connections: Option<u32>,
    /// Redis URL for cross-node fan-out [default: none, in-process bus]
    #[arg(long, env = "CONFAB_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// Prefix of this cluster's Redis keys and channel, so clusters can share a Redis
    /// [default: confab]
    #[arg(long, env = "CONFAB_REDIS_PREFIX", value_name = "PREFIX")]
    pub redis_prefix: Option<String>,
    /// Optional TOML file with any of these options (keys in snake_case)
    #[arg(long, env = "CONFAB_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Largest message content in bytes of UTF-8 [default: 16384]
    #[arg(long, env = "CONFAB_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Most members a group may have, its creator included [default: 256]
    #[arg(long, env = "CONFAB_MAX_GROUP_MEMBERS", value_name = "N")]
    pub max_group_members: Option<usize>,
    /// How long a login session lasts, in days [default: 30]
    #[arg(long, env = "CONFAB_SESSION_DAYS", value_name = "DAYS")]
    pub session_days: Option<u32>,
    /// SQLite durability: `full` (an acknowledged write survives power loss) or `normal`
    /// (survives a crash of the process, not of the machine) [default: full]
    #[arg(long, env = "CONFAB_SQLITE_SYNC", value_name = "MODE")]
    pub sqlite_sync: Option<String>,
    /// Most open real-time connections (sockets, streams, polls) per user [default: 32]
    #[arg(long, env = "CONFAB_MAX_CONNECTIONS_PER_USER", value_name = "N")]
    pub max_connections_per_user: Option<usize>,
    /// Frames waiting for one connection before it counts as too slow and is cut [default: 1024]
    #[arg(long, env = "CONFAB_CONNECTION_QUEUE", value_name = "FRAMES")]
    pub connection_queue: Option<usize>,
    /// How long a user stays online after their last connection closed, in ms [default: 5000]
    #[arg(long, env = "CONFAB_PRESENCE_GRACE_MS", value_name = "MS")]
    pub presence_grace_ms: Option<u64>,
    /// Most missed events replayed on resume before asking the client to re-sync [default: 10000]
    #[arg(long, env = "CONFAB_REPLAY_LIMIT", value_name = "EVENTS")]
    pub replay_limit: Option<i64>,
    /// Days the event log is kept for resuming clients [default: 30]
    #[arg(long, env = "CONFAB_EVENT_RETENTION_DAYS", value_name = "DAYS")]
    pub event_retention_days: Option<u32>,
    /// On SIGTERM, how long to keep answering new requests with 503 before closing the
    /// listener, in ms, so requests already on their way get an answer [default: 500]
    #[arg(long, env = "CONFAB_SHUTDOWN_DRAIN_MS", value_name = "MS")]
    pub shutdown_drain_ms: Option<u64>,
    /// Log format: `text` or `json` [default: text]; the level comes from CONFAB_LOG or RUST_LOG
    #[arg(long, env = "CONFAB_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// A session unused for this many minutes ends [default: 20160, two weeks]
    #[arg(long, env = "CONFAB_SESSION_IDLE_MINUTES", value_name = "MINUTES")]
    pub session_idle_minutes: Option<u32>,
    /// PEM certificate chain: serve HTTPS and WSS (HTTP/1.1 and HTTP/2) with this and --tls-key
    #[arg(long, env = "CONFAB_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, env = "CONFAB_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Proxies (IPs or CIDR networks, comma-separated) whose X-Forwarded-For and
    /// X-Forwarded-Proto are believed [default: none]
    #[arg(long, env = "CONFAB_TRUSTED_PROXIES", value_name = "NETS")]
    pub trusted_proxies: Option<String>,
    /// Key that encrypts message content at rest: 32 bytes, base64 (`confab keys generate`).
    /// Prefer the environment variable or --encryption-key-file to a flag [default: none,
    /// content stored as plain text]
    #[arg(long, env = "CONFAB_ENCRYPTION_KEY", value_name = "BASE64", hide_env_values = true)]
    pub encryption_key: Option<String>,
    /// Retired keys (comma-separated), which only decrypt, during a rotation
    #[arg(
        long,
        env = "CONFAB_ENCRYPTION_RETIRED_KEYS",
        value_name = "BASE64,…",
        hide_env_values = true
    )]
    pub encryption_retired_keys: Option<String>,
    /// File holding the encryption key on its first line and retired keys on the next ones
    #[arg(
        long,
        env = "CONFAB_ENCRYPTION_KEY_FILE",
        value_name = "FILE",
        conflicts_with = "encryption_key"
    )]
    pub encryption_key_file: Option<PathBuf>,
    /// Register and login attempts per client IP: N/s, N/m or N/h, optional ,BURST; or `off`
    /// [default: 10/s,300]
    #[arg(long, env = "CONFAB_LIMIT_AUTH", value_name = "RATE")]
    pub limit_auth: Option<String>,
    /// Message sends and edits per user [default: 50/s,500]
    #[arg(long, env = "CONFAB_LIMIT_SEND", value_name = "RATE")]
    pub limit_send: Option<String>,
    /// Typing notices per user [default: 5/s,20]
    #[arg(long, env = "CONFAB_LIMIT_TYPING", value_name = "RATE")]
    pub limit_typing: Option<String>,
    /// WebSocket, SSE and long-poll connection attempts per client IP [default: 20/s,500]
    #[arg(long, env = "CONFAB_LIMIT_CONNECT", value_name = "RATE")]
    pub limit_connect: Option<String>,
    /// History pages and user searches per user [default: 50/s,500]
    #[arg(long, env = "CONFAB_LIMIT_READ", value_name = "RATE")]
    pub limit_read: Option<String>,
    /// Wrong passwords in a row before an account's logins back off (5 s, doubling up to
    /// 15 min) [default: 5]
    #[arg(long, env = "CONFAB_LOGIN_FAILURES", value_name = "N")]
    pub login_failures: Option<u32>,
}

impl ServeArgs {
    /// Fills every option left unset here from `file`.
    fn or(self, file: ServeArgs) -> ServeArgs {
        ServeArgs {
            listen: self.listen.or(file.listen),
            data_dir: self.data_dir.or(file.data_dir),
            database_url: self.database_url.or(file.database_url),
            database_max_connections: self
                .database_max_connections
                .or(file.database_max_connections),
            redis_url: self.redis_url.or(file.redis_url),
            redis_prefix: self.redis_prefix.or(file.redis_prefix),
            config: self.config,
            max_message_bytes: self.max_message_bytes.or(file.max_message_bytes),
            max_group_members: self.max_group_members.or(file.max_group_members),
            session_days: self.session_days.or(file.session_days),
            sqlite_sync: self.sqlite_sync.or(file.sqlite_sync),
            max_connections_per_user: self
                .max_connections_per_user
                .or(file.max_connections_per_user),
            connection_queue: self.connection_queue.or(file.connection_queue),
            presence_grace_ms: self.presence_grace_ms.or(file.presence_grace_ms),
            replay_limit: self.replay_limit.or(file.replay_limit),
            event_retention_days: self.event_retention_days.or(file.event_retention_days),
            shutdown_drain_ms: self.shutdown_drain_ms.or(file.shutdown_drain_ms),
            log_format: self.log_format.or(file.log_format),
            session_idle_minutes: self.session_idle_minutes.or(file.session_idle_minutes),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            trusted_proxies: self.trusted_proxies.or(file.trusted_proxies),
            encryption_key: self.encryption_key.or(file.encryption_key),
            encryption_retired_keys: self.encryption_retired_keys.or(file.encryption_retired_keys),
            encryption_key_file: self.encryption_key_file.or(file.encryption_key_file),
            limit_auth: self.limit_auth.or(file.limit_auth),
            limit_send: self.limit_send.or(file.limit_send),
            limit_typing: self.limit_typing.or(file.limit_typing),
            limit_connect: self.limit_connect.or(file.limit_connect),
            limit_read: self.limit_read.or(file.limit_read),
            login_failures: self.login_failures.or(file.login_failures),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration of one server.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite://…` (the default, in `data_dir`) or `postgres://…`.
    pub database_url: String,
    /// The PostgreSQL read pool's size.
    pub database_max_connections: u32,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub max_message_bytes: usize,
    pub max_group_members: usize,
    pub session_ttl_ms: i64,
    /// `synchronous=FULL` (true) or `NORMAL` for SQLite.
    pub sqlite_sync_full: bool,
    pub max_connections_per_user: usize,
    pub connection_queue: usize,
    pub presence_grace_ms: u64,
    pub replay_limit: i64,
    pub event_retention_ms: i64,
    pub shutdown_drain_ms: u64,
    pub log_format: LogFormat,
    pub session_idle_ms: i64,
    /// Certificate chain and key files: serve TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub trusted_proxies: Vec<IpNet>,
    /// Encrypts message content at rest when set.
    pub keyring: Option<Arc<Keyring>>,
    pub rates: RateConfig,
}

impl Config {
    /// Merges the flags and environment with the TOML file they name, then validates.
    pub fn from_args(args: ServeArgs) -> anyhow::Result<Config> {
        let args = match &args.config {
            Some(path) => {
                let file = read_file(path)?;
                args.or(file)
            }
            None => args,
        };
        Config::validate(args)
    }

    fn validate(args: ServeArgs) -> anyhow::Result<Config> {
        let data_dir = args.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        let database_url = match args.database_url {
            Some(url) if url.starts_with("sqlite:") || is_postgres_url(&url) => url,
            Some(url) => bail!(
                "--database-url: unsupported scheme in {url:?}; expected sqlite:, postgres: or \
                 postgresql: URLs"
            ),
            None => format!("sqlite://{}", data_dir.join("confab.db").display()),
        };
        if let Some(url) = &args.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            bail!("--redis-url: expected a redis:// or rediss:// URL, got {url:?}");
        }
        let database_max_connections = args.database_max_connections.unwrap_or(10);
        if !(1..=1000).contains(&database_max_connections) {
            bail!("--database-max-connections: expected 1 to 1000");
        }
        let redis_prefix = args.redis_prefix.unwrap_or_else(|| "confab".to_owned());
        if redis_prefix.is_empty()
            || redis_prefix.len() > 64
            || !redis_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-:.".contains(&b))
        {
            bail!("--redis-prefix: 1-64 characters of letters, digits, '_', '-', ':' or '.'");
        }
        let max_message_bytes = args.max_message_bytes.unwrap_or(16 * 1024);
        if !(1..=1024 * 1024).contains(&max_message_bytes) {
            bail!("--max-message-bytes: must be between 1 and 1048576");
        }
        let max_group_members = args.max_group_members.unwrap_or(256);
        if !(2..=100_000).contains(&max_group_members) {
            bail!("--max-group-members: must be between 2 and 100000");
        }
        let session_days = args.session_days.unwrap_or(30);
        if !(1..=3650).contains(&session_days) {
            bail!("--session-days: must be between 1 and 3650");
        }
        let sqlite_sync_full = match args.sqlite_sync.as_deref().unwrap_or("full") {
            "full" => true,
            "normal" => false,
            other => bail!("--sqlite-sync: expected `full` or `normal`, got {other:?}"),
        };
        let max_connections_per_user = args.max_connections_per_user.unwrap_or(32);
        if !(1..=10_000).contains(&max_connections_per_user) {
            bail!("--max-connections-per-user: must be between 1 and 10000");
        }
        let connection_queue = args.connection_queue.unwrap_or(1024);
        if !(1..=1_000_000).contains(&connection_queue) {
            bail!("--connection-queue: must be between 1 and 1000000");
        }
        let presence_grace_ms = args.presence_grace_ms.unwrap_or(5000);
        if presence_grace_ms > 3_600_000 {
            bail!("--presence-grace-ms: must be at most 3600000");
        }
        let replay_limit = args.replay_limit.unwrap_or(10_000);
        if !(1..=10_000_000).contains(&replay_limit) {
            bail!("--replay-limit: must be between 1 and 10000000");
        }
        let event_retention_days = args.event_retention_days.unwrap_or(30);
        if !(1..=3650).contains(&event_retention_days) {
            bail!("--event-retention-days: must be between 1 and 3650");
        }
        let shutdown_drain_ms = args.shutdown_drain_ms.unwrap_or(500);
        if shutdown_drain_ms > 60_000 {
            bail!("--shutdown-drain-ms: must be at most 60000");
        }
        let log_format = match args.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("--log-format: expected `text` or `json`, got {other:?}"),
        };
        let session_idle_minutes = args.session_idle_minutes.unwrap_or(14 * 24 * 60);
        if !(1..=10 * 365 * 24 * 60).contains(&session_idle_minutes) {
            bail!("--session-idle-minutes: must be between 1 and 5256000");
        }
        let tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        let trusted_proxies = args
            .trusted_proxies
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!("--trusted-proxies: {s:?} is not an IP or network")
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let keyring = match (args.encryption_key, args.encryption_key_file) {
            (Some(key), _) => {
                Some(Keyring::new(&key, args.encryption_retired_keys.as_deref().unwrap_or(""))?)
            }
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!("--encryption-key-file: cannot read {}", path.display())
                })?;
                let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
                let current = lines.next().with_context(|| {
                    format!("--encryption-key-file: {} holds no key", path.display())
                })?;
                let mut retired: Vec<&str> = lines.collect();
                let extra = args.encryption_retired_keys.unwrap_or_default();
                retired.extend(extra.split(','));
                Some(Keyring::new(current, &retired.join(","))?)
            }
            (None, None) if args.encryption_retired_keys.is_some() => {
                bail!("--encryption-retired-keys needs a current --encryption-key")
            }
            (None, None) => None,
        }
        .map(Arc::new);
        let defaults = RateConfig::default();
        let rate = |value: Option<String>, flag: &str, default: Option<Rate>| match value {
            None => Ok(default),
            Some(v) if v.trim() == "off" => Ok(None),
            Some(v) => v.parse::<Rate>().map(Some).map_err(|e| anyhow::anyhow!("--{flag}: {e}")),
        };
        let rates = RateConfig {
            auth_per_ip: rate(args.limit_auth, "limit-auth", defaults.auth_per_ip)?,
            send_per_user: rate(args.limit_send, "limit-send", defaults.send_per_user)?,
            typing_per_user: rate(args.limit_typing, "limit-typing", defaults.typing_per_user)?,
            connect_per_ip: rate(args.limit_connect, "limit-connect", defaults.connect_per_ip)?,
            read_per_user: rate(args.limit_read, "limit-read", defaults.read_per_user)?,
            login_failures: args.login_failures.unwrap_or(defaults.login_failures),
        };
        if !(1..=1000).contains(&rates.login_failures) {
            bail!("--login-failures: must be between 1 and 1000");
        }
        Ok(Config {
            session_idle_ms: i64::from(session_idle_minutes) * 60 * 1000,
            tls,
            trusted_proxies,
            keyring,
            rates,
            listen: args.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir,
            database_url,
            database_max_connections,
            redis_url: args.redis_url,
            redis_prefix,
            max_message_bytes,
            max_group_members,
            session_ttl_ms: i64::from(session_days) * 24 * 3600 * 1000,
            sqlite_sync_full,
            max_connections_per_user,
            connection_queue,
            presence_grace_ms,
            replay_limit,
            event_retention_ms: i64::from(event_retention_days) * 24 * 3600 * 1000,
            shutdown_drain_ms,
            log_format,
        })
    }

    /// Defaults, listening on 127.0.0.1 port 0, with the database in `data_dir`.
    pub fn for_tests(data_dir: PathBuf) -> Config {
        let mut config =
            Config::validate(ServeArgs { data_dir: Some(data_dir), ..ServeArgs::default() })
                .expect("the defaults are valid");
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.shutdown_drain_ms = 50;
        config
    }
}

fn read_file(path: &Path) -> anyhow::Result<ServeArgs> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--config: cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("--config: invalid TOML in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("confab.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nmax_group_members = 10\n")
            .expect("write");
        let args = ServeArgs {
            listen: Some("127.0.0.1:9100".parse().expect("addr")),
            config: Some(file),
            ..ServeArgs::default()
        };

        let config = Config::from_args(args).expect("valid");

        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.max_group_members, 10);
    }

    #[test]
    fn unknown_file_keys_are_rejected_with_the_file_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lisen = \"x\"\n").expect("write");

        let err = Config::from_args(ServeArgs { config: Some(file), ..ServeArgs::default() })
            .expect_err("typo must fail");

        assert!(format!("{err:#}").contains("bad.toml"));
    }

    #[test]
    fn defaults_put_sqlite_in_the_data_dir() {
        let config = Config::from_args(ServeArgs::default()).expect("valid");

        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url, "sqlite://./data/confab.db");
        assert!(config.sqlite_sync_full);
    }
}
