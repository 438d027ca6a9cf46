//! Anycast through BIRD: two dnslb nodes own 198.18.99.1 on their dummy
//! interface while they serve and are healthy; BIRD on each node exports
//! it (the `direct` protocol) over BGP to a router namespace running BIRD
//! too, whose kernel route to the /32 points at both nodes (ECMP). The
//! router is also the client. Withdrawing a node (by the operator, by a
//! lost upstream, by stopping it) takes its path out of the router's
//! route, within the BGP hold time, and queries keep being answered.

use std::{
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use dnslb_tests::{
    backend::HttpBackend,
    daemon::{Answered, Daemon, example_zone_entry, workspace_root},
    netns::{FleetRig, HUB_ADDR},
    process::Process,
};
use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{Name, RecordType},
};
use nix::sys::signal::Signal;

const ANYCAST: &str = "198.18.99.1";
const BACKEND: &str = "198.18.0.101";
/// The BGP hold time on every session, in seconds (BIRD's least).
const HOLD: u64 = 3;

fn policy_text() -> String {
    format!(
        r#"
{}
[check.web]
kind = "tcp"
port = 8080
interval = "100ms"
timeout = "50ms"
rise = 1
fall = 2
verdict = "local"

[pool.web]
check = "web"
endpoints = ["{BACKEND}"]

[anycast]
addresses = ["{ANYCAST}"]
interface = "dnslb0"
pools = ["web"]
grace = "2s"
"#,
        example_zone_entry()
    )
}

/// BIRD on node `k`: its dummy interface's routes, to the router.
fn node_bird(k: usize, addr: &str) -> String {
    format!(
        "router id {addr};\n\
         protocol device {{ scan time 1; }}\n\
         protocol direct {{ ipv4; interface \"dnslb0\"; }}\n\
         protocol bgp uplink {{\n  local {addr} as {as_number};\n  neighbor {HUB_ADDR} as 65000;\n  \
         hold time {HOLD}; keepalive time 1; connect retry time 1;\n  \
         ipv4 {{ import none; export where source = RTS_DEVICE; }};\n}}\n",
        as_number = 65001 + k
    )
}

/// BIRD on the router: a session to each node, their routes merged into
/// one multipath kernel route.
fn router_bird(nodes: &[&str]) -> String {
    let mut config = format!(
        "router id {HUB_ADDR};\n\
         protocol device {{ scan time 1; }}\n\
         protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths yes; }}\n"
    );
    for (k, addr) in nodes.iter().enumerate() {
        config.push_str(&format!(
            "protocol bgp node{k} {{\n  local {HUB_ADDR} as 65000;\n  neighbor {addr} as {};\n  \
             hold time {HOLD}; keepalive time 1; connect retry time 1;\n  \
             ipv4 {{ import all; export none; }};\n}}\n",
            65001 + k
        ));
    }
    config
}

fn bird(netns: &dnslb_tests::netns::Netns, dir: &Path, name: &str, config: &str) -> Process {
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(&conf, config).unwrap();
    let mut command = netns.command("bird");
    command
        .arg("-f")
        .arg("-c")
        .arg(&conf)
        .arg("-s")
        .arg(dir.join(format!("{name}.ctl")));
    Process::spawn(command, dir.join(format!("{name}.log"))).expect("bird starts (install bird2)")
}

/// The router's next hops to the anycast address.
fn next_hops(rig: &FleetRig) -> Vec<String> {
    let route = rig.hub.ip(&["route", "show", ANYCAST]).unwrap_or_default();
    let mut hops: Vec<String> = route
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|pair| pair[0] == "via")
        .map(|pair| pair[1].to_owned())
        .collect();
    hops.sort();
    hops
}

/// Waits until the router's next hops are `want`; how long that took.
fn hops_become(rig: &FleetRig, want: &[&str], limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let hops = next_hops(rig);
        if hops == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "the router's next hops to {ANYCAST} are {hops:?}, not {want:?}, after {limit:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Queries the anycast address from the router, each from a new port (so
/// that the multipath hash spreads them), until stopped: how many, and how
/// many went unanswered. At most 2,000 queries, 100 a second.
struct Prober {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<(u32, u32)>,
}

impl Prober {
    fn start(rig: &FleetRig) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let hub = rig.hub.name().to_owned();
        let thread = thread::spawn(move || {
            dnslb_tests::netns::enter_netns(&hub).expect("into the router");
            let to: SocketAddr = format!("{ANYCAST}:53").parse().unwrap();
            let (mut sent, mut lost) = (0u32, 0u32);
            while !stopping.load(Ordering::Relaxed) && sent < 2000 {
                sent += 1;
                if !answered(to, sent as u16) {
                    lost += 1;
                }
                thread::sleep(Duration::from_millis(10));
            }
            (sent, lost)
        });
        Prober { stop, thread }
    }

    fn finish(self) -> (u32, u32) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("prober")
    }
}

/// Whether one query for api.example.com gets its answer within 500 ms.
fn answered(to: SocketAddr, id: u16) -> bool {
    let Ok(socket) = UdpSocket::bind("0.0.0.0:0") else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(500)));
    let mut query = Message::query();
    query.metadata.id = id;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii("api.example.com.").unwrap(),
        RecordType::A,
    ));
    if socket.send_to(&query.to_vec().unwrap(), to).is_err() {
        return false;
    }
    let mut buffer = [0u8; 512];
    let Ok((len, _)) = socket.recv_from(&mut buffer) else {
        return false;
    };
    Message::from_vec(&buffer[..len]).is_ok_and(|answer| {
        answer.metadata.id == id
            && answer.metadata.response_code == ResponseCode::NoError
            && !answer.answers.is_empty()
    })
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn bird_announces_each_serving_healthy_node_and_withdraws_it_without_losing_a_query() {
    let rig = FleetRig::new(2).expect("namespaces, bridge and veths");
    let _pass = rig
        .attach_pass_through()
        .expect("pass-through on the router");
    rig.add_hub_address(BACKEND).expect("backend address");
    let _backend = HttpBackend::start(&rig.hub, SocketAddr::new(BACKEND.parse().unwrap(), 8080))
        .expect("backend");
    // Spread flows over both paths by their ports, not only addresses.
    let hashed = rig
        .hub
        .command("sysctl")
        .args(["-qw", "net.ipv4.fib_multipath_hash_policy=1"])
        .status()
        .expect("sysctl");
    assert!(hashed.success());
    let dir = Scratch(std::env::temp_dir().join(format!("dnslb-anycast-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let policy = dir.0.join("dnslb.toml");
    std::fs::write(&policy, policy_text()).unwrap();
    let policy = policy.display().to_string();

    let addrs: Vec<&str> = rig.nodes.iter().map(|node| node.addr.as_str()).collect();
    let _router = bird(&rig.hub, &dir.0, "router", &router_bird(&addrs));
    let _birds: Vec<Process> = rig
        .nodes
        .iter()
        .enumerate()
        .map(|(k, node)| {
            bird(
                &node.netns,
                &dir.0,
                &format!("node{k}"),
                &node_bird(k, &node.addr),
            )
        })
        .collect();
    // dnslb makes its interface as a dummy when it is missing; this
    // machine's kernel has no dummy driver, so each node gets a bridge
    // without ports by that name first (dnslb uses an interface that is
    // there as it is).
    for node in &rig.nodes {
        node.netns
            .ip(&["link", "add", "dnslb0", "type", "bridge"])
            .expect("the anycast interface");
    }
    let states: Vec<String> = (0..rig.nodes.len())
        .map(|k| dir.0.join(format!("state{k}")).display().to_string())
        .collect();
    let start = |k: usize| {
        let node = &rig.nodes[k];
        let args = ["--config", &policy, "--state-dir", &states[k]];
        Daemon::start_serving(&node.netns, Some(&node.iface), &args).expect("dnslb starts")
    };
    let mut daemons: Vec<Option<Daemon>> = vec![Some(start(0)), Some(start(1))];
    let both = [addrs[0], addrs[1]];
    let up = hops_become(&rig, &both, Duration::from_secs(15));
    println!("the router routed {ANYCAST} to both nodes {up:?} after they started");

    // Both nodes answer: the multipath route spreads the queries.
    let prober = Prober::start(&rig);
    thread::sleep(Duration::from_millis(500));
    let (sent, lost) = prober.finish();
    assert_eq!(lost, 0, "{lost} of {sent} unanswered");
    for node in &rig.nodes {
        let answered = Answered::scrape_from(&node.netns).expect("metrics");
        assert!(
            answered.xdp.unwrap_or(0) > 0,
            "{} answered none in its kernel: {answered:?}",
            node.addr
        );
    }

    // The operator withdraws node 0; the withdrawal outlives a crash and
    // a restart (node 0 serves again, unannounced) until it is announced.
    let out = daemons[0]
        .as_ref()
        .unwrap()
        .cli(&["anycast", "withdraw"])
        .expect("withdraw");
    assert!(out.contains("withdrawn by the operator"), "{out}");
    let gone = hops_become(&rig, &[addrs[1]], Duration::from_secs(HOLD));
    println!("withdrawn by the operator: out of the router's route {gone:?} later");
    daemons[0]
        .take()
        .unwrap()
        .stop(Signal::SIGKILL)
        .expect("killed");
    daemons[0] = Some(start(0));
    let node0 = daemons[0].as_ref().unwrap();
    // Its first decision follows the start by a moment.
    let decided = Instant::now() + Duration::from_secs(5);
    loop {
        let status = node0.cli(&["status"]).expect("status");
        if status.contains("withdrawn by the operator") {
            break;
        }
        assert!(Instant::now() < decided, "{status}");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        next_hops(&rig),
        [addrs[1]],
        "still withdrawn after the restart"
    );
    node0.cli(&["anycast", "announce"]).expect("announce");
    hops_become(&rig, &both, Duration::from_secs(HOLD));

    // Node 0 loses its upstream: the backend is unreachable from it.
    rig.nodes[0]
        .netns
        .ip(&["route", "add", "prohibit", &format!("{BACKEND}/32")])
        .expect("cut");
    let gone = hops_become(&rig, &[addrs[1]], Duration::from_secs(HOLD));
    println!("upstream lost: out of the router's route {gone:?} later");
    let status = node0.cli(&["status"]).expect("status");
    assert!(
        status.contains("no healthy endpoint in pool `web`"),
        "{status}"
    );
    rig.nodes[0]
        .netns
        .ip(&["route", "del", "prohibit", &format!("{BACKEND}/32")])
        .expect("mend");
    hops_become(&rig, &both, Duration::from_secs(HOLD));

    // Node 0 stops while queries flow: it withdraws, the router's route
    // loses it within the hold time, and not one query goes unanswered.
    let prober = Prober::start(&rig);
    thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    let daemon = daemons[0].take().unwrap();
    let stopper = thread::spawn(move || daemon.stop(Signal::SIGTERM));
    let gone = hops_become(&rig, &[addrs[1]], Duration::from_secs(HOLD));
    println!("stopped: out of the router's route {gone:?} after SIGTERM");
    stopper.join().expect("stopper").expect("dnslb stops");
    println!(
        "dnslb exited {:?} after SIGTERM (its grace period is 2 s)",
        stopping.elapsed()
    );
    thread::sleep(Duration::from_millis(300));
    let (sent, lost) = prober.finish();
    println!("{sent} queries to {ANYCAST} while node 0 stopped, {lost} unanswered");
    assert_eq!(lost, 0, "{lost} of {sent} unanswered");
    assert!(sent > 100, "{sent} queries");
    drop(daemons);
}

/// The BIRD configuration shipped in deploy/ is one BIRD reads.
#[test]
fn the_shipped_bird_example_parses() {
    let example = workspace_root().join("deploy/anycast/bird.conf");
    let checked = std::process::Command::new("bird")
        .arg("-p")
        .arg("-c")
        .arg(&example)
        .output()
        .expect("bird runs (install bird2)");
    assert!(checked.status.success(), "{checked:?}");
}
