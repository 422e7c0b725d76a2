//! The issuer's one clock. Handlers read it once per request and pass `now` down; tests move it
//! forward to cross grace windows, lockouts and expiries without sleeping. It also knows how far
//! it is from the database's clock, for the one window that replicas must judge alike.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::RunQueryDsl as _;
use diesel::dsl::sql;
use diesel::sql_types::BigInt;

use crate::db::{Db, DbConn};
use crate::error::ApiError;

/// How often a replica re-reads its distance from the database's clock: once a minute is one
/// query a minute, and clocks drift by far less than a second in that time.
const DATABASE_SKEW_REREAD: Duration = Duration::from_mins(1);

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
    /// When it was last read; held while a read runs, so one request reads and others go on.
    database_skew_read: tokio::sync::Mutex<Option<Instant>>,
}

impl Clock {
    /// Unix seconds.
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    fn now_ms(&self) -> i64 {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let shift =
            self.offset_secs.load(Ordering::Relaxed) + self.skew_secs.load(Ordering::Relaxed);
        ms.saturating_add(shift.saturating_mul(1000))
    }

    /// Moves time on, for this clock and its reading of the database's (tests, drills).
    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }

    /// Sets this clock off from the database's by `secs`, as a machine's clock runs off without
    /// NTP (tests, drills).
    pub fn skew(&self, secs: i64) {
        self.skew_secs.fetch_add(secs, Ordering::Relaxed);
    }

    /// `now`, a time of this clock, on the database's clock: one clock for every replica. The
    /// distance is re-read at most once a minute, by one request while the others use the last
    /// one (0 until the first read ends, and kept when a read fails).
    pub async fn on_database_clock(&self, db: &Db, now: i64) -> i64 {
        if let Ok(mut read) = self.database_skew_read.try_lock()
            && read.is_none_or(|at| at.elapsed() >= DATABASE_SKEW_REREAD)
        {
            *read = Some(Instant::now());
            let before = self.now_ms();
            if let Ok(database_ms) = db.run(database_time_ms).await {
                let mine = before + (self.now_ms() - before) / 2;
                let theirs = database_ms + self.offset_secs.load(Ordering::Relaxed) * 1000;
                let skew_ms = mine - theirs;
                if skew_ms.abs() >= WARN_SKEW_MS {
                    tracing::warn!(
                        skew_ms,
                        "this replica's clock is off from the database's; keep the machines on NTP"
                    );
                }
                let secs = (skew_ms + 500).div_euclid(1000);
                self.database_skew_secs.store(secs, Ordering::Relaxed);
            }
        }
        now - self.database_skew_secs.load(Ordering::Relaxed)
    }
}

/// The database's clock, in Unix milliseconds.
fn database_time_ms(conn: &mut DbConn) -> Result<i64, ApiError> {
    let query = match conn {
        DbConn::Postgres(_) => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        DbConn::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    };
    Ok(diesel::select(sql::<BigInt>(query)).get_result(conn)?)
}
