//! The issuer, release build on PostgreSQL, under wrk: logins at OWASP argon2id cost against raw
//! hashing (row 7), refresh rotations (row 8) and `GET /v1/me` (row 9).

use gatehouse_tests::{Issuer, repo_root};

use crate::Settings;
use crate::fixture::Fixture;
use crate::micro::{self, ARGON2_M_KIB, ARGON2_P, ARGON2_T};
use crate::stats::{Goal, Row, Sample};
use crate::wrk::Load;

const PASSWORD: &str = "plover-quartz-7";
/// wrk threads for the login row, each logging in as its own user, two connections each.
const LOGIN_THREADS: u32 = 4;

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
    let me_url = format!("{}/v1/me", issuer.url);
    let scripts = repo_root().join("bench/issuer");
    let (login_lua, refresh_lua) = (scripts.join("login.lua"), scripts.join("refresh.lua"));
    let ok = |what: &str, run: &crate::wrk::WrkRun| {
        assert!(
            run.requests > 0 && run.non_2xx == 0 && run.socket_errors == 0,
            "{what}: {run:?}"
        );
    };

    let (mut logins, mut raw, mut rss) = (Sample::default(), Sample::default(), Sample::default());
    let (mut refresh, mut refresh_p99) = (Sample::default(), Sample::default());
    let (mut me, mut me_p99, mut floor) = (Sample::default(), Sample::default(), Sample::default());
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
    for _ in 0..s.repeats {
        raw.push(micro::argon2_raw(s.load_secs));
        // Four in flight per core keep the hashing pool busy while others wait on the database.
        let run = Load::new(&token_url, s.load_secs, LOGIN_THREADS, LOGIN_THREADS * 2)
            .script(&login_lua, vec![("BENCH_PASSWORD".into(), PASSWORD.into())])
            .run();
        ok("logins", &run);
        logins.push(run.rps);
        rss.push(issuer.rss_mb().1);

        // Eight sessions, each following its own chain of refresh tokens.
        let mut env = Vec::new();
        for i in 1..=8 {
            let tokens = issuer.login("bench", PASSWORD).await;
            env.push((
                format!("RT{i}"),
                tokens["refresh_token"]
                    .as_str()
                    .expect("refresh")
                    .to_owned(),
            ));
        }
        let run = Load::new(&token_url, s.load_secs, 8, 8)
            .script(&refresh_lua, env)
            .run();
        ok("refresh", &run);
        refresh.push(run.rps);
        refresh_p99.push(run.p99_ms);

        let access = issuer.login("bench", PASSWORD).await["access_token"]
            .as_str()
            .expect("access")
            .to_owned();
        let run = Load::new(&me_url, s.load_secs, 2, 32)
            .header(format!("Authorization: Bearer {access}"))
            .run();
        ok("/v1/me", &run);
        me.push(run.rps);
        me_p99.push(run.p99_ms);
        floor.push(cores * micro::jsonwebtoken_verify(fix, s.micro_secs));
    }
    vec![
        Row::new(
            "7",
            "logins/s at OWASP argon2id (m=19 MiB, t=2, p=1)",
            " /s",
            logins,
        )
        .against("raw argon2id hashes/s, same cores", raw)
        .goal(Goal::RatioAtLeast(0.9))
        .note("`wrk -t2 -c4`, correct password"),
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
