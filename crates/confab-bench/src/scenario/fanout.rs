//! `fanout`: one group of G members, every member online over WebSocket; the first member
//! sends one message per round. For each round: the time from the send until the last of the
//! G sockets (the sender's own included) has the message. Rounds are apart by a pause, so each
//! measures one fan-out on an otherwise idle server.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Common, Report, ratio};
use crate::preload::{BenchUser, Preload};
use crate::procs::Server;
use crate::sockets::{Recorder, connect_all, content, listen_all, stop_all};
use crate::stats::{Progress, ProgressLine, histogram, record, summary};
use crate::target::{Poster, endpoint};

/// How long one round may take before it counts as incomplete.
const ROUND_LIMIT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Clone, Debug)]
pub struct FanoutArgs {
    /// Members of the group, all online
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Messages sent, one at a time
    #[arg(long, default_value_t = 100)]
    pub rounds: usize,
    /// Milliseconds between the end of one round and the next send
    #[arg(long, default_value_t = 20)]
    pub pause_ms: u64,
    #[command(flatten)]
    pub common: Common,
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let members = args.members.max(2);
    let preload = Preload::open(dir.path()).await?;
    let users = preload.users("member", members).await?;
    let group = preload.group("fan-out", &users).await?;
    preload.close().await;

    let mut options = args.common.confab_options(dir.path())?;
    options.max_group_members = options.max_group_members.max(members);
    let confab = Server::confab(&options).await?;
    let mut rows = vec![drive(&confab, &users, &group, &args).await?];
    confab.stop().await;
    if !args.common.no_ceiling {
        let ceiling = super::ceiling(dir.path()).await?;
        rows.push(drive(&ceiling, &users, &group, &args).await?);
        ceiling.stop().await;
    }
    let mut failures = Vec::new();
    for row in &rows {
        if row["complete_rounds"] != row["rounds"] || row["errors"] != 0 {
            failures.push(format!(
                "{}: {} of {} rounds reached every member; {} errors",
                row["target"].as_str().unwrap_or_default(),
                row["complete_rounds"],
                row["rounds"],
                row["errors"]
            ));
        }
    }
    let ratio = match rows.as_slice() {
        [c, ceiling] => json!({"last_delivery_p99": ratio(c, ceiling, "/last_ms/p99")}),
        _ => Value::Null,
    };
    Ok(Report {
        scenario: "fanout",
        params: json!({"members": members, "rounds": args.rounds, "pause_ms": args.pause_ms, "sync": args.common.sync}),
        columns: vec![
            ("target", "/target"),
            ("members", "/members"),
            ("rounds", "/complete_rounds"),
            ("last p50", "/last_ms/p50"),
            ("p99", "/last_ms/p99"),
            ("max ms", "/last_ms/max"),
            ("each p50", "/each_ms/p50"),
            ("each p99 ms", "/each_ms/p99"),
            ("ack p50 ms", "/send_ms/p50"),
            ("settled s", "/settled_s"),
            ("errors", "/errors"),
        ],
        rows,
        ratio,
        failures,
    })
}

async fn drive(
    server: &Server,
    users: &[BenchUser],
    group: &str,
    args: &FanoutArgs,
) -> anyhow::Result<Value> {
    let progress = Progress::new(format!("fanout[{}]", server.kind.name()));
    let start = Instant::now();
    let recorder = Recorder::new(start, progress.clone(), args.rounds);
    let _line = ProgressLine::start(progress.clone());
    let endpoints = users.iter().map(|u| endpoint(server, u, &[group])).collect();
    let (sockets, error) = connect_all(server.addr, endpoints, 128, &progress).await;
    if let Some(e) = error {
        anyhow::bail!("members could not connect to {}: {e}", server.kind.name());
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let listeners = listen_all(sockets, Some(&recorder), &stop_rx);
    let settled_in = settle(&recorder).await;
    let poster = Poster::new(server, &users[0]);
    let expected = users.len() as u64;
    let (mut last, mut acks) = (histogram(), histogram());
    let mut complete = 0;
    for round in 0..args.rounds {
        let t0 = recorder.now_us();
        Progress::add(&progress.sent, 1);
        match poster.post(group, content(round as u64, t0), format!("round-{round}")).await {
            Ok(()) => {
                record(&mut acks, recorder.now_us().saturating_sub(t0));
                Progress::add(&progress.acked, 1);
            }
            Err(_) => {
                Progress::add(&progress.errors, 1);
                continue;
            }
        }
        let tally = &recorder.rounds[round];
        let waited = Instant::now();
        while tally.received.load(Ordering::Relaxed) < expected && waited.elapsed() < ROUND_LIMIT {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if tally.received.load(Ordering::Relaxed) >= expected {
            complete += 1;
            record(&mut last, tally.last_us.load(Ordering::Relaxed).saturating_sub(t0));
        }
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }
    let closed = stop_all(&stop_tx, listeners).await;
    let each = recorder.take();
    Ok(json!({
        "target": server.kind.name(),
        "settled_s": settled_in.as_secs_f64(),
        "members": users.len(),
        "rounds": args.rounds,
        "complete_rounds": complete,
        "errors": progress.errors.load(Ordering::Relaxed),
        "closed_by_server": closed,
        "last_ms": summary(&last),
        "each_ms": summary(&each),
        "send_ms": summary(&acks),
    }))
}

/// Waits until the members' sockets have been quiet for a moment: every member coming online
/// at once announces its presence to all the others (a million frames for a thousand members),
/// and the rounds measure one message's fan-out, not that storm. Returns how long it took.
async fn settle(recorder: &Recorder) -> Duration {
    const QUIET: Duration = Duration::from_millis(500);
    const AT_MOST: Duration = Duration::from_secs(60);
    let started = Instant::now();
    let mut seen = recorder.other_frames.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < QUIET && started.elapsed() < AT_MOST {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = recorder.other_frames.load(Ordering::Relaxed);
        if now != seen {
            (seen, quiet_since) = (now, Instant::now());
        }
    }
    started.elapsed()
}
