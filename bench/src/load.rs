//! The load generators on the benchmark rig, for a query mix: kxdpgun
//! (AF_XDP, for the throughput ceiling) and dnsperf (through the kernel
//! stack, at a fixed rate, for latency); `dnslb_tests::load` runs them.

use dnslb_tests::{
    load::{self, Client, Dnsperf, Latency, Throughput},
    netns::{Rig, SERVER_ADDR, SERVER_ADDR6},
};

use crate::workload::Mix;

/// Queries offered per second by kxdpgun: beyond the rig's capacity.
const KXDPGUN_QPS: u32 = 3_000_000;

fn client(rig: &Rig) -> Client<'_> {
    Client::new(&rig.client, &rig.client_if)
}

/// The mix's throughput ceiling: kxdpgun where it can send the mix, dnsperf
/// flat out for options it cannot (the client's stack is then the limit,
/// for every responder alike). The caller clears what kxdpgun leaves on
/// the client veth.
pub fn throughput(rig: &Rig, mix: &Mix, seconds: u32) -> anyhow::Result<Throughput> {
    match &mix.dnsperf_options {
        Some(options) => {
            let _pass = rig.attach_client_pass_through()?;
            dnsperf(mix, seconds, 1_000_000, options.clone()).throughput(client(rig))
        }
        None => {
            let queries = kxdpgun_queries(mix)?;
            load::kxdpgun(
                client(rig),
                &queries,
                server_addr(mix.ipv6),
                seconds,
                KXDPGUN_QPS,
            )
        }
    }
}

/// The server's address for `mix`.
pub fn server_addr(ipv6: bool) -> &'static str {
    if ipv6 { SERVER_ADDR6 } else { SERVER_ADDR }
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

fn dnsperf(mix: &Mix, seconds: u32, qps: u32, options: Vec<String>) -> Dnsperf {
    Dnsperf {
        queries: mix.queries.clone(),
        server: server_addr(mix.ipv6).to_owned(),
        seconds,
        qps,
        dnssec_ok: mix.dnssec_ok,
        options,
    }
}

/// Runs dnsperf at `qps` for `seconds`. Answers sent with `XDP_TX` reach
/// the client's stack only through the rig's pass-through program, so the
/// caller attaches it first.
pub fn dnsperf_latency(rig: &Rig, mix: &Mix, seconds: u32, qps: u32) -> anyhow::Result<Latency> {
    let options = mix.dnsperf_options.clone().unwrap_or_default();
    dnsperf(mix, seconds, qps, options).latency(client(rig))
}
