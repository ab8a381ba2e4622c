//! `confab-bench`: drives a real Confab server through the SDK and reports what it measured.
//! It never asserts on speed; see docs/benchmarks.md for the figures and how to read them.
//!
//! The server runs in this process on its own runtime and threads, on 127.0.0.1 port 0 with a
//! temporary data folder, unless `--url` points at one already running.
//!
//! Scenarios:
//! - `send`: C concurrent senders for T seconds; each sender's conversation partner is online
//!   over WebSocket. Reports acknowledged sends/s, deliveries/s, send latency and
//!   send-to-deliver latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use confab_client::{Client, Event, SendMessage};
use hdrhistogram::Histogram;
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(name = "confab-bench", about = "Load generator for Confab")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Concurrent senders into conversations whose other member is online.
    Send(SendArgs),
}

#[derive(clap::Args, Clone)]
struct SendArgs {
    /// Concurrent senders.
    #[arg(long, default_value_t = 16)]
    senders: usize,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Receivers online over WebSocket (each sender talks to one of them).
    #[arg(long, default_value_t = 16)]
    receivers: usize,
    /// SQLite durability of the in-process server: `full` or `normal`.
    #[arg(long, default_value = "full")]
    sync: String,
    /// Bench a server that is already running instead of starting one.
    #[arg(long)]
    url: Option<String>,
    /// Exit non-zero unless every send was acknowledged and delivered (a functional check for
    /// CI smoke runs; no timing is checked).
    #[arg(long)]
    check: bool,
}

/// Latency histogram in microseconds, 1 µs to 60 s.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Starts a server on its own two-thread runtime; answers its URL and a guard that stops it.
fn start_server(
    sync: &str,
) -> anyhow::Result<(
    String,
    tempfile::TempDir,
    std::thread::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
)> {
    let dir = tempfile::tempdir()?;
    let mut config = confab_server::Config::for_tests(dir.path().to_path_buf());
    config.sqlite_sync_full = sync == "full";
    config.max_connections_per_user = 10_000;
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let app = confab_server::App::build(config).await.expect("server builds");
            let _ = url_tx.send(format!("http://{}", app.local_addr()));
            let _ = app
                .run(async move {
                    let _ = stop_rx.await;
                })
                .await;
        });
    });
    let url = url_rx.recv_timeout(Duration::from_secs(60)).context("server start")?;
    Ok((url, dir, thread, stop_tx))
}

async fn register(base: &str, name: &str) -> anyhow::Result<(Client, String)> {
    let mut client = Client::new(base);
    let auth = client.register(name, "benchmark password").await?;
    Ok((client, auth.user.id))
}

async fn run_send(args: SendArgs) -> anyhow::Result<serde_json::Value> {
    let server = match &args.url {
        Some(_) => None,
        None => Some(start_server(&args.sync)?),
    };
    let base = args.url.clone().or_else(|| server.as_ref().map(|s| s.0.clone())).context("url")?;
    let run_id = std::process::id();
    let mut receivers = Vec::new();
    for r in 0..args.receivers.max(1) {
        receivers.push(register(&base, &format!("rx{run_id}-{r}")).await?);
    }
    let mut senders = Vec::new();
    for s in 0..args.senders {
        let (client, _) = register(&base, &format!("tx{run_id}-{s}")).await?;
        let (_, receiver_id) = &receivers[s % receivers.len()];
        let conversation = client.create_direct(receiver_id).await?.id;
        senders.push((client, conversation));
    }

    let start = Instant::now();
    let deliver_hist = Arc::new(Mutex::new(histogram()));
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut receiver_tasks = Vec::new();
    for (client, _) in &receivers {
        let mut ws = client.connect_ws(None).await?;
        ws.next_of("ready").await?;
        let (hist, delivered, stop) = (deliver_hist.clone(), delivered.clone(), stop.clone());
        receiver_tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            while !stop.load(Ordering::Relaxed) {
                match ws.next_frame_within(Duration::from_millis(500)).await {
                    Ok(Some(frame)) => {
                        if let Ok(Event::NewMessage(m)) = frame.event()
                            && let Some(sent_us) =
                                m.content.strip_prefix("t=").and_then(|t| t.parse::<u64>().ok())
                        {
                            let now_us = start.elapsed().as_micros() as u64;
                            let _ = local.record(now_us.saturating_sub(sent_us).max(1));
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => continue, // nothing within the poll interval
                }
            }
            let _ = hist.lock().await.add(&local);
        }));
    }

    let errors = Arc::new(AtomicU64::new(0));
    let send_hist = Arc::new(Mutex::new(histogram()));
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let begin = Instant::now();
    let mut sender_tasks = Vec::new();
    for (i, (client, conversation)) in senders.into_iter().enumerate() {
        let (errors, hist) = (errors.clone(), send_hist.clone());
        sender_tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let body = SendMessage {
                    content: format!("t={}", start.elapsed().as_micros()),
                    client_id: Some(format!("{i}-{n}")),
                    reply_to: None,
                };
                match client.send_message(&conversation, &body).await {
                    Ok(_) => {
                        let _ = local.record((t0.elapsed().as_micros() as u64).max(1));
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 1;
            }
            let _ = hist.lock().await.add(&local);
        }));
    }
    for task in sender_tasks {
        task.await?;
    }
    let elapsed = begin.elapsed().as_secs_f64();
    // Let the last deliveries arrive, then stop the receivers.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for task in receiver_tasks {
        task.await?;
    }
    if let Some((_, _dir, thread, stop_server)) = server {
        let _ = stop_server.send(());
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }

    let sends = send_hist.lock().await.clone();
    let deliveries = deliver_hist.lock().await.clone();
    let result = serde_json::json!({
        "scenario": "send",
        "sync": args.sync,
        "senders": args.senders,
        "receivers": args.receivers,
        "seconds": elapsed,
        "acked": sends.len(),
        "acked_per_sec": sends.len() as f64 / elapsed,
        "delivered": delivered.load(Ordering::Relaxed),
        "delivered_per_sec": delivered.load(Ordering::Relaxed) as f64 / elapsed,
        "errors": errors.load(Ordering::Relaxed),
        "send_ms": {"p50": ms(&sends, 0.5), "p99": ms(&sends, 0.99), "p999": ms(&sends, 0.999)},
        "deliver_ms": {"p50": ms(&deliveries, 0.5), "p99": ms(&deliveries, 0.99), "p999": ms(&deliveries, 0.999)},
    });
    Ok(result)
}

fn print_table(r: &serde_json::Value) {
    println!(
        "scenario  sync    senders  acked/s   delivered/s  send p50/p99/p999 ms     deliver p50/p99/p999 ms  errors"
    );
    println!(
        "{:<9} {:<7} {:>7}  {:>8.0}  {:>11.0}  {:>6.2} / {:>6.2} / {:>6.2}  {:>6.2} / {:>6.2} / {:>6.2}  {}",
        r["scenario"].as_str().unwrap_or_default(),
        r["sync"].as_str().unwrap_or_default(),
        r["senders"],
        r["acked_per_sec"].as_f64().unwrap_or_default(),
        r["delivered_per_sec"].as_f64().unwrap_or_default(),
        r["send_ms"]["p50"].as_f64().unwrap_or_default(),
        r["send_ms"]["p99"].as_f64().unwrap_or_default(),
        r["send_ms"]["p999"].as_f64().unwrap_or_default(),
        r["deliver_ms"]["p50"].as_f64().unwrap_or_default(),
        r["deliver_ms"]["p99"].as_f64().unwrap_or_default(),
        r["deliver_ms"]["p999"].as_f64().unwrap_or_default(),
        r["errors"],
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Send(args) => {
            eprintln!(
                "send: {} senders for {} s (sync={})…",
                args.senders, args.seconds, args.sync
            );
            run_send(args).await?
        }
    };
    print_table(&result);
    println!("{result}");
    Ok(())
}
