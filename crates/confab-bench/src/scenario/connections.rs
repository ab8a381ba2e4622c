//! `connections`: N idle WebSockets, one user each, opened from 127.0.0.1–127.0.0.8. Reports
//! the time to open them all (each counts once its `ready` frame arrived) and the server's
//! resident memory per connection: `VmRSS` after minus before, divided by the sockets open.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Common, Report, ratio};
use crate::preload::{BenchUser, Preload};
use crate::procs::Server;
use crate::sockets::{connect_all, listen_all, stop_all};
use crate::stats::{Progress, ProgressLine};
use crate::target::endpoint;

#[derive(clap::Args, Clone, Debug)]
pub struct ConnectionsArgs {
    /// Idle WebSockets to open (one user each)
    #[arg(long, default_value_t = 19_000)]
    pub count: usize,
    /// Handshakes in flight at once
    #[arg(long, default_value_t = 128)]
    pub parallel: usize,
    /// Milliseconds to wait before reading the memory, before and after connecting
    #[arg(long, default_value_t = 2000)]
    pub settle_ms: u64,
    #[command(flatten)]
    pub common: Common,
}

pub async fn run(args: ConnectionsArgs) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let preload = Preload::open(dir.path()).await?;
    let users = preload.users("idle", args.count).await?;
    preload.close().await;

    let confab = Server::confab(&args.common.confab_options(dir.path())?).await?;
    let mut rows = vec![drive(&confab, &users, &args).await?];
    confab.stop().await;
    if !args.common.no_ceiling {
        let ceiling = super::ceiling(dir.path()).await?;
        rows.push(drive(&ceiling, &users, &args).await?);
        ceiling.stop().await;
    }
    let mut failures = Vec::new();
    for row in &rows {
        if row["connected"] != row["requested"] || row["closed_by_server"] != 0 {
            failures.push(format!(
                "{}: {} of {} sockets opened ({} closed by the server); first error: {}",
                row["target"].as_str().unwrap_or_default(),
                row["connected"],
                row["requested"],
                row["closed_by_server"],
                row["first_error"]
            ));
        }
    }
    let ratio = match rows.as_slice() {
        [c, ceiling] => json!({"rss_per_connection": ratio(c, ceiling, "/rss_per_connection_kib")}),
        _ => Value::Null,
    };
    Ok(Report {
        scenario: "connections",
        params: json!({"count": args.count, "parallel": args.parallel, "settle_ms": args.settle_ms}),
        columns: vec![
            ("target", "/target"),
            ("requested", "/requested"),
            ("connected", "/connected"),
            ("connect s", "/connect_seconds"),
            ("conn/s", "/connects_per_sec"),
            ("RSS before MiB", "/rss_before_mib"),
            ("RSS after MiB", "/rss_after_mib"),
            ("KiB/conn", "/rss_per_connection_kib"),
        ],
        rows,
        ratio,
        failures,
    })
}

async fn drive(
    server: &Server,
    users: &[BenchUser],
    args: &ConnectionsArgs,
) -> anyhow::Result<Value> {
    let progress = Progress::new(format!("connections[{}]", server.kind.name()));
    let settle = Duration::from_millis(args.settle_ms);
    tokio::time::sleep(settle).await;
    let before = server.rss_kib()?;
    let _line = ProgressLine::start(progress.clone());
    let endpoints = users.iter().map(|u| endpoint(server, u, &[])).collect();
    let begin = Instant::now();
    let (sockets, first_error) =
        connect_all(server.addr, endpoints, args.parallel, &progress).await;
    let elapsed = begin.elapsed().as_secs_f64();
    let connected = sockets.iter().filter(|s| s.is_some()).count();
    let (stop_tx, stop_rx) = watch::channel(false);
    let listeners = listen_all(sockets, None, &stop_rx);
    tokio::time::sleep(settle).await;
    let after = server.rss_kib()?;
    let closed = stop_all(&stop_tx, listeners).await;
    let per_connection = if connected > 0 {
        Value::from(((after as f64 - before as f64) / connected as f64 * 100.0).round() / 100.0)
    } else {
        Value::Null
    };
    Ok(json!({
        "target": server.kind.name(),
        "requested": users.len(),
        "connected": connected,
        "failed": users.len() - connected,
        "first_error": first_error,
        "closed_by_server": closed,
        "connect_seconds": elapsed,
        "connects_per_sec": connected as f64 / elapsed.max(1e-9),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_before_mib": before as f64 / 1024.0,
        "rss_after_mib": after as f64 / 1024.0,
        "rss_per_connection_kib": per_connection,
    }))
}
