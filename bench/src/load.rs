//! The load generators on the benchmark rig, for a query mix: dnslb's own
//! flood (frames through a packet socket, replies counted by an XDP sink;
//! for the throughput ceiling) and dnsperf (through the kernel stack, at a
//! fixed rate, for latency); `dnslb_tests::load` runs them.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use dnslb_tests::{
    load::{
        Client, Dnsperf, Latency,
        flood::{Flood, Flooded, SOURCE_PORTS},
    },
    netns::{Rig, SERVER_ADDR, SERVER_ADDR6},
};

use crate::workload::Mix;

/// Queries offered per second by the flood: beyond the rig's capacity.
pub const FLOOD_QPS: u32 = 3_000_000;

fn client(rig: &Rig) -> Client<'_> {
    Client::new(&rig.client, &rig.client_if)
}

/// The mix's throughput ceiling: the flood offering [`FLOOD_QPS`] for
/// `seconds`, every mix with its own EDNS.
pub fn throughput(rig: &Rig, mix: &Mix, seconds: u32) -> anyhow::Result<Flooded> {
    let server: IpAddr = server_addr(mix.ipv6).parse()?;
    Flood {
        queries: mix.queries.clone(),
        edns: mix.edns.clone(),
        server: SocketAddr::new(server, 53),
        server_mac: rig.server.mac(&rig.server_if).context("the server's MAC")?,
        seconds,
        qps: FLOOD_QPS,
        ports: SOURCE_PORTS,
    }
    .run(client(rig))
}

/// The server's address for `mix`.
pub fn server_addr(ipv6: bool) -> &'static str {
    if ipv6 { SERVER_ADDR6 } else { SERVER_ADDR }
}

/// Runs dnsperf at `qps` for `seconds`. Answers sent with `XDP_TX` reach
/// the client's stack only through the rig's pass-through program, so the
/// caller attaches it first.
pub fn dnsperf_latency(rig: &Rig, mix: &Mix, seconds: u32, qps: u32) -> anyhow::Result<Latency> {
    Dnsperf {
        queries: mix.queries.clone(),
        server: server_addr(mix.ipv6).to_owned(),
        seconds,
        qps,
        edns: mix.edns.clone(),
        options: Vec::new(),
    }
    .latency(client(rig))
}
