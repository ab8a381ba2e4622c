//! `confab-bench`: drives a real Confab server over HTTP and WebSockets and reports what it
//! measured. It never asserts on speed (`--check` only checks that the run was functionally
//! complete); docs/benchmarks.md has the figures and how to read them.
//!
//! The server runs as a child process (the `confab` binary next to this one, or
//! `--server-bin`), on a free loopback port with a temporary data folder that the fast preload
//! path (`preload.rs`) fills first. Every scenario then runs the same load against the ceiling
//! (`ceiling.rs`), a bare WebSocket broadcast server started from this program, so the report
//! can say what fraction of the machine's possible rate Confab reaches.
//!
//! Output: a progress line on stderr while it runs; at the end a human table and one JSON line
//! (`{"scenario", "date", "machine", "params", "results": [row per target], "ratio"}`) on
//! stdout. `plot` turns `steady` lines into docs/bench-latency.svg.

mod ceiling;
mod plot;
mod preload;
mod procs;
mod scenario;
mod sockets;
mod stats;
mod target;

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use serde_json::json;

use scenario::Report;

#[derive(Parser)]
#[command(
    name = "confab-bench",
    about = "Load generator for Confab: reports numbers, never asserts on them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Concurrent senders in closed loops; receivers online over WebSocket.
    Send(scenario::send::SendArgs),
    /// A fixed rate of sends (open loop) with many idle connections in the background.
    Steady(scenario::steady::SteadyArgs),
    /// Many idle WebSockets: the server's memory per connection and the time to open them.
    Connections(scenario::connections::ConnectionsArgs),
    /// One message to a group whose members are all online: time until the last has it.
    Fanout(scenario::fanout::FanoutArgs),
    /// History pages on a preloaded database, and the server's cold start on it.
    History(scenario::history::HistoryArgs),
    /// Plots delivery latency against load from the `steady` lines of a results file.
    Plot(plot::PlotArgs),
    /// Runs the ceiling server (started by the scenarios themselves).
    #[command(hide = true)]
    CeilingServer {
        #[arg(long)]
        listen: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let check = match &cli.command {
        Command::Send(a) => a.common.check,
        Command::Steady(a) => a.common.check,
        Command::Connections(a) => a.common.check,
        Command::Fanout(a) => a.common.check,
        Command::History(a) => a.common.check,
        Command::Plot(args) => return plot::run(args.clone()),
        Command::CeilingServer { listen } => return ceiling::serve(*listen).await,
    };
    let open_files = procs::raise_open_files();
    eprintln!(
        "confab-bench: open-file limit {open_files} (this process and the servers it starts)"
    );
    let report = match cli.command {
        Command::Send(args) => scenario::send::run(args).await?,
        Command::Steady(args) => scenario::steady::run(args).await?,
        Command::Connections(args) => scenario::connections::run(args).await?,
        Command::Fanout(args) => scenario::fanout::run(args).await?,
        Command::History(args) => scenario::history::run(args).await?,
        Command::Plot(_) | Command::CeilingServer { .. } => unreachable!("handled above"),
    };
    print_report(&report);
    if check && !report.failures.is_empty() {
        anyhow::bail!("check failed: {}", report.failures.join("; "));
    }
    Ok(())
}

fn print_report(report: &Report) {
    println!();
    stats::print_table(&report.columns, &report.rows);
    if !report.ratio.is_null() {
        println!("confab / ceiling: {}", report.ratio);
    }
    for failure in &report.failures {
        println!("incomplete: {failure}");
    }
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let line = json!({
        "scenario": report.scenario,
        "date": date,
        "machine": procs::machine(),
        "params": report.params,
        "results": report.rows,
        "ratio": report.ratio,
        "failures": report.failures,
    });
    println!("{line}");
}
