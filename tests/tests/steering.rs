//! Traffic steering end to end: the real daemon with a policy file,
//! attached natively to a veth, real health checks against HTTP backends,
//! real clients in their own namespaces. Needs root.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use dnslb_tests::{
    backend::{HttpBackend, Seen, watch_answers, web_check},
    daemon::{self, Answered, Daemon, RIG_METRICS, ZoneFile, kdig, sample, scrape},
    netns::{Rig, SERVER_ADDR, SwitchedRig},
};
use nix::sys::signal::Signal;

/// These tests time verdicts to within 100 ms and load the machine: they
/// take turns rather than share two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const INTERVAL_MS: u64 = 100;
const RISE: u64 = 2;
const FALL: u64 = 3;
/// How late a verdict may reach the kernel's answers.
const PROPAGATION: Duration = Duration::from_millis(100);

fn server() -> SocketAddr {
    SocketAddr::new(SERVER_ADDR.parse().unwrap(), 53)
}

fn policy_file(test: &str, text: &str) -> PathBuf {
    daemon::policy_file("steering", test, text)
}

fn v4(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn backend_addr(last: u8) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::new(127, 0, 0, last).into(), 8080)
}

/// When, after `from`, the answers settled on `holds` (and kept to it
/// until `until`).
fn settled(
    seen: &[Seen],
    from: Instant,
    until: Instant,
    holds: impl Fn(&[Ipv4Addr]) -> bool,
) -> Option<Duration> {
    let window: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.at > from && s.at < until)
        .collect();
    let last_wrong = window
        .iter()
        .rposition(|s| !s.addrs.as_deref().is_some_and(&holds));
    let first_right = match last_wrong {
        Some(i) => window.get(i + 1)?,
        None => window.first()?,
    };
    Some(first_right.at - from)
}

#[test]
fn a_failed_backend_leaves_the_kernel_answers_within_fall_times_interval() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let mut backends: Vec<Option<HttpBackend>> = (11..=13)
        .map(|last| Some(HttpBackend::start(&rig.server, backend_addr(last)).expect("backend")))
        .collect();
    let config = policy_file(
        "failover",
        &format!(
            r#"
{check}
[pool.web]
check = "web"
endpoints = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]

[service.svc]
name = "svc.example.com."
ttl = 5
policy = {{ kind = "multivalue", pool = "web" }}
"#,
            check = web_check(INTERVAL_MS, 50, RISE, FALL),
        ),
    );
    let config = config.display().to_string();
    let daemon = Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &["--config", &config])
        .expect("dnslb starts");
    let all = [v4("127.0.0.11"), v4("127.0.0.12"), v4("127.0.0.13")];
    let watched = v4("127.0.0.12");
    let before = Answered::scrape(&rig).unwrap();

    let stop = AtomicBool::new(false);
    let (seen, stopped_at, restarted_at) = thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            watch_answers(
                &rig.client,
                server(),
                "svc.example.com.",
                Duration::from_millis(5),
                Duration::from_secs(20),
                &stop,
            )
        });
        thread::sleep(Duration::from_millis(600));
        backends[1].take().expect("running").stop();
        let stopped_at = Instant::now();
        thread::sleep(Duration::from_millis(1200));
        backends[1] =
            Some(HttpBackend::start(&rig.server, backend_addr(12)).expect("backend again"));
        let restarted_at = Instant::now();
        thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
        let seen = watcher.join().expect("watcher").expect("queries");
        (seen, stopped_at, restarted_at)
    });
    let log = daemon.log_text();
    assert!(
        seen.iter().all(|s| s.addrs.is_some()),
        "every query answered:\n{log}"
    );
    let start = seen.first().unwrap().at;
    let first = seen
        .iter()
        .find(|s| s.at > start + Duration::from_millis(300))
        .unwrap();
    assert_eq!(
        first.addrs.as_deref().map(sorted),
        Some(all.to_vec()),
        "all three while healthy"
    );

    let gone = settled(&seen, stopped_at, restarted_at, |addrs| {
        !addrs.contains(&watched)
    })
    .expect("the stopped backend left the answers");
    let limit = Duration::from_millis(FALL * INTERVAL_MS) + PROPAGATION;
    assert!(
        gone <= limit,
        "excluded after {gone:?}, limit {limit:?}:\n{log}"
    );
    let end = seen.last().unwrap().at + Duration::from_millis(1);
    let back = settled(&seen, restarted_at, end, |addrs| addrs.contains(&watched))
        .expect("the restarted backend came back");
    let limit = Duration::from_millis(RISE * INTERVAL_MS) + PROPAGATION;
    let earliest = Duration::from_millis((RISE - 1) * INTERVAL_MS);
    assert!(
        back <= limit && back >= earliest,
        "back after {back:?}, expected {earliest:?}..{limit:?}"
    );
    eprintln!(
        "excluded after {gone:?}, back after {back:?} ({} queries)",
        seen.len()
    );

    // Answered by the kernel, not the daemon.
    let after = Answered::scrape(&rig).unwrap();
    let by_xdp = after.xdp.unwrap() - before.xdp.unwrap_or(0);
    assert!(
        by_xdp as usize >= seen.len() * 95 / 100,
        "{by_xdp} of {} from XDP",
        seen.len()
    );
    assert!(
        after.userspace - before.userspace < 20,
        "{before:?} -> {after:?}"
    );

    let metrics = scrape(&rig.server, RIG_METRICS).unwrap();
    let series = |name: &str| {
        format!("{name}{{check=\"web\",endpoint=\"127.0.0.12\",pool=\"web\",port=\"\"}}")
    };
    assert_eq!(
        sample(&metrics, &series("dnslb_health_check_up")),
        Some(1),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &series("dnslb_health_check_transitions_total")),
        Some(2),
        "{metrics}"
    );
    let served = sample(
        &metrics,
        "dnslb_policy_answers_total{branch=\"web\",service=\"svc\"}",
    );
    assert!(served.unwrap_or(0) >= by_xdp, "{metrics}");
    daemon.stop(Signal::SIGTERM).unwrap();
}

fn sorted(addrs: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    let mut addrs = addrs.to_vec();
    addrs.sort();
    addrs
}

const GEO_CSV: &str = "198.18.1.0/24,EU,DE,,52.5,13.4\n198.18.2.0/24,NA,US,,38.9,-77.0\n";

#[test]
fn clients_in_different_networks_get_different_answers_from_the_kernel() {
    let _turn = take_turn();
    let rig = SwitchedRig::new(&["198.18.1.1", "198.18.2.1"]).expect("switched rig");
    let _pass = rig.attach_switch_pass_through().expect("pass-through");
    let config = policy_file(
        "geo",
        r#"
[geo]
csv = "geo.csv"
[pool.eu]
endpoints = ["198.18.10.1"]
[pool.us]
endpoints = ["198.18.20.1"]
[service.geo]
name = "geo.example.com."
[service.geo.policy]
kind = "geolocation"
branches = [
  { continent = "EU", pool = "eu" },
  { country = "US", pool = "us" },
]
"#,
    );
    std::fs::write(config.with_file_name("geo.csv"), GEO_CSV).unwrap();
    let config = config.display().to_string();
    let daemon = Daemon::start_on(
        &rig.server,
        &rig.server_if,
        &ZoneFile::example(),
        true,
        &["--config", &config],
    )
    .expect("dnslb starts");
    let at = format!("@{SERVER_ADDR}");
    let before = Answered::scrape_from(&rig.server).unwrap();
    let europe = kdig(&rig.clients[0], &[&at, "geo.example.com.", "A"]).unwrap();
    let america = kdig(&rig.clients[1], &[&at, "geo.example.com.", "A"]).unwrap();
    assert!(
        europe.contains("198.18.10.1") && !europe.contains("198.18.20.1"),
        "{europe}"
    );
    assert!(
        america.contains("198.18.20.1") && !america.contains("198.18.10.1"),
        "{america}"
    );
    let after = Answered::scrape_from(&rig.server).unwrap();
    assert_eq!(
        after.xdp.unwrap() - before.xdp.unwrap_or(0),
        2,
        "both from the kernel"
    );
    assert_eq!(after.userspace, before.userspace);

    // With Client Subnet, the subnet decides (in the kernel too), and the
    // answer says which prefix it was decided by.
    let subnet = kdig(
        &rig.clients[0],
        &[&at, "+subnet=198.18.2.0/24", "geo.example.com.", "A"],
    )
    .unwrap();
    assert!(subnet.contains("198.18.20.1"), "{subnet}");
    assert!(subnet.contains("198.18.2.0/24/24"), "scope 24:\n{subnet}");
    let with_subnet = Answered::scrape_from(&rig.server).unwrap();
    assert_eq!(
        (
            with_subnet.xdp.unwrap() - after.xdp.unwrap(),
            with_subnet.userspace
        ),
        (1, after.userspace),
        "the subnet's answer from the kernel"
    );
    daemon.stop(Signal::SIGTERM).unwrap();
}

#[test]
fn answers_never_tear_while_the_policy_flips_under_load() {
    let _turn = take_turn();
    let rig = SwitchedRig::new(&["198.18.1.1"]).expect("switched rig");
    let _pass = rig.attach_switch_pass_through().expect("pass-through");
    let policy = |pool: &str| {
        format!(
            r#"
[pool.x]
endpoints = ["198.18.60.1"]
[pool.y]
endpoints = ["198.18.61.1"]
[pool.other]
endpoints = ["198.18.62.1"]
[service.flip]
name = "flip.example.com."
[service.flip.policy]
kind = "ip"
branches = [
  {{ cidrs = ["198.18.1.0/24"], pool = "{pool}" }},
  {{ cidrs = ["198.18.1.0/25"], pool = "{pool}" }},
  {{ default = true, pool = "other" }},
]
"#
        )
    };
    let path = policy_file("flip", &policy("x"));
    let config = path.display().to_string();
    let daemon = Daemon::start_on(
        &rig.server,
        &rig.server_if,
        &ZoneFile::example(),
        true,
        &["--config", &config],
    )
    .expect("dnslb starts");
    let before = Answered::scrape_from(&rig.server).unwrap();
    let stop = AtomicBool::new(false);
    const FLIPS: usize = 30;
    let seen = thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            watch_answers(
                &rig.clients[0],
                server(),
                "flip.example.com.",
                Duration::ZERO,
                Duration::from_secs(20),
                &stop,
            )
        });
        for flip in 0..FLIPS {
            std::fs::write(&path, policy(if flip % 2 == 0 { "y" } else { "x" })).unwrap();
            daemon.signal(Signal::SIGHUP).unwrap();
            thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        watcher.join().expect("watcher").expect("queries")
    });
    let reloads = daemon.log_text().matches("reload: applied").count();
    assert!(
        reloads >= FLIPS - 1,
        "{reloads} reloads:\n{}",
        daemon.log_text()
    );
    let (mut x, mut y) = (0, 0);
    for s in &seen {
        match s.addrs.as_deref() {
            Some([addr]) if *addr == v4("198.18.60.1") => x += 1,
            Some([addr]) if *addr == v4("198.18.61.1") => y += 1,
            other => panic!("a torn or missing answer: {other:?}"),
        }
    }
    assert!(x > 0 && y > 0, "both states served: {x} and {y}");
    let after = Answered::scrape_from(&rig.server).unwrap();
    let by_xdp = after.xdp.unwrap() - before.xdp.unwrap_or(0);
    eprintln!(
        "{} answers during {FLIPS} flips, {by_xdp} from XDP",
        seen.len()
    );
    assert!(
        by_xdp as usize >= seen.len() * 9 / 10,
        "{by_xdp} of {}",
        seen.len()
    );

    // A broken policy file changes nothing: the error names file and line,
    // and the last good policy goes on answering.
    let Some(last) = seen.last().and_then(|s| s.addrs.clone()) else {
        panic!("no last answer");
    };
    std::fs::write(&path, policy("x").replace("198.18.61.1", "198.18.61.999")).unwrap();
    daemon.signal(Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.log_text().contains("reload failed") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let log = daemon.log_text();
    assert!(
        log.contains("dnslb.toml:5: `198.18.61.999` is not an IP address"),
        "{log}"
    );
    let at = format!("@{SERVER_ADDR}");
    let answer = kdig(&rig.clients[0], &[&at, "+short", "flip.example.com.", "A"]).unwrap();
    assert_eq!(
        answer.trim(),
        last[0].to_string(),
        "still the last good policy"
    );
    daemon.stop(Signal::SIGTERM).unwrap();
}

/// The A records of `name`, sorted, as UDP (the kernel) or TCP (the
/// daemon) answers them.
fn records(rig: &Rig, name: &str, transport: &str) -> Vec<Ipv4Addr> {
    let out = kdig(
        &rig.client,
        &["@198.18.0.2", "+short", transport, name, "A"],
    )
    .unwrap();
    let mut addrs: Vec<Ipv4Addr> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    addrs.sort();
    addrs
}

#[test]
fn a_dead_backend_is_not_answered_after_a_start() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    // 127.0.0.12 has no backend.
    let _alive = HttpBackend::start(&rig.server, backend_addr(11)).expect("backend");
    let check = |name: &str, initial: &str| {
        format!(
            "[check.{name}]\nkind = \"tcp\"\nport = 8080\ninterval = \"5s\"\ntimeout = \"200ms\"\n\
             initial = \"{initial}\"\n\
             [pool.{name}]\ncheck = \"{name}\"\nendpoints = [\"127.0.0.11\", \"127.0.0.12\"]\n\
             [service.{name}]\nname = \"{name}.example.com.\"\n\
             policy = {{ kind = \"multivalue\", pool = \"{name}\" }}\n"
        )
    };
    let config = policy_file(
        "initial",
        &(check("probed", "probe") + &check("trusted", "up")),
    );
    let config = config.display().to_string();
    let before = Instant::now();
    let _daemon = Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &["--config", &config])
        .expect("dnslb starts");
    let started = before.elapsed();
    let alive = vec![v4("127.0.0.11")];
    // The first answers, from both paths, already leave the dead one out.
    assert_eq!(records(&rig, "probed.example.com", "+notcp"), alive);
    assert_eq!(records(&rig, "probed.example.com", "+tcp"), alive);
    // `initial = "up"` trusts both until `fall` probes have failed.
    let both = vec![v4("127.0.0.11"), v4("127.0.0.12")];
    assert_eq!(records(&rig, "trusted.example.com", "+notcp"), both);
    assert!(
        started < Duration::from_secs(3),
        "the start-up wait is bounded by the time-out: {started:?}"
    );
}
