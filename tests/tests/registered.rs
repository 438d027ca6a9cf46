//! Registered pools and event hooks end to end: instances registered with
//! the CLI, checked by real health checks against HTTP backends, answered
//! by the kernel on the veth rig, dropped when their heartbeats stop, kept
//! across a restart; hooks delivered to a real HTTP receiver, a command,
//! and a dead-letter file. Needs root.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use dnslb_tests::{
    backend::HttpBackend,
    daemon::{
        Answered, Daemon, RIG_METRICS, ZoneFile, kdig, policy_file, rig_a_records, sample, scrape,
        until_a_records,
    },
    netns::{Netns, Rig, enter_netns},
};
use nix::sys::signal::Signal;

const SERVER: &str = "@198.18.0.2";

const POLICY: &str = r#"
[check.web]
kind = "http"
port = 8080
path = "/health"
interval = "100ms"
timeout = "50ms"
rise = 3
fall = 2

[pool.api]
kind = "registered"
check = "web"

[service.api]
name = "reg.example.com."
ttl = 1
policy = { kind = "multivalue", pool = "api" }
"#;

fn start(rig: &Rig, config: &Path, state: &Path) -> Daemon {
    let (config, state) = (config.display().to_string(), state.display().to_string());
    Daemon::start_on_rig(
        rig,
        &ZoneFile::example(),
        true,
        &["--config", &config, "--state-dir", &state],
    )
    .expect("dnslb starts")
}

fn answers(client: &Netns) -> Vec<Ipv4Addr> {
    rig_a_records(client, "reg.example.com.")
}

fn until_answers(client: &Netns, want: &[Ipv4Addr], limit: Duration) -> Option<Duration> {
    until_a_records(client, "reg.example.com.", want, limit)
}

fn backend(rig: &Rig, last: u8) -> HttpBackend {
    let addr = SocketAddr::new(Ipv4Addr::new(127, 0, 0, last).into(), 8080);
    HttpBackend::start(&rig.server, addr).expect("backend")
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// Waits (up to 3 s) until the check says `up` of endpoint 127.0.0.`last`.
fn wait_health(rig: &Rig, last: u8, up: bool) -> bool {
    let series = format!(
        "dnslb_health_check_up{{check=\"web\",endpoint=\"127.0.0.{last}\",pool=\"api\",port=\"\"}}"
    );
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let text = scrape(&rig.server, RIG_METRICS).unwrap_or_default();
        if sample(&text, &series) == Some(u64::from(up)) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn registered_instances_are_checked_answered_expired_and_kept_across_a_restart() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let _backends = [backend(&rig, 21), backend(&rig, 22)];
    let config = policy_file("registered", "lifecycle", POLICY);
    let state = config.parent().unwrap().join("state");
    let _ = std::fs::remove_dir_all(&state);
    let daemon = start(&rig, &config, &state);

    let shown = daemon
        .cli(&["endpoint", "register", "api", "127.0.0.21", "--weight", "3"])
        .expect("register");
    // Listed at once, and down (as the answers see it) until its check
    // passes: a member that joins at run time starts down.
    assert!(
        shown.contains("127.0.0.21") && shown.contains("down"),
        "{shown}"
    );
    assert!(
        wait_health(&rig, 21, true),
        "checked:\n{}",
        daemon.log_text()
    );
    assert_eq!(answers(&rig.client), [ip(21)]);

    // A second instance is answered only once its check passes (rise = 3
    // at 100 ms: at least 200 ms after it is registered).
    daemon
        .cli(&["endpoint", "register", "api", "127.0.0.22", "--ttl", "2s"])
        .expect("register with a TTL");
    assert_eq!(
        answers(&rig.client),
        [ip(21)],
        "not before its check passes"
    );
    let took = until_answers(&rig.client, &[ip(21), ip(22)], Duration::from_secs(2))
        .expect("answered once checked");
    eprintln!("second instance answered {took:?} after its registration");

    // Its TTL is kept alive by heartbeats, then left to run out.
    let before = Answered::scrape(&rig).unwrap();
    for _ in 0..6 {
        thread::sleep(Duration::from_millis(500));
        daemon
            .cli(&["endpoint", "heartbeat", "api", "127.0.0.22"])
            .expect("heartbeat");
    }
    assert_eq!(answers(&rig.client), [ip(21), ip(22)], "kept by heartbeats");
    let after = Answered::scrape(&rig).unwrap();
    assert!(
        after.xdp.unwrap() > before.xdp.unwrap(),
        "the kernel answers"
    );
    assert_eq!(after.userspace, before.userspace, "{before:?} -> {after:?}");
    let stopped = Instant::now();
    let gone = until_answers(&rig.client, &[ip(21)], Duration::from_secs(5))
        .expect("dropped when the heartbeats stop");
    let since = stopped.elapsed();
    assert!(
        since >= Duration::from_millis(1000),
        "not before its TTL ran out ({since:?})"
    );
    eprintln!("expired {gone:?} after the last heartbeat");
    assert!(
        daemon
            .cli(&["endpoint", "heartbeat", "api", "127.0.0.22"])
            .is_err(),
        "an expired instance cannot be renewed"
    );
    let refused = daemon
        .cli(&["endpoint", "register", "nosuch", "127.0.0.23"])
        .expect_err("an unknown pool");
    assert!(
        refused.contains("no registered pool named `nosuch`"),
        "{refused}"
    );

    // A restart reads the state file back.
    daemon.stop(Signal::SIGTERM).expect("stops");
    let daemon = start(&rig, &config, &state);
    assert!(
        wait_health(&rig, 21, true),
        "registration kept:\n{}",
        daemon.log_text()
    );
    assert_eq!(answers(&rig.client), [ip(21)]);
    let listed = daemon
        .cli(&["endpoint", "list", "--pool", "api"])
        .expect("list");
    assert!(
        listed.contains("127.0.0.21") && !listed.contains("127.0.0.22"),
        "{listed}"
    );
    daemon
        .cli(&["endpoint", "deregister", "api", "127.0.0.21"])
        .expect("deregister");
    let out = kdig(&rig.client, &[SERVER, "reg.example.com.", "A"]).expect("kdig");
    assert!(
        out.contains("status: NOERROR") && !out.contains("127.0.0.21"),
        "{out}"
    );
}

/// An HTTP server that keeps the body of every request it gets.
struct Receiver {
    bodies: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(netns: &Netns, addr: SocketAddr) -> Receiver {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopping) = (bodies.clone(), stop.clone());
        let name = netns.name().to_owned();
        let (bound, ready) = std::sync::mpsc::channel();
        let thread = thread::spawn(move || {
            enter_netns(&name).expect("namespace");
            let listener = TcpListener::bind(addr).expect("receiver");
            listener.set_nonblocking(true).expect("nonblocking");
            bound.send(()).expect("bound");
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buffer) {
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            kept.lock().unwrap().push(body.to_owned());
                            break;
                        }
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        ready
            .recv_timeout(Duration::from_secs(5))
            .expect("receiver bound");
        Receiver {
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lines(file: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn hooks_deliver_events_and_dead_letter_what_cannot_be_delivered() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let backend = backend(&rig, 21);
    let receiver = Receiver::start(&rig.server, "127.0.0.40:9000".parse().unwrap());
    let config = policy_file("registered", "hooks", "");
    let dir = config.parent().unwrap().to_owned();
    let state = dir.join("state");
    let _ = std::fs::remove_dir_all(&state);
    let by_command = dir.join("by-command.jsonl");
    let _ = std::fs::remove_file(&by_command);
    let text = format!(
        r#"{POLICY}
[hook.receiver]
url = "http://127.0.0.40:9000/events"

[hook.script]
command = "cat >> {by_command}"
events = ["health"]

# Nothing listens there: every event ends in the dead-letter file.
[hook.broken]
url = "http://127.0.0.41:9000/events"
retries = 2
backoff = "50ms"
"#,
        by_command = by_command.display()
    );
    std::fs::write(&config, text).unwrap();
    let daemon = start(&rig, &config, &state);

    daemon
        .cli(&["endpoint", "register", "api", "127.0.0.21"])
        .expect("register");
    assert!(wait_health(&rig, 21, true), "up:\n{}", daemon.log_text());
    drop(backend);
    assert!(wait_health(&rig, 21, false), "down:\n{}", daemon.log_text());
    // The service fails open (all down): still answered, no failover.
    assert_eq!(answers(&rig.client), [ip(21)]);
    let dead_letter = state.join("broken.dead-letter.jsonl");
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && (receiver.bodies().len() < 4 || lines(&dead_letter).len() < 4) {
        thread::sleep(Duration::from_millis(50));
    }
    let bodies = receiver.bodies();
    let log = daemon.log_text();
    let parsed: Vec<serde_json::Value> = bodies
        .iter()
        .map(|b| serde_json::from_str(b).expect("JSON"))
        .collect();
    let health: Vec<bool> = parsed
        .iter()
        .filter(|e| e["event"] == "health" && e["endpoint"] == "127.0.0.21" && e["pool"] == "api")
        .map(|e| e["up"].as_bool().unwrap())
        .collect();
    assert_eq!(health, [true, false], "{bodies:?}\n{log}");
    assert!(
        parsed
            .iter()
            .any(|e| e["event"] == "failover" && e["service"] == "api" && e["to"] == "api"),
        "{bodies:?}"
    );
    assert!(
        parsed.iter().all(|e| e["time"].as_f64().is_some()),
        "{bodies:?}"
    );

    let scripted = lines(&by_command);
    assert_eq!(
        scripted.len(),
        2,
        "the two health events only: {scripted:?}"
    );

    let dead = lines(&dead_letter);
    assert_eq!(dead.len(), bodies.len(), "{dead:?}\n{bodies:?}");
    let metrics = scrape(&rig.server, RIG_METRICS).unwrap();
    let count = |hook: &str, outcome: &str| {
        sample(
            &metrics,
            &format!("dnslb_hook_events_total{{hook=\"{hook}\",outcome=\"{outcome}\"}}"),
        )
        .unwrap_or(0)
    };
    assert_eq!(count("broken", "dead_lettered") as usize, dead.len());
    assert_eq!(count("broken", "retried") as usize, 2 * dead.len());
    assert_eq!(count("receiver", "delivered") as usize, bodies.len());
    assert_eq!(count("script", "delivered"), 2);
}
