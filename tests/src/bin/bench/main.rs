//! The benchmark suite: Gatehouse against what a user would pick instead, side by side in one
//! run on one machine, written up as a report (markdown + SVG chart).
//!
//! `make bench` (full, writes docs/benchmarks.md) or `make bench-smoke` (seconds, tiny N, part of
//! `make test`, so the suite cannot rot). Needs the built worker and JS package and, for the
//! full run, a release build of the issuer (the make targets build them).
#![allow(
    clippy::indexing_slicing,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod cpu;
mod edge;
mod fixture;
mod issuer;
mod micro;
mod propagation;
mod report;
mod stats;

use std::path::PathBuf;

use fixture::Fixture;
use stats::{Goal, Row, Sample};

pub struct Settings {
    smoke: bool,
    repeats: usize,
    load_secs: f64,
    micro_secs: f64,
    edge_connections: u32,
    edge_list_entries: usize,
    big_list_entries: usize,
    propagation_trials: usize,
    out: PathBuf,
}

impl Settings {
    fn from_args() -> Self {
        let smoke = std::env::args().any(|a| a == "--smoke");
        let out_dir = |default: PathBuf| {
            std::env::args()
                .skip_while(|a| a != "--out")
                .nth(1)
                .map_or(default, PathBuf::from)
        };
        let root = gatehouse_tests::repo_root();
        if smoke {
            Self {
                smoke,
                repeats: 1,
                load_secs: 1.0,
                micro_secs: 0.2,
                edge_connections: 8,
                edge_list_entries: 100,
                big_list_entries: 100_000,
                propagation_trials: 3,
                out: out_dir(root.join("target/bench-smoke")),
            }
        } else {
            Self {
                smoke,
                repeats: 3,
                load_secs: 10.0,
                micro_secs: 2.0,
                edge_connections: 16,
                edge_list_entries: 10_000,
                big_list_entries: 100_000,
                propagation_trials: 50,
                out: out_dir(root.join("docs")),
            }
        }
    }
}

/// Rows 2, 3, 6 and 10: in-process figures, native and wasm.
fn micro_rows(s: &Settings, fix: &Fixture) -> Vec<Row> {
    let small = fix.revocations(s.edge_list_entries, 1);
    let big = fix.revocations(s.big_list_entries, 2);
    let (mut ours, mut jwt, mut native_checked_us) =
        (Sample::default(), Sample::default(), Sample::default());
    for _ in 0..s.repeats {
        ours.push(micro::gatehouse_verify(fix, &small.list, s.micro_secs));
        jwt.push(micro::jsonwebtoken_verify(fix, s.micro_secs));
        native_checked_us.push(1e6 / micro::gatehouse_verify(fix, &big.list, s.micro_secs));
    }
    let node = micro::node(fix, &small.snapshot, &big.snapshot, s.repeats, s.micro_secs);
    let list = micro::list_figures(fix, &big.snapshot, s.repeats.max(5), s.micro_secs);
    let entries = s.big_list_entries;
    vec![
        Row::new("2", "CPU per verified request in the wasm (verify + revocation lookup)", " µs", Sample(node.wasm_checked_us))
            .against("native gatehouse-shared", native_checked_us)
            .goal(Goal::RatioAtMost(1.5))
            .note("the built `@gatehouse/verify` wasm under Node (the same core as the worker, which hands the Ed25519 equation to the runtime's WebCrypto instead)"),
        Row::new("3", "JS package: EdDSA verifications/s, one Node process", " /s", Sample(node.wasm_verify_per_sec))
            .against("jose jwtVerify, imported key", Sample(node.jose_verify_per_sec))
            .goal(Goal::RatioAtLeast(1.5)),
        Row::new("6", format!("revocation snapshot, {entries} live entries"), " KiB", Sample::one(list.snapshot_bytes / 1024.0))
            .goal(Goal::AtMost(2048.0)),
        Row::new("6", "refresh CPU: verify + load the snapshot (the package's wasm, Node)", " ms", Sample(node.wasm_refresh_ms))
            .goal(Goal::AtMost(5.0)),
        Row::new("6", "refresh natively", " ms", Sample(list.refresh_ms)).goal(Goal::AtMost(5.0)),
        Row::new("6", "lookup of a live token (3 ids hashed + 3 binary searches), native", " ns", Sample::one(list.lookup_ns))
            .goal(Goal::AtMost(1000.0)),
        Row::new("10", "native verify/s, one core", " /s", ours)
            .against("jsonwebtoken 10 (rust_crypto)", jwt)
            .goal(Goal::RatioAtLeast(1.0)),
    ]
}

/// Runs one group of rows; a group that panics (a server that would not start, say) becomes a
/// row marked as failed, so the suite still writes its report and stops every child process
/// (they are killed when the group's futures are dropped during the unwind).
async fn group<F: Future<Output = Vec<Row>>>(name: &str, id: &'static str, rows: F) -> Vec<Row> {
    use futures_util::FutureExt as _;
    match std::panic::AssertUnwindSafe(rows).catch_unwind().await {
        Ok(rows) => rows,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic without a message");
            eprintln!("bench: the {name} group failed: {message}");
            vec![
                Row::new(
                    id,
                    format!("the {name} group FAILED"),
                    "",
                    Sample::default(),
                )
                .note(message.to_owned()),
            ]
        }
    }
}

const GROUPS: [&str; 6] = ["micro", "sizes", "edge", "cpu", "propagation", "issuer"];

const USAGE: &str = "usage: bench [--smoke] [--only micro|sizes|edge|cpu|propagation|issuer] \
                     [--out DIR] | --fixture\n\
                     Without --out, the full run writes docs/benchmarks.md (about 17 minutes).";

/// What is wrong with the command line, if anything: an unknown argument must not start a
/// run that takes minutes and rewrites the report.
fn argument_problem(args: &[String]) -> Option<String> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" | "--fixture" => {}
            "--out" => {
                if args.next().is_none() {
                    return Some("--out takes a directory".to_owned());
                }
            }
            "--only" => match args.next() {
                Some(group) if GROUPS.contains(&group.as_str()) => {}
                other => return Some(format!("--only takes a group, not {other:?}")),
            },
            other => return Some(format!("unknown argument {other:?}")),
        }
    }
    None
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return std::process::ExitCode::SUCCESS;
    }
    if let Some(problem) = argument_problem(&args) {
        eprintln!("bench: {problem}\n{USAGE}");
        return std::process::ExitCode::from(2);
    }
    let started = std::time::Instant::now();
    // A signal stops the servers this started: the testkit's handler, installed with the first.
    let s = Settings::from_args();
    let fix = Fixture::new();
    // `--fixture` prints the key set, tokens and a signed list for bench/edge/profile.mjs.
    if std::env::args().any(|a| a == "--fixture") {
        let list = fix.revocations(s.edge_list_entries, 1);
        let fresh: Vec<String> = (0..12_000)
            .map(|i| fix.token_with_jti(&format!("loop-{i}")))
            .collect();
        let out = serde_json::json!({
            "fresh_tokens": fresh, "tampered_tokens": [cpu::tampered(&fix.token)],
            "jwks": fix.jwks, "token": fix.token, "revoked_token": fix.revoked_token,
            "snapshot": list.snapshot, "jose_revocations": list.jose_json,
            "issuer": fixture::ISSUER, "audience": fixture::AUDIENCE,
        });
        println!("{out}");
        return std::process::ExitCode::SUCCESS;
    }
    // `--only micro|sizes|edge|cpu|propagation|issuer` runs one group (for iterating on it); the
    // report then holds only that group and the completeness check is skipped.
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    let wanted = |group: &str| only.as_deref().is_none_or(|o| o == group);
    let mut rows = Vec::new();
    if wanted("micro") {
        rows.extend(group("micro", "2", async { micro_rows(&s, &fix) }).await);
    }
    if wanted("sizes") {
        rows.extend(group("sizes", "4", async { edge::sizes() }).await);
    }
    if wanted("edge") {
        rows.extend(group("edge", "1a", edge::gatekeeping(&s, &fix)).await);
    }
    // Row 1c alone; the full suite runs it inside the edge group.
    if only.as_deref() == Some("cpu") {
        rows.extend(group("cpu", "1c", edge::cpu_only(&s, &fix)).await);
    }
    if wanted("propagation") {
        rows.extend(group("propagation", "5", propagation::rows(&s)).await);
    }
    if wanted("issuer") {
        rows.extend(group("issuer", "7", issuer::rows(&s, &fix)).await);
    }
    let order = [
        "1a", "1b", "1c", "2", "3", "4", "5", "6", "7", "8", "9", "10",
    ];
    rows.sort_by_key(|r| order.iter().position(|id| *id == r.id));
    report::write(&s, &rows, started.elapsed());
    let mut problems: Vec<String> = rows
        .iter()
        .filter(|r| !r.is_measured())
        .map(|r| format!("row {} has no valid figure", r.id))
        .collect();
    // A simulation check that fails makes the run's propagation figures meaningless.
    for row in rows
        .iter()
        .filter(|r| r.what.starts_with("simulation check"))
    {
        if row.met() == Some(false) {
            problems.push(format!("row {} failed its {}", row.id, row.what));
        }
    }
    for id in order.iter().filter(|_| only.is_none()) {
        if !rows.iter().any(|r| r.id == *id) {
            problems.push(format!("row {id} is missing from the report"));
        }
    }
    if problems.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!(
            "bench: the report is written, with problems: {}",
            problems.join("; ")
        );
        std::process::ExitCode::FAILURE
    }
}
