//! What a correct kernel answer is: the daemon's answer to the same
//! query. The test zones both are loaded with, the program and the
//! responder set up alike, and the comparison of their answers, for the
//! tests of resolver-shaped queries and for the fuzzer.

use std::{collections::BTreeSet, net::IpAddr, path::Path, sync::Arc};

use dns_common::cookie::CookieSecrets;
use dnslb::{
    dataplane::{Dataplane, RrsetSigner, sync_hot},
    server::{CookieKeys, Responder, Signers},
    signer::{SigningPolicy, ZoneSigner, now},
    zone::{Catalog, WireName, parse_zone},
};
use hickory_proto::{
    op::Message,
    rr::{
        Name, Record,
        rdata::opt::{EdnsCode, EdnsOption},
    },
};

use crate::testrun::{EDNS_PAYLOAD, program};

pub const PLAIN_ZONE: &str = "$TTL 300
@        SOA  ns hostmaster 1 7200 3600 1209600 60
@        NS   ns
ns       A    198.18.0.2
www      A    198.18.10.1
         A    198.18.10.2
         A    198.18.10.3
         AAAA 2001:db8::10:1
         AAAA 2001:db8::10:2
odd1     A    198.18.10.4
         AAAA 2001:db8::10:4
";

/// A zone signed elsewhere (the fixture `signed.test.nsec.zone`).
pub const SIGNED_ZONE: &str = include_str!("../zones/signed.test.nsec.zone");

/// The zone the oracle's daemon signs online.
pub const ONLINE_ORIGIN: &str = "online.test.";
pub const ONLINE_ZONE: &str = "$TTL 300
@        SOA  ns hostmaster 1 7200 3600 1209600 60
@        NS   ns
ns       A    198.18.0.2
www      A    198.18.30.1
         A    198.18.30.2
         AAAA 2001:db8::30:1
one      A    198.18.30.3
         AAAA 2001:db8::30:3
";

/// The test zones: plain.test, signed.test signed elsewhere and
/// online.test signed online.
pub const TEST_ZONES: [(&str, &str); 3] = [
    ("plain.test.", PLAIN_ZONE),
    ("signed.test.", SIGNED_ZONE),
    (ONLINE_ORIGIN, ONLINE_ZONE),
];

/// A catalog of `zones` (origin, text); [`ONLINE_ORIGIN`] is signed online.
pub fn catalog(zones: &[(&str, &str)]) -> Catalog {
    let mut catalog = Catalog::default();
    for (origin, text) in zones {
        let origin = Name::from_ascii(origin).expect("a test origin");
        let mut zone = parse_zone(&origin, text, Path::new("t.zone")).expect("a test zone");
        if origin == Name::from_ascii(ONLINE_ORIGIN).expect("the online origin") {
            zone.sign_online();
        }
        catalog.insert(zone);
    }
    catalog
}

/// A signer for [`ONLINE_ORIGIN`] with `policy`, its keys made in a new
/// scratch directory.
pub fn online_signer(policy: SigningPolicy) -> Arc<ZoneSigner> {
    let dir = std::env::temp_dir().join(format!(
        "dnslb-oracle-keys-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let origin = Name::from_ascii(ONLINE_ORIGIN).expect("the online origin");
    Arc::new(ZoneSigner::open(&origin, policy, &dir, None, now()).expect("keys made"))
}

/// The program with `zones` written as the daemon writes them, and the
/// daemon's responder over the same zones, with the same cookie secrets
/// and the same signer of [`ONLINE_ORIGIN`].
pub fn loaded(zones: &[(&str, &str)]) -> (Dataplane, Responder, CookieSecrets) {
    let (dataplane, responder, secrets, _) = loaded_signed(zones, SigningPolicy::default());
    (dataplane, responder, secrets)
}

/// As [`loaded`], with the online zone signed by `policy`; its signer too.
pub fn loaded_signed(
    zones: &[(&str, &str)],
    policy: SigningPolicy,
) -> (Dataplane, Responder, CookieSecrets, Arc<ZoneSigner>) {
    let mut dataplane = program();
    let catalog = catalog(zones);
    let signer = online_signer(policy);
    let apex = WireName::from_name(&Name::from_ascii(ONLINE_ORIGIN).expect("the online origin"))
        .expect("a wire name");
    let signers = Signers::from([(apex, signer.clone())]);
    let report = sync_hot(&mut dataplane, (None, &catalog), &|_, _| false, &|origin| {
        signers
            .get(origin)
            .map(|signer| signer.as_ref() as &dyn RrsetSigner)
    })
    .expect("written");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let secrets = CookieKeys::generated().expect("a secret").secrets();
    dataplane.set_cookie_secrets(&secrets).expect("written");
    let responder = Responder::new(catalog, EDNS_PAYLOAD);
    responder.set_cookie_secrets(secrets);
    responder.set_signers(signers);
    (dataplane, responder, secrets, signer)
}

/// The option `code` of the answer's OPT record.
pub fn option(message: &Message, code: EdnsCode) -> Option<Vec<u8>> {
    let edns = message.edns.as_ref()?;
    match edns.options().get(code)? {
        EdnsOption::Unknown(_, data) => Some(data.clone()),
        EdnsOption::Subnet(subnet) => {
            let mut data = Vec::new();
            let (family, octets) = match subnet.addr() {
                IpAddr::V4(v4) => (1u16, v4.octets().to_vec()),
                IpAddr::V6(v6) => (2u16, v6.octets().to_vec()),
            };
            data.extend_from_slice(&family.to_be_bytes());
            data.extend_from_slice(&[subnet.source_prefix(), subnet.scope_prefix()]);
            data.extend_from_slice(&octets[..usize::from(subnet.source_prefix()).div_ceil(8)]);
            Some(data)
        }
        other => panic!("unexpected option {other:?}"),
    }
}

/// Everything a client sees except the cookie (its timestamp may tick
/// between the two answers) and the order of records in a rotated set.
pub fn summary(message: &Message) -> String {
    let records: BTreeSet<String> = message.answers.iter().map(Record::to_string).collect();
    let edns = message.edns.as_ref().map(|edns| {
        let options: Vec<String> = edns
            .options()
            .as_ref()
            .iter()
            .filter(|(code, _)| *code != EdnsCode::Cookie)
            .map(|(code, option)| format!("{code:?}={option:?}"))
            .collect();
        (
            edns.max_payload(),
            edns.version(),
            edns.flags().dnssec_ok,
            options,
        )
    });
    format!(
        "{:?} {:?} aa={} rd={} cd={} q={:?} an={records:?} ns={:?} ar={:?} edns={edns:?}",
        message.metadata.id,
        message.metadata.response_code,
        message.metadata.authoritative,
        message.metadata.recursion_desired,
        message.metadata.checking_disabled,
        message.queries,
        message.authorities,
        message.additionals,
    )
}

/// Whether the kernel's answer is the daemon's: everything [`summary`]
/// shows, and a cookie in both or in neither.
pub fn same_answer(kernel: &Message, daemon: &Message) -> Result<(), String> {
    let (kernel_summary, daemon_summary) = (summary(kernel), summary(daemon));
    if kernel_summary != daemon_summary {
        return Err(format!(
            "kernel and daemon differ:\n kernel {kernel_summary}\n daemon {daemon_summary}"
        ));
    }
    let cookies = (
        option(kernel, EdnsCode::Cookie),
        option(daemon, EdnsCode::Cookie),
    );
    if cookies.0.is_some() != cookies.1.is_some() {
        return Err(format!("a cookie in one answer only: {cookies:?}"));
    }
    Ok(())
}
