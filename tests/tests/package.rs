//! The Debian package as an operator installs it: `dpkg -i` of what
//! `cargo xtask package` built (`cargo xtask test` builds it first), the
//! installed binary, the `dnslb` user, the systemd unit checked by
//! `systemd-analyze verify`, and the unit's capabilities enough to load and
//! attach the XDP program as that user. Purged afterwards. Needs root.

use std::{path::PathBuf, process::Command};

use dnslb_tests::{
    daemon::workspace_root,
    netns::{Rig, SERVER_ADDR},
    process::Process,
};

/// Purges the package when the test ends, passed or not.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "dnslb"]).output();
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{text}"
    );
    text
}

/// Waits (up to 20 s) until `daemon` says it serves; fails with `what`
/// and its log if it exits first.
fn until_serving(daemon: &mut Process, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !daemon.log_text().contains("serving DNS on") {
        assert!(
            daemon.exited().expect("status").is_none() && std::time::Instant::now() < deadline,
            "{what}:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Stops `daemon` as systemd does (SIGTERM); it must exit with success.
fn stops_cleanly(mut daemon: Process) {
    let status = daemon
        .stop(
            nix::sys::signal::Signal::SIGTERM,
            std::time::Duration::from_secs(10),
        )
        .expect("stops");
    assert!(status.success(), "{}", daemon.log_text());
}

/// The capabilities the unit starts the daemon with, in setpriv's
/// spelling.
fn unit_capabilities() -> String {
    let unit = std::fs::read_to_string("/lib/systemd/system/dnslb.service").expect("the unit");
    let line = unit
        .lines()
        .find_map(|line| line.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet in the unit");
    line.split_whitespace()
        .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn the_package_installs_and_runs_as_the_unit_runs_it() {
    let deb: PathBuf = workspace_root().join("target/debian/dnslb.deb");
    assert!(
        deb.exists(),
        "{} is missing: run `cargo xtask package` (cargo xtask test does)",
        deb.display()
    );
    let _installed = Installed;
    run("dpkg", &["-i", deb.to_str().expect("a UTF-8 path")]);

    let version = run("/usr/bin/dnslb", &["--version"]);
    assert_eq!(
        version.trim(),
        format!("dnslb {}", env!("CARGO_PKG_VERSION"))
    );
    let checked = run(
        "/usr/bin/dnslb",
        &[
            "check",
            "--config",
            "/usr/share/doc/dnslb/examples/dnslb.toml",
        ],
    );
    assert!(checked.contains("no problems"), "{checked}");
    assert!(run("getent", &["passwd", "dnslb"]).starts_with("dnslb:"));
    let verified = run(
        "systemd-analyze",
        &["verify", "/lib/systemd/system/dnslb.service"],
    );
    assert!(
        verified.trim().is_empty(),
        "systemd-analyze verify:\n{verified}"
    );

    // As the unit runs it: root with only the unit's capabilities, then
    // user dnslb with none.
    let rig = Rig::new().expect("rig");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let caps = unit_capabilities();
    // The installed copy of the example zone: the workspace may be where
    // user dnslb cannot read.
    let zone_arg = "example.com=/usr/share/doc/dnslb/examples/example.com.zone";
    let socket = std::env::temp_dir().join(format!("dnslb-package-{}.sock", std::process::id()));
    let mut command = rig.server.command("setpriv");
    let state = std::env::temp_dir().join(format!("dnslb-package-{}.state", std::process::id()));
    command
        .arg(format!("--bounding-set=-all,{caps}"))
        .args(["/usr/bin/dnslb", "run", "--user", "dnslb", "--state-dir"])
        .arg(&state)
        .args(["--iface", &rig.server_if, "--listen", "[::]:53"])
        .args(["--zone", zone_arg, "--control-socket"])
        .arg(&socket);
    let log = std::env::temp_dir().join(format!("dnslb-package-{}.log", std::process::id()));
    let mut daemon = Process::spawn(command, log).expect("setpriv runs");
    until_serving(&mut daemon, &format!("dnslb started with {caps}"));
    assert!(rig.server_has_xdp().unwrap(), "XDP attached");
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    let dnslb_uid = run("id", &["-u", "dnslb"]);
    assert!(
        status.contains(&format!("Uid:\t{0}\t{0}\t{0}", dnslb_uid.trim())),
        "{status}"
    );
    let answer = dnslb_tests::daemon::kdig(
        &rig.client,
        &[
            &format!("@{SERVER_ADDR}"),
            "+short",
            "api.example.com.",
            "A",
        ],
    )
    .expect("kdig");
    assert_eq!(answer, "198.18.20.1\n");
    stops_cleanly(daemon);

    a_policy_edit_is_written_under_the_units_sandbox(&rig, &caps);
}

/// The file-system sandbox of the unit as a mount namespace gives it
/// (these machines have no systemd as PID 1 to run the unit itself):
/// `ProtectSystem=strict` makes every mount read-only but /dev, /proc and
/// /sys; the unit's `ReadWritePaths`, and /tmp (`PrivateTmp`, where the
/// test keeps the state directory and the control socket), stay
/// writable. Checked first: a write to /usr fails in the sandbox.
const SANDBOX: &str = r#"set -e
awk '{ print $5 }' /proc/self/mountinfo | sort -u | while read -r mount; do
    case "$mount" in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*) continue ;; esac
    mount -o remount,bind,ro "$mount" 2>/dev/null || true
done
for writable in $DNSLB_WRITABLE; do
    if [ -d "$writable" ]; then
        mount --bind "$writable" "$writable"
        mount -o remount,bind,rw "$writable"
    fi
done
if touch /usr/.dnslb-sandbox-probe 2>/dev/null; then
    echo "the sandbox left /usr writable" >&2
    exit 1
fi
exec "$@"
"#;

/// The paths the unit lets the daemon write: its `ReadWritePaths`.
fn unit_writable_paths() -> Vec<String> {
    let unit = std::fs::read_to_string("/lib/systemd/system/dnslb.service").expect("the unit");
    unit.lines()
        .filter_map(|line| line.strip_prefix("ReadWritePaths="))
        .flat_map(|paths| paths.split_whitespace())
        .map(|path| path.trim_start_matches('-').to_owned())
        .collect()
}

/// `PUT /v1/policy` through the control socket, as the console sends it,
/// with the daemon as user dnslb in the unit's sandbox: the new policy is
/// written over /etc/dnslb/dnslb.toml and answered from.
fn a_policy_edit_is_written_under_the_units_sandbox(rig: &Rig, caps: &str) {
    let etc = std::path::Path::new("/etc/dnslb");
    let examples = std::path::Path::new("/usr/share/doc/dnslb/examples");
    for file in ["dnslb.toml", "example.com.zone", "geo.csv"] {
        std::fs::copy(examples.join(file), etc.join(file)).expect("copy an example");
    }
    let policy = etc.join("dnslb.toml");
    let original = std::fs::read_to_string(&policy).unwrap();
    let id = std::process::id();
    let socket = std::env::temp_dir().join(format!("dnslb-package-sandbox-{id}.sock"));
    let state = std::env::temp_dir().join(format!("dnslb-package-sandbox-{id}.state"));
    let mut writable = unit_writable_paths();
    assert!(
        writable.iter().any(|path| path == "/etc/dnslb"),
        "the unit lets the daemon write /etc/dnslb: {writable:?}"
    );
    writable.push("/tmp".to_owned());
    let mut command = rig.server.command("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SANDBOX,
            "sh",
        ])
        .arg("setpriv")
        .arg(format!("--bounding-set=-all,{caps}"))
        .args(["/usr/bin/dnslb", "run", "--user", "dnslb", "--state-dir"])
        .arg(&state)
        .args(["--iface", &rig.server_if, "--listen", "[::]:53", "--config"])
        .arg(&policy)
        .arg("--control-socket")
        .arg(&socket)
        .env("DNSLB_WRITABLE", writable.join(" "));
    let log = std::env::temp_dir().join(format!("dnslb-package-sandbox-{id}.log"));
    let mut daemon = Process::spawn(command, log).expect("unshare runs");
    until_serving(&mut daemon, "dnslb in the sandbox");
    // The TTL of api's answers: the service's, 60 by default.
    let ttl = || {
        let answer = dnslb_tests::daemon::kdig(
            &rig.client,
            &[
                &format!("@{SERVER_ADDR}"),
                "+noall",
                "+answer",
                "api.example.com.",
                "A",
            ],
        )
        .expect("kdig");
        answer
            .lines()
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .map(str::to_owned)
    };
    assert_eq!(ttl().as_deref(), Some("60"));
    let edited = original.replacen(
        "name = \"api.example.com.\"\n",
        "name = \"api.example.com.\"\nttl = 17\n",
        1,
    );
    assert_ne!(edited, original, "the example has the api service");
    let body = serde_json::json!({ "text": edited }).to_string();
    let applied = run(
        "curl",
        &[
            "--silent",
            "--show-error",
            "--fail-with-body",
            "--unix-socket",
            socket.to_str().expect("a UTF-8 path"),
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "--data",
            &body,
            "http://dnslb/v1/policy",
        ],
    );
    assert!(applied.contains("\"services\""), "{applied}");
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), edited);
    assert_eq!(ttl().as_deref(), Some("17"), "answered from the new policy");
    stops_cleanly(daemon);
    for file in ["dnslb.toml", "example.com.zone", "geo.csv"] {
        let _ = std::fs::remove_file(etc.join(file));
    }
}
