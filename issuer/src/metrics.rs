//! Prometheus metrics (`GET /metrics`).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rocket::fairing::AdHoc;

pub struct Metrics {
    registry: Registry,
    pub logins_ok: Counter,
    pub logins_failed: Counter,
    pub lockouts: Counter,
    pub refreshes: Counter,
    pub refresh_reuse_detected: Counter,
    pub revocations: Counter,
    pub pushes_ok: Counter,
    pub pushes_failed: Counter,
    pub jwks_served: Counter,
    hash_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let logins_ok = counter("logins_ok", "Successful password logins");
        let logins_failed = counter("logins_failed", "Failed password logins");
        let lockouts = counter("lockouts", "Accounts locked after repeated failures");
        let refreshes = counter("refreshes", "Refresh-token rotations");
        let refresh_reuse_detected = counter(
            "refresh_reuse_detected",
            "Rotated refresh tokens presented again",
        );
        let revocations = counter("revocations", "Revocation entries written");
        let pushes_ok = counter("snapshot_pushes_ok", "Snapshots pushed to an edge");
        let pushes_failed = counter("snapshot_pushes_failed", "Snapshot pushes that failed");
        let jwks_served = counter(
            "jwks_served",
            "JWKS documents served (edges fetch on unknown kids)",
        );
        let hash_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "password_hash_seconds",
            "Time spent in one argon2 hash or verification",
            hash_seconds.clone(),
        );
        Self {
            registry,
            logins_ok,
            logins_failed,
            lockouts,
            refreshes,
            refresh_reuse_detected,
            revocations,
            pushes_ok,
            pushes_failed,
            jwks_served,
            hash_seconds,
        }
    }
}

impl Metrics {
    pub fn observe_hash(&self, elapsed: Duration) {
        self.hash_seconds.observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Metrics", |rocket| async {
        rocket.manage(Arc::new(Metrics::default()))
    })
}
