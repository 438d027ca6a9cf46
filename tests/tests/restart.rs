//! Hitless restarts and upgrades with `--pin`: a bounded load of hot-name
//! queries runs while the daemon is stopped and started again, and while a
//! build with another map layout takes over; every query is answered.
//! Needs root (bpffs, namespaces, veth).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use dnslb_tests::{
    daemon::{Answered, Daemon, ZoneFile, dnslb_binary, kdig},
    netns::{Rig, SERVER_ADDR},
};
use nix::sys::signal::Signal;

/// The pin directory, on a BPF filesystem of the test's own (`ip netns
/// exec` gives the daemon a fresh /sys, without the host's /sys/fs/bpf,
/// but keeps other mounts), removed with the program detached and the
/// filesystem unmounted when the test ends, passed or not.
struct PinDir {
    mount: PathBuf,
    dir: PathBuf,
}

impl PinDir {
    fn new() -> PinDir {
        let mount = std::env::temp_dir().join(format!("dnslb-bpffs-{}", std::process::id()));
        std::fs::create_dir_all(&mount).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&mount)
            .status()
            .expect("mount");
        assert!(mounted.success(), "mounting a BPF filesystem");
        PinDir {
            dir: mount.join("dnslb"),
            mount,
        }
    }

    fn arg(&self) -> String {
        self.dir.display().to_string()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Ok(binary) = dnslb_binary() {
            let _ = Command::new(binary)
                .args(["detach", "--pin", &self.arg()])
                .output();
        }
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = std::fs::remove_dir(&self.mount);
    }
}

/// `dnsperf` in the client namespace: `qps` queries a second for `seconds`
/// seconds over the hot names, then stops by itself.
fn load(rig: &Rig, qps: u32, seconds: u32) -> Child {
    let file = std::env::temp_dir().join(format!("dnslb-restart-{}.queries", std::process::id()));
    std::fs::write(
        &file,
        "www.example.com A\napi.example.com A\nns1.example.com A\n",
    )
    .unwrap();
    rig.client
        .command("dnsperf")
        .args([
            "-s",
            SERVER_ADDR,
            "-l",
            &seconds.to_string(),
            "-Q",
            &qps.to_string(),
            "-t",
            "2",
        ])
        .arg("-d")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dnsperf runs")
}

/// (sent, lost) from dnsperf's report.
fn sent_and_lost(child: Child) -> (u64, u64, String) {
    let output = child.wait_with_output().expect("dnsperf finishes");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let field = |name: &str| {
        report
            .lines()
            .find_map(|line| line.trim().strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{report}"))
    };
    (field("Queries sent:"), field("Queries lost:"), report)
}

fn start(rig: &Rig, pin: &PinDir, zone: &ZoneFile, extra: &[&str]) -> Daemon {
    let pin_arg = pin.arg();
    let mut args = vec!["--pin", pin_arg.as_str()];
    args.extend_from_slice(extra);
    Daemon::start_on_rig(rig, zone, true, &args).expect("dnslb starts")
}

/// The example zone with www moved to one new address and mx gone.
fn changed_zone() -> ZoneFile {
    let example = ZoneFile::example();
    let text = std::fs::read_to_string(&example.file).expect("the example zone");
    let changed: String = text
        .lines()
        .filter(|line| !line.starts_with("mx "))
        .map(|line| line.replace("IN A    198.18.10.1", "IN A    198.18.10.9") + "\n")
        .filter(|line| !line.contains("198.18.10.2") && !line.contains("198.18.10.3"))
        .collect();
    let file = std::env::temp_dir().join(format!("dnslb-restart-{}.zone", std::process::id()));
    std::fs::write(&file, changed).unwrap();
    ZoneFile {
        origin: example.origin,
        file,
    }
}

fn short(rig: &Rig, name: &str) -> String {
    kdig(
        &rig.client,
        &[&format!("@{SERVER_ADDR}"), "+short", name, "A"],
    )
    .expect("kdig")
}

#[test]
fn restarts_and_layout_upgrades_answer_every_hot_query() {
    let rig = Rig::new().expect("rig");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let pin = PinDir::new();
    let first = start(&rig, &pin, &ZoneFile::example(), &[]);
    assert_eq!(short(&rig, "mx.example.com."), "198.18.30.1\n");
    let load = load(&rig, 2_000, 6);

    // Stopped: the kernel goes on answering what the daemon last wrote.
    thread::sleep(Duration::from_millis(700));
    let status = first.stop(Signal::SIGTERM).expect("stops");
    assert!(status.success());
    assert!(
        rig.server_has_xdp().unwrap(),
        "still attached after the daemon stopped"
    );
    thread::sleep(Duration::from_millis(700));

    // The same build again, with a changed zone: adopts the pinned maps
    // and link, rewrites what changed and removes what is gone.
    let second = start(&rig, &pin, &changed_zone(), &[]);
    assert!(
        second.log_text().contains("took over the pinned maps"),
        "{}",
        second.log_text()
    );
    let before = Answered::scrape(&rig).expect("metrics").xdp.expect("XDP");
    assert_eq!(short(&rig, "www.example.com."), "198.18.10.9\n");
    assert_eq!(short(&rig, "mx.example.com."), "");
    let after = Answered::scrape(&rig).expect("metrics").xdp.expect("XDP");
    assert!(after > before, "www answered by the kernel");
    thread::sleep(Duration::from_millis(700));
    second.stop(Signal::SIGTERM).expect("stops");

    // A build with another map layout: its own maps, the program swapped.
    let third = start(&rig, &pin, &changed_zone(), &["--map-layout", "99"]);
    assert!(!third.log_text().contains("took over the pinned maps"));
    assert!(pin.dir.join("layout-99").exists());
    assert!(
        !pin.dir
            .join(format!("layout-{}", dns_common::MAP_LAYOUT))
            .exists(),
        "the old layout's maps are gone"
    );

    let (sent, lost, report) = sent_and_lost(load);
    eprintln!("{report}");
    assert!(sent >= 10_000, "{report}");
    assert_eq!(lost, 0, "{report}");

    // Detach removes it all.
    third.stop(Signal::SIGTERM).expect("stops");
    let output = Command::new(dnslb_binary().unwrap())
        .args(["detach", "--pin", &pin.arg()])
        .output()
        .expect("dnslb detach");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!rig.server_has_xdp().unwrap(), "detached");
    assert!(!pin.dir.exists());
}
