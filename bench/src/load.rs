//! The load generators: kxdpgun (AF_XDP, for the throughput ceiling) and
//! dnsperf (through the kernel stack, at a fixed rate, for latency). Both
//! run in the client namespace and stop by themselves.

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use anyhow::{Context, bail};
use dnslb_tests::netns::{Rig, SERVER_ADDR, checked};

/// `program` in the client namespace, killed if it overruns `seconds` by
/// far (both tools stop by themselves; this is the backstop).
fn bounded(rig: &Rig, seconds: u32, program: &str) -> Command {
    let mut command = rig.client.command("timeout");
    command.arg((seconds + 20).to_string()).arg(program);
    command
}

/// Replies per second under an offered load above what any responder
/// here sustains.
pub struct Throughput {
    pub sent: u64,
    pub replies: u64,
    pub replies_per_second: f64,
}

/// Queries offered per second by kxdpgun: beyond the rig's capacity.
const KXDPGUN_QPS: &str = "3000000";

/// Runs kxdpgun for `seconds` against the server. kxdpgun attaches its own
/// XDP program to the client veth, so nothing else may be attached there.
pub fn kxdpgun(rig: &Rig, queries: &Path, seconds: u32) -> anyhow::Result<Throughput> {
    let output = bounded(rig, seconds, "kxdpgun")
        .args([
            "-t",
            &seconds.to_string(),
            "-Q",
            KXDPGUN_QPS,
            "-I",
            &rig.client_if,
            "-i",
        ])
        .arg(queries)
        .arg(SERVER_ADDR)
        .output()
        .context("running kxdpgun (install knot-dnsutils)")?;
    let text = output_text("kxdpgun", output)?;
    let field = |label: &str| -> anyhow::Result<u64> {
        let line = text
            .lines()
            .find(|line| line.starts_with(label))
            .with_context(|| format!("no `{label}` in kxdpgun's output:\n{text}"))?;
        Ok(line[label.len()..]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .parse()?)
    };
    let sent = field("total queries:")?;
    let replies = field("total replies:")?;
    Ok(Throughput {
        sent,
        replies,
        replies_per_second: replies as f64 / f64::from(seconds),
    })
}

/// Latency percentiles at a fixed offered load.
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub answered: usize,
    pub sent: usize,
}

/// Runs dnsperf at `qps` for `seconds`. Answers sent with `XDP_TX` reach
/// the client's stack only through the rig's pass-through program, so the
/// caller attaches it first.
pub fn dnsperf(rig: &Rig, queries: &Path, seconds: u32, qps: u32) -> anyhow::Result<Latency> {
    let output = bounded(rig, seconds, "dnsperf")
        .args([
            "-s",
            SERVER_ADDR,
            "-l",
            &seconds.to_string(),
            "-Q",
            &qps.to_string(),
        ])
        .args(["-c", "4", "-t", "2", "-v", "-d"])
        .arg(queries)
        .output()
        .context("running dnsperf (install dnsperf)")?;
    let text = output_text("dnsperf", output)?;
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

fn output_text(what: &str, output: Output) -> anyhow::Result<String> {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = checked(what, output).with_context(|| format!("{what} failed"))?;
    Ok(stdout + &stderr)
}
