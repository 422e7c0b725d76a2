//! Running Node and Python scripts of the repository with JSON in and out.

use std::io::Write as _;
use std::path::Path;
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
    run_json(Path::new("node"), script, input)
}

/// Runs `<script>` with the Python of the interop virtualenv (`.venv-interop`: `PyJWT` and `Authlib`
/// at tests/py/requirements.txt's versions), as [`node_json`] runs a Node script.
pub fn python_json(script: &str, input: &serde_json::Value) -> serde_json::Value {
    let python = repo_root().join(".venv-interop/bin/python");
    assert!(
        python.is_file(),
        ".venv-interop is missing: run scripts/setup.sh (make test does)"
    );
    run_json(&python, script, input)
}

fn run_json(program: &Path, script: &str, input: &serde_json::Value) -> serde_json::Value {
    let root = repo_root();
    let name = program.display();
    let mut child = Command::new(program)
        .arg(root.join(script))
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {name} ({e}): run scripts/setup.sh"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("write to {name}: {e}"));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {name}: {e}"));
    assert!(
        out.status.success(),
        "{name} {script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{name} {script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
