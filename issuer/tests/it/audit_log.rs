//! The audit log lines of this test binary, captured: a subscriber for target `audit` only,
//! installed once for the whole binary (lines come from the database's blocking threads, so a
//! per-thread subscriber would miss them). Tests find their own by the ids they made.

use std::io::Write;
use std::sync::{Mutex, Once};

static LINES: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LINES.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts the capture (once); lines logged before the first call are not captured.
pub fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("audit=info"))
            .with_ansi(false)
            .with_writer(|| Capture)
            .finish();
        // Not `init()`: that also bridges the `log` crate, whose logger Rocket has set once a
        // server of this binary ignited. A subscriber already set fails the test that reads.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// The captured lines that mention `needle`.
pub fn lines_with(needle: &str) -> Vec<String> {
    String::from_utf8_lossy(&LINES.lock().unwrap())
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}
