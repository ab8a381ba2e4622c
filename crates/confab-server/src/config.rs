//! Configuration: CLI flag > `CONFAB_*` environment variable > TOML file > default.
//!
//! clap reads flags and environment variables; the optional TOML file (`--config`) fills what
//! neither set. Everything is validated once, at startup, with errors that name the option.
//! There is no global config: two differently configured servers can run in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

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
    Serve(ServeArgs),
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
    /// Database URL [default: SQLite at <data-dir>/confab.db]
    #[arg(long, env = "CONFAB_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Redis URL for cross-node fan-out [default: none, in-process bus]
    #[arg(long, env = "CONFAB_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
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
}

impl ServeArgs {
    /// Fills every option left unset here from `file`.
    fn or(self, file: ServeArgs) -> ServeArgs {
        ServeArgs {
            listen: self.listen.or(file.listen),
            data_dir: self.data_dir.or(file.data_dir),
            database_url: self.database_url.or(file.database_url),
            redis_url: self.redis_url.or(file.redis_url),
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
    /// `sqlite://…` (the default, in `data_dir`).
    pub database_url: String,
    pub redis_url: Option<String>,
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
            Some(url) if url.starts_with("sqlite:") => url,
            Some(url) => bail!(
                "--database-url: unsupported scheme in {url:?}; this build supports sqlite: URLs"
            ),
            None => format!("sqlite://{}", data_dir.join("confab.db").display()),
        };
        if let Some(url) = &args.redis_url {
            bail!("--redis-url {url:?}: the Redis bus is not available in this build yet");
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
        Ok(Config {
            listen: args.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir,
            database_url,
            redis_url: args.redis_url,
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
