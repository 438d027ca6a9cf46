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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !daemon.log_text().contains("serving DNS on") {
        assert!(
            daemon.exited().expect("status").is_none() && std::time::Instant::now() < deadline,
            "dnslb started with {caps}:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
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
    let status = daemon
        .stop(
            nix::sys::signal::Signal::SIGTERM,
            std::time::Duration::from_secs(10),
        )
        .expect("stops");
    assert!(status.success(), "{}", daemon.log_text());
}
