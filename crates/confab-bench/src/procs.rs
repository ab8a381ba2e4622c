//! Servers under test run as child processes, so their memory (`/proc/<pid>/status`) and
//! start-up time can be measured apart from the load generator's: the `confab` binary, and
//! this program itself as the ceiling server (`confab-bench ceiling-server`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_client::Client;

/// Which server a run talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Confab,
    /// The bare WebSocket broadcast server of `ceiling.rs`: no authentication, no storage.
    Ceiling,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Confab => "confab",
            Kind::Ceiling => "ceiling",
        }
    }
}

/// A running server: a child process, or one already running elsewhere (`--url`).
pub struct Server {
    pub kind: Kind,
    pub base: String,
    pub addr: SocketAddr,
    child: Option<tokio::process::Child>,
    log: Option<PathBuf>,
    /// From spawning the process to the first `200` of `/healthz`.
    pub started_in: Duration,
}

/// Options of the `confab` process under test.
#[derive(Clone, Debug)]
pub struct ConfabOptions {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    pub sync: String,
    pub max_group_members: usize,
    pub max_connections_per_user: usize,
}

/// The `confab` binary: `--server-bin`/`CONFAB_BIN`, else the one next to this program.
pub fn confab_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let me = std::env::current_exe().context("locate this program")?;
    let next = me.with_file_name("confab");
    if next.exists() {
        return Ok(next);
    }
    bail!(
        "no `confab` binary next to {} : build it (cargo build [--release] -p confab-server) \
         or pass --server-bin / CONFAB_BIN",
        me.display()
    )
}

/// A port nobody listens on right now (the kernel's pick; a small race with other programs).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

impl Server {
    /// Starts `confab serve` on a free loopback port and waits until `/healthz` answers.
    pub async fn confab(options: &ConfabOptions) -> anyhow::Result<Server> {
        // Said on every start: a stale binary next to a freshly built harness is easy to miss.
        let built = std::fs::metadata(&options.bin)
            .and_then(|m| m.modified())
            .map(|t| time::OffsetDateTime::from(t).to_string())
            .unwrap_or_else(|_| "unknown".into());
        eprintln!("confab-bench: server {} (modified {built})", options.bin.display());
        let port = free_port()?;
        let mut command = tokio::process::Command::new(&options.bin);
        command
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&options.data_dir)
            .arg("--sqlite-sync")
            .arg(&options.sync)
            .arg("--max-group-members")
            .arg(options.max_group_members.to_string())
            .arg("--max-connections-per-user")
            .arg(options.max_connections_per_user.to_string())
            // The harness is one client machine driving thousands of simulated people: the
            // per-IP and per-user rate limits would measure themselves, not the server.
            .args(["--limit-auth", "off", "--limit-send", "off", "--limit-typing", "off"])
            .args(["--limit-connect", "off", "--limit-read", "off"])
            .env("CONFAB_LOG", "warn");
        let log = options.data_dir.join("server.log");
        Server::spawn(Kind::Confab, command, port, log).await
    }

    /// Starts this program as the ceiling server.
    pub async fn ceiling(log_dir: &Path) -> anyhow::Result<Server> {
        let port = free_port()?;
        let me = std::env::current_exe().context("locate this program")?;
        let mut command = tokio::process::Command::new(me);
        command.arg("ceiling-server").arg("--listen").arg(format!("127.0.0.1:{port}"));
        Server::spawn(Kind::Ceiling, command, port, log_dir.join("ceiling.log")).await
    }

    /// A Confab server that is already running.
    pub fn external(url: &str) -> anyhow::Result<Server> {
        let base = url.trim_end_matches('/').to_owned();
        let authority = base.split_once("://").map_or(base.as_str(), |(_, rest)| rest);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
            .with_context(|| format!("resolve {authority}"))?
            .next()
            .with_context(|| format!("no address for {authority}"))?;
        Ok(Server {
            kind: Kind::Confab,
            base,
            addr,
            child: None,
            log: None,
            started_in: Duration::ZERO,
        })
    }

    async fn spawn(
        kind: Kind,
        mut command: tokio::process::Command,
        port: u16,
        log: PathBuf,
    ) -> anyhow::Result<Server> {
        let out =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).kill_on_drop(true);
        let spawned = Instant::now();
        let child = command.spawn().with_context(|| format!("start the {} server", kind.name()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = Server {
            kind,
            base: format!("http://{addr}"),
            addr,
            child: Some(child),
            log: Some(log),
            started_in: Duration::ZERO,
        };
        let probe = Client::new(&server.base);
        loop {
            if probe.health().await.is_ok() {
                server.started_in = spawned.elapsed();
                return Ok(server);
            }
            if let Some(child) = server.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the {} server exited ({status}) before it was ready:\n{}",
                    kind.name(),
                    server.log_tail()
                );
            }
            if spawned.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the {} server was not ready within 60 s:\n{}",
                    kind.name(),
                    server.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The end of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let Some(log) = &self.log else { return String::new() };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The process id, when this harness started the server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// The server's resident memory in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let pid = self.pid().context("the server is not a child of this harness")?;
        rss_kib(pid)
    }

    /// Stops the server (SIGKILL: its data folder is thrown away after the run).
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

/// Raises this process's open-file limit to its hard limit (children inherit it); answers it.
pub fn raise_open_files() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// What the report says about the machine and the build.
pub fn machine() -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "open_files": rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(0),
    })
}
