//! `POST /v1/token`: the OAuth 2.0 token endpoint (RFC 6749) for the password and refresh-token
//! grants.

mod request;

use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_shared::{Audience, SigningKey, TokenClaims, sign_access_token};
use rocket::serde::json::Json;
use rocket::{Route, State, post, routes};
use serde::Serialize;

use super::{NoStore, naming_client};
use crate::clock::Clock;
use crate::config::{ADMIN_SCOPE, Config};
use crate::context::FormOrJson;
use crate::credentials::{self, Checked, Recheck};
use crate::db::Db;
use crate::error::ApiError;
use crate::ids;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::password::{Hasher, Match};
use crate::password::{may_be_a_password, normalize_username};
use crate::ratelimit::{FailureCharge, RateLimit};
use crate::revoker::Revoker;
use crate::store::lockout::{self, Attempt};
use crate::store::sessions::{self, Grant, NewSession, Rotation};
use crate::store::users::{self, User};
use crate::store::{audit, write_tx};
use request::{BasicClient, ClientRequest, GrantRequest, TokenRequest};

/// One message for an unknown user and a wrong password alike.
const BAD_CREDENTIALS: &str = "invalid username or password";
const SCOPE_UNAVAILABLE: &str = "a requested scope is not available to this user";
const SCOPE_NOT_GRANTED: &str = "a requested scope was not granted to this session";
/// The longest an answer waits for a cut-off's end ([`issue_time`]): the cut-off's own second
/// and a second of clock skew between the replica that wrote it and this one.
const MAX_CUT_OFF_WAIT_SECS: i64 = 2;

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    scope: String,
}

/// What the grants work with, taken from the handler's typed guards.
struct Grants<'r> {
    config: &'r Config,
    db: &'r Db,
    hasher: &'r Hasher,
    metrics: &'r Metrics,
    revoker: &'r Revoker,
    limit: &'r RateLimit,
    client_ip: Option<IpAddr>,
    /// The client the request names (RFC 6749 §3.2.1), checked by [`ClientRequest::read`].
    client_id: Option<String>,
    clock: &'r Arc<Clock>,
    now: i64,
}

#[allow(clippy::too_many_arguments)] // one typed guard per managed piece (Rocket's idiom)
#[post("/v1/token", data = "<body>")]
async fn token(
    config: &State<Config>,
    db: &State<Db>,
    hasher: &State<Hasher>,
    metrics: &State<Arc<Metrics>>,
    revoker: &State<Revoker>,
    keys: &State<Arc<KeyRing>>,
    limit: &State<Arc<RateLimit>>,
    clock: &State<Arc<Clock>>,
    client_ip: Option<IpAddr>,
    basic: BasicClient,
    body: Result<FormOrJson<TokenRequest>, ApiError>,
) -> Result<NoStore<Json<TokenResponse>>, ApiError> {
    limit.check(client_ip)?;
    // The body's arrival, not the headers' (the `Now` guard): a refresh token is judged against
    // its rotation's time, and a client that opened the request before the rotation and sent
    // the body after the grace window would otherwise pass inside it.
    let FormOrJson(request, now) = body.map_err(ApiError::as_oauth)?;
    // The request's own faults first: a client must learn that its request is wrong even
    // while this replica cannot sign.
    let ClientRequest { grant, client_id } = ClientRequest::read(request, basic)?;
    // Before any grant commits: a replica that cannot sign (or draw the token's id) refuses
    // without spending a refresh token or starting a session.
    let ring = keys.for_signing(db, now).await?;
    let jti = ids::new_id()?;
    let grants = Grants {
        config,
        db,
        hasher,
        metrics,
        revoker,
        limit,
        client_ip,
        client_id,
        clock,
        now,
    };
    let issued = match grant {
        GrantRequest::Password {
            username,
            password,
            scope,
        } => password_grant(&grants, (username, password), scope).await?,
        GrantRequest::RefreshToken { presented, scope } => {
            refresh_grant(&grants, presented, scope).await?
        }
    };
    // Held until its second has come, so that no verifier sees an `iat` ahead of its clock. An
    // answer lost meanwhile is lost as any other: the client retries within the grace window.
    clock.reach(issued.at).await;
    Ok(NoStore::new(Json(respond(
        config,
        &ring.signer,
        now,
        jti,
        issued,
    )?)))
}

/// A committed grant and the second its access token is issued at.
struct Issued {
    grant: Grant,
    /// `now`, or the end of a cut-off of the user's tokens that covers `now` ([`issue_time`]).
    at: i64,
}

/// A client that failed too often (on this replica, or on any by the failures recorded) is
/// refused before any check, whatever the password; else it is charged a failure, given back
/// unless the login is refused, and a refused one is recorded for every replica.
async fn password_grant(
    grants: &Grants<'_>,
    credentials: (String, String),
    scope: Option<String>,
) -> Result<Issued, ApiError> {
    let charge = grants
        .limit
        .charge_failure(grants.db, grants.clock, grants.client_ip)
        .await?;
    let grant = charged_password_grant(grants, credentials, scope, &charge).await;
    charge.settle(grants.db, grants.clock).await;
    grant
}

async fn charged_password_grant(
    grants: &Grants<'_>,
    (username, password): (String, String),
    scope: Option<String>,
    charge: &FailureCharge<'_>,
) -> Result<Issued, ApiError> {
    let (now, cfg) = (grants.now, grants.config.lockout);
    let refused = |error: ApiError| {
        grants.metrics.logins_failed.inc();
        charge.keep();
        Err(error)
    };
    // The user and, for an enabled one, a lockout reservation: one trip to the pool.
    let found = match normalize_username(&username) {
        Ok(name) if may_be_a_password(&password) => {
            credentials::find_and_reserve(grants.db, (now, cfg), grants.client_ip, move |c| {
                Ok(users::by_username(c, &name)?.filter(|u| !u.disabled))
            })
            .await?
        }
        _ => None,
    };
    let Some((user, reservation)) = found else {
        // Same work as a real check, so timing does not tell which usernames exist.
        grants.hasher.verify(password, None).await?;
        return refused(ApiError::InvalidGrant(BAD_CREDENTIALS));
    };
    let checked = credentials::check(
        grants.db,
        grants.hasher,
        grants.metrics,
        &user,
        reservation,
        password.clone(),
        (now, cfg),
        // The client's failure stands even if recording it fails: the answer told it.
        ("login_failed", || charge.keep()),
    )
    .await?;
    let (typed_form_hash, attempt) = match checked {
        Checked::Correct { rehash, attempt } => (rehash, attempt),
        Checked::Wrong => return refused(ApiError::InvalidGrant(BAD_CREDENTIALS)),
        Checked::LockedOut { retry_after } => return refused(ApiError::LockedOut { retry_after }),
    };
    let granted = granted_scope(grants.config, scope.as_deref(), &user);
    match start_session(
        grants,
        (user, typed_form_hash),
        &attempt,
        granted,
        scope,
        password,
    )
    .await
    {
        Ok(Commit::Started(issued)) => {
            grants.metrics.logins_ok.inc();
            Ok(issued)
        }
        Ok(Commit::ScopeRefused) => Err(ApiError::InvalidScope(SCOPE_UNAVAILABLE)),
        Ok(Commit::Refused) => {
            // Right when checked; a change since is no failed attempt of this client's, and
            // its reservation would count against it until the window ended.
            credentials::give_back(grants.db, attempt).await;
            Err(ApiError::InvalidGrant(BAD_CREDENTIALS))
        }
        Err(failure) => {
            // Not a verdict on the password, which was right: no failed attempt either.
            credentials::give_back(grants.db, attempt).await;
            Err(failure)
        }
    }
}

/// How a login with the right password ended.
enum Commit {
    Started(Issued),
    /// The password was right, a requested scope was not available.
    ScopeRefused,
    /// Disabled, or given another password, since the check.
    Refused,
}

/// After the right password: the lockout reset, a rehash if the argon2 parameters changed or
/// the hash is of the password as typed (`typed_form_hash`, made before NFKC), the session and
/// their audit rows, in one transaction over the locked account row (a
/// password change, disable or revocation since the check wins). A parallel login may have
/// rehashed the password meanwhile; that new hash is checked once more rather than taken for
/// a password change.
async fn start_session(
    grants: &Grants<'_>,
    (mut user, mut typed_form_hash): (User, bool),
    attempt: &Attempt,
    scope: Option<String>,
    requested: Option<String>,
    password: String,
) -> Result<Commit, ApiError> {
    let (now, ttl) = (grants.now, grants.config.session_ttl_secs);
    let access_ttl = i64::from(grants.config.access_token_ttl_secs);
    for last_try in [false, true] {
        let rehash = scope.is_some()
            && (typed_form_hash || grants.hasher.policy().requires_upgrade(&user.password_hash));
        let new_hash = if rehash {
            Some(grants.hasher.hash(password.clone()).await?)
        } else {
            None
        };
        let (checked, scope, requested) = (user.clone(), scope.clone(), requested.clone());
        let (client_id, clock) = (grants.client_id.clone(), Arc::clone(grants.clock));
        let attempt = attempt.clone();
        let outcome = grants
            .db
            .run(move |c| {
                write_tx(c, |c| {
                    match credentials::recheck(c, &checked)? {
                        Recheck::Unchanged => {}
                        changed => return Ok(Err(changed)),
                    }
                    lockout::record_success(c, &attempt, now)?;
                    let Some(scope) = scope else {
                        // The client's own text: bounded, and only the characters a scope
                        // token may hold (RFC 6749 §3.3), so no audit line carries more.
                        let requested = requested.as_deref().map(|r| {
                            r.chars()
                                .filter(|c| *c == ' ' || ('!'..='~').contains(c))
                                .take(256)
                                .collect::<String>()
                        });
                        let detail = serde_json::json!({"requested": requested});
                        audit::record(c, now, "login_scope_refused", Some(&checked.id), &detail)?;
                        return Ok(Ok(Commit::ScopeRefused));
                    };
                    if let Some(hash) = new_hash {
                        users::set_password_hash(c, &checked.id, &hash)?;
                        let detail = serde_json::json!({});
                        audit::record(c, now, "password_rehashed", Some(&checked.id), &detail)?;
                    }
                    let new = NewSession {
                        user_id: &checked.id,
                        scope: &scope,
                        client_id: client_id.as_deref(),
                    };
                    let grant = sessions::start(c, &new, now, ttl)?;
                    // A cut-off of the user's sessions: this one starts after it, and its tokens
                    // are issued past it.
                    let at = issue_time(&grant, (now, clock.now()), access_ttl, Wait::OrRefuse)?;
                    let sid = &grant.session.id;
                    let mut detail =
                        naming_client(serde_json::json!({"sid": sid}), client_id.clone());
                    // Its tokens' `iat`, where a cut-off put it past the row's own time.
                    if let (true, Some(members)) = (at != now, detail.as_object_mut()) {
                        members.insert("tokens_issued_at".into(), at.into());
                    }
                    audit::record(c, now, "login_ok", Some(&checked.id), &detail)?;
                    Ok(Ok(Commit::Started(Issued { grant, at })))
                })
            })
            .await?;
        match outcome {
            Ok(commit) => return Ok(commit),
            Err(Recheck::NewHash(current)) if !last_try => {
                let hash = Some(current.password_hash.clone());
                match grants.hasher.check(password.clone(), hash).await? {
                    Match::No => return Ok(Commit::Refused),
                    found => typed_form_hash = found == Match::AsTyped,
                }
                user = current;
            }
            Err(_) => return Ok(Commit::Refused),
        }
    }
    Ok(Commit::Refused)
}

/// The requested scopes if the user may have them all, else `None` (`invalid_scope`); none
/// requested gives the default scopes.
fn granted_scope(config: &Config, requested: Option<&str>, user: &User) -> Option<String> {
    let base: Vec<&str> = config.user_scopes.split_whitespace().collect();
    let Some(requested) = requested.filter(|s| !s.trim().is_empty()) else {
        return Some(base.join(" "));
    };
    let mut granted: Vec<&str> = Vec::new();
    for scope in requested.split_whitespace() {
        let allowed = base.contains(&scope) || (scope == ADMIN_SCOPE && user.is_admin);
        if !allowed {
            return None;
        }
        if !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    Some(granted.join(" "))
}

async fn refresh_grant(
    grants: &Grants<'_>,
    presented: String,
    scope: Option<String>,
) -> Result<Issued, ApiError> {
    let (grace, now) = (grants.config.refresh_grace_secs, grants.now);
    let access_ttl = i64::from(grants.config.access_token_ttl_secs);
    // The body's arrival on the database's clock, which the grace window is judged on.
    let database_now = grants.clock.on_database_clock(grants.db, now).await;
    // RFC 6749 §6: a narrower scope may be asked for, never a wider one. Checked before the
    // rotation, which a refusal must not spend.
    let requested = scope.filter(|s| !s.trim().is_empty());
    if let Some(requested) = requested.clone() {
        let token = presented.clone();
        let session = grants
            .db
            .run(move |c| sessions::session_of_refresh_token(c, &token, now))
            .await?;
        // Only for the current token: a rotated one goes on to the rotation, whose reuse
        // detection a scope must not let a thief step around.
        let granted = |scope: &str| grants.config.still_granted(scope);
        if session.is_some_and(|named| {
            named.current && narrowed_scope(&granted(&named.session.scope), &requested).is_none()
        }) {
            return Err(ApiError::InvalidScope(SCOPE_NOT_GRANTED));
        }
    }
    let (client_id, clock) = (grants.client_id.clone(), Arc::clone(grants.clock));
    let rotation = grants
        .db
        .run(move |c| {
            write_tx(c, |c| {
                let presented = (presented.as_str(), client_id.as_deref());
                let rotation = sessions::rotate(c, presented, (now, database_now), grace)?;
                // A refusal rolls the rotation back: the client asks again later.
                let times = (now, clock.now());
                let at = match &rotation {
                    Rotation::Rotated(grant) => {
                        issue_time(grant, times, access_ttl, Wait::OrRefuse)?
                    }
                    // Told to come back, a retry could come back past the grace window and be
                    // taken for reuse.
                    Rotation::Retried(grant) => issue_time(grant, times, access_ttl, Wait::OrNot)?,
                    _ => now,
                };
                Ok((rotation, at))
            })
        })
        .await?;
    let (rotation, at) = rotation;
    let (mut grant, counter) = match rotation {
        Rotation::Rotated(grant) => (grant, &grants.metrics.refreshes),
        Rotation::Retried(grant) => (grant, &grants.metrics.refresh_retries),
        Rotation::ReuseDetected(reuse) => {
            grants
                .revoker
                .run(now, move |r| sessions::end_for_reuse(r, &reuse))
                .await?;
            grants.metrics.refresh_reuse_detected.inc();
            return Err(ApiError::InvalidGrant(
                "the refresh token was already used; the session has been revoked",
            ));
        }
        Rotation::OtherClient => {
            return Err(ApiError::InvalidGrant(
                "the refresh token was issued to another client",
            ));
        }
        Rotation::Invalid => {
            return Err(ApiError::InvalidGrant(
                "the refresh token is invalid or expired",
            ));
        }
    };
    counter.inc();
    // The session keeps its scope; this access token carries what the policy still grants of
    // it, narrowed to what was asked for.
    grant.session.scope = grants.config.still_granted(&grant.session.scope);
    if let Some(requested) = requested {
        grant.session.scope = narrowed_scope(&grant.session.scope, &requested)
            .ok_or(ApiError::InvalidScope(SCOPE_NOT_GRANTED))?;
    }
    Ok(Issued { grant, at })
}

/// What a grant under a cut-off does when the cut-off ends too far ahead to wait for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Refused, rolled back: the client asks again later.
    OrRefuse,
    /// Issued at once, a token the cut-off refuses until the client's next refresh.
    OrNot,
}

/// The second a grant's access token is issued at. A token under a cut-off of the user's
/// tokens would be refused at once, so it is issued at the cut-off's end instead: a cut-off of
/// every session (`Revocations::user`) covers the second it was written in, one that replaced
/// a revoked token past the per-user bound (`revoker::MAX_TOKEN_ENTRIES_PER_USER`) that token's
/// second, either up to a replica's clock skew. The answer waits for that second, at most
/// [`MAX_CUT_OFF_WAIT_SECS`] from `committing` (the clock as the grant commits: a login's
/// password check may have taken a while since `now`, the body's arrival), and only for a token
/// that lives past it: its `exp` still counts from `now` ([`respond`]). A session that ends by
/// then gets no token.
fn issue_time(
    grant: &Grant,
    (now, committing): (i64, i64),
    access_ttl: i64,
    wait: Wait,
) -> Result<i64, ApiError> {
    let Some(end) = grant.cut_off_end else {
        return Ok(now);
    };
    if end - committing > MAX_CUT_OFF_WAIT_SECS || end >= now + access_ttl {
        return match wait {
            Wait::OrNot => Ok(now),
            Wait::OrRefuse => Err(ApiError::Unavailable {
                message: "this account's tokens were just revoked; ask again later",
                retry_after: u64::try_from(end - committing).unwrap_or(1).max(1),
            }),
        };
    }
    if end >= grant.session.expires_at {
        return Err(ApiError::InvalidGrant(
            "the refresh token is invalid or expired",
        ));
    }
    Ok(end)
}

/// The session's scopes that `requested` names, in the session's order, or `None` when it
/// names one the session does not hold.
fn narrowed_scope(session: &str, requested: &str) -> Option<String> {
    let held: Vec<&str> = session.split_whitespace().collect();
    let wanted: Vec<&str> = requested.split_whitespace().collect();
    if wanted.iter().any(|s| !held.contains(s)) {
        return None;
    }
    let kept: Vec<&str> = held.into_iter().filter(|s| wanted.contains(s)).collect();
    Some(kept.join(" "))
}

/// Signs the access token for a grant. It never outlives its session, and its lifetime counts
/// from the request's `now` even when it is issued later ([`issue_time`]): what revocation
/// entries and retired keys are kept for bounds it.
fn respond(
    config: &Config,
    signer: &SigningKey,
    now: i64,
    jti: String,
    Issued { grant, at }: Issued,
) -> Result<TokenResponse, ApiError> {
    let exp = (now + i64::from(config.access_token_ttl_secs)).min(grant.session.expires_at);
    let claims = TokenClaims {
        iss: config.issuer.clone(),
        sub: grant.session.user_id.clone(),
        aud: Audience::single(&config.audience),
        exp,
        iat: at,
        nbf: Some(at),
        jti,
        sid: grant.session.id.clone(),
        scope: grant.session.scope.clone(),
        client_id: grant.session.client_id.clone(),
    };
    let access_token = sign_access_token(signer, &claims)
        .map_err(|e| ApiError::Internal(format!("signing: {e}")))?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: exp - at,
        refresh_token: grant.refresh_token,
        scope: claims.scope,
    })
}

pub fn routes() -> Vec<Route> {
    routes![token]
}
