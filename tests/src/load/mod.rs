//! Load generators run in a client's namespace: dnslb's own flood
//! ([`flood`]: frames through a packet socket, replies counted by an XDP
//! sink; for floods and the throughput ceiling, on every kernel) and
//! dnsperf (through the kernel stack, at a fixed rate, for latency). Both
//! stop by themselves; a `timeout` kills a dnsperf that overruns by far.

pub mod flood;
mod link;
pub mod sink;

use std::{
    path::PathBuf,
    process::{Command, Output},
    time::Duration,
};

use anyhow::{Context, bail};

use crate::netns::{Netns, checked};

/// A query file (`name type` a line) named `name` in the temporary
/// directory, for this test process.
pub fn query_file(name: &str, lines: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("dnslb-queries-{}-{name}", std::process::id()));
    std::fs::write(&path, lines)?;
    Ok(path)
}

/// A host that sends load: its namespace, its interface, and the CPU its
/// tool keeps to (any, if `None`).
#[derive(Clone, Copy)]
pub struct Client<'a> {
    pub netns: &'a Netns,
    pub iface: &'a str,
    pub cpu: Option<usize>,
}

impl<'a> Client<'a> {
    pub fn new(netns: &'a Netns, iface: &'a str) -> Client<'a> {
        Client {
            netns,
            iface,
            cpu: None,
        }
    }

    /// Keeping to `cpu`.
    pub fn on_cpu(self, cpu: usize) -> Client<'a> {
        Client {
            cpu: Some(cpu),
            ..self
        }
    }

    /// `program` in the client's namespace (on its CPU), killed if it
    /// overruns `seconds` by far (it stops by itself; this is the
    /// backstop).
    fn bounded(&self, seconds: u32, program: &str) -> Command {
        let mut command = self.netns.command("timeout");
        command.arg((seconds + 20).to_string());
        if let Some(cpu) = self.cpu {
            command.args(["taskset", "-c", &cpu.to_string()]);
        }
        command.arg(program);
        command
    }
}

/// What a run of load got back.
#[derive(Clone, Copy, Debug, Default)]
pub struct Throughput {
    pub sent: u64,
    pub replies: u64,
    pub replies_per_second: f64,
}

impl Throughput {
    /// From a tool's report: the numbers after the `labels` (queries sent,
    /// replies) on the lines that start with them.
    fn from_counts(
        text: &str,
        tool: &str,
        labels: (&str, &str),
        seconds: u32,
    ) -> anyhow::Result<Throughput> {
        let number = |label: &str| -> anyhow::Result<u64> {
            text.lines()
                .find_map(|line| line.trim().strip_prefix(label))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .with_context(|| format!("no `{label}` in {tool}'s output:\n{text}"))
        };
        let replies = number(labels.1)?;
        Ok(Throughput {
            sent: number(labels.0)?,
            replies,
            replies_per_second: replies as f64 / f64::from(seconds),
        })
    }
}

/// A dnsperf run: queries from a file, at a fixed rate.
#[derive(Clone, Debug)]
pub struct Dnsperf {
    /// dnsperf's query file (`name type` a line).
    pub queries: PathBuf,
    pub server: String,
    pub seconds: u32,
    pub qps: u32,
    /// The OPT record each query carries, as the flood would send it.
    pub edns: flood::Edns,
    /// More arguments.
    pub options: Vec<String>,
}

/// Latency percentiles at a fixed offered load.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub answered: usize,
    pub sent: usize,
}

impl Dnsperf {
    fn run(&self, client: Client<'_>, verbose: bool) -> anyhow::Result<String> {
        let mut command = client.bounded(self.seconds, "dnsperf");
        command
            .args([
                "-s",
                &self.server,
                "-l",
                &self.seconds.to_string(),
                "-Q",
                &self.qps.to_string(),
            ])
            .args(["-c", "4", "-t", "2"])
            .args(self.edns.dnsperf_args())
            .args(&self.options);
        if verbose {
            command.arg("-v");
        }
        let output = command
            .arg("-d")
            .arg(&self.queries)
            .output()
            .context("running dnsperf (install dnsperf)")?;
        output_text("dnsperf", output)
    }

    /// Queries sent and answers received, as dnsperf counts them.
    pub fn throughput(&self, client: Client<'_>) -> anyhow::Result<Throughput> {
        let text = self.run(client, false)?;
        Throughput::from_counts(
            &text,
            "dnsperf",
            ("Queries sent:", "Queries completed:"),
            self.seconds,
        )
    }

    /// The latency of every answer, and how many were answered.
    pub fn latency(&self, client: Client<'_>) -> anyhow::Result<Latency> {
        let text = self.run(client, true)?;
        // Verbose mode prints one line per answer: "> RCODE name type seconds".
        let mut latencies: Vec<f64> = text
            .lines()
            .filter(|line| line.starts_with("> "))
            .filter_map(|line| line.split_whitespace().last()?.parse().ok())
            .collect();
        if latencies.is_empty() {
            bail!("dnsperf got no answers:\n{text}");
        }
        latencies.sort_by(f64::total_cmp);
        let sent = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("Queries sent:"))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(latencies.len());
        let at = |quantile: f64| {
            let index = ((latencies.len() as f64 * quantile) as usize).min(latencies.len() - 1);
            Duration::from_secs_f64(latencies[index])
        };
        Ok(Latency {
            p50: at(0.50),
            p99: at(0.99),
            answered: latencies.len(),
            sent,
        })
    }
}

fn output_text(what: &str, output: Output) -> anyhow::Result<String> {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = checked(what, output).with_context(|| format!("{what} failed"))?;
    Ok(stdout + &stderr)
}
