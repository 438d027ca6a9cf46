//! Load-aware steering end to end: the real daemon attached natively to
//! the rig's veth, endpoints that report their load, and the kernel's
//! answers counted by a real client in its own namespace. Needs root.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use dnslb::dataplane::PassThrough;
use dnslb_tests::{
    backend::{AgentKind, HttpBackend, LoadAgent, tally_answers, web_check},
    daemon::{self, Answered, Daemon, ZoneFile},
    netns::{Rig, SERVER_ADDR},
    process::Process,
};

/// These tests count shares of thousands of answers and time changes:
/// they take turns rather than share two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const NAME: &str = "svc.example.com.";

fn server() -> SocketAddr {
    SocketAddr::new(SERVER_ADDR.parse().unwrap(), 53)
}

fn endpoint(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// The rig, its client's pass-through program, and HTTP backends for the
/// health check on 127.0.0.11 to .13 (dropped before the rig).
struct Checked {
    backends: Vec<HttpBackend>,
    _pass: PassThrough,
    rig: Rig,
}

impl Checked {
    fn new() -> Checked {
        let rig = Rig::new().expect("namespaces and veth");
        let pass = rig.attach_client_pass_through().expect("pass-through");
        let backends = (11..=13)
            .map(|last| {
                HttpBackend::start(&rig.server, SocketAddr::new(endpoint(last).into(), 8080))
                    .expect("backend")
            })
            .collect();
        Checked {
            backends,
            _pass: pass,
            rig,
        }
    }
}

/// A weighted service over the three endpoints, checked, weighed by
/// `load` and with `extra` lines in the pool.
fn policy(test: &str, load: &str, extra: &str) -> String {
    let file = daemon::policy_file(
        "load_steering",
        test,
        &format!(
            r#"
{check}
[pool.web]
check = "web"
endpoints = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
{load}
{extra}

[service.svc]
name = "{NAME}"
ttl = 5
policy = {{ kind = "weighted", pool = "web" }}
"#,
            check = web_check(100, 50, 2, 3),
        ),
    );
    file.display().to_string()
}

/// Each endpoint's share of `tally`'s answers, in percent.
fn percent(tally: &BTreeMap<Option<Ipv4Addr>, u64>) -> Vec<f64> {
    let total: u64 = tally.values().sum();
    (11..=13)
        .map(|last| {
            let count = tally.get(&Some(endpoint(last))).copied().unwrap_or(0);
            100.0 * count as f64 / total as f64
        })
        .collect()
}

fn push(daemon: &Daemon, last: u8, load: &str) {
    let address = endpoint(last).to_string();
    daemon
        .cli(&["endpoint", "load", "web", &address, load])
        .expect("the load is taken");
}

/// The endpoint `last` of pool `web`, as the control API lists it.
fn listed(daemon: &Daemon, last: u8) -> serde_json::Value {
    let listed = daemon.api_get("/v1/endpoints?pool=web").expect("endpoints");
    listed
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|row| row["address"] == endpoint(last).to_string())
        })
        .cloned()
        .expect("the endpoint is listed")
}

/// Pushes loads 0.2, 0.5 and 0.9 (watermarks 0.3 and 0.8: shares 1, 0.6
/// and 0 of equal weights), and asserts that 20,000 answers split 62.5%,
/// 37.5% and none, within 2 points. The answers counted meanwhile, by
/// where they were made.
fn split_by_pushed_loads(rig: &Rig, daemon: &Daemon) -> Answered {
    for (last, load) in [(11, "0.2"), (12, "0.5"), (13, "0.9")] {
        push(daemon, last, load);
    }
    let before = Answered::scrape(rig).expect("metrics");
    let tally = tally_answers(&rig.client, server(), NAME, 20_000).expect("queries");
    let after = Answered::scrape(rig).expect("metrics");
    let shares = percent(&tally);
    assert!(
        near(&shares, [62.5, 37.5, 0.0], 2.0),
        "shares {shares:?}, expected 62.5/37.5/0 within 2 points: {tally:?}"
    );
    Answered {
        xdp: after.xdp.map(|xdp| xdp - before.xdp.unwrap_or(0)),
        userspace: after.userspace - before.userspace,
    }
}

#[test]
fn the_daemon_draws_by_the_same_effective_weights() {
    let _turn = take_turn();
    let checked = Checked::new();
    let rig = &checked.rig;
    let config = policy(
        "push_daemon",
        r#"load = { source = "push", low = 0.3, high = 0.8 }"#,
        "",
    );
    let daemon = Daemon::start_on_rig(rig, &ZoneFile::example(), false, &["--config", &config])
        .expect("dnslb --no-xdp starts");
    let answered = split_by_pushed_loads(rig, &daemon);
    assert!(
        answered.userspace >= 20_000,
        "the daemon answered: {answered:?}"
    );
}

#[test]
fn pushed_loads_split_the_kernels_answers_by_effective_weight_and_high_load_sheds() {
    let _turn = take_turn();
    let checked = Checked::new();
    let rig = &checked.rig;
    let config = policy(
        "push",
        r#"load = { source = "push", low = 0.3, high = 0.8, smoothing = 0.5 }"#,
        "",
    );
    let daemon = Daemon::start_on_rig(rig, &ZoneFile::example(), true, &["--config", &config])
        .expect("dnslb starts");
    let answered = split_by_pushed_loads(rig, &daemon);
    let by_kernel = answered.xdp.unwrap_or(0);
    assert!(
        by_kernel >= 20_000,
        "the kernel answered {by_kernel} of 20,000 queries (daemon: {})",
        answered.userspace
    );
    let row = listed(&daemon, 12);
    assert_eq!(row["load"], 0.5, "{row}");
    assert!(
        (row["effective_weight"].as_f64().unwrap() - 0.6).abs() < 1e-9,
        "{row}"
    );
    assert!(
        row["weighing"]
            .as_str()
            .unwrap()
            .contains("between the watermarks"),
        "{row}"
    );
    let metrics = daemon::scrape(&rig.server, daemon::RIG_METRICS).expect("metrics");
    for series in [
        "dnslb_endpoint_load{endpoint=\"127.0.0.12\",pool=\"web\"} 0.5",
        "dnslb_endpoint_effective_weight{endpoint=\"127.0.0.12\",pool=\"web\"} 0.6",
        "dnslb_endpoint_effective_weight{endpoint=\"127.0.0.13\",pool=\"web\"} 0",
        "dnslb_pool_saturated{pool=\"web\"} 0",
    ] {
        assert!(metrics.contains(series), "no {series} in\n{metrics}");
    }
    let text = daemon
        .cli(&["endpoint", "list", "--pool", "web"])
        .expect("list");
    assert!(
        text.contains("EFFECTIVE") && text.contains("at or above high 0.8: shed"),
        "{text}"
    );

    // .12 reports 0.95 as an agent does, every 250 ms: smoothed (0.725,
    // then 0.84) it is shed on the second report.
    let reported = Instant::now();
    let shed_at = loop {
        assert!(
            reported.elapsed() < Duration::from_secs(5),
            ".12 is still answered 5 s after its load rose past high"
        );
        push(&daemon, 12, "0.95");
        let tally = tally_answers(&rig.client, server(), NAME, 500).expect("queries");
        if !tally.contains_key(&Some(endpoint(12))) {
            break reported.elapsed();
        }
        thread::sleep(Duration::from_millis(250));
    };
    assert!(
        shed_at < Duration::from_secs(2),
        "shed {shed_at:?} after the first report"
    );
    let tally = tally_answers(&rig.client, server(), NAME, 2_000).expect("queries");
    assert_eq!(percent(&tally)[0], 100.0, "only .11 is left: {tally:?}");
    let row = listed(&daemon, 12);
    assert_eq!(row["healthy"], true, "shed, not down: {row}");
    assert_eq!(row["effective_weight"], 0.0, "{row}");

    // .11 over high too: every endpoint is shed, so the pool answers as
    // if none were (their configured weights, equal), and says so.
    // Smoothed from 0.2: over 0.8 on the fourth report.
    for _ in 0..4 {
        push(&daemon, 11, "0.95");
    }
    until_shares(rig, "saturated: all three again", |s| {
        near(s, [33.3, 33.3, 33.3], 8.0)
    });
    let metrics = daemon::scrape(&rig.server, daemon::RIG_METRICS).expect("metrics");
    assert!(
        metrics.contains("dnslb_pool_saturated{pool=\"web\"} 1"),
        "{metrics}"
    );
    let row = listed(&daemon, 11);
    assert!(
        row["weighing"].as_str().unwrap().contains("pool saturated"),
        "{row}"
    );
}

/// Load agents of `kind` on `port` of the three endpoints, saying `replies`.
fn agents(rig: &Rig, kind: AgentKind, port: u16, replies: [&str; 3]) -> Vec<LoadAgent> {
    (11..=13)
        .zip(replies)
        .map(|(last, reply)| {
            let at = SocketAddr::new(endpoint(last).into(), port);
            LoadAgent::start(&rig.server, at, kind, reply).expect("agent")
        })
        .collect()
}

/// Asks in rounds of 300 queries until `holds` of the shares, for at most
/// 5 s: how long it took.
fn until_shares(rig: &Rig, what: &str, holds: impl Fn(&[f64]) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let tally = tally_answers(&rig.client, server(), NAME, 300).expect("queries");
        if holds(&percent(&tally)) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: not within 5 s: {tally:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn near(shares: &[f64], expected: [f64; 3], points: f64) -> bool {
    shares
        .iter()
        .zip(expected)
        .all(|(share, expected)| (share - expected).abs() <= points)
}

#[test]
fn haproxy_agents_drain_maint_and_ready_endpoints_and_weigh_by_percent() {
    let _turn = take_turn();
    let checked = Checked::new();
    let rig = &checked.rig;
    let agents = agents(rig, AgentKind::Tcp, 9777, ["ready", "up", "ready 100%"]);
    let config = policy(
        "agent",
        r#"load = { source = "agent", port = 9777, interval = "200ms", smoothing = 1.0 }"#,
        "",
    );
    let daemon = Daemon::start_on_rig(rig, &ZoneFile::example(), true, &["--config", &config])
        .expect("dnslb starts");
    until_shares(rig, "all three answered", |s| s.iter().all(|&p| p > 20.0));
    agents[1].say("drain");
    until_shares(rig, ".12 drained", |s| s[1] == 0.0);
    let row = listed(&daemon, 12);
    assert_eq!(
        row["healthy"], true,
        "drained by its agent, not down: {row}"
    );
    assert!(row["weighing"].as_str().unwrap().contains("drain"), "{row}");
    agents[2].say("maint");
    until_shares(rig, ".13 in maintenance", |s| s[2] == 0.0 && s[0] == 100.0);
    agents[1].say("ready");
    agents[2].say("up");
    until_shares(rig, "both back", |s| s[1] > 20.0 && s[2] > 20.0);
    // 50% of its weight: 0.5 : 1 : 1.
    agents[0].say("50%");
    until_shares(rig, ".11 at half", |s| s[0] < 25.0);
    let tally = tally_answers(&rig.client, server(), NAME, 10_000).expect("queries");
    let shares = percent(&tally);
    assert!(
        near(&shares, [20.0, 40.0, 40.0], 2.0),
        "{shares:?}: {tally:?}"
    );
    // An agent that hangs: logged once, its last figure counts until it
    // expires (three intervals), then its configured weight.
    agents[0].say("");
    until_shares(rig, ".11 expired to its whole weight", |s| s[0] > 28.0);
    let row = listed(&daemon, 11);
    assert!(
        row["weighing"].as_str().unwrap().contains("expired"),
        "{row}"
    );
    thread::sleep(Duration::from_secs(1));
    let log = daemon.log_text();
    let warnings = log
        .lines()
        .filter(|l| l.contains("no load figure from 127.0.0.11"))
        .count();
    assert_eq!(warnings, 1, "logged once per endpoint and cause:\n{log}");
}

#[test]
fn http_figures_steer_and_garbage_keeps_the_last_good_weight() {
    let _turn = take_turn();
    let checked = Checked::new();
    let rig = &checked.rig;
    let agents = agents(rig, AgentKind::Http, 9100, ["0.2", "0.5", "0.9"]);
    let config = policy(
        "http",
        r#"load = { source = "http", url = "http://{address}:9100/load", interval = "200ms", low = 0.3, high = 0.8, expire = "30s" }"#,
        "",
    );
    let daemon = Daemon::start_on_rig(rig, &ZoneFile::example(), true, &["--config", &config])
        .expect("dnslb starts");
    until_shares(rig, "weighed by load", |s| near(s, [62.5, 37.5, 0.0], 8.0));
    let tally = tally_answers(&rig.client, server(), NAME, 20_000).expect("queries");
    let shares = percent(&tally);
    assert!(
        near(&shares, [62.5, 37.5, 0.0], 2.0),
        "{shares:?}: {tally:?}"
    );
    // Garbage, a negative figure and NaN: each logged once, nothing moves.
    for bad in ["busy", "-0.5", "NaN"] {
        agents[1].say(bad);
        thread::sleep(Duration::from_millis(700));
    }
    let tally = tally_answers(&rig.client, server(), NAME, 20_000).expect("queries");
    let shares = percent(&tally);
    assert!(
        near(&shares, [62.5, 37.5, 0.0], 2.0),
        "kept: {shares:?}: {tally:?}"
    );
    let log = daemon.log_text();
    for cause in [
        "`busy` is neither a number",
        "`-0.5` is not a finite",
        "`NaN` is not a finite",
    ] {
        let lines = log.lines().filter(|l| l.contains(cause)).count();
        assert_eq!(lines, 1, "{cause} logged once:\n{log}");
    }
}

#[test]
fn an_endpoint_back_up_gets_a_rising_share_over_slow_start() {
    let _turn = take_turn();
    let mut checked = Checked::new();
    let rig = &checked.rig;
    let config = policy("slow_start", "", r#"slow_start = "4s""#);
    let _daemon = Daemon::start_on_rig(rig, &ZoneFile::example(), true, &["--config", &config])
        .expect("dnslb starts");
    until_shares(rig, "all three answered", |s| s.iter().all(|&p| p > 25.0));
    checked.backends.remove(2).stop();
    until_shares(rig, ".13 down", |s| s[2] == 0.0);
    let _back = HttpBackend::start(&rig.server, SocketAddr::new(endpoint(13).into(), 8080))
        .expect("backend");
    until_shares(rig, ".13 up again", |s| s[2] > 0.0);
    assert_ramps(rig);
}

/// Follows .13's share of 1,000 answers every quarter second for 6 s, from
/// when it was first answered again, and asserts its slow start of 4 s:
/// from 10% of its weight (0.1 / 2.1 of the answers, about 5%) to all of
/// it (a third).
fn assert_ramps(rig: &Rig) {
    let started = Instant::now();
    let mut shares = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        let tally = tally_answers(&rig.client, server(), NAME, 1_000).expect("queries");
        shares.push((started.elapsed(), percent(&tally)[2]));
        thread::sleep(Duration::from_millis(250));
    }
    let early: Vec<f64> = shares
        .iter()
        .filter(|(at, _)| *at < Duration::from_secs(1))
        .map(|(_, share)| *share)
        .collect();
    let late: Vec<f64> = shares
        .iter()
        .filter(|(at, _)| *at > Duration::from_secs(5))
        .map(|(_, share)| *share)
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    assert!(mean(&early) < 15.0, "a small share at first: {shares:?}");
    assert!(
        (mean(&late) - 100.0 / 3.0).abs() < 4.0,
        "its whole weight once slow start is over: {shares:?}"
    );
    // Rising: each second's mean at least the one before's, give or take
    // the noise of 1,000 answers (±3 points).
    let by_second: Vec<f64> = (0..6)
        .map(|s| {
            let second: Vec<f64> = shares
                .iter()
                .filter(|(at, _)| at.as_secs() == s)
                .map(|(_, share)| *share)
                .collect();
            mean(&second)
        })
        .collect();
    assert!(
        by_second.windows(2).all(|w| w[1] >= w[0] - 3.0),
        "rising: {by_second:?} from {shares:?}"
    );
}

#[test]
fn an_instance_that_registers_ramps_up_as_a_static_endpoint_does() {
    let _turn = take_turn();
    let checked = Checked::new();
    let rig = &checked.rig;
    let file = daemon::policy_file(
        "load_steering",
        "registered",
        &format!(
            r#"
{check}
[pool.web]
kind = "registered"
check = "web"
slow_start = "4s"

[service.svc]
name = "{NAME}"
ttl = 5
policy = {{ kind = "weighted", pool = "web" }}
"#,
            check = web_check(100, 50, 2, 3),
        ),
    );
    let state = file.parent().expect("its directory").join("state");
    let (config, state) = (file.display().to_string(), state.display().to_string());
    let daemon = Daemon::start_on_rig(
        rig,
        &ZoneFile::example(),
        true,
        &["--config", &config, "--state-dir", &state],
    )
    .expect("dnslb starts");
    let register = |last: u8| {
        daemon
            .cli(&["endpoint", "register", "web", &endpoint(last).to_string()])
            .expect("registered");
    };
    register(11);
    register(12);
    // Their own slow starts over, both answered alike.
    until_shares(rig, ".11 and .12 answered", |s| s[0] > 0.0 && s[1] > 0.0);
    thread::sleep(Duration::from_secs(4));
    until_shares(rig, ".11 and .12 at their whole weights", |s| {
        near(s, [50.0, 50.0, 0.0], 8.0)
    });
    register(13);
    until_shares(rig, ".13 answered once its checks pass", |s| s[2] > 0.0);
    assert_ramps(rig);
}

/// Debian's Prometheus in the rig's server namespace on 127.0.0.1:9090,
/// scraping the three endpoints' `/metrics` on port 9100 every second;
/// returns once it has scraped all three (its discovery takes about 5 s
/// to hand targets over).
fn prometheus(rig: &Rig, dir: &std::path::Path) -> Process {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\n\
         scrape_configs:\n  - job_name: backends\n    static_configs:\n      \
         - targets: ['127.0.0.11:9100', '127.0.0.12:9100', '127.0.0.13:9100']\n",
    )
    .expect("prometheus.yml");
    let mut command = rig.server.command("prometheus");
    command.args([
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
        "--web.listen-address=127.0.0.1:9090".to_owned(),
    ]);
    let process = Process::spawn(command, dir.join("prometheus.log"))
        .expect("prometheus starts (apt install prometheus)");
    let started = Instant::now();
    loop {
        let up = rig
            .server
            .command("curl")
            .args(["-sf", "http://127.0.0.1:9090/api/v1/query?query=sum(up)"])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        if up.contains(r#","3"]"#) {
            return process;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Prometheus has not scraped the three endpoints in 30 s:\n{}",
            process.log_text()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn weights_follow_a_promql_expression_and_a_prometheus_that_goes_away_changes_nothing() {
    let _turn = take_turn();
    let checked = Checked::new();
    let rig = &checked.rig;
    let metrics = |load: &str| format!("# TYPE backend_load gauge\nbackend_load {load}\n");
    let exporters = agents(
        rig,
        AgentKind::Http,
        9100,
        [&metrics("0.2"), &metrics("0.5"), &metrics("0.9")],
    );
    let config = policy(
        "prometheus",
        r#"load = { source = "prometheus", url = "http://127.0.0.1:9090", query = 'backend_load{instance="{address}:9100"}', interval = "500ms", smoothing = 1.0, low = 0.3, high = 0.8, expire = "30s" }"#,
        "",
    );
    let dir = std::path::Path::new(&config)
        .parent()
        .expect("the policy's directory")
        .to_owned();
    let mut prometheus = prometheus(rig, &dir);
    let daemon = Daemon::start_on_rig(rig, &ZoneFile::example(), true, &["--config", &config])
        .expect("dnslb starts");
    until_shares(rig, "weighed by Prometheus's figures", |s| {
        near(s, [62.5, 37.5, 0.0], 8.0)
    });
    let tally = tally_answers(&rig.client, server(), NAME, 20_000).expect("queries");
    let shares = percent(&tally);
    assert!(
        near(&shares, [62.5, 37.5, 0.0], 2.0),
        "{shares:?}: {tally:?}"
    );
    // .11's exporter now says 0.9 too: shed once scraped and queried.
    exporters[0].say(&metrics("0.9"));
    until_shares(rig, ".11 shed by its new figure", |s| s[0] == 0.0);
    // Prometheus goes away: each endpoint's failure is logged once, and
    // the last figures still count.
    prometheus
        .stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10))
        .expect("prometheus stops");
    thread::sleep(Duration::from_secs(2));
    let tally = tally_answers(&rig.client, server(), NAME, 2_000).expect("queries");
    assert_eq!(
        percent(&tally)[1],
        100.0,
        "only .12 is below high: {tally:?}"
    );
    let log = daemon.log_text();
    for last in 11..=13 {
        let lines = log
            .lines()
            .filter(|l| l.contains(&format!("no load figure from 127.0.0.{last} ")))
            .count();
        assert_eq!(
            lines, 1,
            ".{last}: one line for Prometheus being down:\n{log}"
        );
    }
    // In its place, something that answers garbage: one more line each
    // (a new cause), and still nothing moves.
    let _garbage = LoadAgent::start(
        &rig.server,
        "127.0.0.1:9090".parse().expect("an address"),
        AgentKind::Http,
        "<html>not Prometheus</html>",
    )
    .expect("a garbage server");
    thread::sleep(Duration::from_secs(2));
    let tally = tally_answers(&rig.client, server(), NAME, 2_000).expect("queries");
    assert_eq!(percent(&tally)[1], 100.0, "unchanged: {tally:?}");
    let log = daemon.log_text();
    for last in 11..=13 {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("no load figure from 127.0.0.{last} ")))
            .collect();
        assert_eq!(lines.len(), 2, ".{last}: down, then garbage:\n{log}");
        assert!(lines[1].contains("not its API's JSON"), "{}", lines[1]);
    }
}

/// The closed loop's model: each backend's load is its share of the
/// answers times the demand, over its capacity (demand 1.5 against
/// capacities of 1: half the pool's capacity in use).
const DEMAND: f64 = 1.5;

/// Where the loop of `inverse` weighing settles for `capacities`: shares
/// proportional to each backend's headroom (1 − load) at those shares.
/// Found by bisection on the two equal backends' share.
fn fixed_point(capacities: [f64; 3]) -> [f64; 3] {
    let shares = |s: f64| {
        let rest = (1.0 - 2.0 * s).max(0.0);
        [s, s, rest]
    };
    let (mut low, mut high) = (0.0, 0.5);
    for _ in 0..60 {
        let s = (low + high) / 2.0;
        let headroom: Vec<f64> = shares(s)
            .iter()
            .zip(capacities)
            .map(|(share, capacity)| (1.0 - share * DEMAND / capacity).max(0.0))
            .collect();
        let total: f64 = headroom.iter().sum();
        // More than its headroom gives it: the equal pair's share is lower.
        if s > headroom[0] / total {
            high = s;
        } else {
            low = s;
        }
    }
    shares((low + high) / 2.0).map(|share| share * 100.0)
}

#[test]
fn a_closed_loop_of_load_reports_settles_and_stays_after_a_backend_loses_half_its_capacity() {
    let _turn = take_turn();
    let checked = Checked::new();
    let rig = &checked.rig;
    let config = policy(
        "closed_loop",
        r#"load = { source = "push", mode = "inverse", min_change = 0.02 }"#,
        "",
    );
    let daemon = Daemon::start_on_rig(rig, &ZoneFile::example(), true, &["--config", &config])
        .expect("dnslb starts");
    // Each round: 600 queries, then every backend reports the load they
    // brought it. A round takes about 100 ms.
    let round = |capacities: [f64; 3]| -> Vec<f64> {
        let tally = tally_answers(&rig.client, server(), NAME, 600).expect("queries");
        let shares = percent(&tally);
        for (i, last) in (11..=13).enumerate() {
            let load = shares[i] / 100.0 * DEMAND / capacities[i];
            push(&daemon, last, &format!("{load:.4}"));
        }
        shares
    };
    let equal = [1.0, 1.0, 1.0];
    for _ in 0..30 {
        round(equal);
    }
    let halved = [1.0, 1.0, 0.5];
    let expected = fixed_point(halved);
    // Settling: 10 s. Then a minute of rounds, judged against the noise
    // that 600 answers have anyway (σ = √(p(1−p)/600), about 2 points):
    // each share's mean within 3 points of the model's fixed point, its
    // spread at most 1.5 σ (a loop that over-corrects flips shares back
    // and forth and spreads them wider: 1.7 σ with smoothing 0.5), and no
    // slow swing (each second's mean within 4 points of every other
    // second's).
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        round(halved);
    }
    let mut seen = Vec::new();
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(60) {
        seen.push((watched.elapsed().as_secs(), round(halved)));
    }
    assert!(seen.len() > 100, "only {} rounds in a minute", seen.len());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    for i in 0..3 {
        let shares: Vec<f64> = seen.iter().map(|(_, s)| s[i]).collect();
        let average = mean(&shares);
        let variance = mean(
            &shares
                .iter()
                .map(|s| (s - average).powi(2))
                .collect::<Vec<_>>(),
        );
        let p = expected[i] / 100.0;
        let sigma = 100.0 * (p * (1.0 - p) / 600.0).sqrt();
        let per_second: Vec<f64> = (0..60)
            .map(|second| {
                let inside: Vec<f64> = seen
                    .iter()
                    .filter(|(at, _)| *at == second)
                    .map(|(_, s)| s[i])
                    .collect();
                mean(&inside)
            })
            .collect();
        let (low, high) = per_second
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        let what = format!(
            "backend {i}: mean {average:.1}% (model {:.1}%), σ {:.2} (noise {sigma:.2}), \
             seconds' means {low:.1}% to {high:.1}%",
            expected[i],
            variance.sqrt()
        );
        assert!((average - expected[i]).abs() <= 3.0, "{what}");
        assert!(variance.sqrt() <= 1.5 * sigma, "{what}");
        assert!(high - low <= 4.0, "{what}");
    }
}
