//! Row 5: revocation propagation across locations, in the multi-location SIMULATION
//! (tests/sim/locations.mjs: separate workerd instances with their own KV and cache, KV writes
//! reaching the other locations after a fixed delay, 60 s here: Cloudflare documents "up to 60
//! seconds or more", with no bound). The issuer pushes to
//! location 0 only, as a push lands in one location on Cloudflare. Three scenarios: the fast
//! path up, the fast path off (KV alone), and the issuer down (when the stale policy refuses).
//! A location that never refuses within the time limit is reported, never a crash.

use std::time::{Duration, Instant};

use gatehouse_tests::locations::Locations;
use gatehouse_tests::{Issuer, free_port};

use crate::Settings;
use crate::stats::{Goal, Row, Sample};

const LOCATIONS: usize = 3;
const PASSWORD: &str = "plover-quartz-7";

struct World {
    issuer: Issuer,
    locations: Locations,
}

async fn world(kv_delay: Duration, vars: &[(&str, &str)]) -> World {
    let port = free_port().to_string();
    let url = format!("http://127.0.0.1:{port}");
    let mut all = vec![
        ("ORIGIN_URL", "http://127.0.0.1:9"),
        ("ISSUER_URL", url.as_str()),
        ("EXPECTED_ISSUER", url.as_str()),
        ("EXPECTED_AUDIENCE", "gatehouse-e2e"),
    ];
    all.extend_from_slice(vars);
    let locations = Locations::start(LOCATIONS, &all, kv_delay).await;
    let sync = locations.sync_url(0);
    let issuer = Issuer::start(&[
        ("GATEHOUSE_PORT", port.as_str()),
        ("GATEHOUSE_EDGE_SYNC_URLS", sync.as_str()),
        ("GATEHOUSE_LOG", "warn"),
    ])
    .await;
    issuer.register("bench", PASSWORD).await;
    World { issuer, locations }
}

impl World {
    /// A fresh token, once every location accepts it (`None` if the login fails or a location
    /// never accepts it: the trial counts as missed).
    async fn accepted_token(&self, wait: Duration) -> Option<String> {
        let tokens = self
            .issuer
            .try_login("bench", PASSWORD)
            .await
            .map_err(|e| eprintln!("bench: a login for a propagation trial failed: {e}"))
            .ok()?;
        let token = tokens["access_token"].as_str()?.to_owned();
        let start = Instant::now();
        for location in 0..LOCATIONS {
            while self.locations.check(location, &token).await.0 != 200 {
                if start.elapsed() > wait {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Some(token)
    }
}

/// Per-location delays in ms; a location that never refused counts as `limit` and is named.
#[derive(Default)]
struct PerLocation {
    ms: Vec<Sample>,
    missed: Vec<usize>,
}

impl PerLocation {
    fn record(&mut self, times: &[Option<Duration>], limit: Duration) {
        self.ms.resize(LOCATIONS, Sample::default());
        for (location, time) in times.iter().enumerate() {
            if time.is_none() {
                self.missed.push(location);
            }
            self.ms[location].push(time.unwrap_or(limit).as_secs_f64() * 1000.0);
        }
    }

    fn rows(
        &self,
        scenario: &str,
        trial: &str,
        goal_ms: f64,
        unit: &'static str,
        scale: f64,
    ) -> Vec<Row> {
        let worst = self
            .ms
            .iter()
            .map(|s| percentile(s, 0.99))
            // A location with no figure leaves the row without one (f64::max would drop it).
            .fold(0.0, |worst: f64, p| {
                if worst.is_nan() || p.is_nan() {
                    f64::NAN
                } else {
                    worst.max(p)
                }
            });
        let mut notes = Vec::new();
        for (location, sample) in self.ms.iter().enumerate() {
            notes.push(format!(
                "location {location}: p50 {:.0} / p99 {:.0} / max {:.0} ms",
                sample.median(),
                percentile(sample, 0.99),
                percentile(sample, 1.0)
            ));
        }
        if !self.missed.is_empty() {
            notes.push(format!(
                "NOT REFUSED within the limit at locations {:?} (counted as the limit)",
                self.missed
            ));
        }
        let trials = self.ms.first().map_or(0, |s| s.0.len());
        vec![
            Row::new(
                "5",
                format!("{scenario}: p99 at the worst of {LOCATIONS} locations, {trials} {trial}"),
                unit,
                Sample::one(worst / scale),
            )
            .goal(Goal::AtMost(goal_ms / scale))
            .note(notes.join("; ")),
        ]
    }
}

fn percentile(sample: &Sample, p: f64) -> f64 {
    let mut v = sample.0.clone();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

pub async fn rows(s: &Settings) -> Vec<Row> {
    let kv_delay = if s.smoke {
        Duration::from_secs(3)
    } else {
        Duration::from_mins(1)
    };
    let mut rows = fast_path(s, kv_delay).await;
    rows.extend(kv_only(s, kv_delay).await);
    rows.extend(issuer_down(s).await);
    rows
}

/// The fast path up, KV lagging: issuer 200 → first 401 at each location, one at a time.
async fn fast_path(s: &Settings, kv_delay: Duration) -> Vec<Row> {
    let w = world(kv_delay, &[]).await;
    let limit = Duration::from_secs(20);
    let mut per = PerLocation::default();
    for _ in 0..s.propagation_trials {
        let Some(token) = w.accepted_token(limit).await else {
            per.record(&[None; LOCATIONS], limit);
            continue;
        };
        let status = w.issuer.logout(&token).await;
        let since = Instant::now();
        let times = if status == 200 {
            w.locations.time_to_refusal(&token, since, limit).await
        } else {
            vec![None; LOCATIONS]
        };
        per.record(&times, limit);
    }
    let mut rows = per.rows(
        &format!(
            "revocation → 401, fast path up (DELTA_POLL_MS 500), simulated KV delay {} s",
            kv_delay.as_secs()
        ),
        "revocations",
        1500.0,
        " ms",
        1.0,
    );
    rows.extend(simulation_rows(&w, "fast path up").await);
    rows
}

/// How many of the worker's KV writes the simulation refused for KV's per-key limit (one write
/// a second): a push's costs it a 503 and a retry by the issuer, a cron's waits for the next.
async fn simulation_rows(w: &World, scenario: &str) -> [Row; 2] {
    let errors = w.locations.replicator_errors().await;
    let replicator = Row::new(
        "5",
        format!("simulation check, {scenario}: replicator ticks that failed"),
        "",
        Sample::one(errors as f64),
    )
    .goal(Goal::AtMost(0.0))
    .note("a failed tick delivers nothing: KV figures of such a run mean nothing");
    [refused_writes_row(w, scenario).await, replicator]
}

async fn refused_writes_row(w: &World, scenario: &str) -> Row {
    Row::new(
        "5",
        format!(
            "simulation check, {scenario}: KV writes refused by the per-key limit (1 a second)"
        ),
        "",
        Sample::one(w.locations.kv_refused_writes().await as f64),
    )
    .note("a push's refused write is answered 503 kv_write_failed and retried by the issuer; a cron's waits for the next cron")
}

/// The fast path off: KV alone carries the revocation from the pushed location to the others.
/// Revocations overlap (one every 2 s) so the run takes about one KV delay, not one per trial.
async fn kv_only(s: &Settings, kv_delay: Duration) -> Vec<Row> {
    let refresh_secs = 10;
    let w = world(kv_delay, &[("DELTA_POLL_MS", "0")]).await;
    // No fast path: the first list reaches location 0 by its cron, and the others from KV or,
    // while their KV is empty, from the issuer.
    w.locations.run_cron(0).await;
    let limit = kv_delay + Duration::from_secs(refresh_secs + 20);
    let trials = if s.smoke { 2 } else { 10 };
    let mut tokens = Vec::new();
    for _ in 0..trials {
        if let Some(token) = w.accepted_token(limit).await {
            tokens.push(token);
        }
    }
    let waits = tokens.iter().enumerate().map(|(i, token)| {
        let w = &w;
        async move {
            tokio::time::sleep(Duration::from_secs(2) * u32::try_from(i).unwrap_or(0)).await;
            if w.issuer.logout(token).await != 200 {
                return vec![None; LOCATIONS];
            }
            w.locations
                .time_to_refusal(token, Instant::now(), limit)
                .await
        }
    });
    let mut per = PerLocation::default();
    for times in futures_util::future::join_all(waits).await {
        per.record(&times, limit);
    }
    for _ in tokens.len()..trials {
        per.record(&[None; LOCATIONS], limit);
    }
    let bound_ms = (kv_delay.as_secs_f64() + refresh_secs as f64 + 1.0) * 1000.0;
    // Only location 0 is pushed to or pulls: a changed list at another location that the
    // replicator did not deliver means the worker wrote it there, or the simulation replicated
    // a value back (its replicator once raced its own deliveries).
    let foreign_writes: u64 = w.locations.kv_list_changes().await.iter().skip(1).sum();
    let mut rows = per.rows(
        &format!(
            "revocation → 401, fast path off, KV only (delay {} s, KV_REFRESH_SECS {refresh_secs})",
            kv_delay.as_secs()
        ),
        "revocations",
        bound_ms,
        " s",
        1000.0,
    );
    rows.push(
        Row::new(
            "5",
            "simulation check, KV only: writes of the list made at the locations nobody pushes to",
            "",
            Sample::one(foreign_writes as f64),
        )
        .goal(Goal::AtMost(0.0))
        .note("0 expected: they only read the list from KV; any other count means a worker wrote it there, or the replicator echoed a value back"),
    );
    rows.extend(simulation_rows(&w, "KV only").await);
    rows
}

/// The issuer stops: no revocation can be made, and each location keeps serving until its list
/// is `MAX_LIST_AGE_SECS` old, then refuses with 503 (fail closed). Measured with a short limit.
async fn issuer_down(s: &Settings) -> Vec<Row> {
    let max_age = if s.smoke { 4 } else { 10 };
    let max_age_text = max_age.to_string();
    let mut w = world(
        Duration::from_secs(3),
        &[("MAX_LIST_AGE_SECS", max_age_text.as_str())],
    )
    .await;
    let limit = Duration::from_secs(max_age + 20);
    let Some(token) = w.accepted_token(limit).await else {
        return PerLocation {
            ms: vec![Sample::one(f64::NAN); LOCATIONS],
            missed: (0..LOCATIONS).collect(),
        }
        .rows(
            "issuer down → 503 (no token was ever accepted)",
            "issuer stops",
            (max_age as f64 + 2.0) * 1000.0,
            " s",
            1000.0,
        );
    };
    w.issuer.stop();
    let stopped = Instant::now();
    let waits = (0..LOCATIONS).map(|location| {
        let (w, token) = (&w, token.as_str());
        async move {
            loop {
                let (status, code) = w.locations.check(location, token).await;
                if status == 503 && code == "revocation_list_stale" {
                    return Some(stopped.elapsed());
                }
                if stopped.elapsed() > limit {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let times = futures_util::future::join_all(waits).await;
    let mut per = PerLocation::default();
    per.record(&times, limit);
    // The last signed document was at most a second old when the issuer stopped.
    per.rows(
        &format!("issuer down → 503 revocation_list_stale, MAX_LIST_AGE_SECS {max_age}"),
        "issuer stop",
        (max_age as f64 + 2.0) * 1000.0,
        " s",
        1000.0,
    )
}
