//! `history`: M messages preloaded over K direct conversations, then the server's cold start on
//! that database (spawning the process until `/healthz` answers), the first page after it,
//! and the latency of `GET /api/conversations/{id}/messages?limit=50&before=…` from R readers
//! in closed loops, each reading a random page of a random conversation of theirs.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::{Common, Report, Rng, ratio};
use crate::preload::{BenchUser, Preload, bulk_messages};
use crate::procs::Server;
use crate::stats::{Progress, ProgressLine, histogram, record, summary};
use crate::target::Poster;

#[derive(clap::Args, Clone, Debug)]
pub struct HistoryArgs {
    /// Messages to preload
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: usize,
    /// Conversations they are spread over
    #[arg(long, default_value_t = 1000)]
    pub conversations: usize,
    /// Concurrent readers, each in a closed loop
    #[arg(long, default_value_t = 4)]
    pub readers: usize,
    /// Messages per page
    #[arg(long, default_value_t = 50)]
    pub page: u32,
    /// How long to read, in seconds
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[command(flatten)]
    pub common: Common,
}

struct World {
    readers: Vec<BenchUser>,
    /// Conversation i belongs to reader i mod R.
    conversations: Vec<String>,
    per_conversation: i64,
}

pub async fn run(args: HistoryArgs) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let readers_n = args.readers.max(1);
    let conversations_n = args.conversations.max(1);
    let per_conversation = (args.messages / conversations_n).max(1);

    let progress = Progress::new("history[preload]");
    let began = Instant::now();
    let preload = Preload::open(dir.path()).await?;
    let readers = preload.users("reader", readers_n).await?;
    let partners = preload.users("partner", conversations_n).await?;
    let pairs: Vec<_> = (0..conversations_n)
        .map(|i| (readers[i % readers_n].clone(), partners[i].clone()))
        .collect();
    let conversations = preload.directs(pairs.clone()).await?;
    let db_path = preload.db_path.clone();
    preload.close().await;
    let setup_seconds = began.elapsed().as_secs_f64();
    let bulk: Vec<_> = conversations
        .iter()
        .zip(&pairs)
        .map(|(c, (a, b))| (c.clone(), a.id.clone(), b.id.clone()))
        .collect();
    let began = Instant::now();
    let written = {
        let _line = ProgressLine::start(progress.clone());
        bulk_messages(&db_path, &bulk, per_conversation, &progress).await?
    };
    let bulk_seconds = began.elapsed().as_secs_f64();
    let db_bytes = std::fs::metadata(&db_path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "history: preloaded {written} messages in {bulk_seconds:.1} s ({:.0}/s; users and conversations {setup_seconds:.1} s), database {:.0} MiB",
        written as f64 / bulk_seconds.max(1e-9),
        db_bytes as f64 / 1048576.0
    );
    let world = World { readers, conversations, per_conversation: per_conversation as i64 };

    let confab = Server::confab(&args.common.confab_options(dir.path())?).await?;
    let mut rows = vec![drive(&confab, &world, &args).await?];
    confab.stop().await;
    if !args.common.no_ceiling {
        let ceiling = super::ceiling(dir.path()).await?;
        rows.push(drive(&ceiling, &world, &args).await?);
        ceiling.stop().await;
    }
    let mut failures = Vec::new();
    if written != (per_conversation * conversations_n) as u64 {
        failures.push(format!(
            "preloaded {written} messages, expected {}",
            per_conversation * conversations_n
        ));
    }
    for row in &rows {
        if row["errors"] != 0 || row["short_pages"] != 0 || row["pages"] == 0 {
            failures.push(format!(
                "{}: {} pages, {} errors, {} pages shorter than asked",
                row["target"].as_str().unwrap_or_default(),
                row["pages"],
                row["errors"],
                row["short_pages"]
            ));
        }
    }
    let ratio = match rows.as_slice() {
        [c, ceiling] => json!({"page_p99": ratio(c, ceiling, "/page_ms/p99")}),
        _ => Value::Null,
    };
    Ok(Report {
        scenario: "history",
        params: json!({
            "messages": written, "conversations": conversations_n, "readers": readers_n,
            "page": args.page, "seconds": args.seconds, "sync": args.common.sync,
            "preload_seconds": bulk_seconds, "preload_setup_seconds": setup_seconds,
            "database_mib": db_bytes as f64 / 1048576.0,
        }),
        columns: vec![
            ("target", "/target"),
            ("cold start ms", "/cold_start_ms"),
            ("first page ms", "/first_page_ms"),
            ("pages/s", "/pages_per_sec"),
            ("page p50", "/page_ms/p50"),
            ("p99", "/page_ms/p99"),
            ("p999", "/page_ms/p999"),
            ("max ms", "/page_ms/max"),
            ("errors", "/errors"),
        ],
        rows,
        ratio,
        failures,
    })
}

async fn drive(server: &Server, world: &World, args: &HistoryArgs) -> anyhow::Result<Value> {
    let cold_start_ms = server.started_in.as_secs_f64() * 1000.0;
    let page = i64::from(args.page).min(world.per_conversation);
    let posters: Vec<Poster> = world.readers.iter().map(|u| Poster::new(server, u)).collect();
    let t = Instant::now();
    let first = posters[0]
        .page(&world.conversations[0], world.per_conversation + 1, page as u32)
        .await
        .context("first page")?;
    let first_page_ms = t.elapsed().as_secs_f64() * 1000.0;
    let rss_kib = server.rss_kib().ok();

    let progress = Progress::new(format!("history[{}]", server.kind.name()));
    let _line = ProgressLine::start(progress.clone());
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let begin = Instant::now();
    let mut tasks = Vec::new();
    for (r, poster) in posters.into_iter().enumerate() {
        let mine: Vec<String> = world
            .conversations
            .iter()
            .enumerate()
            .filter(|(i, _)| i % world.readers.len() == r)
            .map(|(_, c)| c.clone())
            .collect();
        let progress = progress.clone();
        let per = world.per_conversation;
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(r as u64 + 1);
            let (mut local, mut short) = (histogram(), 0u64);
            while Instant::now() < deadline && !mine.is_empty() {
                let conversation = &mine[rng.below(mine.len() as u64) as usize];
                // `before` in page+1 ..= per+1: always a full page.
                let before = page + 1 + rng.below((per - page + 1).max(1) as u64) as i64;
                let t0 = Instant::now();
                Progress::add(&progress.sent, 1);
                match poster.page(conversation, before, page as u32).await {
                    Ok(n) => {
                        record(&mut local, t0.elapsed().as_micros() as u64);
                        Progress::add(&progress.acked, 1);
                        short += u64::from((n as i64) < page);
                    }
                    Err(_) => Progress::add(&progress.errors, 1),
                }
            }
            (local, short)
        }));
    }
    let (mut pages, mut short) = (histogram(), 0);
    for task in tasks {
        let (h, s) = task.await.context("reader task")?;
        pages.add(&h).context("merge histograms")?;
        short += s;
    }
    let elapsed = begin.elapsed().as_secs_f64();
    Ok(json!({
        "target": server.kind.name(),
        "cold_start_ms": cold_start_ms,
        "first_page_ms": first_page_ms,
        "first_page_messages": first,
        "rss_after_start_kib": rss_kib,
        "pages": pages.len(),
        "pages_per_sec": pages.len() as f64 / elapsed,
        "short_pages": short + u64::from((first as i64) < page),
        "errors": progress.errors.load(Ordering::Relaxed),
        "page_ms": summary(&pages),
    }))
}
