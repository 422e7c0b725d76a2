//! `wrk` on loopback, parsed, for the benchmark suite. It shares the machine's cores with the
//! servers it loads.

use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, Copy, Default)]
pub struct WrkRun {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    pub non_2xx: u64,
    pub socket_errors: u64,
}

pub struct Load<'a> {
    pub url: &'a str,
    pub secs: f64,
    pub threads: u32,
    pub connections: u32,
    pub headers: Vec<String>,
    pub script: Option<&'a Path>,
    pub env: Vec<(String, String)>,
}

impl<'a> Load<'a> {
    pub fn new(url: &'a str, secs: f64, threads: u32, connections: u32) -> Self {
        Self {
            url,
            secs,
            threads,
            connections,
            headers: Vec::new(),
            script: None,
            env: Vec::new(),
        }
    }

    #[must_use]
    pub fn header(mut self, header: String) -> Self {
        self.headers.push(header);
        self
    }

    #[must_use]
    pub fn script(mut self, script: &'a Path, env: Vec<(String, String)>) -> Self {
        self.script = Some(script);
        self.env = env;
        self
    }

    pub fn run(&self) -> WrkRun {
        let mut cmd = Command::new("wrk");
        cmd.arg("--latency")
            .arg(format!("-d{}s", self.secs.max(1.0).round()))
            .arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg("--timeout")
            .arg("10s");
        for h in &self.headers {
            cmd.arg("-H").arg(h);
        }
        if let Some(script) = self.script {
            cmd.arg("-s").arg(script);
        }
        cmd.arg(self.url).envs(self.env.iter().cloned());
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run wrk ({e}): scripts/setup.sh installs it"));
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            // Reported as a run with an error, so the caller re-runs or marks it.
            eprintln!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
            return WrkRun {
                rps: f64::NAN,
                p50_ms: f64::NAN,
                p99_ms: f64::NAN,
                socket_errors: 1,
                ..WrkRun::default()
            };
        }
        parse(&text)
    }

    /// Runs until a run sees no socket error, no unexpected status and some requests, at most
    /// `1 + reruns` times. Returns the last run and how many times it ran again.
    pub fn run_clean(&self, reruns: u32, expect_2xx: bool) -> (WrkRun, u32) {
        let mut again = 0;
        loop {
            let run = self.run();
            let clean =
                run.requests > 0 && run.socket_errors == 0 && (!expect_2xx || run.non_2xx == 0);
            if clean || again == reruns {
                return (run, again);
            }
            again += 1;
        }
    }
}

fn millis(value: &str) -> f64 {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

/// What `wrk --latency` printed, read; a figure it did not print is NaN (or 0 for counts).
pub fn parse(text: &str) -> WrkRun {
    let mut run = WrkRun {
        rps: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        ..WrkRun::default()
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => run.rps = v.parse().unwrap_or(f64::NAN),
            ["50%", v] => run.p50_ms = millis(v),
            ["99%", v] => run.p99_ms = millis(v),
            [n, "requests", "in", ..] => run.requests = n.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => run.non_2xx = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                run.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    run
}
