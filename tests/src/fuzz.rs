//! Fuzzing the XDP program through `BPF_PROG_TEST_RUN`: valid queries of
//! every shape resolvers send, mutated (flipped bits, cut lengths, bogus
//! section counts, compression pointers in the question, labels of 63 and
//! 64 bytes, names of 255 and 256, VLAN tags and IP options), and random
//! bytes. For each frame the program's verdict is checked:
//!
//! - passed: the frame is unchanged;
//! - dropped: it was a DNS response (QR set) to our port;
//! - answered: the answer frame is a correct reply to the input (addresses,
//!   ports, lengths, checksums) and its DNS message is the daemon's answer
//!   to the same query from the same client ([`crate::oracle`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dnslb::server::{Responder, Transport};
use hickory_proto::op::Message;

use crate::{
    frame::{
        CLIENT_IP, CLIENT_IP6, Opt, QueryFrame, internet_checksum, udp_frame_from, udp6_checksum,
        udp6_frame,
    },
    oracle::{ONLINE_ORIGIN, ONLINE_ZONE, PLAIN_ZONE, SIGNED_ZONE, loaded, same_answer},
    testrun::{XDP_DROP, XDP_PASS, XDP_TX},
};

/// What a fuzzing run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    pub frames: u64,
    pub answered: u64,
    pub passed: u64,
    pub dropped: u64,
}

/// A frame the program got wrong, in hex, and how.
#[derive(Debug, thiserror::Error)]
#[error("frame {index} (seed {seed}): {problem}\ninput  {input}\noutput {output}")]
pub struct Violation {
    pub index: u64,
    pub seed: u64,
    pub problem: String,
    pub input: String,
    pub output: String,
}

/// A name of exactly `len` wire bytes under long.test. (at least 12).
fn long_name(len: usize, first_label: usize) -> String {
    let mut labels = vec!["x".repeat(first_label)];
    let mut left = len - 11 - (first_label + 1);
    while left > 0 {
        let label = (left - 1).min(63);
        let label = if left - (label + 1) == 1 {
            label - 1
        } else {
            label
        };
        labels.push("y".repeat(label));
        left -= label + 1;
    }
    labels.push("long.test".into());
    labels.join(".")
}

/// The names asked: answered, unanswered, at and past every limit.
fn names() -> Vec<String> {
    let mut names: Vec<String> = [
        "www.plain.test",
        "WwW.PlAiN.TeSt",
        "odd1.plain.test",
        "ns.plain.test",
        "nothere.plain.test",
        "www.signed.test",
        "ns1.signed.test",
        "www.online.test",
        "One.Online.Test",
        "plain.test",
    ]
    .map(String::from)
    .into();
    names.push(long_name(255, 63));
    names.push(long_name(100, 63));
    // Past the limits: a 64-byte label, a 256-byte name.
    names.push(long_name(120, 64));
    names.push(format!("z.{}", long_name(255, 63)));
    names
}

/// The long.test zone: the long names, answered in the kernel.
fn long_zone() -> String {
    let mut zone = String::from("$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 198.18.0.2\n");
    for name in [long_name(255, 63), long_name(100, 63)] {
        zone += &format!("{name}. A 198.18.40.1\n{name}. AAAA 2001:db8::40:1\n");
    }
    zone
}

/// Every combination of name, type, EDNS and encapsulation fuzzed from.
fn seeds(cookie: &dyn Fn(IpAddr) -> [u8; 16]) -> Vec<QueryFrame> {
    let mut seeds = Vec::new();
    for name in names() {
        for qtype in [1u16, 28, 15] {
            for client in [IpAddr::V4(CLIENT_IP), IpAddr::V6(CLIENT_IP6)] {
                let opts = [
                    None,
                    Some(Opt::plain(1232)),
                    Some(Opt::plain(512).dnssec()),
                    Some(Opt::plain(1232).cookie([1; 8], &[])),
                    Some(Opt::plain(1232).cookie([2; 8], &cookie(client))),
                    Some(Opt::plain(1232).subnet(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 0)), 24)),
                    Some(Opt::plain(4096).subnet(
                        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0)),
                        56,
                    )),
                    Some(
                        Opt::plain(1232)
                            .dnssec()
                            .cookie([3; 8], &[])
                            .subnet(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 0)), 24),
                    ),
                ];
                for opt in opts {
                    let mut query = QueryFrame::a(&name).with_type(qtype).from_client(client);
                    query.opt = opt;
                    seeds.push(query.clone());
                    query.vlan = Some(7);
                    if client.is_ipv4() {
                        query.ip_options = vec![1, 1, 1, 0];
                    }
                    seeds.push(query);
                }
            }
        }
    }
    seeds
}

/// xorshift64*: fast, and the same frames for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `query`'s frame with its DNS message mutated, lengths and checksums
/// made right again, so the mutation reaches the DNS parser.
fn mutate_message(query: &QueryFrame, rng: &mut Rng) -> Vec<u8> {
    let mut dns = query.dns();
    match rng.below(8) {
        0 => {
            for _ in 0..=rng.below(3) {
                let bit = rng.below(dns.len() * 8);
                dns[bit / 8] ^= 1 << (bit % 8);
            }
        }
        // Bogus section counts.
        1 => {
            let at = 4 + 2 * rng.below(4);
            let count = [0u16, 1, 2, 0xffff, rng.next() as u16][rng.below(5)];
            dns[at..at + 2].copy_from_slice(&count.to_be_bytes());
        }
        // A compression pointer inside the question, back at the header
        // or at the name itself.
        2 => {
            let at = 12 + rng.below(dns.len().saturating_sub(16).max(1));
            let target = [0u16, 12, at as u16, rng.next() as u16 & 0x3fff][rng.below(4)];
            let pointer = (0xc000 | target).to_be_bytes();
            dns.splice(at..(at + 2).min(dns.len()), pointer);
        }
        3 => dns.truncate(rng.below(dns.len())),
        4 => dns.extend((0..=rng.below(40)).map(|_| rng.next() as u8)),
        // A label length off by one either way.
        5 => {
            let delta = if rng.below(2) == 0 { 1 } else { 0xff };
            dns[12] = dns[12].wrapping_add(delta);
        }
        6 => {
            let at = 12 + rng.below(dns.len() - 12);
            dns[at] = rng.next() as u8;
        }
        // QR set: a response sent to our port.
        _ => dns[2] |= 0x80,
    }
    match query.client {
        IpAddr::V4(client) => udp_frame_from(
            client,
            query.vlan,
            &query.ip_options,
            query.source_port,
            query.port,
            &dns,
        ),
        IpAddr::V6(client) => {
            udp6_frame(client, query.vlan, 17, query.source_port, query.port, &dns)
        }
    }
}

const ETHERNET_LEN: usize = 14;

/// One fuzzed frame from `seeds`.
fn next_frame(seeds: &[QueryFrame], rng: &mut Rng) -> Vec<u8> {
    let query = &seeds[rng.below(seeds.len())];
    match rng.below(10) {
        0 => query.build(),
        1..=5 => mutate_message(query, rng),
        6 => {
            let mut frame = query.build();
            for _ in 0..=rng.below(4) {
                let bit = rng.below(frame.len() * 8);
                frame[bit / 8] ^= 1 << (bit % 8);
            }
            frame
        }
        // No frame shorter than an Ethernet header reaches XDP (nor does
        // BPF_PROG_TEST_RUN take one).
        7 => {
            let mut frame = query.build();
            frame.truncate(ETHERNET_LEN + rng.below(frame.len() - ETHERNET_LEN));
            frame
        }
        8 => {
            let mut frame = query.build();
            let at = rng.below(frame.len());
            frame[at] = rng.next() as u8;
            frame
        }
        _ => (0..ETHERNET_LEN + rng.below(600))
            .map(|_| rng.next() as u8)
            .collect(),
    }
}

/// Runs `frames` fuzzed frames from `seed` through the program.
pub fn run(frames: u64, seed: u64) -> Result<Report, Violation> {
    let long = long_zone();
    let zones = [
        ("plain.test.", PLAIN_ZONE),
        ("signed.test.", SIGNED_ZONE),
        (ONLINE_ORIGIN, ONLINE_ZONE),
        ("long.test.", long.as_str()),
    ];
    let (mut dataplane, responder, secrets) = loaded(&zones);
    let now = dnslb::server::unix_now();
    let cookie = |client: IpAddr| {
        let addr = match client {
            IpAddr::V4(v4) => dns_common::cookie::CookieAddr::V4(v4.octets()),
            IpAddr::V6(v6) => dns_common::cookie::CookieAddr::V6(v6.octets()),
        };
        secrets.mint(now, [2; 8], addr)
    };
    let seeds = seeds(&cookie);
    let mut rng = Rng(seed | 1);
    let mut report = Report::default();
    for index in 0..frames {
        let input = next_frame(&seeds, &mut rng);
        let violation = |problem: String, output: &[u8]| Violation {
            index,
            seed,
            problem,
            input: hex(&input),
            output: hex(output),
        };
        let outcome = dataplane
            .test_run(&input, 1)
            .map_err(|error| violation(format!("BPF_PROG_TEST_RUN: {error}"), &[]))?;
        report.frames += 1;
        match outcome.action {
            XDP_PASS if outcome.frame == input => report.passed += 1,
            XDP_PASS => return Err(violation("passed, but changed".into(), &outcome.frame)),
            XDP_DROP => {
                if !is_response_to_us(&input) {
                    return Err(violation(
                        "dropped, but not a response".into(),
                        &outcome.frame,
                    ));
                }
                report.dropped += 1;
            }
            XDP_TX => {
                check_answer(&responder, &input, &outcome.frame)
                    .map_err(|problem| violation(problem, &outcome.frame))?;
                report.answered += 1;
            }
            other => return Err(violation(format!("action {other}"), &outcome.frame)),
        }
    }
    Ok(report)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The parts of a UDP frame the checks need.
struct Udp<'a> {
    /// Where the IP header starts (after Ethernet and a VLAN tag).
    l3: usize,
    /// Where the UDP header starts.
    l4: usize,
    v6: bool,
    client: IpAddr,
    /// The UDP payload, as long as the UDP header says.
    payload: &'a [u8],
}

fn parse_udp(frame: &[u8]) -> Option<Udp<'_>> {
    let be16 = |at: usize| Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    let (l3, ethertype) = match be16(12)? {
        0x8100 => (18, be16(16)?),
        ethertype => (14, ethertype),
    };
    let (l4, v6, client) = match ethertype {
        0x0800 => {
            let ihl = usize::from(frame.get(l3)? & 0x0f) * 4;
            let source: [u8; 4] = frame.get(l3 + 12..l3 + 16)?.try_into().ok()?;
            (l3 + ihl, false, IpAddr::from(source))
        }
        0x86dd => {
            let source: [u8; 16] = frame.get(l3 + 8..l3 + 24)?.try_into().ok()?;
            (l3 + 40, true, IpAddr::V6(Ipv6Addr::from(source)))
        }
        _ => return None,
    };
    let udp_len = usize::from(be16(l4 + 4)?);
    let payload = frame.get(l4 + 8..l4 + udp_len.max(8))?;
    Some(Udp {
        l3,
        l4,
        v6,
        client,
        payload,
    })
}

fn is_response_to_us(frame: &[u8]) -> bool {
    parse_udp(frame).is_some_and(|udp| {
        frame.get(udp.l4 + 2..udp.l4 + 4) == Some(&[0, 53])
            && udp.payload.len() >= 12
            && udp.payload[2] & 0x80 != 0
    })
}

/// Whether `output` is the right answer frame to `input`: headers turned
/// around with lengths and checksums right, and the DNS message the
/// daemon's answer to the input's.
fn check_answer(responder: &Responder, input: &[u8], output: &[u8]) -> Result<(), String> {
    let query = parse_udp(input).ok_or("answered a frame that is not UDP")?;
    let answer = parse_udp(output).ok_or("the answer is not UDP")?;
    let same = |what: &str, a: Option<&[u8]>, b: Option<&[u8]>| {
        if a.is_some() && a == b {
            Ok(())
        } else {
            Err(format!("{what}: {a:?} against {b:?}"))
        }
    };
    // The answer has the query's pair of source and destination at
    // `first` and `second` the other way round.
    let swapped = |what: &str, first: std::ops::Range<usize>, second: std::ops::Range<usize>| {
        same(what, output.get(first.clone()), input.get(second.clone()))?;
        same(what, output.get(second), input.get(first))
    };
    let (l3, l4) = (query.l3, query.l4);
    if (answer.l3, answer.l4, answer.v6) != (l3, l4, query.v6) {
        return Err("the answer's headers are laid out otherwise".into());
    }
    swapped("MAC addresses", 0..6, 6..12)?;
    same("VLAN and ethertype", output.get(12..l3), input.get(12..l3))?;
    swapped("ports", l4..l4 + 2, l4 + 2..l4 + 4)?;
    if output.len() != l4 + 8 + answer.payload.len() {
        return Err("UDP length".into());
    }
    if query.v6 {
        swapped("IPv6 addresses", l3 + 8..l3 + 24, l3 + 24..l3 + 40)?;
        let payload_len = u16::from_be_bytes([output[l3 + 4], output[l3 + 5]]);
        if usize::from(payload_len) != output.len() - l3 - 40 || output[l3 + 7] != 64 {
            return Err("IPv6 payload length or hop limit".into());
        }
        let server =
            Ipv6Addr::from(<[u8; 16]>::try_from(&output[l3 + 8..l3 + 24]).unwrap_or_default());
        let IpAddr::V6(client) = query.client else {
            return Err("IPv6 from an IPv4 client".into());
        };
        if udp6_checksum(server, client, &output[l4..]) != 0xffff {
            return Err("UDP checksum over IPv6".into());
        }
    } else {
        swapped("IPv4 addresses", l3 + 12..l3 + 16, l3 + 16..l3 + 20)?;
        same(
            "IP options",
            output.get(l3 + 20..l4),
            input.get(l3 + 20..l4),
        )?;
        let total = u16::from_be_bytes([output[l3 + 2], output[l3 + 3]]);
        if usize::from(total) != output.len() - l3
            || output[l3 + 8] != 64
            || internet_checksum(&output[l3..l4]) != 0
        {
            return Err("IPv4 length, TTL or header checksum".into());
        }
    }
    let kernel = Message::from_vec(answer.payload)
        .map_err(|error| format!("undecodable answer: {error}"))?;
    let daemon = responder
        .respond(query.payload, query.client, Transport::Udp)
        .ok_or("the kernel answered what the daemon does not")?;
    let daemon =
        Message::from_vec(&daemon).map_err(|error| format!("the daemon's answer: {error}"))?;
    same_answer(&kernel, &daemon)
}
