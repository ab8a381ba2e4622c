//! Latency histograms, the live progress line, and the shape of a scenario's report.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Latency histogram in microseconds, 1 µs to 60 s, three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Records `us` microseconds, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    // The clamp keeps the value in range, so recording cannot fail.
    let _ = h.record(us.clamp(1, 60_000_000));
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// p50, p99, p99.9 and max in milliseconds, and the sample count.
pub fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0, "p50": null, "p99": null, "p999": null, "max": null});
    }
    json!({
        "count": h.len(),
        "p50": ms(h.value_at_quantile(0.5)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
    })
}

/// Counters the scenario updates and the progress line reads.
pub struct Progress {
    pub label: String,
    pub started: Instant,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub delivered: AtomicU64,
    pub connected: AtomicU64,
    pub errors: AtomicU64,
}

impl Progress {
    pub fn new(label: impl Into<String>) -> Arc<Progress> {
        Arc::new(Progress {
            label: label.into(),
            started: Instant::now(),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> [u64; 5] {
        [
            self.sent.load(Ordering::Relaxed),
            self.acked.load(Ordering::Relaxed),
            self.delivered.load(Ordering::Relaxed),
            self.connected.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        ]
    }
}

/// Prints one progress line a second on stderr (rewritten in place on a terminal) until
/// dropped.
pub struct ProgressLine {
    task: tokio::task::JoinHandle<()>,
    tty: bool,
}

impl ProgressLine {
    pub fn start(progress: Arc<Progress>) -> ProgressLine {
        let tty = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut last = progress.snapshot();
            loop {
                tick.tick().await;
                let now = progress.snapshot();
                let rate = |i: usize| now[i].saturating_sub(last[i]);
                let mut line = format!(
                    "{} {:>5.1}s",
                    progress.label,
                    progress.started.elapsed().as_secs_f64()
                );
                let names = ["sent", "acked", "delivered", "connected", "errors"];
                for (i, name) in names.iter().enumerate() {
                    if now[i] > 0 || i == 4 {
                        line.push_str(&format!("  {name} {}", now[i]));
                        if i < 3 {
                            line.push_str(&format!(" ({}/s)", rate(i)));
                        }
                    }
                }
                let mut err = std::io::stderr().lock();
                let _ = if tty { write!(err, "\r\x1b[2K{line}") } else { writeln!(err, "{line}") };
                let _ = err.flush();
                last = now;
            }
        });
        ProgressLine { task, tty }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.task.abort();
        if self.tty {
            eprintln!();
        }
    }
}

/// Formats a JSON number for the human table.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::Number(n) if n.is_u64() || n.is_i64() => group_digits(&n.to_string()),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or_default();
            if f.abs() >= 1000.0 { group_digits(&format!("{f:.0}")) } else { format!("{f:.2}") }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn group_digits(s: &str) -> String {
    let (sign, digits) = s.strip_prefix('-').map_or(("", s), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// Prints `rows` as a table; each column is a header and a JSON pointer into the row.
pub fn print_table(columns: &[(&str, &str)], rows: &[Value]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns.iter().map(|(_, p)| cell(row.pointer(p).unwrap_or(&Value::Null))).collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| cells.iter().map(|r| r[i].len()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let line = |values: Vec<String>| {
        let parts: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i == 0 {
                    format!("{v:<w$}", w = widths[i])
                } else {
                    format!("{v:>w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", parts.join("  "));
    };
    line(columns.iter().map(|(h, _)| (*h).to_owned()).collect());
    for row in cells {
        line(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_group_thousands_and_round_small_numbers() {
        assert_eq!(cell(&json!(1234567)), "1,234,567");
        assert_eq!(cell(&json!(20512.7)), "20,513");
        assert_eq!(cell(&json!(1.234)), "1.23");
        assert_eq!(cell(&Value::Null), "-");
    }

    #[test]
    fn summaries_are_in_milliseconds() {
        let mut h = histogram();
        for us in 1..=1000 {
            record(&mut h, us);
        }
        let s = summary(&h);
        assert_eq!(s["count"], 1000);
        assert!((s["p50"].as_f64().expect("p50") - 0.5).abs() < 0.01);
    }
}
