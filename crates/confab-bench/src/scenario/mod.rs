//! The five scenarios. Each prepares its world once (users, sessions, conversations), runs the
//! same load against Confab and then against the ceiling, and answers a [`Report`]: one row
//! per target (per rate for `steady`), the ratio of the two, and the failures `--check` turns
//! into a non-zero exit.

pub mod connections;
pub mod fanout;
pub mod history;
pub mod send;
pub mod steady;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::procs::{ConfabOptions, Server, confab_bin};
use crate::stats::Progress;

/// Options every scenario takes.
#[derive(clap::Args, Clone, Debug)]
pub struct Common {
    /// The `confab` binary to start [default: the one next to this program]
    #[arg(long, env = "CONFAB_BIN", value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// SQLite durability of the server: `full` (Confab's default) or `normal`
    #[arg(long, default_value = "full")]
    pub sync: String,
    /// Measure Confab only, not the ceiling server too
    #[arg(long)]
    pub no_ceiling: bool,
    /// Exit non-zero unless the run was functionally complete (every send acknowledged and
    /// delivered, every socket open, every page full). Never checks timing.
    #[arg(long)]
    pub check: bool,
}

impl Common {
    pub fn confab_options(&self, data_dir: &Path) -> anyhow::Result<ConfabOptions> {
        Ok(ConfabOptions {
            bin: confab_bin(self.server_bin.as_deref())?,
            data_dir: data_dir.to_path_buf(),
            sync: self.sync.clone(),
            max_group_members: 256,
            max_connections_per_user: 32,
        })
    }
}

/// What a scenario measured.
pub struct Report {
    pub scenario: &'static str,
    pub params: Value,
    /// The human table: header and JSON pointer into each row.
    pub columns: Vec<(&'static str, &'static str)>,
    pub rows: Vec<Value>,
    /// Confab's figure divided by the ceiling's, where one comparison says it.
    pub ratio: Value,
    pub failures: Vec<String>,
}

/// `a / b` for the numbers at `pointer` in two rows.
pub fn ratio(a: &Value, b: &Value, pointer: &str) -> Value {
    match (a.pointer(pointer).and_then(Value::as_f64), b.pointer(pointer).and_then(Value::as_f64)) {
        (Some(x), Some(y)) if y > 0.0 => Value::from((x / y * 1000.0).round() / 1000.0),
        _ => Value::Null,
    }
}

/// Waits until `progress.delivered` reaches `expected` or `limit` passes.
pub async fn settle(progress: &Progress, expected: u64, limit: Duration) {
    let begin = Instant::now();
    while progress.delivered.load(std::sync::atomic::Ordering::Relaxed) < expected
        && begin.elapsed() < limit
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts the ceiling server (its log goes to `dir`).
pub async fn ceiling(dir: &Path) -> anyhow::Result<Server> {
    Server::ceiling(dir).await
}

/// A small, fast, deterministic generator (xorshift64*), for picking pages and conversations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}
