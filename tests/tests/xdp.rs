//! The XDP program on hand-built frames, through `BPF_PROG_TEST_RUN`: the
//! real program in the real kernel verifier and interpreter/JIT, without
//! attaching it anywhere. Needs root (CAP_BPF).

use std::net::Ipv4Addr;

use dns_common::{Counter, HotName};
use dnslb::dataplane::{Dataplane, Endpoint, HotAnswer, HotType};
use dnslb_tests::{
    frame::{Opt, QueryFrame, fix_ipv4_checksum, udp_frame, udp6_frame, wire_name},
    testrun::{EDNS_PAYLOAD, XDP_DROP, XDP_PASS, assert_passes, decode_answer, program, run},
};
use hickory_proto::{
    op::Message,
    rr::{RData, RecordType},
};

fn addr(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 10, last)
}

fn make_hot(dataplane: &mut Dataplane, name: &str, answer: HotAnswer) {
    let key = HotName::from_wire(&wire_name(name)).expect("a valid name");
    dataplane
        .set_hot(&key, &answer.encode(HotType::A).expect("encodable"))
        .unwrap();
}

fn round_robin(dataplane: &mut Dataplane, name: &str, addrs: &[Ipv4Addr]) {
    let answer = HotAnswer::RoundRobin {
        ttl: 300,
        addrs: addrs.iter().map(|&a| a.into()).collect(),
    };
    make_hot(dataplane, name, answer);
}

fn answer_addrs(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .map(|record| {
            assert_eq!(record.record_type(), RecordType::A);
            assert_eq!(record.ttl, 300);
            match &record.data {
                RData::A(a) => a.0,
                other => panic!("not an A record: {other:?}"),
            }
        })
        .collect()
}

#[test]
fn hot_name_is_answered_with_every_field_right() {
    let mut dataplane = program();
    let addrs = [addr(1), addr(2), addr(3)];
    round_robin(&mut dataplane, "www.example.com", &addrs);

    let query = QueryFrame::a("WwW.ExAmPlE.cOm");
    let input = query.build();
    let mut firsts = Vec::new();
    for _ in 0..3 {
        let outcome = run(&mut dataplane, &input);
        let message = decode_answer(&query, &input, &outcome);
        assert!(message.metadata.recursion_desired, "RD copied");
        assert!(message.edns.is_none(), "no OPT without one in the query");
        let got = answer_addrs(&message);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, addrs, "every address of the RRset");
        assert_eq!(
            message.answers[0].name.to_ascii(),
            "WwW.ExAmPlE.cOm.",
            "owner compressed onto the question"
        );
        firsts.push(got[0]);
    }
    firsts.sort();
    assert_eq!(firsts, addrs, "each query rotates the order");
    assert_eq!(dataplane.counters().unwrap().get(Counter::Answered), 3);
}

#[test]
fn flags_are_copied_as_resolvers_expect() {
    let mut dataplane = program();
    round_robin(&mut dataplane, "api.example.com", &[addr(9)]);
    let mut query = QueryFrame::a("api.example.com");
    query.flags = [0x00, 0x10]; // RD clear, CD set
    let input = query.build();
    let message = decode_answer(&query, &input, &run(&mut dataplane, &input));
    assert!(!message.metadata.recursion_desired);
    assert!(message.metadata.checking_disabled);
    assert_eq!(answer_addrs(&message), vec![addr(9)]);

    // Opcode 1 (IQUERY), TC set, Z set. (QR set is dropped: see guard.rs.)
    for flags in [[0x09, 0x00], [0x03, 0x00], [0x01, 0x40]] {
        query.flags = flags;
        assert_passes(&mut dataplane, &query.build(), Counter::PassUnsupported);
    }
}

#[test]
fn edns_queries_get_an_opt_record_and_the_rest_pass() {
    let mut dataplane = program();
    round_robin(&mut dataplane, "www.example.com", &[addr(1), addr(2)]);

    for client_payload in [512, 1232, 4096] {
        let query = QueryFrame::a("www.example.com").with_opt(Opt::plain(client_payload));
        let input = query.build();
        let message = decode_answer(&query, &input, &run(&mut dataplane, &input));
        let edns = message.edns.as_ref().expect("OPT in the answer");
        assert_eq!(edns.version(), 0);
        assert_eq!(
            edns.max_payload(),
            EDNS_PAYLOAD,
            "the server's payload size"
        );
        assert!(!edns.flags().dnssec_ok);
        assert!(edns.options().as_ref().is_empty(), "no options");
        assert_eq!(answer_addrs(&message).len(), 2);
    }

    let version_1 = Opt {
        version: 1,
        ..Opt::plain(1232)
    };
    let frame = QueryFrame::a("www.example.com").with_opt(version_1).build();
    assert_passes(&mut dataplane, &frame, Counter::PassEdns);
}

#[test]
fn what_the_kernel_does_not_hold_passes() {
    let mut dataplane = program();
    round_robin(&mut dataplane, "www.example.com", &[addr(1)]);
    assert_passes(
        &mut dataplane,
        &QueryFrame::a("nope.example.com").build(),
        Counter::PassNotHot,
    );
    assert_passes(
        &mut dataplane,
        &QueryFrame::aaaa("www.example.com").build(),
        Counter::PassNotHot,
    );
    assert_passes(
        &mut dataplane,
        &QueryFrame::a("www.example.com").with_type(16).build(),
        Counter::PassQtype,
    );
    let mut chaos = QueryFrame::a("www.example.com");
    chaos.qclass = 3;
    assert_passes(&mut dataplane, &chaos.build(), Counter::PassQtype);
    let mut other_port = QueryFrame::a("www.example.com");
    other_port.port = 5353;
    assert_passes(&mut dataplane, &other_port.build(), Counter::PassNotDns);

    // IPv6 behind an extension header (hop-by-hop), and ICMPv6.
    let query = QueryFrame::a("www.example.com").dns();
    let client = dnslb_tests::frame::CLIENT_IP6;
    let hop_by_hop = udp6_frame(client, None, 0, 40_000, 53, &query);
    assert_passes(&mut dataplane, &hop_by_hop, Counter::PassUnsupported);
    let icmp = udp6_frame(client, None, 58, 40_000, 53, &query);
    assert_passes(&mut dataplane, &icmp, Counter::PassNotDns);
    let mut broadcast = QueryFrame::a("www.example.com").build();
    broadcast[..6].copy_from_slice(&[0xff; 6]);
    assert_passes(&mut dataplane, &broadcast, Counter::PassNotDns);
    let mut fragment = QueryFrame::a("www.example.com").build();
    fragment[14 + 6] |= 0x20; // more fragments
    fix_ipv4_checksum(&mut fragment, 14);
    assert_passes(&mut dataplane, &fragment, Counter::PassUnsupported);
    let mut trailing = QueryFrame::a("www.example.com").dns();
    trailing.push(0);
    assert_passes(
        &mut dataplane,
        &udp_frame(None, &[], 40_000, 53, &trailing),
        Counter::PassMalformed,
    );
}

#[test]
fn vlan_tagged_queries_are_answered_inside_the_tag() {
    let mut dataplane = program();
    round_robin(&mut dataplane, "www.example.com", &[addr(1)]);
    let query = QueryFrame {
        vlan: Some(0x0064),
        ..QueryFrame::a("www.example.com")
    };
    let input = query.build();
    let message = decode_answer(&query, &input, &run(&mut dataplane, &input));
    assert_eq!(answer_addrs(&message), vec![addr(1)]);
}

#[test]
fn ip_options_are_skipped_and_kept() {
    let mut dataplane = program();
    round_robin(&mut dataplane, "www.example.com", &[addr(1)]);
    for words in [1, 10] {
        // No-operation options, then end of list.
        let mut options = vec![1u8; words * 4];
        options[words * 4 - 1] = 0;
        let query = QueryFrame {
            ip_options: options,
            ..QueryFrame::a("www.example.com")
        };
        let input = query.build();
        let message = decode_answer(&query, &input, &run(&mut dataplane, &input));
        assert_eq!(answer_addrs(&message), vec![addr(1)]);
    }
}

#[test]
fn every_truncation_of_a_valid_query_passes_unchanged() {
    let mut dataplane = program();
    round_robin(&mut dataplane, "www.example.com", &[addr(1)]);
    for query in [
        QueryFrame::a("www.example.com"),
        QueryFrame::a("www.example.com").with_opt(Opt::plain(1232)),
    ] {
        let frame = query.build();
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
        for len in 14..frame.len() {
            let cut = &frame[..len];
            let outcome = run(&mut dataplane, cut);
            assert_eq!(outcome.action, XDP_PASS, "truncated to {len} bytes");
            assert_eq!(outcome.frame, cut, "truncated to {len} bytes, changed");
        }
    }
}

#[test]
fn random_bytes_pass_unchanged() {
    let mut dataplane = program();
    round_robin(&mut dataplane, "www.example.com", &[addr(1)]);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..3000 {
        let len = 14 + (next() % 600) as usize;
        let noise: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Half the rounds wrap the noise in valid headers to port 53, so
        // it reaches the DNS parser.
        let frame = if round % 2 == 0 {
            noise.clone()
        } else {
            udp_frame(None, &[], 40_000, 53, &noise)
        };
        let outcome = run(&mut dataplane, &frame);
        // A DNS header with QR set, to our port, is a response: dropped
        // (if it is no longer than the 512 bytes the program reads).
        let response = round % 2 == 1 && (12..=512).contains(&noise.len()) && noise[2] & 0x80 != 0;
        let expected = if response { XDP_DROP } else { XDP_PASS };
        assert_eq!(outcome.action, expected, "round {round}");
        assert_eq!(outcome.frame, frame, "round {round}");
    }
}

/// A name of exactly `len` bytes on the wire (at least 3: one label).
fn name_of_wire_len(len: usize) -> String {
    assert!(len >= 3, "the shortest name with a label has 3 bytes");
    let mut labels = Vec::new();
    let mut left = len - 1; // the root label
    while left > 0 {
        let mut label = (left - 1).min(63);
        if left - (label + 1) == 1 {
            // A single byte left over could not form a label.
            label -= 1;
        }
        labels.push("a".repeat(label));
        left -= label + 1;
    }
    let name = labels.join(".");
    assert_eq!(wire_name(&name).len(), len);
    name
}

#[test]
fn names_up_to_255_bytes_are_answered_and_longer_ones_pass() {
    let mut dataplane = program();
    let longest = name_of_wire_len(255);
    assert_eq!(wire_name(&longest).len(), 255);
    round_robin(&mut dataplane, &longest, &[addr(1)]);
    let query = QueryFrame::a(&longest.to_uppercase());
    let input = query.build();
    let message = decode_answer(&query, &input, &run(&mut dataplane, &input));
    assert_eq!(answer_addrs(&message), vec![addr(1)]);

    let too_long = QueryFrame::a(&format!("a.{longest}"));
    assert_eq!(too_long.qname.len(), 257);
    assert_passes(&mut dataplane, &too_long.build(), Counter::PassMalformed);
}

#[test]
fn answers_that_would_not_fit_pass() {
    let mut dataplane = program();
    let name = name_of_wire_len(255);
    let sixteen: Vec<Ipv4Addr> = (1..=16).map(addr).collect();
    round_robin(&mut dataplane, &name, &sixteen);
    // 12 + 259 + 16 * 16 > 512.
    assert_passes(
        &mut dataplane,
        &QueryFrame::a(&name).build(),
        Counter::PassTooBig,
    );
    let small_edns = QueryFrame::a(&name).with_opt(Opt::plain(512));
    assert_passes(&mut dataplane, &small_edns.build(), Counter::PassTooBig);

    let query = QueryFrame::a(&name).with_opt(Opt::plain(1232));
    let input = query.build();
    let message = decode_answer(&query, &input, &run(&mut dataplane, &input));
    assert_eq!(answer_addrs(&message).len(), 16);
}

#[test]
fn weighted_names_get_one_endpoint_in_proportion() {
    let mut dataplane = program();
    let endpoints = [(1, 1), (2, 0), (3, 3)]
        .map(|(last, weight)| Endpoint {
            addr: addr(last).into(),
            weight,
        })
        .to_vec();
    make_hot(
        &mut dataplane,
        "w.example.com",
        HotAnswer::Weighted {
            ttl: 300,
            endpoints,
        },
    );
    let query = QueryFrame::a("w.example.com");
    let input = query.build();
    let draws = 4000;
    let mut counts = [0usize; 3];
    for _ in 0..draws {
        let message = decode_answer(&query, &input, &run(&mut dataplane, &input));
        let got = answer_addrs(&message);
        assert_eq!(got.len(), 1, "a weighted answer has one record");
        counts[usize::from(got[0].octets()[3] - 1)] += 1;
    }
    assert_eq!(counts[1], 0, "weight 0 gets nothing: {counts:?}");
    // Expected 1000 : 3000; the standard deviation is about 27.
    let expected = draws / 4;
    assert!(counts[0].abs_diff(expected) < 140, "{counts:?}");
}

#[test]
fn names_at_every_size_class_boundary_are_answered() {
    let mut dataplane = program();
    let lengths = [3, 31, 32, 33, 64, 65, 128, 129, 255];
    for (i, &len) in lengths.iter().enumerate() {
        round_robin(&mut dataplane, &name_of_wire_len(len), &[addr(i as u8 + 1)]);
    }
    // Longest first, then shorter ones: what a long name leaves in the
    // kernel's key buffer must not leak into the next lookup.
    for (i, &len) in lengths.iter().enumerate().rev() {
        let query = QueryFrame::a(&name_of_wire_len(len).to_uppercase()).with_opt(Opt::plain(1232));
        let input = query.build();
        let message = decode_answer(&query, &input, &run(&mut dataplane, &input));
        assert_eq!(
            answer_addrs(&message),
            vec![addr(i as u8 + 1)],
            "{len}-byte name"
        );
    }
    // One byte more or less is another name.
    assert_passes(
        &mut dataplane,
        &QueryFrame::a(&name_of_wire_len(34)).build(),
        Counter::PassNotHot,
    );
}

#[test]
fn kernel_names_follow_a_zone_reload() {
    use std::path::Path;

    use dnslb::{
        dataplane::sync_hot,
        zone::{Catalog, parse_zone},
    };
    use hickory_proto::rr::Name;

    let catalog = |records: &str| {
        let text = format!("$TTL 300\n@ SOA ns host 1 2 3 4 5\n{records}");
        let zone = parse_zone(
            &Name::from_ascii("example.com.").unwrap(),
            &text,
            Path::new("z"),
        )
        .unwrap();
        let mut catalog = Catalog::default();
        catalog.insert(zone);
        catalog
    };
    let before = catalog("gone A 198.18.10.1\nmoved A 198.18.10.2\nstays A 198.18.10.3\n");
    let after = catalog("moved A 198.18.10.4\nstays A 198.18.10.3\nnew A 198.18.10.5\n");
    let mut dataplane = program();
    sync_hot(&mut dataplane, (None, &before), &|_, _| false, &|_| None).unwrap();
    let report = sync_hot(
        &mut dataplane,
        (Some(&before), &after),
        &|_, _| false,
        &|_| None,
    )
    .unwrap();
    assert_eq!((report.written, report.removed), (3, 1));

    assert_passes(
        &mut dataplane,
        &QueryFrame::a("gone.example.com").build(),
        Counter::PassNotHot,
    );
    for (name, last) in [("moved", 4), ("stays", 3), ("new", 5)] {
        let query = QueryFrame::a(&format!("{name}.example.com"));
        let input = query.build();
        let message = decode_answer(&query, &input, &run(&mut dataplane, &input));
        assert_eq!(answer_addrs(&message), vec![addr(last)], "{name}");
    }
}

/// Found by the fuzzer: a query whose IPv4 header checksum is wrong (a
/// bit flipped on the way) was answered, with a checksum as wrong,
/// derived from it. The host's stack drops such a frame; so does the
/// program now, passing it on untouched.
#[test]
fn a_wrong_ipv4_header_checksum_passes() {
    let mut dataplane = program();
    round_robin(&mut dataplane, "www.example.com", &[addr(1)]);
    let mut frame = QueryFrame::a("www.example.com").build();
    frame[14 + 5] ^= 0x0c; // the IP ID
    assert_passes(&mut dataplane, &frame, Counter::PassMalformed);
    let mut with_options = QueryFrame::a("www.example.com");
    with_options.ip_options = vec![1, 1, 1, 0];
    let mut frame = with_options.build();
    frame[14 + 21] ^= 0x01; // an option
    assert_passes(&mut dataplane, &frame, Counter::PassMalformed);
}
