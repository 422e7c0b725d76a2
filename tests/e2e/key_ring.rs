//! The key ring shared by issuer replicas: two processes on one PostgreSQL with the same
//! configuration and no key file of their own rotate at once, revoke a key and restart, and keep
//! agreeing on one signing key.

use std::time::Duration;

use gatehouse_shared::{KeySet, UntrustedToken};
use gatehouse_tests::{Issuer, eventually, get_json};

const PASSWORD: &str = "correct horse battery staple";

fn kid_of(token: &str) -> String {
    UntrustedToken::parse(token, 8192)
        .unwrap()
        .header()
        .key_id
        .clone()
        .unwrap()
}

async fn published(issuer: &Issuer) -> Vec<String> {
    let (_, jwks) = get_json(&format!("{}/.well-known/jwks.json", issuer.url), None).await;
    let mut kids: Vec<String> = KeySet::from_json(&jwks.to_string())
        .unwrap()
        .kids()
        .map(str::to_owned)
        .collect();
    kids.sort();
    kids
}

async fn signing_kid(issuer: &Issuer) -> String {
    kid_of(
        issuer.login("alice", PASSWORD).await["access_token"]
            .as_str()
            .unwrap(),
    )
}

fn active_kids(issuer: &Issuer) -> Vec<String> {
    let out = issuer.cli(&["keys", "list"], "");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\tactive\t"))
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_rotate_at_once_revoke_and_restart_on_one_key() {
    let mut a = Issuer::start(&[]).await;
    let b = a.replica().await;
    a.register("alice", PASSWORD).await;
    let first = signing_kid(&a).await;
    assert_eq!(
        signing_kid(&b).await,
        first,
        "the replica signs with the same key"
    );
    assert_eq!(published(&a).await, published(&b).await);

    // Two `keys rotate` processes at once: one key ends up active, and both replicas sign
    // with it after their next key-ring refresh (every second here).
    let (first_cli, second_cli) = (
        a.cli_child(&["keys", "rotate"]),
        b.cli_child(&["keys", "rotate"]),
    );
    let outcomes = [
        first_cli.wait_with_output().unwrap(),
        second_cli.wait_with_output().unwrap(),
    ];
    assert!(outcomes.iter().any(|o| o.status.success()), "{outcomes:?}");
    let active = active_kids(&a);
    assert_eq!(active.len(), 1, "{active:?}");
    let winner = active[0].clone();
    assert_ne!(winner, first);
    let (a_ref, b_ref, want) = (&a, &b, winner.as_str());
    eventually(
        "both replicas to sign with the winner",
        Duration::from_secs(10),
        || async move {
            (signing_kid(a_ref).await == want && signing_kid(b_ref).await == want).then_some(())
        },
    )
    .await;

    // Revoke the first key: it leaves both replicas' JWKS.
    let out = a.cli(&["keys", "revoke", &first], "");
    assert!(out.status.success(), "{out:?}");
    let first_ref = first.as_str();
    eventually(
        "the revoked key to leave both JWKS",
        Duration::from_secs(10),
        || async move {
            let (pa, pb) = (published(a_ref).await, published(b_ref).await);
            (!pa.iter().any(|k| k == first_ref) && pa == pb).then_some(())
        },
    )
    .await;

    // A rolling restart with the original key file still configured takes nothing back.
    a.restart().await;
    assert_eq!(signing_kid(&a).await, winner);
    assert_eq!(active_kids(&a), std::slice::from_ref(&winner));
    let token = a.login("alice", PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = get_json(&format!("{}/v1/me", b.url), Some(&token)).await;
    assert_eq!(status, 200);
}
