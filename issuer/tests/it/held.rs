//! Transactions held open across a test: a revocation left uncommitted, and a way to see, on
//! PostgreSQL, that another connection of the issuer waits for it.

use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::{Connection as _, PgConnection, RunQueryDsl as _};
use gatehouse_issuer::error::ApiError;
use gatehouse_issuer::revoker::{Revocations, Revoker};

use crate::common::{Backend, PG_ADMIN_URL, TestApp};

/// An issuer whose PostgreSQL connections carry `name` (`application_name`), so that
/// [`until_waiting`] can watch them.
pub async fn start_watched(backend: Backend, name: &str) -> TestApp {
    TestApp::start_with(backend, |c| {
        if backend == Backend::Postgres {
            c.database_url = format!("{}&application_name={name}", c.database_url);
        }
    })
    .await
}

/// Returns once a connection of an issuer from [`start_watched`] waits for a lock of kind
/// `event` (`pg_stat_activity.wait_event`: `advisory`, `transactionid`, …), failing the test
/// with `never` after 30 s. SQLite shows no waiter: there, 300 ms for the other side to start
/// (its write lock orders the two by construction). So on SQLite a test built on this cannot
/// tell whether the two overlapped: its PostgreSQL run is the one that shows the race handled.
pub async fn until_waiting(backend: Backend, name: &str, event: &str, never: &str) {
    if backend != Backend::Postgres {
        tokio::time::sleep(Duration::from_millis(300)).await;
        return;
    }
    let waiting = format!(
        "SELECT 1 FROM pg_stat_activity WHERE application_name = '{name}' \
         AND wait_event_type = 'Lock' AND wait_event = '{event}'"
    );
    let never = never.to_owned();
    // On a thread of its own: the request that is to wait must go on being polled meanwhile.
    tokio::task::spawn_blocking(move || {
        let mut admin = PgConnection::establish(PG_ADMIN_URL)
            .expect("PostgreSQL must run on 127.0.0.1:5432 (make test starts it)");
        let since = Instant::now();
        while diesel::sql_query(&waiting).execute(&mut admin).unwrap() == 0 {
            assert!(since.elapsed() < Duration::from_secs(30), "{never}");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
}

/// A revocation transaction that has run its work and stays open, uncommitted, until
/// [`Self::commit`].
pub struct HeldRevocation {
    release: Sender<()>,
    thread: JoinHandle<Result<(), ApiError>>,
}

impl HeldRevocation {
    /// Runs `work` in a revocation transaction of `app`'s database on another thread, and
    /// returns once it has run.
    pub fn start(
        app: &TestApp,
        now: i64,
        work: impl FnOnce(&mut Revocations<'_>) -> Result<(), ApiError> + Send + 'static,
    ) -> Self {
        let revoker = Revoker::for_command(app.store().clone(), app.config.clone());
        let (wrote, written) = channel();
        let (release, held) = channel::<()>();
        let thread = std::thread::spawn(move || {
            revoker.run_sync(now, |r| {
                work(r)?;
                wrote.send(()).unwrap();
                held.recv().unwrap();
                Ok(())
            })
        });
        written.recv().unwrap();
        Self { release, thread }
    }

    /// Lets it commit, and waits until it has.
    pub fn commit(self) {
        self.release.send(()).unwrap();
        self.thread.join().unwrap().unwrap();
    }
}
