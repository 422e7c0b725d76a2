//! The command line: `serve` (default), `migrate`, `keys rotate|import|list|reseal|revoke`,
//! `users create|list|show|events|unlock|disable|enable|reset-password|delete`, `revocations push`, `cleanup`.

/// `println!` for a command's output, which a closed pipe (`| head -1`) does not turn into a
/// panic: the work after a line (a revocation's push) still runs, and the exit code still says
/// whether the command did its work.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// [`say!`] for standard error: a command's warnings and errors (`2>&1 | head -1` closes it).
macro_rules! warn_operator {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod key_commands;
mod user_commands;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::clock::Clock;
use crate::config::{self, Config};
use crate::db::{self, Db};
use crate::error::ApiError;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::sync::{Push, Snapshots, database_behind};

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse-issuer",
    version,
    about = "Gatehouse token authority"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply pending database migrations and exit. Besides `serve`, which migrates at start, the
    /// only command that makes or changes a schema; the others need it migrated.
    Migrate,
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Revocation snapshots.
    Revocations {
        #[command(subcommand)]
        command: RevocationsCommand,
    },
    /// Delete ended sessions and expired revocation entries, then exit (lockout state is left to
    /// the replicas, whose lockout settings say which is stale).
    Cleanup,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Generate a new signing key; the current one stays published until its tokens expire.
    Rotate {
        /// Recovery when the secret that sealed the active key is lost: rotate although
        /// `GATEHOUSE_KEY_ENCRYPTION_KEY` does not open it (refused otherwise, so a shell
        /// without the replicas' secret cannot make a key they cannot open).
        #[arg(long)]
        replace_unopenable: bool,
    },
    /// Import an existing private JWK (Ed25519): stored sealed, and the signing key from now on
    /// if its kid is new.
    Import { file: std::path::PathBuf },
    /// List keys with their status.
    List,
    /// After rotating `GATEHOUSE_KEY_ENCRYPTION_KEY` (the old secret in
    /// `GATEHOUSE_KEY_ENCRYPTION_KEY_FALLBACKS`): seal every stored private key again under the
    /// current secret.
    Reseal,
    /// Emergency: revoke a (non-active) key. It leaves the JWKS and every edge drops it through
    /// the revocation fast path; the new list is also pushed to `GATEHOUSE_EDGE_SYNC_URLS`.
    Revoke {
        /// A kid is a base64url thumbprint and may begin with `-`.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// List every user: id, name, role, state, creation time.
    List,
    /// Show one user by name.
    Show { username: String },
    /// A user's most recent audit events, newest first (time, kind, detail), as the admin
    /// endpoint `GET /v1/admin/users/<id>/events` answers them.
    Events {
        username: String,
        #[arg(long, default_value_t = crate::store::audit::DEFAULT_RECENT,
              value_parser = clap::value_parser!(i64).range(1..=crate::store::audit::MAX_RECENT))]
        limit: i64,
    },
    /// Lift every lockout of a user's account (each client's and the account's), as the
    /// admin endpoint `POST /v1/admin/users/<id>/unlock` does: for an admin locked out of
    /// their own account, say.
    Unlock { username: String },
    /// Disable a user, as the admin endpoint does: every session ends and every access token
    /// is revoked (the new list is pushed to `GATEHOUSE_EDGE_SYNC_URLS`), and logins are
    /// refused until it is enabled again.
    Disable { username: String },
    /// Enable a disabled user again: for the last admin, disabled with no admin left to undo it.
    Enable { username: String },
    /// Set a user's password, for one who cannot sign in: read as `users create` reads it,
    /// under the same policy. Every session ends and every access token is revoked (the list is
    /// pushed to `GATEHOUSE_EDGE_SYNC_URLS`); lockouts stay (`users unlock` lifts them).
    ResetPassword { username: String },
    /// Delete a user, as the admin endpoint does: every session and access token ends with the
    /// account (the list is pushed to `GATEHOUSE_EDGE_SYNC_URLS`), and the name is free again.
    Delete { username: String },
    /// Create a user. On a terminal the password is asked twice without echo; otherwise it is
    /// the first line of standard input.
    Create {
        username: String,
        /// Allow the user to request the `admin` scope.
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum RevocationsCommand {
    /// Push the current signed snapshot to every GATEHOUSE_EDGE_SYNC_URLS entry once.
    Push,
}

pub fn main() -> ExitCode {
    init_logging();
    let result = match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::Migrate => load_creating(true)
            .map(|(_, db)| say!("migrations applied on {}", db.url().describe()))
            .map_err(Failure::from),
        Command::Keys { command } => key_commands::run(command),
        Command::Users { command } => user_commands::run(command),
        Command::Revocations {
            command: RevocationsCommand::Push,
        } => revocations_push(),
        Command::Cleanup => cleanup(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Failed(message)) => {
            warn_operator!("gatehouse-issuer: {message}");
            ExitCode::FAILURE
        }
        Err(Failure::NotPushed(message)) => {
            warn_operator!("gatehouse-issuer: {message}");
            ExitCode::from(RECORDED_NOT_PUSHED)
        }
    }
}

/// The exit status of a command whose revocation is recorded but did not reach every edge: a
/// script can tell it from a failure (1: the command failed, and its message says what it did)
/// and from a success (0). Running the
/// command again is not needed; `revocations push` is.
pub const RECORDED_NOT_PUSHED: u8 = 3;

/// Why a command did not fully succeed.
enum Failure {
    /// It did not do its work (exit 1).
    Failed(String),
    /// Its revocation is recorded, but a push to an edge failed (exit [`RECORDED_NOT_PUSHED`]).
    NotPushed(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

/// What a command returns.
type Outcome = Result<(), Failure>;

fn init_logging() {
    const DEFAULT_FILTER: &str = "info,rocket=warn,_=warn";
    let set = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (filter, bad_filter) = match set("GATEHOUSE_LOG") {
        None => (tracing_subscriber::EnvFilter::new(DEFAULT_FILTER), None),
        Some(raw) => match tracing_subscriber::EnvFilter::try_new(&raw) {
            Ok(filter) => (filter, None),
            Err(e) => (
                tracing_subscriber::EnvFilter::new(DEFAULT_FILTER),
                Some((raw, e)),
            ),
        },
    };
    let format = set("GATEHOUSE_LOG_FORMAT");
    let json = format
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
    // Colours only on a terminal: a log file or collector gets plain text.
    // Rocket writes each request and response whole, headers included (a bearer token, a
    // cookie), at debug: never, whatever GATEHOUSE_LOG asks for.
    let no_request_dumps = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.target().starts_with("rocket") && *meta.level() > tracing::Level::INFO)
    });
    // A log line that cannot be written is dropped: by default tracing-subscriber reports the
    // failure with `eprintln!`, which panics when standard error is the broken pipe (a log
    // shipper gone, `2>&1 | head -1`), in a command before its work or in a request's task.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    if json {
        builder.json().finish().with(no_request_dumps).init();
    } else {
        builder.finish().with(no_request_dumps).init();
    }
    // Said once logging works, rather than logging less or in another form without a word.
    if let Some((raw, e)) = bad_filter {
        tracing::warn!("GATEHOUSE_LOG={raw:?} is not a log filter ({e}); using {DEFAULT_FILTER}");
    }
    if let Some(other) = format.filter(|f| !json && !f.eq_ignore_ascii_case("text")) {
        tracing::warn!("GATEHOUSE_LOG_FORMAT={other:?} is neither json nor text; using text");
    }
}

/// Sized by Rocket's own `workers` and `max_blocking` (`GATEHOUSE_WORKERS`,
/// `GATEHOUSE_MAX_BLOCKING`), which only `rocket::launch`'s runtime would otherwise read.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    let rocket_config =
        rocket::Config::try_from(config::figment()).map_err(|e| format!("configuration: {e}"))?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(rocket_config.workers.max(1))
        .max_blocking_threads(rocket_config.max_blocking.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn serve() -> Outcome {
    runtime()?.block_on(async {
        let rocket = crate::rocket().ignite().await.map_err(|e| e.to_string())?;
        if let Some(config) = rocket.state::<Config>() {
            let rc = rocket.config();
            tracing::info!(
                address = %format!("http://{}:{}", rc.address, rc.port),
                issuer = %config.issuer,
                audience = %config.audience,
                jwks = %format!("{}/.well-known/jwks.json", config.issuer.trim_end_matches('/')),
                edge_sync_urls = ?config.edge_sync_urls,
                workers = tokio::runtime::Handle::current().metrics().num_workers(),
                "gatehouse issuer starting"
            );
        }
        if rocket
            .config()
            .shutdown
            .signals
            .contains(&rocket::config::Sig::Term)
        {
            tracing::warn!(
                "shutdown.signals lists `term`: Rocket stops at SIGTERM at once, without the drain"
            );
        }
        if let (Some(config), Some(drain)) = (
            rocket.state::<Config>(),
            rocket.state::<Arc<crate::drain::Drain>>(),
        ) {
            crate::drain::shut_down_on_sigterm(
                Arc::clone(drain),
                Duration::from_secs(u64::from(config.drain_secs)),
                rocket.shutdown(),
            );
        }
        let snapshots = rocket.state::<Arc<Snapshots>>().map(Arc::clone);
        let served = rocket.launch().await.map(|_| ()).map_err(|e| e.to_string());
        if let Some(snapshots) = snapshots {
            snapshots.flush(crate::sync::FLUSH_LIMIT).await;
        }
        served
    })?;
    Ok(())
}

/// The config and the database every command but `migrate` works on: an existing one.
fn load() -> Result<(Config, Db), String> {
    load_creating(false)
}

fn load_creating(create: bool) -> Result<(Config, Db), String> {
    let figment = config::figment();
    let config: Config = figment
        .extract()
        .map_err(|e| format!("configuration: {e}"))?;
    // The server's checks: a command run against the wrong database, or with a setting the
    // server would refuse, must not report success.
    let mut refusals = config.refusals();
    refusals.extend(config::unknown_setting_refusals(&figment));
    if !refusals.is_empty() {
        return Err(refusals.join("\n"));
    }
    // A command acts on whatever the environment names: say which.
    let target = db::DbUrl::parse(&config.database_url)?;
    warn_operator!("gatehouse-issuer: {}", target.describe());
    let db = db::open_for_command(&config, &target, create)?;
    Ok((config, db))
}

#[allow(clippy::needless_pass_by_value)] // used as a map_err adapter
fn fail(e: ApiError) -> String {
    e.to_string()
}

fn now() -> i64 {
    Clock::default().now()
}

fn revocations_push() -> Outcome {
    let (config, db) = load()?;
    if config.edge_sync_urls.is_empty() {
        return Err(Failure::Failed(
            "no GATEHOUSE_EDGE_SYNC_URLS configured".into(),
        ));
    }
    Ok(push_current_list(&config, &db)?)
}

/// The push that follows a revocation in a serving replica, for a command that revoked
/// (`keys revoke`, `users disable|reset-password|delete`): this process made the write, and
/// without the push an edge with the delta feed off learns of it only at its cron. The
/// revocation is recorded whatever the push does; a failed push is [`Failure::NotPushed`].
fn push_after_revocation(config: &Config, db: &Db) -> Outcome {
    if config.edge_sync_urls.is_empty() {
        return Ok(());
    }
    // A push that waits on a slow edge takes up to its retries' 45 s: said first, so that the
    // wait is not taken for a hang (the revocation is already recorded).
    warn_operator!(
        "pushing the revocation list to {} edge(s)",
        config.edge_sync_urls.len()
    );
    push_current_list(config, db).map_err(|e| {
        Failure::NotPushed(format!(
            "{e}; the revocation is recorded and reaches the edges through their delta feed or \
             cron (`gatehouse-issuer revocations push` tries again; exit status \
             {RECORDED_NOT_PUSHED})"
        ))
    })
}

/// Signs the current list with the ring's active key and pushes it to every edge, reporting each
/// (`revocations push`, and [`push_after_revocation`]).
fn push_current_list(config: &Config, db: &Db) -> Result<(), String> {
    let now = now();
    let ring = Arc::new(
        db.run_sync(|c| KeyRing::load_read_only(c, config, now))
            .map_err(fail)?,
    );
    let metrics = Metrics::default();
    let snapshots = Snapshots::new(&metrics).map_err(fail)?;
    runtime()?.block_on(async {
        let jws = snapshots
            .current(db, &ring, config, now)
            .await
            .map_err(fail)?;
        let mut failed = 0;
        for url in &config.edge_sync_urls {
            match snapshots
                .push(url, &jws, &metrics, std::future::pending(), &mut None)
                .await
            {
                Push::Landed => say!("pushed to {url}"),
                Push::EdgeHolds(held) => {
                    // One edge's comparison failing must not keep the list from the others.
                    let behind = match held {
                        Some(held) => match database_behind(db, held).await {
                            Ok(ours) => ours.map(|ours| (held, ours)),
                            Err(e) => {
                                failed += 1;
                                warn_operator!(
                                    "{url} holds seq {held}; comparing it with this database \
                                     failed: {e}"
                                );
                                continue;
                            }
                        },
                        None => None,
                    };
                    if let Some((held, ours)) = behind {
                        failed += 1;
                        warn_operator!(
                            "{url} holds seq {held}, newer than this database's {ours}: it refuses \
                             every list signed here (was the database restored? see deploy.md)"
                        );
                    } else {
                        say!("{url} already holds this list or a newer one");
                    }
                }
                Push::Failed | Push::Superseded => {
                    failed += 1;
                    warn_operator!("push to {url} failed");
                }
            }
        }
        if failed == 0 {
            Ok(())
        } else {
            Err(format!("{failed} push(es) failed"))
        }
    })
}

fn cleanup() -> Outcome {
    let (config, db) = load()?;
    runtime()?.block_on(async {
        let report = crate::maintenance::cleanup_from_a_shell(&db, &config, &Clock::default())
            .await
            .map_err(fail)?;
        say!(
            "deleted {} sessions, {} revocation entries; lockout and audit rows are left to the \
             replicas, whose settings say which are due, as are rotation nonces",
            report.sessions,
            report.revocations
        );
        Ok::<_, String>(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kid_that_begins_with_a_hyphen_is_a_value_not_a_flag() {
        let cli = Cli::try_parse_from(["gatehouse-issuer", "keys", "revoke", "-Iq3w"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Keys {
                command: KeysCommand::Revoke { kid }
            }) if kid == "-Iq3w"
        ));
    }
}
