//! Running the real XDP program on hand-built frames through
//! `BPF_PROG_TEST_RUN`, and checking what it sends back as a client's
//! stack would: every header, both checksums, the DNS message.

use std::{collections::BTreeSet, net::IpAddr};

use dns_common::{Counter, guard::Guard};
use dnslb::dataplane::{Dataplane, DataplaneError, DataplaneOptions, TestOutcome};
use hickory_proto::op::{Message, MessageType, ResponseCode};

use crate::frame::{
    QueryFrame, SERVER_IP, SERVER_IP6, SERVER_MAC, internet_checksum, udp6_checksum,
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
/// The EDNS payload size the test programs advertise.
pub const EDNS_PAYLOAD: u16 = 1232;

/// The program, loaded (verified) but not attached, on port 53.
pub fn program() -> Dataplane {
    load(DataplaneOptions::new(53, EDNS_PAYLOAD, 64))
}

/// Loads the program, which answers the frames [`QueryFrame`] builds: to
/// [`SERVER_MAC`] and [`SERVER_IP`] or [`SERVER_IP6`], without a rate limit.
pub fn load(options: DataplaneOptions) -> Dataplane {
    let mut dataplane = Dataplane::load(options).expect("the XDP program loads (run as root)");
    serve_test_frames(&mut dataplane).expect("writing the guard and the local addresses");
    dataplane
}

/// Makes the program take the frames [`QueryFrame`] builds as addressed
/// to it, and answer them without a rate limit.
pub fn serve_test_frames(dataplane: &mut Dataplane) -> Result<(), DataplaneError> {
    dataplane.set_guard(&Guard {
        mac: SERVER_MAC,
        ..Guard::default()
    })?;
    let local = BTreeSet::from([IpAddr::V4(SERVER_IP), IpAddr::V6(SERVER_IP6)]);
    dataplane.set_local_addrs(&local)
}

pub fn run(dataplane: &mut Dataplane, frame: &[u8]) -> TestOutcome {
    dataplane.test_run(frame, 1).expect("BPF_PROG_TEST_RUN")
}

/// The frame must leave with `XDP_PASS`, byte for byte as it came, counted
/// under `reason`.
pub fn assert_passes(dataplane: &mut Dataplane, frame: &[u8], reason: Counter) {
    let before = dataplane.counters().unwrap();
    let outcome = run(dataplane, frame);
    assert_eq!(outcome.action, XDP_PASS, "expected XDP_PASS ({reason:?})");
    assert_eq!(outcome.frame, frame, "a passed frame must be unchanged");
    let after = dataplane.counters().unwrap();
    assert_eq!(
        after.get(reason),
        before.get(reason) + 1,
        "counted as {reason:?}: {after:?}"
    );
}

/// Runs `query` and returns the DNS message the program answered with,
/// after checking every header of the answer frame against the query.
pub fn answer(dataplane: &mut Dataplane, query: &QueryFrame) -> Message {
    let input = query.build();
    let outcome = run(dataplane, &input);
    decode_answer(query, &input, &outcome)
}

/// The DNS payload of an answer frame, its headers checked against the
/// query: MACs, addresses and ports swapped, lengths, TTL or hop limit, the
/// IPv4 header checksum (UDP checksum zero), or the IPv6 UDP checksum.
pub fn answer_payload<'a>(query: &QueryFrame, input: &[u8], outcome: &'a TestOutcome) -> &'a [u8] {
    assert_eq!(outcome.action, XDP_TX, "expected an answer (XDP_TX)");
    let out = &outcome.frame;
    let l2 = if query.vlan.is_some() { 18 } else { 14 };
    assert_eq!(&out[0..6], &input[6..12], "destination MAC is the client's");
    assert_eq!(&out[6..12], &input[0..6], "source MAC is ours");
    assert_eq!(&out[12..l2], &input[12..l2], "VLAN tag and ethertype kept");

    let ip = &out[l2..];
    let udp = match query.client {
        IpAddr::V4(_) => {
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            assert_eq!(header_len, 20 + query.ip_options.len());
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            assert_eq!(total, ip.len(), "IP total length");
            assert_eq!(
                internet_checksum(&ip[..header_len]),
                0,
                "IP header checksum"
            );
            assert_eq!(ip[8], 64, "reply TTL");
            assert_eq!(
                &ip[12..16],
                &input[l2 + 16..l2 + 20],
                "source is the server"
            );
            assert_eq!(
                &ip[16..20],
                &input[l2 + 12..l2 + 16],
                "destination is the client"
            );
            assert_eq!(
                &ip[20..header_len],
                &query.ip_options[..],
                "IP options kept"
            );
            let udp = &ip[header_len..];
            assert_eq!(&udp[6..8], &[0, 0], "UDP checksum left out over IPv4");
            udp
        }
        IpAddr::V6(client) => {
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            assert_eq!(payload + 40, ip.len(), "IPv6 payload length");
            assert_eq!((ip[6], ip[7]), (17, 64), "UDP, reply hop limit");
            assert_eq!(&ip[8..24], &input[l2 + 24..l2 + 40], "source is the server");
            assert_eq!(&ip[24..40], &client.octets(), "destination is the client");
            let udp = &ip[40..];
            let server = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
            assert_eq!(
                udp6_checksum(server, client, udp),
                0xffff,
                "UDP checksum over IPv6 verifies"
            );
            udp
        }
    };
    assert_eq!(&udp[0..2], &query.port.to_be_bytes());
    assert_eq!(&udp[2..4], &query.source_port.to_be_bytes());
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    assert_eq!(udp_len, udp.len(), "UDP length");
    &udp[8..]
}

/// As [`answer_payload`], decoded, with the parts every kernel answer
/// shares checked: the ID, QR and AA set, the question echoed byte for
/// byte, NOERROR, no authority section.
pub fn decode_answer(query: &QueryFrame, input: &[u8], outcome: &TestOutcome) -> Message {
    let dns = answer_payload(query, input, outcome);
    let question_len = query.qname.len() + 4;
    assert_eq!(
        &dns[12..12 + question_len],
        &query.dns()[12..12 + question_len],
        "question echoed byte for byte"
    );
    let message = Message::from_vec(dns).expect("the answer decodes");
    assert_eq!(message.metadata.id, query.id);
    assert_eq!(message.metadata.message_type, MessageType::Response);
    assert!(message.metadata.authoritative);
    assert!(!message.metadata.recursion_available);
    assert!(!message.metadata.truncation);
    assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    assert_eq!(message.queries.len(), 1);
    assert!(message.authorities.is_empty());
    message
}
