//! dnslb's load generator against the real daemon on the veth rig: every
//! query it sends is a well-formed one that the server answers (the kernel
//! for hot names, with DO, cookies, Client Subnet, over IPv6), and its
//! sink counts each reply once and lets every other frame through.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use dnslb_tests::{
    daemon::{Answered, Daemon, ZoneFile, kdig},
    load::{
        Client,
        flood::{Edns, Flood, Flooded, SOURCE_PORTS},
        sink::ReplySink,
    },
    netns::{Rig, SERVER_ADDR, SERVER_ADDR6},
};

/// Queries a second: well under what the rig answers, so that none is
/// lost and every count below is exact.
const QPS: u32 = 5_000;
const SECONDS: u32 = 1;

fn query_file(name: &str, lines: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("dnslb-flood-{}-{name}", std::process::id()));
    std::fs::write(&path, lines).expect("query file written");
    path
}

fn flood(rig: &Rig, queries: PathBuf, edns: Edns, server: &str) -> Flooded {
    let server: IpAddr = server.parse().expect("an address");
    Flood {
        queries,
        edns,
        server: SocketAddr::new(server, 53),
        server_mac: rig.server.mac(&rig.server_if).expect("the server's MAC"),
        seconds: SECONDS,
        qps: QPS,
        ports: SOURCE_PORTS,
    }
    .run(Client::new(&rig.client, &rig.client_if))
    .expect("the flood runs")
}

fn answered(rig: &Rig) -> Answered {
    Answered::scrape(rig).expect("scrape /metrics")
}

#[test]
fn every_query_is_answered_where_it_should_be_and_counted_once() {
    let rig = Rig::new().expect("namespaces and veth");
    rig.add_ipv6().expect("IPv6 on the rig");
    let _daemon = Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &["--rate-limit", "0"])
        .expect("dnslb starts");
    let expected = u64::from(QPS * SECONDS);
    let hot = query_file("hot", "www.example.com A\napi.example.com A\n");
    let resolver_shaped = Edns {
        dnssec_ok: true,
        cookie: Some(vec![0x42; 8]),
        client_subnet: Some(("198.18.1.0".parse().expect("a network"), 24)),
    };
    let aaaa = query_file("aaaa", "www.example.com AAAA\n");
    let cases = [
        (
            "plain A over IPv4",
            hot.clone(),
            Edns::default(),
            SERVER_ADDR,
        ),
        (
            "DO, cookie, Client Subnet",
            hot,
            resolver_shaped.clone(),
            SERVER_ADDR,
        ),
        (
            "AAAA over IPv6, DO, cookie",
            aaaa,
            resolver_shaped,
            SERVER_ADDR6,
        ),
    ];
    for (label, queries, edns, server) in cases {
        let before = answered(&rig);
        let flooded = flood(&rig, queries, edns, server);
        let after = answered(&rig);
        eprintln!("{label}: {flooded:?}");
        let replies = flooded.replies;
        assert_eq!(flooded.throughput.sent, expected, "{label}: all sent");
        assert_eq!(flooded.refused, 0, "{label}");
        assert_eq!(replies.total, expected, "{label}: every query answered");
        assert_eq!(replies.no_error, expected, "{label}");
        assert_eq!(replies.truncated, 0, "{label}");
        let by_kernel = after.xdp.unwrap_or(0) - before.xdp.unwrap_or(0);
        assert_eq!(by_kernel, expected, "{label}: all answered by the kernel");
        assert_eq!(
            after.userspace, before.userspace,
            "{label}: none by the daemon"
        );
    }

    // Names the zone lacks: the kernel passes them, the daemon answers
    // NXDOMAIN through the stack, and the sink counts those too.
    let before = answered(&rig);
    let misses = query_file("misses", "nothing.example.com A\n");
    let flooded = flood(&rig, misses, Edns::default(), SERVER_ADDR);
    let after = answered(&rig);
    assert_eq!(flooded.replies.total, expected, "{flooded:?}");
    assert_eq!(flooded.replies.nx_domain, expected, "{flooded:?}");
    assert_eq!(after.userspace - before.userspace, expected);
}

#[test]
fn the_sink_lets_every_other_frame_through() {
    let rig = Rig::new().expect("namespaces and veth");
    let _daemon =
        Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &[]).expect("dnslb starts");
    // Attached, the sink takes the pass-through program's place: kdig's
    // answer (sent by XDP_TX, to a port outside the generator's) reaches
    // kdig, and nothing is counted.
    let sink = ReplySink::attach(&rig.client, &rig.client_if, 53, SOURCE_PORTS)
        .expect("the sink attaches");
    let answer = kdig(
        &rig.client,
        &[&format!("@{SERVER_ADDR}"), "www.example.com", "A"],
    )
    .expect("kdig runs");
    assert!(answer.contains("198.18.10.1"), "{answer}");
    assert_eq!(sink.replies().expect("counts").total, 0);
    drop(sink);
    assert!(
        !rig.client
            .ip(&["link", "show", "dev", &rig.client_if])
            .expect("ip link")
            .contains("xdp"),
        "the sink is detached when dropped"
    );
}
