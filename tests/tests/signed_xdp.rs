//! Signed answers from the kernel, through `BPF_PROG_TEST_RUN`: DO
//! queries for the hot names of a zone dnslb signs online and of a zone
//! signed elsewhere, answered with the daemon's very bytes; weighted picks
//! each with the signature of the endpoint drawn; and the queries the
//! kernel must leave to the daemon (signatures past their time, a variant
//! without one).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dns_common::{Counter, HotName};
use dnslb::{
    dataplane::{Endpoint, HotAnswer, HotSignatures, HotType, RrsetSigner, Rrsigs, sync_hot},
    server::{Responder, Transport},
    signer::{SigningPolicy, ZoneSigner, now},
};
use dnslb_tests::{
    frame::{Opt, QueryFrame, wire_name},
    oracle::{SIGNED_ZONE, TEST_ZONES, catalog, loaded_signed},
    signed,
    testrun::{XDP_PASS, XDP_TX, answer_payload, program, run},
};
use hickory_proto::{
    op::Message,
    rr::{RData, RecordType},
};

/// The DNS message with its cookie option's server cookie zeroed: the
/// kernel and the daemon make theirs from the same secret and the clock,
/// which may have ticked between the two.
fn cookie_aside(message: &[u8]) -> Vec<u8> {
    let mut bytes = message.to_vec();
    let cookie = dns_common::wire::OPTION_COOKIE.to_be_bytes();
    if let Some(at) = bytes
        .windows(4)
        .rposition(|w| w[..2] == cookie && w[2..] == [0, 24])
    {
        bytes[at + 4 + 8..at + 4 + 24].fill(0);
    }
    bytes
}

/// Whether the kernel's answer to `query` is, byte for byte (cookies
/// aside), one the daemon gives to the same query: the daemon rotates
/// records from one answer to the next, so it is asked for each turn.
fn daemon_sends(responder: &Responder, query: &QueryFrame, kernel: &[u8]) -> bool {
    (0..4).any(|_| {
        let daemon = responder
            .respond(&query.dns(), query.client, Transport::Udp)
            .expect("the daemon answers");
        cookie_aside(&daemon) == cookie_aside(kernel)
    })
}

fn rrsigs(message: &Message) -> usize {
    message
        .answers
        .iter()
        .filter(|record| record.record_type() == RecordType::RRSIG)
        .count()
}

#[test]
fn do_queries_for_signed_hot_names_get_the_daemons_bytes() {
    let (mut dataplane, responder, _, _) = loaded_signed(&TEST_ZONES, SigningPolicy::default());
    let client6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 9));
    let options = [
        ("DO", Opt::plain(1232).dnssec()),
        (
            "DO and a cookie",
            Opt::plain(1232).dnssec().cookie([7; 8], &[]),
        ),
        (
            "DO and a Client Subnet",
            Opt::plain(4096)
                .dnssec()
                .subnet(IpAddr::V4(Ipv4Addr::new(198, 18, 77, 0)), 24),
        ),
        (
            "DO, a cookie and a Client Subnet",
            Opt::plain(1232)
                .dnssec()
                .cookie([8; 8], &[])
                .subnet(client6, 56),
        ),
    ];
    let mut answered = 0;
    for name in ["www.online.test", "one.online.test", "www.signed.test"] {
        for qtype in [RecordType::A, RecordType::AAAA] {
            for over_ipv6 in [false, true] {
                for (case, opt) in &options {
                    let mut query = QueryFrame::a(name)
                        .with_type(u16::from(qtype))
                        .with_opt(opt.clone());
                    if over_ipv6 {
                        query = query.over_ipv6();
                    }
                    let input = query.build();
                    let outcome = run(&mut dataplane, &input);
                    let what = format!("{name} {qtype} {case}, over IPv6: {over_ipv6}");
                    assert_eq!(outcome.action, XDP_TX, "{what}: answered in the kernel");
                    let payload = answer_payload(&query, &input, &outcome);
                    let message = Message::from_vec(payload).expect("the answer decodes");
                    assert_eq!(rrsigs(&message), 1, "{what}: signed");
                    assert!(
                        daemon_sends(&responder, &query, payload),
                        "{what}: the daemon's bytes"
                    );
                    answered += 1;
                }
            }
        }
    }
    assert_eq!(answered, 3 * 2 * 2 * 4);
}

#[test]
fn weighted_picks_carry_the_signature_of_the_endpoint_drawn() {
    let (mut dataplane, _, _, signer) = loaded_signed(&TEST_ZONES, SigningPolicy::default());
    let name = HotName::from_wire(&wire_name("lb.online.test")).expect("a name");
    let endpoints: Vec<IpAddr> = (1..=3)
        .map(|last| IpAddr::V4(Ipv4Addr::new(198, 18, 31, last)))
        .collect();
    let value = HotAnswer::Weighted {
        ttl: 30,
        endpoints: endpoints
            .iter()
            .map(|addr| Endpoint {
                addr: *addr,
                weight: 1,
            })
            .collect(),
    }
    .encode(HotType::A)
    .expect("encodable")
    .with_flags(dns_common::SET_SIGNED);
    let signatures = HotSignatures::sign(&name, &value, signer.as_ref()).expect("signed");
    assert_eq!(signatures.variants.len(), 3, "one signature per endpoint");
    dataplane
        .set_hot_signed(&name, &value, Some(&signatures))
        .expect("written");

    let query = QueryFrame::a("lb.online.test").with_opt(Opt::plain(1232).dnssec());
    let mut drawn = [0; 3];
    for _ in 0..150 {
        let input = query.build();
        let outcome = run(&mut dataplane, &input);
        assert_eq!(outcome.action, XDP_TX);
        let message = Message::from_vec(answer_payload(&query, &input, &outcome)).unwrap();
        let [address, rrsig] = message.answers.as_slice() else {
            panic!("one address and its signature: {message:?}");
        };
        let RData::A(a) = &address.data else {
            panic!("an address first: {address:?}");
        };
        let index = endpoints
            .iter()
            .position(|e| *e == IpAddr::V4(a.0))
            .expect("one of the endpoints");
        drawn[index] += 1;
        // The signature is the one of the RRset of that one address, as
        // the signer makes it.
        let expected = signer
            .rrsigs(&name, HotType::A, 30, &[endpoints[index]])
            .expect("signed");
        let mut wire = Vec::new();
        dnslb::zone::wire::append_rrsig_record(&mut wire, 30, &rrsig_data(rrsig)).unwrap();
        assert_eq!(wire, expected.wire, "endpoint {index}'s signature");
    }
    assert!(
        drawn.iter().all(|&n| n > 20),
        "every endpoint drawn: {drawn:?}"
    );
}

/// An RRSIG record's data, in wire form.
fn rrsig_data(record: &hickory_proto::rr::Record) -> Vec<u8> {
    use hickory_proto::serialize::binary::BinEncodable;
    record.data.to_bytes().expect("encodes")
}

/// The real signer's signatures, given a time by which they must already
/// have been replaced: as when renewing them failed.
struct Overdue<'a>(&'a ZoneSigner);

impl RrsetSigner for Overdue<'_> {
    fn rrsigs(
        &self,
        owner: &HotName,
        hot_type: HotType,
        ttl: u32,
        addrs: &[IpAddr],
    ) -> Option<Rrsigs> {
        let rrsigs = self.0.rrsigs(owner, hot_type, ttl, addrs)?;
        Some(Rrsigs {
            until: now() - 1,
            ..rrsigs
        })
    }
}

#[test]
fn signatures_past_their_time_and_missing_variants_pass() {
    let (mut dataplane, _, _, signer) = loaded_signed(&TEST_ZONES, SigningPolicy::default());
    let name = HotName::from_wire(&wire_name("www.online.test")).expect("a name");
    let query = QueryFrame::a("www.online.test").with_opt(Opt::plain(1232).dnssec());
    let kernel = dataplane
        .kernel_value(&name, HotType::A, [0; 16], 0)
        .unwrap()
        .expect("held");
    let plain = kernel.with_signatures(Default::default());

    let overdue = HotSignatures::sign(&name, &plain, &Overdue(&signer)).expect("signed");
    dataplane
        .set_hot_signed(&name, &plain, Some(&overdue))
        .expect("written");
    // The kernel's answer, or `None` when the query passed as unsigned.
    let kernel_answer = |dataplane: &mut dnslb::dataplane::Dataplane, query: &QueryFrame| {
        let before = dataplane.counters().unwrap().get(Counter::PassUnsigned);
        let input = query.build();
        let outcome = run(dataplane, &input);
        let after = dataplane.counters().unwrap().get(Counter::PassUnsigned);
        match outcome.action {
            XDP_PASS => {
                assert_eq!(outcome.frame, input, "passed unchanged");
                assert_eq!(after, before + 1, "counted as unsigned");
                None
            }
            XDP_TX => Some(Message::from_vec(answer_payload(query, &input, &outcome)).unwrap()),
            other => panic!("action {other}"),
        }
    };
    let passed = |dataplane: &mut dnslb::dataplane::Dataplane, query: &QueryFrame| {
        kernel_answer(dataplane, query).is_none()
    };
    assert!(passed(&mut dataplane, &query), "never an overdue signature");
    let without_do = QueryFrame::a("www.online.test");
    assert!(!passed(&mut dataplane, &without_do), "no DO: answered");

    // Signatures written again in time are sent again.
    let fresh = HotSignatures::sign(&name, &plain, signer.as_ref()).expect("signed");
    dataplane
        .set_hot_signed(&name, &plain, Some(&fresh))
        .expect("written");
    assert!(!passed(&mut dataplane, &query), "answered, signed");
    assert_eq!(dataplane.passed_unsigned().count(), 0, "no name passed");

    // A weighted pick of two endpoints with a signature for the first
    // only: draws of the second are the daemon's.
    let endpoints = [1, 2].map(|last| Endpoint {
        addr: IpAddr::V4(Ipv4Addr::new(198, 18, 32, last)),
        weight: 1,
    });
    let weighted = HotAnswer::Weighted {
        ttl: 30,
        endpoints: endpoints.to_vec(),
    }
    .encode(HotType::A)
    .unwrap()
    .with_flags(dns_common::SET_SIGNED);
    let mut first_only = HotSignatures::sign(&name, &weighted, signer.as_ref()).unwrap();
    first_only.variants.truncate(1);
    dataplane
        .set_hot_signed(&name, &weighted, Some(&first_only))
        .expect("written");
    let (mut sent, mut left) = (0, 0);
    for _ in 0..100 {
        let Some(message) = kernel_answer(&mut dataplane, &query) else {
            left += 1;
            continue;
        };
        assert_eq!(
            message.answers[0].data,
            RData::A(Ipv4Addr::new(198, 18, 32, 1).into()),
            "only the signed endpoint is sent"
        );
        assert_eq!(rrsigs(&message), 1);
        sent += 1;
    }
    assert!(sent > 20 && left > 20, "sent {sent}, left {left}");

    // A value with no signatures at all: passed, and `dnslb status` names it.
    dataplane.set_hot(&name, &weighted).expect("written");
    assert!((0..10).all(|_| passed(&mut dataplane, &query)));
    let listed: Vec<_> = dataplane
        .passed_unsigned()
        .map(|(listed, hot_type, reason)| (listed.wire().to_vec(), hot_type, reason))
        .collect();
    assert_eq!(
        listed,
        [(
            name.wire().to_vec(),
            HotType::A,
            "no signatures for its answers"
        )],
        "listed for `dnslb status`"
    );
}

/// A zone signed elsewhere, signed again (the same records, new RRSIGs):
/// the reload brings the new signatures into the kernel, whose answers are
/// again the daemon's.
#[test]
fn a_reloaded_zone_signed_elsewhere_brings_its_new_signatures() {
    let resigned = std::fs::read_to_string(signed::zone_file("signed.test.nsec3.zone")).unwrap();
    let before = catalog(&[("signed.test.", SIGNED_ZONE)]);
    let after = catalog(&[("signed.test.", &resigned)]);
    let mut dataplane = program();
    sync_hot(&mut dataplane, (None, &before), &|_, _| false, &|_| None).unwrap();
    let query = QueryFrame::a("www.signed.test").with_opt(Opt::plain(1232).dnssec());
    let signature = |dataplane: &mut dnslb::dataplane::Dataplane| {
        let input = query.build();
        let outcome = run(dataplane, &input);
        assert_eq!(outcome.action, XDP_TX, "answered in the kernel");
        let payload = answer_payload(&query, &input, &outcome).to_vec();
        let message = Message::from_vec(&payload).unwrap();
        let rrsig = message
            .answers
            .iter()
            .find(|r| r.record_type() == RecordType::RRSIG)
            .expect("signed")
            .clone();
        (rrsig, payload)
    };
    let (old, _) = signature(&mut dataplane);
    sync_hot(
        &mut dataplane,
        (Some(&before), &after),
        &|_, _| false,
        &|_| None,
    )
    .unwrap();
    let (new, payload) = signature(&mut dataplane);
    assert_ne!(old, new, "the new file's signature");
    let responder = Responder::new(after, dnslb_tests::testrun::EDNS_PAYLOAD);
    assert!(
        daemon_sends(&responder, &query, &payload),
        "the daemon's bytes"
    );
}
