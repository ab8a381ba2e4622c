//! `confab-bench plot`: an SVG of send-to-deliver latency percentiles against the send rate,
//! from the `steady` lines of a results file (one JSON object per line, as the scenarios
//! print them). Hand-written SVG: no plotting dependency for one chart.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;

#[derive(clap::Args, Clone, Debug)]
pub struct PlotArgs {
    /// Results file: JSON lines as printed by the scenarios
    #[arg(long, default_value = "bench-results.jsonl")]
    pub input: PathBuf,
    /// Where to write the SVG
    #[arg(long, default_value = "docs/bench-latency.svg")]
    pub output: PathBuf,
}

/// (target, percentile) → rate → milliseconds.
type Series = BTreeMap<(String, &'static str), BTreeMap<u64, f64>>;

const PERCENTILES: [(&str, &str); 3] =
    [("p50", "#1f77b4"), ("p99", "#d62728"), ("p999", "#2ca02c")];

pub fn run(args: PlotArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("read {}", args.input.display()))?;
    let mut series = Series::new();
    let mut caption = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(report) = serde_json::from_str::<Value>(line) else { continue };
        if report["scenario"] != "steady" {
            continue;
        }
        let m = &report["machine"];
        caption = format!(
            "{} · {} cores · {} · idle connections: {} · {} build",
            report["date"].as_str().unwrap_or_default(),
            m["cores"],
            m["kernel"].as_str().unwrap_or_default(),
            report["params"]["idle"],
            m["profile"].as_str().unwrap_or_default(),
        );
        for row in report["results"].as_array().into_iter().flatten() {
            let (Some(target), Some(rate)) = (row["target"].as_str(), row["rate"].as_f64()) else {
                continue;
            };
            for (p, _) in PERCENTILES {
                if let Some(ms) = row["deliver_ms"][p].as_f64() {
                    series.entry((target.to_owned(), p)).or_default().insert(rate as u64, ms);
                }
            }
        }
    }
    if series.is_empty() {
        bail!("no `steady` results in {}", args.input.display());
    }
    let svg = render(&series, &caption);
    if let Some(dir) = args.output.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.output, svg)
        .with_context(|| format!("write {}", args.output.display()))?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

fn render(series: &Series, caption: &str) -> String {
    let (w, h) = (760.0, 460.0);
    let (left, right, top, bottom) = (70.0, 170.0, 40.0, 70.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let max_rate = series.values().flat_map(|s| s.keys()).copied().max().unwrap_or(1) as f64;
    let x_max = nice_ceiling(max_rate);
    let values = series.values().flat_map(|s| s.values()).copied().filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (y_lo, y_hi) = (lo.log10().floor(), hi.log10().ceil().max(lo.log10().floor() + 1.0));
    let x = |rate: f64| left + rate / x_max * pw;
    let y = |ms: f64| top + ph - (ms.max(1e-6).log10() - y_lo) / (y_hi - y_lo) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">Send→deliver latency against load (steady scenario)</text>"#,
        left + pw / 2.0
    );
    // Grid and axes.
    let mut decade = y_lo;
    while decade <= y_hi + 1e-9 {
        let ms = 10f64.powf(decade);
        let yy = y(ms);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/>"##,
            left + pw
        );
        let label = if ms >= 1.0 { format!("{ms:.0}") } else { format!("{ms}") };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
            left - 6.0,
            yy + 4.0
        );
        decade += 1.0;
    }
    for i in 0..=5 {
        let rate = x_max * f64::from(i) / 5.0;
        let xx = x(rate);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/>"##,
            top + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{rate:.0}</text>"#,
            top + ph + 18.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">sends per second (open loop)</text>"#,
        left + pw / 2.0,
        top + ph + 38.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">milliseconds (log scale)</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="{:.1}" fill="#555" font-size="11">{}</text>"##,
        h - 10.0,
        escape(caption)
    );
    // Lines and legend.
    let mut legend_y = top + 10.0;
    for ((target, p), points) in series {
        let color = PERCENTILES.iter().find(|(q, _)| q == p).map_or("#000", |(_, c)| c);
        let dash = if target == "ceiling" { r#" stroke-dasharray="6 4""# } else { "" };
        let path: Vec<String> = points
            .iter()
            .map(|(rate, ms)| format!("{:.1},{:.1}", x(*rate as f64), y(*ms)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            path.join(" ")
        );
        for (rate, ms) in points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                x(*rate as f64),
                y(*ms)
            );
        }
        let lx = left + pw + 12.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{color}" stroke-width="2"{dash}/>"#,
            lx + 26.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}">{} {}</text>"#,
            lx + 32.0,
            legend_y + 4.0,
            escape(target),
            p
        );
        legend_y += 18.0;
    }
    s.push_str("</svg>\n");
    s
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.max(1.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|c| *c >= v).unwrap_or(v)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_polyline_per_target_and_percentile() {
        let mut series = Series::new();
        for p in ["p50", "p99", "p999"] {
            for target in ["confab", "ceiling"] {
                let points = series.entry((target.to_owned(), p)).or_default();
                points.insert(1000, 0.5);
                points.insert(2000, 3.0);
            }
        }
        let svg = render(&series, "caption <x>");
        assert_eq!(svg.matches("<polyline").count(), 6);
        assert!(svg.contains("caption &lt;x&gt;"));
        assert_eq!(nice_ceiling(2000.0), 2000.0);
        assert_eq!(nice_ceiling(2100.0), 5000.0);
    }
}
