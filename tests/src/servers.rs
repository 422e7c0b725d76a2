//! Node.js servers of the repository: the demo origin, and the base the workerd launchers
//! stand on.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::procs::Proc;
use crate::{free_port, http, json_of, repo_root};

/// A Node.js server of the repository on a free port, with its log in a directory of its own,
/// killed when dropped.
pub(crate) struct NodeServer {
    proc: Proc,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl NodeServer {
    /// The process group of the server and everything it started (workerd, for Miniflare).
    pub(crate) fn process_group(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Kills the server's process group and waits for it to be gone.
    pub(crate) async fn stop(self) {
        self.proc.stop().await;
    }

    /// Runs `node <script> <args(port)>` from the repository root and waits until `probe` (a
    /// path) answers at all.
    pub(crate) async fn start(
        script: &str,
        args: impl FnOnce(u16) -> Vec<String>,
        probe: &str,
        wait: Duration,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(repo_root().join(script))
            .args(args(port))
            .current_dir(repo_root());
        let log = dir.path().join("node.log");
        let proc = Proc::spawn(cmd, &log);
        let url = format!("http://127.0.0.1:{port}");
        let probe = format!("{url}{probe}");
        let client = http();
        let start = Instant::now();
        // Ready means a success status, not just any answer (a 500 is not ready).
        while !client
            .get(&probe)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if start.elapsed() > wait {
                let printed = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("{script} did not serve within {wait:?}; its log:\n{printed}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            proc,
            url,
            _dir: dir,
        }
    }
}

/// The demo origin (`dev/origin.mjs`), which records what reaches it.
pub struct Origin {
    _server: NodeServer,
    pub url: String,
}

impl Origin {
    pub async fn start() -> Self {
        let server = NodeServer::start(
            "dev/origin.mjs",
            |port| vec![port.to_string()],
            "/__origin/requests",
            Duration::from_secs(10),
        )
        .await;
        Self {
            url: server.url.clone(),
            _server: server,
        }
    }

    /// What reached the origin since the last call.
    pub async fn requests(&self) -> Vec<Value> {
        let (status, json) = json_of(
            http()
                .get(format!("{}/__origin/requests", self.url))
                .send()
                .await
                .expect("origin"),
        )
        .await;
        // Loudly: an empty list from a broken recording route would pass "nothing reached it".
        assert_eq!(status, 200, "the origin's record: {json}");
        json.as_array()
            .cloned()
            .unwrap_or_else(|| panic!("the origin's record is not a list: {json}"))
    }
}
