//! Zone transfers between dnslb and Knot DNS, both on loopback: dnslb as
//! the primary of a zone that a real Knot secondary copies by AXFR and
//! refreshes (IXFR, answered with the whole zone), and transfers refused
//! to addresses the zone does not allow.

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use dnslb_tests::{
    daemon::{Daemon, free_port, workspace_root},
    process::Process,
};

/// The secondary's address: the only one the zone allows.
const SECONDARY: &str = "127.0.0.2";

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dnslb-transfer-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// The example zone with `serial` and, when given, one more record.
fn zone_text(serial: u32, extra: &str) -> String {
    let text = std::fs::read_to_string(workspace_root().join("examples/example.com.zone"))
        .expect("the example zone");
    let old = text
        .lines()
        .find_map(|line| {
            line.split_whitespace()
                .find(|word| word.len() == 10 && word.starts_with("20"))
        })
        .expect("a serial like 2026112401")
        .to_owned();
    format!("{}\n{extra}\n", text.replacen(&old, &serial.to_string(), 1))
}

/// What kdig printed, errors (on stderr) after the rest.
fn kdig(args: &[&str]) -> String {
    let output = Command::new("kdig").args(args).output().expect("kdig runs");
    let (out, err) = (&output.stdout, &output.stderr);
    format!(
        "{}{}",
        String::from_utf8_lossy(out),
        String::from_utf8_lossy(err)
    )
}

/// Asks until `done` holds for what kdig printed, up to `limit`.
fn until(limit: Duration, args: &[&str], done: impl Fn(&str) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let out = kdig(args);
        if done(&out) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "not within {limit:?}: kdig {args:?}:\n{out}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A Knot DNS configuration in `dir`: listening on `listen`, with dnslb
/// (at `dnslb`, reached from the secondary's address) as its one remote,
/// one ACL rule for loopback, and the zone's own settings.
fn knot_config(dir: &Path, listen: &str, dnslb: &str, action: &str, zone: &str) -> PathBuf {
    let config = format!(
        "server:\n    rundir: \"{dir}\"\n    user: root:root\n    listen: {listen}\n\
         database:\n    storage: \"{dir}\"\n\
         remote:\n  - id: dnslb\n    address: {dnslb}\n    via: {SECONDARY}\n\
         acl:\n  - id: loopback\n    address: 127.0.0.0/8\n    action: {action}\n\
         zone:\n  - domain: example.com\n    acl: loopback\n    zonefile-sync: -1\n    \
         journal-content: none\n{zone}\
         log:\n  - target: stderr\n    any: info\n",
        dir = dir.display(),
    );
    let path = dir.join("knot.conf");
    std::fs::write(&path, config).expect("knot.conf");
    path
}

fn knot_secondary(dir: &Path, listen: &str, primary: &str) -> PathBuf {
    let zone = format!(
        "    master: dnslb\n    file: \"{}/example.com.zone\"\n",
        dir.display()
    );
    knot_config(dir, listen, primary, "notify", &zone)
}

/// Starts `dnslb run` on 127.0.0.1:`port` with the policy file `policy`.
fn start(port: u16, policy: &Path) -> anyhow::Result<Daemon> {
    let (listen, policy) = (format!("127.0.0.1:{port}"), policy.display().to_string());
    Daemon::start_here(&["run", "--no-xdp", "--listen", &listen, "--config", &policy])
}

#[test]
fn knot_copies_a_zone_from_dnslb_and_follows_its_changes() {
    let dir = scratch("knot-secondary");
    let zone = dir.join("example.com.zone");
    std::fs::write(&zone, zone_text(2026112801, "")).unwrap();
    let knot_port = free_port();
    let policy = dir.join("dnslb.toml");
    std::fs::write(
        &policy,
        format!(
            "[[zone]]\norigin = \"example.com.\"\nfile = \"{}\"\n\
             allow_transfer = [\"{SECONDARY}/32\"]\nnotify = [\"{SECONDARY}:{knot_port}\"]\n",
            zone.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let daemon = start(port, &policy).expect("dnslb starts");

    let knot_dir = dir.join("knot");
    std::fs::create_dir_all(&knot_dir).unwrap();
    let knot_listen = format!("{SECONDARY}@{knot_port}");
    let config = knot_secondary(&knot_dir, &knot_listen, &format!("127.0.0.1@{port}"));
    let mut knotd = Command::new("knotd");
    knotd.arg("-c").arg(&config);
    let knot = Process::spawn(knotd, dir.join("knotd.log")).expect("knotd starts (install knot)");
    let at_knot = format!("@{SECONDARY}");
    let knot_port_text = knot_port.to_string();

    // The first copy: Knot answers the zone's names once it has it. (Over
    // TCP, so that a query before Knot listens fails at once rather than
    // waiting out kdig's UDP time-out.)
    let copied = until(
        Duration::from_secs(10),
        &[
            &at_knot,
            "-p",
            &knot_port_text,
            "www.example.com.",
            "A",
            "+short",
            "+tcp",
        ],
        |out| {
            out.lines()
                .any(|line| line.trim().parse::<std::net::Ipv4Addr>().is_ok())
        },
    );
    let serial = kdig(&[
        &at_knot,
        "-p",
        &knot_port_text,
        "example.com.",
        "SOA",
        "+short",
        "+tcp",
    ]);
    assert!(
        serial.contains(" 2026112801 "),
        "Knot has serial 2026112801: {serial}"
    );
    println!("Knot had the zone {copied:?} after start");

    // A change on dnslb: its NOTIFY has Knot fetch the new version at
    // once, not at the SOA refresh two hours later.
    std::fs::write(&zone, zone_text(2026112802, "added 300 IN A 198.18.77.7")).unwrap();
    daemon
        .cli(&["zone", "reload", "example.com"])
        .expect("dnslb zone reload");
    let followed = until(
        Duration::from_secs(1),
        &[
            &at_knot,
            "-p",
            &knot_port_text,
            "added.example.com.",
            "A",
            "+short",
        ],
        |out| out.trim() == "198.18.77.7",
    );
    println!("Knot served the new version {followed:?} after dnslb's reload");
    let log = knot.log_text();
    assert!(log.contains("serial 2026112801 -> 2026112802"), "{log}");
    // Only the difference travelled: dnslb kept the version Knot had.
    assert!(
        daemon.log_text().contains(&format!(
            "sent IXFR of example.com. serial 2026112802 to {SECONDARY}: difference, 5 records"
        )),
        "{}",
        daemon.log_text()
    );
    assert!(
        daemon.log_text().contains(&format!(
            "NOTIFY of example.com. serial 2026112802 to {SECONDARY}:{knot_port}: acknowledged"
        )),
        "{}",
        daemon.log_text()
    );

    // Anyone else is refused, and dnslb says so.
    let port = port.to_string();
    let from = |source: &str, kind: &str| {
        kdig(&[
            "@127.0.0.1",
            "-p",
            &port,
            "-b",
            source,
            "example.com.",
            kind,
            "+nocomments",
        ])
    };
    for kind in ["AXFR", "IXFR=2026112801"] {
        let refused = from("127.0.0.3", kind);
        assert!(refused.contains("REFUSED"), "{kind}: {refused}");
    }
    assert!(
        daemon
            .log_text()
            .contains("refused AXFR of example.com. to 127.0.0.3")
    );
    // From the secondary's address, the whole zone, SOA first and last.
    let axfr = from(SECONDARY, "AXFR");
    let records: Vec<&str> = axfr
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .collect();
    assert!(
        records.first().is_some_and(|r| r.contains("SOA")),
        "{axfr}\n{}",
        daemon.log_text()
    );
    assert!(records.last().is_some_and(|r| r.contains("SOA")), "{axfr}");
    assert!(records.iter().any(|r| r.contains("198.18.77.7")), "{axfr}");
    drop(knot);
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

fn knot_primary(dir: &Path, listen: &str, secondary: &str, zone: &Path) -> PathBuf {
    let zone = format!("    notify: dnslb\n    file: \"{}\"\n", zone.display());
    knot_config(dir, listen, secondary, "transfer", &zone)
}

/// Knot DNS as the primary of example.com (the zone in `source`) and
/// dnslb as its secondary, copying into `copy`: their ports, files and
/// configurations.
struct FromKnot {
    dir: PathBuf,
    source: PathBuf,
    copy: PathBuf,
    config: PathBuf,
    policy: PathBuf,
    port: u16,
}

impl FromKnot {
    fn new(test: &str, zone: &str) -> FromKnot {
        let dir = scratch(test);
        let knot_dir = dir.join("knot");
        std::fs::create_dir_all(&knot_dir).unwrap();
        let source = knot_dir.join("example.com.zone");
        std::fs::write(&source, zone).unwrap();
        let (port, knot_port) = (free_port(), free_port());
        let config = knot_primary(
            &knot_dir,
            &format!("{SECONDARY}@{knot_port}"),
            &format!("127.0.0.1@{port}"),
            &source,
        );
        let copy = dir.join("copy").join("example.com.zone");
        let policy = dir.join("dnslb.toml");
        std::fs::write(
            &policy,
            format!(
                "[[zone]]\norigin = \"example.com.\"\nfile = \"{}\"\nprimary = \"{SECONDARY}:{knot_port}\"\n",
                copy.display()
            ),
        )
        .unwrap();
        FromKnot {
            dir,
            source,
            copy,
            config,
            policy,
            port,
        }
    }

    fn knot(&self) -> Process {
        let mut knotd = Command::new("knotd");
        knotd.arg("-c").arg(&self.config);
        Process::spawn(knotd, self.dir.join("knotd.log")).expect("knotd starts (install knot)")
    }

    fn dnslb(&self) -> Daemon {
        start(self.port, &self.policy).expect("dnslb starts")
    }
}

impl Drop for FromKnot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn dnslb_copies_a_zone_from_knot_follows_its_notify_and_restarts_from_its_copy() {
    let rig = FromKnot::new("knot-primary", &zone_text(2026112801, ""));
    let (source, copy, config, port) = (&rig.source, &rig.copy, &rig.config, rig.port);
    let knot = rig.knot();
    let daemon = rig.dnslb();
    let port_text = port.to_string();
    let ask = |name: &str| {
        ["@127.0.0.1", "-p", &port_text, name, "A", "+short", "+tcp"].map(String::from)
    };
    let is = |want: &'static str| move |out: &str| out.trim() == want;
    let www = ask("www.example.com.");
    let www: Vec<&str> = www.iter().map(String::as_str).collect();
    let first = until(Duration::from_secs(10), &www, |out| {
        out.lines()
            .any(|l| l.trim().parse::<std::net::Ipv4Addr>().is_ok())
    });
    println!("dnslb served the zone {first:?} after start");
    assert!(copy.exists(), "the copy is kept on disk");

    // An edit on Knot, reloaded: Knot's NOTIFY has dnslb fetch it (also
    // after dnslb reloaded its policy file).
    daemon.cli(&["reload"]).expect("dnslb reload");
    std::fs::write(source, zone_text(2026112802, "added 300 IN A 198.18.77.8")).unwrap();
    let reloaded = Command::new("knotc")
        .arg("-c")
        .arg(config)
        .args(["zone-reload", "example.com"])
        .output()
        .expect("knotc runs");
    assert!(reloaded.status.success(), "{reloaded:?}");
    let added = ask("added.example.com.");
    let added: Vec<&str> = added.iter().map(String::as_str).collect();
    let followed = until(Duration::from_secs(1), &added, is("198.18.77.8"));
    println!("dnslb served Knot's edit {followed:?} after knotc zone-reload returned");
    assert!(
        daemon
            .log_text()
            .contains("copied zone example.com. serial 2026112802"),
        "{}",
        daemon.log_text()
    );

    // Without the primary, a restarted dnslb serves its copy at once.
    drop(knot);
    drop(daemon);
    let daemon = rig.dnslb();
    assert_eq!(kdig(&added).trim(), "198.18.77.8", "{}", daemon.log_text());
    drop(daemon);
}

/// The status kdig reports for `args` (NOERROR, REFUSED, ...).
fn status(args: &[&str]) -> String {
    let out = kdig(args);
    out.split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or("no answer")
        .to_owned()
}

#[test]
fn a_secondary_zone_expires_without_its_primary_and_comes_back_with_it() {
    // Refresh and retry every second, expire after 3.
    let text = zone_text(2026112801, "")
        .replacen("7200       ; refresh", "1 ; refresh", 1)
        .replacen("3600       ; retry", "1 ; retry", 1)
        .replacen("1209600    ; expire", "3 ; expire", 1);
    assert!(
        text.contains("1 ; refresh") && text.contains("1 ; retry") && text.contains("3 ; expire"),
        "the example zone's SOA is laid out as this test expects"
    );
    let rig = FromKnot::new("expire", &text);
    let primary = rig.knot();
    let daemon = rig.dnslb();
    let port = rig.port.to_string();
    let www = ["@127.0.0.1", "-p", &port, "www.example.com.", "A", "+tcp"];
    let served = |wanted: &str, within: Duration| {
        let started = Instant::now();
        while status(&www) != wanted {
            assert!(started.elapsed() < within, "not {wanted} within {within:?}");
            thread::sleep(Duration::from_millis(50));
        }
        started.elapsed()
    };
    served("NOERROR", Duration::from_secs(5));

    // The primary goes: answered until the expire (3 s from the last
    // refresh, which is at most 1 s old), then REFUSED.
    drop(primary);
    let gone = served("REFUSED", Duration::from_secs(7));
    assert!(
        gone >= Duration::from_millis(1500),
        "expired after {gone:?}"
    );
    println!("expired {gone:?} after the primary stopped");
    assert!(daemon.log_text().contains("expiring zone example.com."));

    // A restart does not serve the expired copy either.
    drop(daemon);
    let daemon = rig.dnslb();
    assert_eq!(status(&www), "REFUSED", "{}", daemon.log_text());

    // The primary is back: served again from the next transfer.
    let _primary = rig.knot();
    let back = served("NOERROR", Duration::from_secs(8));
    println!("served again {back:?} after the primary came back");
    drop(daemon);
}
