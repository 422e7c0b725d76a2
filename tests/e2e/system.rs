//! One whole system per scenario: origin, issuer (pushing to the edge unless told not to) and
//! edge, plus helpers to mint tokens with the issuer's own key.

use gatehouse_shared::{Audience, TokenClaims, sign_access_token};
use gatehouse_tests::{Edge, Issuer, Origin, eventually, free_port, http, json_of, unix_now};
use serde_json::Value;
use std::time::Duration;

pub const AUDIENCE: &str = "gatehouse-e2e";
pub const PASSWORD: &str = "plover-quartz-7";

pub struct System {
    pub origin: Origin,
    pub issuer: Issuer,
    pub edge: Edge,
}

pub struct Options<'a> {
    pub push: bool,
    pub issuer_env: &'a [(&'a str, &'a str)],
    pub edge_vars: &'a [(&'a str, &'a str)],
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            push: true,
            issuer_env: &[],
            edge_vars: &[],
        }
    }
}

impl System {
    pub async fn start(options: Options<'_>) -> Self {
        let origin = Origin::start().await;
        let edge_port = free_port();
        let sync = format!("http://127.0.0.1:{edge_port}/_gatehouse/sync");
        let mut issuer_env: Vec<(&str, &str)> = options.issuer_env.to_vec();
        if options.push {
            issuer_env.push(("GATEHOUSE_EDGE_SYNC_URLS", &sync));
        }
        let issuer = Issuer::start(&issuer_env).await;
        let mut vars: Vec<(&str, &str)> = vec![
            ("ORIGIN_URL", &origin.url),
            ("ISSUER_URL", &issuer.url),
            ("EXPECTED_ISSUER", &issuer.url),
            ("EXPECTED_AUDIENCE", AUDIENCE),
            ("PUBLIC_PATHS", "/,/public/*"),
            ("ROUTE_SCOPES", "/api/admin/*=admin,/api/*=read"),
            ("KV_REFRESH_SECS", "1"),
        ];
        // Later entries win: a scenario's own settings override the defaults.
        for (k, v) in options.edge_vars {
            vars.retain(|(name, _)| name != k);
            vars.push((k, v));
        }
        let edge = Edge::start(edge_port, &vars).await;
        let system = Self {
            origin,
            issuer,
            edge,
        };
        system.edge.run_cron().await;
        let edge = &system.edge;
        eventually(
            "the edge to hold a revocation list",
            Duration::from_secs(10),
            || async {
                edge.health().await["revocations"]["seq"]
                    .as_u64()
                    .map(|_| ())
            },
        )
        .await;
        system
    }

    /// Registers `name` and logs in; returns the token response.
    pub async fn user(&self, name: &str) -> Value {
        self.issuer.register(name, PASSWORD).await;
        self.issuer.login(name, PASSWORD).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        get(&self.edge, path, token).await
    }

    /// Claims as the issuer would sign them, to be changed by the scenario.
    pub fn claims(&self) -> TokenClaims {
        let now = unix_now();
        TokenClaims {
            iss: self.issuer.url.clone(),
            sub: "minted-user".into(),
            aud: Audience::single(AUDIENCE),
            exp: now + 300,
            iat: now,
            nbf: Some(now),
            jti: format!("jti-{now}"),
            sid: "minted-session".into(),
            scope: "read write".into(),
            client_id: None,
        }
    }

    /// `[vars]` for another edge before this system's origin that has this issuer's keys
    /// pinned (`jwks`) and cannot reach the issuer (`dead_issuer`): no list ever arrives, so it
    /// serves `fail_open`.
    pub fn pinned_edge_vars<'a>(
        &'a self,
        jwks: &'a str,
        dead_issuer: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("ORIGIN_URL", self.origin.url.as_str()),
            ("ISSUER_URL", dead_issuer),
            ("EXPECTED_ISSUER", self.issuer.url.as_str()),
            ("EXPECTED_AUDIENCE", AUDIENCE),
            ("JWKS", jwks),
            ("STALE_POLICY", "fail_open"),
        ]
    }

    /// A token signed with the issuer's real key.
    pub fn mint(&self, claims: &TokenClaims) -> String {
        sign_access_token(&self.issuer.key, claims).unwrap()
    }
}

pub fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

/// `GET path` at `edge`, with `token` as the bearer if given.
pub async fn get(edge: &Edge, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http().get(format!("{}{path}", edge.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    json_of(req.send().await.expect("edge request")).await
}

/// `POST /_gatehouse/sync` of `body` (a signed list, or anything a client might send).
pub async fn push(edge_url: &str, body: String) -> (u16, Value) {
    let url = format!("{edge_url}/_gatehouse/sync");
    json_of(http().post(url).body(body).send().await.expect("push")).await
}

/// Asserts that a revoking command (`keys revoke`) recorded its revocation: exit status 0, or 3
/// when its push to the edge failed. Right after a rotation the edge may not know the key the
/// new list is signed with (`unknown_kid` until its refetch cooldown ends), and the delta feed
/// or the cron brings the revocation instead, which is what these tests wait for.
pub fn assert_recorded(out: &std::process::Output) {
    assert!(matches!(out.status.code(), Some(0 | 3)), "{out:?}");
}
