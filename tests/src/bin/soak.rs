//! Bounded soak: the real issuer (PostgreSQL), the worker under `wrangler dev` and the demo
//! origin, driven with logins, refreshes and edge requests at about 70% of the capacity measured
//! at the start. Prints errors (goal: 0) and the RSS of each process over time (goal: flat).
//!
//! `cargo run --release -p gatehouse-tests --bin soak -- [minutes, default 10]`
//! (needs scripts/build-edge.sh and a debug build of the issuer, as `make test` leaves them).
#![allow(
    clippy::indexing_slicing,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gatehouse_tests::{Edge, Issuer, Origin, free_port, http};

const PASSWORD: &str = "plover-quartz-7";
/// Logins rotate over this many accounts: real traffic is many users, and one account's
/// lockout budget (which in-flight attempts reserve) is not what is being soaked.
const USERS: u64 = 64;
static NEXT_USER: AtomicU64 = AtomicU64::new(0);

fn next_user() -> String {
    format!("soak-{}", NEXT_USER.fetch_add(1, Ordering::Relaxed) % USERS)
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Login,
    Refresh,
    Edge,
    /// The trivial worker, at the edge's rate.
    Baseline,
}

struct Target {
    issuer: String,
    edge: String,
    baseline: String,
    access: String,
}

/// One request of `kind`; returns whether it succeeded. Refreshes carry their own token chain.
async fn request(client: &reqwest::Client, t: &Target, kind: Kind, chain: &mut String) -> bool {
    let result = match kind {
        Kind::Login => {
            let user = next_user();
            let form = [
                ("grant_type", "password"),
                ("username", user.as_str()),
                ("password", PASSWORD),
            ];
            client
                .post(format!("{}/v1/token", t.issuer))
                .form(&form)
                .send()
                .await
        }
        Kind::Refresh => {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", chain.as_str()),
            ];
            client
                .post(format!("{}/v1/token", t.issuer))
                .form(&form)
                .send()
                .await
        }
        Kind::Baseline => {
            client
                .get(format!("{}/api/whoami", t.baseline))
                .send()
                .await
        }
        Kind::Edge => {
            client
                .get(format!("{}/api/whoami", t.edge))
                .bearer_auth(&t.access)
                .send()
                .await
        }
    };
    let Ok(response) = result else {
        eprintln!("{kind:?}: request failed to complete");
        return false;
    };
    let ok = response.status().is_success();
    if !ok {
        eprintln!("{kind:?}: HTTP {}", response.status());
    }
    if let (Kind::Refresh, true) = (kind, ok) {
        let json: serde_json::Value = response.json().await.unwrap_or_default();
        if let Some(next) = json["refresh_token"].as_str() {
            next.clone_into(chain);
        }
    }
    ok
}

async fn fresh_refresh_token(t: &Target) -> String {
    let user = next_user();
    let form = [
        ("grant_type", "password"),
        ("username", user.as_str()),
        ("password", PASSWORD),
    ];
    let json: serde_json::Value = http()
        .post(format!("{}/v1/token", t.issuer))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    json["refresh_token"].as_str().unwrap().to_owned()
}

/// Closed-loop throughput over `secs` with `workers` connections.
async fn capacity(t: &Arc<Target>, kind: Kind, workers: usize, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (t, done) = (Arc::clone(t), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let client = http();
            let mut chain = fresh_refresh_token(&t).await;
            while Instant::now() < end {
                if request(&client, &t, kind, &mut chain).await {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

/// Open-loop load at `rate` per second until `end`; returns (sent, failed). Refreshes follow
/// a pool of token chains; a tick that finds every chain busy is skipped, not counted.
async fn paced(t: Arc<Target>, kind: Kind, rate: f64, end: Instant) -> (u64, u64) {
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    let mut chains: Vec<String> = Vec::new();
    if let Kind::Refresh = kind {
        for _ in 0..32 {
            chains.push(fresh_refresh_token(&t).await);
        }
    }
    let chains = Arc::new(tokio::sync::Mutex::new(chains));
    let client = http();
    while Instant::now() < end {
        ticker.tick().await;
        let (t, sent, failed, chains, client) = (
            Arc::clone(&t),
            Arc::clone(&sent),
            Arc::clone(&failed),
            Arc::clone(&chains),
            client.clone(),
        );
        tokio::spawn(async move {
            let mut chain = String::new();
            if let Kind::Refresh = kind {
                match chains.lock().await.pop() {
                    Some(c) => chain = c,
                    None => return,
                }
            }
            sent.fetch_add(1, Ordering::Relaxed);
            if !request(&client, &t, kind, &mut chain).await {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            if !chain.is_empty() {
                chains.lock().await.push(chain);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}

fn rss_mb(pattern: &str) -> f64 {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for p in $(pgrep -f '{pattern}'); do awk '/^VmRSS/{{print $2}}' /proc/$p/status; done"
        ))
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .sum::<f64>()
        / 1024.0
}

#[tokio::main]
async fn main() {
    let minutes: f64 = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(10.0);
    let origin = Origin::start().await;
    let edge_port = free_port();
    let sync = format!("http://127.0.0.1:{edge_port}/_gatehouse/sync");
    // OWASP argon2id parameters: logins are meant to cost what they cost in production.
    let issuer = Issuer::start(&[
        ("GATEHOUSE_EDGE_SYNC_URLS", &sync),
        ("GATEHOUSE_PASSWORD__M_COST", "19456"),
        ("GATEHOUSE_PASSWORD__T_COST", "2"),
        ("GATEHOUSE_TOKEN_RATE_PER_MINUTE", "100000000"),
    ])
    .await;
    let vars = [
        ("ORIGIN_URL", origin.url.as_str()),
        ("ISSUER_URL", issuer.url.as_str()),
        ("EXPECTED_ISSUER", issuer.url.as_str()),
        ("EXPECTED_AUDIENCE", "gatehouse-e2e"),
        ("KV_REFRESH_SECS", "1"),
    ];
    let edge = Edge::start(edge_port, &vars).await;
    let baseline_script = gatehouse_tests::repo_root().join("tests/soak/trivial-worker.mjs");
    let baseline = Edge::start_script(free_port(), &baseline_script, &[], &[]).await;
    edge.run_cron().await;
    for i in 0..USERS {
        issuer.register(&format!("soak-{i}"), PASSWORD).await;
    }
    let tokens = issuer.login("soak-0", PASSWORD).await;
    let target = Arc::new(Target {
        issuer: issuer.url.clone(),
        edge: edge.url.clone(),
        baseline: baseline.url.clone(),
        access: tokens["access_token"].as_str().unwrap().to_owned(),
    });

    println!("measuring capacity (5 s each, closed loop)…");
    let mut rates = Vec::new();
    for (kind, workers) in [(Kind::Login, 4), (Kind::Refresh, 8), (Kind::Edge, 16)] {
        let cap = capacity(&target, kind, workers, 5).await;
        println!("  {kind:?}: {cap:.0}/s -> soak at {:.0}/s", cap * 0.7 / 3.0);
        rates.push((kind, cap));
    }
    // The three streams share the machine, so each gets 70% of a third of its capacity.
    let end = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let streams: Vec<_> = rates
        .iter()
        .map(|&(kind, cap)| (kind, cap))
        // The baseline gets exactly the edge's rate.
        .chain(
            rates
                .iter()
                .filter(|(k, _)| matches!(k, Kind::Edge))
                .map(|&(_, cap)| (Kind::Baseline, cap)),
        )
        .collect::<Vec<_>>()
        .into_iter()
        .map(|(kind, cap)| tokio::spawn(paced(Arc::clone(&target), kind, cap * 0.7 / 3.0, end)))
        .collect();
    println!(
        "\n| minute | issuer RSS MB | edge: wrangler + workerd RSS MB | edge wasm heap MB | baseline trivial worker, same rate, RSS MB | origin RSS MB |\n| --- | --- | --- | --- | --- | --- |"
    );
    let started = Instant::now();
    let mut next_cron = Instant::now();
    while Instant::now() < end {
        // The platform fires the cron every minute; under `wrangler dev` the soak does.
        if Instant::now() >= next_cron {
            edge.run_cron().await;
            next_cron += Duration::from_mins(1);
        }
        let wasm = edge.health().await["wasm_memory_bytes"]
            .as_f64()
            .unwrap_or(0.0);
        println!(
            "| {:.1} | {:.0} | {:.0} | {:.1} | {:.0} | {:.0} |",
            started.elapsed().as_secs_f64() / 60.0,
            rss_mb("gatehouse-issuer serve"),
            edge.rss_mb(),
            wasm / 1_048_576.0,
            baseline.rss_mb(),
            rss_mb("dev/origin.mjs")
        );
        tokio::time::sleep(
            Duration::from_secs(30)
                .min(end.saturating_duration_since(Instant::now()) + Duration::from_millis(10)),
        )
        .await;
    }
    let mut total_failed = 0;
    println!("\n| stream | sent | failed |\n| --- | --- | --- |");
    let kinds = [Kind::Login, Kind::Refresh, Kind::Edge, Kind::Baseline];
    for (stream, kind) in streams.into_iter().zip(kinds) {
        let (sent, failed) = stream.await.unwrap();
        total_failed += failed;
        println!("| {kind:?} | {sent} | {failed} |");
    }
    println!("\nerrors: {total_failed} (goal 0)");
    drop(baseline);
    drop(edge);
    drop(issuer);
    drop(origin);
    std::process::exit(i32::from(total_failed > 0));
}
