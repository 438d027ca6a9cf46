//! What the XDP program answers on a public NIC, through
//! `BPF_PROG_TEST_RUN`: only frames addressed to this host, no answer to
//! an answer, and answers rate-limited per client network (with slips,
//! exemptions and cookie holders let through).

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use dns_common::{Counter, HotName, cookie::CookieAddr, guard::RateLimit};
use dnslb::{
    dataplane::{Dataplane, DataplaneOptions, HotAnswer, HotType},
    server::CookieKeys,
};
use dnslb_tests::{
    frame::{
        CLIENT_IP, Opt, QueryFrame, SERVER_IP, SERVER_IP6, SERVER_MAC, fix_ipv4_checksum, wire_name,
    },
    testrun::{
        EDNS_PAYLOAD, XDP_DROP, XDP_TX, answer_payload, assert_passes, decode_answer, program, run,
    },
};
use hickory_proto::op::Message;

fn serve_www(dataplane: &mut Dataplane) {
    let answer = HotAnswer::RoundRobin {
        ttl: 300,
        addrs: vec![IpAddr::V4(Ipv4Addr::new(198, 18, 10, 1))],
    };
    let name = HotName::from_wire(&wire_name("www.example.com")).unwrap();
    dataplane
        .set_hot(&name, &answer.encode(HotType::A).unwrap())
        .unwrap();
}

#[test]
fn only_frames_addressed_to_us_are_answered() {
    // Loaded, but before the daemon said what is ours: nothing is.
    let mut fresh = Dataplane::load(DataplaneOptions::new(53, EDNS_PAYLOAD, 64)).unwrap();
    serve_www(&mut fresh);
    let query = QueryFrame::a("www.example.com");
    assert_passes(&mut fresh, &query.build(), Counter::PassNotOurs);

    let mut dataplane = program();
    serve_www(&mut dataplane);
    let input = query.build();
    decode_answer(&query, &input, &run(&mut dataplane, &input));

    let mut other_mac = input.clone();
    other_mac[5] ^= 0x40;
    assert_passes(&mut dataplane, &other_mac, Counter::PassNotOurs);

    // Another host's IPv4 address.
    let mut other_ip = input.clone();
    other_ip[14 + 19] = 99;
    fix_ipv4_checksum(&mut other_ip, 14);
    assert_passes(&mut dataplane, &other_ip, Counter::PassNotOurs);

    let over_v6 = QueryFrame::a("www.example.com").over_ipv6();
    let input6 = over_v6.build();
    decode_answer(&over_v6, &input6, &run(&mut dataplane, &input6));
    let mut other_ip6 = input6.clone();
    other_ip6[14 + 39] = 99;
    assert_passes(&mut dataplane, &other_ip6, Counter::PassNotOurs);

    // The daemon follows the interface's addresses: one added is
    // answered on, one removed no longer.
    let mut added = SERVER_IP.octets();
    added[3] = 99;
    let local = BTreeSet::from([IpAddr::V4(added.into()), IpAddr::V6(SERVER_IP6)]);
    dataplane.set_local_addrs(&local).unwrap();
    assert_eq!(run(&mut dataplane, &other_ip).action, XDP_TX);
    assert_passes(&mut dataplane, &input, Counter::PassNotOurs);

    // More addresses than the guard holds itself: looked up in the map.
    let many: BTreeSet<IpAddr> = (90..=99)
        .map(|last| IpAddr::V4([198, 18, 0, last].into()))
        .chain([IpAddr::V6(SERVER_IP6)])
        .collect();
    dataplane.set_local_addrs(&many).unwrap();
    assert_eq!(run(&mut dataplane, &other_ip).action, XDP_TX);
    assert_eq!(run(&mut dataplane, &input6).action, XDP_TX);
    assert_passes(&mut dataplane, &input, Counter::PassNotOurs);
}

#[test]
fn responses_sent_to_our_port_are_dropped() {
    let mut dataplane = program();
    serve_www(&mut dataplane);
    let mut response = QueryFrame::a("www.example.com");
    response.flags = [0x84, 0x00];
    let frame = response.build();
    let outcome = run(&mut dataplane, &frame);
    assert_eq!(outcome.action, XDP_DROP);
    assert_eq!(dataplane.counters().unwrap().get(Counter::DropResponse), 1);
}

/// The program with www.example.com, limited to `rate` answers a second
/// and `burst` at once per network, every `slip`th limited one truncated.
fn limited(rate: u32, burst: u32, slip: u32) -> Dataplane {
    let mut dataplane = program();
    serve_www(&mut dataplane);
    let guard = RateLimit::per_second(rate, burst, slip).guard(SERVER_MAC);
    dataplane.set_guard(&guard).unwrap();
    dataplane
}

/// How `count` queries from `client` fared: answered, slipped, dropped.
fn outcomes(dataplane: &mut Dataplane, query: &QueryFrame, count: usize) -> [usize; 3] {
    let mut tally = [0; 3];
    let input = query.build();
    for _ in 0..count {
        let outcome = run(dataplane, &input);
        match outcome.action {
            XDP_DROP => tally[2] += 1,
            XDP_TX => {
                let message = Message::from_vec(answer_payload(query, &input, &outcome)).unwrap();
                if message.metadata.truncation {
                    assert!(message.answers.is_empty(), "a slip carries no records");
                    assert_eq!(message.queries.len(), 1, "the question is echoed");
                    tally[1] += 1;
                } else {
                    assert_eq!(message.answers.len(), 1);
                    tally[0] += 1;
                }
            }
            other => panic!(
                "action {other} for a limited hot name from {}: {:?}",
                query.client,
                dataplane.counters()
            ),
        }
    }
    tally
}

// The rate is 1 a second: the test would need a whole second between two
// queries of one network for a token to come back, and runs them in
// microseconds.
#[test]
fn each_network_gets_its_burst_then_slips_and_drops() {
    let mut dataplane = limited(1, 5, 2);
    let from = |client: IpAddr| QueryFrame::a("www.example.com").from_client(client);
    let client = IpAddr::V4(CLIENT_IP);
    assert_eq!(outcomes(&mut dataplane, &from(client), 25), [5, 10, 10]);
    let counters = dataplane.counters().unwrap();
    assert_eq!(
        [
            Counter::Answered,
            Counter::RateSlipped,
            Counter::RateDropped
        ]
        .map(|c| counters.get(c)),
        [5, 10, 10]
    );

    let same_net = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 77));
    assert_eq!(outcomes(&mut dataplane, &from(same_net), 2), [0, 1, 1]);
    let next_net = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1));
    assert_eq!(outcomes(&mut dataplane, &from(next_net), 6), [5, 0, 1]);

    let v6 = |text: &str| IpAddr::V6(text.parse::<Ipv6Addr>().unwrap());
    assert_eq!(
        outcomes(&mut dataplane, &from(v6("2001:db8::1")), 5),
        [5, 0, 0]
    );
    assert_eq!(
        outcomes(&mut dataplane, &from(v6("2001:db8:0:ff::9")), 2),
        [0, 1, 1],
        "the same /56"
    );
    assert_eq!(
        outcomes(&mut dataplane, &from(v6("2001:db8:0:100::1")), 1),
        [1, 0, 0],
        "the next /56"
    );

    // A slip keeps the OPT record, so the resolver knows EDNS works.
    let edns = from(client).with_opt(Opt::plain(1232));
    let input = edns.build();
    assert_eq!(run(&mut dataplane, &input).action, XDP_DROP, "limited 21st");
    let outcome = run(&mut dataplane, &input);
    let message = Message::from_vec(answer_payload(&edns, &input, &outcome)).unwrap();
    assert!(message.metadata.truncation);
    assert!(message.edns.is_some(), "OPT kept in the slip");
}

#[test]
fn exempt_networks_and_cookie_holders_are_answered_in_full() {
    let mut dataplane = limited(1, 2, 0);
    dataplane
        .set_rate_exempt(&[(IpAddr::V4(Ipv4Addr::new(198, 18, 5, 0)), 24)])
        .unwrap();
    let exempt = QueryFrame::a("www.example.com").from_client(Ipv4Addr::new(198, 18, 5, 9));
    assert_eq!(outcomes(&mut dataplane, &exempt, 20), [20, 0, 0]);

    let secrets = CookieKeys::generated().unwrap().secrets();
    dataplane.set_cookie_secrets(&secrets).unwrap();
    let client_cookie = [7u8; 8];
    let ask = |server: &[u8]| {
        QueryFrame::a("www.example.com").with_opt(Opt::plain(1232).cookie(client_cookie, server))
    };
    assert_eq!(outcomes(&mut dataplane, &ask(&[]), 4), [2, 0, 2]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let valid = secrets.mint(now, client_cookie, CookieAddr::V4(CLIENT_IP.octets()));
    assert_eq!(
        outcomes(&mut dataplane, &ask(&valid), 10),
        [10, 0, 0],
        "a client that proved it gets our answers is not a spoofed source"
    );
    let forged = secrets.mint(now, [8u8; 8], CookieAddr::V4(CLIENT_IP.octets()));
    assert_eq!(outcomes(&mut dataplane, &ask(&forged), 2), [0, 0, 2]);

    let mut unlimited = limited(0, 1, 0);
    let plain = QueryFrame::a("www.example.com");
    assert_eq!(outcomes(&mut unlimited, &plain, 50), [50, 0, 0], "rate 0");
}
