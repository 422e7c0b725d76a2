//! A worker module in workerd through Miniflare directly (`bench/edge/serve.mjs`), without
//! `wrangler dev`'s proxy: the benchmark runs our worker and its baselines this way.

use std::path::Path;
use std::time::Duration;

use crate::NodeServer;

pub struct Workerd {
    _server: NodeServer,
    pub url: String,
}

impl Workerd {
    /// `bundle` runs esbuild over `script` first (for workers importing npm packages).
    pub async fn start(script: &Path, vars: &[(&str, &str)], bundle: bool) -> Self {
        Self::start_with(script, vars, bundle, true).await
    }

    /// The worker without its KV binding, as a deploy that forgot it would run.
    pub async fn start_without_kv(script: &Path, vars: &[(&str, &str)]) -> Self {
        Self::start_with(script, vars, false, false).await
    }

    async fn start_with(script: &Path, vars: &[(&str, &str)], bundle: bool, kv: bool) -> Self {
        let vars: serde_json::Map<String, serde_json::Value> = vars
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
            _server: server,
        }
    }
}
