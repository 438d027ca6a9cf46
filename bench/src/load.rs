//! The load generators: kxdpgun (AF_XDP, for the throughput ceiling) and
//! dnsperf (through the kernel stack, at a fixed rate, for latency). Both
//! run in the client namespace and stop by themselves.

use std::{
    process::{Command, Output},
    time::Duration,
};

use anyhow::{Context, bail};
use dnslb_tests::netns::{Rig, SERVER_ADDR, SERVER_ADDR6, checked};

use crate::workload::Mix;

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

/// Runs of kxdpgun tried while the veth queue is still busy.
const KXDPGUN_ATTEMPTS: u32 = 4;

/// Queries offered per second by kxdpgun: beyond the rig's capacity.
const KXDPGUN_QPS: &str = "3000000";

/// The mix's throughput ceiling: kxdpgun where it can send the mix, dnsperf
/// flat out for options it cannot (the client's stack is then the limit,
/// for every responder alike). The caller clears what kxdpgun leaves on
/// the client veth.
pub fn throughput(rig: &Rig, mix: &Mix, seconds: u32) -> anyhow::Result<Throughput> {
    match &mix.dnsperf_options {
        Some(options) => dnsperf_throughput(rig, mix, seconds, options),
        None => kxdpgun(rig, mix, seconds),
    }
}

/// The server's address for `mix`.
pub fn server_addr(ipv6: bool) -> &'static str {
    if ipv6 { SERVER_ADDR6 } else { SERVER_ADDR }
}

/// Runs kxdpgun for `seconds` against the server. kxdpgun attaches its own
/// XDP program to the client veth, so nothing else may be attached there.
pub fn kxdpgun(rig: &Rig, mix: &Mix, seconds: u32) -> anyhow::Result<Throughput> {
    let queries = kxdpgun_queries(mix)?;
    let mut attempts = 0;
    let text = loop {
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
            .arg(&queries)
            .arg(server_addr(mix.ipv6))
            .output()
            .context("running kxdpgun (install knot-dnsutils)")?;
        let busy = String::from_utf8_lossy(&output.stdout).contains("resource is busy")
            || String::from_utf8_lossy(&output.stderr).contains("resource is busy");
        // The kernel releases the previous run's AF_XDP socket on the veth
        // queue a moment after that kxdpgun exits; until then the queue is
        // busy. A few short waits cover it.
        attempts += 1;
        if !busy || attempts == KXDPGUN_ATTEMPTS {
            break output_text("kxdpgun", output)?;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    Throughput::from_counts(
        &text,
        "kxdpgun",
        ("total queries:", "total replies:"),
        seconds,
    )
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

/// The mix's query file for kxdpgun, which takes DO as a flag on each line.
fn kxdpgun_queries(mix: &Mix) -> anyhow::Result<std::path::PathBuf> {
    if !mix.dnssec_ok {
        return Ok(mix.queries.clone());
    }
    let text = std::fs::read_to_string(&mix.queries)?;
    let flagged: String = text.lines().map(|line| format!("{line} D\n")).collect();
    let path = mix.queries.with_extension("kxdpgun");
    std::fs::write(&path, flagged)?;
    Ok(path)
}

/// Latency percentiles at a fixed offered load.
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub answered: usize,
    pub sent: usize,
}

/// dnsperf offering as much as it can for `seconds`, with `options`.
fn dnsperf_throughput(
    rig: &Rig,
    mix: &Mix,
    seconds: u32,
    options: &[String],
) -> anyhow::Result<Throughput> {
    let _pass = rig.attach_client_pass_through()?;
    let text = run_dnsperf(rig, mix, seconds, 1_000_000, options, false)?;
    Throughput::from_counts(
        &text,
        "dnsperf",
        ("Queries sent:", "Queries completed:"),
        seconds,
    )
}

fn run_dnsperf(
    rig: &Rig,
    mix: &Mix,
    seconds: u32,
    qps: u32,
    options: &[String],
    verbose: bool,
) -> anyhow::Result<String> {
    let mut command = bounded(rig, seconds, "dnsperf");
    command
        .args([
            "-s",
            server_addr(mix.ipv6),
            "-l",
            &seconds.to_string(),
            "-Q",
            &qps.to_string(),
        ])
        .args(["-c", "4", "-t", "2"])
        .args(options);
    if mix.dnssec_ok {
        command.arg("-D");
    }
    if verbose {
        command.arg("-v");
    }
    let output = command
        .arg("-d")
        .arg(&mix.queries)
        .output()
        .context("running dnsperf (install dnsperf)")?;
    output_text("dnsperf", output)
}

/// Runs dnsperf at `qps` for `seconds`. Answers sent with `XDP_TX` reach
/// the client's stack only through the rig's pass-through program, so the
/// caller attaches it first.
pub fn dnsperf(rig: &Rig, mix: &Mix, seconds: u32, qps: u32) -> anyhow::Result<Latency> {
    let options = mix.dnsperf_options.clone().unwrap_or_default();
    let text = run_dnsperf(rig, mix, seconds, qps, &options, true)?;
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
