//! The resolvers that query authoritative servers on the internet, pointed
//! at dnslb on the veth rig: each resolves 50 hot names, A and AAAA, in a
//! zone it reaches over IPv4 and one it reaches over IPv6. At least 99% of
//! the queries each sends for hot names must be answered by the kernel,
//! counted by the kernel's own counters, and every answer must be right.

use std::{
    collections::BTreeSet,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use dnslb_tests::{
    daemon::{Daemon, RIG_METRICS, ZoneFile, sample, scrape},
    netns::{Rig, SERVER_ADDR, SERVER_ADDR6},
    resolvers::{Forward, Resolver, ResolverKind},
};
use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};

const NAMES: u8 = 50;
const ZONES: [&str; 2] = ["v4.test", "v6.test"];

fn zone_text(origin: &str) -> String {
    let mut text = format!(
        "$ORIGIN {origin}.\n$TTL 300\n@ SOA ns hostmaster 1 7200 3600 1209600 60\n@ NS ns\nns A {SERVER_ADDR}\n"
    );
    for i in 0..NAMES {
        text.push_str(&format!(
            "host{i} A 198.18.40.{i}\nhost{i} AAAA 2001:db8:40::{i:x}\n"
        ));
    }
    text
}

/// Kernel counters: queries answered, and queries passed for a reason that
/// a hot name can have (an EDNS form, size, or shape the kernel does not
/// answer). Passes for names that are not hot, or for other types, are
/// not hot-name queries.
fn kernel_counts(rig: &Rig) -> (u64, u64) {
    let text = scrape(&rig.server, RIG_METRICS).expect("/metrics");
    let get = |series: &str| sample(&text, series).unwrap_or(0);
    let passed = ["edns", "too_big", "unsupported", "malformed"]
        .iter()
        .map(|reason| get(&format!("dnslb_xdp_passed_total{{reason=\"{reason}\"}}")))
        .sum();
    (get("dnslb_queries_total{path=\"xdp\"}"), passed)
}

#[test]
fn real_resolvers_are_answered_by_the_kernel() {
    let rig = Rig::new().expect("namespaces and veth");
    rig.add_ipv6().expect("IPv6 on the rig");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let dir = std::env::temp_dir().join(format!("dnslb-resolvers-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let mut zone_args = Vec::new();
    for origin in ZONES {
        let file = dir.join(format!("{origin}.zone"));
        fs::write(&file, zone_text(origin)).unwrap();
        zone_args.push(format!("{origin}={}", file.display()));
    }
    let first = ZoneFile {
        origin: ZONES[0].to_string(),
        file: dir.join(format!("{}.zone", ZONES[0])),
    };
    let second = format!("--zone={}", zone_args[1]);
    let daemon = Daemon::start_on_rig(&rig, &first, true, &[&second]).expect("dnslb starts");

    let forwards = [
        Forward {
            zone: ZONES[0],
            server: IpAddr::V4(SERVER_ADDR.parse().unwrap()),
        },
        Forward {
            zone: ZONES[1],
            server: IpAddr::V6(SERVER_ADDR6.parse().unwrap()),
        },
    ];
    let mut report = Vec::new();
    for (n, kind) in ResolverKind::ALL.into_iter().enumerate() {
        let resolver_dir = dir.join(format!("resolver-{n}"));
        let resolver =
            Resolver::start(kind, &rig.client, &resolver_dir, 5300 + n as u16, &forwards)
                .unwrap_or_else(|error| panic!("{error:#}"));
        let (xdp_before, passed_before) = kernel_counts(&rig);
        for zone in ZONES {
            for i in 0..NAMES {
                let name = format!("host{i}.{zone}.");
                for record_type in [RecordType::A, RecordType::AAAA] {
                    let answer = resolver
                        .resolve(&rig.client, &name, record_type)
                        .unwrap()
                        .unwrap_or_else(|| {
                            panic!(
                                "{}: no answer for {name} {record_type}:\n{}",
                                kind.name(),
                                resolver.log_text()
                            )
                        });
                    assert_eq!(
                        answer.metadata.response_code,
                        ResponseCode::NoError,
                        "{} {name}",
                        kind.name()
                    );
                    let got: BTreeSet<IpAddr> = answer
                        .answers
                        .iter()
                        .filter_map(|record| match &record.data {
                            RData::A(a) => Some(IpAddr::V4(a.0)),
                            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                            _ => None,
                        })
                        .collect();
                    let expected = match record_type {
                        RecordType::A => IpAddr::V4(Ipv4Addr::new(198, 18, 40, i)),
                        _ => {
                            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x40, 0, 0, 0, 0, u16::from(i)))
                        }
                    };
                    assert_eq!(
                        got,
                        [expected].into(),
                        "{}: {name} {record_type}",
                        kind.name()
                    );
                }
            }
        }
        let (xdp_after, passed_after) = kernel_counts(&rig);
        let (xdp, passed) = (xdp_after - xdp_before, passed_after - passed_before);
        let share = xdp as f64 / (xdp + passed).max(1) as f64;
        report.push(format!(
            "{}: {xdp} of {} hot-name queries answered by XDP ({:.1}%)",
            kind.name(),
            xdp + passed,
            share * 100.0
        ));
        println!("{}", report.last().unwrap());
        let asked = 4 * u64::from(NAMES);
        assert!(
            xdp + passed >= asked,
            "{}: only {} queries reached dnslb",
            kind.name(),
            xdp + passed
        );
        assert!(share >= 0.99, "{}", report.join("\n"));
    }
    drop(daemon);
    let _ = fs::remove_dir_all(&dir);
}
