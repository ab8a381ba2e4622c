//! `send`: C concurrent senders, each in a closed loop for T seconds, into direct
//! conversations whose other member is online over WebSocket. Acknowledged sends/s,
//! deliveries/s, send latency, send-to-deliver latency (the send time travels in the content).

use std::time::{Duration, Instant};

use anyhow::Context;
use confab_client::Client;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Common, Report, ratio, settle};
use crate::preload::{BenchUser, Preload};
use crate::procs::Server;
use crate::sockets::{Recorder, connect_all, content, listen_all, stop_all};
use crate::stats::{Progress, ProgressLine, histogram, record, summary};
use crate::target::{Poster, client_id, endpoint, send_over};

#[derive(clap::Args, Clone, Debug)]
pub struct SendArgs {
    /// Concurrent senders, each sending as soon as its previous send was acknowledged
    #[arg(long, default_value_t = 64)]
    pub senders: usize,
    /// How long to send, in seconds
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Receivers online over WebSocket (sender i talks to receiver i mod R)
    #[arg(long, default_value_t = 16)]
    pub receivers: usize,
    /// How senders send: `POST …/messages` (http), or a `send` frame on a WebSocket of their
    /// own, answered by an `ack` frame (ws)
    #[arg(long, value_enum, default_value_t = Via::Http)]
    pub via: Via,
    /// Bench a Confab server that is already running (users are registered over HTTP)
    #[arg(long)]
    pub url: Option<String>,
    /// With --url: receivers connect to this node of the same cluster instead, so every
    /// delivery crosses nodes (senders still post to --url)
    #[arg(long, requires = "url")]
    pub receive_url: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// How senders send; reported under the same name as the flag takes.
#[derive(clap::ValueEnum, serde::Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Http,
    Ws,
}

struct World {
    senders: Vec<BenchUser>,
    receivers: Vec<BenchUser>,
    /// The conversation of sender i.
    conversations: Vec<String>,
}

impl World {
    fn rooms_of(&self, receiver: usize) -> Vec<&str> {
        let n = self.receivers.len();
        (0..self.senders.len())
            .filter(|s| s % n == receiver)
            .map(|s| self.conversations[s].as_str())
            .collect()
    }
}

async fn register_world(base: &str, args: &SendArgs) -> anyhow::Result<World> {
    let run = std::process::id();
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    let mut conversations = Vec::new();
    for r in 0..args.receivers.max(1) {
        receivers.push(register(base, &format!("rx{run}-{r}")).await?.1);
    }
    for s in 0..args.senders {
        let (client, user) = register(base, &format!("tx{run}-{s}")).await?;
        let other = &receivers[s % receivers.len()];
        conversations.push(client.create_direct(&other.id).await?.id);
        senders.push(user);
    }
    Ok(World { senders, receivers, conversations })
}

async fn register(base: &str, name: &str) -> anyhow::Result<(Client, BenchUser)> {
    let mut client = Client::new(base);
    let auth = client.register(name, "benchmark password").await?;
    Ok((client, BenchUser { id: auth.user.id, token: auth.token }))
}

pub async fn run(args: SendArgs) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let (world, confab) = match &args.url {
        Some(url) => {
            let server = Server::external(url)?;
            (register_world(&server.base, &args).await?, server)
        }
        None => {
            let preload = Preload::open(dir.path()).await?;
            let receivers = preload.users("rx", args.receivers.max(1)).await?;
            let senders = preload.users("tx", args.senders).await?;
            let pairs = (0..args.senders)
                .map(|s| (senders[s].clone(), receivers[s % receivers.len()].clone()))
                .collect();
            let conversations = preload.directs(pairs).await?;
            preload.close().await;
            let server = Server::confab(&args.common.confab_options(dir.path())?).await?;
            (World { senders, receivers, conversations }, server)
        }
    };
    let receive_at = match &args.receive_url {
        Some(url) => Some(Server::external(url)?.addr),
        None => None,
    };
    let mut rows = vec![drive(&confab, receive_at, &world, &args).await?];
    confab.stop().await;
    if !args.common.no_ceiling {
        let ceiling = super::ceiling(dir.path()).await?;
        rows.push(drive(&ceiling, None, &world, &args).await?);
        ceiling.stop().await;
    }
    let mut failures = Vec::new();
    for row in &rows {
        let target = row["target"].as_str().unwrap_or_default();
        if row["acked"].as_u64().unwrap_or(0) == 0 {
            failures.push(format!("{target}: no send was acknowledged"));
        }
        if row["delivered"] != row["acked"] {
            failures.push(format!(
                "{target}: {} acknowledged but {} delivered",
                row["acked"], row["delivered"]
            ));
        }
        if row["errors"] != 0 || row["sockets_closed_by_server"] != 0 {
            failures.push(format!(
                "{target}: {} errors, {} sockets closed by the server",
                row["errors"], row["sockets_closed_by_server"]
            ));
        }
    }
    let ratio = match rows.as_slice() {
        [c, ceiling] => json!({"delivered_per_sec": ratio(c, ceiling, "/delivered_per_sec")}),
        _ => Value::Null,
    };
    Ok(Report {
        scenario: "send",
        params: json!({
            "senders": args.senders, "receivers": args.receivers, "seconds": args.seconds,
            "via": args.via,
            "sync": args.common.sync, "url": args.url, "receive_url": args.receive_url,
        }),
        columns: vec![
            ("target", "/target"),
            ("acked/s", "/acked_per_sec"),
            ("delivered/s", "/delivered_per_sec"),
            ("send p50", "/send_ms/p50"),
            ("p99", "/send_ms/p99"),
            ("p999 ms", "/send_ms/p999"),
            ("deliver p50", "/deliver_ms/p50"),
            ("p99", "/deliver_ms/p99"),
            ("p999 ms", "/deliver_ms/p999"),
            ("errors", "/errors"),
        ],
        rows,
        ratio,
        failures,
    })
}

/// Runs the senders against `server`; the receivers connect to `receive_at` when given (another
/// node of the same cluster), else to `server` too.
async fn drive(
    server: &Server,
    receive_at: Option<std::net::SocketAddr>,
    world: &World,
    args: &SendArgs,
) -> anyhow::Result<Value> {
    let progress = Progress::new(format!("send[{}]", server.kind.name()));
    let start = Instant::now();
    let recorder = Recorder::new(start, progress.clone(), 0);
    let endpoints = world
        .receivers
        .iter()
        .enumerate()
        .map(|(r, user)| endpoint(server, user, &world.rooms_of(r)))
        .collect();
    let (sockets, error) =
        connect_all(receive_at.unwrap_or(server.addr), endpoints, 64, &progress).await;
    if let Some(e) = error {
        anyhow::bail!("receivers could not connect to {}: {e}", server.kind.name());
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let listeners = listen_all(sockets, Some(&recorder), &stop_rx);
    let _line = ProgressLine::start(progress.clone());

    // Over WebSocket, each sender has a socket of its own, opened before the clock starts.
    let mut sender_sockets = match args.via {
        Via::Http => Vec::new(),
        Via::Ws => {
            let endpoints = world
                .senders
                .iter()
                .zip(&world.conversations)
                .map(|(user, conversation)| endpoint(server, user, &[conversation.as_str()]))
                .collect();
            let (sockets, error) = connect_all(server.addr, endpoints, 64, &progress).await;
            if let Some(e) = error {
                anyhow::bail!("senders could not connect to {}: {e}", server.kind.name());
            }
            sockets
        }
    };
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let begin = Instant::now();
    let mut tasks = Vec::new();
    for (i, user) in world.senders.iter().enumerate() {
        let poster = Poster::new(server, user);
        let mut socket = sender_sockets.get_mut(i).and_then(Option::take);
        let conversation = world.conversations[i].clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let at_us = start.elapsed().as_micros() as u64;
                Progress::add(&progress.sent, 1);
                let (body, client_id) = (content(0, at_us), client_id());
                let sent = match socket.as_mut() {
                    Some(ws) => send_over(ws, &conversation, body, client_id).await,
                    None => poster.post(&conversation, body, client_id).await,
                };
                match sent {
                    Ok(()) => {
                        record(&mut local, t0.elapsed().as_micros() as u64);
                        Progress::add(&progress.acked, 1);
                    }
                    Err(_) => Progress::add(&progress.errors, 1),
                }
            }
            if let Some(mut ws) = socket {
                let _ = ws.close(None).await;
            }
            local
        }));
    }
    let mut sends = histogram();
    for task in tasks {
        sends.add(&task.await.context("sender task")?).context("merge histograms")?;
    }
    let elapsed = begin.elapsed().as_secs_f64();
    settle(&progress, sends.len(), Duration::from_secs(5)).await;
    let closed = stop_all(&stop_tx, listeners).await;
    let deliveries = recorder.take();
    let errors = progress.errors.load(std::sync::atomic::Ordering::Relaxed);
    Ok(json!({
        "target": server.kind.name(),
        "seconds": elapsed,
        "acked": sends.len(),
        "acked_per_sec": sends.len() as f64 / elapsed,
        "delivered": deliveries.len(),
        "delivered_per_sec": deliveries.len() as f64 / elapsed,
        "errors": errors,
        "sockets_closed_by_server": closed,
        "send_ms": summary(&sends),
        "deliver_ms": summary(&deliveries),
    }))
}
