//! Snapshot push (coalesced, to a local receiver).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_issuer::revoker::Revoker;
use gatehouse_issuer::store::revocations;
use gatehouse_shared::{RevocationDelta, RevocationList, RevocationReason, SnapshotOptions};
use rocket::http::Status;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{Backend, TestApp, str_of};
use crate::held::{HeldRevocation, start_watched, until_waiting};

/// A minimal HTTP/1.1 endpoint that records every request body (stands in for the worker's
/// sync endpoint, which has its own tests in the end-to-end suite).
pub(crate) struct Receiver {
    pub(crate) url: String,
    pub(crate) bodies: Arc<Mutex<Vec<String>>>,
    /// Each request's line and headers.
    heads: Arc<Mutex<Vec<String>>>,
    /// When each body was in.
    times: Arc<Mutex<Vec<std::time::Instant>>>,
}

const ACCEPTED: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

pub(crate) async fn receiver() -> Receiver {
    receiver_answering(|_| ACCEPTED).await
}

/// A receiver whose answer to the `n`th request (from 0) is `answer(n)`.
async fn receiver_answering(answer: fn(usize) -> &'static [u8]) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/_gatehouse/sync", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let times = Arc::new(Mutex::new(Vec::new()));
    let (sink, head_sink, clock) = (Arc::clone(&bodies), Arc::clone(&heads), Arc::clone(&times));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (sink, head_sink, clock) = (
                Arc::clone(&sink),
                Arc::clone(&head_sink),
                Arc::clone(&clock),
            );
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head, body) = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break (
                                text[..end].to_owned(),
                                text[end + 4..end + 4 + len].to_owned(),
                            );
                        }
                    }
                };
                let n = {
                    let mut bodies = sink.lock().unwrap();
                    bodies.push(body);
                    head_sink.lock().unwrap().push(head);
                    clock.lock().unwrap().push(std::time::Instant::now());
                    bodies.len() - 1
                };
                let _ = socket.write_all(answer(n)).await;
            });
        }
    });
    Receiver {
        url,
        bodies,
        heads,
        times,
    }
}

async fn revocations_are_pushed_coalesced(backend: Backend) {
    let rx = receiver().await;
    let url = rx.url.clone();
    let app = TestApp::start_with(backend, move |c| c.edge_sync_urls = vec![url]).await;
    app.register("alice").await;
    let mut tokens = Vec::new();
    for _ in 0..20 {
        tokens.push(str_of(&app.login("alice").await, "access_token").to_owned());
    }
    let logouts = tokens
        .iter()
        .map(|t| app.send("POST", "/v1/logout", None, Some(t)));
    for (status, _) in rocket::futures::future::join_all(logouts).await {
        assert_eq!(status, Status::Ok);
    }
    let high_water = app.store().run_sync(revocations::high_water).unwrap();
    let keys = app.verifier().await.keys().clone();
    let opts = SnapshotOptions::new("https://issuer.test");
    let mut last = None;
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let bodies = rx.bodies.lock().unwrap().clone();
        if let Some(body) = bodies.last() {
            let list =
                RevocationList::verify_snapshot(body, &keys, &opts, app.clock().now()).unwrap();
            if i64::try_from(list.seq()).unwrap() == high_water {
                last = Some((bodies.len(), list));
                break;
            }
        }
    }
    let (pushes, list) = last.expect("the final snapshot reaches the receiver");
    assert!(
        pushes < 20,
        "20 revocations in a burst coalesce into fewer pushes ({pushes})"
    );
    assert_eq!(list.len(), 20);
    // One more revocation right after: its push starts 1.2 s after the last one (KV takes
    // one write a second per key, and a margin), less what the first push's connection set-up
    // may have added to its arrival; 25 ms after it before.
    let more = str_of(&app.login("alice").await, "access_token").to_owned();
    assert_eq!(
        app.send("POST", "/v1/logout", None, Some(&more)).await.0,
        Status::Ok
    );
    for _ in 0..400 {
        if rx.bodies.lock().unwrap().len() > pushes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let times = rx.times.lock().unwrap().clone();
    assert!(
        times.len() > pushes,
        "the later revocation was pushed: {times:?}"
    );
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_secs(1), "pushes {gap:?} apart");
    }
    // Named: Cloudflare's Browser Integrity Check challenges a request without a User-Agent
    // before the worker sees it.
    let heads = rx.heads.lock().unwrap().clone();
    assert!(
        heads.iter().all(|h| h
            .to_ascii_lowercase()
            .contains("\r\nuser-agent: gatehouse-issuer/")),
        "{heads:?}"
    );
}

/// An edge that answers 503 with `Retry-After` (`push_busy`) is tried again no sooner than it
/// asked: the backoff alone (0.2, 0.4, 0.8, 1.6 s) would spend every attempt inside its 5 s.
async fn a_busy_edge_is_retried_when_it_asks(backend: Backend) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\n\
                          content-type: application/json\r\ncontent-length: 20\r\n\
                          connection: close\r\n\r\n{\"code\":\"push_busy\"}";
    let (gap, bodies) = first_retry_after(backend, |n| if n == 0 { BUSY } else { ACCEPTED }).await;
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
    assert_eq!(bodies[0], bodies[1], "the same list, tried again");
}

/// A refused KV write (`kv_write_failed`, whose `Retry-After: 5` is for clients) is retried
/// after KV's per-key write interval (1 s), not at once: sooner is refused again (the backoff
/// alone retried after 0.2, 0.4 and 0.8 s, three more uploads refused in the simulation); nor
/// after the client's 5 s.
async fn a_refused_kv_write_is_retried_after_kvs_write_interval(backend: Backend) {
    const KV_FAILED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 5\r\n\
                               content-type: application/json\r\ncontent-length: 26\r\n\
                               connection: close\r\n\r\n{\"code\":\"kv_write_failed\"}";
    let (gap, _) = first_retry_after(backend, |n| if n == 0 { KV_FAILED } else { ACCEPTED }).await;
    assert!(
        gap >= Duration::from_millis(950) && gap < Duration::from_secs(3),
        "retried after {gap:?}"
    );
}

/// A list the edge rejects for what it is (400: `list_too_old`, `malformed`, a bad signature)
/// is rejected again as sent:
/// the push gives up at once, and says so in the metrics. Before, it was sent five times.
async fn a_rejected_list_is_not_sent_again(backend: Backend) {
    const REJECTED: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                              content-length: 23\r\nconnection: close\r\n\r\n\
                              {\"code\":\"list_too_old\"}";
    let (rx, app) = logout_pushed_to(backend, |_| REJECTED).await;
    given_up(&app).await;
    assert_eq!(rx.times.lock().unwrap().len(), 1, "sent once");
    assert_eq!(
        app.metric("gatehouse_snapshot_push_attempts_failed_total")
            .await,
        1
    );
}

/// A sync URL that redirects is not followed, and not sent to again: a 2xx from wherever it
/// leads is no edge's. Nor is a list over the edge's limit (413). Before, the redirect was
/// followed (a 307 re-sent the list to its target, whose 200 counted as delivered), and a 413
/// re-sent the list five times.
async fn a_redirect_or_a_list_too_large_is_not_sent_again(backend: Backend) {
    const REDIRECTED: &[u8] = b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /elsewhere\r\n\
                                content-length: 0\r\nconnection: close\r\n\r\n";
    const TOO_LARGE: &[u8] = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\
                               connection: close\r\n\r\n";
    for first in [REDIRECTED, TOO_LARGE] {
        let (rx, app) = if first == REDIRECTED {
            logout_pushed_to(backend, |n| if n == 0 { REDIRECTED } else { ACCEPTED }).await
        } else {
            logout_pushed_to(backend, |_| TOO_LARGE).await
        };
        given_up(&app).await;
        let heads = rx.heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 1, "sent once: {heads:?}");
        assert_eq!(app.metric("gatehouse_snapshot_pushes_ok_total").await, 0);
    }
}

/// A kid the edge could not fetch yet (its refetch cooldown, a failed JWKS fetch) may be
/// fetched a moment later: that 400 is tried again.
async fn an_unknown_kid_is_tried_again(backend: Backend) {
    const UNKNOWN_KID: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                                 content-length: 22\r\nconnection: close\r\n\r\n\
                                 {\"code\":\"unknown_kid\"}";
    let (gap, bodies) =
        first_retry_after(backend, |n| if n == 0 { UNKNOWN_KID } else { ACCEPTED }).await;
    assert!(gap < Duration::from_secs(3), "retried after {gap:?}");
    assert_eq!(bodies[0], bodies[1], "the same list, tried again");
}

/// Waits until `app` gave a push up (10 s at most), then long enough for any retry to show:
/// longer than the backoff's first three waits (0.2 + 0.4 + 0.8 s).
async fn given_up(app: &TestApp) {
    let started = std::time::Instant::now();
    while app.metric("gatehouse_snapshot_pushes_failed_total").await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never given up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// An issuer pushing to an edge that answers as `answer` says, after a logout: the receiver and
/// the app (kept alive while the pushes go on).
async fn logout_pushed_to(
    backend: Backend,
    answer: fn(usize) -> &'static [u8],
) -> (Receiver, TestApp) {
    let rx = receiver_answering(answer).await;
    let urls = vec![rx.url.clone()];
    let app = TestApp::start_with(backend, move |c| c.edge_sync_urls = urls).await;
    app.register("alice").await;
    let token = str_of(&app.login("alice").await, "access_token").to_owned();
    assert_eq!(
        app.send("POST", "/v1/logout", None, Some(&token)).await.0,
        Status::Ok
    );
    (rx, app)
}

/// A logout pushed to an edge that answers as `answer` says: the time between the first two
/// tries, and the bodies they carried.
async fn first_retry_after(
    backend: Backend,
    answer: fn(usize) -> &'static [u8],
) -> (Duration, Vec<String>) {
    let (rx, _app) = logout_pushed_to(backend, answer).await;
    let started = std::time::Instant::now();
    while rx.times.lock().unwrap().len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "no retry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let times = rx.times.lock().unwrap().clone();
    let bodies = rx.bodies.lock().unwrap().clone();
    (times[1] - times[0], bodies)
}

/// Pushes go to every edge at once: one that accepts the connection and never answers (up to
/// five attempts of five seconds each) does not hold back the others, neither this push nor
/// the next one.
async fn a_hung_edge_does_not_delay_the_others(backend: Backend) {
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_url = format!("http://{}/_gatehouse/sync", hung.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            held.push(socket);
        }
    });
    let rx = receiver().await;
    let urls = vec![hung_url, rx.url.clone()];
    let app = TestApp::start_with(backend, move |c| c.edge_sync_urls = urls).await;
    app.register("alice").await;
    for pushed in 1..=2 {
        let token = str_of(&app.login("alice").await, "access_token").to_owned();
        let started = std::time::Instant::now();
        assert_eq!(
            app.send("POST", "/v1/logout", None, Some(&token)).await.0,
            Status::Ok
        );
        while rx.bodies.lock().unwrap().len() < pushed {
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "push {pushed} waited behind the hung edge"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Entries commit in `seq` order: a revocation that took its `seq` first but commits last is
/// in the next snapshot, not hidden behind a cached one already stamped with a higher `seq`.
async fn a_late_commit_is_in_the_next_snapshot(backend: Backend) {
    // Named, so the test can see its own connection wait for the write-order lock.
    let name = format!("late-commit-{}", std::process::id());
    let app = start_watched(backend, &name).await;
    app.register("alice").await;
    let verifier = app.verifier().await;
    let keys = verifier.keys().clone();
    let mut claims = Vec::new();
    for _ in 0..2 {
        let token = str_of(&app.login("alice").await, "access_token").to_owned();
        claims.push(verifier.verify(&token, app.clock().now()).unwrap());
    }
    let [first, second] = [claims[0].clone(), claims[1].clone()];
    let now = app.clock().now();

    // The first transaction writes its entry and holds its commit until told.
    let slow = HeldRevocation::start(&app, now, move |r| r.token(&first).map(drop));
    let fast = {
        let revoker = Revoker::for_command(app.store().clone(), app.config.clone());
        std::thread::spawn(move || revoker.run_sync(now, |r| r.token(&second)))
    };
    // Whatever is committed now is snapshotted (and cached) before the first commits, once the
    // second waits for the first.
    let never = "the second revocation never waited for the first";
    until_waiting(backend, &name, "advisory", never).await;
    assert_eq!(
        app.send("GET", "/v1/revocations", None, None).await.0,
        Status::Ok
    );
    slow.commit();
    fast.join().unwrap().unwrap();

    // Committed by another revoker (as by another replica): the app reads the newest seq again
    // once its last read is 100 ms old (`the_lists_read_the_newest_revocation_at_most_every_100_ms`).
    tokio::time::sleep(Duration::from_millis(150)).await;
    let list = app.snapshot(&keys, now).await;
    for (which, c) in ["the late commit", "the early commit"].iter().zip(&claims) {
        assert_eq!(
            list.check(c),
            Some(RevocationReason::Token),
            "{which} is in the snapshot"
        );
    }
}

/// After a push whose KV write the edge could not make, and which landed on its retry a
/// second later, the next revocation's push waits 1.2 s after that retry, not after its own
/// build: sent at once, its write lands within KV's second of the retry's and is refused too,
/// and so on for every push while revocations keep coming.
async fn the_next_push_is_spaced_from_a_late_retry(backend: Backend) {
    const KV_FAILED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
                               content-type: application/json\r\ncontent-length: 26\r\n\
                               connection: close\r\n\r\n{\"code\":\"kv_write_failed\"}";
    let rx = receiver_answering(|n| if n == 0 { KV_FAILED } else { ACCEPTED }).await;
    let url = rx.url.clone();
    let app = TestApp::start_with(backend, move |c| c.edge_sync_urls = vec![url]).await;
    app.register("alice").await;
    let tokens = [
        str_of(&app.login("alice").await, "access_token").to_owned(),
        str_of(&app.login("alice").await, "access_token").to_owned(),
    ];
    for token in &tokens {
        assert_eq!(
            app.send("POST", "/v1/logout", None, Some(token)).await.0,
            Status::Ok
        );
    }
    let started = std::time::Instant::now();
    while rx.times.lock().unwrap().len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(15), "three pushes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let times = rx.times.lock().unwrap().clone();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(950),
            "pushes {gap:?} apart: {times:?}"
        );
    }
}

/// The lists' requests share one read of the newest revocation per 100 ms: anyone may ask for
/// them, unauthenticated, and each took a pool permit before. A revocation committed here is in
/// the next list at once; one committed elsewhere (another replica, here the CLI's revoker)
/// within 100 ms plus a request.
async fn the_lists_read_the_newest_revocation_at_most_every_100_ms(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let verifier = app.verifier().await;
    let keys = verifier.keys().clone();
    let claims = |tokens: &serde_json::Value| {
        verifier
            .verify(str_of(tokens, "access_token"), app.clock().now())
            .unwrap()
    };
    let reads = || app.metric("gatehouse_revocation_seq_reads_total");
    let before = reads().await;
    let started = std::time::Instant::now();
    for path in ["/v1/revocations", "/v1/revocations/delta"].repeat(25) {
        assert_eq!(app.send("GET", path, None, None).await.0, Status::Ok);
    }
    let read = reads().await - before;
    let bound = u64::try_from(started.elapsed().as_millis() / 100).unwrap() + 1;
    assert!(
        read <= bound,
        "{read} reads for 50 requests, at most {bound}"
    );
    // At once, once the last read is past its 100 ms: one request reads, the others wait for
    // it (before, each that came meanwhile read too).
    tokio::time::sleep(Duration::from_millis(150)).await;
    let before = reads().await;
    let started = std::time::Instant::now();
    let requests = (0..20).map(|_| app.send("GET", "/v1/revocations/delta", None, None));
    for (status, _) in rocket::futures::future::join_all(requests).await {
        assert_eq!(status, Status::Ok);
    }
    let read = reads().await - before;
    let bound = u64::try_from(started.elapsed().as_millis() / 100).unwrap() + 1;
    assert!(
        read <= bound,
        "{read} reads for 20 requests at once, at most {bound}"
    );

    let here = app.login("alice").await;
    let body = format!("token={}", str_of(&here, "access_token"));
    let (status, _) = app.send("POST", "/v1/revoke", Some(&body), None).await;
    assert_eq!(status, Status::Ok);
    let now = app.clock().now();
    assert!(
        app.snapshot(&keys, now)
            .await
            .check(&claims(&here))
            .is_some()
    );

    let elsewhere = claims(&app.login("alice").await);
    let revoker = Revoker::for_command(app.store().clone(), app.config.clone());
    let revoked = elsewhere.clone();
    revoker.run_sync(now, move |r| r.token(&revoked)).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(app.snapshot(&keys, now).await.check(&elsewhere).is_some());
}

/// Both lists go out as `application/jwt`, the snapshot never from a stale cache, the delta
/// shared by a location's isolates for a second, each body the signed list whole.
async fn the_lists_are_served_as_jwts_with_their_cache_rules(backend: Backend) {
    let app = TestApp::start(backend).await;
    let keys = app.verifier().await.keys().clone();
    for (path, cache) in [
        ("/v1/revocations", "no-cache"),
        ("/v1/revocations/delta", "public, max-age=1"),
    ] {
        let response = app.client.get(path).dispatch().await;
        assert_eq!(response.status(), Status::Ok, "{path}");
        let header = |name: &str| response.headers().get_one(name).map(str::to_owned);
        assert_eq!(header("Content-Type").as_deref(), Some("application/jwt"));
        assert_eq!(header("Cache-Control").as_deref(), Some(cache));
        let body = response.into_string().await.unwrap();
        let (now, options) = (
            app.clock().now(),
            SnapshotOptions::new("https://issuer.test"),
        );
        let list = if path.ends_with("delta") {
            RevocationDelta::verify(&body, &keys, &options, now).map(|d| d.list().seq())
        } else {
            RevocationList::verify_snapshot(&body, &keys, &options, now).map(|l| l.seq())
        };
        assert!(list.is_ok(), "{path}: {list:?}");
    }
}

crate::on_both_backends!(
    the_lists_are_served_as_jwts_with_their_cache_rules,
    the_lists_read_the_newest_revocation_at_most_every_100_ms,
    the_next_push_is_spaced_from_a_late_retry,
    a_busy_edge_is_retried_when_it_asks,
    a_refused_kv_write_is_retried_after_kvs_write_interval,
    a_rejected_list_is_not_sent_again,
    a_redirect_or_a_list_too_large_is_not_sent_again,
    an_unknown_kid_is_tried_again,
    revocations_are_pushed_coalesced,
    a_hung_edge_does_not_delay_the_others,
    a_late_commit_is_in_the_next_snapshot,
);

/// A snapshot that cannot be built when a revocation asks for it (the database held past
/// `db_timeout_ms`) is built again, and pushed. Before, the push was dropped
/// until the next revocation, and the edge learnt of it only through its delta feed or cron.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_that_could_not_be_built_is_built_again() {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    let rx = receiver().await;
    let url = rx.url.clone();
    let app = TestApp::start_with(Backend::Postgres, move |c| {
        c.edge_sync_urls = vec![url];
        // As short as the suite's set-up safely allows: the build below runs out of it.
        c.db_timeout_ms = 1_000;
    })
    .await;
    app.register("alice").await;
    let pushes = || rx.bodies.lock().unwrap().len();
    let logout = |token: String| {
        let app = &app;
        async move {
            assert_eq!(
                app.send("POST", "/v1/logout", None, Some(&token)).await.0,
                Status::Ok
            );
        }
    };
    let first = str_of(&app.login("alice").await, "access_token").to_owned();
    let second = str_of(&app.login("alice").await, "access_token").to_owned();
    logout(first).await;
    let started = std::time::Instant::now();
    while pushes() < 1 {
        assert!(started.elapsed() < Duration::from_secs(10), "no first push");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The next build waits for 1.2 s after the first (`MIN_PUSH_INTERVAL`, to about 1.2 s): the
    // table is locked before it starts, and held past its deadline (about 2.2 s), until about
    // 3 s; its retry (about 2.4 s) waits for the lock.
    let timed_out = || app.metric("gatehouse_db_unavailable_total{reason=\"timed_out\"}");
    let timed_out_before = timed_out().await;
    let mut holder = diesel::PgConnection::establish(&app.config.database_url).unwrap();
    logout(second).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE revocations IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2900)).await;
    assert_eq!(pushes(), 1, "a build ran past the lock");
    // The build failed at its deadline, rather than waiting for the lock.
    assert!(
        timed_out().await > timed_out_before,
        "no build ran out of its deadline"
    );
    holder.batch_execute("COMMIT").unwrap();
    while pushes() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the failed build was not tried again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
