//! Storage: one Diesel query path over PostgreSQL (production) and SQLite (embedded default),
//! an r2d2 pool, migrations embedded per backend and run at ignite, and a semaphore sized to the
//! pool so blocking calls never pile up on the async runtime. Every wait on the database is
//! bounded by `db_timeout_ms`, so a stalled database is answered 503, not a hang.

mod migrations;
mod probe;
pub mod schema;

pub use migrations::MIGRATION_LOCK;

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::r2d2::{self, ManageConnection, R2D2Connection as _};
use diesel::{Connection as _, PgConnection, SqliteConnection};
use prometheus_client::metrics::gauge::Gauge;
use rocket::fairing::AdHoc;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::{DbLabels, DbUnavailable, Held, Metrics};

#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// A database URL, dispatched on its scheme (the derived `establish` hides the real error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    Postgres(String),
    Sqlite(String),
}

impl DbUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(
                    "GATEHOUSE_DATABASE_URL: sqlite:// needs a file path, e.g. sqlite://gatehouse.db"
                        .into(),
                );
            }
            Ok(Self::Sqlite(path.to_owned()))
        } else if url_scheme(url).is_some() {
            Err(format!(
                "GATEHOUSE_DATABASE_URL: unsupported scheme in {:?}: use postgres://… or sqlite://path",
                redact(url)
            ))
        } else {
            // Not shown: text that is no URL (a libpq `key=value` string, a bare password set
            // by mistake) has nothing redact could tell from a password.
            Err(
                "GATEHOUSE_DATABASE_URL is not a URL (its text is not shown: it may hold a \
                 password): use postgres://… or sqlite://path"
                    .into(),
            )
        }
    }

    /// For logs: the backend and location, without credentials.
    pub fn describe(&self) -> String {
        match self {
            Self::Postgres(url) => format!("PostgreSQL at {}", redact(url)),
            Self::Sqlite(path) => format!("SQLite at {path}"),
        }
    }
}

/// The scheme of `text` if it begins as a URL does (`scheme://`, RFC 3986 §3.1): else the text
/// before a `://` could be anything, a password included.
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    (chars.next()?.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// The URL without its credentials: its host, port and path as a URL parser reads them, without
/// the user info or the query (where libpq also takes a `password`, and whose other options do
/// not say which database it is). A URL that does not parse so, or holds an `@` past its
/// authority, shows its scheme alone: a password with an unescaped `/`, `?`, `#` or `@` makes
/// one, and such a URL is exactly what fails to connect and gets logged. Text that is no URL
/// (a `postgres:user:password@host` typo, a scheme missing from an edge's URL) shows up to its
/// first `=`, `:`, `@`, `?` or space.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme) = url_scheme(url) else {
        let shown: String = url
            .chars()
            .take_while(|c| !matches!(c, '=' | ':' | '@' | '?') && !c.is_whitespace())
            .collect();
        return if shown.len() == url.len() {
            shown
        } else {
            format!("{shown}…")
        };
    };
    // An `@` past the authority: an unescaped `/`, `?` or `#` in a password ended the
    // authority early (`postgres://user:pa/ss@host`), and the parser would show the first part
    // of the password as host and port, the rest as path. It cannot be told from an `@` in
    // the query (`?user=name@server`), so neither shows more than the scheme.
    let rest = url.get(scheme.len() + 3..).unwrap_or_default();
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest
        .get(authority_end..)
        .is_some_and(|after| after.contains('@'))
    {
        return format!("{scheme}://***");
    }
    let Some((parsed, host)) = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned).map(|host| (u, host)))
    else {
        return format!("{scheme}://***");
    };
    let credentials = if parsed.username().is_empty() && parsed.password().is_none() {
        ""
    } else {
        "***@"
    };
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{scheme}://{credentials}{host}{port}{}", parsed.path())
}

pub struct Manager {
    url: DbUrl,
    timeout: Duration,
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConn, r2d2::Error> {
        let timeout_ms = self.timeout.as_millis();
        match &self.url {
            DbUrl::Postgres(url) => {
                let mut conn =
                    PgConnection::establish(url).map_err(r2d2::Error::ConnectionError)?;
                // The server cancels a statement (a lock wait included) past the deadline and
                // rolls its transaction back: nothing commits after the caller got a 503. And a
                // commit (a revocation above all) is flushed before its answer: a server default
                // of `synchronous_commit = off`, a common tuning, answers first and loses the
                // last commits in a crash, so it is raised to PostgreSQL's own default; every
                // other value flushes locally, and is kept.
                conn.batch_execute(&format!(
                    "{}; SELECT set_config('synchronous_commit', 'on', false) \
                     WHERE current_setting('synchronous_commit') = 'off'",
                    statement_timeout(timeout_ms)
                ))
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConn::Postgres(conn))
            }
            DbUrl::Sqlite(path) => {
                let mut conn =
                    SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
                // WAL + busy timeout for concurrent writers; FULL sync so a commit (a revocation
                // above all) is on disk before the response goes out.
                conn.batch_execute(&format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA busy_timeout = {timeout_ms}; PRAGMA foreign_keys = ON;"
                ))
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConn::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        conn.is_broken()
    }
}

pub type Pool = r2d2::Pool<Manager>;

pub(super) fn statement_timeout(ms: u128) -> String {
    format!("SET statement_timeout = {ms}")
}

pub(super) fn lock_timeout(ms: u128) -> String {
    format!("SET lock_timeout = {ms}")
}

/// Why a call is answered 503; each is counted (`gatehouse_db_unavailable_total{reason}`).
#[derive(Debug, Clone, Copy)]
enum Unavailable {
    /// Every connection (or every blocking thread) stayed in use past the deadline.
    Busy,
    /// The pool could not hand out or open a connection in time.
    NoConnection,
    /// The call ran out of the deadline.
    TimedOut,
    /// The server went away during the call.
    Lost,
}

impl Unavailable {
    const ALL: [Self; 4] = [Self::Busy, Self::NoConnection, Self::TimedOut, Self::Lost];

    const fn labels(self) -> DbLabels {
        let reason = match self {
            Self::Busy => "busy",
            Self::NoConnection => "no_connection",
            Self::TimedOut => "timed_out",
            Self::Lost => "lost",
        };
        DbLabels { reason }
    }

    fn answer(self, counts: &DbUnavailable) -> ApiError {
        counts.get_or_create(&self.labels()).inc();
        ApiError::unavailable(match self {
            Self::Busy => "database busy",
            Self::NoConnection | Self::Lost => "database unavailable",
            Self::TimedOut => "database timed out",
        })
    }
}

/// Failures that are the database's state, not the statement's, are 503s the client may retry:
/// - a failure on a connection that no longer answers is the server gone (a dead socket fails
///   the ping at once);
/// - a call that failed after running for the whole deadline ran out of it (PostgreSQL's
///   `statement_timeout` cancelled it, or SQLite's `busy_timeout` gave up on a lock).
///
/// Anything else is a bug (500). Only the database's own failures (`ApiError::Database`) are
/// judged, by time and the connection's state, never by the message, which the server
/// localises; diesel gives neither case a kind of its own. The time is the whole call's, so a
/// call of several statements that passes the deadline in total and then fails for another
/// database reason is a 503 too.
fn classify_failure<T>(
    conn: &mut DbConn,
    result: Result<T, ApiError>,
    ran_out: bool,
    counts: &DbUnavailable,
) -> Result<T, ApiError> {
    match result {
        Err(ApiError::Database(detail)) if conn.is_broken() || conn.ping().is_err() => {
            crate::warn_at_most_every_interval!(error = %detail, "database connection lost");
            Err(Unavailable::Lost.answer(counts))
        }
        Err(ApiError::Database(detail)) if ran_out => {
            crate::warn_at_most_every_interval!(error = %detail, "database call ran out of time");
            Err(Unavailable::TimedOut.answer(counts))
        }
        other => other,
    }
}

/// Runs `f` on `conn`, its failure classified by [`classify_failure`].
fn run_classified<T>(
    conn: &mut DbConn,
    timeout: Duration,
    counts: &DbUnavailable,
    f: impl FnOnce(&mut DbConn) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let started = Instant::now();
    let result = f(conn);
    classify_failure(conn, result, started.elapsed() >= timeout, counts)
}

/// The pool plus a semaphore with one permit per connection.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// One connection for readiness probes alone ([`Db::ping`]).
    probe: Pool,
    /// The probes under way, which overlapping ones share.
    pings: Arc<probe::Shared>,
    permits: Arc<Semaphore>,
    url: DbUrl,
    timeout: Duration,
    /// Counted here, where the 503 is decided; `/metrics` shows them once the server's stage
    /// hands over its family (commands count into one nobody reads).
    unavailable: DbUnavailable,
    /// The calls waiting for a permit and holding one, handed over the same way.
    waiting: Gauge,
    running: Gauge,
}

impl Db {
    /// `min_idle` connections are kept open in the background (the server keeps one warm).
    pub fn connect(
        url: &DbUrl,
        pool_size: u32,
        min_idle: u32,
        timeout: Duration,
    ) -> Result<Self, String> {
        // r2d2 asserts it (a panic at startup that names nothing).
        if pool_size == 0 {
            return Err("GATEHOUSE_DB_POOL_SIZE must be at least 1".to_owned());
        }
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(min_idle))
            .connection_timeout(timeout)
            .build(Manager {
                url: url.clone(),
                timeout,
            })
            .map_err(|e| format!("cannot connect to {}: {e}", url.describe()))?;
        let permits = Arc::new(Semaphore::new(usize::try_from(pool_size).unwrap_or(8)));
        // Opened at the first probe, never before (a command exits without one).
        let probe = r2d2::Pool::builder()
            .max_size(1)
            .min_idle(Some(0))
            .connection_timeout(timeout)
            .build_unchecked(Manager {
                url: url.clone(),
                timeout,
            });
        Ok(Self {
            pool,
            probe,
            pings: Arc::default(),
            permits,
            url: url.clone(),
            timeout,
            unavailable: DbUnavailable::default(),
            waiting: Gauge::default(),
            running: Gauge::default(),
        })
    }

    pub fn url(&self) -> &DbUrl {
        &self.url
    }

    /// Runs `f` with a pooled connection on the blocking pool, after taking a permit, so at
    /// most pool-size blocking threads ever wait on the database. The permit goes with the
    /// thread: a request dropped while its call runs does not free it early. The permit and the
    /// connection share one `db_timeout_ms` of waiting.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut DbConn) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let acquire = Arc::clone(&self.permits).acquire_owned();
        let waiting = Held::on(&self.waiting);
        let permit = tokio::time::timeout_at(deadline, acquire)
            .await
            .map_err(|_| Unavailable::Busy.answer(&self.unavailable))?
            .map_err(|_| ApiError::unavailable("database pool closed"))?;
        drop(waiting);
        let running = Held::on(&self.running);
        let (pool, timeout, counts) = (self.pool.clone(), self.timeout, self.unavailable.clone());
        let deadline = deadline.into_std();
        tokio::task::spawn_blocking(move || {
            let (_permit, _running) = (permit, running);
            // Time queued for a blocking thread counts too (`max_blocking` below the pool size,
            // or other blocking work): a call that starts past its deadline does nothing.
            let wait_left = deadline.saturating_duration_since(Instant::now());
            if wait_left.is_zero() {
                return Err(Unavailable::Busy.answer(&counts));
            }
            let mut conn = pool
                .get_timeout(wait_left)
                .map_err(|_| Unavailable::NoConnection.answer(&counts))?;
            run_classified(&mut conn, timeout, &counts, f)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("database task failed: {e}")))?
    }

    /// Runs `f` synchronously (CLI commands and tests).
    pub fn run_sync<T>(
        &self,
        f: impl FnOnce(&mut DbConn) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut conn = self
            .pool
            .get()
            .map_err(|_| Unavailable::NoConnection.answer(&self.unavailable))?;
        run_classified(&mut conn, self.timeout, &self.unavailable, f)
    }
}

/// Opens the database named by the configuration and runs migrations.
pub fn open(config: &Config) -> Result<Db, String> {
    let url = DbUrl::parse(&config.database_url)?;
    if let DbUrl::Sqlite(path) = &url
        && is_sqlite_memory(path)
    {
        return Err(format!(
            "GATEHOUSE_DATABASE_URL: sqlite://{path} is an in-memory database, gone when its \
             connections close (and, unshared, a separate one for each): the server needs a \
             file (sqlite://gatehouse.db)"
        ));
    }
    let db = connect(config, &url, config.db_pool_size, 1)?;
    db.migrate()?;
    Ok(db)
}

/// Whether a SQLite path names an in-memory database (`:memory:`, or a `file:` URI of one).
fn is_sqlite_memory(path: &str) -> bool {
    path == ":memory:"
        || path.starts_with("file::memory:")
        || (path.starts_with("file:") && path.contains("mode=memory"))
}

/// For a short-lived command: one connection, none opened in the background. A pool thread
/// still connecting when the process exits crashed it (libpq's TLS setup inside OpenSSL racing
/// its exit-time cleanup: a segfault in about one `users create` in seven).
/// Only `migrate` (`create`) makes a SQLite file or a schema; every other command needs the
/// database the replicas use, migrated (`Db::require_schema`): a command run in a shell without
/// the replicas' environment would otherwise make a new database, act on it and report success
/// (a `keys rotate` after a leak, say).
pub fn open_for_command(config: &Config, url: &DbUrl, create: bool) -> Result<Db, String> {
    if let DbUrl::Sqlite(path) = url
        && !create
        && path != ":memory:"
        // A `file:` URI names its file in its own syntax; SQLite is left to read it.
        && !path.starts_with("file:")
        && !std::path::Path::new(path).exists()
    {
        return Err(format!(
            "no database at {path}: commands work on the database the replicas use (set \
             GATEHOUSE_DATABASE_URL, GATEHOUSE_PROFILE and the rest of their environment); \
             `gatehouse-issuer migrate` makes a new one"
        ));
    }
    let db = connect(config, url, 1, 0)?;
    if create {
        db.migrate()?;
    } else {
        db.require_schema()?;
    }
    Ok(db)
}

fn connect(config: &Config, url: &DbUrl, pool_size: u32, min_idle: u32) -> Result<Db, String> {
    let timeout = Duration::from_millis(u64::from(config.db_timeout_ms));
    Db::connect(url, pool_size, min_idle, timeout)
}

/// Pool and migrations, at ignite.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Database", |rocket| async {
        let Some(config) = rocket.state::<Config>() else {
            tracing::error!("database stage needs the config stage first");
            return Err(rocket);
        };
        let Some(metrics) = rocket.state::<Arc<Metrics>>() else {
            tracing::error!("database stage needs the metrics stage first");
            return Err(rocket);
        };
        let counts = metrics.db_unavailable.clone();
        let capacity = &metrics.capacity;
        capacity.db_pool_size.set(i64::from(config.db_pool_size));
        // Every reason at 0 from the start, so a rate or an alert sees the series before the
        // first 503.
        for reason in Unavailable::ALL {
            counts.get_or_create(&reason.labels()).inc_by(0);
        }
        match open(config) {
            Ok(mut db) => {
                db.unavailable = counts;
                db.waiting = capacity.db_calls_waiting.clone();
                db.running = capacity.db_calls_running.clone();
                tracing::info!(database = %db.url().describe(), "database ready, migrations applied");
                Ok(rocket.manage(db))
            }
            Err(e) => {
                tracing::error!(error = %e, "database setup failed");
                Err(rocket)
            }
        }
    })
}

#[cfg(test)]
mod tests;
