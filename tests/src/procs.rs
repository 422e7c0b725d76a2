//! Child processes in their own process group, killed with the whole group when dropped
//! (killing only `npx`/`wrangler` would leave workerd running), or by [`kill_all`] when a
//! signal ends the program before anything is dropped.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// The process groups of the children alive now.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status();
}

/// Kills every child's process group: for a signal handler, as a signal skips every `Drop`.
pub fn kill_all() {
    let live = std::mem::take(
        &mut *LIVE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for pid in live {
        kill_group(pid);
    }
}

pub struct Proc {
    child: tokio::process::Child,
    /// Kept apart from the child: tokio's `id()` is `None` once the child has been waited for.
    pid: Option<u32>,
}

impl Proc {
    pub fn spawn(mut cmd: tokio::process::Command, log: &Path) -> Self {
        stop_children_on_signal();
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let pid = child.id();
        if let Some(pid) = pid {
            LIVE.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(pid);
        }
        Self { child, pid }
    }
}

impl Proc {
    /// The process id, which is also the id of its process group.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Forgets the process group and kills it.
    fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            LIVE.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|&live| live != pid);
            kill_group(pid);
        }
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Kills the process group and waits for the process to be gone, so that a successor can
    /// take its port (a `kill` returns before the process has exited).
    pub async fn stop(mut self) {
        self.kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Ctrl-C or a CI timeout's TERM end the process without running any `Drop`, and the children
/// run in process groups of their own, which the terminal's signal does not reach: a thread
/// of its own kills them first, then exits as the signal would have. (Not HUP: handling it
/// would undo a `nohup make bench`.) Installed with the first child.
fn stop_children_on_signal() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::thread::spawn(|| {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            else {
                eprintln!("testkit: no signal handler; a signal would leave its servers running");
                return;
            };
            runtime.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    eprintln!(
                        "testkit: no signal handler; a signal would leave its servers running"
                    );
                    return;
                };
                let code = tokio::select! {
                    _ = int.recv() => 130,
                    _ = term.recv() => 143,
                };
                eprintln!("stopped by a signal; stopping the servers it started");
                kill_all();
                std::process::exit(code);
            });
        });
    });
}
