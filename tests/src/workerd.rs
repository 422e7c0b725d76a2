//! A worker module in workerd through Miniflare directly (`bench/edge/serve.mjs`), without
//! `wrangler dev`'s proxy: the benchmark runs our worker and its baselines this way.

use std::path::Path;
use std::time::Duration;

use crate::NodeServer;

pub struct Workerd {
    server: NodeServer,
    pub url: String,
}

impl Workerd {
    /// `bundle` runs esbuild over `script` first (for workers importing npm packages).
    pub async fn start(script: &Path, vars: &[(&str, &str)], bundle: bool) -> Self {
        Self::start_with(script, vars, bundle, true.into()).await
    }

    /// The worker without its KV binding, as a deploy that forgot it would run.
    pub async fn start_without_kv(script: &Path, vars: &[(&str, &str)]) -> Self {
        Self::start_with(script, vars, false, false.into()).await
    }

    /// The worker on a KV that refuses the first `n` `op`s of each `(key, n)` (a SIMULATION, in
    /// `bench/edge/serve.mjs`); every other operation reaches a real local KV namespace.
    pub async fn start_with_refused_kv(
        script: &Path,
        vars: &[(&str, &str)],
        op: KvOp,
        refused: &[(&str, u32)],
    ) -> Self {
        let setting = match op {
            KvOp::Put => "failPuts",
            KvOp::Get => "failGets",
        };
        let kv = serde_json::json!({ setting: refusal_counts(refused) });
        Self::start_with(script, vars, false, kv).await
    }

    /// The worker on a KV kept in `dir`, refusing the first `n` gets of each `(key, n)` (a
    /// SIMULATION, as above): a later start on the same `dir` is a new isolate beside what an
    /// earlier one stored. Stop the earlier first ([`Self::stop`]): two may not share `dir`.
    pub async fn start_on_kv_in(
        script: &Path,
        vars: &[(&str, &str)],
        dir: &Path,
        refused_gets: &[(&str, u32)],
    ) -> Self {
        let kv = serde_json::json!({ "failGets": refusal_counts(refused_gets), "persist": dir });
        Self::start_with(script, vars, false, kv).await
    }

    /// Stops the worker and waits until it is gone.
    pub async fn stop(self) {
        self.server.stop().await;
    }

    async fn start_with(
        script: &Path,
        vars: &[(&str, &str)],
        bundle: bool,
        kv: serde_json::Value,
    ) -> Self {
        let vars: serde_json::Map<String, serde_json::Value> = crate::with_health_token(vars)
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        let server = NodeServer::start(
            "bench/edge/serve.mjs",
            |port| {
                let config = serde_json::json!({
                    "script": script, "port": port, "vars": vars, "bundle": bundle, "kv": kv,
                });
                vec![config.to_string()]
            },
            "/_gatehouse/health",
            Duration::from_secs(30),
        )
        .await;
        Self {
            url: server.url.clone(),
            server,
        }
    }

    /// CPU time (user + system) used so far by this worker's workerd processes, in seconds:
    /// every `workerd` in the server's process group, read from `/proc` ([`process_cpu_secs`]).
    /// Node (Miniflare) is not on the request path and is left out.
    pub fn workerd_cpu_secs(&self) -> f64 {
        let Some(group) = self.server.process_group() else {
            return f64::NAN;
        };
        let mut secs = 0.0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid pgrp ... utime stime`: fields after the comm, 1-based 3..
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let in_group = fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(group);
            if in_group && head.ends_with("(workerd") {
                let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
                let ticks = field(11).unwrap_or(0) + field(12).unwrap_or(0);
                secs += process_cpu_secs(&entry.path(), ticks);
            }
        }
        secs
    }
}

/// One process's CPU time in seconds: its threads' run times from
/// `/proc/<pid>/task/<tid>/schedstat`, in nanoseconds, or, where the kernel keeps no schedstat,
/// its `utime + stime` (`ticks`, 10 ms each: a run's figure is then rounded by up to a tick at
/// each reading, which row 1c's slices read four times a round). A thread that exits takes its
/// time out of the sum; a do-nothing worker's workerd kept the same four threads over 300
/// requests (checked by hand, 2026-12-07), not watched in every run.
#[allow(clippy::cast_precision_loss)] // nanoseconds and ticks of a bench run fit f64 exactly
fn process_cpu_secs(process: &Path, ticks: u64) -> f64 {
    let threads_ns = std::fs::read_dir(process.join("task"))
        .ok()
        .and_then(|tasks| {
            tasks
                .flatten()
                .map(|task| {
                    let schedstat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
                    schedstat.split_whitespace().next()?.parse::<u64>().ok()
                })
                .sum::<Option<u64>>()
        });
    threads_ns.map_or(ticks as f64 / clock_ticks_per_sec(), |ns| ns as f64 / 1e9)
}

/// `getconf CLK_TCK`: the unit of `/proc/<pid>/stat`'s CPU times (100 on Linux, read once).
fn clock_ticks_per_sec() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// `bench/edge/serve.mjs`'s refusals: how many of each key's operations to refuse.
fn refusal_counts(refused: &[(&str, u32)]) -> serde_json::Map<String, serde_json::Value> {
    refused
        .iter()
        .map(|(key, n)| ((*key).to_owned(), (*n).into()))
        .collect()
}

/// A KV operation the simulation can refuse.
#[derive(Debug, Clone, Copy)]
pub enum KvOp {
    Put,
    Get,
}
