//! A zone signed elsewhere (BIND's dnssec-signzone, `tests/zones/`)
//! served by dnslb on the veth rig with its XDP program attached, and
//! checked by a validating client: BIND's `delv`, in the client namespace,
//! with the zone's key-signing key as its trust anchor. Every shape of
//! answer RFC 4035 §3.1 and RFC 5155 §7.2 describe validates, for NSEC and
//! NSEC3 alike: positive answers, a CNAME, a wildcard, NXDOMAIN, NODATA at
//! a name, at an empty non-terminal and at a wildcard, a DS and the proof
//! of no DS. A wrong trust anchor validates nothing. The kernel passes
//! these DO queries to the daemon, and answers plain ones as before.
//! Needs root.

use dnslb_tests::{
    daemon::{Answered, Daemon, RIG_METRICS, ZoneFile, kdig, sample, scrape},
    netns::{Rig, SERVER_ADDR},
    signed::{ORIGIN, anchor, delv, each_validating_resolver, trust_anchor, validated, zone_file},
};
use hickory_proto::{op::ResponseCode, rr::RecordType};

/// Each name and type, and whether the answer is positive.
const CASES: [(&str, &str, bool); 11] = [
    ("www.signed.test.", "A", true),
    ("www.signed.test.", "AAAA", true),
    ("alias.signed.test.", "A", true),
    ("x.wild.signed.test.", "A", true),
    ("secure.signed.test.", "DS", true),
    ("signed.test.", "DNSKEY", true),
    ("nope.signed.test.", "A", false),
    ("www.signed.test.", "TXT", false),
    ("b.c.signed.test.", "TXT", false),
    ("x.wild.signed.test.", "TXT", false),
    ("insecure.signed.test.", "DS", false),
];

fn every_answer_validates(file: &str) {
    let zone = ZoneFile {
        origin: ORIGIN.into(),
        file: zone_file(file),
    };
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let daemon = Daemon::start_on_rig(&rig, &zone, true, &[]).expect("dnslb starts");
    let dir = std::env::temp_dir().join(format!("dnslb-presigned-{file}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let anchor = trust_anchor(&dir, false).expect("the anchor");
    let wrong = trust_anchor(&dir, true).expect("the wrong anchor");
    let ask = |anchor, name, record_type| {
        delv(
            rig.client.command("delv"),
            anchor,
            SERVER_ADDR,
            53,
            name,
            record_type,
        )
        .expect("delv runs (install bind9-dnsutils)")
    };

    let before = Answered::scrape(&rig).unwrap();
    for (name, record_type, positive) in CASES {
        let said = ask(&anchor, name, record_type);
        assert!(
            validated(&said, positive),
            "{file}: {name} {record_type}: {said}\n{}",
            daemon.log_text()
        );
        let refused = ask(&wrong, name, record_type);
        assert!(
            !refused.contains("fully validated"),
            "{file}: {name} {record_type} with a wrong anchor: {refused}"
        );
    }
    // delv's DO queries for the hot names' addresses were the kernel's,
    // answered with the zone file's signatures: among those validated.
    let after = Answered::scrape(&rig).unwrap();
    assert!(
        after.xdp > before.xdp,
        "the kernel answered signed: {:?} before, {:?} after",
        before.xdp,
        after.xdp
    );

    // A plain query is the kernel's, and carries no DNSSEC records.
    let plain = kdig(
        &rig.client,
        &[
            &format!("@{SERVER_ADDR}"),
            "+noall",
            "+answer",
            "www.signed.test.",
            "A",
        ],
    )
    .expect("kdig");
    assert_eq!(plain.lines().count(), 2, "{plain}");
    assert!(!plain.contains("RRSIG"), "{plain}");
    let plain_after = Answered::scrape(&rig).unwrap();
    assert_eq!(
        plain_after.xdp.unwrap_or(0),
        after.xdp.unwrap_or(0) + 1,
        "the kernel answered the plain query"
    );

    // What the operator sees: the keys, the DS for the registrar (as
    // BIND's dnssec-dsfromkey computes it), and the metrics to alert on.
    let ds = daemon
        .cli(&["dnssec", "ds", "signed.test"])
        .expect("dnssec ds");
    assert_eq!(
        ds,
        format!(
            "signed.test. IN DS {}\n",
            dnslb_tests::signed::anchor(false).unwrap().ds
        )
    );
    let status = daemon.cli(&["dnssec", "status"]).expect("dnssec status");
    for part in [
        "64066",
        "KSK",
        "11056",
        "ZSK",
        "ECDSAP256SHA256 (13)",
        "in ",
    ] {
        assert!(status.contains(part), "{part} in {status}");
    }
    let metrics = scrape(&rig.server, RIG_METRICS).unwrap();
    assert_eq!(
        sample(
            &metrics,
            "dnslb_dnssec_keys{role=\"ksk\",zone=\"signed.test.\"}"
        ),
        Some(1),
        "{metrics}"
    );
    let expiry: f64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("dnslb_dnssec_first_signature_expiry_seconds{zone=\"signed.test.\"} ")
        })
        .and_then(|value| value.parse().ok())
        .expect("the expiry gauge");
    // The fixture's signatures expire on 2046-01-01: years ahead.
    assert!(expiry > 3e8, "{expiry}");
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_zone_signed_with_nsec_validates_in_every_answer() {
    every_answer_validates("signed.test.nsec.zone");
}

#[test]
fn a_zone_signed_with_nsec3_validates_in_every_answer() {
    every_answer_validates("signed.test.nsec3.zone");
}

/// The validating resolvers the world uses, each in the client namespace
/// with the zone's key as its trust anchor and the zone forwarded to
/// dnslb: every answer is right and validated (AD set); with a wrong
/// anchor, the same names get SERVFAIL, so validation is really on.
#[test]
fn every_validating_resolver_validates_a_zone_signed_elsewhere() {
    let zone = ZoneFile {
        origin: ORIGIN.into(),
        file: zone_file("signed.test.nsec3.zone"),
    };
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let daemon = Daemon::start_on_rig(&rig, &zone, true, &[]).expect("dnslb starts");
    let dir =
        std::env::temp_dir().join(format!("dnslb-presigned-resolvers-{}", std::process::id()));
    let (right, wrong) = (anchor(false).unwrap(), anchor(true).unwrap());
    each_validating_resolver(&rig, &dir, &right, &wrong, |resolver, valid| {
        let kind = resolver.kind;
        for (name, record_type, positive) in CASES {
            let record_type: RecordType = record_type.parse().unwrap();
            let answer = resolver
                .resolve(&rig.client, name, record_type)
                .unwrap()
                .unwrap_or_else(|| panic!("{}: {name} {record_type}: no answer", kind.name()));
            let what = format!(
                "{}: {name} {record_type} ({}): {answer:?}\n{}",
                kind.name(),
                if valid {
                    "right anchor"
                } else {
                    "wrong anchor"
                },
                resolver.log_text()
            );
            if !valid {
                assert_eq!(
                    answer.metadata.response_code,
                    ResponseCode::ServFail,
                    "{what}"
                );
                continue;
            }
            assert!(answer.metadata.authentic_data, "validated: {what}");
            let expected_rcode = match name {
                "nope.signed.test." => ResponseCode::NXDomain,
                _ => ResponseCode::NoError,
            };
            assert_eq!(answer.metadata.response_code, expected_rcode, "{what}");
            assert_eq!(
                answer
                    .answers
                    .iter()
                    .any(|r| r.record_type() == record_type),
                positive,
                "{what}"
            );
        }
    });
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
