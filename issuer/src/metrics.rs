//! Prometheus metrics (`GET /metrics`).

use std::sync::Arc;
use std::time::Duration;

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info as InfoMetric;
use prometheus_client::registry::Registry;
use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::{Data, Request, Response};

/// A request's labels: its route template (a bounded set; `unmatched` otherwise), its method
/// and its status class, so that no client input becomes a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    route: String,
    method: String,
    status: String,
}

/// Why a database call was answered 503 (`db::Unavailable`): a bounded set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DbLabels {
    pub reason: &'static str,
}

pub type DbUnavailable = Family<DbLabels, Counter>;

/// A periodic task of `crate::maintenance`: `key_refresh`, `lifetime_announcement`, `cleanup`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: &'static str,
}

/// A signed revocation list this replica serves: `snapshot` or `delta`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ListLabels {
    pub list: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// Handed to the database at ignite, which counts what it answers 503.
    pub db_unavailable: DbUnavailable,
    pub logins_ok: Counter,
    pub logins_failed: Counter,
    pub lockouts: Counter,
    pub refreshes: Counter,
    pub refresh_retries: Counter,
    pub refresh_reuse_detected: Counter,
    pub revocations: Counter,
    pub pushes_ok: Counter,
    pub pushes_failed: Counter,
    pub pushes_already_held: Counter,
    pub push_attempts_failed: Counter,
    pub pushes_behind_edge: Counter,
    pub revocation_seq_reads: Counter,
    pub jwks_served: Counter,
    pub maintenance_failures: Family<TaskLabels, Counter>,
    /// The size of the last list of each kind this replica signed: edges refuse one over
    /// `SnapshotOptions::DEFAULT_MAX_BYTES` (8 MiB), and alerting well before that is the
    /// operator's warning.
    pub list_bytes: Family<ListLabels, Gauge>,
    /// The seq of the last list of each kind this replica signed: what an edge's health
    /// details (`seq`) are compared with.
    list_seq: Family<ListLabels, Gauge>,
    pub capacity: Capacity,
    hash_seconds: Histogram,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RequestLabels, Histogram>,
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
        let lockouts = counter(
            "lockouts",
            "Locks after repeated failed logins: of one client on an account, or of an account",
        );
        let refreshes = counter("refreshes", "Refresh-token rotations");
        let refresh_retries = counter(
            "refresh_retries",
            "Refresh tokens presented again within the grace window, answered with the same \
             successor (not rotations)",
        );
        let refresh_reuse_detected = counter(
            "refresh_reuse_detected",
            "Rotated refresh tokens presented again",
        );
        let revocations = counter("revocations", "Revocation entries written");
        let pushes_ok = counter("snapshot_pushes_ok", "Snapshots an edge took");
        let pushes_failed = counter(
            "snapshot_pushes_failed",
            "Snapshot pushes given up: every attempt failed, or the edge rejected the list itself",
        );
        let pushes_already_held = counter(
            "snapshot_pushes_already_held",
            "Snapshot pushes answered 409: the edge holds that list or a newer one",
        );
        let push_attempts_failed = counter(
            "snapshot_push_attempts_failed",
            "Snapshot push attempts refused or unanswered, retried or not",
        );
        let pushes_behind_edge = counter(
            "snapshot_pushes_behind_edge",
            "Pushes refused by an edge holding a newer list than the database (a restore?)",
        );
        let revocation_seq_reads = counter(
            "revocation_seq_reads",
            "Database reads of the newest revocation for the signed lists (at most one per 100 ms \
             between this replica's own revocations)",
        );
        let jwks_served = counter(
            "jwks_served",
            "JWKS documents served (edges fetch on unknown kids)",
        );
        let (maintenance_failures, list_bytes, list_seq) = register_operations(&mut registry);
        let capacity = Capacity::register(&mut registry);
        let hash_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "password_hash_seconds",
            "Time spent in one argon2 hash or verification",
            hash_seconds.clone(),
        );
        let db_unavailable = DbUnavailable::default();
        registry.register(
            "db_unavailable",
            "Database calls answered 503, by reason: busy (no free connection or blocking \
             thread in time), no_connection, timed_out (past db_timeout_ms), lost (the server \
             went away)",
            db_unavailable.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let request_seconds = Family::<RequestLabels, Histogram>::new_with_constructor(
            // 0.5 ms to about 16 s: past the default `db_timeout_ms` (5 s), whose 503s would
            // otherwise all fall in `+Inf`.
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register(
            "http_request_seconds",
            "Time from a request's arrival to its response",
            request_seconds.clone(),
        );
        Self {
            registry,
            db_unavailable,
            logins_ok,
            logins_failed,
            lockouts,
            refreshes,
            refresh_retries,
            refresh_reuse_detected,
            revocations,
            pushes_ok,
            pushes_failed,
            pushes_already_held,
            push_attempts_failed,
            pushes_behind_edge,
            revocation_seq_reads,
            jwks_served,
            maintenance_failures,
            list_bytes,
            list_seq,
            capacity,
            hash_seconds,
            requests,
            request_seconds,
        }
    }
}

impl Metrics {
    /// The gauges of `list`'s size and seq (`snapshot`, `delta`).
    pub fn list_gauges_of(&self, list: &'static str) -> (Gauge, Gauge) {
        let labels = ListLabels { list };
        (
            self.list_bytes.get_or_create(&labels).clone(),
            self.list_seq.get_or_create(&labels).clone(),
        )
    }

    /// Counts a failure of a periodic task.
    pub fn task_failed(&self, task: &'static str) {
        self.maintenance_failures
            .get_or_create(&TaskLabels { task })
            .inc();
    }

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

/// What an operator watches besides requests: failing periodic tasks, the lists' size against
/// what edges take, and the version each replica runs (for a rolling upgrade).
#[allow(clippy::type_complexity)] // the three families it registers, in order
fn register_operations(
    registry: &mut Registry,
) -> (
    Family<TaskLabels, Counter>,
    Family<ListLabels, Gauge>,
    Family<ListLabels, Gauge>,
) {
    let maintenance_failures = Family::<TaskLabels, Counter>::default();
    registry.register(
        "maintenance_failures",
        "Periodic tasks that failed, by task: key_refresh (this replica's key ring is not \
         re-read; past its age limit it stops signing), lifetime_announcement, cleanup",
        maintenance_failures.clone(),
    );
    let list_bytes = Family::<ListLabels, Gauge>::default();
    registry.register(
        "revocation_list_bytes",
        "Size of the last signed revocation list of each kind (snapshot, delta) this \
         replica built; edges refuse one over 8388608 bytes",
        list_bytes.clone(),
    );
    registry.register(
        "build",
        "The issuer's version",
        InfoMetric::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    let list_seq = Family::<ListLabels, Gauge>::default();
    registry.register(
        "revocation_list_seq",
        "Seq of the last signed revocation list of each kind (snapshot, delta) this replica \
         built; an edge's health details name the seq it holds",
        list_seq.clone(),
    );
    (maintenance_failures, list_bytes, list_seq)
}

/// How close a replica is to what it can do: its database calls against the pool, and the age
/// of its key ring against the age past which it stops signing.
pub struct Capacity {
    /// `db_pool_size`, set at ignite.
    pub db_pool_size: Gauge,
    /// Calls waiting for one of the pool's permits ([`Held`] by `Db::run`).
    pub db_calls_waiting: Gauge,
    /// Calls holding a permit: on a connection, or about to be.
    pub db_calls_running: Gauge,
    /// When the key ring in use was read (Unix seconds), and the age past which the replica
    /// re-reads it before signing and refuses to sign if it cannot: set as `/metrics` is served.
    pub key_ring_read_at: Gauge,
    pub key_ring_max_age: Gauge,
}

impl Capacity {
    fn register(registry: &mut Registry) -> Self {
        let mut gauge = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        Self {
            db_pool_size: gauge(
                "db_pool_size",
                "Connections the pool may open (db_pool_size)",
            ),
            db_calls_waiting: gauge(
                "db_calls_waiting",
                "Database calls waiting for a connection's permit (answered 503 busy after \
                 db_timeout_ms)",
            ),
            db_calls_running: gauge(
                "db_calls_running",
                "Database calls holding a connection's permit: at db_pool_size, the next waits",
            ),
            key_ring_read_at: gauge(
                "key_ring_read_timestamp_seconds",
                "When this replica last read its signing key ring (Unix seconds)",
            ),
            key_ring_max_age: gauge(
                "key_ring_max_age_seconds",
                "Past this age the key ring is re-read before signing, and nothing is signed \
                 while it cannot be (2 x cleanup_interval_secs)",
            ),
        }
    }
}

/// One more on `gauge` while it lives: a call waiting or running, however it ends.
pub struct Held(Gauge);

impl Held {
    pub fn on(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts every response and its latency, by route template, method and status class.
struct RequestMetrics(Arc<Metrics>);

#[rocket::async_trait]
impl Fairing for RequestMetrics {
    fn info(&self) -> Info {
        Info {
            name: "Request metrics",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        req.local_cache(Instant::now);
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let started = *req.local_cache(Instant::now);
        let labels = RequestLabels {
            route: req
                .route()
                .map_or_else(|| "unmatched".to_owned(), |r| r.uri.to_string()),
            method: req.method().as_str().to_owned(),
            status: format!("{}xx", res.status().code / 100),
        };
        self.0.requests.get_or_create(&labels).inc();
        self.0
            .request_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
}

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Metrics", |rocket| async {
        let metrics = Arc::new(Metrics::default());
        rocket
            .manage(Arc::clone(&metrics))
            .attach(RequestMetrics(metrics))
    })
}
