//! Function pools end to end: the real daemon on the veth rig starts real
//! instances (busybox httpd) when the first query for them arrives, the
//! kernel answers once one is up, and idle instances are stopped. Needs
//! root.

use std::{
    net::Ipv4Addr,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use dnslb_tests::{
    daemon::{Answered, Daemon, RIG_METRICS, ZoneFile, kdig, policy_file, sample, scrape},
    netns::{Netns, Rig},
};
use nix::sys::signal::Signal;

/// The rig's daemon address.
const SERVER: &str = "@198.18.0.2";

/// A policy file with one function pool `fn` (busybox httpd on `port`,
/// serving a directory beside the file) under the service
/// `fn.example.com`, and `extra` pool settings and tables. Each test has a
/// port of its own, so that the processes of tests running side by side
/// (in other namespaces) can be told apart.
fn function_policy(test: &str, port: u16, pool: &str, extra: &str) -> std::path::PathBuf {
    let path = policy_file("functions", test, "");
    let dir = path.parent().unwrap();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "OK\n").unwrap();
    let text = format!(
        r#"
[check.up]
kind = "http"
port = {port}
path = "/"
interval = "200ms"
timeout = "100ms"

[pool.fn]
kind = "function"
check = "up"
command = "exec busybox httpd -f -p {{address}}:{{port}} -h {www}"
addresses = "127.0.0.100-127.0.0.103"
port = {port}
{pool}

[service.fn]
name = "fn.example.com."
ttl = 1
policy = {{ pool = "fn" }}
{extra}
"#,
        www = dir.join("www").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start(rig: &Rig, config: &Path) -> Daemon {
    let config = config.display().to_string();
    Daemon::start_on_rig(rig, &ZoneFile::example(), true, &["--config", &config])
        .expect("dnslb starts")
}

/// `kdig +short` for the A records of `name`, and how long it took.
fn ask(client: &Netns, name: &str) -> (Vec<Ipv4Addr>, Duration) {
    let started = Instant::now();
    let out = kdig(client, &[SERVER, name, "A", "+short"]).expect("kdig");
    let addrs = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    (addrs, started.elapsed())
}

fn metric(rig: &Rig, series: &str) -> u64 {
    let text = scrape(&rig.server, RIG_METRICS).expect("metrics");
    sample(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// Waits (up to `limit`) until `series` reads `value`.
fn wait_metric(rig: &Rig, series: &str, value: u64, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if metric(rig, series) == value {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Whether a process whose command line contains `pattern` runs.
fn running(pattern: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn the_first_query_starts_the_function_the_kernel_answers_after_and_idle_stops_it() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let config = function_policy(
        "lifecycle",
        18080,
        "idle_after = \"2s\"\ndeadline = \"1s\"",
        "",
    );
    let daemon = start(&rig, &config);
    let instance = "httpd -f -p 127.0.0.100:18080";
    assert!(!running(instance), "nothing runs before a query");

    // The console's simulator shows what a client would get, and changes
    // nothing: it wakes no instance and counts no answer. (A query wakes
    // the pool at once and its instance runs within the 1 s deadline; the
    // simulator's non-start is read 500 ms on, with the metric and the
    // process list.)
    let simulated = daemon
        .api_get("/v1/simulate?name=fn.example.com&client=198.18.0.10")
        .expect("simulate");
    assert_eq!(simulated["service"], "fn", "{simulated}");
    thread::sleep(Duration::from_millis(500));
    assert!(!running(instance), "the simulator woke the function");
    let metrics = scrape(&rig.server, RIG_METRICS).expect("metrics");
    assert_eq!(
        sample(&metrics, "dnslb_function_cold_starts_total{pool=\"fn\"}").unwrap_or(0),
        0,
        "no cold start"
    );
    let branch_answers = || {
        let stats = daemon.api_get("/v1/stats").expect("stats");
        stats["branches"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|branch| branch["answers"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(branch_answers(), 0, "the simulation is not counted");

    let before = Answered::scrape(&rig).unwrap();
    let (addrs, took) = ask(&rig.client, "fn.example.com.");
    let log = daemon.log_text();
    assert_eq!(addrs, [Ipv4Addr::new(127, 0, 0, 100)], "{log}");
    assert!(
        took < Duration::from_secs(1),
        "answered after {took:?}, deadline 1 s"
    );
    let after_first = Answered::scrape(&rig).unwrap();
    assert_eq!(
        after_first.userspace - before.userspace,
        1,
        "the cold query"
    );
    assert_eq!(after_first.xdp, before.xdp, "the kernel passed it on");
    assert_eq!(branch_answers(), 1, "the query is counted");

    // From now on the kernel answers: 20 queries, 20 from XDP.
    let names: Vec<&str> = std::iter::repeat_n("fn.example.com.", 20).collect();
    let mut args = vec![SERVER];
    args.extend(&names);
    let out = kdig(&rig.client, &args).expect("kdig");
    assert_eq!(out.matches("127.0.0.100").count(), 20, "{out}");
    let warm = Answered::scrape(&rig).unwrap();
    assert_eq!(warm.xdp.unwrap() - after_first.xdp.unwrap(), 20);
    assert_eq!(warm.userspace, after_first.userspace);
    assert_eq!(
        metric(&rig, "dnslb_function_cold_starts_total{pool=\"fn\"}"),
        1
    );
    let latency = metric(&rig, "dnslb_function_cold_start_seconds_count{pool=\"fn\"}");
    assert_eq!(latency, 1, "one cold start timed");

    // Two idle seconds (plus the one-second tick) stop it.
    assert!(
        wait_metric(
            &rig,
            "dnslb_function_instances{pool=\"fn\"}",
            0,
            Duration::from_secs(5)
        ),
        "stopped after idle_after:\n{}",
        daemon.log_text()
    );
    thread::sleep(Duration::from_millis(200));
    assert!(!running(instance), "the instance's process is gone");

    // The next query starts it again.
    let (addrs, took) = ask(&rig.client, "fn.example.com.");
    assert_eq!(addrs, [Ipv4Addr::new(127, 0, 0, 100)]);
    assert!(took < Duration::from_secs(1), "again after {took:?}");
    assert_eq!(
        metric(&rig, "dnslb_function_cold_starts_total{pool=\"fn\"}"),
        2
    );
    assert!(metric(&rig, "dnslb_function_invocations_total{pool=\"fn\"}") >= 22);
    daemon.stop(Signal::SIGTERM).expect("stops");
    thread::sleep(Duration::from_millis(200));
    assert!(!running(instance), "stopping dnslb stops its instances");
}

#[test]
fn twenty_concurrent_first_queries_cause_one_start() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let config = function_policy("herd", 18082, "deadline = \"1s\"", "");
    let daemon = start(&rig, &config);
    let answers: Vec<Vec<Ipv4Addr>> = thread::scope(|scope| {
        let asking: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| ask(&rig.client, "fn.example.com.").0))
            .collect();
        asking.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let log = daemon.log_text();
    for addrs in &answers {
        assert_eq!(addrs, &[Ipv4Addr::new(127, 0, 0, 100)], "{log}");
    }
    assert_eq!(log.matches("starting an instance").count(), 1, "{log}");
    assert_eq!(
        metric(&rig, "dnslb_function_cold_starts_total{pool=\"fn\"}"),
        1
    );
    assert_eq!(metric(&rig, "dnslb_function_instances{pool=\"fn\"}"), 1);
}

#[test]
fn a_function_that_never_gets_ready_answers_the_fallback_after_the_deadline() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    // Instances that never listen; a second pool answering SERVFAIL.
    let config = function_policy(
        "fallback",
        18084,
        "deadline = \"300ms\"\nfallback = \"spare\"\nstart_timeout = \"20s\"",
        r#"
[pool.spare]
endpoints = ["198.18.0.50"]

[pool.strict]
kind = "function"
command = "exec sleep 37"
addresses = "127.0.0.110-127.0.0.111"
port = 18081
cold_start = "servfail"

[service.strict]
name = "strict.example.com."
policy = { pool = "strict" }
"#,
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "exec busybox httpd -f -p {address}:{port}",
        "exec sleep 38 #",
    );
    std::fs::write(&config, text).unwrap();
    let daemon = start(&rig, &config);

    let started = Instant::now();
    let out = kdig(
        &rig.client,
        &[SERVER, "fn.example.com.", "A", "+noall", "+answer"],
    )
    .expect("kdig");
    let took = started.elapsed();
    let log = daemon.log_text();
    let record: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(record.last(), Some(&"198.18.0.50"), "{out}\n{log}");
    assert_eq!(
        record.get(1),
        Some(&"0"),
        "not cached while starting: {out}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "held for the deadline, then the fallback: {took:?}"
    );

    let started = Instant::now();
    let out = kdig(&rig.client, &[SERVER, "strict.example.com.", "A"]).expect("kdig");
    assert!(out.contains("status: SERVFAIL"), "{out}");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "SERVFAIL at once"
    );
    assert!(
        running("sleep 37") && running("sleep 38"),
        "both are starting"
    );
    daemon.stop(Signal::SIGTERM).expect("stops");
    thread::sleep(Duration::from_millis(200));
    assert!(
        !running("sleep 37") && !running("sleep 38"),
        "stopping dnslb stops instances that were starting"
    );
}

#[test]
fn a_rate_above_the_target_starts_more_instances_and_busy_ones_are_kept() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let config = function_policy(
        "scale",
        18086,
        "target_qps = 10\nmax = 3\nidle_after = \"2s\"\nbusy = \"busy\"",
        "",
    );
    // Busy while a file beside the policy file exists.
    let busy_file = config.parent().unwrap().join("busy");
    let text = std::fs::read_to_string(&config).unwrap()
        + &format!(
            "\n[check.busy]\nkind = \"command\"\ncommand = \"test -e {}\"\n",
            busy_file.display()
        );
    std::fs::write(&config, text).unwrap();
    std::fs::write(&busy_file, "").unwrap();
    let daemon = start(&rig, &config);
    let (addrs, _) = ask(&rig.client, "fn.example.com.");
    assert_eq!(addrs, [Ipv4Addr::new(127, 0, 0, 100)]);

    // 100 queries within one second: ten times what one instance takes.
    let mut args = vec![SERVER];
    args.extend(std::iter::repeat_n("fn.example.com.", 100));
    kdig(&rig.client, &args).expect("kdig");
    assert!(
        wait_metric(
            &rig,
            "dnslb_function_instances{pool=\"fn\"}",
            3,
            Duration::from_secs(4)
        ),
        "scaled out to max:\n{}",
        daemon.log_text()
    );
    let until = Instant::now() + Duration::from_secs(3);
    while ask(&rig.client, "fn.example.com.").0.len() < 3 && Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
    }
    let mut all = ask(&rig.client, "fn.example.com.").0;
    all.sort();
    assert_eq!(
        all,
        [100, 101, 102].map(|last| Ipv4Addr::new(127, 0, 0, last))
    );

    // Idle, but busy: kept past idle_after.
    thread::sleep(Duration::from_secs(4));
    assert_eq!(metric(&rig, "dnslb_function_instances{pool=\"fn\"}"), 3);
    std::fs::remove_file(&busy_file).unwrap();
    assert!(
        wait_metric(
            &rig,
            "dnslb_function_instances{pool=\"fn\"}",
            0,
            Duration::from_secs(3)
        ),
        "stopped once no longer busy:\n{}",
        daemon.log_text()
    );
    let text = scrape(&rig.server, RIG_METRICS).unwrap();
    let billed = text
        .lines()
        .find_map(|l| l.strip_prefix("dnslb_function_instance_seconds_total{pool=\"fn\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("instance seconds");
    assert!(billed >= 12.0, "three instances for over 4 s: {billed}");
}

#[test]
fn a_function_behind_a_failover_is_woken_while_the_secondary_answers() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let config = function_policy(
        "failover",
        18088,
        "",
        r#"
[pool.static]
endpoints = ["198.18.0.60"]

[service.mixed]
name = "mixed.example.com."
ttl = 1
[service.mixed.policy]
kind = "failover"
primary = { pool = "fn" }
secondary = { pool = "static" }
"#,
    );
    let daemon = start(&rig, &config);
    let before = Answered::scrape(&rig).unwrap();
    // The kernel passes the name on while the function is cold, so the
    // daemon sees the query: it answers from the secondary and wakes it.
    let (addrs, _) = ask(&rig.client, "mixed.example.com.");
    assert_eq!(
        addrs,
        [Ipv4Addr::new(198, 18, 0, 60)],
        "{}",
        daemon.log_text()
    );
    let after = Answered::scrape(&rig).unwrap();
    assert_eq!(after.userspace - before.userspace, 1);
    let until = Instant::now() + Duration::from_secs(2);
    while ask(&rig.client, "mixed.example.com.").0 != [Ipv4Addr::new(127, 0, 0, 100)] {
        assert!(Instant::now() < until, "woken:\n{}", daemon.log_text());
        thread::sleep(Duration::from_millis(20));
    }
    // Then the kernel answers with the instance.
    let warm = Answered::scrape(&rig).unwrap();
    assert_eq!(
        ask(&rig.client, "mixed.example.com.").0,
        [Ipv4Addr::new(127, 0, 0, 100)]
    );
    let last = Answered::scrape(&rig).unwrap();
    assert_eq!(last.xdp.unwrap() - warm.xdp.unwrap(), 1);
    assert_eq!(
        metric(&rig, "dnslb_function_cold_starts_total{pool=\"fn\"}"),
        1
    );
}
