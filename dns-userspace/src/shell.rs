//! The operator's shell commands (`command` checks, hooks, function
//! instances), run one way: `sh -c` with a clean environment (`PATH` and
//! the variables dnslb gives), as the daemon's user (`--user`), in a
//! process group of their own that is killed whole when it is no longer
//! wanted, so that nothing a command started (a pipeline, a background
//! job) outlives it.

use std::process::Stdio;

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::process::{Child, Command};

/// The search path commands get: the daemon's own may be anything.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `sh -c command` with only `PATH` and `vars` in its environment, no
/// input, in a new process group.
pub fn command<'a>(command: &str, vars: impl IntoIterator<Item = (&'a str, String)>) -> Command {
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(command)
        .env_clear()
        .env("PATH", PATH)
        .envs(vars)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    shell
}

/// A running command's process group: SIGKILLed whole when dropped (the
/// command finished, timed out, or is no longer wanted).
#[derive(Debug)]
pub struct Group(Pid);

impl Group {
    /// The group `child` leads (spawned by [`command`]); `None` if it has
    /// already been reaped.
    pub fn of(child: &Child) -> Option<Group> {
        let pid = i32::try_from(child.id()?).ok()?;
        Some(Group(Pid::from_raw(pid)))
    }

    /// Sends SIGTERM to the whole group.
    pub fn terminate(&self) {
        let _ = killpg(self.0, Signal::SIGTERM);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // ESRCH (the group is gone) is the usual outcome and fine.
        let _ = killpg(self.0, Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Whether a process runs whose command line holds `marker`.
    fn running(marker: &str) -> bool {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                std::fs::read(entry.path().join("cmdline"))
                    .is_ok_and(|line| String::from_utf8_lossy(&line).contains(marker))
            })
    }

    #[tokio::test]
    async fn the_environment_is_clean_and_the_group_dies_whole() {
        let output = command(
            "echo \"$PATH|$HOME|$DNSLB_PORT\"",
            [("DNSLB_PORT", "53".into())],
        )
        .stdout(Stdio::piped())
        .output()
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("{PATH}||53")
        );

        let marker = format!("sleep 3{}", std::process::id() % 1000);
        let mut child = command(&format!("{marker} | cat"), []).spawn().unwrap();
        let group = Group::of(&child).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(running(&marker), "the pipeline runs");
        drop(group);
        let _ = child.wait().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!running(&marker), "nothing of the pipeline is left");
    }
}
