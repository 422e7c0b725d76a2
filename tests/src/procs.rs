//! Child processes in their own process group, killed with the whole group when dropped
//! (killing only `npx`/`wrangler` would leave workerd running).

use std::path::Path;

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
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}
