use super::*;

/// A database that cannot be opened is a 503 once the deadline has passed, counted as
/// `no_connection`.
#[test]
fn no_connection_within_the_deadline_is_unavailable_and_counted() {
    let url = DbUrl::Sqlite("/nonexistent-gatehouse-dir/issuer.db".into());
    let db = Db::connect(&url, 1, 0, Duration::from_millis(50)).unwrap();
    let refused = db.run_sync(|_| Ok(())).unwrap_err();
    assert_eq!(refused.code(), "temporarily_unavailable");
    let labels = Unavailable::NoConnection.labels();
    assert_eq!(db.unavailable.get_or_create(&labels).get(), 1);
}

/// Only the database's own failures are judged by the deadline: a slow call's other bug
/// stays a 500, so a 503 never hides it.
#[test]
fn only_database_failures_past_the_deadline_are_unavailable() {
    let mut conn = DbConn::Sqlite(SqliteConnection::establish(":memory:").unwrap());
    let counts = DbUnavailable::default();
    let deadline = Duration::from_millis(5);
    let slowly = |error: fn() -> ApiError| {
        move |_: &mut DbConn| -> Result<(), ApiError> {
            std::thread::sleep(Duration::from_millis(10));
            Err(error())
        }
    };
    let mut code = |timeout, f: &dyn Fn(&mut DbConn) -> Result<(), ApiError>| {
        run_classified(&mut conn, timeout, &counts, f)
            .unwrap_err()
            .code()
    };
    let database = || ApiError::Database("locked".into());
    let bug = || ApiError::Internal("bug".into());
    assert_eq!(code(deadline, &slowly(database)), "temporarily_unavailable");
    assert_eq!(code(deadline, &slowly(bug)), "server_error");
    assert_eq!(
        code(Duration::from_secs(5), &|_| Err(database())),
        "server_error"
    );
    let timed_out = counts.get_or_create(&Unavailable::TimedOut.labels()).get();
    assert_eq!(timed_out, 1, "the 503 is counted, the 500s are not");
}

/// Time queued for a blocking thread counts against the deadline: a call that gets one
/// only after its deadline is answered 503 without running.
#[test]
fn waiting_for_a_blocking_thread_counts_against_the_deadline() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let url = DbUrl::parse("sqlite://:memory:").unwrap();
    let db = Db::connect(&url, 2, 0, Duration::from_millis(100)).unwrap();
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    runtime.block_on(async {
        let holder = db.clone();
        let held = tokio::spawn(async move {
            holder
                .run(|_| {
                    std::thread::sleep(Duration::from_millis(400));
                    Ok(())
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let flag = Arc::clone(&ran);
        let queued = db
            .run(move |_| {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert_eq!(queued.unwrap_err().code(), "temporarily_unavailable");
        assert!(held.await.unwrap().is_ok());
    });
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    let busy = db.unavailable.get_or_create(&Unavailable::Busy.labels());
    assert_eq!(busy.get(), 1);
}

#[test]
fn text_that_is_no_url_shows_no_password() {
    for text in [
        "host=db user=gh password=hunter2",
        "postgres:gh:hunter2@db/gh",
        "PGPASSWORD=hunter2 postgres://gh@db/gh",
        "hunter2",
    ] {
        let error = DbUrl::parse(text).unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("is not a URL"), "{error}");
    }
    let error = DbUrl::parse("mysql://gh:hunter2@db/gh").unwrap_err();
    assert!(error.contains(r#""mysql://***@db/gh""#), "{error}");
    // Where a URL is expected but its text is not one, as much as cannot be a password shows.
    assert_eq!(
        redact("PGPASSWORD=hunter2 postgres://gh@db/gh"),
        "PGPASSWORD…"
    );
    assert_eq!(redact("127.0.0.1:8787/_gatehouse/sync"), "127.0.0.1…");
}

#[test]
fn urls_dispatch_on_scheme_and_never_log_passwords() {
    assert_eq!(
        DbUrl::parse("sqlite://x.db"),
        Ok(DbUrl::Sqlite("x.db".into()))
    );
    let pg = DbUrl::parse("postgres://u:secret@h/db").unwrap();
    assert!(!pg.describe().contains("secret"));
    // libpq also takes a password in the query.
    let pg = DbUrl::parse("postgres://h:5432/db?sslmode=require&password=secret").unwrap();
    assert_eq!(pg.describe(), "PostgreSQL at postgres://h:5432/db");
    let pg = DbUrl::parse("postgres://app:secret@db:5432/gh?sslmode=require").unwrap();
    assert_eq!(pg.describe(), "PostgreSQL at postgres://***@db:5432/gh");
    // An `@` in the query (a user of the form `name@server`) cannot be told from one in a
    // password whose unescaped `?` ended the authority: neither shows more than the scheme.
    let pg = DbUrl::parse("postgres://h:5432/db?user=admin@srv&password=secret").unwrap();
    assert_eq!(pg.describe(), "PostgreSQL at postgres://***");
    // A password holding `?`, `/` or `@` unescaped (libpq reads some of these, fails on others,
    // and logs the URL): at most the scheme and the host show, never a part of the password.
    for url in [
        "postgres://app:Xy?9zQ@db:5432/gh?sslmode=require",
        "postgres://app:pa/ss@db/gh",
        "postgres://app:p@ss@db/gh",
        "postgres://app:p/a@s?s@db/gh?application_name=x@y",
        "postgres://h/db?password=p@ssw0rd",
    ] {
        let shown = DbUrl::parse(url).unwrap().describe();
        assert!(
            !["Xy", "9zQ", "pa", "ss", "s?s"]
                .iter()
                .any(|part| shown.contains(part)),
            "{shown}"
        );
    }
    // A password holding `/` or `?`, whose first part a parser takes for the port.
    for url in ["postgres://gh:5432/abc@db/gh", "postgres://gh:12?x@db/gh"] {
        let shown = DbUrl::parse(url).unwrap().describe();
        assert_eq!(shown, "PostgreSQL at postgres://***");
    }
    assert!(
        DbUrl::parse("mysql://x")
            .unwrap_err()
            .contains("unsupported")
    );
    assert!(DbUrl::parse("sqlite://").is_err());
}

/// Each pooled connection to `:memory:` is its own empty database: the server's requests
/// failed on the connections migrations never ran on, and its keys went with the first.
#[test]
fn the_server_refuses_an_in_memory_database() {
    for url in [
        "sqlite://:memory:",
        "sqlite://file::memory:?cache=shared",
        "sqlite://file:x?mode=memory",
    ] {
        let config = Config {
            database_url: url.into(),
            ..Config::default()
        };
        let refused = open(&config).err().unwrap_or_default();
        assert!(refused.contains("needs a file"), "{url}: {refused}");
    }
}

#[test]
fn an_empty_pool_is_refused_by_name() {
    let url = DbUrl::parse("sqlite://:memory:").unwrap();
    let refused = Db::connect(&url, 0, 0, Duration::from_secs(1))
        .err()
        .unwrap_or_default();
    assert!(refused.contains("GATEHOUSE_DB_POOL_SIZE"), "{refused}");
}
