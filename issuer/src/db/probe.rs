//! Readiness probes of the database. `/health/ready` needs no token, so anyone can send many at
//! once: each held a blocking thread for up to `db_timeout_ms` while it waited for the probe's
//! one connection, and enough of them could fill the runtime's blocking pool, which every
//! database call runs on (by reading the code; not load-tested). Probes that overlap now share
//! one round trip, and wait for it without a thread.

use std::future::Future;

use diesel::r2d2::R2D2Connection as _;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::Db;

/// A check whose overlapping calls share one run: a call answers with a run that began after
/// the call did, so no answer is older than its question, else it runs the check itself. The
/// runs go one at a time.
#[derive(Default)]
pub struct Shared {
    /// The last run: when it began, and what it found.
    last: Mutex<Option<(Instant, bool)>>,
}

impl Shared {
    pub async fn run<F: Future<Output = bool>>(&self, check: impl FnOnce() -> F) -> bool {
        let asked = Instant::now();
        let mut last = self.last.lock().await;
        if let Some((began, found)) = *last
            && began >= asked
        {
            return found;
        }
        let began = Instant::now();
        let found = check().await;
        *last = Some((began, found));
        found
    }
}

impl Db {
    /// Readiness: a round trip to the database on a connection of its own, outside the pool
    /// and its permits, within `db_timeout_ms`. Through the pool, every replica busy serving
    /// (the same load reaches them all) answered 503 at once, and a balancer would drop them
    /// all together. The round trip is given up at the deadline too: on a connection whose
    /// packets go nowhere (the database's old address after a failover) it would wait until
    /// TCP gives up, about 15 minutes, and every probe after it behind it. The probe left
    /// waiting keeps the one probe connection until then, so the next ones fail within the
    /// deadline, and readiness stays off until TCP gives up even once the database is back
    /// (deploy.md: `tcp_user_timeout` shortens that). A probe that comes while another runs
    /// waits for it, then runs its own: an answer within twice the deadline.
    pub async fn ping(&self) -> bool {
        let (probe, timeout) = (self.probe.clone(), self.timeout);
        self.pings
            .run(|| async move {
                let round_trip = tokio::task::spawn_blocking(move || {
                    probe
                        .get_timeout(timeout)
                        .is_ok_and(|mut conn| conn.ping().is_ok())
                });
                tokio::time::timeout(timeout, round_trip)
                    .await
                    .is_ok_and(|answered| answered.unwrap_or(false))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::Shared;

    #[tokio::test]
    async fn overlapping_calls_share_a_run_that_began_after_them() {
        let shared = Arc::new(Shared::default());
        let runs = Arc::new(AtomicU32::new(0));
        let check = |shared: Arc<Shared>, runs: Arc<AtomicU32>| async move {
            shared
                .run(|| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    true
                })
                .await
        };
        let calls: Vec<_> = (0..64)
            .map(|_| tokio::spawn(check(shared.clone(), runs.clone())))
            .collect();
        for call in calls {
            assert!(call.await.unwrap());
        }
        // The first call's run, and one more for the calls that came while it ran.
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // A call after them all is not answered with their result.
        assert!(check(shared, runs.clone()).await);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
