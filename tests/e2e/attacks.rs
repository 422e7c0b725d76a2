//! The attack corpus (tests/attacks/corpus.txt) against the issuer's bearer check and the edge:
//! every hostile token is refused with 401 and its code, and never reaches the origin.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_shared::{Algorithm, SigningKey};
use std::time::Duration;

use gatehouse_tests::{
    eventually, get_json, get_text, http, json_of, post_form, repo_root, unix_now,
};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};

use crate::system::{AUDIENCE, Options, PASSWORD, System, access};

struct Context<'a> {
    sys: &'a System,
    kid: String,
    sub: String,
    sid: String,
    attacker: SigningKey,
    now: i64,
}

impl Context<'_> {
    fn fill(&self, text: &str) -> String {
        text.replace("$KID", &self.kid)
            .replace("$ISS", &self.sys.issuer.url)
            .replace("$AUD", AUDIENCE)
            .replace("$SUB", &self.sub)
            .replace("$SID", &self.sid)
            .replace("$NOW", &self.now.to_string())
            .replace("$LONG", &"k".repeat(3000))
            // The attacker's own key, and URLs on the origin, whose request record shows any
            // fetch of them: a verifier that trusted the header's key would accept the token.
            .replace("$ATTACKER_X", &self.attacker_x())
            .replace("$ORIGIN", &self.sys.origin.url)
    }

    fn attacker_x(&self) -> String {
        let jwk = serde_json::to_value(self.attacker.public_key().to_jwk()).unwrap();
        jwk["x"].as_str().unwrap().to_owned()
    }

    fn honest_claims(&self) -> Value {
        json!({"iss": self.sys.issuer.url, "sub": self.sub, "aud": AUDIENCE, "exp": self.now + 300,
               "iat": self.now, "nbf": self.now, "jti": format!("attack-{}", self.now), "sid": self.sid, "scope": "read"})
    }

    fn token(&self, header: &str, claims: &str, signature: &str) -> String {
        let header = match header {
            "-" => format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{}"}}"#, self.kid),
            h => self.fill(h.strip_prefix("raw-header:").unwrap_or(h)),
        };
        let claims = if claims == "-" {
            self.honest_claims().to_string()
        } else if let Some(patch) = claims.strip_prefix("patch:") {
            let mut merged = self.honest_claims();
            let patch: Value = serde_json::from_str(&self.fill(patch)).unwrap();
            for (k, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    merged.as_object_mut().unwrap().remove(k);
                } else {
                    merged[k] = v.clone();
                }
            }
            merged.to_string()
        } else {
            self.fill(claims.strip_prefix("raw:").unwrap())
        };
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = match signature {
            "sign" => self.sys.issuer.key.sign_message(input.as_bytes()),
            "attacker" => self.attacker.sign_message(input.as_bytes()),
            "sign-noncanonical" => {
                let sig =
                    URL_SAFE_NO_PAD.encode(self.sys.issuer.key.sign_message(input.as_bytes()));
                // 64 bytes leave 4 unused bits in the last character; set one of them.
                let (head, last) = sig.split_at(sig.len() - 1);
                let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let index = alphabet.find(last).unwrap();
                let flipped = alphabet.chars().nth(index ^ 1).unwrap();
                return format!("{input}.{head}{flipped}");
            }
            "none" => Vec::new(),
            "zero" => vec![0; 64],
            "hs256-pubkey" => {
                let jwk = serde_json::to_value(self.sys.issuer.key.public_key().to_jwk()).unwrap();
                let public = jwk["x"].as_str().unwrap().to_owned();
                let mut mac =
                    Hmac::<sha2::Sha256>::new_from_slice(&URL_SAFE_NO_PAD.decode(public).unwrap())
                        .unwrap();
                mac.update(input.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
            other => panic!("unknown signature mode {other}"),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// `(name, token, expected code)` for every line of the corpus.
fn corpus(ctx: &Context<'_>) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(repo_root().join("tests/attacks/corpus.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split(" | ").map(str::trim).collect();
            match fields.as_slice() {
                ["token", literal, code] => {
                    let token = match literal.strip_prefix("repeat:") {
                        Some(spec) => {
                            let (ch, n) = spec.split_once(':').unwrap();
                            ch.repeat(n.parse().unwrap())
                        }
                        None => (*literal).to_owned(),
                    };
                    (format!("literal {literal:.40}"), token, (*code).to_owned())
                }
                [name, header, claims, signature, code] => (
                    (*name).to_owned(),
                    ctx.token(header, claims, signature),
                    (*code).to_owned(),
                ),
                _ => panic!("malformed corpus line: {line}"),
            }
        })
        .collect()
}

async fn refused(url: &str, token: &str) -> (u16, String) {
    let response = http().get(url).bearer_auth(token).send().await.unwrap();
    let (status, json) = json_of(response).await;
    (status, json["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_is_refused_by_the_issuer_and_the_edge() {
    let sys = System::start(Options::default()).await;
    let tokens = sys.user("alice").await;
    let (_, me) = get_json(&format!("{}/v1/me", sys.issuer.url), Some(access(&tokens))).await;
    let ctx = Context {
        sys: &sys,
        kid: sys.issuer.key.kid().to_owned(),
        sub: me["sub"].as_str().unwrap().to_owned(),
        sid: me["sid"].as_str().unwrap().to_owned(),
        attacker: SigningKey::generate(Algorithm::EdDsa).unwrap(),
        now: unix_now(),
    };
    // The harness builds tokens right: the honest case passes both.
    let honest = ctx.token("-", "-", "sign");
    assert_eq!(
        refused(&format!("{}/v1/me", sys.issuer.url), &honest)
            .await
            .0,
        200
    );
    assert_eq!(
        refused(&format!("{}/api/x", sys.edge.url), &honest).await.0,
        200
    );
    sys.origin.requests().await;

    let cases = corpus(&ctx);
    assert!(cases.len() >= 35, "{} cases", cases.len());
    for (name, token, code) in &cases {
        for url in [
            format!("{}/v1/me", sys.issuer.url),
            format!("{}/api/x", sys.edge.url),
        ] {
            let (status, got) = refused(&url, token).await;
            assert_eq!(
                (status, got.as_str()),
                (401, code.as_str()),
                "{name} at {url}"
            );
        }
    }
    assert!(
        sys.origin.requests().await.is_empty(),
        "no hostile token reached the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_kinds_of_credentials_are_refused() {
    let sys = System::start(Options::default()).await;
    let tokens = sys.user("alice").await;
    let issuer_me = format!("{}/v1/me", sys.issuer.url);
    let edge_api = format!("{}/api/x", sys.edge.url);
    let snapshot = get_text(&format!("{}/v1/revocations", sys.issuer.url)).await;
    for (token, code) in [
        (tokens["refresh_token"].as_str().unwrap(), "malformed"),
        (snapshot.as_str(), "wrong_type"),
    ] {
        for url in [&issuer_me, &edge_api] {
            assert_eq!(refused(url, token).await, (401, code.to_owned()), "{url}");
        }
    }
    // A user the issuer does not know (deleted, or never existed) has no valid tokens there.
    let ghost = sys.mint(&sys.claims());
    assert_eq!(
        refused(&issuer_me, &ghost).await,
        (401, "revoked".to_owned())
    );

    // A disabled user's tokens die everywhere (the edge hears through the push).
    let out = sys.issuer.cli(
        &["users", "create", "--admin", "root"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{:?} (a signal shows here): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let form = [
        ("grant_type", "password"),
        ("username", "root"),
        ("password", PASSWORD),
        ("scope", "read admin"),
    ];
    let (status, admin) = post_form(&format!("{}/v1/token", sys.issuer.url), &form).await;
    assert_eq!(status, 200, "{admin}");
    let token = access(&tokens).to_owned();
    let (_, me) = get_json(&issuer_me, Some(&token)).await;
    let disable = format!(
        "{}/v1/admin/users/{}/disable",
        sys.issuer.url,
        me["sub"].as_str().unwrap()
    );
    let response = http()
        .post(disable)
        .bearer_auth(access(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        refused(&issuer_me, &token).await,
        (401, "revoked".to_owned())
    );
    let edge = &edge_api;
    let token = &token;
    eventually(
        "the edge to refuse the disabled user",
        Duration::from_secs(20),
        || async move { (refused(edge, token).await == (401, "revoked".to_owned())).then_some(()) },
    )
    .await;
}
