//! Running Node scripts of the repository with JSON in and out.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::repo_root;

/// Runs `node <script>` from the repository root with `input` as JSON on stdin and parses the
/// JSON it prints. Panics, with the fix, when Node or the npm packages are missing.
pub fn node_json(script: &str, input: &serde_json::Value) -> serde_json::Value {
    let root = repo_root();
    assert!(
        root.join("node_modules/jose").is_dir(),
        "node_modules/jose is missing: run scripts/setup.sh (make test does)"
    );
    let mut child = Command::new("node")
        .arg(root.join(script))
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): Node.js 20+ must be on PATH"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.to_string().as_bytes())
        .expect("write to node");
    let out = child.wait_with_output().expect("wait for node");
    assert!(
        out.status.success(),
        "node {script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "node {script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
