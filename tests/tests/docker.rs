//! Docker pools against a real Docker Engine: labelled busybox containers
//! with host networking in the rig's server namespace, answered by the
//! kernel; stopped ones leave the answers at once (draining on `kill`),
//! new ones join once checked, Docker's own HEALTHCHECK is respected, and
//! an engine restart keeps the endpoints and then resyncs. Needs root and
//! docker.io.

use std::{
    net::Ipv4Addr,
    thread,
    time::{Duration, Instant},
};

use dnslb_tests::{
    daemon::{
        Answered, Daemon, RIG_METRICS, ZoneFile, policy_file, rig_a_records, sample, scrape,
        until_a_records,
    },
    docker::{Dockerd, TEST_IMAGE},
    netns::{Netns, Rig},
};

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn answers(client: &Netns) -> Vec<Ipv4Addr> {
    rig_a_records(client, "web.example.com.")
}

fn until_answers(client: &Netns, want: &[Ipv4Addr], limit: Duration) -> Option<Duration> {
    until_a_records(client, "web.example.com.", want, limit)
}

/// Runs a container of the pool `web` answering on 127.0.0.`last`:8080.
fn run_container(dockerd: &Dockerd, name: &str, last: u8, extra: &[&str]) {
    let address = format!("dnslb.address=127.0.0.{last}");
    let listen = format!("127.0.0.{last}:8080");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "--label",
        "dnslb.pool=web",
        "--label",
        &address,
    ];
    args.extend_from_slice(extra);
    args.extend([
        TEST_IMAGE,
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        &listen,
        "-h",
        "/www",
    ]);
    dockerd.docker(&args).expect("docker run");
}

fn source_up(rig: &Rig) -> Option<u64> {
    let text = scrape(&rig.server, RIG_METRICS).ok()?;
    sample(&text, "dnslb_pool_source_up{kind=\"docker\",pool=\"web\"}")
}

#[test]
fn docker_containers_are_answered_drained_joined_and_resynced() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let config = policy_file("docker", "pool", "");
    let dir = config.parent().unwrap().to_owned();
    // Dropped before the rig: containers and engine go first.
    let mut dockerd = Dockerd::start(&rig.server, &dir.join("docker")).expect("dockerd starts");
    dockerd.import_test_image().expect("the test image");
    let events = dir.join("container-events.jsonl");
    let _ = std::fs::remove_file(&events);
    std::fs::write(
        &config,
        format!(
            r#"
[check.web]
kind = "http"
port = 8080
path = "/health"
interval = "100ms"
timeout = "50ms"
rise = 2
fall = 2

[pool.web]
kind = "docker"
check = "web"
docker_host = "{host}"

[service.web]
name = "web.example.com."
ttl = 1
policy = {{ kind = "multivalue", pool = "web" }}

[hook.containers]
command = "cat >> {events}"
events = ["container"]
"#,
            host = dockerd.host(),
            events = events.display()
        ),
    )
    .unwrap();
    run_container(&dockerd, "c1", 11, &[]);
    run_container(&dockerd, "c2", 12, &["--label", "dnslb.weight=3"]);
    let config_arg = config.display().to_string();
    let daemon = Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &["--config", &config_arg])
        .expect("dnslb starts");

    // Both, from the kernel.
    until_answers(&rig.client, &[ip(11), ip(12)], Duration::from_secs(3))
        .unwrap_or_else(|| panic!("both containers answered:\n{}", daemon.log_text()));
    let before = Answered::scrape(&rig).unwrap();
    assert_eq!(answers(&rig.client), [ip(11), ip(12)]);
    let after = Answered::scrape(&rig).unwrap();
    assert_eq!(
        after.xdp.unwrap() - before.xdp.unwrap(),
        1,
        "answered in XDP"
    );
    let listed = daemon.cli(&["endpoint", "list", "--pool", "web"]).unwrap();
    // (Its state may still be down: its check rises after two probes.)
    let weight = listed
        .lines()
        .find(|line| line.contains("127.0.0.12"))
        .and_then(|line| line.split_whitespace().nth(3));
    assert_eq!(weight, Some("3"), "weight from the label:\n{listed}");

    // Stopped: busybox as PID 1 ignores SIGTERM, so it dies only when
    // Docker kills it 3 s later; the `kill` event drains it at once.
    let stopping = thread::scope(|scope| {
        let stop = scope.spawn(|| dockerd.docker(&["stop", "-t", "3", "c1"]));
        let asked = Instant::now();
        let gone = until_answers(&rig.client, &[ip(12)], Duration::from_secs(3));
        let listed = daemon.cli(&["endpoint", "list", "--pool", "web"]).unwrap();
        stop.join().unwrap().expect("docker stop");
        (gone, asked.elapsed(), listed)
    });
    let (gone, _, listed) = stopping;
    let gone = gone.unwrap_or_else(|| panic!("c1 left the answers:\n{}", daemon.log_text()));
    assert!(
        gone <= Duration::from_secs(1),
        "c1 left after {gone:?}, limit 1 s"
    );
    assert!(
        listed.contains("127.0.0.11  draining"),
        "still reported while it stops:\n{listed}"
    );
    eprintln!("a stopped container left the answers after {gone:?}");
    let listed = daemon.cli(&["endpoint", "list", "--pool", "web"]).unwrap();
    assert!(!listed.contains("127.0.0.11"), "gone once dead:\n{listed}");

    // A new container joins once its check passes (rise 2 at 100 ms).
    let started = Instant::now();
    run_container(&dockerd, "c3", 13, &[]);
    until_answers(&rig.client, &[ip(12), ip(13)], Duration::from_secs(3))
        .unwrap_or_else(|| panic!("c3 joined:\n{}", daemon.log_text()));
    let joined = started.elapsed();
    eprintln!("a new container joined the answers after {joined:?}");
    assert!(
        joined <= Duration::from_millis(1000 + 300),
        "joined after {joined:?}"
    );

    // Docker's HEALTHCHECK decides too: starting is not ready.
    run_container(
        &dockerd,
        "c4",
        14,
        &[
            "--health-cmd",
            "busybox test -f /tmp/ready",
            "--health-interval",
            "200ms",
        ],
    );
    thread::sleep(Duration::from_millis(800));
    assert_eq!(
        answers(&rig.client),
        [ip(12), ip(13)],
        "c4 is not ready yet"
    );
    let listed = daemon.cli(&["endpoint", "list", "--pool", "web"]).unwrap();
    assert!(listed.contains("127.0.0.14  starting"), "{listed}");
    dockerd
        .docker(&["exec", "c4", "busybox", "touch", "/tmp/ready"])
        .expect("docker exec");
    until_answers(
        &rig.client,
        &[ip(12), ip(13), ip(14)],
        Duration::from_secs(3),
    )
    .unwrap_or_else(|| panic!("c4 healthy and answered:\n{}", daemon.log_text()));

    // The engine goes away: the endpoints are kept, and said to be stale.
    let c3_pid = dockerd
        .docker(&["inspect", "--format", "{{.State.Pid}}", "c3"])
        .unwrap();
    dockerd.stop().expect("dockerd stops");
    let until = Instant::now() + Duration::from_secs(5);
    while source_up(&rig) != Some(0) && Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(source_up(&rig), Some(0), "{}", daemon.log_text());
    assert_eq!(answers(&rig.client), [ip(12), ip(13), ip(14)], "kept");
    // c3 ends while nobody is watching: only a re-list can tell.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c3_pid.trim().parse().expect("a pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("killing c3");
    thread::sleep(Duration::from_millis(300));
    let listed = daemon.cli(&["endpoint", "list", "--pool", "web"]).unwrap();
    assert!(listed.contains("127.0.0.13"), "last known kept:\n{listed}");

    dockerd.restart().expect("dockerd starts again");
    let until = Instant::now() + Duration::from_secs(10);
    let mut listed = String::new();
    while Instant::now() < until {
        listed = daemon.cli(&["endpoint", "list", "--pool", "web"]).unwrap();
        if source_up(&rig) == Some(1) && !listed.contains("127.0.0.13") {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(source_up(&rig), Some(1), "{}", daemon.log_text());
    assert!(!listed.contains("127.0.0.13"), "resynced:\n{listed}");
    assert_eq!(answers(&rig.client), [ip(12), ip(14)]);
    let log = daemon.log_text();
    assert!(log.contains("the Docker engine is unreachable"), "{log}");
    assert!(log.contains("the Docker engine is back"), "{log}");

    // The hook heard each container's story, in order.
    let text = std::fs::read_to_string(&events).unwrap_or_default();
    let states = |name: &str| -> Vec<String> {
        text.lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON"))
            .filter(|e| e["event"] == "container" && e["container"] == name)
            .map(|e| e["state"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(states("c1"), ["ready", "draining", "gone"], "{text}");
    assert_eq!(states("c4"), ["starting", "ready"], "{text}");
    assert_eq!(states("c3"), ["ready", "gone"], "{text}");
}

#[test]
fn a_function_pool_of_containers_starts_one_per_cold_query_and_removes_it() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let config = policy_file("docker", "function", "");
    let dir = config.parent().unwrap().to_owned();
    let dockerd = Dockerd::start(&rig.server, &dir.join("docker")).expect("dockerd starts");
    dockerd.import_test_image().expect("the test image");
    std::fs::write(
        &config,
        format!(
            r#"
[check.up]
kind = "http"
port = 8080
path = "/health"
interval = "1s"

[pool.fn]
kind = "function"
check = "up"
image = "{TEST_IMAGE}"
command = "exec busybox httpd -f -p {{address}}:{{port}} -h /www"
docker_host = "{host}"
addresses = "127.0.0.100-127.0.0.101"
port = 8080
idle_after = "2s"
deadline = "3s"

[service.fn]
name = "fn.example.com."
ttl = 1
policy = {{ pool = "fn" }}
"#,
            host = dockerd.host()
        ),
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let daemon = Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &["--config", &config_arg])
        .expect("dnslb starts");
    let containers = || {
        dockerd
            .docker(&["ps", "-aq", "--filter", "label=dnslb.function=fn"])
            .unwrap()
            .split_whitespace()
            .count()
    };
    assert_eq!(containers(), 0);

    let started = Instant::now();
    let addrs = rig_a_records(&rig.client, "fn.example.com.");
    let took = started.elapsed();
    assert_eq!(addrs, [ip(100)], "{}", daemon.log_text());
    eprintln!("a container instance answered {took:?} after the first query");
    assert_eq!(containers(), 1);
    let address = dockerd
        .docker(&[
            "inspect",
            "--format",
            "{{index .Config.Labels \"dnslb.address\"}}",
            "dnslb-fn-fn-127-0-0-100",
        ])
        .unwrap();
    assert_eq!(address.trim(), "127.0.0.100");

    // Idle: stopped and removed.
    let until = Instant::now() + Duration::from_secs(15);
    while containers() > 0 && Instant::now() < until {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(containers(), 0, "removed when idle:\n{}", daemon.log_text());

    // Started again, then left running when dnslb stops: removed with it.
    assert_eq!(rig_a_records(&rig.client, "fn.example.com."), [ip(100)]);
    assert_eq!(containers(), 1);
    daemon
        .stop(nix::sys::signal::Signal::SIGTERM)
        .expect("dnslb stops");
    assert_eq!(containers(), 0, "removed when dnslb stops");
}
