//! The revocation list: revoked tokens (`jti`), sessions (`sid`), per-user cut-offs ("every
//! token of `sub` issued before T") and signing keys (`kid`, an emergency revocation), each kept
//! until the last token it can affect has expired.
//!
//! Ids are stored as 64-bit keys derived with SHA-256, which keeps 100k entries well under
//! 2 MiB. A key collision can only make an unrevoked token look revoked (a refusal, never an
//! acceptance), and ids are chosen by the issuer, so nobody can aim for one.

mod delta;
mod encoding;
mod rule;
mod snapshot;
mod view;

use core::fmt;
use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::claims::AccessClaims;

pub use delta::{DELTA_TYPE, RevocationDelta};
#[cfg(any(test, feature = "testing"))]
pub use rule::testing;
pub use rule::{
    RevocationKind, disowns, entry_expiry, entry_revokes, is_newer, replaces, replaces_list,
};
pub use snapshot::{SNAPSHOT_TYPE, SnapshotOptions};
pub use view::RevocationView;

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RevocationReason {
    /// This token's `jti` was revoked.
    Token,
    /// Its session (`sid`) was revoked: logout, or refresh-token reuse.
    Session,
    /// Every token of its user issued before a cut-off was revoked.
    User,
    /// The key that signed it was revoked.
    Key,
}

impl RevocationReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Session => "session",
            Self::User => "user",
            Self::Key => "key",
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use RevocationKind as Kind;

fn id_key(kind: Kind, id: &str) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // codes are 1..=4
    let tag = kind.code() as u8;
    let digest = Sha256::new()
        .chain_update(b"gatehouse-revocation\0")
        .chain_update([tag])
        .chain_update(id.as_bytes())
        .finalize();
    let mut key = [0u8; 8];
    key.copy_from_slice(digest.get(..8).unwrap_or_default());
    u64::from_be_bytes(key)
}

/// The 64-bit id a signing key's revocation entry is stored under. A record of which key signed
/// a list keeps it (the edge's KV head, whose metadata passes through JavaScript numbers) to ask
/// [`RevocationList::revokes_key_id`] later.
pub fn key_id(kid: &str) -> u64 {
    id_key(Kind::Key, kid)
}

/// Clamps Unix seconds into the u32 range the encoding uses (good until 2106).
fn to_u32_secs(secs: i64) -> u32 {
    u32::try_from(secs.max(0)).unwrap_or(u32::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    key: u64,
    expires_at: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UserEntry {
    key: u64,
    /// Tokens with `iat` strictly before this are revoked.
    issued_before: u32,
    expires_at: u32,
}

/// A parsed revocation list, sorted for binary-search lookups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevocationList {
    issuer: String,
    seq: u64,
    issued_at: i64,
    /// The `kid` that signed it, once verified; empty for a list built here.
    signer: String,
    tokens: Vec<Entry>,
    sessions: Vec<Entry>,
    users: Vec<UserEntry>,
    keys: Vec<Entry>,
}

impl RevocationList {
    pub fn builder(issuer: impl Into<String>, seq: u64, issued_at: i64) -> RevocationListBuilder {
        RevocationListBuilder {
            list: Self {
                issuer: issuer.into(),
                seq,
                issued_at,
                ..Self::default()
            },
            tokens: BTreeMap::new(),
            sessions: BTreeMap::new(),
            users: BTreeMap::new(),
            keys: BTreeMap::new(),
        }
    }

    /// Why `claims` is revoked, if it is. A memory lookup: a few binary searches.
    pub fn check(&self, claims: &AccessClaims) -> Option<RevocationReason> {
        let find =
            |entries: &[Entry], key: u64| entries.binary_search_by_key(&key, |e| e.key).is_ok();
        if find(&self.tokens, id_key(Kind::Token, &claims.jti)) {
            return Some(RevocationReason::Token);
        }
        if find(&self.sessions, id_key(Kind::Session, &claims.sid)) {
            return Some(RevocationReason::Session);
        }
        if self.revokes_key(claims.kid()) {
            return Some(RevocationReason::Key);
        }
        let user = id_key(Kind::User, &claims.sub);
        let cut_off = self
            .users
            .binary_search_by_key(&user, |e| e.key)
            .ok()
            .and_then(|i| self.users.get(i))?;
        (claims.iat < i64::from(cut_off.issued_before)).then_some(RevocationReason::User)
    }

    /// Whether the signing key `kid` was revoked: verifiers drop it from their key sets, and
    /// [`Self::check`] refuses the tokens it signed meanwhile.
    pub fn revokes_key(&self, kid: &str) -> bool {
        // Asked on every request at the edge; almost always there is nothing to hash for.
        !self.keys.is_empty() && self.revokes_key_id(key_id(kid))
    }

    /// [`Self::revokes_key`] by the key's [`key_id`].
    pub fn revokes_key_id(&self, id: u64) -> bool {
        self.keys.binary_search_by_key(&id, |e| e.key).is_ok()
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Monotonically increasing across every snapshot the issuer publishes.
    pub const fn seq(&self) -> u64 {
        self.seq
    }

    /// When the issuer produced this list (Unix seconds).
    pub const fn issued_at(&self) -> i64 {
        self.issued_at
    }

    /// The `kid` of the key whose signature it was verified with; empty for a list built here.
    pub fn signer(&self) -> &str {
        &self.signer
    }

    /// `(seq, issued_at, key_id(signer))`: what [`replaces`] weighs a held list by.
    pub fn rank(&self) -> (u64, i64, u64) {
        (self.seq, self.issued_at, key_id(&self.signer))
    }

    /// Seconds since the issuer produced this list.
    pub const fn age_secs(&self, now: i64) -> i64 {
        now.saturating_sub(self.issued_at)
    }

    /// Number of entries of all kinds.
    pub fn len(&self) -> usize {
        self.tokens.len() + self.sessions.len() + self.users.len() + self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry of `self` and `other` (a repeated id keeps the later expiry and cut-off),
    /// stamped with `self`'s issuer, seq, time and signer, less those expired by that time: the
    /// issuer leaves them out of its lists at its own clock too, and the deltas an edge
    /// accumulates while it has no newer base (KV down) would otherwise only ever grow.
    #[must_use]
    pub fn union(&self, other: &Self) -> Self {
        fn merge<E: Copy>(
            (a, b): (&[E], &[E]),
            key: impl Fn(&E) -> u64,
            pick: impl Fn(E, E) -> E,
            live: impl Fn(&E) -> bool,
        ) -> Vec<E> {
            let mut out = Vec::with_capacity(a.len() + b.len());
            let (mut i, mut j) = (0, 0);
            while let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) {
                match key(&x).cmp(&key(&y)) {
                    core::cmp::Ordering::Less => {
                        out.push(x);
                        i += 1;
                    }
                    core::cmp::Ordering::Greater => {
                        out.push(y);
                        j += 1;
                    }
                    core::cmp::Ordering::Equal => {
                        out.push(pick(x, y));
                        i += 1;
                        j += 1;
                    }
                }
            }
            out.extend_from_slice(a.get(i..).unwrap_or_default());
            out.extend_from_slice(b.get(j..).unwrap_or_default());
            out.retain(|e| live(e));
            out
        }
        let live = |expires_at: u32| outlives(expires_at, self.issued_at);
        let later = |x: Entry, y: Entry| if y.expires_at > x.expires_at { y } else { x };
        let entry_live = |e: &Entry| live(e.expires_at);
        Self {
            issuer: self.issuer.clone(),
            seq: self.seq,
            issued_at: self.issued_at,
            signer: self.signer.clone(),
            tokens: merge((&self.tokens, &other.tokens), |e| e.key, later, entry_live),
            sessions: merge(
                (&self.sessions, &other.sessions),
                |e| e.key,
                later,
                entry_live,
            ),
            users: merge(
                (&self.users, &other.users),
                |e| e.key,
                |x, y| UserEntry {
                    key: x.key,
                    issued_before: x.issued_before.max(y.issued_before),
                    expires_at: x.expires_at.max(y.expires_at),
                },
                |e| live(e.expires_at),
            ),
            keys: merge((&self.keys, &other.keys), |e| e.key, later, entry_live),
        }
    }
}

/// Whether an entry expiring at `expires_at` still belongs in a list issued at `issued_at`.
fn outlives(expires_at: u32, issued_at: i64) -> bool {
    i64::from(expires_at) > issued_at
}

/// Collects entries; repeated ids keep the latest expiry (and, for users, the latest cut-off).
#[derive(Debug, Clone)]
pub struct RevocationListBuilder {
    list: RevocationList,
    tokens: BTreeMap<u64, u32>,
    sessions: BTreeMap<u64, u32>,
    users: BTreeMap<u64, (u32, u32)>,
    keys: BTreeMap<u64, u32>,
}

impl RevocationListBuilder {
    /// Revokes one access token until `expires_at` ([`entry_expiry`] of its `exp`).
    #[must_use]
    pub fn token(mut self, jti: &str, expires_at: i64) -> Self {
        let slot = self.tokens.entry(id_key(Kind::Token, jti)).or_default();
        *slot = (*slot).max(to_u32_secs(expires_at));
        self
    }

    /// Revokes a session until `expires_at` (the last `exp` its tokens can have, plus leeway).
    #[must_use]
    pub fn session(mut self, sid: &str, expires_at: i64) -> Self {
        let slot = self.sessions.entry(id_key(Kind::Session, sid)).or_default();
        *slot = (*slot).max(to_u32_secs(expires_at));
        self
    }

    /// Revokes every token of `sub` whose `iat` is before `issued_before`.
    #[must_use]
    pub fn user(mut self, sub: &str, issued_before: i64, expires_at: i64) -> Self {
        let slot = self.users.entry(id_key(Kind::User, sub)).or_default();
        slot.0 = slot.0.max(to_u32_secs(issued_before));
        slot.1 = slot.1.max(to_u32_secs(expires_at));
        self
    }

    /// Revokes the signing key `kid` until `expires_at` (after every token it signed expired and
    /// every verifier refreshed its key set).
    #[must_use]
    pub fn key(mut self, kid: &str, expires_at: i64) -> Self {
        let slot = self.keys.entry(id_key(Kind::Key, kid)).or_default();
        *slot = (*slot).max(to_u32_secs(expires_at));
        self
    }

    /// One entry of any kind, as the issuer stores it (`issued_before` matters for users only).
    #[must_use]
    pub fn entry(
        self,
        kind: RevocationKind,
        subject: &str,
        issued_before: i64,
        expires_at: i64,
    ) -> Self {
        match kind {
            Kind::Token => self.token(subject, expires_at),
            Kind::Session => self.session(subject, expires_at),
            Kind::User => self.user(subject, issued_before, expires_at),
            Kind::Key => self.key(subject, expires_at),
        }
    }

    /// The list, without entries that expired by its `issued_at`.
    pub fn build(self) -> RevocationList {
        let now = self.list.issued_at;
        let live = |expires_at: u32| outlives(expires_at, now);
        let entries = |map: BTreeMap<u64, u32>| -> Vec<Entry> {
            map.into_iter()
                .filter(|&(_, expires_at)| live(expires_at))
                .map(|(key, expires_at)| Entry { key, expires_at })
                .collect()
        };
        RevocationList {
            tokens: entries(self.tokens),
            sessions: entries(self.sessions),
            users: self
                .users
                .into_iter()
                .filter(|&(_, (_, expires_at))| live(expires_at))
                .map(|(key, (issued_before, expires_at))| UserEntry {
                    key,
                    issued_before,
                    expires_at,
                })
                .collect(),
            keys: entries(self.keys),
            ..self.list
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{Audience, TokenClaims};

    fn claims(jti: &str, sid: &str, sub: &str, iat: i64) -> AccessClaims {
        AccessClaims::unverified_for_tests(
            TokenClaims {
                iss: "i".into(),
                sub: sub.into(),
                aud: Audience::single("a"),
                exp: iat + 900,
                iat,
                nbf: None,
                jti: jti.into(),
                sid: sid.into(),
                scope: String::new(),
                client_id: None,
            },
            "kid-1",
        )
    }

    /// An issuer whose clock runs ahead by as much as a list may be (30 s) drops no entry that a
    /// verifier with the largest leeway still needs: the list is built on the issuer's clock,
    /// the token judged on the verifier's. With entries kept 61 s past `exp`, an issuer 2 s
    /// ahead dropped the entry while a 60 s leeway still took the token.
    #[test]
    fn an_entry_outlives_its_token_on_a_verifier_the_issuer_is_ahead_of() {
        let exp = 1_000_000;
        let token = claims("j", "s", "u", exp - 900);
        let ahead = i64::from(SnapshotOptions::MAX_CLOCK_AHEAD_SECS);
        for skew in [0, 2, ahead] {
            // The last second the most lenient verifier takes the token, by its own clock.
            let verifier_now = exp + i64::from(crate::VerifierOptions::MAX_LEEWAY_SECS) - 1;
            assert!(!token.has_expired(verifier_now, crate::VerifierOptions::MAX_LEEWAY_SECS));
            let list = RevocationList::builder("i", 1, verifier_now + skew)
                .token("j", entry_expiry(exp))
                .build();
            assert_eq!(
                list.check(&token),
                Some(RevocationReason::Token),
                "{skew} s ahead"
            );
        }
    }

    #[test]
    fn each_kind_is_checked_by_its_own_id() {
        let list = RevocationList::builder("i", 1, 1000)
            .token("j1", 2000)
            .session("s1", 2000)
            .user("u1", 1500, 2500)
            .key("k1", 2000)
            .build();
        assert_eq!(list.len(), 4);
        assert_eq!(
            list.check(&claims("j1", "s", "u", 1000)),
            Some(RevocationReason::Token)
        );
        assert_eq!(
            list.check(&claims("j", "s1", "u", 1000)),
            Some(RevocationReason::Session)
        );
        assert_eq!(
            list.check(&claims("j", "s", "u1", 1499)),
            Some(RevocationReason::User)
        );
        assert_eq!(
            list.check(&claims("j", "s", "u1", 1500)),
            None,
            "issued at the cut-off"
        );
        assert_eq!(list.check(&claims("j", "s", "u", 1000)), None);
        // A revoked key refuses every token it signed, whatever its claims.
        let signed_by_k1 =
            AccessClaims::unverified_for_tests(claims("j", "s", "u", 1000).into_inner(), "k1");
        assert_eq!(list.check(&signed_by_k1), Some(RevocationReason::Key));
        // Ids are namespaced by kind: a session id used as a jti is not revoked.
        assert_eq!(list.check(&claims("s1", "j1", "j1", 1000)), None);
    }

    #[test]
    fn expired_entries_are_dropped_and_repeats_merge() {
        let list = RevocationList::builder("i", 1, 1000)
            .token("old", 1000)
            .token("j", 1100)
            .token("j", 1050)
            .user("u", 10, 1200)
            .user("u", 20, 1100)
            .build();
        assert_eq!(
            list.tokens,
            [Entry {
                key: id_key(Kind::Token, "j"),
                expires_at: 1100
            }]
        );
        assert_eq!(list.users[0].issued_before, 20);
        assert_eq!(list.users[0].expires_at, 1200);
    }
}
