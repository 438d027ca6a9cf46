//! A Docker Engine of the test's own: `dockerd` started inside a rig
//! namespace (only its network namespace is entered, so cgroups and the
//! filesystem stay the host's), with its own socket, data and state under a
//! temporary directory, `--live-restore` so that containers outlive an
//! engine restart, and no bridge or iptables. Host-network containers then
//! live in that namespace, on its loopback addresses. Dropping it removes
//! every container it ran and stops it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;

use crate::{
    netns::{Netns, checked},
    process::Process,
};

/// The image the tests run: Debian's static busybox, its httpd serving
/// `/www` (with `/www/health`), and `/bin/sh` for HEALTHCHECK commands.
pub const TEST_IMAGE: &str = "dnslb-test:busybox";

pub struct Dockerd {
    netns: String,
    dir: PathBuf,
    process: Option<Process>,
}

impl Dockerd {
    /// Starts an engine in `netns`, its files under `dir`, and waits (up
    /// to 60 s) until it answers.
    pub fn start(netns: &Netns, dir: &Path) -> anyhow::Result<Dockerd> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let mut dockerd = Dockerd {
            netns: netns.name().to_owned(),
            dir: dir.to_owned(),
            process: None,
        };
        dockerd.run()?;
        Ok(dockerd)
    }

    /// `unix:///…/docker.sock`, for `docker_host` and `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("dockerd")
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args(["--live-restore", "--host", &self.host()])
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"));
        let log = self.dir.join("dockerd.log");
        let mut process =
            Process::spawn(command, log).context("starting dockerd (install docker.io)")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.docker(&["version"]).is_err() {
            if let Some(status) = process.exited()? {
                bail!("dockerd exited with {status}:\n{}", process.log_text());
            }
            if Instant::now() > deadline {
                bail!(
                    "dockerd did not answer within 60 s:\n{}",
                    process.log_text()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
        self.process = Some(process);
        Ok(())
    }

    /// Stops the engine; with `--live-restore` its containers go on.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.stop(Signal::SIGTERM, Duration::from_secs(30))?;
        }
        Ok(())
    }

    /// Starts the engine again after [`Dockerd::stop`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.run()
    }

    /// Runs `docker ARGS` against this engine and returns what it printed.
    pub fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("docker")
            .arg("--host")
            .arg(self.host())
            .args(args)
            .output()
            .context("running docker (install docker.io)")?;
        checked(&format!("docker {}", args.join(" ")), output)
    }

    /// Builds [`TEST_IMAGE`] by `docker import` of a folder (nothing is
    /// pulled: the machine may have no registry).
    pub fn import_test_image(&self) -> anyhow::Result<()> {
        let root = self.dir.join("image");
        for dir in ["bin", "www", "tmp"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .context("copying /bin/busybox (install busybox-static)")?;
        let sh = root.join("bin/sh");
        if !sh.exists() {
            std::os::unix::fs::symlink("busybox", sh)?;
        }
        std::fs::write(root.join("www/health"), "OK\n")?;
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["-cf", "-", "."])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let import = Command::new("docker")
            .arg("--host")
            .arg(self.host())
            .args(["import", "-", TEST_IMAGE])
            .stdin(tar.stdout.context("tar's output")?)
            .output()?;
        checked("docker import", import).map(drop)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.process.is_none() && self.restart().is_err() {
            return;
        }
        if let Ok(ids) = self.docker(&["ps", "-aq"]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = self.docker(&[&["rm", "-f"], ids.as_slice()].concat());
            }
        }
        let _ = self.stop();
        // With --live-restore the engine leaves its containerd running.
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(self.dir.join("exec"))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
