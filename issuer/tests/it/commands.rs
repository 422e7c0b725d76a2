//! The CLI's commands against the schema: only `migrate` makes or changes one.

use std::process::Output;

use diesel::connection::SimpleConnection as _;
use diesel::sql_types::BigInt;
use diesel::{Connection as _, PgConnection, RunQueryDsl as _};

use crate::binary::command;
use crate::common::{Backend, TestDb};

fn run_on(database_url: &str, args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out: Output = command(dir.path())
        .env("GATEHOUSE_DATABASE_URL", database_url)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn tables_in(conn: &mut PgConnection) -> i64 {
    diesel::sql_query(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .get_result::<Count>(conn)
    .unwrap()
    .n
}

/// A shell whose environment names an empty database (the wrong one): a command refuses it and
/// writes nothing there. Once migrated it works; one migration behind (replicas of the older
/// version still serving) a command refuses again, naming what is missing, and does not
/// migrate a database they use.
#[test]
fn commands_need_the_replicas_migrated_schema() {
    let db = TestDb::new(Backend::Postgres);
    let mut conn = PgConnection::establish(&db.url).unwrap();
    for args in [
        &["keys", "rotate"][..],
        &["keys", "list"],
        &["users", "list"],
    ] {
        let (ok, stderr) = run_on(&db.url, args);
        assert!(
            !ok && stderr.contains("has no Gatehouse schema"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(tables_in(&mut conn), 0, "a refused command created nothing");

    let (ok, stderr) = run_on(&db.url, &["migrate"]);
    assert!(ok, "{stderr}");
    let (ok, stderr) = run_on(&db.url, &["keys", "list"]);
    assert!(ok, "{stderr}");
    // An empty schema first in `search_path`, the migrated one after it: the record of
    // migrations is looked for where diesel would make it, and nothing is made there.
    let empty = TestDb::new(Backend::Postgres);
    let schema_of = |url: &str| url.rsplit("%3D").next().unwrap().to_owned();
    let both = format!(
        "{}?options=-csearch_path%3D{},{}",
        crate::common::PG_ADMIN_URL,
        schema_of(&empty.url),
        schema_of(&db.url)
    );
    let (ok, stderr) = run_on(&both, &["keys", "list"]);
    assert!(
        !ok && stderr.contains("has no Gatehouse schema"),
        "{stderr}"
    );
    let mut in_empty = PgConnection::establish(&empty.url).unwrap();
    assert_eq!(
        tables_in(&mut in_empty),
        0,
        "nothing was made in the empty schema"
    );

    conn.batch_execute(
        "DELETE FROM __diesel_schema_migrations \
         WHERE version = (SELECT max(version) FROM __diesel_schema_migrations)",
    )
    .unwrap();
    let tables = tables_in(&mut conn);
    let newest = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .max()
        .unwrap();
    let (ok, stderr) = run_on(&db.url, &["keys", "rotate"]);
    assert!(
        !ok && stderr.contains(&format!("lacks 1 of this build's migrations ({newest})")),
        "{stderr}"
    );
    assert_eq!(tables_in(&mut conn), tables);

    // SQLite: a file that is there but empty is no database of the replicas either.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let url = format!("sqlite://{}", empty.path().display());
    let (ok, stderr) = run_on(&url, &["keys", "rotate"]);
    assert!(
        !ok && stderr.contains("has no Gatehouse schema"),
        "{stderr}"
    );
    let mut sqlite =
        diesel::SqliteConnection::establish(&empty.path().display().to_string()).unwrap();
    let made = diesel::sql_query("SELECT count(*) AS n FROM sqlite_master")
        .get_result::<Count>(&mut sqlite)
        .unwrap();
    assert_eq!(made.n, 0, "a refused command created nothing");
}

/// A misspelt setting is named, with the one meant: in a file it stops the command, in the
/// environment it is a warning (platforms add `GATEHOUSE_*` variables of their own).
#[test]
fn a_misspelt_setting_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)]| {
        let out = command(dir.path())
            .envs(envs.iter().copied())
            .arg("migrate")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run(&[(
        "GATEHOUSE_EDGE_SYNC_URL",
        "http://127.0.0.1:9/_gatehouse/sync",
    )]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(
            "GATEHOUSE_EDGE_SYNC_URL is not a setting (did you mean GATEHOUSE_EDGE_SYNC_URLS?)"
        ),
        "{stderr}"
    );
    std::fs::write(dir.path().join("ops.toml"), "[lockout]\ntreshold = 3\n").unwrap();
    let (ok, stderr) = run(&[("GATEHOUSE_CONFIG", "ops.toml")]);
    assert!(
        !ok && stderr.contains(
            "lockout.treshold in ops.toml is not a setting (did you mean lockout.threshold?)"
        ),
        "{stderr}"
    );
}

/// `keys revoke` of a key retired moments ago goes ahead (an emergency may need it) and warns
/// that replicas may still sign with it; a key retired longer ago than two maintenance periods
/// is revoked without a word.
#[test]
fn revoking_a_key_other_replicas_may_still_sign_with_warns() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = command(dir.path())
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    assert!(run(&["migrate"], &[]).0);
    for _ in 0..3 {
        let (ok, _, stderr) = run(&["keys", "rotate"], &[]);
        assert!(ok, "{stderr}");
    }
    let (_, listing, _) = run(&["keys", "list"], &[]);
    let retired: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains("\tretired\t"))
        .filter_map(|l| l.split('\t').next())
        .collect();
    assert_eq!(retired.len(), 2, "{listing}");
    let (ok, _, stderr) = run(&["keys", "revoke", retired[0]], &[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("still signs with it"), "{stderr}");
    // With a maintenance period of one second, two have passed.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (ok, _, stderr) = run(
        &["keys", "revoke", retired[1]],
        &[("GATEHOUSE_CLEANUP_INTERVAL_SECS", "1")],
    );
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// A migration waits for a lock no longer than a quarter of `db_timeout_ms` at a time:
/// PostgreSQL queues every later query on a table behind the waiting `ALTER`, so a transaction
/// left open elsewhere would hold every replica's requests on the table for as long as the
/// migration waited. It tries again a few times, then fails, naming the cause, its changes
/// rolled back, and succeeds once the lock is gone.
#[test]
fn a_migration_gives_up_a_table_lock_held_elsewhere() {
    let db = TestDb::new(Backend::Postgres);
    let (ok, stderr) = run_on(&db.url, &["migrate"]);
    assert!(ok, "{stderr}");
    // Every migration from `locking` on undone, as on a database that many versions behind:
    // `locking` creates `lockouts_by_client`, whose foreign key locks `users`, and is the first
    // to run again.
    let locking = "2026-12-06-000001_client_lockouts";
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort_unstable();
    let first = names.iter().position(|n| n == locking).unwrap();
    let undone = names.split_off(first);
    let mut conn = PgConnection::establish(&db.url).unwrap();
    for name in undone.iter().rev() {
        let down = std::fs::read_to_string(format!("{dir}/{name}/down.sql")).unwrap();
        conn.batch_execute(&down).unwrap();
        conn.batch_execute(
            "DELETE FROM __diesel_schema_migrations \
             WHERE version = (SELECT max(version) FROM __diesel_schema_migrations)",
        )
        .unwrap();
    }
    // A writer's transaction left open on every table (ROW EXCLUSIVE, as an UPDATE holds it:
    // it blocks a new foreign key or index as well as an ALTER); it ends after 60 s at the
    // latest.
    let mut reader = PgConnection::establish(&db.url).unwrap();
    reader
        .batch_execute(
            "BEGIN; DO $$ DECLARE t text; BEGIN FOR t IN SELECT tablename FROM pg_tables \
             WHERE schemaname = current_schema() LOOP \
             EXECUTE format('LOCK TABLE %I IN ROW EXCLUSIVE MODE', t); END LOOP; END $$",
        )
        .unwrap();
    let (done, held) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _ = held.recv_timeout(std::time::Duration::from_mins(1));
        reader.batch_execute("COMMIT").unwrap();
    });
    let out = command(tempfile::tempdir().unwrap().path())
        .env("GATEHOUSE_DATABASE_URL", &db.url)
        .env("GATEHOUSE_DB_TIMEOUT_MS", "500")
        .arg("migrate")
        .output()
        .unwrap();
    let _ = done.send(());
    holder.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "migrated past the held lock: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "tries of {locking} gave up as its wait for a lock reached 125 ms"
        )),
        "{stderr}"
    );
    let (ok, stderr) = run_on(&db.url, &["keys", "list"]);
    assert!(
        !ok && stderr.contains(&format!(
            "lacks {} of this build's migrations ({})",
            undone.len(),
            undone.join(", ")
        )),
        "the failed migration was rolled back: {stderr}"
    );
    let (ok, stderr) = run_on(&db.url, &["migrate"]);
    assert!(ok, "{stderr}");
}

/// The upgrade past 2026-12-07 on a large table, as docs/deploy.md tells it: the operator builds
/// the new indexes beforehand without holding writes (`CREATE INDEX CONCURRENTLY`, which cannot
/// run inside a migration's transaction), and the migrations then find them. Before, they
/// failed on the existing index, and the replica would not start.
#[test]
fn indexes_built_beforehand_let_their_migrations_through() {
    let db = TestDb::new(Backend::Postgres);
    let (ok, stderr) = run_on(&db.url, &["migrate"]);
    assert!(ok, "{stderr}");
    let mut conn = PgConnection::establish(&db.url).unwrap();
    // As a database at the version before: the indexes and their records gone.
    conn.batch_execute(
        "DROP INDEX audit_events_user; DROP INDEX refresh_tokens_nonce_held; \
         DELETE FROM __diesel_schema_migrations \
         WHERE version IN ('20261207000001', '20261207000002')",
    )
    .unwrap();
    // deploy.md's statements, one at a time (each is its own transaction).
    conn.batch_execute(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_events_user ON audit_events (user_id, id)",
    )
    .unwrap();
    conn.batch_execute(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS refresh_tokens_nonce_held \
         ON refresh_tokens (rotated_at) WHERE rotation_nonce IS NOT NULL",
    )
    .unwrap();
    let (ok, stderr) = run_on(&db.url, &["migrate"]);
    assert!(ok, "{stderr}");
    let (ok, stderr) = run_on(&db.url, &["keys", "list"]);
    assert!(ok, "every migration is recorded: {stderr}");
}
