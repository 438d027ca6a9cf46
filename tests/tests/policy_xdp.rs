//! Routing policies decided in the kernel: services from a real policy file
//! written into the maps as the daemon writes them, and hand-built frames
//! through `BPF_PROG_TEST_RUN`. Needs root (CAP_BPF).

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use dns_common::Counter;
use dnslb::{
    config::{Config, parse_config},
    dataplane::{Dataplane, KernelServices, SharedDataplane},
    policy::{AllUp, Health},
    shared::Shared,
    steering::EndpointRef,
};
use dnslb_tests::{
    frame::{QueryFrame, a_records},
    testrun::{XDP_PASS, XDP_TX, program},
};
use hickory_proto::op::Message;

const POLICY: &str = r#"
[geo]
csv = "geo.csv"

[pool.eu]
endpoints = ["198.18.10.1"]
[pool.us]
endpoints = ["198.18.20.1", "198.18.20.2"]
[pool.other]
endpoints = ["198.18.30.1"]
[pool.weighted]
endpoints = [
  { address = "198.18.40.1", weight = 1 },
  { address = "198.18.40.2", weight = 0 },
  { address = "198.18.40.3", weight = 3 },
]

[service.geo]
name = "geo.example.com."
[service.geo.policy]
kind = "geolocation"
branches = [
  { continent = "EU", pool = "eu" },
  { country = "US", pool = "us" },
  { default = true, pool = "other" },
]

[service.ip]
name = "ip.example.com."
[service.ip.policy]
kind = "ip"
branches = [
  { name = "lan", cidrs = ["198.18.0.0/24"], pool = "eu" },
  { name = "upper", cidrs = ["198.18.0.128/25"], pool = "us" },
  { default = true, pool = "other" },
]

[service.weighted]
name = "w.example.com."
policy = { kind = "weighted", pool = "weighted" }

[service.failover]
name = "f.example.com."
fail_closed = true
[service.failover.policy]
kind = "failover"
primary = { pool = "us" }
secondary = { pool = "other" }
"#;

const GEO_CSV: &str = "198.18.1.0/24,EU,DE,,52.5,13.4\n198.18.2.0/24,NA,US,,38.9,-77.0\n";

fn config() -> Config {
    let dir = std::env::temp_dir().join(format!("dnslb-policy-xdp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("geo.csv"), GEO_CSV).unwrap();
    parse_config(&dir.join("dnslb.toml"), POLICY, None).unwrap_or_else(|e| panic!("{e}"))
}

/// Everything up but the listed `(pool, endpoint)` pairs.
struct Down(Vec<(usize, usize)>);

impl Health for Down {
    fn is_up(&self, pool: usize, endpoint: usize) -> bool {
        !self.0.contains(&(pool, endpoint))
    }
}

/// The policy file's services in a loaded program, kept as the steering
/// task keeps them.
struct Loaded {
    config: Config,
    dataplane: Dataplane,
    kernel: KernelServices,
}

impl Loaded {
    /// Every service written with everything up.
    fn new() -> Loaded {
        let mut loaded = Loaded {
            config: config(),
            dataplane: program(),
            kernel: KernelServices::default(),
        };
        loaded.write(&AllUp);
        loaded
    }

    /// Writes every service for `health`, as the steering task does.
    fn write(&mut self, health: &dyn Health) {
        for service in &self.config.services {
            self.kernel
                .write(
                    &mut self.dataplane,
                    service,
                    (&self.config.pools, health),
                    None,
                )
                .expect("written");
        }
    }

    fn pool(&self, name: &str) -> usize {
        let found = self.config.pools.iter().position(|p| p.name == name);
        found.expect("a pool of the test policy")
    }
}

/// The addresses the kernel answers `name` with for `client`; `None` when
/// the frame passes to userspace.
fn ask(dataplane: &mut Dataplane, name: &str, client: Ipv4Addr) -> Option<Vec<Ipv4Addr>> {
    let frame = QueryFrame::a(name).from_client(client).build();
    let outcome = dataplane.test_run(&frame, 1).expect("BPF_PROG_TEST_RUN");
    if outcome.action == XDP_PASS {
        assert_eq!(outcome.frame, frame, "a passed frame is unchanged");
        return None;
    }
    assert_eq!(outcome.action, XDP_TX);
    let message = Message::from_vec(&outcome.frame[42..]).expect("a well-formed answer");
    Some(a_records(&message))
}

fn v4(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn sorted(mut addrs: Vec<Ipv4Addr>) -> Vec<Ipv4Addr> {
    addrs.sort();
    addrs
}

#[test]
fn client_networks_get_their_own_answers_from_the_kernel() {
    let mut loaded = Loaded::new();

    let geo =
        |dp: &mut Dataplane, client: &str| ask(dp, "geo.example.com.", v4(client)).map(sorted);
    assert_eq!(
        geo(&mut loaded.dataplane, "198.18.1.7"),
        Some(vec![v4("198.18.10.1")])
    );
    assert_eq!(
        geo(&mut loaded.dataplane, "198.18.2.7"),
        Some(vec![v4("198.18.20.1"), v4("198.18.20.2")])
    );
    assert_eq!(
        geo(&mut loaded.dataplane, "192.0.2.1"),
        Some(vec![v4("198.18.30.1")])
    );

    let ip = |dp: &mut Dataplane, client: &str| ask(dp, "IP.example.com.", v4(client)).map(sorted);
    assert_eq!(
        ip(&mut loaded.dataplane, "198.18.0.5"),
        Some(vec![v4("198.18.10.1")])
    );
    assert_eq!(
        ip(&mut loaded.dataplane, "198.18.0.200").map(|a| a.len()),
        Some(2),
        "the longer prefix wins"
    );
    assert_eq!(
        ip(&mut loaded.dataplane, "198.18.5.5"),
        Some(vec![v4("198.18.30.1")])
    );

    // Answers are counted by branch, in the kernel.
    let slot = |branch: &str| {
        loaded
            .config
            .branches
            .iter()
            .find(|(_, service, b)| *service == "ip" && *b == branch)
            .map(|(slot, _, _)| slot)
            .unwrap()
    };
    assert_eq!(loaded.dataplane.branch_answers(slot("lan")).unwrap(), 1);
    assert_eq!(loaded.dataplane.branch_answers(slot("upper")).unwrap(), 1);
    assert_eq!(loaded.dataplane.branch_answers(slot("default")).unwrap(), 1);

    // A health change flips the generation; the old one's networks are gone
    // and the answers follow.
    let eu = loaded.pool("eu");
    loaded.write(&Down(vec![(eu, 0)]));
    assert_eq!(
        ip(&mut loaded.dataplane, "198.18.0.5"),
        Some(vec![v4("198.18.30.1")]),
        "down: the default branch"
    );
    assert_eq!(
        geo(&mut loaded.dataplane, "198.18.1.7"),
        Some(vec![v4("198.18.30.1")])
    );
}

#[test]
fn weighted_picks_in_the_kernel_follow_the_weights() {
    let mut loaded = Loaded::new();
    const DRAWS: usize = 8000;
    let mut counts: HashMap<Ipv4Addr, usize> = HashMap::new();
    for _ in 0..DRAWS {
        let answer =
            ask(&mut loaded.dataplane, "w.example.com.", v4("198.18.0.1")).expect("answered");
        assert_eq!(answer.len(), 1, "one endpoint per weighted answer");
        *counts.entry(answer[0]).or_default() += 1;
    }
    assert_eq!(
        counts.get(&v4("198.18.40.2")),
        None,
        "weight 0 gets nothing"
    );
    // Chi-square with one degree of freedom: 10.83 is the 0.1% critical
    // value; the kernel's random draws differ each run, so an honest
    // program fails this one run in a thousand.
    let expected = [(v4("198.18.40.1"), 0.25), (v4("198.18.40.3"), 0.75)];
    let chi_square: f64 = expected
        .iter()
        .map(|(addr, share)| {
            let want = share * DRAWS as f64;
            (counts.get(addr).copied().unwrap_or(0) as f64 - want).powi(2) / want
        })
        .sum();
    assert!(chi_square < 10.83, "chi-square {chi_square:.2}: {counts:?}");
}

#[test]
fn failover_and_fail_closed_in_the_kernel() {
    let mut loaded = Loaded::new();
    let us = loaded.pool("us");
    let other = loaded.pool("other");
    let client = v4("198.18.0.1");
    let failover = |dp: &mut Dataplane| ask(dp, "f.example.com.", client).map(sorted);

    assert_eq!(
        failover(&mut loaded.dataplane).map(|a| a.len()),
        Some(2),
        "primary"
    );
    loaded.write(&Down(vec![(us, 0)]));
    assert_eq!(
        failover(&mut loaded.dataplane),
        Some(vec![v4("198.18.20.2")]),
        "only the healthy one"
    );
    loaded.write(&Down(vec![(us, 0), (us, 1)]));
    assert_eq!(
        failover(&mut loaded.dataplane),
        Some(vec![v4("198.18.30.1")]),
        "secondary"
    );

    // All down and failing closed: the kernel leaves it to userspace (which
    // answers with no records), rather than answering anything.
    let before = loaded
        .dataplane
        .counters()
        .unwrap()
        .get(Counter::PassNotHot);
    let all_down = Down(vec![(us, 0), (us, 1), (other, 0)]);
    loaded.write(&all_down);
    assert_eq!(failover(&mut loaded.dataplane), None);
    assert_eq!(
        loaded
            .dataplane
            .counters()
            .unwrap()
            .get(Counter::PassNotHot),
        before + 1
    );
    // The other services answer with everything, as Route 53 does.
    assert!(ask(&mut loaded.dataplane, "geo.example.com.", v4("198.18.2.7")).is_some());
}

/// A responder view nobody reads: these tests look at the kernel only.
struct Unread;

impl dnslb::steering::SteeredSink for Unread {
    fn set_steered(&self, _: dnslb::steering::Steered) {}
}

fn parse(text: &str) -> Config {
    parse_config(std::path::Path::new("dnslb.toml"), text, None).unwrap()
}

fn shared_program() -> SharedDataplane {
    Arc::new(Shared::new("the test's program", program()))
}

/// The steering of `policy`, writing into `dataplane`.
fn steer(policy: &str, dataplane: &SharedDataplane) -> Arc<dnslb::steering::Steering> {
    dnslb::steering::Steering::start(
        parse(policy),
        Arc::new(Unread),
        Some(dataplane.clone()),
        dnslb::hooks::Hooks::none(),
        dnslb::steering::Overrides::default(),
    )
    .expect("steering starts")
}

/// Drains `address` (in every pool that has it), as `dnslb endpoint drain`.
fn drain(steering: &dnslb::steering::Steering, address: &str) {
    let drained = EndpointRef {
        address: address.parse().unwrap(),
        pool: None,
    };
    let keep_nothing = |_: &_| Ok::<(), std::io::Error>(());
    tokio::task::block_in_place(|| {
        steering.change_overrides(|o, pools| o.drain(drained, pools), keep_nothing)
    })
    .expect("drained");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_service_leaves_its_old_name_in_the_kernel() {
    let before = "[pool.p]\nendpoints = [\"198.18.50.1\"]\n[service.s]\nname = \"old.example.com.\"\npolicy = { pool = \"p\" }\n";
    let dataplane = shared_program();
    let steering = steer(before, &dataplane);
    let answer = |name: &str| ask(&mut dataplane.lock().unwrap(), name, v4("198.18.0.1"));
    assert_eq!(answer("old.example.com."), Some(vec![v4("198.18.50.1")]));

    let after = before.replace("old.example.com.", "new.example.com.");
    tokio::task::block_in_place(|| steering.reload(parse(&after))).expect("reloaded");
    assert_eq!(
        answer("old.example.com."),
        None,
        "the old name passes to the daemon"
    );
    assert_eq!(answer("new.example.com."), Some(vec![v4("198.18.50.1")]));
}

/// The AAAA addresses the kernel answers `name` with for `client`; `None`
/// when the frame passes to userspace.
fn ask_aaaa(dataplane: &Shared<Dataplane>, name: &str, client: Ipv4Addr) -> Option<Vec<Ipv6Addr>> {
    let frame = QueryFrame::aaaa(name).from_client(client).build();
    let outcome = dataplane
        .lock()
        .unwrap()
        .test_run(&frame, 1)
        .expect("BPF_PROG_TEST_RUN");
    if outcome.action == XDP_PASS {
        return None;
    }
    let message = Message::from_vec(&outcome.frame[42..]).expect("a well-formed answer");
    let mut addrs: Vec<Ipv6Addr> = message
        .answers
        .iter()
        .filter_map(|record| match record.data.ip_addr() {
            Some(std::net::IpAddr::V6(v6)) => Some(v6),
            _ => None,
        })
        .collect();
    addrs.sort();
    Some(addrs)
}

/// AAAA services are written into the kernel as the daemon runs them,
/// client-dependent ones included, and follow drains.
#[tokio::test(flavor = "multi_thread")]
async fn aaaa_services_are_answered_by_the_kernel() {
    let policy = r#"
[pool.v6a]
endpoints = ["2001:db8::a1", "2001:db8::a2"]
[pool.v6b]
endpoints = ["2001:db8::b1"]
[service.web6]
name = "web.example.com."
type = "AAAA"
policy = { kind = "multivalue", pool = "v6a" }
[service.near6]
name = "near.example.com."
type = "AAAA"
[service.near6.policy]
kind = "ip"
branches = [
  { name = "lan", cidrs = ["198.18.0.0/24"], pool = "v6b" },
  { default = true, pool = "v6a" },
]
"#;
    let dataplane = shared_program();
    let steering = steer(policy, &dataplane);
    let v6 = |text: &str| -> Ipv6Addr { text.parse().unwrap() };
    let both = Some(vec![v6("2001:db8::a1"), v6("2001:db8::a2")]);
    assert_eq!(
        ask_aaaa(&dataplane, "web.example.com.", v4("192.0.2.1")),
        both
    );
    assert_eq!(
        ask_aaaa(&dataplane, "near.example.com.", v4("198.18.0.9")),
        Some(vec![v6("2001:db8::b1")])
    );
    assert_eq!(
        ask_aaaa(&dataplane, "near.example.com.", v4("192.0.2.1")),
        both
    );

    drain(&steering, "2001:db8::a2");
    assert_eq!(
        ask_aaaa(&dataplane, "web.example.com.", v4("192.0.2.1")),
        Some(vec![v6("2001:db8::a1")])
    );
}

/// A client-dependent service whose next generation does not fit beside
/// its current one in the client-network trie: the change is not lost and
/// no stale answer stays in the kernel. The name passes to the daemon,
/// which has the new answers, until the retry writes them.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_the_kernel_cannot_take_passes_to_the_daemon_until_written() {
    let policy = r#"
[pool.lan]
endpoints = ["198.18.10.1", "198.18.10.2"]
[pool.other]
endpoints = ["198.18.30.1"]
[service.ip]
name = "ip.example.com."
[service.ip.policy]
kind = "ip"
branches = [
  { name = "lan", cidrs = ["198.18.0.0/24"], pool = "lan" },
  { default = true, pool = "other" },
]
"#;
    // Room for one generation of the service's networks, not two.
    let dataplane: SharedDataplane = Arc::new(Shared::new(
        "the test's program",
        dnslb_tests::testrun::load(dnslb::dataplane::DataplaneOptions::new(
            53,
            dnslb_tests::testrun::EDNS_PAYLOAD,
            4,
        )),
    ));
    let steering = steer(policy, &dataplane);
    let answer = || {
        let mut answer = ask(
            &mut dataplane.lock().unwrap(),
            "ip.example.com.",
            v4("198.18.0.1"),
        );
        if let Some(addrs) = &mut answer {
            addrs.sort();
        }
        answer
    };
    let both = vec![v4("198.18.10.1"), v4("198.18.10.2")];
    assert_eq!(answer(), Some(both));

    drain(&steering, "198.18.10.2");
    // Never the old answer: the kernel passes until it has the new one.
    let one = vec![v4("198.18.10.1")];
    let first = answer();
    assert!(first.is_none() || first == Some(one.clone()), "{first:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match answer() {
            Some(addrs) if addrs == one => break,
            None => {}
            stale => panic!("a stale kernel answer: {stale:?}"),
        }
        assert!(std::time::Instant::now() < deadline, "never written again");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
