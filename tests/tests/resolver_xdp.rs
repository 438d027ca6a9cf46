//! What real resolvers send, answered by the XDP program through
//! `BPF_PROG_TEST_RUN`: DO, DNS cookies, Client Subnet, several options at
//! once, IPv6 and AAAA; and digest collisions. Each answer is checked field
//! by field, and against the daemon's answer to the same query.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use dns_common::{
    Counter, HotName,
    cookie::{CookieAddr, CookieSecrets},
};
use dnslb::{
    dataplane::{Dataplane, DataplaneOptions, HotAnswer, HotType, HotValue, SkipReason, sync_hot},
    server::{Responder, Transport},
};
use dnslb_tests::{
    frame::{CLIENT_IP, CLIENT_IP6, Opt, QueryFrame, wire_name},
    oracle::{TEST_ZONES, catalog, loaded, option, same_answer},
    testrun::{
        EDNS_PAYLOAD, XDP_PASS, XDP_TX, answer, answer_payload, assert_passes, load, program, run,
    },
};
use hickory_proto::{
    op::Message,
    rr::{RData, RecordType, rdata::opt::EdnsCode},
};

fn addresses(message: &Message) -> BTreeSet<IpAddr> {
    message
        .answers
        .iter()
        .map(|record| match &record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
            other => panic!("not an address: {other:?}"),
        })
        .collect()
}

/// The kernel's answer to `query`, checked against the daemon's answer to
/// the same bytes from the same client.
fn answer_as_daemon(
    dataplane: &mut Dataplane,
    responder: &Responder,
    query: &QueryFrame,
) -> Message {
    let kernel = answer(dataplane, query);
    let daemon = responder
        .respond(&query.dns(), query.client, Transport::Udp)
        .expect("the daemon answers");
    let daemon = Message::from_vec(&daemon).expect("the daemon's answer decodes");
    if let Err(difference) = same_answer(&kernel, &daemon) {
        panic!("{difference}");
    }
    kernel
}

fn www_a() -> BTreeSet<IpAddr> {
    [1, 2, 3]
        .map(|last| IpAddr::V4(Ipv4Addr::new(198, 18, 10, last)))
        .into()
}

#[test]
fn dnssec_ok_is_answered_and_signed_where_the_zone_is() {
    let (mut dataplane, responder, _) = loaded(&TEST_ZONES);
    let query = QueryFrame::a("www.plain.test").with_opt(Opt::plain(1232).dnssec());
    let message = answer_as_daemon(&mut dataplane, &responder, &query);
    assert!(
        message.edns.as_ref().unwrap().flags().dnssec_ok,
        "DO copied"
    );
    assert_eq!(addresses(&message), www_a());

    let signed = QueryFrame::a("www.signed.test");
    let types = |message: &Message| -> Vec<RecordType> {
        message.answers.iter().map(|r| r.record_type()).collect()
    };
    assert_eq!(
        types(&answer(&mut dataplane, &signed)),
        [RecordType::A; 2],
        "no DO: no signature"
    );
    let with_do = signed.with_opt(Opt::plain(1232).dnssec());
    let message = answer_as_daemon(&mut dataplane, &responder, &with_do);
    assert_eq!(
        types(&message),
        [RecordType::A, RecordType::A, RecordType::RRSIG],
        "DO: signed"
    );
}

/// The server cookie in a cookie option's data: version, reserved,
/// timestamp, hash.
fn server_cookie(data: &[u8]) -> (u8, u32, &[u8]) {
    assert_eq!(data.len(), 24, "client cookie and a 16-byte server cookie");
    let stamp = u32::from_be_bytes(data[12..16].try_into().unwrap());
    (data[8], stamp, &data[16..])
}

fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

#[test]
fn cookies_are_made_checked_and_refreshed_as_rfc_9018_says() {
    let (mut dataplane, responder, secrets) = loaded(&TEST_ZONES);
    let client = [0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57];
    for source in [IpAddr::V4(CLIENT_IP), IpAddr::V6(CLIENT_IP6)] {
        let addr = match source {
            IpAddr::V4(v4) => CookieAddr::V4(v4.octets()),
            IpAddr::V6(v6) => CookieAddr::V6(v6.octets()),
        };
        let ask = |dataplane: &mut Dataplane, server: &[u8]| {
            let query = QueryFrame::a("www.plain.test")
                .from_client(source)
                .with_opt(Opt::plain(1232).cookie(client, server));
            let message = answer_as_daemon(dataplane, &responder, &query);
            assert_eq!(addresses(&message), www_a());
            option(&message, EdnsCode::Cookie).expect("a cookie in the answer")
        };

        // A client cookie alone: a fresh server cookie, made as the daemon
        // makes it.
        let fresh = ask(&mut dataplane, &[]);
        assert_eq!(&fresh[..8], &client, "client cookie echoed");
        let (version, stamp, _) = server_cookie(&fresh);
        assert_eq!(version, 1);
        assert!(stamp.abs_diff(now()) <= 2, "timestamp is now");
        assert_eq!(&fresh[8..], &secrets.mint(stamp, client, addr), "{source}");

        // A valid, recent server cookie comes back unchanged.
        let recent = secrets.mint(now() - 60, client, addr);
        assert_eq!(&ask(&mut dataplane, &recent)[8..], &recent);

        // Older than half an hour, expired, from the future, another
        // secret's, the previous secret's, or of another length: a new one.
        let other = CookieSecrets::from_keys([0x55; 16], None);
        let rotated = CookieSecrets::from_keys([0x66; 16], Some([0x11; 16]));
        for (case, old) in [
            (
                "35 minutes old",
                secrets.mint(now() - 2100, client, addr).to_vec(),
            ),
            ("expired", secrets.mint(now() - 4000, client, addr).to_vec()),
            (
                "from the future",
                secrets.mint(now() + 600, client, addr).to_vec(),
            ),
            ("wrong secret", other.mint(now(), client, addr).to_vec()),
            (
                "previous secret",
                rotated.mint(now(), client, addr).to_vec(),
            ),
            ("another server's format", vec![7; 12]),
        ] {
            let answered = ask(&mut dataplane, &old);
            let (_, stamp, hash) = server_cookie(&answered);
            assert!(stamp.abs_diff(now()) <= 2, "{case}: a fresh timestamp");
            assert_ne!(hash, &old[old.len().min(8)..], "{case}");
            assert_eq!(&answered[8..], &secrets.mint(stamp, client, addr), "{case}");
        }
    }

    // Malformed: the daemon answers FORMERR, so the kernel passes.
    for (case, opt) in [
        ("7-byte cookie", Opt::plain(1232).option(10, &[1; 7])),
        ("12 bytes", Opt::plain(1232).option(10, &[1; 12])),
        ("41 bytes", Opt::plain(1232).option(10, &[1; 41])),
        (
            "two cookies",
            Opt::plain(1232).cookie(client, &[]).cookie(client, &[]),
        ),
    ] {
        let query = QueryFrame::a("www.plain.test").with_opt(opt);
        assert_passes(&mut dataplane, &query.build(), Counter::PassEdns);
        let formerr = responder
            .respond(&query.dns(), query.client, Transport::Udp)
            .expect("an answer");
        assert_eq!(formerr[3] & 0x0f, 1, "{case}: FORMERR from the daemon");
    }
}

#[test]
fn client_subnets_of_both_families_are_answered_with_their_scope() {
    let (mut dataplane, responder, _) = loaded(&TEST_ZONES);
    let v4 = IpAddr::V4(Ipv4Addr::new(198, 18, 77, 0));
    let v6 = IpAddr::V6("2001:db8:77::".parse().unwrap());
    for (addr, source) in [(v4, 24), (v4, 0), (v4, 32), (v4, 13), (v6, 56), (v6, 128)] {
        let query = QueryFrame::a("www.plain.test").with_opt(Opt::plain(1232).subnet(addr, source));
        let message = answer_as_daemon(&mut dataplane, &responder, &query);
        let echoed = option(&message, EdnsCode::Subnet).expect("Client Subnet echoed");
        assert_eq!(
            echoed[2..4],
            [source, 0],
            "{addr}/{source}: source kept, scope 0"
        );
    }
    for (case, data) in [
        ("scope set in a query", vec![0, 1, 24, 8, 198, 18, 77]),
        ("address too short", vec![0, 1, 24, 0, 198, 18]),
        ("bits past the prefix", vec![0, 1, 20, 0, 198, 18, 0x7f]),
        ("family 3", vec![0, 3, 8, 0, 1]),
        ("/33 in IPv4", vec![0, 1, 33, 0, 1, 2, 3, 4, 5]),
    ] {
        let query = QueryFrame::a("www.plain.test").with_opt(Opt::plain(1232).option(8, &data));
        assert_passes(&mut dataplane, &query.build(), Counter::PassEdns);
        let formerr = responder
            .respond(&query.dns(), query.client, Transport::Udp)
            .expect("an answer");
        assert_eq!(formerr[3] & 0x0f, 1, "{case}: FORMERR from the daemon");
    }
}

/// A Client Subnet: address and source prefix length.
type Subnet = (IpAddr, u8);

/// A client-dependent name written as `write_service` writes one: networks
/// of both families with their scopes, and a default for each family.
#[test]
fn client_networks_decide_by_subnet_or_source_in_both_families() {
    let mut dataplane = program();
    let name = HotName::from_wire(&wire_name("geo.plain.test")).unwrap();
    let a = |last: u8| IpAddr::V4(Ipv4Addr::new(198, 18, 30, last));
    let value = |addr: IpAddr, scope: u8| {
        HotAnswer::RoundRobin {
            ttl: 60,
            addrs: vec![addr],
        }
        .encode(HotType::A)
        .unwrap()
        .with_scope(scope)
    };
    let mapped = |v4: Ipv4Addr| v4.to_ipv6_mapped().octets();
    let generation = 7;
    let networks: [([u8; 16], u8, HotValue); 4] = [
        (mapped(Ipv4Addr::UNSPECIFIED), 96, value(a(1), 0)),
        (Ipv6Addr::UNSPECIFIED.octets(), 0, value(a(2), 0)),
        (
            mapped(Ipv4Addr::new(198, 18, 5, 0)),
            96 + 24,
            value(a(3), 24),
        ),
        (
            "2001:db8:5::".parse::<Ipv6Addr>().unwrap().octets(),
            48,
            value(a(4), 48),
        ),
    ];
    for (network, prefix, value) in &networks {
        dataplane
            .set_client_net(generation, *network, *prefix, value)
            .unwrap();
    }
    dataplane
        .set_hot(&name, &HotValue::by_client(HotType::A, generation))
        .unwrap();

    let v6_in: IpAddr = "2001:db8:5::99".parse::<Ipv6Addr>().unwrap().into();
    let v6_out: IpAddr = "2001:db8:6::1".parse::<Ipv6Addr>().unwrap().into();
    // (source, Client Subnet, the endpoint answered, the scope echoed)
    let cases: [(IpAddr, Option<Subnet>, u8, Option<u8>); 8] = [
        (CLIENT_IP.into(), None, 1, None),
        (Ipv4Addr::new(198, 18, 5, 9).into(), None, 3, None),
        (
            CLIENT_IP.into(),
            Some((Ipv4Addr::new(198, 18, 5, 0).into(), 24)),
            3,
            Some(24),
        ),
        // A /20 cannot be placed inside a /24: the default decides it.
        (
            CLIENT_IP.into(),
            Some((Ipv4Addr::new(198, 18, 0, 0).into(), 20)),
            1,
            Some(0),
        ),
        (v6_in, None, 4, None),
        (v6_out, None, 2, None),
        (CLIENT_IP.into(), Some((v6_in, 56)), 4, Some(48)),
        (
            v6_in,
            Some((Ipv4Addr::new(198, 18, 5, 0).into(), 24)),
            3,
            Some(24),
        ),
    ];
    for (source, subnet, expected, scope) in cases {
        let mut query = QueryFrame::a("geo.plain.test").from_client(source);
        if let Some((addr, len)) = subnet {
            query = query.with_opt(Opt::plain(1232).subnet(addr, len));
        }
        let message = answer(&mut dataplane, &query);
        assert_eq!(
            addresses(&message),
            [a(expected)].into(),
            "{source} {subnet:?}"
        );
        let echoed = option(&message, EdnsCode::Subnet);
        assert_eq!(
            echoed.map(|data| data[3]),
            scope,
            "{source} {subnet:?}: scope"
        );
    }
}

#[test]
fn options_in_any_order_with_others_beside_them() {
    let (mut dataplane, responder, _) = loaded(&TEST_ZONES);
    let client = [9; 8];
    let subnet = |opt: Opt| opt.subnet(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 0)), 24);
    let padding = |opt: Opt| opt.option(12, &[0; 20]);
    let unknown = |opt: Opt| opt.option(65001, &[1, 2, 3]);
    let opts = [
        subnet(Opt::plain(1232).cookie(client, &[])),
        subnet(Opt::plain(1232)).cookie(client, &[]),
        padding(unknown(
            subnet(Opt::plain(4096).dnssec()).cookie(client, &[]),
        )),
        unknown(padding(Opt::plain(512))),
    ];
    for opt in opts {
        let has_cookie = opt.options.windows(2).any(|pair| pair == [0, 10]);
        let query = QueryFrame::a("www.plain.test").with_opt(opt);
        let message = answer_as_daemon(&mut dataplane, &responder, &query);
        assert_eq!(addresses(&message), www_a());
        assert_eq!(option(&message, EdnsCode::Cookie).is_some(), has_cookie);
    }
    // More options than the kernel walks: the daemon's.
    let many = (0..9).fold(Opt::plain(1232), |opt, _| opt.option(12, &[]));
    let query = QueryFrame::a("www.plain.test").with_opt(many);
    assert_passes(&mut dataplane, &query.build(), Counter::PassEdns);
}

#[test]
fn ipv6_queries_are_answered_with_a_valid_checksum() {
    let (mut dataplane, responder, _) = loaded(&TEST_ZONES);
    // Names of even and odd length put the answer's records at even and
    // odd offsets, which the checksum arithmetic must both get right.
    for name in ["www.plain.test", "odd1.plain.test"] {
        for qtype_aaaa in [false, true] {
            for vlan in [None, Some(0x0123)] {
                for opt in [
                    None,
                    Some(Opt::plain(1232)),
                    Some(Opt::plain(1232).dnssec().cookie([3; 8], &[])),
                ] {
                    let mut query = if qtype_aaaa {
                        QueryFrame::aaaa(name)
                    } else {
                        QueryFrame::a(name)
                    }
                    .over_ipv6();
                    query.vlan = vlan;
                    query.opt = opt;
                    // `answer` verifies the UDP checksum over IPv6.
                    let message = answer_as_daemon(&mut dataplane, &responder, &query);
                    assert!(
                        !message.answers.is_empty(),
                        "{name} AAAA={qtype_aaaa} {vlan:?}"
                    );
                }
            }
        }
    }
    // A zero UDP checksum is not allowed over IPv6.
    let mut frame = QueryFrame::a("www.plain.test").over_ipv6().build();
    frame[14 + 40 + 6..14 + 40 + 8].copy_from_slice(&[0, 0]);
    assert_passes(&mut dataplane, &frame, Counter::PassMalformed);
}

#[test]
fn aaaa_sets_of_up_to_sixteen_addresses_rotate() {
    let mut dataplane = program();
    let name = HotName::from_wire(&wire_name("many.plain.test")).unwrap();
    let addrs: Vec<IpAddr> = (1..=16)
        .map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0x10, i)))
        .collect();
    let answer_set = HotAnswer::RoundRobin {
        ttl: 300,
        addrs: addrs.clone(),
    };
    dataplane
        .set_hot(&name, &answer_set.encode(HotType::Aaaa).unwrap())
        .unwrap();
    let mut firsts = BTreeSet::new();
    for client in [IpAddr::V4(CLIENT_IP), IpAddr::V6(CLIENT_IP6)] {
        for _ in 0..16 {
            let query = QueryFrame::aaaa("MANY.plain.test")
                .from_client(client)
                .with_opt(Opt::plain(1232));
            let message = answer(&mut dataplane, &query);
            assert_eq!(addresses(&message), addrs.iter().copied().collect());
            assert!(message.answers.iter().all(|r| r.ttl == 300));
            firsts.insert(match message.answers[0].data {
                RData::AAAA(aaaa) => aaaa.0,
                _ => unreachable!(),
            });
        }
    }
    assert_eq!(firsts.len(), 16, "every address leads in turn");
    // 16 AAAA records do not fit 512 bytes after a long name: passed.
    let long = format!("{}.plain.test", "x".repeat(63));
    let long_name = HotName::from_wire(&wire_name(&long)).unwrap();
    dataplane
        .set_hot(&long_name, &answer_set.encode(HotType::Aaaa).unwrap())
        .unwrap();
    assert_passes(
        &mut dataplane,
        &QueryFrame::aaaa(&long).build(),
        Counter::PassTooBig,
    );
}

#[test]
fn names_with_the_same_digest_are_both_answered() {
    // A mask of 0 gives every name the same digest: only the first name
    // written can be in the kernel, the daemon answers the other.
    let mut dataplane = load(DataplaneOptions {
        digest_mask: 0,
        ..DataplaneOptions::new(53, EDNS_PAYLOAD, 64)
    });
    let catalog = catalog(&TEST_ZONES);
    let report = sync_hot(&mut dataplane, (None, &catalog), &|_, _| false, &|_| None).unwrap();
    let collisions: Vec<_> = report
        .skipped
        .iter()
        .filter(|skip| matches!(skip.reason, SkipReason::Kernel(_)))
        .collect();
    assert!(!collisions.is_empty(), "names collided");
    let responder = Responder::new(catalog, EDNS_PAYLOAD);
    let (mut in_kernel, mut in_daemon) = (0, 0);
    // Every A name of the zones: which of them holds the digest depends
    // on the order the zones are written in.
    let names = [
        "www.plain.test",
        "odd1.plain.test",
        "ns.plain.test",
        "www.signed.test",
        "ns1.signed.test",
        "*.wild.signed.test",
        "ns.online.test",
        "www.online.test",
        "one.online.test",
    ];
    for name in names {
        let query = QueryFrame::a(name);
        let outcome = run(&mut dataplane, &query.build());
        let expected = responder
            .respond(&query.dns(), query.client, Transport::Udp)
            .map(|bytes| addresses(&Message::from_vec(&bytes).unwrap()))
            .unwrap();
        match outcome.action {
            XDP_TX => {
                in_kernel += 1;
                let payload = answer_payload(&query, &query.build(), &outcome);
                let kernel = addresses(&Message::from_vec(payload).unwrap());
                assert_eq!(kernel, expected, "{name}: the kernel's answer is its own");
            }
            XDP_PASS => in_daemon += 1,
            other => panic!("action {other}"),
        }
    }
    assert_eq!(in_kernel, 1, "one name holds the digest");
    assert_eq!(
        in_daemon,
        names.len() - 1,
        "the others pass to the daemon, which answers them"
    );
}
