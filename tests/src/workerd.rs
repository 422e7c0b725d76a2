//! A worker module in workerd through Miniflare directly (`bench/edge/serve.mjs`), without
//! `wrangler dev`'s proxy: the benchmark runs our worker and its baselines this way.

use std::path::Path;
use std::time::Duration;

use crate::procs::Proc;
use crate::{eventually, free_port, http, repo_root};

pub struct Workerd {
    _proc: Proc,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Workerd {
    /// `bundle` runs esbuild over `script` first (for workers importing npm packages).
    pub async fn start(script: &Path, vars: &[(&str, &str)], bundle: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let vars: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        let config = serde_json::json!({
            "script": script, "port": port, "vars": vars, "bundle": bundle,
        });
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(repo_root().join("bench/edge/serve.mjs"))
            .arg(config.to_string())
            .current_dir(repo_root());
        let proc = Proc::spawn(cmd, &dir.path().join("workerd.log"));
        let url = format!("http://127.0.0.1:{port}");
        let probe = format!("{url}/_gatehouse/health");
        let client = http();
        eventually("workerd to serve", Duration::from_secs(30), || {
            let req = client.get(&probe).send();
            async move { req.await.ok().map(|_| ()) }
        })
        .await;
        Self {
            _proc: proc,
            url,
            _dir: dir,
        }
    }
}
