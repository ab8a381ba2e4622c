//! `steady`: a fixed rate of sends (open loop) across P sender→receiver pairs, with N idle
//! users connected in the background. Each send is scheduled at `start + k / rate` and carries
//! its scheduled time, so a stall of the server (or of the harness) shows up in the latency
//! instead of delaying the sends that would have measured it. Several rates can be given; the
//! sockets stay open between them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore, watch};

use super::{Common, Report, settle};
use crate::preload::{BenchUser, Preload};
use crate::procs::Server;
use crate::sockets::{Recorder, connect_all, content, listen_all, stop_all};
use crate::stats::{Progress, ProgressLine, histogram, record, summary};
use crate::target::{Poster, client_id, endpoint};

/// Most sends waiting for their acknowledgement at once; past it, sends start late (and the
/// lateness is in their latency).
const MAX_IN_FLIGHT: usize = 2048;

#[derive(clap::Args, Clone, Debug)]
pub struct SteadyArgs {
    /// Sends per second; a comma-separated list runs one step per rate
    #[arg(long, default_value = "2000", value_delimiter = ',')]
    pub rate: Vec<f64>,
    /// Idle users connected over WebSocket in the background
    #[arg(long, default_value_t = 10_000)]
    pub idle: usize,
    /// Sender→receiver pairs the sends are spread over (each receiver online)
    #[arg(long, default_value_t = 64)]
    pub pairs: usize,
    /// Seconds per rate
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[command(flatten)]
    pub common: Common,
}

struct World {
    senders: Vec<BenchUser>,
    receivers: Vec<BenchUser>,
    idle: Vec<BenchUser>,
    conversations: Vec<String>,
}

pub async fn run(args: SteadyArgs) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let pairs = args.pairs.max(1);
    let preload = Preload::open(dir.path()).await?;
    let senders = preload.users("tx", pairs).await?;
    let receivers = preload.users("rx", pairs).await?;
    let idle = preload.users("idle", args.idle).await?;
    let conversations =
        preload.directs(senders.iter().cloned().zip(receivers.iter().cloned()).collect()).await?;
    preload.close().await;
    let world = World { senders, receivers, idle, conversations };

    let confab = Server::confab(&args.common.confab_options(dir.path())?).await?;
    let mut rows = drive(&confab, &world, &args).await?;
    confab.stop().await;
    if !args.common.no_ceiling {
        let ceiling = super::ceiling(dir.path()).await?;
        rows.extend(drive(&ceiling, &world, &args).await?);
        ceiling.stop().await;
    }
    let mut failures = Vec::new();
    let first_rate = rows.first().map(|r| r["rate"].clone()).unwrap_or_default();
    for row in &rows {
        let target = row["target"].as_str().unwrap_or_default();
        if row["delivered"] != row["scheduled"] || row["acked"] != row["scheduled"] {
            failures.push(format!(
                "{target} at {}/s: {} scheduled, {} acknowledged, {} delivered",
                row["rate"], row["scheduled"], row["acked"], row["delivered"]
            ));
        }
        // Every rate of a target runs on the same idle sockets: say it once, at the first.
        if row["idle_connected"] != world.idle.len() && row["rate"] == first_rate {
            failures.push(format!(
                "{target} at {}/s: {} of {} idle sockets connected",
                row["rate"],
                row["idle_connected"],
                world.idle.len()
            ));
        }
        if row["errors"] != 0 || row["idle_closed_by_server"] != 0 {
            failures.push(format!(
                "{target}: {} errors, {} idle sockets closed by the server",
                row["errors"], row["idle_closed_by_server"]
            ));
        }
    }
    Ok(Report {
        scenario: "steady",
        params: json!({
            "rate": args.rate, "idle": args.idle, "pairs": pairs, "seconds": args.seconds,
            "sync": args.common.sync,
        }),
        columns: vec![
            ("target", "/target"),
            ("rate/s", "/rate"),
            ("idle", "/idle_connected"),
            ("acked/s", "/acked_per_sec"),
            ("deliver p50", "/deliver_ms/p50"),
            ("p99", "/deliver_ms/p99"),
            ("p999", "/deliver_ms/p999"),
            ("max ms", "/deliver_ms/max"),
            ("ack p99 ms", "/send_ms/p99"),
            ("lag p99 ms", "/lag_ms/p99"),
            ("errors", "/errors"),
        ],
        rows,
        ratio: Value::Null,
        failures,
    })
}

async fn drive(server: &Server, world: &World, args: &SteadyArgs) -> anyhow::Result<Vec<Value>> {
    let progress = Progress::new(format!("steady[{}]", server.kind.name()));
    let start = Instant::now();
    let recorder = Recorder::new(start, progress.clone(), 0);
    let (stop_tx, stop_rx) = watch::channel(false);

    let _line = ProgressLine::start(progress.clone());
    let idle: Vec<_> = world.idle.iter().map(|u| endpoint(server, u, &[])).collect();
    let (sockets, error) = connect_all(server.addr, idle, 128, &progress).await;
    let idle_connected = sockets.iter().filter(|s| s.is_some()).count();
    if let Some(e) = error {
        eprintln!(
            "steady[{}]: {} of {} idle sockets failed: {e}",
            server.kind.name(),
            world.idle.len() - idle_connected,
            world.idle.len()
        );
    }
    let idle_listeners = listen_all(sockets, None, &stop_rx);
    let endpoints = world
        .receivers
        .iter()
        .enumerate()
        .map(|(i, u)| endpoint(server, u, &[world.conversations[i].as_str()]))
        .collect();
    let (sockets, error) = connect_all(server.addr, endpoints, 64, &progress).await;
    if let Some(e) = error {
        anyhow::bail!("receivers could not connect to {}: {e}", server.kind.name());
    }
    let receivers = listen_all(sockets, Some(&recorder), &stop_rx);
    let posters: Vec<Poster> = world.senders.iter().map(|u| Poster::new(server, u)).collect();

    let mut rows = Vec::new();
    for &rate in &args.rate {
        let total = (rate * args.seconds).round() as u64;
        let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let delivered_before = progress.delivered.load(Ordering::Relaxed);
        let errors_before = progress.errors.load(Ordering::Relaxed);
        let acks = Arc::new(Mutex::new(histogram()));
        let lag = Arc::new(Mutex::new(histogram()));
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let _ = recorder.take();
        let t0 = Instant::now();
        // The schedule runs on a thread of its own, which sleeps on the kernel's
        // high-resolution timers: the runtime's timer wheel ticks by the millisecond and
        // released sends in bursts up to a millisecond late, which every latency then carried.
        let runtime = tokio::runtime::Handle::current();
        let conversations = world.conversations.clone();
        let pacer_posters = posters.clone();
        let (acks_for, lag_for, progress_for, permits_for) =
            (acks.clone(), lag.clone(), progress.clone(), permits.clone());
        let pacer = std::thread::spawn(move || {
            for k in 0..total {
                let at = t0 + interval.mul_f64(k as f64);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                let pair = (k % pacer_posters.len() as u64) as usize;
                let poster = pacer_posters[pair].clone();
                let conversation = conversations[pair].clone();
                let (acks, lag, progress, permits) =
                    (acks_for.clone(), lag_for.clone(), progress_for.clone(), permits_for.clone());
                let at_us = (at - start).as_micros() as u64;
                // Taken here, before the task exists, so that the wait for every permit below
                // cannot overtake a send that is scheduled but not yet running.
                let permit = runtime.block_on(permits.acquire_owned()).expect("never closed");
                runtime.spawn(async move {
                    let began = Instant::now();
                    Progress::add(&progress.sent, 1);
                    let sent = poster.post(&conversation, content(0, at_us), client_id()).await;
                    let done = Instant::now();
                    match sent {
                        Ok(()) => {
                            record(&mut *acks.lock().await, (done - at).as_micros() as u64);
                            Progress::add(&progress.acked, 1);
                        }
                        Err(_) => Progress::add(&progress.errors, 1),
                    }
                    record(
                        &mut *lag.lock().await,
                        began.saturating_duration_since(at).as_micros() as u64,
                    );
                    drop(permit);
                });
            }
        });
        tokio::task::spawn_blocking(move || pacer.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the send schedule's thread panicked"))?;
        // Every send answered, then every delivery in.
        let _all = permits.acquire_many(MAX_IN_FLIGHT as u32).await.expect("never closed");
        let elapsed = t0.elapsed().as_secs_f64();
        settle(&progress, delivered_before + total, Duration::from_secs(5)).await;
        let deliveries = recorder.take();
        let acks = acks.lock().await.clone();
        let lag = lag.lock().await.clone();
        rows.push(json!({
            "target": server.kind.name(),
            "rate": rate,
            "idle": world.idle.len(),
            "idle_connected": idle_connected,
            "pairs": posters.len(),
            "seconds": elapsed,
            "scheduled": total,
            "acked": acks.len(),
            "acked_per_sec": acks.len() as f64 / elapsed,
            "delivered": deliveries.len(),
            "errors": progress.errors.load(Ordering::Relaxed) - errors_before,
            "deliver_ms": summary(&deliveries),
            "send_ms": summary(&acks),
            "lag_ms": summary(&lag),
            "idle_closed_by_server": 0,
        }));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let closed_receivers = stop_all(&stop_tx, receivers).await;
    let closed_idle = stop_all(&stop_tx, idle_listeners).await;
    for row in &mut rows {
        row["idle_closed_by_server"] = json!(closed_idle);
        row["receivers_closed_by_server"] = json!(closed_receivers);
    }
    Ok(rows)
}
