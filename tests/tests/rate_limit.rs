//! Response rate limiting on the veth rig, as an attack meets it: a flood
//! from one client network at the rate the load generator sends, while a
//! resolver in another network keeps asking; and the daemon's UDP answers
//! drawing on the same buckets as the kernel's (`rate_buckets.rs`).

use std::{net::SocketAddr, thread, time::Duration};

use anyhow::Context;
use dnslb_tests::{
    daemon::{Daemon, ZoneFile, metric},
    load::{
        self, Client, Dnsperf,
        flood::{Edns, Flood},
        query_file,
    },
    netns::{Netns, SERVER_ADDR, SwitchedRig},
};

// The only test of this binary: the resolver's latency is measured
// against its idle value on a quiet machine, and cargo runs one test
// binary at a time (the buckets test lives in `rate_buckets.rs`).

const RATE: u64 = 100;
const BURST: u64 = 100;
const FLOOD_SECONDS: u32 = 10;
/// Queries a second the flood offers: flat out from one core.
const FLOOD_QPS: u32 = 2_000_000;
/// The flood's one source port: one of the generator's.
const FLOOD_PORT: u16 = dnslb_tests::load::flood::SOURCE_PORTS.start;

/// A resolver's steady trickle: 50 queries a second for 8 s (400 answers,
/// so that the p99 is the fourth worst, not one hiccup), well under
/// the rate, so none of them is ever limited.
fn trickle(client: Client<'_>, queries: &std::path::Path) -> anyhow::Result<load::Latency> {
    Dnsperf {
        queries: queries.to_owned(),
        server: SERVER_ADDR.to_owned(),
        seconds: 8,
        qps: 50,
        edns: Edns::default(),
        options: Vec::new(),
    }
    .latency(client)
}

#[test]
fn a_flood_gets_the_rate_and_a_resolver_elsewhere_is_not_slowed() -> anyhow::Result<()> {
    let rig = SwitchedRig::new(&["198.18.1.1", "198.18.2.1"])?;
    let (flooder, resolver) = (&rig.clients[0], &rig.clients[1]);
    let rate = RATE.to_string();
    let burst = BURST.to_string();
    let _daemon = Daemon::start_on(
        &rig.server,
        &rig.server_if,
        &ZoneFile::example(),
        true,
        &[
            "--rate-limit",
            &rate,
            "--rate-limit-burst",
            &burst,
            "--rate-limit-slip",
            "2",
        ],
    )?;
    let _pass = rig.attach_switch_pass_through()?;
    let queries = query_file("www", "www.example.com A\n")?;
    let flood_if = client_if(flooder)?;
    let resolver_if = client_if(resolver)?;
    // Each on a core of its own, as two clients' flows are spread over a
    // NIC's queues and cores by RSS: the flooder and the server's work for
    // it on the first, the resolver on the second.
    let resolver_client = Client::new(resolver, &resolver_if).on_cpu(1);

    // The latency bound is the point, but one p99 on these two-core VMs
    // can move by a millisecond for reasons of the host's: a second round,
    // whole, is run when the first misses it, and the bound must hold in
    // one of them (a resolver that the flood really slows misses both).
    // Every other assertion holds in every round.
    let mut rounds = Vec::new();
    for _ in 0..2 {
        let idle = trickle(resolver_client, &queries)?;
        let (flood, busy) = thread::scope(|scope| -> anyhow::Result<_> {
            let flood = scope.spawn(|| {
                Flood {
                    queries: queries.clone(),
                    edns: Edns::default(),
                    server: SocketAddr::new(SERVER_ADDR.parse()?, 53),
                    server_mac: rig.server.mac(&rig.server_if)?,
                    seconds: FLOOD_SECONDS,
                    qps: FLOOD_QPS,
                    // One flow, as an attacker's flood from one socket: a
                    // NIC's RSS (here, the veth's queue choice) keeps it to one
                    // queue and core, as the test's model of two clients on
                    // two cores says. Spread over many ports it would share
                    // the resolver's queue too.
                    ports: FLOOD_PORT..FLOOD_PORT + 1,
                }
                .run(Client::new(flooder, &flood_if).on_cpu(0))
            });
            // The trickle runs inside the flood's 10 s.
            thread::sleep(Duration::from_millis(500));
            let busy = trickle(resolver_client, &queries)?;
            let flood = flood.join().expect("the flood thread")?;
            Ok((flood, busy))
        })?;

        let slipped = metric(
            &rig.server,
            "dnslb_rate_limited_total{action=\"slipped\",path=\"xdp\"}",
        )?;
        let dropped = metric(
            &rig.server,
            "dnslb_rate_limited_total{action=\"dropped\",path=\"xdp\"}",
        )?;
        let replies = flood.replies;
        let flood = flood.throughput;
        eprintln!(
            "flood: {} sent, {} replies ({} truncated; the server counted {slipped} slipped, {dropped} dropped); resolver idle: {}/{} answered, p99 {:?}; under the flood: {}/{} answered, p99 {:?}",
            flood.sent,
            flood.replies,
            replies.truncated,
            idle.answered,
            idle.sent,
            idle.p99,
            busy.answered,
            busy.sent,
            busy.p99
        );
        // The flooder's network gets the burst and the rate (one second of
        // margin for the flood's start and end) in full answers; every other
        // reply it sees is a slip (TC=1, no records) the server counted.
        let allowed = BURST + RATE * (u64::from(FLOOD_SECONDS) + 1);
        assert!(flood.sent >= 10 * allowed, "a real flood: {flood:?}");
        let answers = replies.total - replies.truncated;
        assert!(
            answers <= allowed,
            "the flooder got {answers} full answers, more than {allowed}"
        );
        assert!(
            replies.truncated <= slipped && replies.truncated > 0,
            "the flooder saw {} slips; the server sent {slipped}",
            replies.truncated
        );
        // Two CPUs taking from one bucket at once can both see the same slip
        // turn (the race the README's rate limiting section states): a few in a million, so the margin
        // is one in ten thousand of the limited answers.
        let margin = ((slipped + dropped) / 10_000).max(1);
        assert!(
            slipped.abs_diff(dropped) <= margin,
            "every 2nd limited answer slips: {slipped} slipped, {dropped} dropped (margin {margin})"
        );
        assert!(
            busy.answered * 100 >= busy.sent * 99,
            "the resolver kept 99% of its answers: {busy:?}"
        );
        rounds.push((idle.p99, busy.p99));
        if busy.p99 <= idle.p99 * 2 {
            return Ok(());
        }
    }
    panic!(
        "the resolver's p99 stayed within 2x its idle value in neither round (idle, under the flood): {rounds:?}"
    );
}

/// The one interface of a client host of the switched rig.
fn client_if(client: &Netns) -> anyhow::Result<String> {
    let links = client.ip(&["-o", "link", "show", "type", "veth"])?;
    links
        .split(':')
        .nth(1)
        .and_then(|name| name.trim().split('@').next())
        .map(str::to_owned)
        .context("the client has no veth")
}
