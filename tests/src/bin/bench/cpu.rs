//! Row 1c: CPU time per request of each worker's workerd processes, read from `/proc` (the run
//! time of every thread of every `workerd` the worker's Miniflare started), over a fixed number of
//! requests at a fixed, moderate concurrency. Requests per second on two shared cores mostly
//! measure the scheduler; CPU time per request does not depend on who else runs. Our worker,
//! the jose worker and a do-nothing worker run interleaved, each round in slices (ours, jose,
//! nothing and the scenario's other workers, then the same backwards, ...: [`SLICES`]), and
//! each round gives one ratio, so drift hits them alike. The do-nothing worker's CPU, measured
//! the same way, is what workerd costs with no worker code: subtracting it shows what each
//! worker adds. For fresh tokens, a fourth worker, the floor, checks only the signature with
//! WebCrypto (and forwards the request as it came): the least any such gate adds, measured in
//! the same rounds, so a goal below it shows as out of reach in the same report. On the
//! forwarded path, a fifth, the jose worker forwarding by the gate's rules (`FORWARD_RULES =
//! "gate"`), compares the two forwards like for like: the plain jose worker forwards with less
//! work than the gate must do.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gatehouse_tests::Workerd;

use crate::Settings;
use crate::fixture::Fixture;
use crate::stats::{Goal, Row, Sample};

/// What each request of a scenario sends, and the status it must get from a real gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// A token never seen before, each request: no verified-token cache can help.
    FreshToken,
    /// The same valid token every request: the verified-token cache hit.
    RepeatedToken,
    /// A valid token with one signature bit flipped: 401.
    TamperedToken,
    /// No `Authorization` header: 401.
    NoToken,
    /// A fresh token each request, forwarded to the origin.
    Forwarded,
    /// The same valid token every request, forwarded: what an app's requests mostly are.
    ForwardedRepeated,
}

impl Scenario {
    const ALL: [Self; 6] = [
        Self::FreshToken,
        Self::RepeatedToken,
        Self::TamperedToken,
        Self::NoToken,
        Self::Forwarded,
        Self::ForwardedRepeated,
    ];

    const fn label(self) -> &'static str {
        match self {
            Self::FreshToken => "fresh token each request (no cache), verify-only",
            Self::RepeatedToken => "repeated token (cache hit), verify-only",
            Self::TamperedToken => "tampered token (401)",
            Self::NoToken => "no token (401)",
            Self::Forwarded => "fresh token each request, forwarded to the origin",
            Self::ForwardedRepeated => "repeated token (cache hit), forwarded to the origin",
        }
    }

    const fn path(self) -> &'static str {
        match self {
            Self::Forwarded | Self::ForwardedRepeated => "/api/bench",
            _ => "/_gatehouse/check",
        }
    }

    const fn status(self) -> u16 {
        match self {
            Self::TamperedToken | Self::NoToken => 401,
            _ => 200,
        }
    }

    /// Scenarios where the signature is checked on every request: the floor is measured there.
    const fn checks_a_signature(self) -> bool {
        matches!(self, Self::FreshToken | Self::Forwarded)
    }

    /// Scenarios that reach the origin: the jose worker forwarding by the gate's rules runs there.
    const fn forwards(self) -> bool {
        matches!(self, Self::Forwarded | Self::ForwardedRepeated)
    }

    /// The goals: fresh forwarded ≤ 0.67× jose, cache hit ≤ 0.5×.
    const fn goal(self) -> Goal {
        match self {
            Self::Forwarded => Goal::AtMost(0.67),
            Self::RepeatedToken => Goal::AtMost(0.5),
            _ => Goal::None,
        }
    }
}

/// One fixed-size run against one worker.
#[derive(Debug, Clone, Copy, Default)]
struct CpuRun {
    /// The worker's workerd CPU over the run.
    cpu_secs: f64,
    us_per_request: f64,
    /// Requests answered with another status than the scenario's, or not answered at all.
    failures: u64,
}

fn tokens(fix: &Fixture, scenario: Scenario, n: usize, round: usize) -> Vec<String> {
    let fresh = |i: usize| fix.token_with_jti(&format!("cpu-{round}-{i}"));
    match scenario {
        Scenario::FreshToken | Scenario::Forwarded => (0..n).map(fresh).collect(),
        Scenario::RepeatedToken | Scenario::ForwardedRepeated => vec![fix.token.clone()],
        Scenario::TamperedToken => vec![tampered(&fix.token)],
        Scenario::NoToken => Vec::new(),
    }
}

/// `token` with one signature character changed: still base64url, still 64 bytes.
pub fn tampered(token: &str) -> String {
    let mut token = token.as_bytes().to_vec();
    let at = token.len() - 20;
    token[at] = if token[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(token).expect("ascii")
}

/// What `worker` adds above the do-nothing worker (`idle`) over what `baseline` adds, in the
/// same round; `None` when the baseline adds under 20 µs, too close to divide by (jose's
/// no-token 401).
fn added_ratio(worker: CpuRun, baseline: CpuRun, idle: CpuRun) -> Option<f64> {
    let baseline_adds = baseline.us_per_request - idle.us_per_request;
    (baseline_adds >= 20.0).then(|| (worker.us_per_request - idle.us_per_request) / baseline_adds)
}

/// Sends `n` requests (`concurrency` at a time) and measures the worker's CPU over them.
async fn run(
    worker: &Workerd,
    scenario: Scenario,
    expected: u16,
    tokens: &[String],
    n: usize,
    concurrency: usize,
) -> CpuRun {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let url = format!("{}{}", worker.url, scenario.path());
    let next = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let before = worker.workerd_cpu_secs();
    let lanes = (0..concurrency).map(|_| async {
        loop {
            let i = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(usize::MAX);
            if i >= n {
                return;
            }
            let mut request = client.get(&url);
            if let Some(token) = tokens.get(i % tokens.len().max(1)) {
                request = request.bearer_auth(token);
            }
            let ok = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let _ = response.bytes().await;
                    status == expected
                }
                Err(_) => false,
            };
            if !ok {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    futures_util::future::join_all(lanes).await;
    let used = worker.workerd_cpu_secs() - before;
    CpuRun {
        cpu_secs: used,
        us_per_request: used * 1e6 / n as f64,
        failures: failures.load(Ordering::Relaxed),
    }
}

/// Row 1c for every scenario. `ours`, `jose` and `nothing` already serve and hold the list.
/// The workers row 1c compares: ours, the jose worker, a worker that does nothing and the
/// signature-only floor (`bench/edge/floor-worker.mjs`). (Ours with Ed25519 in the wasm was
/// compared until 2026-12-06, at 0.85–0.89× for WebCrypto: see docs/performance.md; the worker no
/// longer links it.)
pub struct Workers<'a> {
    pub ours: &'a Workerd,
    pub jose: &'a Workerd,
    pub nothing: &'a Workerd,
    pub floor: &'a Workerd,
    /// The jose worker forwarding by the gate's rules: dropped routing headers,
    /// `X-Forwarded-Host`, `redirect: "manual"`, `cache: "no-store"`, its own 502.
    pub jose_as_the_gate: &'a Workerd,
}

/// What one scenario's rounds measured.
#[derive(Default)]
struct Measured {
    ratio: Sample,
    /// What each worker adds above the do-nothing worker, round by round: the totals include
    /// workerd's own per-request cost (about 250 µs here), which no worker can cut.
    added_ratio: Sample,
    /// What the floor adds above the do-nothing worker over what jose adds, round by round.
    floor_ratio: Sample,
    floor_us: Sample,
    /// What ours adds over what the jose worker forwarding by the gate's rules adds.
    same_rules_ratio: Sample,
    same_rules_us: Sample,
    ours_us: Sample,
    jose_us: Sample,
    nothing_us: Sample,
    failures: u64,
}

async fn measure(
    w: &Workers<'_>,
    fix: &Fixture,
    scenario: Scenario,
    shape: (usize, usize, usize),
) -> Measured {
    let Workers {
        ours,
        jose,
        nothing,
        floor,
        jose_as_the_gate,
    } = *w;
    let (n, rounds, concurrency) = shape;
    let mut m = Measured::default();
    // Warm-up, not recorded: V8 tiers the wasm and JS up over the first requests.
    let warm_up = tokens(fix, scenario, n, usize::MAX);
    for worker in [ours, jose, nothing, floor, jose_as_the_gate] {
        let _ = run(worker, scenario, 0, &warm_up, n, concurrency).await;
    }
    let status = scenario.status();
    // The workers of this scenario, each with the status it must answer; every round runs them
    // all (`ours`, `jose`, `nothing` first, by index below).
    let mut lineup = vec![(ours, status), (jose, status), (nothing, 200)];
    let floor_at = scenario.checks_a_signature().then(|| {
        lineup.push((floor, status));
        lineup.len() - 1
    });
    let same_at = scenario.forwards().then(|| {
        lineup.push((jose_as_the_gate, status));
        lineup.len() - 1
    });
    for round in 0..rounds {
        let tokens = tokens(fix, scenario, n, round);
        let runs = round_of(&lineup, scenario, &tokens, n, concurrency).await;
        let (mine, theirs, idle) = (runs[0], runs[1], runs[2]);
        m.failures += runs.iter().map(|r| r.failures).sum::<u64>();
        m.ratio.push(mine.us_per_request / theirs.us_per_request);
        m.added_ratio.0.extend(added_ratio(mine, theirs, idle));
        if let Some(at) = floor_at {
            let least = runs[at];
            m.floor_ratio.0.extend(added_ratio(least, theirs, idle));
            m.floor_us.push(least.us_per_request);
        }
        if let Some(at) = same_at {
            let same = runs[at];
            m.same_rules_ratio.0.extend(added_ratio(mine, same, idle));
            m.same_rules_us.push(same.us_per_request);
        }
        m.ours_us.push(mine.us_per_request);
        m.jose_us.push(theirs.us_per_request);
        m.nothing_us.push(idle.us_per_request);
    }
    m
}

/// Each round runs every worker in this many slices of its requests, in turn, the order
/// reversed every other slice: a host that speeds up or slows down within the round then
/// reaches every worker alike. (Whole runs one after another let the do-nothing worker, which
/// every figure subtracts, range 180–247 µs per request within one set of rounds, 2026-12-07.)
const SLICES: usize = 4;

/// One round: `n` requests to each worker of `lineup`, in [`SLICES`]; the runs in its order.
async fn round_of(
    lineup: &[(&Workerd, u16)],
    scenario: Scenario,
    tokens: &[String],
    n: usize,
    concurrency: usize,
) -> Vec<CpuRun> {
    let mut runs = vec![CpuRun::default(); lineup.len()];
    let per_slice = n.div_ceil(SLICES);
    for slice in 0..SLICES {
        // A fresh token per request (the scenarios that check a signature every time): each
        // slice has its own share of them.
        let own = if scenario.checks_a_signature() {
            &tokens[(slice * per_slice).min(n)..((slice + 1) * per_slice).min(n)]
        } else {
            tokens
        };
        let count = per_slice.min(n.saturating_sub(slice * per_slice));
        let mut order: Vec<usize> = (0..lineup.len()).collect();
        if slice % 2 == 1 {
            order.reverse();
        }
        for at in order {
            let (worker, status) = lineup[at];
            let run = run(worker, scenario, status, own, count, concurrency).await;
            runs[at].cpu_secs += run.cpu_secs;
            runs[at].failures += run.failures;
        }
    }
    for r in &mut runs {
        r.us_per_request = r.cpu_secs * 1e6 / n as f64;
    }
    runs
}

pub async fn rows(s: &Settings, fix: &Fixture, w: &Workers<'_>) -> Vec<Row> {
    let (n, rounds, concurrency) = if s.smoke { (200, 2, 4) } else { (3000, 5, 8) };
    let mut rows = Vec::new();
    for scenario in Scenario::ALL {
        let m = measure(w, fix, scenario, (n, rounds, concurrency)).await;
        let adds = |x: &Sample| x.median() - m.nothing_us.median();
        let mut note = format!(
            "workerd CPU per request: ours {}, jose {}, do-nothing worker {}; above the \
             do-nothing worker: ours {:.0} µs, jose {:.0} µs; {n} requests × {rounds} rounds \
             each, every round in {SLICES} slices per worker, {concurrency} at a time",
            m.ours_us.show(" µs"),
            m.jose_us.show(" µs"),
            m.nothing_us.show(" µs"),
            adds(&m.ours_us),
            adds(&m.jose_us),
        );
        for (worker, us) in [
            ("the signature-only floor", &m.floor_us),
            (
                "the jose worker forwarding by the gate's rules",
                &m.same_rules_us,
            ),
        ] {
            if !us.0.is_empty() {
                let _ = write!(
                    note,
                    "; {worker} {}, above the do-nothing worker {:.0} µs",
                    us.show(" µs"),
                    adds(us)
                );
            }
        }
        if m.failures > 0 {
            let _ = write!(
                note,
                "; MARKED: {} requests got another status or no answer",
                m.failures
            );
        }
        let label = scenario.label();
        rows.push(
            Row::new(
                "1c",
                format!("CPU per request, ours / jose worker (median of pairs): {label}"),
                "×",
                m.ratio,
            )
            .note(note),
        );
        // A row with a goal is kept without a figure too: the report then marks it unmeasured,
        // where leaving it out would hide the goal.
        let has_goal = !matches!(scenario.goal(), Goal::None);
        if !m.added_ratio.0.is_empty() || has_goal {
            let why_empty = if m.added_ratio.0.is_empty() {
                "; MARKED: no round where jose added 20 µs or more above the do-nothing worker, \
                 too close to divide by"
            } else {
                ""
            };
            rows.push(
                Row::new(
                    "1c",
                    format!("CPU each worker adds above a do-nothing worker, ours / jose (median of rounds): {label}"),
                    "×",
                    m.added_ratio,
                )
                .signed()
                .goal(scenario.goal())
                .note(format!("the goal's measure: workerd's own share, the same for every worker, left out{why_empty}")),
            );
        }
        if !m.floor_ratio.0.is_empty() {
            rows.push(
                Row::new(
                    "1c",
                    format!("CPU the signature-only floor adds above a do-nothing worker, floor / jose (median of rounds): {label}"),
                    "×",
                    m.floor_ratio,
                )
                .signed()
                .note("the least a gate checking Ed25519 by WebCrypto can add (bench/edge/floor-worker.mjs: no claims, no revocation, no header work); a goal below this row cannot be met on this runtime"),
            );
        }
        if !m.same_rules_ratio.0.is_empty() {
            rows.push(
                Row::new(
                    "1c",
                    format!("CPU each worker adds above a do-nothing worker, ours / jose forwarding by the gate's rules (median of rounds): {label}"),
                    "×",
                    m.same_rules_ratio,
                )
                .signed()
                .note("the same forward in both (bench/edge/jose-worker.mjs with FORWARD_RULES = \"gate\": routing headers dropped, X-Forwarded-Host, redirect manual, cache no-store, its own 502); the plain jose worker forwards with less"),
            );
        }
    }
    rows
}
