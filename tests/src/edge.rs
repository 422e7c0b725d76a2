//! The built worker under `wrangler dev`, with KV state of its own.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::procs::Proc;
use crate::{edge_health, free_port, http, repo_root, with_health_token};

/// The built worker under `wrangler dev`, with KV state of its own.
pub struct Edge {
    proc: Option<Proc>,
    pub url: String,
    port: u16,
    dir: tempfile::TempDir,
}

pub fn built_worker() -> PathBuf {
    let main = repo_root().join("edge/build/index.js");
    assert!(
        main.is_file(),
        "{} is missing: run scripts/build-edge.sh (make test does)",
        main.display()
    );
    main
}

impl Edge {
    /// `vars` are the worker's `[vars]`; `port` from [`free_port`], chosen before the issuer
    /// starts so it can push here.
    pub async fn start(port: u16, vars: &[(&str, &str)]) -> Self {
        Self::start_script(port, &built_worker(), vars, &[]).await
    }

    /// [`Self::start`] with more `[vars]` written as TOML values (`5`, `true`, `["x"]`), which
    /// wrangler passes to the worker as JSON values rather than strings.
    pub async fn start_with_toml_values(
        port: u16,
        vars: &[(&str, &str)],
        toml_values: &[(&str, &str)],
    ) -> Self {
        Self::start_script(port, &built_worker(), vars, toml_values).await
    }

    /// Any worker module under the same `wrangler dev` setup (the soak's baseline uses a
    /// trivial JavaScript worker).
    pub async fn start_script(
        port: u16,
        main: &Path,
        vars: &[(&str, &str)],
        toml_values: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = format!(
            "name = \"gatehouse-edge-e2e\"\nmain = \"{}\"\ncompatibility_date = \"2026-04-01\"\nsend_metrics = false\n\n[vars]\n",
            main.display()
        );
        for (k, v) in with_health_token(vars) {
            let _ = writeln!(
                config,
                "{k} = {}",
                serde_json::to_string(v).expect("toml string")
            );
        }
        for (k, v) in toml_values {
            let _ = writeln!(config, "{k} = {v}");
        }
        config.push_str("\n[[kv_namespaces]]\nbinding = \"GATEHOUSE_KV\"\nid = \"e2e\"\n\n[triggers]\ncrons = [\"* * * * *\"]\n");
        std::fs::write(dir.path().join("wrangler.toml"), config).expect("write wrangler.toml");
        let mut edge = Self {
            proc: None,
            url: format!("http://127.0.0.1:{port}"),
            port,
            dir,
        };
        edge.spawn("/_gatehouse/health").await;
        edge
    }

    /// Starts workerd and waits until it answers `ready_path`.
    async fn spawn(&mut self, ready_path: &str) {
        let wrangler = repo_root().join("node_modules/.bin/wrangler");
        assert!(
            wrangler.is_file(),
            "wrangler is missing: run scripts/setup.sh (make test does)"
        );
        let mut cmd = tokio::process::Command::new(wrangler);
        // Its Miniflare would fetch Cloudflare's `cf.json` from the internet: the tests reach
        // only the package registries.
        cmd.env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .current_dir(self.dir.path())
            .args([
                "dev",
                "--config",
                "wrangler.toml",
                "--ip",
                "127.0.0.1",
                "--port",
            ])
            .arg(self.port.to_string())
            .args([
                "--persist-to",
                "state",
                "--test-scheduled",
                "--log-level",
                "warn",
            ])
            // Parallel instances would fight over the default inspector port.
            .arg("--inspector-port")
            .arg(free_port().to_string())
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("NO_COLOR", "1");
        self.proc = Some(Proc::spawn(cmd, &self.dir.path().join("wrangler.log")));
        let ready = format!("{}{ready_path}", self.url);
        let client = http();
        let start = Instant::now();
        while client.get(&ready).send().await.is_err() {
            if start.elapsed() > Duration::from_mins(1) {
                let log = std::fs::read_to_string(self.dir.path().join("wrangler.log"))
                    .unwrap_or_default();
                panic!("wrangler dev did not serve within a minute; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What `wrangler dev` and the worker printed so far (the worker's `console.warn` lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("wrangler.log")).unwrap_or_default()
    }

    /// Stops workerd and starts it again on the same port and KV state.
    pub async fn restart(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.stop().await;
        }
        self.spawn("/_gatehouse/health").await;
    }

    /// [`Self::restart`], waiting on a path the worker refuses before it reads anything (an
    /// escaped `/`, `invalid_path`): its isolate holds no list and no keys yet, as a new one on
    /// Cloudflare does before its first request. (The health check loads both.)
    pub async fn restart_cold(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.stop().await;
        }
        self.spawn("/%2F").await;
    }

    pub async fn health(&self) -> Value {
        edge_health(&self.url).await
    }

    /// Asserts that the health route reports `degraded`, with a problem naming `problem`.
    pub async fn assert_degraded_by(&self, problem: &str) {
        let health = self.health().await;
        assert_eq!(health.get("status"), Some(&"degraded".into()), "{health}");
        let problems = health.get("problems").map(Value::to_string);
        assert!(problems.is_some_and(|p| p.contains(problem)), "{health}");
    }

    /// Fires the cron trigger (the pull path). The handler answers 200 whether or not its pull
    /// worked (it logs a failed one, as on Cloudflare), so tests judge the pull by its effect; a
    /// failed run here is the runtime's own (seen once under a fully parallel load), and is
    /// followed by another, as Cloudflare's next run would follow it: up to three, each failure
    /// printed, then the test fails with what the last one answered.
    pub async fn run_cron(&self) {
        let url = format!("{}/__scheduled?cron=*+*+*+*+*", self.url);
        let mut last = String::new();
        for attempt in 1..=3 {
            match http().get(&url).send().await {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => {
                    let status = response.status();
                    last = format!("{status}: {}", response.text().await.unwrap_or_default());
                }
                Err(e) => last = e.to_string(),
            }
            eprintln!("cron run {attempt} at {} failed: {last}", self.url);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("the cron trigger failed three times; last: {last}");
    }

    /// RSS in MB of wrangler and its workerd processes (one process group).
    pub fn rss_mb(&self) -> f64 {
        let Some(pgid) = self.proc.as_ref().and_then(Proc::pid) else {
            return 0.0;
        };
        let mut kb = 0.0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // Fields after the parenthesised command: state, ppid, pgrp, …
            let pgrp = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(2));
            if pgrp.and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
                let status =
                    std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
                kb += status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0);
            }
        }
        kb / 1024.0
    }
}
