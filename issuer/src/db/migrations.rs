//! The schema: migrations embedded per backend. The server applies them at start (replicas take
//! turns); `migrate` applies them and exits. Every other command only checks that the database
//! has them all: a command run by hand must neither migrate a database that older replicas are
//! still serving (a new index can hold their writes past `db_timeout_ms`) nor make a schema in
//! an empty database it was pointed at by mistake and report success there.

use std::time::{Duration, Instant};

use diesel::RunQueryDsl as _;
use diesel::connection::SimpleConnection as _;
use diesel::migration::MigrationSource as _;
use diesel::sql_types::Bool;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{Db, DbConn, lock_timeout, statement_timeout};

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// The advisory lock key replicas migrate under ("gatehous" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x6761_7465_686f_7573;

/// How often a migration that gave up waiting for a lock is tried (1 s apart).
const MIGRATION_ATTEMPTS: u32 = 10;

/// diesel's record of applied migrations. Asking diesel which are pending creates it, so its
/// presence is checked first.
const MIGRATIONS_TABLE: &str = "__diesel_schema_migrations";

impl Db {
    /// Runs the embedded migrations for this backend. On PostgreSQL, replicas starting at once
    /// take turns under a session advisory lock, so each sees the others' work instead of racing
    /// it to the same `CREATE TABLE`, with no statement deadline: another replica's migration
    /// may take longer than `db_timeout_ms`, and waiting for it is the point. SQLite is the
    /// single-process development store: several processes starting at once on one SQLite file
    /// are not supported.
    pub fn migrate(&self) -> Result<usize, String> {
        let mut conn = self.pool.get().map_err(|e| e.to_string())?;
        let applied = match &mut *conn {
            DbConn::Postgres(c) => {
                // No lock deadline of the role's or the URL's may cut the wait for another
                // replica's migration short.
                c.batch_execute(&format!(
                    "{}; {}; SELECT pg_advisory_lock({MIGRATION_LOCK})",
                    statement_timeout(0),
                    lock_timeout(0)
                ))
                .map_err(|e| format!("migration lock: {e}"))?;
                let applied = self.run_with_bounded_lock_waits(c);
                let unlocked =
                    c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
                if let Err(e) = unlocked {
                    tracing::warn!(error = %e, "releasing the migration lock failed");
                }
                // This connection goes back to the pool: with its deadline again, or the start
                // fails (a failed migration is the error to report, if there was one).
                let restored = c.batch_execute(&format!(
                    "{}; RESET lock_timeout",
                    statement_timeout(self.timeout.as_millis())
                ));
                if let (Ok(_), Err(e)) = (&applied, restored) {
                    return Err(format!("restoring the statement deadline: {e}"));
                }
                applied
            }
            DbConn::Sqlite(c) => {
                let version = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
                    "sqlite_version()",
                ))
                .get_result::<String>(c)
                .map_err(|e| format!("reading SQLite's version: {e}"))?;
                if !sqlite_has_returning(&version) {
                    return Err(format!(
                        "SQLite {version} is too old: Gatehouse needs 3.35 or later (RETURNING); \
                         every revocation would fail"
                    ));
                }
                c.run_pending_migrations(SQLITE_MIGRATIONS)
                    .map(|v| v.len())
                    .map_err(|e| e.to_string())
            }
        };
        applied.map_err(|e| format!("migrations failed: {e}"))
    }

    /// The pending migrations, one at a time, each wait for a lock bounded by a quarter of
    /// `db_timeout_ms`: PostgreSQL queues every later query on a table behind a waiting
    /// `ALTER`, so a transaction left open elsewhere would hold every replica's requests on that
    /// table for as long as the migration waited. A migration that gives up is rolled back (the
    /// ones before it stay) and tried again a second later, a few times: the queue drains
    /// between tries. A give-up is told by time, not by the server's (localised) message: the
    /// migration failed as its lock wait ran out, within a second of it. One that failed sooner
    /// or later failed for its own reason, and is not tried again.
    fn run_with_bounded_lock_waits(&self, c: &mut diesel::PgConnection) -> Result<usize, String> {
        let wait = (self.timeout / 4).max(Duration::from_millis(50));
        c.batch_execute(&lock_timeout(wait.as_millis()))
            .map_err(|e| format!("setting the lock deadline: {e}"))?;
        let (mut applied, mut tries) = (0, 0);
        loop {
            let pending = c
                .pending_migrations(PG_MIGRATIONS)
                .map_err(|e| e.to_string())?;
            let Some(next) = pending.first() else {
                return Ok(applied);
            };
            let started = Instant::now();
            let Err(e) = c.run_migration(next.as_ref()) else {
                (applied, tries) = (applied + 1, 0);
                continue;
            };
            let took = started.elapsed();
            if took < wait || took > wait + Duration::from_secs(1) {
                return Err(e.to_string());
            }
            tries += 1;
            if tries >= MIGRATION_ATTEMPTS {
                return Err(format!(
                    "{e}. Each of {MIGRATION_ATTEMPTS} tries of {} gave up as its wait for a \
                     lock reached {} ms (a quarter of db_timeout_ms), so that the replicas' \
                     queries would not queue behind it: another session holds one (a long \
                     transaction?); run it again once that session is done",
                    next.name(),
                    wait.as_millis()
                ));
            }
            tracing::warn!(migration = %next.name(), tries, error = %e, "a migration gave up waiting for a lock; trying again in 1 s");
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// For a command other than `migrate`: the database must hold every migration this build
    /// has, and the check writes nothing.
    pub fn require_schema(&self) -> Result<(), String> {
        let mut conn = self.pool.get().map_err(|e| e.to_string())?;
        let exists_query = match &*conn {
            // In the schema diesel would create it in: the first of `search_path`, not any.
            DbConn::Postgres(_) => format!(
                "EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() \
                 AND tablename = '{MIGRATIONS_TABLE}')"
            ),
            DbConn::Sqlite(_) => format!(
                "EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
                 AND name = '{MIGRATIONS_TABLE}')"
            ),
        };
        let has_record = diesel::select(diesel::dsl::sql::<Bool>(&exists_query))
            .get_result::<bool>(&mut *conn)
            .map_err(|e| format!("reading the schema of {}: {e}", self.url.describe()))?;
        let (pending, total) = match &mut *conn {
            DbConn::Postgres(c) if has_record => pending_of(c, PG_MIGRATIONS)?,
            DbConn::Sqlite(c) if has_record => pending_of(c, SQLITE_MIGRATIONS)?,
            DbConn::Postgres(_) | DbConn::Sqlite(_) => (Vec::new(), 0),
        };
        if !has_record || pending.len() == total {
            return Err(format!(
                "{} has no Gatehouse schema: commands work on the database the replicas use (set \
                 GATEHOUSE_DATABASE_URL and the rest of their environment); `gatehouse-issuer \
                 migrate` makes a new one",
                self.url.describe()
            ));
        }
        if !pending.is_empty() {
            return Err(format!(
                "{} lacks {} of this build's migrations ({}): the replicas run an older \
                 version. Commands do not migrate a database replicas are using; upgrade the \
                 replicas (or run `gatehouse-issuer migrate` when they can wait on it) first",
                self.url.describe(),
                pending.len(),
                pending.join(", ")
            ));
        }
        Ok(())
    }
}

/// The names of the migrations `conn` has not applied, and how many this build has.
fn pending_of<C>(conn: &mut C, source: EmbeddedMigrations) -> Result<(Vec<String>, usize), String>
where
    C: MigrationHarness<C::Backend> + diesel::Connection,
    EmbeddedMigrations: diesel::migration::MigrationSource<C::Backend>,
{
    let total = source.migrations().map_err(|e| e.to_string())?.len();
    let pending = conn
        .pending_migrations(source)
        .map_err(|e| format!("reading the applied migrations: {e}"))?
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    Ok((pending, total))
}

/// Whether the linked SQLite (the system's library, not bundled) has `RETURNING`, which the
/// revocation writes use: 3.35 or later. Debian 11 ships 3.34.
fn sqlite_has_returning(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (3, 35)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_needs_returning() {
        for (version, ok) in [
            ("3.35.0", true),
            ("3.45.1", true),
            ("4.0.0", true),
            ("3.34.1", false),
            ("3.31.1", false),
            ("2.99", false),
            ("", false),
        ] {
            assert_eq!(sqlite_has_returning(version), ok, "{version}");
        }
    }
}
