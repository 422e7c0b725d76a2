//! The report: a markdown table of every row and an SVG chart of each goal's margin.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::Settings;
use crate::stats::{Goal, Row, fmt_num};

fn shell(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// How far past its goal a row is: ≥ 1 means met, whichever direction the goal points.
fn margin(row: &Row) -> Option<f64> {
    let ours = row.ours.median();
    Some(match row.goal {
        Goal::RatioAtLeast(x) => row.ratio()? / x,
        Goal::RatioAtMost(x) => x / row.ratio()?,
        Goal::AtLeast(x) => ours / x,
        Goal::AtMost(x) => x / ours,
        Goal::None => return None,
    })
}

pub fn markdown(s: &Settings, rows: &[Row], took: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Gatehouse benchmark report\n");
    let _ = writeln!(
        out,
        "Written by `{}` on {} at commit `{}`. Machine: {}, {} cores, shared by the load \
         generator (`wrk` on loopback), the servers and PostgreSQL, so absolute figures are \
         noisy; every goal is a ratio against a baseline measured in this same run, or a bound \
         with margin. Each figure is the median of its samples (min–max and their number `n` in \
         brackets; {} repeats unless `n` says otherwise; row 5's are percentiles over its \
         trials); load runs last {} s each. The workers run in workerd through Miniflare \
         (`bench/edge/serve.mjs`). The suite took {:.1} minutes, the builds before it not \
         counted.\n",
        if s.smoke {
            "make bench-smoke"
        } else {
            "make bench"
        },
        shell("date -u '+%Y-%m-%d %H:%M UTC'"),
        shell(
            "git rev-parse --short HEAD; git diff --quiet HEAD || echo '(+ uncommitted changes)'"
        )
        .replace('\n', " "),
        shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        s.repeats,
        s.load_secs,
        took.as_secs_f64() / 60.0,
    );
    if s.smoke {
        let _ = writeln!(
            out,
            "**Smoke mode**: tiny N and durations; the figures only show that every row still runs.\n"
        );
    }
    let _ = writeln!(
        out,
        "| # | what | Gatehouse | baseline (same run) | ratio | goal | met |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        let baseline = row.baseline.as_ref().map_or_else(
            || "—".to_owned(),
            |(name, b)| format!("{}: {}", name, b.show(row.unit)),
        );
        let ratio = row
            .ratio()
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"));
        let met = match row.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let what = if row.note.is_empty() {
            row.what.clone()
        } else {
            format!("{}<br><sub>{}</sub>", row.what, row.note)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.id,
            what,
            row.ours.show(row.unit),
            baseline,
            ratio,
            row.goal_text(),
            met
        );
    }
    let _ = writeln!(out, "\n![Margin against each goal](benchmarks.svg)\n");
    let _ = writeln!(
        out,
        "The chart shows each goal's margin: the figure against its goal, oriented so that 1 is \
         the goal and more is better. What each optimisation bought, and why any goal is \
         missed, is in [performance.md](performance.md)."
    );
    out
}

pub fn svg(rows: &[Row]) -> String {
    let bars: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|r| margin(r).map(|m| (format!("{} {}", r.id, r.what.replace('`', "")), m)))
        .collect();
    let (label_w, bar_w, row_h) = (430.0, 360.0, 22.0);
    let max = 3.0_f64;
    let height = row_h * bars.len() as f64 + 50.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n",
        label_w + bar_w + 60.0
    );
    let _ = writeln!(
        out,
        "<text x=\"4\" y=\"16\" font-weight=\"bold\">Margin against each goal (1 = goal, longer is better, capped at {max}×)</text>"
    );
    for (i, (label, m)) in bars.iter().enumerate() {
        let y = 30.0 + row_h * i as f64;
        let w = (m.min(max) / max * bar_w).max(1.0);
        let colour = if *m >= 1.0 { "#2e7d32" } else { "#c62828" };
        let label = label.replace('&', "&amp;").replace('<', "&lt;");
        let _ = writeln!(
            out,
            "<text x=\"4\" y=\"{}\">{label}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\">{}×</text>",
            y + 14.0,
            row_h - 6.0,
            label_w + w + 4.0,
            y + 14.0,
            fmt_num(*m)
        );
    }
    let goal_x = label_w + bar_w / max;
    let _ = writeln!(
        out,
        "<line x1=\"{goal_x}\" y1=\"24\" x2=\"{goal_x}\" y2=\"{}\" stroke=\"#000\" stroke-dasharray=\"4 3\"/>\n</svg>",
        height - 10.0
    );
    out
}

pub fn write(s: &Settings, rows: &[Row], took: Duration) {
    std::fs::create_dir_all(&s.out).expect("report directory");
    let md = s.out.join("benchmarks.md");
    let text = markdown(s, rows, took);
    std::fs::write(&md, &text).expect("write report");
    std::fs::write(s.out.join("benchmarks.svg"), svg(rows)).expect("write chart");
    println!("{text}");
    println!("report: {}", md.display());
}
