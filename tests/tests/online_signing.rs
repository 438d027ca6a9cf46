//! Online signing (`dnssec = "online"`): dnslb makes the zone's keys at
//! its first start and signs every answer to a DO query, the answers its
//! routing policies make included, with compact denial (RFC 9824). Proven
//! by the validating resolvers the world uses and by BIND's `delv`, each
//! in the client namespace of the veth rig, with the key dnslb made as
//! their trust anchor; a wrong anchor validates nothing. Needs root.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use dnslb_tests::{
    backend::{HttpBackend, web_check},
    daemon::{self, Answered, Daemon, kdig},
    netns::{Rig, SERVER_ADDR},
    resolvers::{Forward, Resolver, ResolverKind, TrustAnchor},
    signed::{
        ORIGIN, anchor_in_key_dir, ask_with_do, ask_with_do_at, delv, dnskey_tags,
        each_validating_resolver, rrsigs_of, validated, write_trust_anchor, zone_file,
    },
};
use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};

/// These tests time key events and health verdicts, and start four
/// resolvers each: they take turns rather than share two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `[[zone]]` of the zone signed online, signed as `dnssec` says (a
/// `dnssec = ...` line or a `[zone.dnssec]` table).
fn zone_entry(dnssec: &str) -> String {
    format!(
        "[[zone]]\norigin = \"{ORIGIN}.\"\nfile = \"{}\"\n{dnssec}\n",
        zone_file("signed.test.online.zone").display()
    )
}

/// A policy with a service of every kind the kernel and the daemon answer
/// (the function pool's cold start has its own test), in the online
/// signed zone.
fn policy(test: &str) -> (PathBuf, PathBuf) {
    let text = format!(
        r#"{zone}
[geo]
csv = "geo.csv"

[pool.a]
endpoints = ["198.18.10.1", "198.18.10.2"]
[pool.b]
endpoints = ["198.18.20.1"]
[pool.w]
endpoints = [
  {{ address = "198.18.40.1", weight = 1 }},
  {{ address = "198.18.40.2", weight = 3 }},
]

[service.w]
name = "w.{ORIGIN}."
policy = {{ kind = "weighted", pool = "w" }}

[service.f]
name = "f.{ORIGIN}."
[service.f.policy]
kind = "failover"
primary = {{ pool = "a" }}
secondary = {{ pool = "b" }}

[service.geo]
name = "geo.{ORIGIN}."
[service.geo.policy]
kind = "geolocation"
branches = [
  {{ continent = "EU", pool = "a" }},
  {{ default = true, pool = "b" }},
]

[service.ip]
name = "ip.{ORIGIN}."
[service.ip.policy]
kind = "ip"
branches = [
  {{ name = "clients", cidrs = ["198.18.0.0/24", "127.0.0.0/8"], pool = "b" }},
  {{ default = true, pool = "a" }},
]

[service.mv]
name = "mv.{ORIGIN}."
policy = {{ kind = "multivalue", pool = "a" }}
"#,
        zone = zone_entry("dnssec = \"online\"")
    );
    let file = daemon::policy_file("online-signing", test, &text);
    let dir = file.parent().expect("in a directory").to_owned();
    // The rig's client (198.18.0.1) is in Europe; so is 127.0.0.0/8, the
    // network PowerDNS Recursor gives as its client's (Client Subnet).
    std::fs::write(
        dir.join("geo.csv"),
        "198.18.0.0/24,EU,DE,,52.5,13.4\n127.0.0.0/8,EU,DE,,52.5,13.4\n",
    )
    .unwrap();
    (file, dir)
}

/// A name and type asked, and what the answer must be.
struct Case {
    name: &'static str,
    record_type: &'static str,
    /// The addresses an A answer may hold (empty: any records of the
    /// type), or `None` for a negative answer.
    answer: Option<&'static [&'static str]>,
}

const fn yes(name: &'static str, record_type: &'static str) -> Case {
    Case {
        name,
        record_type,
        answer: Some(&[]),
    }
}

const fn only(name: &'static str, addrs: &'static [&'static str]) -> Case {
    Case {
        name,
        record_type: "A",
        answer: Some(addrs),
    }
}

const fn no(name: &'static str, record_type: &'static str) -> Case {
    Case {
        name,
        record_type,
        answer: None,
    }
}

/// Denials first (names next to existing ones, so that a resolver caching
/// NSEC aggressively has every chance to deny too much), then every
/// existing name and policy.
const CASES: &[Case] = &[
    no("nope.signed.test.", "A"),
    no("wwv.signed.test.", "A"),
    no("www0.signed.test.", "A"),
    no("a.www.signed.test.", "A"),
    no("alias0.signed.test.", "A"),
    no("v.signed.test.", "A"),
    no("www.signed.test.", "TXT"),
    no("b.c.signed.test.", "TXT"),
    no("x.wild.signed.test.", "TXT"),
    no("insecure.signed.test.", "DS"),
    no("w.signed.test.", "AAAA"),
    yes("www.signed.test.", "A"),
    yes("www.signed.test.", "AAAA"),
    yes("alias.signed.test.", "A"),
    yes("x.wild.signed.test.", "A"),
    yes("a.b.c.signed.test.", "TXT"),
    yes("mail.signed.test.", "MX"),
    yes("secure.signed.test.", "DS"),
    yes("signed.test.", "DNSKEY"),
    only("w.signed.test.", &["198.18.40.1", "198.18.40.2"]),
    only("to-service.signed.test.", &["198.18.40.1", "198.18.40.2"]),
    only("f.signed.test.", &["198.18.10.1", "198.18.10.2"]),
    only("geo.signed.test.", &["198.18.10.1", "198.18.10.2"]),
    only("ip.signed.test.", &["198.18.20.1"]),
    only("mv.signed.test.", &["198.18.10.1", "198.18.10.2"]),
];

fn start(rig: &Rig, config: &Path, key_dir: &Path) -> Daemon {
    let config = config.display().to_string();
    let key_dir = key_dir.display().to_string();
    Daemon::start_serving(
        &rig.server,
        Some(&rig.server_if),
        &["--config", &config, "--key-dir", &key_dir],
    )
    .expect("dnslb starts")
}

/// Checks `answer` (from a validating resolver given the right anchor)
/// against `case`.
fn check(case: &Case, answer: &hickory_proto::op::Message, what: &str) {
    assert!(answer.metadata.authentic_data, "validated: {what}");
    let record_type: RecordType = case.record_type.parse().unwrap();
    let records: Vec<&RData> = answer
        .answers
        .iter()
        .filter(|r| r.record_type() == record_type)
        .map(|r| &r.data)
        .collect();
    match case.answer {
        None => {
            assert!(
                matches!(
                    answer.metadata.response_code,
                    ResponseCode::NoError | ResponseCode::NXDomain
                ),
                "{what}"
            );
            assert!(records.is_empty(), "no {record_type}: {what}");
        }
        Some(addrs) => {
            assert_eq!(
                answer.metadata.response_code,
                ResponseCode::NoError,
                "{what}"
            );
            assert!(!records.is_empty(), "{what}");
            for rdata in records {
                if let (RData::A(a), false) = (rdata, addrs.is_empty()) {
                    assert!(addrs.contains(&a.0.to_string().as_str()), "{a}: {what}");
                }
            }
        }
    }
}

#[test]
fn every_answer_and_every_policy_validates_for_every_resolver() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let (config, dir) = policy("resolvers");
    let key_dir = dir.join("keys");
    let daemon = start(&rig, &config, &key_dir);
    let right = anchor_in_key_dir(&key_dir, false).expect("the key dnslb made");
    let wrong = anchor_in_key_dir(&key_dir, true).expect("a wrong key");

    let before = Answered::scrape(&rig).unwrap();
    each_validating_resolver(&rig, &dir, &right, &wrong, |resolver, valid| {
        let kind = resolver.kind;
        // Twice over: the second time, after every denial, each name
        // must still resolve (an over-broad NSEC would now deny it
        // from the resolver's cache).
        for round in 0..2 {
            for case in CASES {
                let record_type: RecordType = case.record_type.parse().unwrap();
                let answer = resolver
                    .resolve(&rig.client, case.name, record_type)
                    .unwrap()
                    .unwrap_or_else(|| {
                        panic!("{}: {} {record_type}: no answer", kind.name(), case.name)
                    });
                let what = format!(
                    "{} (round {round}, {} anchor): {} {record_type}: {answer:?}\n{}",
                    kind.name(),
                    if valid { "right" } else { "wrong" },
                    case.name,
                    resolver.log_text()
                );
                match valid {
                    true => check(case, &answer, &what),
                    false => assert_eq!(
                        answer.metadata.response_code,
                        ResponseCode::ServFail,
                        "{what}"
                    ),
                }
            }
            if !valid {
                break;
            }
        }
    });
    // The kernel answered the hot names' queries, signed: those answers
    // are among the ones that validated above. Every name and service the
    // kernel answers has its signatures there.
    let after = Answered::scrape(&rig).unwrap();
    assert!(
        after.xdp > before.xdp,
        "the kernel answered signed: {:?} before, {:?} after",
        before.xdp,
        after.xdp
    );
    let status = daemon.cli(&["status"]).unwrap();
    assert!(
        status.contains("; 0 names of signed zones whose DO queries the daemon answers"),
        "{status}"
    );

    // delv, with the same anchor, for every case.
    let anchor_file = write_trust_anchor(&dir, &right, "anchor.conf").unwrap();
    let wrong_file = write_trust_anchor(&dir, &wrong, "wrong.conf").unwrap();
    for case in CASES {
        let said = delv(
            rig.client.command("delv"),
            &anchor_file,
            SERVER_ADDR,
            53,
            case.name,
            case.record_type,
        )
        .expect("delv runs (install bind9-dnsutils)");
        assert!(
            validated(&said, case.answer.is_some()),
            "{} {}: {said}\n{}",
            case.name,
            case.record_type,
            daemon.log_text()
        );
    }
    let refused = delv(
        rig.client.command("delv"),
        &wrong_file,
        SERVER_ADDR,
        53,
        "w.signed.test.",
        "A",
    )
    .unwrap();
    assert!(!refused.contains("fully validated"), "{refused}");

    // A plain query is the kernel's, and carries no DNSSEC records.
    let xdp_before = Answered::scrape(&rig).unwrap().xdp.unwrap_or(0);
    let plain = kdig(
        &rig.client,
        &[
            &format!("@{SERVER_ADDR}"),
            "+noall",
            "+answer",
            "w.signed.test.",
            "A",
        ],
    )
    .expect("kdig");
    assert!(plain.contains("198.18.40."), "{plain}");
    assert!(!plain.contains("RRSIG"), "{plain}");
    assert_eq!(
        Answered::scrape(&rig).unwrap().xdp.unwrap_or(0),
        xdp_before + 1,
        "the kernel answered the plain query"
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The key files dnslb makes are BIND's: the DS `dnslb dnssec ds` gives
/// is `dnssec-dsfromkey`'s, the private key is mode 0600, the keys are
/// kept across restarts, a key readable by others is refused (naming the
/// file) while the zone goes on being served signed, and a key made by
/// `dnssec-keygen` is imported by putting it in the key directory.
#[test]
fn keys_are_kept_as_bind_key_files_and_bad_ones_are_refused() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let (config, dir) = policy("keys");
    let key_dir = dir.join("keys");
    let daemon = start(&rig, &config, &key_dir);
    let anchor = anchor_in_key_dir(&key_dir, false).unwrap();
    let ds = daemon.cli(&["dnssec", "ds", ORIGIN]).expect("dnssec ds");
    assert_eq!(ds, format!("{ORIGIN}. IN DS {}\n", anchor.ds));
    let private = private_files(&key_dir);
    assert_eq!(private.len(), 1, "one combined key: {private:?}");
    let mode = std::fs::metadata(&private[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(&key_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    let status = daemon.cli(&["dnssec", "status"]).expect("dnssec status");
    for part in ["online", "CSK", "active", "ECDSAP256SHA256 (13)"] {
        assert!(status.contains(part), "{part} in {status}");
    }

    // Restarted, it signs with the same key.
    drop(daemon);
    let daemon = start(&rig, &config, &key_dir);
    let again = daemon.cli(&["dnssec", "ds", ORIGIN]).expect("dnssec ds");
    assert_eq!(again, ds);

    // A private key others can read is refused, whole, naming the file;
    // the zone goes on being served as before.
    std::fs::set_permissions(&private[0], std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = daemon.cli(&["reload"]).expect_err("refused");
    assert!(
        refused.contains(&private[0].display().to_string()) && refused.contains("mode 644"),
        "{refused}"
    );
    let anchor_file = write_trust_anchor(&dir, &anchor, "anchor.conf").unwrap();
    let said = delv(
        rig.client.command("delv"),
        &anchor_file,
        SERVER_ADDR,
        53,
        "w.signed.test.",
        "A",
    )
    .unwrap();
    assert!(validated(&said, true), "{said}");
    std::fs::set_permissions(&private[0], std::fs::Permissions::from_mode(0o600)).unwrap();

    // A key made by dnssec-keygen, put in the directory, is published on
    // reload (it has no timing of its own: published and active now).
    let made = std::process::Command::new("dnssec-keygen")
        .args(["-q", "-a", "ECDSAP256SHA256", "-K"])
        .arg(&key_dir)
        .arg(ORIGIN)
        .output()
        .expect("dnssec-keygen runs");
    assert!(made.status.success(), "{made:?}");
    let tag = String::from_utf8_lossy(&made.stdout)
        .trim()
        .rsplit('+')
        .next()
        .and_then(|tag| tag.parse::<u16>().ok())
        .expect("dnssec-keygen names the key");
    daemon.cli(&["reload"]).expect("the imported key is taken");
    let keys = kdig(
        &rig.client,
        &[
            &format!("@{SERVER_ADDR}"),
            "+dnssec",
            "+noall",
            "+answer",
            "signed.test.",
            "DNSKEY",
        ],
    )
    .unwrap();
    assert_eq!(
        keys.lines().filter(|l| l.contains("\tDNSKEY\t")).count(),
        2,
        "{keys}"
    );
    let status = daemon.cli(&["dnssec", "status"]).unwrap();
    assert!(status.contains(&tag.to_string()), "{tag} in {status}");
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

fn private_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "private"))
        .collect();
    files.sort();
    files
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// What the server showed at one moment: the DNSKEY RRset's tags, and the
/// tag and expiration of www's RRSIGs.
struct Sample {
    /// When the DNSKEY RRset was asked for, and when www's answer came.
    asked: f64,
    at: f64,
    dnskeys: BTreeSet<u16>,
    www: Vec<(u16, u32)>,
}

/// Split keys whose ZSK rolls in seconds: its successor is published 3 s
/// (DNSKEY TTL and propagation) before its 16 s are up.
const ROLL_IN_SECONDS: &str = "[zone.dnssec]\nkeys = \"split\"\nzsk_lifetime = \"16s\"\n\
    dnskey_ttl = 2\npropagation = \"1s\"\nvalidity = \"10s\"\n";

/// The kernel's answers so far, and the DO queries it passed for want of
/// a signature.
fn kernel_sent_and_unsigned(rig: &Rig) -> (u64, u64) {
    let text = daemon::scrape(&rig.server, daemon::RIG_METRICS).unwrap();
    let get = |series: &str| daemon::sample(&text, series).unwrap_or(0);
    (
        get("dnslb_queries_total{path=\"xdp\"}"),
        get("dnslb_xdp_passed_total{reason=\"unsigned\"}"),
    )
}

/// unbound in the rig's client, validating the zone with `anchor`.
fn validating_unbound(rig: &Rig, dir: &Path, anchor: &TrustAnchor) -> Resolver {
    let forwards = [Forward {
        zone: ORIGIN,
        server: SERVER_ADDR.parse().unwrap(),
        trust_anchor: Some(anchor),
    }];
    Resolver::start(
        ResolverKind::Unbound,
        &rig.client,
        &dir.join("unbound"),
        5300,
        &forwards,
    )
    .unwrap_or_else(|error| panic!("{error:#}"))
}

/// A zone-signing key rolled with its lifetimes shortened to seconds,
/// under a steady stream of validating queries (unbound, with the KSK as
/// its anchor): no answer fails validation across the roll; the new key is
/// published a DNSKEY TTL and a propagation delay before it signs; the old
/// key stays in the DNSKEY RRset until every signature it made has expired
/// (the longest any cache can keep one), then leaves.
#[test]
fn a_zsk_rolls_by_pre_publication_under_validating_queries() {
    let _turn = take_turn();
    const DNSKEY_TTL: f64 = 2.0;
    const PROPAGATION: f64 = 1.0;
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let text = zone_entry(ROLL_IN_SECONDS);
    let config = daemon::policy_file("online-signing", "roll", &text);
    let dir = config.parent().unwrap().to_owned();
    let key_dir = dir.join("keys");
    let daemon = start(&rig, &config, &key_dir);
    let anchor = anchor_in_key_dir(&key_dir, false).expect("one KSK");
    let resolver = validating_unbound(&rig, &dir, &anchor);

    // Bounded: the roll is over 16 s + 10 s + 1 s after the start.
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut samples: Vec<Sample> = Vec::new();
    let mut validated_answers = 0;
    let over = |samples: &[Sample]| -> bool {
        // The first ZSK signed, another took over, and the first has left.
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return false;
        };
        let old = first.www.first().map(|(tag, _)| *tag);
        let rolled = last.www.iter().all(|(tag, _)| Some(*tag) != old);
        rolled && old.is_some_and(|old| !last.dnskeys.contains(&old))
    };
    while !over(&samples) {
        assert!(
            Instant::now() < deadline,
            "no complete roll within 45 s:\n{}",
            daemon.log_text()
        );
        for name in ["www.signed.test.", "w.signed.test."] {
            let answer = resolver
                .resolve(&rig.client, name, hickory_proto::rr::RecordType::A)
                .unwrap()
                .expect("unbound answers");
            assert!(
                answer.metadata.response_code == ResponseCode::NoError
                    && answer.metadata.authentic_data,
                "{name} at {:.1}: {answer:?}\n{}",
                unix_now(),
                resolver.log_text()
            );
            validated_answers += 1;
        }
        let asked = unix_now();
        let keys = ask_with_do(&rig.client, "signed.test.", RecordType::DNSKEY)
            .unwrap()
            .expect("DNSKEY");
        let www = ask_with_do(&rig.client, "www.signed.test.", RecordType::A)
            .unwrap()
            .expect("www");
        samples.push(Sample {
            asked,
            at: unix_now(),
            dnskeys: dnskey_tags(&keys).into_iter().collect(),
            www: rrsigs_of(&www, RecordType::A),
        });
        thread::sleep(Duration::from_millis(200));
    }
    let old = samples[0].www[0].0;
    let new = samples.last().unwrap().www[0].0;
    let first = |holds: &dyn Fn(&Sample) -> bool| {
        samples
            .iter()
            .find(|s| holds(s))
            .map(|s| s.at)
            .expect("seen")
    };
    let signing = first(&|s| s.www.iter().any(|(tag, _)| *tag == new));
    // The new key's timing as dnslb planned and wrote it (BIND's fields),
    // and what was served held to it: published a DNSKEY TTL and the
    // propagation delay before it signed, in the DNSKEY RRset from its
    // publication on, and signing nothing before its activation (the
    // daemon's clock is this one).
    let origin = hickory_proto::rr::Name::from_ascii(format!("{ORIGIN}.")).unwrap();
    let keys = dnslb::signer::keyfile::read_keys(&key_dir, &origin).expect("the key files");
    let timing = keys
        .iter()
        .find(|key| key.tag == new)
        .map(|key| key.timing)
        .expect("the new key's files");
    let (publish, activate) = (
        timing.publish.expect("published") as f64,
        timing.activate.expect("activated") as f64,
    );
    assert!(
        activate - publish >= DNSKEY_TTL + PROPAGATION,
        "published at {publish}, active at {activate}"
    );
    for sample in &samples {
        assert!(
            // Planned at a tick, in whole seconds: a second's slack.
            sample.asked < publish + 1.0 || sample.dnskeys.contains(&new),
            "asked at {:.1}, after the publication at {publish}: {:?}",
            sample.asked,
            sample.dnskeys
        );
        if sample.www.iter().any(|(tag, _)| *tag == new) {
            assert!(
                sample.at >= activate,
                "signed by the new key at {:.1}, before its activation at {activate}",
                sample.at
            );
        }
    }
    let last_old_expiry = samples
        .iter()
        .flat_map(|s| &s.www)
        .filter(|(tag, _)| *tag == old)
        .map(|(_, expiration)| f64::from(*expiration))
        .fold(0.0, f64::max);
    let removed = first(&|s| s.at > signing && !s.dnskeys.contains(&old));
    // Expirations are whole seconds.
    assert!(
        removed >= last_old_expiry - 1.0,
        "the old key left at {removed:.1}, its last signature expired at {last_old_expiry}"
    );
    assert!(validated_answers > 50, "{validated_answers}");
    let status = daemon.cli(&["dnssec", "status"]).unwrap();
    assert!(status.contains(&new.to_string()), "{status}");
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A health flip under a failover and a weighted policy: once the checks
/// decide, the kernel sends the new answers, signed, within a second, and
/// they validate (delv, and unbound as a validating resolver).
#[test]
fn after_a_health_flip_the_new_answers_validate_within_a_second() {
    let _turn = take_turn();
    const INTERVAL_MS: u64 = 100;
    const FALL: u64 = 2;
    const TIMEOUT_MS: u64 = 50;
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let backend = |last: u8| SocketAddr::new(Ipv4Addr::new(127, 0, 0, last).into(), 8080);
    let mut backends: Vec<Option<HttpBackend>> = [11, 12, 13, 14]
        .into_iter()
        .map(|last| Some(HttpBackend::start(&rig.server, backend(last)).expect("backend")))
        .collect();
    let text = format!(
        r#"{zone}
{check}
[pool.primary]
check = "web"
endpoints = ["127.0.0.11"]
[pool.secondary]
check = "web"
endpoints = ["127.0.0.12"]
[pool.weighted]
check = "web"
endpoints = [{{ address = "127.0.0.13", weight = 1 }}, {{ address = "127.0.0.14", weight = 1 }}]

[service.f]
name = "f.{ORIGIN}."
ttl = 1
[service.f.policy]
kind = "failover"
primary = {{ pool = "primary" }}
secondary = {{ pool = "secondary" }}

[service.w]
name = "w.{ORIGIN}."
ttl = 1
policy = {{ kind = "weighted", pool = "weighted" }}
"#,
        zone = zone_entry("dnssec = \"online\""),
        check = web_check(INTERVAL_MS, TIMEOUT_MS, 2, FALL),
    );
    let config = daemon::policy_file("online-signing", "flip", &text);
    let dir = config.parent().unwrap().to_owned();
    let key_dir = dir.join("keys");
    let daemon = start(&rig, &config, &key_dir);
    let anchor = anchor_in_key_dir(&key_dir, false).unwrap();
    let anchor_file = write_trust_anchor(&dir, &anchor, "anchor.conf").unwrap();
    let unbound = validating_unbound(&rig, &dir, &anchor);
    let asked = std::cell::Cell::new(0u64);
    let addrs = |name: &str| -> BTreeSet<String> {
        asked.set(asked.get() + 1);
        let answer = ask_with_do(&rig.client, name, RecordType::A)
            .unwrap()
            .expect("an answer");
        assert!(!rrsigs_of(&answer, RecordType::A).is_empty(), "{answer:?}");
        answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect()
    };
    // Both up: the primary, and either weighted endpoint.
    let settle = Instant::now() + Duration::from_secs(5);
    while addrs("f.signed.test.") != BTreeSet::from(["127.0.0.11".to_owned()]) {
        assert!(Instant::now() < settle, "the primary never answered");
        thread::sleep(Duration::from_millis(50));
    }
    let kernel = || kernel_sent_and_unsigned(&rig);
    let (sent_before, unsigned_before) = kernel();
    let asked_before = asked.get();
    backends[0].take().expect("running").stop();
    backends[2].take().expect("running").stop();
    let stopped = Instant::now();
    // The verdict comes within FALL probes and a timeout; the new answers
    // must validate within a second of it.
    let verdict = Duration::from_millis(FALL * INTERVAL_MS + TIMEOUT_MS);
    let bound = verdict + Duration::from_secs(1);
    for (name, now_answered) in [
        ("f.signed.test.", "127.0.0.12"),
        ("w.signed.test.", "127.0.0.14"),
    ] {
        let wanted = BTreeSet::from([now_answered.to_owned()]);
        loop {
            let seen = addrs(name);
            let said = delv(
                rig.client.command("delv"),
                &anchor_file,
                SERVER_ADDR,
                53,
                name,
                "A",
            )
            .unwrap();
            // Both the signed answer and delv's (its own query) show the
            // new endpoint alone, fully validated.
            let delv_sees = said.lines().any(|l| l.contains(now_answered))
                && !said.lines().any(|l| {
                    l.contains("\tA\t") && !l.contains(now_answered) && !l.starts_with(';')
                });
            if seen == wanted && validated(&said, true) && delv_sees {
                break;
            }
            assert!(
                stopped.elapsed() < bound,
                "{name}: {seen:?} and delv said {said} {:?} after the backend stopped (bound {bound:?})\n{}",
                stopped.elapsed(),
                daemon.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
    // Every DO query asked here (and delv's for the names) was answered
    // by the kernel, which never lacked a signature.
    let (sent_after, unsigned_after) = kernel();
    assert!(
        sent_after - sent_before >= asked.get() - asked_before,
        "{} sent by the kernel for {} asked",
        sent_after - sent_before,
        asked.get() - asked_before
    );
    assert_eq!(
        unsigned_after, unsigned_before,
        "no DO query passed unsigned"
    );
    // A validating resolver takes them: within its cache's TTL (1 s) more.
    let resolver_bound = bound + Duration::from_secs(1);
    for (name, now_answered) in [
        ("f.signed.test.", "127.0.0.12"),
        ("w.signed.test.", "127.0.0.14"),
    ] {
        loop {
            let answer = unbound
                .resolve(&rig.client, name, RecordType::A)
                .unwrap()
                .expect("unbound answers");
            let only_new = answer.answers.iter().all(|r| match &r.data {
                RData::A(a) => a.0.to_string() == now_answered,
                _ => true,
            });
            if answer.metadata.authentic_data && only_new && !answer.answers.is_empty() {
                break;
            }
            assert!(
                stopped.elapsed() < resolver_bound,
                "{name}: unbound said {answer:?} after {:?}\n{}",
                stopped.elapsed(),
                unbound.log_text()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Signatures valid for 10 s (the shortest allowed), under steady DO
/// queries for two and a half times that: the kernel answers throughout
/// with signatures it is given anew, and none it sends has expired when it
/// arrives.
#[test]
fn a_run_longer_than_the_signature_validity_never_sends_an_expired_signature() {
    let _turn = take_turn();
    const VALIDITY_S: u64 = 10;
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let text = zone_entry(&format!("[zone.dnssec]\nvalidity = \"{VALIDITY_S}s\"\n"));
    let config = daemon::policy_file("online-signing", "expiry", &text);
    let dir = config.parent().unwrap().to_owned();
    let daemon = start(&rig, &config, &dir.join("keys"));
    let kernel = || kernel_sent_and_unsigned(&rig);
    // The first answer signs the name (the daemon's, or the kernel's
    // from the start): from here on, the kernel's.
    ask_with_do(&rig.client, "www.signed.test.", RecordType::A).unwrap();
    let (sent_before, unsigned_before) = kernel();
    let end = Instant::now() + Duration::from_secs(VALIDITY_S * 5 / 2);
    let (mut asked, mut expirations) = (0u64, BTreeSet::new());
    while Instant::now() < end {
        let answer = ask_with_do(&rig.client, "www.signed.test.", RecordType::A)
            .unwrap()
            .expect("an answer");
        let arrived = unix_now();
        asked += 1;
        let rrsigs = rrsigs_of(&answer, RecordType::A);
        assert!(!rrsigs.is_empty(), "signed: {answer:?}");
        for (_, expiration) in rrsigs {
            assert!(
                f64::from(expiration) > arrived,
                "an expired signature ({expiration}) arrived at {arrived:.1}"
            );
            expirations.insert(expiration);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let (sent_after, unsigned_after) = kernel();
    // Signed anew every half validity: two renewals at least in the run.
    assert!(expirations.len() >= 3, "{expirations:?}");
    // The kernel answered all but a handful (a renewal a tick late).
    let sent = sent_after - sent_before;
    assert!(
        sent * 100 >= asked * 99,
        "the kernel sent {sent} of {asked}; {} passed unsigned",
        unsigned_after - unsigned_before
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where `cargo xtask setup` installs DNSViz (from PyPI, in a virtual
/// environment).
const DNSVIZ: &str = "/opt/dnslb-tools/dnsviz/bin/dnsviz";

/// DNSViz probes the zone on the rig as an authoritative analysis (the
/// delegation and the DS given, as the parent would hold them), then
/// grok analyses it with the key dnslb made as the trust anchor: the zone
/// is SECURE and nothing in it is an error or a warning.
#[test]
fn dnsviz_finds_no_error_or_warning_in_the_zone_signed_online() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let (config, dir) = policy("dnsviz");
    let key_dir = dir.join("keys");
    let daemon = start(&rig, &config, &key_dir);
    let anchor = anchor_in_key_dir(&key_dir, false).unwrap();
    let server = format!("ns1.{ORIGIN}={SERVER_ADDR}");
    let probe = rig
        .client
        .command("timeout")
        .args(["120", DNSVIZ, "probe", "-A", "-a", ORIGIN])
        .args(["-N", &format!("{ORIGIN}:{server}")])
        .args(["-D", &format!("{ORIGIN}:{}", anchor.ds)])
        .args(["-x", &format!("{ORIGIN}:{server}")])
        .args([
            ORIGIN,
            "www.signed.test",
            "w.signed.test",
            "x.wild.signed.test",
        ])
        .output()
        .expect("dnsviz runs (cargo xtask setup installs it)");
    assert!(
        probe.status.success(),
        "dnsviz probe: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let probed = dir.join("probe.json");
    std::fs::write(&probed, &probe.stdout).unwrap();
    let keys = dir.join("trusted-keys");
    std::fs::write(
        &keys,
        format!(
            "{ORIGIN}. IN DNSKEY 257 3 {} {}\n",
            anchor.algorithm, anchor.key
        ),
    )
    .unwrap();
    let grok = std::process::Command::new(DNSVIZ)
        .args(["grok", "-t"])
        .arg(&keys)
        .arg("-r")
        .arg(&probed)
        .output()
        .expect("dnsviz grok runs");
    assert!(
        grok.status.success(),
        "dnsviz grok: {}",
        String::from_utf8_lossy(&grok.stderr)
    );
    let analysis: serde_json::Value = serde_json::from_slice(&grok.stdout).expect("grok's JSON");
    assert_eq!(
        analysis[&format!("{ORIGIN}.")]["zone"]["status"],
        "SECURE",
        "{analysis:#}"
    );
    let mut problems = Vec::new();
    find_problems(&analysis, "", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}\n{}", daemon.log_text());
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every `errors` and `warnings` entry in grok's analysis, with its path.
fn find_problems(value: &serde_json::Value, path: &str, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                let here = format!("{path}/{key}");
                if matches!(key.as_str(), "errors" | "warnings")
                    && inner.as_array().is_some_and(|list| !list.is_empty())
                {
                    found.push(format!("{here}: {inner}"));
                }
                find_problems(inner, &here, found);
            }
        }
        serde_json::Value::Array(list) => {
            for (i, inner) in list.iter().enumerate() {
                find_problems(inner, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

/// Two nodes sharing one key directory (as a fleet mounts it): the keys
/// are made once, the ZSK roll (lifetimes in seconds) is decided once and
/// both sign with the successor, a KSK roll asked of one node is followed
/// by the other within its one-second sweep, and the answers of both
/// validate with the anchor throughout.
#[test]
fn nodes_sharing_a_key_directory_sign_with_the_same_keys_and_roll_once() {
    let _turn = take_turn();
    let text = zone_entry(ROLL_IN_SECONDS);
    let config = daemon::policy_file("online-signing", "shared-keys", &text);
    let dir = config.parent().unwrap().to_owned();
    let key_dir = dir.join("shared-keys");
    let key_dir_arg = key_dir.display().to_string();
    let ports = [daemon::free_port(), daemon::free_port()];
    let nodes: Vec<Daemon> = ports
        .iter()
        .map(|port| {
            Daemon::start_on_loopback(*port, &config, &["--key-dir", &key_dir_arg])
                .expect("dnslb starts")
        })
        .collect();
    assert_eq!(
        private_files(&key_dir).len(),
        2,
        "a KSK and a ZSK, made once"
    );
    let anchor = anchor_in_key_dir(&key_dir, false).unwrap();
    let anchor = write_trust_anchor(&dir, &anchor, "anchor.conf").unwrap();
    let tags = |port: u16| -> BTreeSet<u16> {
        let answer = ask_with_do_at(("127.0.0.1", port), "signed.test.", RecordType::DNSKEY)
            .unwrap()
            .expect("DNSKEY");
        dnskey_tags(&answer).into_iter().collect()
    };
    let both_validate = |when: &str| {
        for port in ports {
            let said = delv(
                std::process::Command::new("delv"),
                &anchor,
                "127.0.0.1",
                port,
                "www.signed.test.",
                "A",
            )
            .unwrap();
            assert!(validated(&said, true), "{when}, node on {port}: {said}");
        }
    };
    both_validate("at start");
    let first = tags(ports[0]);
    assert_eq!(first, tags(ports[1]));

    // The ZSK's successor is published 3 s (DNSKEY TTL and propagation)
    // before its 16 s are up. The nodes may differ for at most one sweep
    // (1 s) and the time to ask, bounded here at 2 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut apart_since: Option<Instant> = None;
    let rolled = loop {
        let (one, two) = (tags(ports[0]), tags(ports[1]));
        if one == two {
            apart_since = None;
            if one.len() == 3 {
                break one;
            }
        } else {
            let since = *apart_since.get_or_insert_with(Instant::now);
            assert!(
                since.elapsed() < Duration::from_secs(2),
                "the nodes differ: {one:?} and {two:?}"
            );
        }
        assert!(Instant::now() < deadline, "no ZSK successor within 30 s");
        thread::sleep(Duration::from_millis(100));
    };
    assert!(rolled.is_superset(&first), "{rolled:?} keeps {first:?}");
    assert_eq!(
        private_files(&key_dir).len(),
        3,
        "one successor, not one per node"
    );
    both_validate("with the successor published");

    // A KSK roll asked of the second node: the first follows.
    nodes[1]
        .cli(&["dnssec", "roll", "signed.test", "ksk"])
        .expect("dnssec roll");
    let rolled_ksk = tags(ports[1]);
    assert_eq!(rolled_ksk.len(), 4, "{rolled_ksk:?}");
    let followed = Instant::now();
    while tags(ports[0]) != rolled_ksk {
        assert!(
            followed.elapsed() < Duration::from_secs(2),
            "the first node never took the new KSK:\n{}",
            nodes[0].log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
    println!(
        "the other node signed with the new KSK {:?} later",
        followed.elapsed()
    );
    assert_eq!(private_files(&key_dir).len(), 4);
    both_validate("after the KSK roll");
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A function pool cold-starting in a signed zone: while its instance
/// starts, the fallback pool's answer is signed like any other, and
/// validates (delv, asking through the rig, which wakes the pool).
#[test]
fn a_cold_starting_function_pools_fallback_answer_is_signed_and_validates() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    // An instance that never gets ready: every answer is the fallback's.
    let text = format!(
        r#"{zone}
[pool.fn]
kind = "function"
command = "exec sleep 41"
addresses = "127.0.0.120-127.0.0.121"
port = 18090
deadline = "300ms"
fallback = "spare"
start_timeout = "20s"

[pool.spare]
endpoints = ["198.18.0.50"]

[service.fn]
name = "fn.{ORIGIN}."
policy = {{ pool = "fn" }}
"#,
        zone = zone_entry("dnssec = \"online\"")
    );
    let config = daemon::policy_file("online-signing", "cold-start", &text);
    let dir = config.parent().unwrap().to_owned();
    let key_dir = dir.join("keys");
    let daemon = start(&rig, &config, &key_dir);
    let anchor = anchor_in_key_dir(&key_dir, false).unwrap();
    let anchor = write_trust_anchor(&dir, &anchor, "anchor.conf").unwrap();
    let said = delv(
        rig.client.command("delv"),
        &anchor,
        SERVER_ADDR,
        53,
        "fn.signed.test.",
        "A",
    )
    .unwrap();
    assert!(
        validated(&said, true) && said.contains("198.18.0.50"),
        "{said}\n{}",
        daemon.log_text()
    );
    let answer = ask_with_do(&rig.client, "fn.signed.test.", RecordType::A)
        .unwrap()
        .expect("an answer");
    let addrs: Vec<String> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(format!("{} {}", a.0, r.ttl)),
            _ => None,
        })
        .collect();
    // Not cached while the instance starts (TTL 0), and signed.
    assert_eq!(addrs, ["198.18.0.50 0"], "{answer:?}");
    assert_eq!(rrsigs_of(&answer, RecordType::A).len(), 1, "{answer:?}");
    daemon
        .stop(nix::sys::signal::Signal::SIGTERM)
        .expect("dnslb stops, and its starting instance with it");
    let _ = std::fs::remove_dir_all(&dir);
}
