//! A real etcd cluster for the fleet tests: Debian's `etcd-server`, its
//! members on ports of one address in a test's namespace, with short
//! heartbeats so that a new leader is elected within a second.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};

use crate::{netns::Netns, process::Process};

/// TLS on etcd's client port: its certificate and key, and the CA that
/// client certificates must come from (`--client-cert-auth`).
#[derive(Clone, Debug)]
pub struct EtcdTls {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// A client certificate and key for etcdctl.
    pub client: (PathBuf, PathBuf),
}

pub struct EtcdCluster {
    host: String,
    tls: Option<EtcdTls>,
    /// Each member and its client port; `None` once stopped.
    members: Vec<(Option<Process>, u16)>,
    dir: PathBuf,
    netns_name: String,
}

fn client_port(first: u16, member: usize) -> u16 {
    first + 10 * member as u16
}

impl EtcdCluster {
    /// `size` members on `host` in `netns`, client ports from `first_port`
    /// (by tens; each member's peer port is the next one).
    pub fn start(netns: &Netns, host: &str, size: usize, first_port: u16) -> anyhow::Result<Self> {
        Self::start_with(netns, host, size, first_port, None)
    }

    /// As [`EtcdCluster::start`], with TLS on the client ports.
    pub fn start_with(
        netns: &Netns,
        host: &str,
        size: usize,
        first_port: u16,
        tls: Option<EtcdTls>,
    ) -> anyhow::Result<Self> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        // One directory per namespace: tests running side by side each
        // have a cluster of their own.
        let dir = std::env::temp_dir().join(format!("dnslb-etcd-{}-{first_port}", netns.name()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let peer = |m: usize| format!("http://{host}:{}", client_port(first_port, m) + 1);
        let initial: Vec<String> = (0..size).map(|m| format!("m{m}={}", peer(m))).collect();
        let mut members = Vec::new();
        for m in 0..size {
            let client = format!("{scheme}://{host}:{}", client_port(first_port, m));
            let mut etcd = netns.command("etcd");
            etcd.args(["--name", &format!("m{m}")])
                .arg("--data-dir")
                .arg(dir.join(format!("m{m}")))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer(m)])
                .args(["--initial-advertise-peer-urls", &peer(m)])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "dnslb-test"])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"]);
            if let Some(tls) = &tls {
                etcd.arg("--cert-file")
                    .arg(&tls.certificate)
                    .arg("--key-file")
                    .arg(&tls.key)
                    .arg("--trusted-ca-file")
                    .arg(&tls.ca)
                    .arg("--client-cert-auth");
            }
            let process = Process::spawn(etcd, dir.join(format!("m{m}.log")))
                .context("starting etcd (install etcd-server)")?;
            members.push((Some(process), client_port(first_port, m)));
        }
        let cluster = EtcdCluster {
            host: host.to_owned(),
            tls,
            members,
            dir,
            netns_name: netns.name().to_owned(),
        };
        let started = std::time::Instant::now();
        while cluster.leader().is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("etcd elected no leader in 20 s:\n{}", cluster.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(cluster)
    }

    /// `etcd://HOST:PORT,...` as `dnslb run --cluster` takes it.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|(_, port)| format!("{}:{port}", self.host))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    fn endpoints(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.members
            .iter()
            .filter(|(process, _)| process.is_some())
            .map(|(_, port)| format!("{scheme}://{}:{port}", self.host))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `etcdctl ARGS` against the live members, with the client
    /// certificate when etcd wants one.
    pub fn etcdctl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", &self.netns_name, "etcdctl"])
            .args(["--endpoints", &self.endpoints(), "--command-timeout", "1s"])
            .env("ETCDCTL_API", "3");
        if let Some(tls) = &self.tls {
            command
                .arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.client.0)
                .arg("--key")
                .arg(&tls.client.1);
        }
        command
            .args(args)
            .output()
            .context("running etcdctl (install etcd-client)")
    }

    /// The member that leads now.
    pub fn leader(&self) -> anyhow::Result<usize> {
        let output = self.etcdctl(&["endpoint", "status", "-w", "json"])?;
        let statuses: serde_json::Value = serde_json::from_slice(&output.stdout)
            .with_context(|| String::from_utf8_lossy(&output.stderr).into_owned())?;
        for status in statuses.as_array().into_iter().flatten() {
            let member = &status["Status"]["header"]["member_id"];
            if !member.is_null() && *member == status["Status"]["leader"] {
                let endpoint = status["Endpoint"].as_str().unwrap_or_default();
                if let Some(m) = self
                    .members
                    .iter()
                    .position(|(_, port)| endpoint.ends_with(&format!(":{port}")))
                {
                    return Ok(m);
                }
            }
        }
        bail!("no leader among {statuses}")
    }

    /// Stops member `m` at once, as a crash would (SIGKILL: no handing
    /// over of leadership).
    pub fn kill(&mut self, m: usize) -> anyhow::Result<()> {
        if let Some(mut process) = self.members[m].0.take() {
            process.stop(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5))?;
        }
        Ok(())
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .filter_map(|(process, _)| process.as_ref().map(Process::log_text))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.members.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
