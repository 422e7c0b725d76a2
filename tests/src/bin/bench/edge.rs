//! The edge in workerd through Miniflare (`bench/edge/serve.mjs`): our worker against the jose
//! worker (rows 1a, 1b), and artifact sizes (row 4). Row 5 (propagation across locations) is in propagation.rs.

use std::path::Path;

use gatehouse_tests::{Origin, Workerd, http, repo_root};

use crate::Settings;
use crate::fixture::{AUDIENCE, Fixture, ISSUER};
use crate::stats::{Goal, Row, Sample};
use gatehouse_tests::wrk::{Load, WrkRun};

async fn post(url: &str, body: String) -> u16 {
    http()
        .post(url)
        .body(body)
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

async fn status(url: &str, token: &str) -> u16 {
    http()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .status()
        .as_u16()
}

/// The workers rows 1a–1c compare, serving and holding the same list, each checked to pass the
/// valid token and refuse the revoked one before anything is timed.
struct Lineup {
    _origin: Origin,
    ours: Workerd,
    jose: Workerd,
    trivial: Workerd,
    floor: Workerd,
    /// The jose worker forwarding by the gate's rules (`FORWARD_RULES = "gate"`).
    jose_as_the_gate: Workerd,
}

impl Lineup {
    async fn start(s: &Settings, fix: &Fixture) -> Self {
        let origin = Origin::start().await;
        let revocations = fix.revocations_at(s.edge_list_entries, 1, gatehouse_tests::unix_now());
        let vars = [
            ("ORIGIN_URL", origin.url.as_str()),
            ("ISSUER_URL", "http://127.0.0.1:9"),
            ("EXPECTED_ISSUER", ISSUER),
            ("EXPECTED_AUDIENCE", AUDIENCE),
            ("JWKS", fix.jwks.as_str()),
            ("PUBLIC_PATHS", "/public/*"),
            ("KV_REFRESH_SECS", "5"),
            // The list is pushed here; the hot path is measured without the fast path's polls.
            ("DELTA_POLL_MS", "0"),
        ];
        let root = repo_root();
        let ours = Workerd::start(&root.join("edge/build/index.js"), &vars, false).await;
        let jose = Workerd::start(&root.join("bench/edge/jose-worker.mjs"), &vars, true).await;
        // What workerd itself allows: a worker that answers without doing anything.
        let trivial =
            Workerd::start(&root.join("tests/soak/trivial-worker.mjs"), &vars, false).await;
        let floor = Workerd::start(&root.join("bench/edge/floor-worker.mjs"), &vars, false).await;
        let gate_rules = [&vars[..], &[("FORWARD_RULES", "gate")]].concat();
        let jose_as_the_gate =
            Workerd::start(&root.join("bench/edge/jose-worker.mjs"), &gate_rules, true).await;
        assert_eq!(
            post(
                &format!("{}/_gatehouse/sync", ours.url),
                revocations.snapshot.clone()
            )
            .await,
            200
        );
        for jose in [&jose, &jose_as_the_gate] {
            assert_eq!(
                post(
                    &format!("{}/_bench/revocations", jose.url),
                    revocations.jose_json.to_string()
                )
                .await,
                200
            );
        }
        for edge in [&ours, &jose, &jose_as_the_gate] {
            for path in ["/_gatehouse/check", "/api/bench"] {
                let url = format!("{}{path}", edge.url);
                assert_eq!(status(&url, &fix.token).await, 200, "{url}");
                assert_eq!(status(&url, &fix.revoked_token).await, 401, "{url}");
            }
        }
        // The floor checks the signature only: the revoked token passes it, a tampered one not.
        for path in ["/_gatehouse/check", "/api/bench"] {
            let url = format!("{}{path}", floor.url);
            assert_eq!(status(&url, &fix.token).await, 200, "{url}");
            let tampered = crate::cpu::tampered(&fix.token);
            assert_eq!(status(&url, &tampered).await, 401, "{url}");
        }
        Self {
            _origin: origin,
            ours,
            jose,
            trivial,
            floor,
            jose_as_the_gate,
        }
    }

    fn cpu_workers(&self) -> crate::cpu::Workers<'_> {
        crate::cpu::Workers {
            ours: &self.ours,
            jose: &self.jose,
            nothing: &self.trivial,
            floor: &self.floor,
            jose_as_the_gate: &self.jose_as_the_gate,
        }
    }
}

/// Row 1c alone (`--only cpu`), for iterating on the worker's per-request cost.
pub async fn cpu_only(s: &Settings, fix: &Fixture) -> Vec<Row> {
    let lineup = Lineup::start(s, fix).await;
    crate::cpu::rows(s, fix, &lineup.cpu_workers()).await
}

fn marked(marks: &[String]) -> String {
    if marks.is_empty() {
        String::new()
    } else {
        format!("; MARKED: {}", marks.join("; "))
    }
}

/// Rows 1a and 1b: the same requests through our worker and through the jose worker, each in
/// its own workerd (Miniflare, no `wrangler dev` proxy), alternating so drift hits both alike.
pub async fn gatekeeping(s: &Settings, fix: &Fixture) -> Vec<Row> {
    let lineup = Lineup::start(s, fix).await;
    // Row 1c, the primary measure: CPU per request, interleaved.
    let mut rows = crate::cpu::rows(s, fix, &lineup.cpu_workers()).await;
    let (ours, jose, trivial) = (&lineup.ours, &lineup.jose, &lineup.trivial);
    let auth = format!("Authorization: Bearer {}", fix.token);
    let mut samples: [[Sample; 2]; 4] = Default::default(); // [check rps, check p99, fwd rps, fwd p99] x [ours, jose]
    let mut ceiling = Sample::default();
    // Runs with socket errors or unexpected statuses are run again (twice at most) and, if
    // still unclean, kept and marked in the report instead of stopping the suite.
    let mut marks = Vec::new();
    let mut note_errors = |what: &str, run: &WrkRun, reruns: u32| {
        if reruns > 0 {
            marks.push(format!(
                "{what}: re-run {reruns}× (last run: {} socket errors, {} non-2xx)",
                run.socket_errors, run.non_2xx
            ));
        }
    };
    for _ in 0..s.repeats {
        let url = format!("{}/_gatehouse/check", trivial.url);
        let (run, reruns) = Load::new(&url, s.load_secs, 1, s.edge_connections).run_clean(2, true);
        note_errors("do-nothing worker", &run, reruns);
        ceiling.push(run.rps);
        for (side, edge) in [ours, jose].into_iter().enumerate() {
            for (i, path) in ["/_gatehouse/check", "/api/bench"].into_iter().enumerate() {
                let url = format!("{}{path}", edge.url);
                let (run, reruns) = Load::new(&url, s.load_secs, 1, s.edge_connections)
                    .header(auth.clone())
                    .run_clean(2, true);
                note_errors(&url, &run, reruns);
                samples[i * 2][side].push(run.rps);
                samples[i * 2 + 1][side].push(run.p99_ms);
            }
        }
    }
    let marked = marked(&marks);
    let [
        [check_rps, jose_check_rps],
        [check_p99, jose_check_p99],
        [fwd_rps, jose_fwd_rps],
        [fwd_p99, jose_fwd_p99],
    ] = samples;
    // Each worker's own cost per request: its time per request less the do-nothing worker's,
    // run by run (the runtime's share is the same for both).
    let work = |rps: &Sample| {
        Sample(
            rps.0
                .iter()
                .zip(&ceiling.0)
                .map(|(r, c)| 1e6 / r - 1e6 / c)
                .collect(),
        )
    };
    let (check_work, jose_check_work) = (work(&check_rps), work(&jose_check_rps));
    let list_note = format!(
        "secondary to row 1c: `wrk -t1 -c{}`, {} s per run, same token; a {}-entry revocation \
         list in both{marked}",
        s.edge_connections, s.load_secs, s.edge_list_entries
    );
    rows.extend([
        Row::new(
            "1a",
            "edge verify-only probe (`/_gatehouse/check`)",
            " req/s",
            check_rps,
        )
        .against("jose worker", jose_check_rps)
        .goal(Goal::RatioAtLeast(1.3))
        .note(list_note.clone()),
        Row::new(
            "1a",
            "ceiling: a worker that answers without any work",
            " req/s",
            ceiling,
        )
        .note("what workerd serves here at all, wrk sharing the 2 cores; it bounds both"),
        Row::new(
            "1a",
            "per-request work above that ceiling (wasm glue included)",
            " µs",
            check_work,
        )
        .against("jose worker", jose_check_work)
        .signed()
        .note("1e6/req/s minus the do-nothing worker's; lower is better; negative: within noise"),
        Row::new("1a", "edge verify-only probe, p99", " ms", check_p99)
            .against("jose worker", jose_check_p99)
            .goal(Goal::RatioAtMost(1.0)),
        Row::new(
            "1b",
            "edge verified + forwarded to the origin",
            " req/s",
            fwd_rps,
        )
        .against("jose worker", jose_fwd_rps)
        .goal(Goal::RatioAtLeast(1.0))
        .note("both bounded by workerd's outbound fetch to the Node origin"),
        Row::new("1b", "edge verified + forwarded, p99", " ms", fwd_p99)
            .against("jose worker", jose_fwd_p99)
            .goal(Goal::RatioAtMost(1.0)),
    ]);
    rows
}

/// `path` gzipped at level 9, in KiB. A file missing or unreadable fails the row (a renamed
/// file would otherwise count as 0 and shrink the figure).
fn gzipped_kib(path: &Path) -> f64 {
    let out = std::process::Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .expect("gzip");
    assert!(
        out.status.success(),
        "gzip {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout.len() as f64 / 1024.0
}

fn find_wasm(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| {
            panic!(
                "{} ({e}): run scripts/build-edge.sh and scripts/build-js.sh",
                dir.display()
            )
        })
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wasm"))
        .unwrap_or_else(|| panic!("no .wasm in {}", dir.display()))
}

/// Row 4: the built artifacts' `.wasm`, gzip -9.
pub fn sizes() -> Vec<Row> {
    let root = repo_root();
    let worker = find_wasm(&root.join("edge/build"));
    let package = find_wasm(&root.join("edge/js/pkg"));
    vec![
        Row::new(
            "4",
            "worker `.wasm`, gzipped",
            " KiB",
            Sample::one(gzipped_kib(&worker)),
        )
        // Issue 13's budget: 200 KB.
        .goal(Goal::AtMost(200_000.0 / 1024.0))
        .note(format!(
            "raw {:.0} KiB",
            std::fs::metadata(&worker).map_or(0, |m| m.len()) as f64 / 1024.0
        )),
        Row::new(
            "4",
            "`@gatehouse/verify` `.wasm`, gzipped",
            " KiB",
            Sample::one(gzipped_kib(&package)),
        )
        .goal(Goal::AtMost(150.0))
        .note(format!(
            "raw {:.0} KiB",
            std::fs::metadata(&package).map_or(0, |m| m.len()) as f64 / 1024.0
        )),
        Row::new(
            "4",
            "`@gatehouse/verify` as a browser fetches it (`.wasm` and every JS file of the \
             browser entry, each gzipped)",
            " KiB",
            Sample::one(browser_download_kib(&root.join("edge/js/pkg"), &package)),
        )
        // Issue 15's goal: 150 KB.
        .goal(Goal::AtMost(150_000.0 / 1024.0)),
    ]
}

/// The browser entry's files, unminified, each gzipped: `index.js` and everything it imports
/// (the wasm-bindgen glue, the error class, the guards, the remote verifier, the client) plus
/// the `.wasm`.
fn browser_download_kib(pkg: &Path, wasm: &Path) -> f64 {
    let mut files = vec![wasm.to_path_buf()];
    for name in [
        "index.js",
        "gatehouse_verify.js",
        "guards.js",
        "remote.js",
        "client.js",
    ] {
        files.push(pkg.join(name));
    }
    let snippets = pkg.join("snippets");
    let mut stack = vec![snippets];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "js") {
                files.push(path);
            }
        }
    }
    files.iter().map(|f| gzipped_kib(f)).sum()
}
