//! dnslb answers as Knot DNS does. The same zone is loaded into both, on
//! loopback; a corpus of queries (random letter case, with and without
//! EDNS, over UDP and TCP) goes to both, and the answers are compared
//! section by section: RCODE, AA, TC, and each section as a set of records.
//! Any difference fails the test with both answers printed.

use std::{
    fmt::Write as _,
    fs,
    io::{Read, Write},
    net::{TcpStream, UdpSocket},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use dnslb::dataplane::sync_hot;
use dnslb_tests::{
    daemon::{Daemon, free_port, workspace_root},
    frame::{Opt, QueryFrame},
    oracle,
    peers::{PeerZone, knot_config, unbound_config},
    process::Process,
    testrun,
};
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RecordType},
};
use nix::sys::signal::Signal;

const ORIGIN: &str = "diff.example";

/// The zone of tests/zones plus filler: several hundred records in all.
fn zone_text() -> String {
    let mut text = fs::read_to_string(workspace_root().join("tests/zones/diff.example.zone"))
        .expect("the zone");
    for i in 0..200 {
        let _ = writeln!(text, "f{i} IN A 198.18.{}.{}", 100 + i / 250, i % 250);
        if i % 4 == 0 {
            let _ = writeln!(
                text,
                "f{i} IN AAAA 2001:db8::{i:x}\nf{i} IN TXT \"filler {i}\""
            );
        }
    }
    text
}

/// A scratch directory holding the test zone, removed on drop.
struct Scratch {
    dir: std::path::PathBuf,
    zone: std::path::PathBuf,
    /// A second zone, other.example, for aliases across zones.
    other: std::path::PathBuf,
}

const OTHER: &str = "other.example";

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("dnslb-{test}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let zone = dir.join("diff.example.zone");
        fs::write(&zone, zone_text()).unwrap();
        let other = workspace_root().join("tests/zones/other.example.zone");
        Scratch { dir, zone, other }
    }

    /// dnslb serving the zone from userspace on a loopback port.
    fn start_dnslb(&self) -> (Daemon, u16) {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let zone_arg = format!("{ORIGIN}={}", self.zone.display());
        let other_arg = format!("{OTHER}={}", self.other.display());
        let args = [
            "run", "--no-xdp", "--listen", &listen, "--zone", &zone_arg, "--zone", &other_arg,
        ];
        let daemon = Daemon::start_here(&args).expect("dnslb starts");
        wait_until_answering(port, "dnslb", || daemon.log_text());
        (daemon, port)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Flips the letter case of `name` from a seed, as resolvers do.
fn mixed_case(name: &str, seed: &mut u64) -> String {
    name.chars()
        .map(|c| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            if *seed & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// What a query carries in its OPT record.
#[derive(Clone, Copy, Debug)]
enum Edns {
    None,
    Plain,
    /// DNSSEC OK set: the answer's OPT must say so too (RFC 3225).
    DnssecOk,
    /// Version 1: BADVERS (RFC 6891 §6.1.3).
    Version1,
    /// Client Subnet 198.18.0.0/24: echoed with scope 0 (RFC 7871).
    ClientSubnet,
    /// An option no one knows: ignored.
    Unknown,
    /// A 512-byte payload size: big answers are truncated.
    Small,
}

const EDNS_MODES: [Edns; 7] = [
    Edns::None,
    Edns::Plain,
    Edns::DnssecOk,
    Edns::Version1,
    Edns::ClientSubnet,
    Edns::Unknown,
    Edns::Small,
];

/// Messages other than plain queries, by what is odd about them.
fn odd_messages() -> Vec<(&'static str, Vec<u8>)> {
    let mut query = Message::query();
    query.metadata.id = 0x5151;
    query.add_query(Query::query(
        Name::from_ascii(format!("www.{ORIGIN}.")).unwrap(),
        RecordType::A,
    ));
    let plain = query.to_vec().unwrap();
    let with = |change: &dyn Fn(&mut Vec<u8>)| {
        let mut message = plain.clone();
        change(&mut message);
        message
    };
    vec![
        ("a response (QR set)", with(&|m| m[2] |= 0x80)),
        ("opcode STATUS", with(&|m| m[2] |= 2 << 3)),
        ("opcode 3 (unassigned)", with(&|m| m[2] |= 3 << 3)),
        (
            "no question",
            with(&|m| {
                m[5] = 0;
                m.truncate(12);
            }),
        ),
        (
            "two questions",
            with(&|m| {
                m[5] = 2;
                let question = m[12..].to_vec();
                m.extend_from_slice(&question);
            }),
        ),
        ("a question cut short", with(&|m| m.truncate(m.len() - 3))),
        ("five bytes of garbage", vec![0xde, 0xad, 0xbe, 0xef, 0x00]),
    ]
}

#[derive(Clone)]
struct Case {
    name: String,
    record_type: RecordType,
    edns: Edns,
    tcp: bool,
}

fn corpus() -> Vec<Case> {
    let names = [
        "",
        "ns1",
        "ns2",
        "www",
        "mail",
        "_sip._udp",
        "sip",
        "ptr",
        "caa",
        "naptr",
        "ssh",
        "tlsa",
        "empty.nonterminal",
        "nonterminal",
        "deep.empty.nonterminal",
        "nope",
        "nope.www",
        "f3",
        "f8",
        "f150",
        "f199",
        "f200",
        "alias",
        "sub",
        "chain1",
        "chain2",
        "loop1",
        "out",
        "dangling",
        "ns.sub",
        "x.sub",
        "any.wild",
        "a.b.wild",
        "real.wild",
        "*.wild",
        "sub.real.wild",
        "x.cname-wild",
        "other.empty.nonterminal",
        "big",
        "svc",
        "_dns.svc",
        "unknown",
        "generic-a",
        "mx-many",
        "across",
    ];
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::SOA,
        RecordType::PTR,
        RecordType::CAA,
        RecordType::NAPTR,
        RecordType::SSHFP,
        RecordType::TLSA,
        RecordType::CNAME,
        RecordType::MX,
        RecordType::NS,
        RecordType::SRV,
        RecordType::ANY,
        RecordType::HTTPS,
        RecordType::SVCB,
        RecordType::DS,
        RecordType::Unknown(65400),
    ];
    let mut seed = 0x0ddba11u64;
    let mut cases = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for (j, record_type) in types.iter().enumerate() {
            let full = if name.is_empty() {
                format!("{ORIGIN}.")
            } else {
                format!("{name}.{ORIGIN}.")
            };
            cases.push(Case {
                name: mixed_case(&full, &mut seed),
                record_type: *record_type,
                edns: EDNS_MODES[(i + j) % EDNS_MODES.len()],
                tcp: (i + j) % 5 == 0,
            });
        }
    }
    // Aliases from the other zone into this one, and its own names.
    for (name, record_type) in [
        ("into", RecordType::A),
        ("into", RecordType::AAAA),
        ("target", RecordType::A),
        ("nope", RecordType::A),
    ] {
        cases.push(Case {
            name: mixed_case(&format!("{name}.{OTHER}."), &mut seed),
            record_type,
            edns: Edns::Plain,
            tcp: false,
        });
    }
    // Truncation: big answers under every EDNS mode, over UDP and TCP.
    for (name, record_type) in [("big", RecordType::TXT), ("mx-many", RecordType::MX)] {
        for edns in EDNS_MODES {
            for tcp in [false, true] {
                cases.push(Case {
                    name: mixed_case(&format!("{name}.{ORIGIN}."), &mut seed),
                    record_type,
                    edns,
                    tcp,
                });
            }
        }
    }
    cases
}

fn ask(port: u16, case: &Case) -> Option<Message> {
    let mut query = Message::query();
    query.metadata.id = 0x2a2a;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii(&case.name).ok()?,
        case.record_type,
    ));
    let mut bytes = query.to_vec().ok()?;
    // The OPT record by hand, so every field is exactly as meant.
    let (payload, version, flags, options): (u16, u8, u8, &[u8]) = match case.edns {
        Edns::None => return exchange(port, case.tcp, &bytes),
        Edns::Plain => (1232, 0, 0, &[]),
        Edns::DnssecOk => (1232, 0, 0x80, &[]),
        Edns::Version1 => (1232, 1, 0, &[]),
        Edns::ClientSubnet => (1232, 0, 0, &[0, 8, 0, 7, 0, 1, 24, 0, 198, 18, 0]),
        Edns::Unknown => (1232, 0, 0, &[0xfd, 0xe9, 0, 2, 0xab, 0xcd]),
        Edns::Small => (512, 0, 0, &[]),
    };
    bytes[11] = 1;
    bytes.extend_from_slice(&[0, 0, 41]);
    bytes.extend_from_slice(&payload.to_be_bytes());
    bytes.extend_from_slice(&[0, version, flags, 0]);
    bytes.extend_from_slice(&(options.len() as u16).to_be_bytes());
    bytes.extend_from_slice(options);
    exchange(port, case.tcp, &bytes)
}

fn exchange(port: u16, tcp: bool, bytes: &[u8]) -> Option<Message> {
    exchange_within(port, tcp, bytes, Duration::from_secs(2))
}

fn exchange_within(port: u16, tcp: bool, bytes: &[u8], wait: Duration) -> Option<Message> {
    let timeout = Some(wait);
    let answer = if tcp {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(timeout).ok()?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(bytes);
        stream.write_all(&framed).ok()?;
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).ok()?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut answer).ok()?;
        answer
    } else {
        let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
        socket.set_read_timeout(timeout).ok()?;
        socket.send_to(bytes, ("127.0.0.1", port)).ok()?;
        let mut buffer = [0u8; 65535];
        let len = socket.recv(&mut buffer).ok()?;
        buffer[..len].to_vec()
    };
    Message::from_vec(&answer).ok()
}

/// What a client can rely on: flags, RCODE and each section as a set.
fn summary(message: &Message) -> String {
    let section = |records: &[hickory_proto::rr::Record]| {
        let mut lines: Vec<String> = records
            .iter()
            .map(|r| r.to_string().to_ascii_lowercase())
            .collect();
        lines.sort();
        lines.join("\n    ")
    };
    let opt = message.edns.as_ref().map(|edns| {
        let mut options: Vec<String> = edns
            .options()
            .as_ref()
            .iter()
            .map(|option| format!("{option:?}"))
            .collect();
        options.sort();
        format!(
            "payload {} version {} do {} options {options:?}",
            edns.max_payload(),
            edns.version(),
            edns.flags().dnssec_ok
        )
    });
    format!(
        "rcode {:?} aa {} tc {} opt {opt:?}\n  answer:\n    {}\n  authority:\n    {}\n  additional:\n    {}",
        message.metadata.response_code,
        message.metadata.authoritative,
        message.metadata.truncation,
        section(&message.answers),
        section(&message.authorities),
        section(&message.additionals),
    )
}

/// The case's answers from Knot DNS and dnslb, both printed after
/// `label`, when they differ.
fn compare(case: &Case, knot_port: u16, dnslb_port: u16, label: &str) -> Option<String> {
    let expected = ask(knot_port, case).map(|m| summary(&m));
    let got = ask(dnslb_port, case).map(|m| summary(&m));
    (expected != got).then(|| {
        format!(
            "{label}{} {} (edns {:?}, tcp {})\n Knot:  {}\n dnslb: {}",
            case.name,
            case.record_type,
            case.edns,
            case.tcp,
            expected.unwrap_or_else(|| "no answer".into()),
            got.unwrap_or_else(|| "no answer".into()),
        )
    })
}

fn wait_until_answering(port: u16, what: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let probe = Case {
        name: format!("{ORIGIN}."),
        record_type: RecordType::SOA,
        edns: Edns::None,
        tcp: false,
    };
    while ask(port, &probe).is_none() {
        assert!(
            Instant::now() < deadline,
            "{what} did not answer within 30 s:\n{}",
            log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dnslb_answers_exactly_as_knot_does() {
    let scratch = Scratch::new("differential");
    let (dir, zone) = (&scratch.dir, &scratch.zone);

    let knot_port = free_port();
    let config = knot_config(
        &dir.join("knot"),
        &format!("127.0.0.1@{knot_port}"),
        None,
        &[
            PeerZone {
                origin: ORIGIN,
                file: zone,
            },
            PeerZone {
                origin: OTHER,
                file: &scratch.other,
            },
        ],
    )
    .unwrap();
    let mut command = Command::new("knotd");
    command.arg("-c").arg(&config);
    let knot = Process::spawn(command, dir.join("knotd.log")).expect("knotd starts (install knot)");
    wait_until_answering(knot_port, "Knot DNS", || knot.log_text());

    let (daemon, dnslb_port) = scratch.start_dnslb();

    let cases = corpus();
    assert!(cases.len() >= 300, "{} queries", cases.len());
    let mut differences = Vec::new();
    // Messages that are not plain queries: what each server says, if anything.
    for (what, message) in odd_messages() {
        let wait = Duration::from_millis(300);
        let expected = exchange_within(knot_port, false, &message, wait).map(|m| summary(&m));
        let got = exchange_within(dnslb_port, false, &message, wait).map(|m| summary(&m));
        if expected != got {
            differences.push(format!(
                "{what}\n Knot:  {}\n dnslb: {}",
                expected.unwrap_or_else(|| "no answer".into()),
                got.unwrap_or_else(|| "no answer".into()),
            ));
        }
    }
    for case in &cases {
        // The one intended difference: Knot DNS ends an alias chain at the
        // edge of the zone, dnslb follows it into the other zones it holds
        // (checked on its own below).
        let lower = case.name.to_ascii_lowercase();
        if lower.starts_with("across.") || lower.starts_with("into.") {
            continue;
        }
        differences.extend(compare(case, knot_port, dnslb_port, ""));
    }
    for (name, target_address) in [
        (format!("across.{ORIGIN}."), "198.18.5.1"),
        (format!("into.{OTHER}."), "198.18.1.1"),
    ] {
        let case = Case {
            name,
            record_type: RecordType::A,
            edns: Edns::Plain,
            tcp: false,
        };
        let answer = ask(dnslb_port, &case).expect("dnslb answers");
        let data: Vec<String> = answer
            .answers
            .iter()
            .map(|record| record.data.to_string())
            .collect();
        if answer.answers.first().map(|record| record.record_type()) != Some(RecordType::CNAME)
            || !data.iter().any(|address| address == target_address)
        {
            differences.push(format!(
                "{}: the chain is not followed across zones: {data:?}",
                case.name
            ));
        }
    }
    drop(daemon);
    drop(knot);
    assert!(
        differences.is_empty(),
        "{} of {} answers differ:\n{}",
        differences.len(),
        cases.len(),
        differences.join("\n\n")
    );
}

/// A zone signed elsewhere (tests/zones: BIND's dnssec-signzone, NSEC and
/// NSEC3), loaded into both: every answer to a DO query, its RRSIGs and
/// its NSEC or NSEC3 proofs included, is Knot DNS's; without DO, the
/// answers carry none. The XDP program, given the zone as the daemon
/// gives it, answers the A and AAAA queries over UDP as Knot DNS does,
/// signed with DO.
#[test]
fn dnslb_answers_zones_signed_elsewhere_as_knot_does() {
    const SIGNED: &str = "signed.test";
    let names = [
        "",
        "www",
        "alias",
        "x.wild",
        "*.wild",
        "a.b.wild",
        "nope",
        "a.nope",
        "b.c",
        "c",
        "a.b.c",
        "insecure",
        "x.insecure",
        "ns.insecure",
        "secure",
        "ns.secure",
        "ns1",
    ];
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::NS,
        RecordType::DS,
        RecordType::DNSKEY,
        RecordType::SOA,
        RecordType::CNAME,
        RecordType::NSEC,
        RecordType::RRSIG,
        RecordType::NSEC3PARAM,
        RecordType::ANY,
    ];
    let mut seed = 0x5eed5u64;
    let mut cases = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for (j, record_type) in types.iter().enumerate() {
            let full = match name.is_empty() {
                true => format!("{SIGNED}."),
                false => format!("{name}.{SIGNED}."),
            };
            cases.push(Case {
                name: mixed_case(&full, &mut seed),
                record_type: *record_type,
                edns: if (i + j) % 4 == 0 {
                    Edns::Plain
                } else {
                    Edns::DnssecOk
                },
                tcp: (i + j) % 3 == 0,
            });
        }
    }
    let mut differences = Vec::new();
    for file in ["signed.test.nsec.zone", "signed.test.nsec3.zone"] {
        let scratch = Scratch::new(&format!("signed-{file}"));
        let zone = workspace_root().join("tests/zones").join(file);
        let knot_port = free_port();
        let config = knot_config(
            &scratch.dir.join("knot"),
            &format!("127.0.0.1@{knot_port}"),
            None,
            &[PeerZone {
                origin: SIGNED,
                file: &zone,
            }],
        )
        .unwrap();
        let mut command = Command::new("knotd");
        command.arg("-c").arg(&config);
        let knot = Process::spawn(command, scratch.dir.join("knotd.log"))
            .expect("knotd starts (install knot)");
        wait_until_answering(knot_port, "Knot DNS", || knot.log_text());
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let zone_arg = format!("{SIGNED}={}", zone.display());
        let daemon =
            Daemon::start_here(&["run", "--no-xdp", "--listen", &listen, "--zone", &zone_arg])
                .expect("dnslb starts");
        wait_until_answering(port, "dnslb", || daemon.log_text());
        let label = format!("{file}: ");
        differences.extend(
            cases
                .iter()
                .filter_map(|case| compare(case, knot_port, port, &label)),
        );
        // The hot names asked over UDP, with DO and without, beside the
        // corpus: each of the 6 that exist (and have an address) twice.
        let mut kernel_cases = Vec::new();
        for name in ["www", "WwW", "ns1", "*.wild"] {
            for record_type in [RecordType::A, RecordType::AAAA] {
                for edns in [Edns::Plain, Edns::DnssecOk] {
                    kernel_cases.push(Case {
                        name: format!("{name}.{SIGNED}."),
                        record_type,
                        edns,
                        tcp: false,
                    });
                }
            }
        }
        kernel_cases.extend(cases.iter().cloned());
        let text = fs::read_to_string(&zone).expect("the zone file");
        let (kernel_differences, answered) =
            compare_kernel(&kernel_cases, &[(&format!("{SIGNED}."), &text)], knot_port);
        assert!(answered >= 12, "{file}: the kernel answered {answered}");
        differences.extend(
            kernel_differences
                .into_iter()
                .map(|difference| format!("{label}{difference}")),
        );
    }
    assert!(
        differences.is_empty(),
        "{} answers differ:\n{}",
        differences.len(),
        differences.join("\n\n")
    );
}

/// The XDP program, through `BPF_PROG_TEST_RUN`, with `zones` written as
/// the daemon writes them, against Knot DNS on `knot_port`, for every
/// case it can be asked over UDP: each answer it sends must be Knot's.
/// The differences, and how many it answered.
fn compare_kernel(cases: &[Case], zones: &[(&str, &str)], knot_port: u16) -> (Vec<String>, usize) {
    let mut dataplane = testrun::program();
    let catalog = oracle::catalog(zones);
    sync_hot(&mut dataplane, (None, &catalog), &|_, _| false, &|_| None).expect("written");
    let mut differences = Vec::new();
    let mut answered = 0;
    for case in cases.iter().filter(|case| !case.tcp) {
        let opt = match case.edns {
            Edns::None => None,
            Edns::Plain => Some(Opt::plain(1232)),
            Edns::DnssecOk => Some(Opt::plain(1232).dnssec()),
            _ => continue,
        };
        let mut query = QueryFrame::a(&case.name).with_type(u16::from(case.record_type));
        query.opt = opt;
        let input = query.build();
        let outcome = testrun::run(&mut dataplane, &input);
        if outcome.action != testrun::XDP_TX {
            continue;
        }
        answered += 1;
        let kernel = Message::from_vec(testrun::answer_payload(&query, &input, &outcome))
            .map(|m| summary(&m))
            .unwrap_or_else(|error| format!("undecodable: {error}"));
        let knot = ask(knot_port, case).map_or("no answer".into(), |m| summary(&m));
        if kernel != knot {
            differences.push(format!(
                "{} {} (edns {:?}), the kernel's answer\n Knot:   {knot}\n kernel: {kernel}",
                case.name, case.record_type, case.edns
            ));
        }
    }
    (differences, answered)
}

/// A real resolver, unbound, with a stub zone pointing at dnslb, resolves
/// through it: an address, a CNAME chain, and a negative answer.
#[test]
fn unbound_resolves_through_dnslb() {
    let scratch = Scratch::new("unbound");
    let dir = &scratch.dir;
    let (daemon, dnslb_port) = scratch.start_dnslb();

    let resolver_port = free_port();
    let config = unbound_config(dir, resolver_port, ORIGIN, dnslb_port).unwrap();
    let mut command = Command::new("unbound");
    command.arg("-d").arg("-c").arg(&config);
    let unbound =
        Process::spawn(command, dir.join("unbound.log")).expect("unbound starts (install unbound)");
    wait_until_answering(resolver_port, "unbound", || unbound.log_text());

    let resolve = |name: &str, record_type| {
        let case = Case {
            name: format!("{name}.{ORIGIN}."),
            record_type,
            edns: Edns::Plain,
            tcp: false,
        };
        ask(resolver_port, &case)
            .unwrap_or_else(|| panic!("unbound answered {name}:\n{}", unbound.log_text()))
    };
    let www = resolve("www", RecordType::A);
    let addresses: Vec<String> = www.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(addresses.len(), 2, "{www:?}");
    assert!(
        addresses.contains(&"198.18.1.1".to_string()),
        "{addresses:?}"
    );

    let chain = resolve("chain1", RecordType::A);
    let types: Vec<RecordType> = chain.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(
        types,
        [
            RecordType::CNAME,
            RecordType::CNAME,
            RecordType::CNAME,
            RecordType::A,
            RecordType::A
        ],
        "{chain:?}"
    );

    let missing = resolve("nope", RecordType::A);
    assert_eq!(
        missing.metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain,
        "{missing:?}"
    );
    assert_eq!(
        missing.authorities.first().map(|r| r.record_type()),
        Some(RecordType::SOA)
    );

    drop(unbound);
    drop(daemon);
}

/// SIGHUP reloads the zones; a file with an error is reported with its line
/// and changes nothing that is being served.
#[test]
fn a_reload_swaps_good_zones_in_and_keeps_serving_through_bad_ones() {
    let scratch = Scratch::new("reload");
    let zone = &scratch.zone;
    let (daemon, port) = scratch.start_dnslb();
    let address_of = |name: &str| {
        let case = Case {
            name: format!("{name}.{ORIGIN}."),
            record_type: RecordType::A,
            edns: Edns::None,
            tcp: false,
        };
        ask(port, &case)
            .and_then(|answer| answer.answers.first().map(|record| record.data.to_string()))
    };
    let eventually = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "{what}:\n{}", daemon.log_text());
            thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(address_of("added"), None);

    // A new version raises the serial (one that did not would be refused).
    let next = zone_text().replace("2026112401", "2026112402");
    fs::write(zone, next.clone() + "added IN A 198.18.9.9\n").unwrap();
    daemon.signal(Signal::SIGHUP).unwrap();
    eventually("the added name is served after SIGHUP", &|| {
        address_of("added").as_deref() == Some("198.18.9.9")
    });

    let lines = zone_text().lines().count();
    fs::write(
        zone,
        next.replace("2026112402", "2026112403")
            + "added IN A 198.18.9.10\nbroken IN A 198.18.999.1\n",
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP).unwrap();
    let expected = format!("{}:{}: ", zone.display(), lines + 2);
    eventually("the bad file is reported with its line", &|| {
        daemon.log_text().contains("reload failed") && daemon.log_text().contains(&expected)
    });
    assert_eq!(
        address_of("added").as_deref(),
        Some("198.18.9.9"),
        "the zone being served stays"
    );
    assert_eq!(
        address_of("www")
            .as_deref()
            .map(|a| a.starts_with("198.18.1.")),
        Some(true)
    );
    drop(daemon);
}

/// RFC 7766: several queries sent at once on one TCP connection are all
/// answered on it.
#[test]
fn tcp_connections_carry_pipelined_queries() {
    let scratch = Scratch::new("pipelining");
    let (_daemon, port) = scratch.start_dnslb();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut burst = Vec::new();
    for id in 0..20u16 {
        let mut query = Message::query();
        query.metadata.id = id;
        query.add_query(Query::query(
            Name::from_ascii(format!("f{id}.{ORIGIN}.")).unwrap(),
            RecordType::A,
        ));
        let bytes = query.to_vec().unwrap();
        burst.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        burst.extend_from_slice(&bytes);
    }
    stream.write_all(&burst).unwrap();
    let mut answered = Vec::new();
    for _ in 0..20 {
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).unwrap();
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut answer).unwrap();
        let message = Message::from_vec(&answer).unwrap();
        assert_eq!(message.answers.len(), 1, "{message:?}");
        answered.push(message.metadata.id);
    }
    answered.sort();
    assert_eq!(answered, (0..20).collect::<Vec<u16>>());
}
