//! Child processes in their own process group, killed with the whole group when dropped
//! (killing only `npx`/`wrangler` would leave workerd running), or by [`kill_all`] when a
//! signal ends the program before anything is dropped.

use std::path::Path;
use std::sync::Mutex;

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
}

impl Proc {
    pub fn spawn(mut cmd: tokio::process::Command, log: &Path) -> Self {
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
        if let Some(pid) = child.id() {
            LIVE.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(pid);
        }
        Self { child }
    }
}

impl Proc {
    /// The process id, which is also the id of its process group.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            LIVE.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|&live| live != pid);
            kill_group(pid);
        }
    }
}
