//! The command line, as an operator runs it: the real binary's commands on SQLite, their
//! output, exit statuses and prompts.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::binary::{BIN, command, run};
use crate::common::PASSWORD;

#[test]
fn cli_commands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    for args in [
        &["--help"][..],
        &["keys", "--help"],
        &["users", "create", "--help"],
        &["revocations", "push", "--help"],
    ] {
        let out = run(path, args, "");
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
    // A shell without the replicas' environment: no command makes a database of its own to act
    // on (a `keys rotate` after a leak reported success there, the leaked key still signing),
    // and nothing is left behind.
    for args in [&["keys", "rotate"][..], &["users", "list"], &["cleanup"]] {
        let out = run(path, args, "");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("no database at gatehouse.db"),
            "{args:?}: {stderr}"
        );
    }
    assert!(!path.join("gatehouse.db").exists());
    let out = run(path, &["migrate"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SQLite at gatehouse.db"));

    let out = run(
        path,
        &["users", "create", "--admin", "Root"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("root\tadmin"));
    let listing = String::from_utf8_lossy(&run(path, &["users", "list"], "").stdout).to_string();
    assert!(listing.contains("\troot\tadmin\tenabled\t"), "{listing}");
    let out = run(path, &["users", "show", "ROOT"], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\troot\tadmin"));
    let out = run(path, &["users", "show", "nobody"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named nobody"));
    let out = run(path, &["users", "create", "weak"], "password\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("too common"));

    let out = run(path, &["keys", "rotate"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(path, &["keys", "rotate"], "");
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&run(path, &["keys", "list"], "").stdout).to_string();
    assert_eq!(listing.lines().count(), 2, "{listing}");
    assert_eq!(listing.matches("\tactive\t").count(), 1, "{listing}");

    // Rotating the key-encryption key: the development secret becomes the fallback.
    let dev_secret = std::fs::read_to_string(path.join(".gatehouse/key-encryption-key")).unwrap();
    let new_secret = gatehouse_issuer::keys::Sealer::generate_secret().unwrap();
    let reseal = |env: &[(&str, &str)]| {
        let mut cmd = command(path);
        cmd.args(["keys", "reseal"]).envs(env.iter().copied());
        let out = cmd.output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let (ok, stdout, stderr) = reseal(&[
        ("GATEHOUSE_KEY_ENCRYPTION_KEY", &new_secret),
        ("GATEHOUSE_KEY_ENCRYPTION_KEY_FALLBACKS", dev_secret.trim()),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 key(s) resealed, 0 already"), "{stdout}");
    let (ok, stdout, stderr) = reseal(&[("GATEHOUSE_KEY_ENCRYPTION_KEY", &new_secret)]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("0 key(s) resealed, 2 already"), "{stdout}");
    let (ok, stdout, stderr) = reseal(&[("GATEHOUSE_KEY_ENCRYPTION_KEY", dev_secret.trim())]);
    assert!(!ok, "the development secret no longer opens the ring");
    // The active key fails the command; the retired one never signs again, and is set aside.
    assert!(
        stderr.contains("1 key(s) open with no configured secret"),
        "{stderr}"
    );
    assert!(stdout.contains("retired or revoked"), "{stdout}");
    // Without the current secret, reseal refuses rather than generate one.
    let (ok, _, stderr) = reseal(&[("GATEHOUSE_KEY_ENCRYPTION_KEY_FALLBACKS", &new_secret)]);
    assert!(!ok);
    assert!(
        stderr.contains("needs GATEHOUSE_KEY_ENCRYPTION_KEY"),
        "{stderr}"
    );

    let out = run(path, &["cleanup"], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted 0 sessions"));
    let out = run(path, &["revocations", "push"], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("no GATEHOUSE_EDGE_SYNC_URLS configured"),
        "no sync URLs is an error, not a silent success: {stderr}"
    );

    let out = command(path)
        .arg("migrate")
        .env("GATEHOUSE_DATABASE_URL", "mysql://x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("GATEHOUSE_DATABASE_URL: unsupported scheme")
    );
}

/// A command whose output nobody reads (a closed pipe, as after `| head -0`) still does all its
/// work: before, its first line panicked on the broken pipe once the revocation had committed,
/// so the push that follows it never ran, and the exit code said the command failed.
#[test]
fn a_closed_output_pipe_does_not_stop_a_command_midway() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    assert!(run(path, &["migrate"], "").status.success());
    assert!(run(path, &["keys", "rotate"], "").status.success());
    let made = run(path, &["users", "create", "bob"], &format!("{PASSWORD}\n"));
    assert!(made.status.success(), "{made:?}");
    // `users disable bob` with nobody reading its output, nor its standard error if asked.
    let disable_unread = |stderr_too: bool| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = command(path);
        cmd.args(["users", "disable", "bob"]).env(
            "GATEHOUSE_EDGE_SYNC_URLS",
            "http://127.0.0.1:9/_gatehouse/sync",
        );
        if stderr_too {
            cmd.stderr(writer.try_clone().unwrap());
        }
        cmd.stdout(writer).output().unwrap()
    };
    let out = disable_unread(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "recorded, not pushed: {stderr}");
    assert!(
        stderr.contains("push to http://127.0.0.1:9/_gatehouse/sync failed"),
        "the push ran after the line nobody read: {stderr}"
    );
    // Standard error closed too (`2>&1 | head -0`): its warnings panic no more than the output
    // did (exit status 101), and the push still runs: 3 is said only after it failed.
    assert!(run(path, &["users", "enable", "bob"], "").status.success());
    assert_eq!(disable_unread(true).status.code(), Some(3));
}

/// What an operator without a terminal, or re-running a command, is told. From standard input
/// the password is its first line: an empty input, or a first line no password could be (a
/// file given by mistake), changes nothing and says why; a name already taken is said before
/// the password is read. A deletion names the id its audit rows stay under. Importing a key
/// file again says whether that key signs: a retired one does not. Before, an empty input read
/// as a short password, a taken name was found after the password and its hash, a deletion
/// printed only the name, and a retired key's import said only "nothing changed".
#[test]
fn the_cli_says_what_an_operator_needs_to_know() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    assert!(run(path, &["migrate"], "").status.success());
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).to_string();
    let stdout = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).to_string();

    let out = run(path, &["users", "create", "carol"], "");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("standard input was empty"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("not a terminal"), "{}", stderr(&out));
    let long = format!("{}\n", "x".repeat(5000));
    let out = run(path, &["users", "create", "carol"], &long);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("over 4098 bytes"), "{}", stderr(&out));
    assert!(!stdout(&run(path, &["users", "list"], "")).contains("carol"));

    let out = run(
        path,
        &["users", "create", "carol"],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).split('\t').next().unwrap().to_owned();
    // Asked again with nothing on standard input: the name is what it hears about.
    let out = run(path, &["users", "create", "Carol"], "");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("a user named carol exists"),
        "{}",
        stderr(&out)
    );
    let out = run(path, &["users", "delete", "carol"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("carol\t{id}\tuser\tdeleted")),
        "{}",
        stdout(&out)
    );

    let key = gatehouse_shared::SigningKey::generate(gatehouse_shared::Algorithm::EdDsa).unwrap();
    let file = path.join("imported.jwk");
    std::fs::write(&file, key.to_private_jwk_json().unwrap()).unwrap();
    let import = || run(path, &["keys", "import", file.to_str().unwrap()], "");
    assert!(import().status.success());
    let out = import();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("was imported before and is active; nothing changed"));
    assert!(run(path, &["keys", "rotate"], "").status.success());
    // Said, not failed: a deploy may import its file at every run.
    let out = import();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "{} was imported before and is retired: it does not sign",
            key.kid()
        )),
        "{}",
        stderr(&out)
    );
}

/// `revocations push` only signs with the active key: a shell's other key file (or rotation
/// settings) changes nothing. Before, it loaded the ring as a replica does, and made that file's
/// key the signing key.
#[test]
fn revocations_push_changes_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    assert!(run(path, &["migrate"], "").status.success());
    assert!(run(path, &["keys", "rotate"], "").status.success());
    let keys = || String::from_utf8(run(path, &["keys", "list"], "").stdout).unwrap();
    let before = keys();
    let other = gatehouse_shared::SigningKey::generate(gatehouse_shared::Algorithm::EdDsa).unwrap();
    let file = path.join("other.jwk");
    std::fs::write(&file, other.to_private_jwk_json().unwrap()).unwrap();
    let out = command(path)
        .args(["revocations", "push"])
        .env(
            "GATEHOUSE_EDGE_SYNC_URLS",
            "http://127.0.0.1:9/_gatehouse/sync",
        )
        .env("GATEHOUSE_SIGNING_KEY_FILE", &file)
        .output()
        .unwrap();
    // It got as far as pushing, where the key it signed with was chosen.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("push to http://127.0.0.1:9/_gatehouse/sync failed"),
        "nothing listens on port 9: {stderr}"
    );
    let after = keys();
    assert!(!after.contains(other.kid()), "{after}");
    assert_eq!(before, after);
}

/// Reads a child's output on a thread, so a test can wait for a prompt.
fn collect(
    mut from: impl std::io::Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    seen
}

fn wait_for(seen: &std::sync::Mutex<Vec<u8>>, text: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let so_far = String::from_utf8_lossy(&seen.lock().unwrap()).to_string();
        if so_far.contains(text) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {text:?} in {so_far:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the terminal of the process in `dir` whose command line ends with `args`
/// (NUL-separated, as `/proc/<pid>/cmdline` holds them) has echo off, as `stty` reads it. The
/// directory tells this run's process from another run's.
fn wait_for_echo_off(dir: &Path, args: &str) {
    let dir = dir.canonicalize().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let terminals = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|p| {
                std::fs::read(p.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).ends_with(args))
                    && std::fs::read_link(p.path().join("cwd")).is_ok_and(|cwd| cwd == dir)
            })
            .map(|p| p.path().join("fd/0"));
        for terminal in terminals {
            let settings = Command::new("stty")
                .arg("-a")
                .arg("-F")
                .arg(&terminal)
                .output();
            if settings.is_ok_and(|s| String::from_utf8_lossy(&s.stdout).contains(" -echo ")) {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the terminal of {args:?} never turned echo off"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// On a terminal, `users create` asks for the password twice and never echoes it. The terminal
/// is a real pseudo-terminal (util-linux `script`): with echo on, the line discipline would copy
/// what we type into the output we read.
#[test]
fn users_create_prompts_without_echo_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(dir.path(), &["migrate"], "").status.success());
    let typed = "quiet-heron-41-lantern";
    let mut child = Command::new("script")
        .args(["-qec", &format!("'{BIN}' users create carol"), "/dev/null"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut keyboard = child.stdin.take().unwrap();
    let screen = collect(child.stdout.take().unwrap());
    for prompt in ["Password: ", "Password (again): "] {
        wait_for(&screen, prompt);
        // rpassword prints the prompt, then turns echo off: typing before that would be echoed.
        wait_for_echo_off(dir.path(), "users\0create\0carol\0");
        keyboard.write_all(format!("{typed}\n").as_bytes()).unwrap();
        keyboard.flush().unwrap();
    }
    let status = child.wait().unwrap();
    drop(keyboard);
    let shown = String::from_utf8_lossy(&screen.lock().unwrap()).to_string();
    assert!(status.success(), "{shown}");
    assert!(shown.contains("\tcarol"), "{shown}");
    assert!(!shown.contains(typed), "the password was echoed: {shown}");
    let out = run(dir.path(), &["users", "show", "carol"], "");
    assert!(out.status.success());
}
