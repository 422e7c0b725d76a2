//! The revocation rules, written once: the kinds of entry and their stored codes, what an
//! entry refuses, and which of two lists is newer. The compact list (`RevocationList::check`),
//! the issuer's SQL and its in-memory view, and the edge all follow these; the tests feed the
//! same random sets to each.

use super::RevocationList;
use crate::claims::AccessClaims;

/// What an entry names. The code is what the issuer stores and what the list's 64-bit keys are
/// derived with; it never changes meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RevocationKind {
    /// One access token, by `jti`.
    Token,
    /// One session, by `sid`: every token of it.
    Session,
    /// A user cut-off, by `sub`: every token issued before `issued_before`.
    User,
    /// A signing key, by `kid`: every token it signed. Verifiers also drop it from their key
    /// sets (the edge as soon as its list names it, the issuer at its key-ring refresh), after
    /// which its tokens fail as `unknown_kid`.
    Key,
}

impl RevocationKind {
    pub const ALL: [Self; 4] = [Self::Token, Self::Session, Self::User, Self::Key];

    pub const fn code(self) -> i16 {
        match self {
            Self::Token => 1,
            Self::Session => 2,
            Self::User => 3,
            Self::Key => 4,
        }
    }

    /// `None` for a code written by a newer version: such an entry is skipped, never guessed at.
    pub const fn from_code(code: i16) -> Option<Self> {
        match code {
            1 => Some(Self::Token),
            2 => Some(Self::Session),
            3 => Some(Self::User),
            4 => Some(Self::Key),
            _ => None,
        }
    }

    /// The claim (or, for a key, the verified `kid`) an entry of this kind names.
    pub fn subject_of(self, claims: &AccessClaims) -> Option<&str> {
        match self {
            Self::Token => Some(&claims.jti),
            Self::Session => Some(&claims.sid),
            Self::User => Some(&claims.sub),
            Self::Key => Some(claims.kid()),
        }
    }
}

/// Whether one entry refuses `claims` at `now`: it is live (`expires_at > now`), names the
/// claims' `jti`, `sid`, `sub` or signing `kid` by its kind, and, for a user cut-off, the token was issued
/// before it (`iat < issued_before`).
///
/// Lists and views merge one user's cut-offs into (latest `issued_before`, latest expiry). For
/// the cut-offs of "log out everywhere" and its kin that is exact: the issuer writes
/// `issued_before = now + 1` and an expiry a fixed horizon after `now`, so the newest covers
/// every older one. A cut-off for the per-user bound (`issued_before` one past a revoked
/// token's `iat`) may be written later with a lower `issued_before` and a later expiry; past
/// the earlier expiry the merge then also refuses tokens issued before the higher
/// `issued_before`, which by then are past every verifier's leeway (that expiry was set to
/// outlast them).
pub fn entry_revokes(
    kind: RevocationKind,
    subject: &str,
    issued_before: i64,
    expires_at: i64,
    claims: &AccessClaims,
    now: i64,
) -> bool {
    expires_at > now
        && kind.subject_of(claims) == Some(subject)
        && (kind != RevocationKind::User || claims.iat < issued_before)
}

/// Until when a revoked token's entry must be kept: past the longest leeway a verifier may
/// stretch `exp` by ([`crate::VerifierOptions::MAX_LEEWAY_SECS`]), and past how far ahead of a
/// verifier's clock the issuer's may run while its lists are still taken
/// ([`super::SnapshotOptions::MAX_CLOCK_AHEAD_SECS`]): no verifier takes the token back once
/// its entry is gone from a list it accepts.
pub fn entry_expiry(token_exp: i64) -> i64 {
    token_exp
        .saturating_add(i64::from(crate::VerifierOptions::MAX_LEEWAY_SECS))
        .saturating_add(i64::from(super::SnapshotOptions::MAX_CLOCK_AHEAD_SECS))
        .saturating_add(1)
}

/// Which of two signed lists is newer: a higher `seq`, or the same `seq` re-signed later (the
/// issuer re-signs an unchanged list so its age stays fresh). `(seq, issued_at)` of each.
pub fn is_newer(candidate: (u64, i64), held: (u64, i64)) -> bool {
    candidate > held
}

/// Whether a verified list `candidate` replaces one held, `(seq, issued_at, key_id of its
/// signer)`: it is newer, or it [`disowns`] the held one.
pub fn replaces(candidate: &RevocationList, held: (u64, i64, u64)) -> bool {
    is_newer((candidate.seq(), candidate.issued_at()), (held.0, held.1)) || disowns(candidate, held)
}

/// [`replaces`] for a holder of both lists (the JS package's remote verifier): never a list
/// signed by a key `held` revokes, whatever its seq, as a leaked key signs any. The edge gets
/// the same from its key set, which leaves out the keys its list revokes (`edge/src/keys.rs`).
pub fn replaces_list(candidate: &RevocationList, held: &RevocationList) -> bool {
    !held.revokes_key_id(super::key_id(candidate.signer())) && replaces(candidate, held.rank())
}

/// Whether a verified list shows one held, `(seq, issued_at, key_id of its signer)`, not to be
/// the issuer's: it revokes the key that signed the held one, at a seq the held one claims to
/// reach. A key that leaked can sign a list with a `seq` far above any the issuer has reached;
/// the issuer revokes only keys it no longer signs with (`keys revoke`, an entry of kind key in
/// every list it signs from then on), so a list that key signed at or above the revocation's
/// seq is forged, and verifiers take the issuer's again. One it signed below is an honest list
/// from before the revocation, and stays until a newer one replaces it.
pub fn disowns(list: &RevocationList, (seq, _, signer): (u64, i64, u64)) -> bool {
    seq >= list.seq() && list.revokes_key_id(signer)
}

/// Random revocation sets and claims, the same on every run, for tests that hold an
/// implementation of the rules against [`entry_revokes`] (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::{AccessClaims, RevocationKind};
    use crate::claims::{Audience, TokenClaims};

    /// A small deterministic generator (xorshift64*): the same sets on every run.
    pub struct Rng(u64);

    impl Rng {
        pub const fn new(seed: u64) -> Self {
            Self(seed | 1)
        }

        pub fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    /// One stored entry: kind, subject, `issued_before`, `expires_at`.
    pub type Entry = (RevocationKind, String, i64, i64);

    fn pick(rng: &mut Rng, n: u64) -> i64 {
        i64::try_from(rng.below(n)).unwrap_or(0)
    }

    /// Entries as the issuer writes them, over few ids so that claims often match. Times sit on
    /// a 50 s grid around `now`, so the boundaries (`iat` at a cut-off, expiry at `now`) come up.
    pub fn random_entries(rng: &mut Rng, now: i64) -> Vec<Entry> {
        let horizon = 950;
        (0..rng.below(12))
            .map(|_| {
                let kind = RevocationKind::from_code(i16::try_from(1 + rng.below(4)).unwrap_or(1))
                    .unwrap_or(RevocationKind::Token);
                let subject = format!("id-{}", rng.below(4));
                let at = now - 1200 + 50 * pick(rng, 28);
                match kind {
                    RevocationKind::User => (kind, subject, at + 1, at + horizon),
                    _ => (kind, subject, 0, at + 50 * pick(rng, 18) + pick(rng, 2)),
                }
            })
            .collect()
    }

    pub fn random_claims(rng: &mut Rng, now: i64) -> AccessClaims {
        let id = |rng: &mut Rng| format!("id-{}", rng.below(4));
        let kid = id(rng);
        AccessClaims::unverified_for_tests(
            TokenClaims {
                iss: "https://issuer.test".into(),
                sub: id(rng),
                aud: Audience::single("api"),
                exp: now + 600,
                iat: now - 1250 + 50 * pick(rng, 29) + pick(rng, 3),
                nbf: None,
                jti: id(rng),
                sid: id(rng),
                scope: String::new(),
                client_id: None,
            },
            &kid,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Rng, random_claims, random_entries};
    use super::*;
    use crate::revocation::RevocationList;

    #[test]
    fn the_compact_list_follows_the_rule_on_random_sets() {
        let mut rng = Rng::new(0x6761_7465);
        let now = 1_800_000_000;
        for _ in 0..2000 {
            let entries = random_entries(&mut rng, now);
            let list = entries
                .iter()
                .fold(
                    RevocationList::builder("https://issuer.test", 1, now),
                    |b, e| b.entry(e.0, &e.1, e.2, e.3),
                )
                .build();
            for _ in 0..8 {
                let claims = random_claims(&mut rng, now);
                let by_rule = entries
                    .iter()
                    .any(|e| entry_revokes(e.0, &e.1, e.2, e.3, &claims, now));
                assert_eq!(
                    list.check(&claims).is_some(),
                    by_rule,
                    "{entries:?} {claims:?}"
                );
            }
        }
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_are_none() {
        for kind in RevocationKind::ALL {
            assert_eq!(RevocationKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(RevocationKind::from_code(0), None);
        assert_eq!(RevocationKind::from_code(5), None);
        assert!(is_newer((2, 0), (1, 9)) && is_newer((1, 10), (1, 9)) && !is_newer((1, 9), (1, 9)));
    }
}
