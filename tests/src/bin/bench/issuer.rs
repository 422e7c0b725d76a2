//! The issuer, release build on PostgreSQL, under wrk: logins at OWASP argon2id cost against raw
//! hashing (row 7), refresh rotations (row 8) and `GET /v1/me` (row 9).

use gatehouse_tests::{Issuer, repo_root};

use crate::Settings;
use crate::fixture::Fixture;
use crate::micro::{self, ARGON2_M_KIB, ARGON2_P, ARGON2_T};
use crate::stats::{Goal, Row, Sample};
use gatehouse_tests::wrk::{Load, WrkRun};

const PASSWORD: &str = "plover-quartz-7";
/// wrk threads for the login row, each logging in as its own user, two connections each.
const LOGIN_THREADS: u32 = 4;

/// CPU time (clock ticks) of `/proc/<pid>[/task/<tid>]/stat` entries: user + system.
fn ticks(stat_path: &std::path::Path) -> u64 {
    std::fs::read_to_string(stat_path)
        .ok()
        .and_then(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// CPU ticks so far of: the issuer's argon2 threads, the whole issuer, and every PostgreSQL
/// process (all users of the machine's cores besides wrk).
fn cpu_split(issuer_pid: u32) -> [u64; 3] {
    let task_dir = std::path::PathBuf::from(format!("/proc/{issuer_pid}/task"));
    let argon2: u64 = std::fs::read_dir(&task_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("argon2"))
        })
        .map(|t| ticks(&t.path().join("stat")))
        .sum();
    let issuer = ticks(std::path::Path::new(&format!("/proc/{issuer_pid}/stat")));
    let postgres: u64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|p| {
            std::fs::read(p.path().join("cmdline")).is_ok_and(|c| c.starts_with(b"postgres"))
        })
        .map(|p| ticks(&p.path().join("stat")))
        .sum();
    [argon2, issuer, postgres]
}

/// How many times a load run that met noise (a socket error, a refusal) is run again.
const RERUNS: u32 = 2;

/// A run with requests and neither socket errors nor refusals; else `None`, said on stderr, and
/// the rows it feeds get no figure for this repeat (the report says so) instead of a crash.
fn clean(what: &str, run: WrkRun, again: u32) -> Option<WrkRun> {
    if run.requests > 0 && run.non_2xx == 0 && run.socket_errors == 0 {
        if again > 0 {
            eprintln!("{what}: clean after {again} rerun(s)");
        }
        Some(run)
    } else {
        eprintln!("{what}: no clean run in {} tries; last: {run:?}", again + 1);
        None
    }
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64
}

/// Every sample of the issuer rows, one per repeat.
#[derive(Default)]
struct Figures {
    logins: Sample,
    raw: Sample,
    rss: Sample,
    hashing_share: Sample,
    issuer_other_share: Sample,
    postgres_share: Sample,
    refresh: Sample,
    refresh_p99: Sample,
    me: Sample,
    me_p99: Sample,
    floor: Sample,
}

impl Figures {
    /// Logins against raw hashing, with each process's share of the machine during the run.
    fn logins(&mut self, s: &Settings, issuer: &Issuer, url: &str) {
        self.raw.push(micro::argon2_raw(s.load_secs));
        let pid = issuer.pid().expect("the issuer runs");
        let before = cpu_split(pid);
        let started = std::time::Instant::now();
        // Four in flight per core keep the hashing pool busy while others wait on the database.
        let (run, again) = Load::new(url, s.load_secs, LOGIN_THREADS, LOGIN_THREADS * 2)
            .script(
                &repo_root().join("bench/issuer/login.lua"),
                vec![("BENCH_PASSWORD".into(), PASSWORD.into())],
            )
            .run_clean(RERUNS, true);
        self.logins
            .push(clean("logins", run, again).map_or(f64::NAN, |r| r.rps));
        let after = cpu_split(pid);
        // Shares of the machine (all cores) over the run; clock ticks are 1/100 s here.
        let capacity = started.elapsed().as_secs_f64() * 100.0 * cores();
        // Saturating: a PostgreSQL backend that exits between the reads takes its ticks along.
        let share = |i: usize| 100.0 * after[i].saturating_sub(before[i]) as f64 / capacity;
        self.hashing_share.push(share(0));
        self.issuer_other_share.push(share(1) - share(0));
        self.postgres_share.push(share(2));
        self.rss.push(issuer.rss_mb().1);
    }

    /// Eight sessions, each following its own chain of refresh tokens.
    /// Each try logs in afresh: a request wrk gave up on leaves its chain's token reused, which
    /// ends that session, so a rerun on the same chains would only be refused.
    async fn refreshes(&mut self, s: &Settings, issuer: &Issuer, url: &str) {
        let mut clean_run = None;
        for again in 0..=RERUNS {
            let mut env = Vec::new();
            for i in 1..=8 {
                // A failed login leaves its chain empty: wrk's refreshes on it are refused,
                // and the try is run again or marked.
                let tokens = issuer.try_login("bench", PASSWORD).await;
                let tokens = tokens.unwrap_or_else(|e| {
                    eprintln!("bench: a login for the refresh row failed: {e}");
                    serde_json::Value::Null
                });
                let token = tokens["refresh_token"].as_str().unwrap_or_default();
                env.push((format!("RT{i}"), token.to_owned()));
            }
            let run = Load::new(url, s.load_secs, 8, 8)
                .script(&repo_root().join("bench/issuer/refresh.lua"), env)
                .run();
            let last = again == RERUNS;
            let ok = run.requests > 0 && run.non_2xx == 0 && run.socket_errors == 0;
            if ok || last {
                clean_run = clean("refresh", run, again);
                break;
            }
        }
        self.refresh
            .push(clean_run.as_ref().map_or(f64::NAN, |r| r.rps));
        self.refresh_p99
            .push(clean_run.as_ref().map_or(f64::NAN, |r| r.p99_ms));
    }

    async fn me(&mut self, s: &Settings, fix: &Fixture, issuer: &Issuer) {
        self.floor
            .push(cores() * micro::jsonwebtoken_verify(fix, s.micro_secs));
        let tokens = match issuer.try_login("bench", PASSWORD).await {
            Ok(tokens) => tokens,
            Err(e) => {
                // This repeat has no figure (NaN, which the report marks); the others go on.
                eprintln!("bench: the login for the /v1/me row failed: {e}");
                self.me.push(f64::NAN);
                self.me_p99.push(f64::NAN);
                return;
            }
        };
        let access = tokens["access_token"].as_str().unwrap_or_default();
        let (run, again) = Load::new(&format!("{}/v1/me", issuer.url), s.load_secs, 2, 32)
            .header(format!("Authorization: Bearer {access}"))
            .run_clean(RERUNS, true);
        let run = clean("/v1/me", run, again);
        self.me.push(run.as_ref().map_or(f64::NAN, |r| r.rps));
        self.me_p99
            .push(run.as_ref().map_or(f64::NAN, |r| r.p99_ms));
    }
}

pub async fn rows(s: &Settings, fix: &Fixture) -> Vec<Row> {
    let (m, t, p) = (
        ARGON2_M_KIB.to_string(),
        ARGON2_T.to_string(),
        ARGON2_P.to_string(),
    );
    let issuer = Issuer::start(&[
        ("GATEHOUSE_PASSWORD__M_COST", &m),
        ("GATEHOUSE_PASSWORD__T_COST", &t),
        ("GATEHOUSE_PASSWORD__P_COST", &p),
        ("GATEHOUSE_TOKEN_RATE_PER_MINUTE", "1000000000"),
        ("GATEHOUSE_LOG", "warn"),
    ])
    .await;
    issuer.register("bench", PASSWORD).await;
    for i in 1..=LOGIN_THREADS {
        issuer.register(&format!("bench{i}"), PASSWORD).await;
    }
    let token_url = format!("{}/v1/token", issuer.url);
    let mut figures = Figures::default();
    for _ in 0..s.repeats {
        figures.logins(s, &issuer, &token_url);
        figures.refreshes(s, &issuer, &token_url).await;
        figures.me(s, fix, &issuer).await;
    }
    let Figures {
        logins,
        raw,
        rss,
        hashing_share,
        issuer_other_share,
        postgres_share,
        refresh,
        refresh_p99,
        me,
        me_p99,
        floor,
    } = figures;
    vec![
        Row::new(
            "7",
            "logins/s at OWASP argon2id (m=19 MiB, t=2, p=1)",
            " /s",
            logins,
        )
        .against("raw argon2id hashes/s, same cores", raw)
        .goal(Goal::RatioAtLeast(0.9))
        .note("`wrk -t4 -c8`, four users, correct password"),
        Row::new(
            "7",
            "CPU share of the machine during logins: argon2 threads",
            " %",
            hashing_share,
        )
        .note("what bounds row 7: logins/s ≈ raw hashes/s × this share"),
        Row::new(
            "7",
            "… the rest of the issuer (HTTP, tokens, pool)",
            " %",
            issuer_other_share,
        ),
        Row::new(
            "7",
            "… PostgreSQL (lookup, lockout and session transactions)",
            " %",
            postgres_share,
        ),
        Row::new("7", "issuer peak RSS under the login load", " MB", rss).goal(Goal::AtMost(150.0)),
        Row::new("8", "refresh rotations/s on PostgreSQL", " /s", refresh)
            .goal(Goal::AtLeast(2000.0))
            .note("`wrk -t8 -c8`, eight sessions each following its own token chain"),
        Row::new("8", "refresh rotation p99", " ms", refresh_p99).goal(Goal::AtMost(50.0)),
        Row::new("9", "`GET /v1/me` at the issuer", " req/s", me)
            .against("jsonwebtoken EdDSA verifies/s on all cores (floor)", floor)
            .goal(Goal::AtLeast(10_000.0))
            .note("`wrk -t2 -c32`"),
        Row::new("9", "`GET /v1/me` p99", " ms", me_p99),
    ]
}
