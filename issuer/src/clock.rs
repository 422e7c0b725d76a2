//! The issuer's one clock. Handlers read it once per request and pass `now` down; tests move it
//! forward to cross grace windows, lockouts and expiries without sleeping. It also knows how far
//! it is from the database's clock, for the one window that replicas must judge alike.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::RunQueryDsl as _;
use diesel::dsl::sql;
use diesel::sql_types::BigInt;

use crate::db::{Db, DbConn};
use crate::error::ApiError;

/// How often a replica re-reads its distance from the database's clock: one query a minute, and
/// clocks drift by far less than a second in that time.
const DATABASE_SKEW_REREAD: Duration = Duration::from_mins(1);
/// After a reading that failed, or whose round trip was too slow to place within a second.
const DATABASE_SKEW_RETRY: Duration = Duration::from_secs(5);
const MAX_ROUND_TRIP_MS: i64 = 250;
/// A distance from the database's clock worth a warning: the grace window is measured against
/// it, the other times (session and token lifetimes, lockouts) against this replica's clock.
const WARN_SKEW_MS: i64 = 2000;

#[derive(Debug, Default)]
pub struct Clock {
    /// Time moved on by [`Self::advance`], for this clock and its reading of the database's.
    offset_secs: AtomicI64,
    /// This clock off from the database's by [`Self::skew`], as a machine's runs off.
    skew_secs: AtomicI64,
    /// This clock minus the database's, in whole seconds, as last read.
    database_skew_secs: AtomicI64,
    database_skew_known: AtomicBool,
    /// When the next reading is due (`None`: now); held while a reading runs.
    database_skew_due: tokio::sync::Mutex<Option<Instant>>,
}

impl Clock {
    /// Unix seconds.
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Unix milliseconds, moved on as [`Self::now`] is.
    pub fn now_ms(&self) -> i64 {
        system_ms().saturating_add(self.shift_secs().saturating_mul(1000))
    }

    fn shift_secs(&self) -> i64 {
        self.offset_secs
            .load(Ordering::Relaxed)
            .saturating_add(self.skew_secs.load(Ordering::Relaxed))
    }

    /// Returns once this clock has reached the start of `second` (at once if it has).
    pub async fn reach(&self, second: i64) {
        let ahead_ms = second.saturating_mul(1000).saturating_sub(self.now_ms());
        if let Ok(wait) = u64::try_from(ahead_ms) {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }

    /// Moves time on, for this clock and its reading of the database's (tests, drills).
    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }

    /// Moves this clock `secs` further off from the database's, as a machine's clock runs off
    /// without NTP (tests, drills).
    pub fn skew(&self, secs: i64) {
        self.skew_secs.fetch_add(secs, Ordering::Relaxed);
    }

    /// `now`, a time of this clock, on the database's clock: one clock for every replica. The
    /// distance is read at most once a minute. Until a first reading succeeds, requests wait
    /// for the one under way (a replica whose clock is off must not judge by it meanwhile) and
    /// then take 0; after that, one request re-reads while the others use the last reading.
    pub async fn on_database_clock(&self, db: &Db, now: i64) -> i64 {
        let due = if self.database_skew_known.load(Ordering::Acquire) {
            self.database_skew_due.try_lock().ok()
        } else {
            Some(self.database_skew_due.lock().await)
        };
        if let Some(mut due) = due
            && due.is_none_or(|at| Instant::now() >= at)
        {
            let first = !self.database_skew_known.load(Ordering::Acquire);
            let next = match db.run(read_database_clock).await {
                Ok(reading) if reading.is_usable(first) => {
                    self.take(&reading);
                    DATABASE_SKEW_REREAD
                }
                Ok(reading) => {
                    let round_trip_ms = reading.round_trip_ms();
                    tracing::warn!(round_trip_ms, "reading the database's clock took too long");
                    DATABASE_SKEW_RETRY
                }
                Err(error) => {
                    tracing::warn!(%error, "reading the database's clock failed");
                    DATABASE_SKEW_RETRY
                }
            };
            *due = Some(Instant::now() + next);
        }
        now.saturating_sub(self.database_skew_secs.load(Ordering::Relaxed))
    }

    fn take(&self, reading: &Reading) {
        // This clock at the query's midpoint, minus the database's: `advance` moves both alike.
        let mine = reading.sent.saturating_add(reading.round_trip_ms() / 2);
        let skew_ms = mine
            .saturating_add(self.skew_secs.load(Ordering::Relaxed).saturating_mul(1000))
            .saturating_sub(reading.database);
        if skew_ms.saturating_abs() >= WARN_SKEW_MS {
            tracing::warn!(
                skew_ms,
                "this replica's clock is off from the database's; keep the machines on NTP"
            );
        }
        let secs = skew_ms.saturating_add(500).div_euclid(1000);
        self.database_skew_secs.store(secs, Ordering::Relaxed);
        self.database_skew_known.store(true, Ordering::Release);
    }
}

fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The database's clock, and this machine's just before and after it was read (Unix ms): taken
/// on the connection, so no wait for the pool counts.
struct Reading {
    sent: i64,
    database: i64,
    received: i64,
}

impl Reading {
    const fn round_trip_ms(&self) -> i64 {
        self.received.saturating_sub(self.sent)
    }

    /// Whether it places the database's clock within a second: a round trip of at most
    /// `MAX_ROUND_TRIP_MS`, or any for a `first` reading, which still beats none (its error is
    /// at most half its round trip); never one the machine's clock stepped back during.
    const fn is_usable(&self, first: bool) -> bool {
        let round_trip = self.round_trip_ms();
        round_trip >= 0 && (first || round_trip <= MAX_ROUND_TRIP_MS)
    }
}

/// The database's clock, in Unix seconds (one query), for a command run from a shell: nothing
/// checks that machine's own clock.
pub fn database_now(conn: &mut DbConn) -> Result<i64, ApiError> {
    Ok(read_database_clock(conn)?.database.div_euclid(1000))
}

fn read_database_clock(conn: &mut DbConn) -> Result<Reading, ApiError> {
    let query = match conn {
        DbConn::Postgres(_) => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        DbConn::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    };
    let sent = system_ms();
    let database = diesel::select(sql::<BigInt>(query)).get_result(conn)?;
    Ok(Reading {
        sent,
        database,
        received: system_ms(),
    })
}
