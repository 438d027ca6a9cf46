//! The control API and CLI against a real daemon attached to the veth rig:
//! every command, changes that must be all or nothing, drains reaching the
//! kernel's answers, and the token rule on TCP. Needs root.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use dnslb_tests::{
    daemon::{Answered, Daemon, ZoneFile, kdig},
    netns::{Rig, SERVER_ADDR},
};
use nix::sys::signal::Signal;

/// A zone and a policy file of the test's own, in a fresh directory.
struct Files {
    dir: PathBuf,
}

const POLICY: &str = r#"
[pool.web]
endpoints = ["198.18.40.1", "198.18.40.2", "198.18.40.3"]

[service.web]
name = "web.example.com."
policy = { kind = "multivalue", pool = "web" }
"#;

const EXTRA_ZONE: &str =
    "$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 198.18.0.2\nhot A 198.18.50.1\n";

impl Files {
    fn new(test: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("dnslb-control-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let files = Files { dir };
        files.write("dnslb.toml", POLICY);
        files.write("extra.zone", EXTRA_ZONE);
        files.write(
            "broken.zone",
            "$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nbad A 999.0.0.1\n",
        );
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write a test file");
    }

    fn text(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The addresses of the A answer to `name`, sorted, one a line (the
/// order rotates).
fn ask(rig: &Rig, name: &str) -> String {
    let server = format!("@{SERVER_ADDR}");
    let short = kdig(&rig.client, &[server.as_str(), "+short", name, "A"]).expect("kdig runs");
    let mut lines: Vec<&str> = short.lines().collect();
    lines.sort();
    lines.iter().map(|line| format!("{line}\n")).collect()
}

fn xdp_answers(rig: &Rig) -> u64 {
    Answered::scrape(rig)
        .expect("metrics")
        .xdp
        .expect("XDP in use")
}

fn start(rig: &Rig, files: &Files, extra: &[&str]) -> Daemon {
    let config = files.text("dnslb.toml");
    let mut args = vec!["--config", config.as_str()];
    args.extend_from_slice(extra);
    Daemon::start_on_rig(rig, &ZoneFile::example(), true, &args).expect("dnslb starts")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

#[test]
fn status_zones_services_endpoints_health_stats() {
    let rig = Rig::new().expect("rig");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let files = Files::new("read");
    let daemon = start(&rig, &files, &[]);

    let status = json(&daemon.cli(&["status", "--json"]).expect("status"));
    assert_eq!(status["interface"], rig.server_if.as_str());
    assert_eq!(status["xdp_mode"], "native");
    assert_eq!(status["zones"], 1);
    assert_eq!(status["services"], 1);
    let maps = status["kernel_maps"].as_array().expect("maps");
    assert_eq!(maps.len(), 4, "A and AAAA, two name classes each");
    let short_a = &maps[0];
    assert_eq!(
        (
            short_a["record_type"].as_str(),
            short_a["names_up_to"].as_u64()
        ),
        (Some("A"), Some(64))
    );
    // www, api, ns1, mx of the zone and the service.
    assert_eq!(short_a["entries"], 5, "{status}");
    // Where it answers, what it serves, where it is controlled.
    let answering: Vec<&str> = status["answering_on"]
        .as_array()
        .expect("addresses")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(answering.contains(&"198.18.0.2:53"), "{status}");
    assert_eq!(status["policy_file"], files.text("dnslb.toml").as_str());
    assert_eq!(
        status["control_socket"],
        daemon.control_socket().display().to_string().as_str()
    );
    assert_eq!(
        status["endpoints"],
        serde_json::json!({"total": 3, "down": 0, "drained": 0})
    );
    let table = daemon.cli(&["status"]).expect("status table");
    for line in [
        format!("interface   {}", rig.server_if),
        format!("policy      {}", files.text("dnslb.toml")),
        "endpoints   3 in all, 0 down, 0 drained".to_owned(),
        "overrides   0 drained, 0 weights".to_owned(),
    ] {
        assert!(table.contains(&line), "{line} in:\n{table}");
    }
    assert!(table.contains("198.18.0.2:53"), "{table}");

    let zones = daemon.cli(&["zone", "list"]).expect("zone list");
    assert!(
        zones.contains("example.com.  2026112401") && zones.contains("command line"),
        "{zones}"
    );
    let zone = json(
        &daemon
            .cli(&["zone", "show", "EXAMPLE.com", "--json"])
            .expect("zone show"),
    );
    assert_eq!(zone["serial"], 2026112401);
    let missing = daemon
        .cli(&["zone", "show", "example.org"])
        .expect_err("no such zone");
    assert!(
        missing.contains("no zone example.org. is being served"),
        "{missing}"
    );

    let services = daemon.cli(&["service", "list"]).expect("service list");
    assert!(
        services.contains("web      web.example.com.  A"),
        "{services}"
    );
    let detail = daemon
        .cli(&["service", "show", "web"])
        .expect("service show");
    assert!(
        detail.contains("pool web: up to 8 healthy, rotated"),
        "{detail}"
    );
    assert!(
        detail.contains("198.18.40.1 198.18.40.2 198.18.40.3"),
        "{detail}"
    );
    let endpoints = json(
        &daemon
            .cli(&["endpoint", "list", "--pool", "web", "--json"])
            .expect("endpoints"),
    );
    assert_eq!(endpoints.as_array().map(Vec::len), Some(3));
    assert!(
        daemon
            .cli(&["health"])
            .expect("health")
            .starts_with("CHECK")
    );

    ask(&rig, "www.example.com.");
    ask(&rig, "mail.example.com.");
    let stats = daemon.cli(&["stats"]).expect("stats");
    assert!(
        stats.contains("kernel (XDP)") && stats.contains("mail.example.com.  1"),
        "{stats}"
    );
    // Every count in the JSON is an object with named fields.
    let counted = json(&daemon.cli(&["stats", "--json"]).expect("stats --json"));
    let mail = &counted["top_names"]
        .as_array()
        .and_then(|names| names.iter().find(|n| n["name"] == "mail.example.com."))
        .cloned();
    assert_eq!(
        mail.as_ref().map(|n| &n["queries"]),
        Some(&serde_json::json!(1)),
        "{counted}"
    );
    for list in ["kernel_passed", "userspace_answered", "branches"] {
        assert!(
            counted[list]
                .as_array()
                .is_some_and(|items| items.iter().all(|item| item.is_object())),
            "{list}: {counted}"
        );
    }
    assert!(
        counted["kernel_passed"][0]["reason"].is_string(),
        "{counted}"
    );
    assert!(counted["branches"][0]["answers"].is_u64(), "{counted}");
    let watched = daemon
        .cli(&["stats", "--watch", "--count", "2"])
        .expect("stats --watch");
    assert_eq!(
        watched.matches("queries per second").count(),
        2,
        "{watched}"
    );
    assert!(
        !watched.contains('\x1b'),
        "no screen codes into a pipe: {watched:?}"
    );

    let completions = std::process::Command::new(dnslb_tests::daemon::dnslb_binary().unwrap())
        .args(["completions", "bash"])
        .output()
        .expect("completions");
    assert!(
        String::from_utf8_lossy(&completions.stdout).contains("dnslb__subcmd__zone__subcmd__load")
    );

    // `| head`: a reader that stops early ends the output, quietly.
    let socket = daemon.control_socket().display().to_string();
    for args in [
        &["completions", "bash"][..],
        &["status", "--socket", &socket],
    ] {
        let mut child = std::process::Command::new(dnslb_tests::daemon::dnslb_binary().unwrap())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("dnslb runs");
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("dnslb ends");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.is_empty(),
            "{args:?}: {}: {stderr}",
            output.status
        );
    }
}

#[test]
fn zone_and_policy_changes_are_all_or_nothing() {
    let rig = Rig::new().expect("rig");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let files = Files::new("changes");
    let daemon = start(&rig, &files, &[]);
    let www = ask(&rig, "www.example.com.");

    // A new zone: answered by the kernel at once.
    let loaded = daemon
        .cli(&["zone", "load", "extra.test", &files.text("extra.zone")])
        .expect("zone load");
    assert!(loaded.contains("applied: 2 zones"), "{loaded}");
    let before = xdp_answers(&rig);
    assert_eq!(ask(&rig, "hot.extra.test."), "198.18.50.1\n");
    assert_eq!(
        xdp_answers(&rig),
        before + 1,
        "the new zone's name comes from XDP"
    );

    // A broken file changes nothing: the old zone keeps its answers.
    let refused = daemon
        .cli(&["zone", "load", "extra.test", &files.text("broken.zone")])
        .expect_err("a broken zone is refused");
    assert!(
        refused.contains(&format!("{}:4:", files.text("broken.zone"))),
        "{refused}"
    );
    assert_eq!(ask(&rig, "hot.extra.test."), "198.18.50.1\n");
    assert_eq!(ask(&rig, "www.example.com."), www);

    // Reloading a zone rereads its file: an edit without a new serial is
    // refused (secondaries would never see it), one with a new serial is
    // served.
    let edited = EXTRA_ZONE.replace("198.18.50.1", "198.18.50.2");
    files.write("extra.zone", &edited);
    let refused = daemon
        .cli(&["zone", "reload", "extra.test"])
        .expect_err("the same serial");
    assert!(
        refused.contains("the SOA serial 1 is not above 1"),
        "{refused}"
    );
    assert_eq!(ask(&rig, "hot.extra.test."), "198.18.50.1\n");
    files.write("extra.zone", &edited.replace(" h 1 ", " h 2 "));
    daemon
        .cli(&["zone", "reload", "extra.test"])
        .expect("zone reload");
    assert_eq!(ask(&rig, "hot.extra.test."), "198.18.50.2\n");

    // A broken policy file: `reload` says where, and nothing changes.
    files.write(
        "dnslb.toml",
        &POLICY.replace("pool = \"web\" }", "pool = \"nope\" }"),
    );
    let refused = daemon
        .cli(&["reload"])
        .expect_err("a broken policy is refused");
    assert!(
        refused.contains(&format!("{}:5:", files.text("dnslb.toml"))) && refused.contains("nope"),
        "{refused}"
    );
    // With --json, the failure is JSON on stdout too, with the status.
    let output = std::process::Command::new(dnslb_tests::daemon::dnslb_binary().unwrap())
        .args(["reload", "--json", "--socket"])
        .arg(daemon.control_socket())
        .output()
        .expect("dnslb reload --json");
    assert_eq!(output.status.code(), Some(1));
    let failure = json(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(failure["status"], 400, "{failure}");
    assert!(
        failure["error"]
            .as_str()
            .is_some_and(|e| e.contains("no pool named `nope`")),
        "{failure}"
    );
    assert_eq!(ask(&rig, "web.example.com.").lines().count(), 3);
    assert_eq!(
        ask(&rig, "hot.extra.test."),
        "198.18.50.2\n",
        "the API's zone survives"
    );

    // With the file fixed, reload succeeds, reports what it did and keeps
    // the zone loaded through the API.
    files.write("dnslb.toml", POLICY);
    let reloaded = daemon.cli(&["reload"]).expect("reload");
    assert!(
        reloaded.contains("applied: 2 zones, 1 services"),
        "{reloaded}"
    );
    assert_eq!(ask(&rig, "hot.extra.test."), "198.18.50.2\n");

    // A zone a service answers in cannot go; one without can.
    let refused = daemon
        .cli(&["zone", "remove", "example.com"])
        .expect_err("service inside");
    assert!(refused.contains("service `web`"), "{refused}");
    assert_eq!(ask(&rig, "www.example.com."), www);
    daemon
        .cli(&["zone", "remove", "extra.test"])
        .expect("zone remove");
    let gone = kdig(
        &rig.client,
        &[&format!("@{SERVER_ADDR}"), "hot.extra.test.", "A"],
    )
    .expect("kdig");
    assert!(gone.contains("status: REFUSED"), "{gone}");
    let zones = daemon.cli(&["zone", "list"]).expect("zone list");
    assert!(!zones.contains("extra.test"), "{zones}");
}

#[test]
fn check_names_every_bad_file_and_line() {
    let files = Files::new("check");
    let binary = dnslb_tests::daemon::dnslb_binary().unwrap();
    let broken = format!("broken.test={}", files.text("broken.zone"));
    let good = format!("extra.test={}", files.text("extra.zone"));
    let output = std::process::Command::new(&binary)
        .args(["check", "--zone", &broken, "--zone", &good])
        .output()
        .expect("dnslb check");
    assert_eq!(output.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        errors.starts_with(&format!("{}:4: ", files.text("broken.zone"))),
        "{errors}"
    );
    let output = std::process::Command::new(&binary)
        .args([
            "check",
            "--zone",
            &good,
            "--config",
            &files.text("dnslb.toml"),
        ])
        .output()
        .expect("dnslb check");
    // The policy's service is outside the only zone given.
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("service `web`"));
}

/// One policy file with three problems: `check` lists them all, each on
/// its line, in the file's order. Once the zone file is there, a service
/// outside it is named on its line too.
#[test]
fn check_lists_every_problem_of_a_policy_file_on_its_line() {
    let files = Files::new("check-all");
    files.write(
        "three.toml",
        r#"[[zone]]
origin = "example.com."
file = "example.zone"

[pool.web]
endpoints = ["198.18.40.1"]

[service.near]
name = "near.example.com."
[service.near.policy]
kind = "ip"
branches = [
  { name = "lan", cidrs = ["10.1.2.3/8"], pool = "web" },
  { default = true, pool = "web" },
]

[service.www]
name = "www.example.com."
policy = { pool = "web" }

[service.www2]
name = "www.example.com."
policy = { pool = "web" }

[service.away]
name = "www.example.net."
policy = { pool = "web" }
"#,
    );
    let policy = files.text("three.toml");
    let binary = dnslb_tests::daemon::dnslb_binary().unwrap();
    let check = |policy: &str| {
        let output = std::process::Command::new(&binary)
            .args(["check", "--config", policy])
            .output()
            .expect("dnslb check");
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let errors = check(&policy);
    let lines: Vec<&str> = errors
        .lines()
        .filter(|line| line.starts_with(&policy))
        .collect();
    assert_eq!(lines.len(), 3, "{errors}");
    let expected = [
        (1, "zone example.com.: cannot read the zone file"),
        (
            13,
            "`10.1.2.3/8` has bits set past its /8 prefix: the network is 10.0.0.0/8",
        ),
        (
            21,
            "service `www2`: service `www` answers www.example.com. A already",
        ),
    ];
    for (line, (number, problem)) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(&format!("{policy}:{number}: ")) && line.contains(problem),
            "{line} should be on line {number} and say {problem}"
        );
    }

    // Services are checked against the zones once the file compiles and
    // every zone reads.
    files.write(
        "example.zone",
        "$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 198.18.0.2\n",
    );
    files.write(
        "away.toml",
        r#"[[zone]]
origin = "example.com."
file = "example.zone"

[pool.web]
endpoints = ["198.18.40.1"]

[service.away]
name = "www.example.net."
policy = { pool = "web" }
"#,
    );
    let away = files.text("away.toml");
    let errors = check(&away);
    assert_eq!(
        errors.lines().next(),
        Some(
            format!("{away}:8: service `away`: www.example.net. is in no zone being served")
                .as_str()
        ),
        "{errors}"
    );
}

/// Answers for the service's name until `done` says so, within `limit`;
/// returns how long it took.
fn until(rig: &Rig, limit: Duration, done: impl Fn(&str) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let answer = ask(rig, "web.example.com.");
        if done(&answer) {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "not within {limit:?}: {answer}");
    }
}

#[test]
fn drained_endpoints_leave_the_kernel_answers_and_come_back() {
    let rig = Rig::new().expect("rig");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let files = Files::new("drain");
    let daemon = start(&rig, &files, &[]);
    assert_eq!(ask(&rig, "web.example.com.").lines().count(), 3);

    let before = xdp_answers(&rig);
    let listed = daemon
        .cli(&["endpoint", "drain", "198.18.40.2", "--pool", "web"])
        .expect("drain");
    let row: Vec<&str> = listed
        .lines()
        .find(|line| line.contains("198.18.40.2"))
        .map(|line| line.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        row,
        ["web", "198.18.40.2", "drained", "1", "yes", "yes"],
        "{listed}"
    );
    // The CLI returns once the change is applied; the margin covers kdig.
    let took = until(&rig, Duration::from_millis(100), |a| {
        !a.contains("198.18.40.2")
    });
    eprintln!("drain visible after {took:?}");
    assert!(xdp_answers(&rig) > before, "answered by the kernel");

    // A reload keeps the drain.
    daemon.cli(&["reload"]).expect("reload");
    assert!(!ask(&rig, "web.example.com.").contains("198.18.40.2"));

    daemon
        .cli(&["endpoint", "undrain", "198.18.40.2"])
        .expect("undrain");
    until(&rig, Duration::from_millis(100), |a| a.lines().count() == 3);

    let refused = daemon
        .cli(&["endpoint", "drain", "198.18.99.9"])
        .expect_err("unknown");
    assert!(
        refused.contains("no endpoint 198.18.99.9 in any pool"),
        "{refused}"
    );
    let weighed = daemon
        .cli(&["endpoint", "weight", "198.18.40.1", "7", "--pool", "web"])
        .expect("weight");
    assert!(weighed.contains("7 (file: 1)"), "{weighed}");

    // Drained means drained: with every endpoint drained, neither the
    // kernel nor the daemon answers any of them (the all-down rule does not
    // bring them back), and the service says that it fails closed, and why.
    for address in ["198.18.40.1", "198.18.40.2", "198.18.40.3"] {
        daemon.cli(&["endpoint", "drain", address]).expect("drain");
    }
    let before = Answered::scrape(&rig).expect("metrics");
    let server = format!("@{SERVER_ADDR}");
    let answer = kdig(&rig.client, &[&server, "web.example.com.", "A"]).expect("kdig runs");
    assert!(
        answer.contains("status: NOERROR") && !answer.contains("198.18.40."),
        "{answer}"
    );
    let after = Answered::scrape(&rig).expect("metrics");
    assert_eq!(
        after.xdp, before.xdp,
        "the kernel holds nothing for the name"
    );
    assert_eq!(after.userspace, before.userspace + 1, "the daemon answered");
    let shown = daemon
        .cli(&["service", "show", "web"])
        .expect("service show");
    assert!(
        shown.contains("FAILING CLOSED: every endpoint is drained or not ready: answering none"),
        "{shown}"
    );
    let listed = daemon.cli(&["service", "list"]).expect("service list");
    assert!(listed.contains("failing closed"), "{listed}");
}

/// What an operator said survives a crash: a drain, a weight, a zone
/// loaded and the policy's own zone untouched, kept in the state directory
/// and in force again, in the kernel and the daemon, after SIGKILL and a
/// start with the same directory.
#[test]
fn drains_weights_and_zones_survive_a_crash() {
    let rig = Rig::new().expect("rig");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let files = Files::new("crash");
    let state = files.text("state");
    let daemon = start(&rig, &files, &["--state-dir", &state]);
    daemon
        .cli(&["endpoint", "drain", "198.18.40.2"])
        .expect("drain");
    daemon
        .cli(&["endpoint", "weight", "198.18.40.1", "9", "--pool", "web"])
        .expect("weight");
    let extra = files.text("extra.zone");
    daemon
        .cli(&["zone", "load", "extra.test", &extra])
        .expect("zone load");
    assert_eq!(ask(&rig, "hot.extra.test."), "198.18.50.1\n");
    daemon.stop(Signal::SIGKILL).expect("killed");

    let daemon = start(&rig, &files, &["--state-dir", &state]);
    let before = xdp_answers(&rig);
    assert_eq!(
        ask(&rig, "web.example.com."),
        "198.18.40.1\n198.18.40.3\n",
        "still drained"
    );
    assert_eq!(
        ask(&rig, "hot.extra.test."),
        "198.18.50.1\n",
        "still served"
    );
    assert_eq!(xdp_answers(&rig), before + 2, "both answered by the kernel");
    let listed = daemon
        .cli(&["endpoint", "list", "--overrides"])
        .expect("endpoint list --overrides");
    assert!(
        listed.contains("198.18.40.1") && listed.contains("9 (file: 1)"),
        "{listed}"
    );
    assert!(listed.contains("198.18.40.2"), "{listed}");
    assert!(!listed.contains("198.18.40.3"), "no override: {listed}");
    let status = daemon.cli(&["status"]).expect("status");
    assert!(
        status.contains(&format!(
            "overrides   1 drained, 1 weights (kept in {state})"
        )),
        "{status}"
    );
    let zones = daemon.cli(&["zone", "list"]).expect("zone list");
    assert!(zones.contains("extra.test"), "{zones}");

    // Undone, and that is kept too.
    daemon
        .cli(&["endpoint", "weight", "198.18.40.1", "--clear"])
        .expect("weight --clear");
    daemon
        .cli(&["endpoint", "undrain", "198.18.40.2"])
        .expect("undrain");
    daemon.stop(Signal::SIGKILL).expect("killed");
    let daemon = start(&rig, &files, &["--state-dir", &state]);
    assert_eq!(ask(&rig, "web.example.com.").lines().count(), 3);
    let listed = daemon
        .cli(&["endpoint", "list", "--overrides"])
        .expect("endpoint list --overrides");
    assert!(
        !listed.contains("198.18.40."),
        "no overrides left: {listed}"
    );
}

/// One raw HTTP `request` to the control API on TCP, from the server's
/// namespace; returns the whole reply.
fn http_exchange(rig: &Rig, addr: &str, request: String) -> String {
    let addr = addr.to_owned();
    rig.server
        .run(move || {
            let mut stream = TcpStream::connect(&addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut reply = String::new();
            let _ = stream.read_to_string(&mut reply);
            reply
        })
        .expect("in the server namespace")
}

/// A drain of 198.18.40.1 with `authorization`, if any; returns the
/// status line.
fn http(rig: &Rig, addr: &str, authorization: Option<&str>) -> String {
    let header = authorization.map_or_else(String::new, |a| format!("Authorization: {a}\r\n"));
    let body = r#"{"address":"198.18.40.1"}"#;
    let request = format!(
        "POST /v1/endpoints/drain HTTP/1.1\r\nHost: dnslb\r\n{header}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let reply = http_exchange(rig, addr, request);
    reply.lines().next().unwrap_or("").to_owned()
}

#[test]
fn tcp_needs_the_token_and_changes_nothing_without_it() {
    let rig = Rig::new().expect("rig");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let files = Files::new("token");
    files.write("token", "s3cret-token\n");
    let token = files.text("token");
    let daemon = start(
        &rig,
        &files,
        &[
            "--control-listen",
            "127.0.0.1:8053",
            "--control-token-file",
            &token,
        ],
    );
    assert!(http(&rig, "127.0.0.1:8053", None).contains("401"));
    assert!(http(&rig, "127.0.0.1:8053", Some("Bearer wrong")).contains("401"));
    assert_eq!(
        ask(&rig, "web.example.com.").lines().count(),
        3,
        "nothing drained"
    );
    let endpoints = json(&daemon.cli(&["endpoint", "list", "--json"]).expect("list"));
    assert!(
        endpoints
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["drained"] == false)
    );

    assert!(http(&rig, "127.0.0.1:8053", Some("Bearer s3cret-token")).contains("200"));
    until(&rig, Duration::from_millis(100), |a| {
        !a.contains("198.18.40.1")
    });

    // The CLI over TCP, from the server's namespace.
    let output = rig
        .server
        .command(dnslb_tests::daemon::dnslb_binary().unwrap())
        .args([
            "status",
            "--json",
            "--connect",
            "127.0.0.1:8053",
            "--token-file",
            &token,
        ])
        .output()
        .expect("dnslb status over TCP");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        json(&String::from_utf8_lossy(&output.stdout))["services"],
        1
    );
    assert!(Path::new(daemon.control_socket()).exists());

    // Each way a client can be wrong is told as it is, the OS's words once.
    let cli = |args: &[&str]| -> String {
        let output = rig
            .server
            .command("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(dnslb_tests::daemon::dnslb_binary().unwrap())
            .args(args)
            .output()
            .expect("dnslb runs");
        assert!(!output.status.success(), "{args:?} failed");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    files.write("wrong-token", "not-the-token\n");
    let wrong = files.text("wrong-token");
    let refused = cli(&[
        "status",
        "--connect",
        "127.0.0.1:8053",
        "--token-file",
        &wrong,
    ]);
    assert!(
        refused.contains("the bearer token was refused: it is not the daemon's"),
        "{refused}"
    );
    let body = http_body(&rig, "127.0.0.1:8053");
    assert!(body.contains("a bearer token is required"), "{body}");
    // The metrics port speaks HTTP, but not the control API.
    let elsewhere = cli(&[
        "status",
        "--connect",
        "127.0.0.1:9153",
        "--token-file",
        &token,
    ]);
    assert!(
        elsewhere.contains("127.0.0.1:9153 does not answer as dnslb's control API does"),
        "{elsewhere}"
    );
    let nobody = cli(&[
        "status",
        "--socket",
        &daemon.control_socket().display().to_string(),
    ]);
    assert!(
        nobody.contains("this user may not open the control socket"),
        "{nobody}"
    );
    assert_eq!(nobody.matches("Permission denied").count(), 1, "{nobody}");
    let missing = cli(&["status", "--socket", "/nonexistent/control.sock"]);
    assert!(
        missing.contains("nothing listens there: is `dnslb run` running"),
        "{missing}"
    );
}

/// The body of the answer to a `GET /v1/status` without a token.
fn http_body(rig: &Rig, addr: &str) -> String {
    let request = "GET /v1/status HTTP/1.1\r\nHost: dnslb\r\nConnection: close\r\n\r\n";
    let reply = http_exchange(rig, addr, request.to_owned());
    reply
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned())
}

/// `--log-format json`: one JSON object a line, and a change names what it
/// was and how it went in fields a log shipper can filter on.
#[test]
fn json_logs_carry_the_fields_of_changes() {
    let rig = Rig::new().expect("rig");
    let files = Files::new("json");
    let config = files.text("dnslb.toml");
    let daemon = Daemon::start_on_rig(
        &rig,
        &ZoneFile::example(),
        false,
        &["--config", &config, "--log-format", "json"],
    )
    .expect("dnslb starts");
    daemon
        .cli(&["endpoint", "drain", "198.18.40.1"])
        .expect("drain");
    daemon
        .cli(&["zone", "load", "broken.test", &files.text("broken.zone")])
        .expect_err("refused");
    let log = daemon.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let change = |result: &str| {
        lines
            .iter()
            .find(|l| l["event"] == "change" && l["result"] == result)
            .unwrap_or_else(|| panic!("no {result} change in:\n{log}"))
    };
    assert_eq!(change("applied")["change"], "draining 198.18.40.1");
    let refused = change("refused");
    assert_eq!(refused["level"], "ERROR");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.starts_with(&format!("{}:4:", files.text("broken.zone")))),
        "{refused}"
    );
}

/// `status` and `stats` side by side, as the web console asks them every
/// second: they once took the steering state and the dataplane in opposite
/// orders and could deadlock (and with them every health change). Many
/// services widen the window in which `stats` holds both.
#[test]
fn status_and_stats_at_once_never_deadlock() {
    let rig = Rig::new().expect("namespaces and veth");
    let files = Files::new("deadlock");
    let mut policy = String::from(POLICY);
    for n in 0..300 {
        policy.push_str(&format!(
            "\n[service.s{n}]\nname = \"s{n}.example.com.\"\npolicy = {{ kind = \"multivalue\", pool = \"web\" }}\n"
        ));
    }
    files.write("dnslb.toml", &policy);
    let daemon = start(&rig, &files, &[]);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        for route in ["status", "stats"] {
            let (socket, done) = (daemon.control_socket(), done.clone());
            scope.spawn(move || {
                for _ in 0..100 {
                    let answered = std::process::Command::new("curl")
                        .args(["--silent", "--fail", "--max-time", "10", "--unix-socket"])
                        .arg(socket)
                        .arg(format!("http://dnslb/v1/{route}"))
                        .output()
                        .is_ok_and(|output| output.status.success());
                    if !answered {
                        return;
                    }
                }
                let _ = done.send(route);
            });
        }
        // A deadlock hangs the calls; each gives up after 10 s.
        for _ in 0..2 {
            let route = finished
                .recv_timeout(Duration::from_secs(30))
                .expect("100 calls of each answered within 30 s: a deadlock otherwise");
            assert!(["status", "stats"].contains(&route));
        }
    });
}
