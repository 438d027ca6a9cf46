//! A fleet of three dnslb nodes, each in its own namespace with its XDP
//! program attached, sharing configuration and health through a real etcd
//! cluster of three members (on the hub namespace that every node
//! reaches). Changes through one node reach every node's kernel; an
//! endpoint's health is the fleet's verdict; losing the etcd leader, or
//! etcd altogether, changes nothing served.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;

use dnslb_tests::{
    backend::HttpBackend,
    daemon::{Answered, Daemon, a_records, example_zone_entry},
    etcd::{EtcdCluster, EtcdTls},
    netns::{FleetRig, HUB_ADDR},
};

const NODES: usize = 3;
/// The first etcd member's client port (the hub's namespace is the
/// test's own, so the usual ports are free).
const ETCD_PORT: u16 = 2379;
const WEB: [&str; 3] = ["198.18.0.101", "198.18.0.102", "198.18.0.103"];

fn policy_text() -> String {
    format!(
        r#"
{}
[check.web]
kind = "http"
path = "/health"
port = 8080
search = "OK"
interval = "100ms"
timeout = "50ms"
rise = 1
fall = 2
min_fraction = 0.5

[pool.web]
check = "web"
endpoints = ["{}", "{}", "{}"]

[pool.pick]
endpoints = [
  {{ address = "198.18.0.201", weight = 1 }},
  {{ address = "198.18.0.202", weight = 0 }},
]
load = {{ source = "push" }}

[service.svc]
name = "svc.example.com."
ttl = 5
policy = {{ kind = "multivalue", pool = "web" }}

[service.pick]
name = "pick.example.com."
policy = {{ kind = "weighted", pool = "pick" }}

[pool.api]
kind = "registered"

[service.api]
name = "registered.example.com."
policy = {{ kind = "multivalue", pool = "api" }}
"#,
        example_zone_entry(),
        WEB[0],
        WEB[1],
        WEB[2]
    )
}

struct Fleet {
    rig: FleetRig,
    etcd: EtcdCluster,
    nodes: Vec<Daemon>,
    dir: PathBuf,
}

impl Fleet {
    fn start() -> (Fleet, Vec<HttpBackend>, Vec<dnslb::dataplane::PassThrough>) {
        let rig = FleetRig::new(NODES).expect("namespaces, bridge and veths");
        let pass = rig.attach_pass_through().expect("pass-through on the hub");
        let backends = WEB
            .iter()
            .map(|addr| {
                rig.add_hub_address(addr).expect("a backend address");
                let at = SocketAddr::new(addr.parse().unwrap(), 8080);
                HttpBackend::start(&rig.hub, at).expect("backend")
            })
            .collect();
        let etcd = EtcdCluster::start(&rig.hub, HUB_ADDR, 3, ETCD_PORT).expect("etcd");
        let dir = std::env::temp_dir().join(format!("dnslb-fleet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut fleet = Fleet {
            rig,
            etcd,
            nodes: Vec::new(),
            dir,
        };
        for k in 0..NODES {
            let daemon = fleet.start_node(k);
            fleet.nodes.push(daemon);
        }
        (fleet, backends, pass)
    }

    /// Node `k`, its own copy of the policy file beside it.
    fn start_node(&self, k: usize) -> Daemon {
        let policy = self.dir.join(format!("node{k}.toml"));
        std::fs::write(&policy, policy_text()).unwrap();
        let node = &self.rig.nodes[k];
        let (policy, url, name) = (
            policy.display().to_string(),
            self.etcd.url(),
            format!("node{k}"),
        );
        Daemon::start_serving(
            &node.netns,
            Some(&node.iface),
            &["--config", &policy, "--cluster", &url, "--node-name", &name],
        )
        .expect("dnslb node starts")
    }

    /// Node `k`'s A records for `name`, asked from the hub.
    fn ask(&self, k: usize, name: &str) -> Vec<Ipv4Addr> {
        a_records(&self.rig.hub, &self.rig.nodes[k].addr, name)
    }

    /// Whether node `k`'s kernel answered the next query for `name`, and
    /// with what.
    fn kernel_answer(&self, k: usize, name: &str) -> (Vec<Ipv4Addr>, bool) {
        let netns = &self.rig.nodes[k].netns;
        let count = || {
            Answered::scrape_from(netns)
                .expect("metrics")
                .xdp
                .unwrap_or(0)
        };
        let before = count();
        let addrs = self.ask(k, name);
        (addrs, count() == before + 1)
    }

    /// Waits until every node answers `name` with `want`, up to `limit`.
    fn all_answer(&self, name: &str, want: &[&str], limit: Duration) -> Duration {
        self.nodes_answer(&[0, 1, 2], name, want, limit)
    }

    /// Waits until each of `nodes` answers `name` with `want`, up to
    /// `limit`.
    fn nodes_answer(
        &self,
        nodes: &[usize],
        name: &str,
        want: &[&str],
        limit: Duration,
    ) -> Duration {
        let want: Vec<Ipv4Addr> = want.iter().map(|a| a.parse().unwrap()).collect();
        let started = Instant::now();
        loop {
            let answers: Vec<Vec<Ipv4Addr>> = nodes.iter().map(|&k| self.ask(k, name)).collect();
            if answers.iter().all(|a| *a == want) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "not every node answers {name} with {want:?} within {limit:?}: {answers:?}\n{}",
                self.nodes[0].log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The store's revision node `k` has applied (from `dnslb status`).
    fn revision(&self, k: usize) -> Option<i64> {
        let status = self.nodes[k].cli(&["status"]).ok()?;
        let line = status.lines().find(|l| l.starts_with("fleet"))?;
        line.split("revision ")
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    /// Node `k` can no longer reach `addr` (its route is prohibited).
    fn cut(&self, k: usize, addr: &str) {
        self.rig.nodes[k]
            .netns
            .ip(&["route", "add", "prohibit", &format!("{addr}/32")])
            .expect("ip route");
    }

    fn mend(&self, k: usize, addr: &str) {
        self.rig.nodes[k]
            .netns
            .ip(&["route", "del", "prohibit", &format!("{addr}/32")])
            .expect("ip route");
    }

    /// The store's revision of node `k`'s verdict on `addr` once it is
    /// `down`.
    fn published_down(&self, k: usize, addr: &str, limit: Duration) -> i64 {
        let key = format!("/dnslb/health/node{k}/web/{addr}");
        let started = Instant::now();
        loop {
            let output = self
                .etcd
                .etcdctl(&["get", &key, "-w", "json"])
                .expect("etcdctl runs");
            let json: serde_json::Value =
                serde_json::from_slice(&output.stdout).unwrap_or_default();
            let kv = &json["kvs"][0];
            // etcdctl prints values in base64.
            if kv["value"].as_str() == Some("ZG93bg==") {
                return kv["mod_revision"].as_i64().unwrap_or_default();
            }
            assert!(started.elapsed() < limit, "{key} not down: {json}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Asks node `k`'s kernel for pick.example.com until it has drawn only
/// `want` `times` answers in a row, up to `limit`; how long it took until
/// the first answer of that run.
fn kernel_draws_only(
    fleet: &Fleet,
    k: usize,
    want: &str,
    times: usize,
    limit: Duration,
) -> Duration {
    let want: Ipv4Addr = want.parse().unwrap();
    let started = Instant::now();
    let mut run: Option<Duration> = None;
    let mut in_a_row = 0;
    while in_a_row < times {
        let asked = started.elapsed();
        let (addrs, by_kernel) = fleet.kernel_answer(k, "pick.example.com.");
        if by_kernel && addrs == [want] {
            run.get_or_insert(asked);
            in_a_row += 1;
        } else {
            (run, in_a_row) = (None, 0);
        }
        assert!(
            started.elapsed() < limit * 2,
            "node {k}'s kernel did not draw only {want}: {addrs:?} (kernel: {by_kernel})"
        );
    }
    let first = run.unwrap_or_default();
    assert!(
        first < limit,
        "node {k}'s kernel drew only {want} from {first:?}, not within {limit:?}"
    );
    first
}

#[test]
fn a_fleet_shares_changes_and_health_through_etcd_and_survives_losing_it() {
    let (mut fleet, _backends, _pass) = Fleet::start();
    let every_web = WEB;
    let started = fleet.all_answer("svc.example.com.", &every_web, Duration::from_secs(10));
    println!("three nodes answered from the fleet's policy {started:?} after start");
    for k in 0..NODES {
        let status = fleet.nodes[k].cli(&["status"]).expect("status");
        assert!(
            status.contains(&format!("as node node{k}: connected")),
            "{status}"
        );
    }

    // A weight change through node A is drawn by node C's kernel. Both
    // weights change (B first, A's to 0 last), so that from the last
    // change on C's kernel draws B only; 20 in a row by chance before
    // that would be one in a million.
    let a = &fleet.nodes[0];
    a.cli(&["endpoint", "weight", "198.18.0.202", "1", "--pool", "pick"])
        .expect("weight through node A");
    let called = Instant::now();
    a.cli(&["endpoint", "weight", "198.18.0.201", "0", "--pool", "pick"])
        .expect("weight through node A");
    let call = called.elapsed();
    let drawn = kernel_draws_only(&fleet, 2, "198.18.0.202", 20, Duration::from_secs(1));
    println!(
        "node C's kernel drew the new weights {drawn:?} after node A's change returned \
         (the call took {call:?}: to etcd and back, applied on node A)"
    );

    // A load pushed through node A reaches every node through etcd: .202's
    // agent says drain, and node C's kernel draws .201 alone (weight 0,
    // but the only one left); `ready` brings .202 back.
    a.cli(&["endpoint", "load", "pick", "198.18.0.202", "drain"])
        .expect("a load through node A");
    let drawn = kernel_draws_only(&fleet, 2, "198.18.0.201", 20, Duration::from_secs(1));
    println!("node C's kernel shed the endpoint {drawn:?} after node A took its load");
    let listed = fleet.nodes[2]
        .cli(&["endpoint", "list", "--pool", "pick"])
        .expect("node C's endpoints");
    assert!(listed.contains("agent says drain: shed"), "{listed}");
    a.cli(&["endpoint", "load", "pick", "198.18.0.202", "ready"])
        .expect("a load through node A");
    kernel_draws_only(&fleet, 2, "198.18.0.202", 20, Duration::from_secs(1));

    // Shared health, min_fraction 0.5. One node in three cannot reach
    // .101: two of three still see it, so every node keeps answering it,
    // also once the others have read that node's verdict.
    fleet.cut(0, WEB[0]);
    let down = fleet.published_down(0, WEB[0], Duration::from_secs(5));
    for k in 1..NODES {
        let waited = Instant::now();
        while fleet.revision(k).unwrap_or(0) < down {
            assert!(waited.elapsed() < Duration::from_secs(2), "node {k} behind");
            thread::sleep(Duration::from_millis(10));
        }
    }
    fleet.all_answer("svc.example.com.", &every_web, Duration::from_millis(1));
    // Two of three cannot reach it: it leaves every node's answers, also
    // those of the node that still reaches it.
    fleet.cut(1, WEB[0]);
    let gone = fleet.all_answer("svc.example.com.", &WEB[1..], Duration::from_secs(5));
    println!(
        "an endpoint two nodes of three cannot reach left every node's answers {gone:?} after the second cut"
    );
    // A node that stops leaves: its verdicts go at once (its lease
    // revoked), and one down and one up of the two left is half: .101 is
    // back. Restarted (still cut off), it takes .101 out again.
    let stopped = fleet.nodes.remove(1);
    stopped.stop(Signal::SIGTERM).expect("node B stops");
    let back = fleet.nodes_answer(
        &[0, 2],
        "svc.example.com.",
        &every_web,
        Duration::from_secs(1),
    );
    println!("a stopped node's verdict stopped counting {back:?} after it exited");
    let restarted = fleet.start_node(1);
    fleet.nodes.insert(1, restarted);
    fleet.all_answer("svc.example.com.", &WEB[1..], Duration::from_secs(5));
    // A node that dies counts until its lease runs out (3 s after its
    // last renewal, which is at most a second old).
    let dead = fleet.nodes.remove(1);
    dead.stop(Signal::SIGKILL).expect("node B killed");
    let back = fleet.nodes_answer(
        &[0, 2],
        "svc.example.com.",
        &every_web,
        Duration::from_secs(6),
    );
    println!("a dead node's verdict stopped counting {back:?} after it was killed");
    assert!(
        back > Duration::from_secs(2),
        "counted until its lease ran out: {back:?}"
    );
    let restarted = fleet.start_node(1);
    fleet.nodes.insert(1, restarted);
    fleet.mend(0, WEB[0]);
    fleet.mend(1, WEB[0]);
    fleet.all_answer("svc.example.com.", &every_web, Duration::from_secs(5));

    // Registrations and zone assignments through one node are every
    // node's.
    fleet.nodes[2]
        .cli(&["endpoint", "register", "api", "198.18.0.150"])
        .expect("register through node C");
    fleet.all_answer(
        "registered.example.com.",
        &["198.18.0.150"],
        Duration::from_secs(1),
    );
    let zone = fleet.dir.join("example.net.zone");
    std::fs::write(
        &zone,
        "$TTL 300\n@ SOA ns hostmaster 1 7200 3600 1209600 60\n@ NS ns\nns A 198.18.0.53\n\
         www A 198.18.0.80\n",
    )
    .unwrap();
    let zone = zone.display().to_string();
    fleet.nodes[1]
        .cli(&["zone", "load", "example.net", &zone])
        .expect("zone load through node B");
    fleet.all_answer("www.example.net.", &["198.18.0.80"], Duration::from_secs(1));

    // The etcd leader dies: nothing served changes, and a change goes
    // through once a new leader is elected.
    let leader = fleet.etcd.leader().expect("a leader");
    fleet.etcd.kill(leader).expect("leader killed");
    let killed = Instant::now();
    fleet.all_answer("svc.example.com.", &every_web, Duration::from_millis(1));
    kernel_draws_only(&fleet, 1, "198.18.0.202", 5, Duration::from_secs(1));
    let b = &fleet.nodes[1];
    loop {
        match b.cli(&["endpoint", "weight", "198.18.0.201", "1", "--pool", "pick"]) {
            Ok(_) => break,
            Err(error) => assert!(
                killed.elapsed() < Duration::from_secs(10),
                "no change went through in 10 s: {error}"
            ),
        }
        thread::sleep(Duration::from_millis(50));
    }
    b.cli(&["endpoint", "weight", "198.18.0.202", "0", "--pool", "pick"])
        .expect("a second change");
    println!(
        "a change went through {:?} after the leader was killed",
        killed.elapsed()
    );
    let drawn = kernel_draws_only(&fleet, 2, "198.18.0.201", 20, Duration::from_secs(1));
    println!("and node C's kernel drew it {drawn:?} after it returned");

    // Without etcd at all: every node serves its last state, says so,
    // and refuses changes with a clear error.
    for m in 0..3 {
        fleet.etcd.kill(m).expect("member killed");
    }
    let waited = Instant::now();
    let status = loop {
        let status = fleet.nodes[2].cli(&["status"]).expect("status");
        if status.contains("NOT CONNECTED") {
            break status;
        }
        assert!(waited.elapsed() < Duration::from_secs(10), "{status}");
        thread::sleep(Duration::from_millis(100));
    };
    println!("{status}");
    let refused = fleet.nodes[2]
        .cli(&["endpoint", "weight", "198.18.0.201", "0", "--pool", "pick"])
        .expect_err("a change without etcd");
    assert!(refused.contains("cannot be reached"), "{refused}");
    fleet.all_answer("svc.example.com.", &every_web, Duration::from_millis(1));
    kernel_draws_only(&fleet, 2, "198.18.0.201", 5, Duration::from_secs(1));
    let metrics =
        dnslb_tests::daemon::scrape(&fleet.rig.nodes[2].netns, dnslb_tests::daemon::RIG_METRICS)
            .expect("metrics");
    assert!(metrics.contains("dnslb_fleet_connected 0"), "{metrics}");
}

/// `openssl ARGS` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let done = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs (install openssl)");
    assert!(done.status.success(), "openssl {args:?}: {done:?}");
}

/// A CA, etcd's certificate for `host` signed by it, and a client
/// certificate named `client` (P-256 keys, valid for a day).
fn certificates(dir: &std::path::Path, host: &str, client: &str) -> EtcdTls {
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(key);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=dnslb test CA",
    ]);
    openssl(dir, &ca);
    let sign = |name: &str, subject: &str, extension: &str| {
        let mut request = vec!["req"];
        request.extend(key);
        let (key_file, request_file) = (format!("{name}.key"), format!("{name}.csr"));
        request.extend([
            "-keyout",
            &key_file,
            "-out",
            &request_file,
            "-subj",
            subject,
        ]);
        openssl(dir, &request);
        std::fs::write(dir.join(format!("{name}.ext")), extension).unwrap();
        let (ext_file, certificate) = (format!("{name}.ext"), format!("{name}.pem"));
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &request_file,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &ext_file,
                "-out",
                &certificate,
            ],
        );
    };
    sign(
        "etcd",
        "/CN=etcd",
        &format!("subjectAltName=IP:{host}\nextendedKeyUsage=serverAuth\n"),
    );
    sign(
        "client",
        &format!("/CN={client}"),
        "extendedKeyUsage=clientAuth\n",
    );
    EtcdTls {
        certificate: dir.join("etcd.pem"),
        key: dir.join("etcd.key"),
        ca: dir.join("ca.pem"),
        client: (dir.join("client.pem"), dir.join("client.key")),
    }
}

/// etcd behind TLS with client certificates and its own authentication:
/// a node with the CA, a client certificate and the password joins and
/// changes the fleet; one with the wrong password, or no client
/// certificate, is kept out, says so and refuses changes.
#[test]
fn a_fleet_store_behind_tls_client_certificates_and_a_password() {
    let rig = FleetRig::new(3).expect("namespaces, bridge and veths");
    let _pass = rig.attach_pass_through().expect("pass-through on the hub");
    let dir = std::env::temp_dir().join(format!("dnslb-fleet-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The certificate names no etcd user: the password decides who it is.
    let tls = certificates(&dir, HUB_ADDR, "dnslb-node");
    let etcd = EtcdCluster::start_with(&rig.hub, HUB_ADDR, 1, ETCD_PORT, Some(tls.clone()))
        .expect("etcd with TLS");
    for args in [
        &["user", "add", "root:root-secret"][..],
        &["user", "add", "dnslb:fleet-secret"],
        &["user", "grant-role", "dnslb", "root"],
        &["auth", "enable"],
    ] {
        let done = etcd.etcdctl(args).expect("etcdctl");
        assert!(done.status.success(), "etcdctl {args:?}: {done:?}");
    }
    std::fs::write(dir.join("password"), "fleet-secret\n").unwrap();
    std::fs::write(dir.join("wrong"), "not-the-secret\n").unwrap();
    let policy = dir.join("dnslb.toml");
    std::fs::write(&policy, policy_text()).unwrap();
    let path = |file: &std::path::Path| file.display().to_string();
    let (policy, ca, certificate, key) = (
        path(&policy),
        path(&tls.ca),
        path(&tls.client.0),
        path(&tls.client.1),
    );
    let (password, wrong) = (path(&dir.join("password")), path(&dir.join("wrong")));
    let url = etcd.url();
    let node = |k: usize, extra: &[&str]| {
        let name = format!("node{k}");
        let mut args = vec!["--config", &policy, "--cluster", &url, "--node-name", &name];
        args.extend_from_slice(extra);
        let node = &rig.nodes[k];
        Daemon::start_serving(&node.netns, Some(&node.iface), &args).expect("dnslb starts")
    };
    let with_cert = [
        "--cluster-ca",
        &ca,
        "--cluster-cert",
        &certificate,
        "--cluster-key",
        &key,
    ];
    let mut member = with_cert.to_vec();
    member.extend([
        "--cluster-user",
        "dnslb",
        "--cluster-password-file",
        &password,
    ]);
    let mut mistaken = with_cert.to_vec();
    mistaken.extend(["--cluster-user", "dnslb", "--cluster-password-file", &wrong]);
    let no_cert = [
        "--cluster-ca",
        &ca,
        "--cluster-user",
        "dnslb",
        "--cluster-password-file",
        &password,
    ];
    let nodes = [node(0, &member), node(1, &mistaken), node(2, &no_cert)];

    let connected = |k: usize| {
        nodes[k]
            .cli(&["status"])
            .is_ok_and(|status| status.contains(": connected"))
    };
    let started = Instant::now();
    while !connected(0) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            nodes[0].log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
    nodes[0]
        .cli(&["endpoint", "weight", "198.18.0.201", "7", "--pool", "pick"])
        .expect("a change over TLS, as user dnslb");
    let stored = etcd
        .etcdctl(&[
            "--user",
            "root:root-secret",
            "get",
            "/dnslb/overrides",
            "--print-value-only",
        ])
        .expect("etcdctl");
    let stored = String::from_utf8_lossy(&stored.stdout);
    assert!(
        stored.contains("198.18.0.201") && stored.contains('7'),
        "{stored}"
    );
    // Each says why in its log: the wrong password as etcd words it; no
    // client certificate as etcd's TLS alert, or the connection it closes
    // (seen as closed, or as a broken pipe when it closes mid-write).
    for (k, whys) in [
        (1, &["authentication failed"][..]),
        (2, &["BadCertificate", "connection closed", "broken pipe"]),
    ] {
        let log = nodes[k].log_text();
        let said = log
            .lines()
            .filter(|line| line.contains("cannot reach the fleet's store"))
            .any(|line| whys.iter().any(|why| line.contains(why)));
        assert!(said, "node {k}:\n{log}");
    }
    for k in [1, 2] {
        assert!(!connected(k), "node {k} joined:\n{}", nodes[k].log_text());
        let refused = nodes[k]
            .cli(&["endpoint", "weight", "198.18.0.201", "0", "--pool", "pick"])
            .expect_err("no change without the fleet");
        assert!(refused.contains("cannot be reached"), "{refused}");
    }
    drop(nodes);
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
}
