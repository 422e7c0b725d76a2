//! What a verifier holds: a base list (the last full snapshot, from KV, push or pull) and the
//! newest delta over it (the fast path). Revocations only ever add entries, so applying any
//! verified delta is safe; what a gap changes is only how fresh the view may call itself. The
//! one thing a list takes away is what it disowns ([`super::disowns`]): a list or delta that a
//! key it revokes signed at or above its seq, which is forged.

use std::sync::Arc;

use super::{RevocationDelta, RevocationList, RevocationReason};
use crate::claims::AccessClaims;
use crate::error::{SnapshotError, ValidationError};

#[derive(Debug, Clone, Default)]
pub struct RevocationView {
    base: Option<Arc<RevocationList>>,
    /// The delta over `base`: the newest received when it extends the base, else the union of
    /// every delta since the base (so entries in a gap that later deltas still carry stay).
    delta: Option<Arc<RevocationDelta>>,
}

impl RevocationView {
    pub fn base(&self) -> Option<&RevocationList> {
        self.base.as_deref()
    }

    pub fn delta(&self) -> Option<&RevocationDelta> {
        self.delta.as_deref()
    }

    /// Whether the delta continues the base with no gap (a delta from seq 0 is a whole list).
    pub fn delta_is_contiguous(&self) -> bool {
        self.delta
            .as_ref()
            .is_some_and(|d| d.extends(self.base.as_ref().map_or(0, |b| b.seq())))
    }

    /// Whether any list is held (a base, or a delta that is a whole list by itself).
    pub fn is_present(&self) -> bool {
        self.base.is_some() || self.delta_is_contiguous()
    }

    /// The newest seq the view is complete up to.
    pub fn seq(&self) -> u64 {
        let base = self.base.as_ref().map_or(0, |b| b.seq());
        match &self.delta {
            Some(d) if self.delta_is_contiguous() => base.max(d.list().seq()),
            _ => base,
        }
    }

    /// When the freshest document the view is complete with was signed (Unix seconds).
    pub fn issued_at(&self) -> Option<i64> {
        let base = self.base.as_ref().map(|b| b.issued_at());
        let delta = self
            .delta
            .as_ref()
            .filter(|_| self.delta_is_contiguous())
            .map(|d| d.list().issued_at());
        base.max(delta)
    }

    /// Seconds since [`Self::issued_at`]; `None` when nothing is held.
    pub fn age_secs(&self, now: i64) -> Option<i64> {
        self.issued_at().map(|t| now.saturating_sub(t))
    }

    /// Entries in the base and the delta (an id in both counts twice).
    pub fn len(&self) -> usize {
        self.base.as_ref().map_or(0, |b| b.len())
            + self.delta.as_ref().map_or(0, |d| d.list().len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why `claims` is revoked, if it is: the base, then the delta.
    pub fn check(&self, claims: &AccessClaims) -> Option<RevocationReason> {
        self.base
            .as_ref()
            .and_then(|b| b.check(claims))
            .or_else(|| self.delta.as_ref().and_then(|d| d.list().check(claims)))
    }

    /// Whether the signing key `kid` was revoked (by the base or the delta).
    pub fn revokes_key(&self, kid: &str) -> bool {
        self.base.as_ref().is_some_and(|b| b.revokes_key(kid))
            || self
                .delta
                .as_ref()
                .is_some_and(|d| d.list().revokes_key(kid))
    }

    /// The view with `list` as its base, if it replaces the base held ([`super::replaces`]) and
    /// is not signed by a key the view revokes (`unknown_kid`, as [`super::replaces_list`]): the
    /// issuer signs with no key it revoked, and the keys that verified `list` may not have left
    /// that key out (an edge isolate that verified it before its first list arrived).
    /// The delta stays while it is newer than the new base (a later seq, or the same re-signed
    /// later: it keeps the view's age while the base is an older signature of the same list)
    /// and not disowned by it.
    pub fn with_base(&self, list: RevocationList) -> Result<Self, SnapshotError> {
        if self.revokes_key(list.signer()) {
            return Err(ValidationError::UnknownKid.into());
        }
        if let Some(held) = &self.base {
            list.ensure_newer_than(held.rank())?;
        }
        let delta = self.delta.clone().filter(|d| {
            let held = d.list();
            super::is_newer(
                (held.seq(), held.issued_at()),
                (list.seq(), list.issued_at()),
            ) && !super::disowns(&list, held.rank())
        });
        Ok(Self {
            base: Some(Arc::new(list)),
            delta,
        })
    }

    /// The view with `delta` applied, if it replaces the delta held ([`super::replaces`]).
    pub fn with_delta(&self, delta: RevocationDelta) -> Result<Self, SnapshotError> {
        if let Some(held) = &self.delta {
            delta.list().ensure_newer_than(held.list().rank())?;
        }
        // A base or delta the delta disowns (signed by a key it revokes, at or above its seq) is
        // forged: it completes nothing, and the next list read replaces the base.
        let base = self
            .base
            .clone()
            .filter(|b| !super::disowns(delta.list(), b.rank()));
        let base_seq = base.as_ref().map_or(0, |b| b.seq());
        let held = self
            .delta
            .as_ref()
            .filter(|d| !super::disowns(delta.list(), d.list().rank()));
        let delta = match held {
            // A gap: keep what earlier deltas carried, since the new one may no longer reach back.
            Some(held) if !delta.extends(base_seq) => {
                let overlap = delta.from_seq() <= held.list().seq();
                let from = if overlap {
                    held.from_seq().min(delta.from_seq())
                } else {
                    delta.from_seq()
                };
                RevocationDelta::new(from, delta.list().union(held.list()))
            }
            _ => delta,
        };
        Ok(Self {
            base,
            delta: Some(Arc::new(delta)),
        })
    }

    /// Whether `list` [`disowns`](super::disowns) the base or the delta held: the seq they
    /// claim is then no bar to it.
    pub fn is_disowned_by(&self, list: &RevocationList) -> bool {
        self.base
            .as_ref()
            .is_some_and(|b| super::disowns(list, b.rank()))
            || self
                .delta
                .as_ref()
                .is_some_and(|d| super::disowns(list, d.list().rank()))
    }
}
