//! Zone transfers between dnslb and Knot DNS, both on loopback and signed
//! with a TSIG key: dnslb as the primary of a zone that a real Knot
//! secondary copies by AXFR and follows by IXFR, Knot as the primary of a
//! zone dnslb copies and follows the same way, transfers refused to
//! addresses and keys the zone does not allow, and a copy expiring
//! without its primary.

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use hickory_proto::rr::RecordType;

use dnslb_tests::{
    daemon::{
        Answered, Daemon, RIG_METRICS, free_port, rig_a_records, scrape, until_a_records,
        workspace_root,
    },
    netns::{Netns, Rig},
    process::Process,
    signed,
};

/// The secondary's address: the only one the zone allows.
const SECONDARY: &str = "127.0.0.2";

/// The TSIG key both ends share (hmac-sha256), and one neither knows.
const KEY: &str = "transfer";
const SECRET: &str = "Zm9yIHRoZSB0cmFuc2ZlciB0ZXN0cyBvbmx5LCAzMiBieXRlcyE=";
const WRONG_SECRET: &str = "bm90IHRoZSBzZWNyZXQgdGhlIHByaW1hcnkga25vd3MgYXQgYWxs";

/// The policy file's lines for the shared key, with `secret`.
fn policy_key(secret: &str) -> String {
    format!("[tsig_key.{KEY}]\nalgorithm = \"hmac-sha256\"\nsecret = \"{secret}\"\n")
}

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
/// one ACL rule for loopback, and the zone `domain` with its own settings.
fn knot_config(
    dir: &Path,
    listen: &str,
    dnslb: &str,
    action: &str,
    domain: &str,
    zone: &str,
) -> PathBuf {
    let config = format!(
        "server:\n    rundir: \"{dir}\"\n    user: root:root\n    listen: {listen}\n\
         database:\n    storage: \"{dir}\"\n\
         key:\n  - id: {KEY}\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\
         remote:\n  - id: dnslb\n    address: {dnslb}\n    via: {SECONDARY}\n    key: {KEY}\n\
         acl:\n  - id: loopback\n    address: 127.0.0.0/8\n    key: {KEY}\n    action: {action}\n\
         zone:\n  - domain: {domain}\n    acl: loopback\n    zonefile-sync: -1\n{zone}\
         log:\n  - target: stderr\n    any: info\n",
        dir = dir.display(),
    );
    let path = dir.join("knot.conf");
    std::fs::write(&path, config).expect("knot.conf");
    path
}

/// Knot DNS as a secondary of `domain`, copied from dnslb at `primary`.
fn knot_secondary(dir: &Path, listen: &str, primary: &str, domain: &str) -> PathBuf {
    let zone = format!(
        "    master: dnslb\n    journal-content: none\n    file: \"{}/{domain}.zone\"\n",
        dir.display()
    );
    knot_config(dir, listen, primary, "notify", domain, &zone)
}

/// A policy file's `[[zone]]` for `origin` from `zone`, with `zone_lines`
/// added, that Knot on `SECONDARY`:`knot_port` is a secondary of, and the
/// TSIG key they share.
fn primary_policy(origin: &str, zone: &Path, knot_port: u16, zone_lines: &str) -> String {
    format!(
        "[[zone]]\norigin = \"{origin}\"\nfile = \"{}\"\ntsig_key = \"{KEY}\"\n\
         allow_transfer = [\"{SECONDARY}/32\"]\nnotify = [\"{SECONDARY}:{knot_port}\"]\n{zone_lines}{}",
        zone.display(),
        policy_key(SECRET)
    )
}

/// Starts `dnslb run` on 127.0.0.1:`port` with the policy file `policy`.
fn start(port: u16, policy: &Path) -> anyhow::Result<Daemon> {
    Daemon::start_on_loopback(port, policy, &[])
}

/// dnslb serving example.com (serial 2026112801) from its file, as the
/// primary of a Knot secondary on 127.0.0.2 that has copied it.
struct ToKnot {
    dir: PathBuf,
    zone: PathBuf,
    policy: PathBuf,
    /// dnslb's port on 127.0.0.1.
    port: u16,
    daemon: Daemon,
    knot: Process,
    knot_port: u16,
}

impl ToKnot {
    /// The policy file's `[[zone]]` with `zone_lines` added.
    fn policy_text(zone: &Path, knot_port: u16, zone_lines: &str) -> String {
        primary_policy("example.com.", zone, knot_port, zone_lines)
    }

    fn new(test: &str) -> ToKnot {
        let dir = scratch(test);
        let zone = dir.join("example.com.zone");
        std::fs::write(&zone, zone_text(2026112801, "")).unwrap();
        let knot_port = free_port();
        let policy = dir.join("dnslb.toml");
        std::fs::write(&policy, ToKnot::policy_text(&zone, knot_port, "")).unwrap();
        let port = free_port();
        let daemon = start(port, &policy).expect("dnslb starts");

        let knot_dir = dir.join("knot");
        std::fs::create_dir_all(&knot_dir).unwrap();
        let knot_listen = format!("{SECONDARY}@{knot_port}");
        let config = knot_secondary(
            &knot_dir,
            &knot_listen,
            &format!("127.0.0.1@{port}"),
            "example.com",
        );
        let mut knotd = Command::new("knotd");
        knotd.arg("-c").arg(&config);
        let knot =
            Process::spawn(knotd, dir.join("knotd.log")).expect("knotd starts (install knot)");
        let to_knot = ToKnot {
            dir,
            zone,
            policy,
            port,
            daemon,
            knot,
            knot_port,
        };
        // The first copy: Knot answers the zone's names once it has it.
        // (Over TCP, so that a query before Knot listens fails at once
        // rather than waiting out kdig's UDP time-out.)
        let copied =
            to_knot.knot_until(Duration::from_secs(10), "www.example.com.", "+tcp", |out| {
                out.lines()
                    .any(|line| line.trim().parse::<std::net::Ipv4Addr>().is_ok())
            });
        println!("Knot had the zone {copied:?} after start");
        assert!(
            to_knot.knot_serial().contains(" 2026112801 "),
            "Knot has serial 2026112801"
        );
        to_knot
    }

    /// Asks Knot for `name` (A, short, with `option`) until `done`.
    fn knot_until(
        &self,
        limit: Duration,
        name: &str,
        option: &str,
        done: impl Fn(&str) -> bool,
    ) -> Duration {
        let port = self.knot_port.to_string();
        let at_knot = format!("@{SECONDARY}");
        until(
            limit,
            &[&at_knot, "-p", &port, name, "A", "+short", option],
            done,
        )
    }

    /// Knot's SOA of the zone, short.
    fn knot_serial(&self) -> String {
        let port = self.knot_port.to_string();
        let at_knot = format!("@{SECONDARY}");
        kdig(&[
            &at_knot,
            "-p",
            &port,
            "example.com.",
            "SOA",
            "+short",
            "+tcp",
        ])
    }
}

impl Drop for ToKnot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn knot_copies_a_zone_from_dnslb_and_follows_its_changes() {
    let to_knot = ToKnot::new("knot-secondary");
    let (dir, daemon, knot, knot_port) = (
        &to_knot.dir,
        &to_knot.daemon,
        &to_knot.knot,
        to_knot.knot_port,
    );

    // A new version loaded into dnslb from another file: its NOTIFY has
    // Knot fetch it at once, not at the SOA refresh two hours later.
    let next = dir.join("example.com.next.zone");
    std::fs::write(&next, zone_text(2026112802, "added 300 IN A 198.18.77.7")).unwrap();
    let next_path = next.display().to_string();
    daemon
        .cli(&["zone", "load", "example.com", &next_path])
        .expect("dnslb zone load");
    let followed = to_knot.knot_until(
        Duration::from_secs(1),
        "added.example.com.",
        "+notcp",
        |out| out.trim() == "198.18.77.7",
    );
    println!("Knot served the new version {followed:?} after dnslb zone load returned");
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

    // Anyone else is refused, and dnslb says so: another address, the
    // secondary's address without the key, or with the wrong secret.
    let port = to_knot.port.to_string();
    let signed = format!("hmac-sha256:{KEY}:{SECRET}");
    let wrong = format!("hmac-sha256:{KEY}:{WRONG_SECRET}");
    let from = |source: &str, kind: &str, key: Option<&str>| {
        let mut args = vec!["@127.0.0.1", "-p", &port, "-b", source];
        if let Some(key) = key {
            args.extend(["-y", key]);
        }
        args.extend(["example.com.", kind, "+nocomments"]);
        kdig(&args)
    };
    for kind in ["AXFR", "IXFR=2026112801"] {
        let refused = from("127.0.0.3", kind, Some(&signed));
        assert!(refused.contains("REFUSED"), "{kind}: {refused}");
    }
    let unsigned = from(SECONDARY, "AXFR", None);
    assert!(unsigned.contains("REFUSED"), "{unsigned}");
    let forged = from(SECONDARY, "AXFR", Some(&wrong));
    assert!(
        forged.contains("BADSIG"),
        "NOTAUTH with TSIG error BADSIG: {forged}"
    );
    let log = daemon.log_text();
    for refusal in [
        "refused AXFR of example.com. to 127.0.0.3: not in allow_transfer".to_owned(),
        format!("refused AXFR of example.com. to {SECONDARY}: not signed with the zone's TSIG key"),
        format!("refused AXFR of example.com. to {SECONDARY}: bad signature"),
    ] {
        assert!(log.contains(&refusal), "{refusal}:\n{log}");
    }
    // From the secondary's address with the key, the whole zone, SOA
    // first and last, each message signed (kdig checks the signatures and
    // prints each message's TSIG record).
    let axfr = from(SECONDARY, "AXFR", Some(&signed));
    assert!(
        axfr.contains(&format!("{KEY}.")) && axfr.contains("TSIG"),
        "{axfr}"
    );
    let records: Vec<&str> = axfr
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty() && !l.contains("TSIG"))
        .collect();
    assert!(
        records.first().is_some_and(|r| r.contains("SOA")),
        "{axfr}\n{}",
        daemon.log_text()
    );
    assert!(records.last().is_some_and(|r| r.contains("SOA")), "{axfr}");
    assert!(records.iter().any(|r| r.contains("198.18.77.7")), "{axfr}");
}

/// A zone file edited without a new serial is refused (Knot would never
/// ask for it), and the old version goes on serving; with serial = "auto"
/// dnslb raises the serial, writes it into the file, and Knot follows by
/// IXFR after the NOTIFY.
#[test]
fn a_change_without_a_new_serial_is_refused_and_auto_raises_it_for_knot() {
    let to_knot = ToKnot::new("serial");
    let edited = zone_text(2026112801, "added 300 IN A 198.18.77.8");
    std::fs::write(&to_knot.zone, &edited).unwrap();
    let refused = to_knot
        .daemon
        .cli(&["zone", "reload", "example.com"])
        .expect_err("same serial");
    assert!(
        refused.contains("the data changed but the SOA serial 2026112801 is not above 2026112801"),
        "{refused}"
    );
    let at_dnslb = |name: &str, kind: &str| {
        let port = to_knot.port.to_string();
        kdig(&["@127.0.0.1", "-p", &port, name, kind, "+short"])
    };
    assert_eq!(
        at_dnslb("added.example.com.", "A").trim(),
        "",
        "the old version serves"
    );
    assert!(at_dnslb("example.com.", "SOA").contains(" 2026112801 "));

    std::fs::write(
        &to_knot.policy,
        ToKnot::policy_text(&to_knot.zone, to_knot.knot_port, "serial = \"auto\"\n"),
    )
    .unwrap();
    to_knot
        .daemon
        .cli(&["reload"])
        .expect("reload with serial = auto");
    assert_eq!(at_dnslb("added.example.com.", "A").trim(), "198.18.77.8");
    assert!(at_dnslb("example.com.", "SOA").contains(" 2026112802 "));
    assert_eq!(
        std::fs::read_to_string(&to_knot.zone).unwrap(),
        edited.replacen("2026112801", "2026112802", 1),
        "the raised serial is written into the file, nothing else changed"
    );
    let followed = to_knot.knot_until(
        Duration::from_secs(2),
        "added.example.com.",
        "+notcp",
        |out| out.trim() == "198.18.77.8",
    );
    println!("Knot served the change {followed:?} after the reload");
    assert!(to_knot.knot_serial().contains(" 2026112802 "));
    assert!(
        to_knot.daemon.log_text().contains(&format!(
            "sent IXFR of example.com. serial 2026112802 to {SECONDARY}: difference"
        )),
        "{}",
        to_knot.daemon.log_text()
    );
    // The file, now raised, reloads as it is.
    to_knot.daemon.cli(&["reload"]).expect("nothing changed");
    assert!(at_dnslb("example.com.", "SOA").contains(" 2026112802 "));
}

fn knot_primary(dir: &Path, listen: &str, secondary: &str, zone: &Path) -> PathBuf {
    // Knot keeps each reload's difference, so it answers IXFR with it.
    let zone = format!(
        "    notify: dnslb\n    journal-content: changes\n    zonefile-load: difference\n    \
         file: \"{}\"\n",
        zone.display()
    );
    knot_config(dir, listen, secondary, "transfer", "example.com", &zone)
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
    /// dnslb on `port` signs with `secret`, Knot with [`SECRET`].
    fn new(test: &str, zone: &str, secret: &str, port: u16) -> FromKnot {
        let dir = scratch(test);
        let knot_dir = dir.join("knot");
        std::fs::create_dir_all(&knot_dir).unwrap();
        let source = knot_dir.join("example.com.zone");
        std::fs::write(&source, zone).unwrap();
        let knot_port = free_port();
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
                "[[zone]]\norigin = \"example.com.\"\nfile = \"{}\"\n\
                 primary = \"{SECONDARY}:{knot_port}\"\ntsig_key = \"{KEY}\"\n{}",
                copy.display(),
                policy_key(secret)
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

    /// Knot, in `netns` or here.
    fn knot(&self, netns: Option<&Netns>) -> Process {
        let mut knotd = netns.map_or_else(|| Command::new("knotd"), |n| n.command("knotd"));
        knotd.arg("-c").arg(&self.config);
        Process::spawn(knotd, self.dir.join("knotd.log")).expect("knotd starts (install knot)")
    }

    fn knotc(&self, args: &[&str]) {
        let done = Command::new("knotc")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("knotc runs");
        assert!(done.status.success(), "knotc {args:?}: {done:?}");
    }

    /// dnslb on loopback, without XDP.
    fn dnslb(&self) -> Daemon {
        start(self.port, &self.policy).expect("dnslb starts")
    }

    /// dnslb on the rig's server (port 53), its program attached.
    fn dnslb_on(&self, rig: &Rig) -> Daemon {
        let policy = self.policy.display().to_string();
        Daemon::start_serving(&rig.server, Some(&rig.server_if), &["--config", &policy])
            .expect("dnslb starts on the rig")
    }
}

impl Drop for FromKnot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The kernel answers: queries from the rig's client the XDP program
/// answered, after asking `name` once.
fn kernel_answers(rig: &Rig, name: &str) -> (Vec<std::net::Ipv4Addr>, u64) {
    let before = Answered::scrape(rig).expect("metrics").xdp.unwrap_or(0);
    let addrs = rig_a_records(&rig.client, name);
    let after = Answered::scrape(rig).expect("metrics").xdp.unwrap_or(0);
    (addrs, after - before)
}

#[test]
fn knot_edits_reach_dnslb_kernel_answers_by_ixfr_and_a_restart_serves_the_copy() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let setup = FromKnot::new("knot-primary", &zone_text(2026112801, ""), SECRET, 53);
    let knot = setup.knot(Some(&rig.server));
    let daemon = setup.dnslb_on(&rig);
    let first = until_a_records(
        &rig.client,
        "api.example.com.",
        &["198.18.20.1".parse().unwrap()],
        Duration::from_secs(10),
    );
    let first = first.unwrap_or_else(|| panic!("never served:\n{}", daemon.log_text()));
    println!("dnslb served the zone {first:?} after start");
    assert!(setup.copy.exists(), "the copy is kept on disk");

    // An edit on Knot, reloaded and notified: dnslb fetches the change by
    // IXFR (also after dnslb reloaded its policy file) and the kernel
    // answers it.
    daemon.cli(&["reload"]).expect("dnslb reload");
    let added = "added.example.com.";
    let want = ["198.18.77.8".parse().unwrap()];
    std::fs::write(
        &setup.source,
        zone_text(2026112802, "added 300 IN A 198.18.77.8"),
    )
    .unwrap();
    setup.knotc(&["zone-reload", "example.com"]);
    let reloaded = Instant::now();
    setup.knotc(&["zone-notify", "example.com"]);
    let followed = until_a_records(&rig.client, added, &want, Duration::from_secs(1));
    let followed = followed.unwrap_or_else(|| {
        panic!(
            "not within 1 s:\n{}\n{}",
            daemon.log_text(),
            knot.log_text()
        )
    });
    let since_reload = reloaded.elapsed();
    println!(
        "dnslb answered Knot's edit {since_reload:?} after knotc zone-reload returned \
         ({followed:?} after zone-notify)"
    );
    assert_eq!(kernel_answers(&rig, added), (want.to_vec(), 1), "from XDP");
    // Counted for Prometheus: the first copy by AXFR, the edit by IXFR,
    // Knot's NOTIFY accepted.
    let metrics = scrape(&rig.server, RIG_METRICS).expect("metrics");
    for (labels, at_least) in [
        (
            ["kind=\"axfr\"", "direction=\"in\"", "result=\"received\""],
            1,
        ),
        (
            ["kind=\"ixfr\"", "direction=\"in\"", "result=\"received\""],
            1,
        ),
        (
            ["kind=\"notify\"", "direction=\"in\"", "result=\"accepted\""],
            1,
        ),
    ] {
        let count: f64 = metrics
            .lines()
            .filter(|line| {
                line.starts_with("dnslb_zone_transfers_total{")
                    && labels.iter().all(|label| line.contains(label))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(count >= at_least as f64, "{labels:?}: {count}\n{metrics}");
    }
    let log = daemon.log_text();
    assert!(
        log.contains("copied zone example.com. serial 2026112802")
            && log.contains("changes by IXFR, 0 removed, 1 added"),
        "{log}"
    );

    // Without the primary, a restarted dnslb serves its copy at once.
    drop(knot);
    drop(daemon);
    let daemon = setup.dnslb_on(&rig);
    let served = until_a_records(&rig.client, added, &want, Duration::from_secs(5));
    assert!(served.is_some(), "{}", daemon.log_text());
    drop(daemon);
}

#[test]
fn a_primary_with_another_secret_is_refused_and_logged() {
    let setup = FromKnot::new(
        "wrong-key",
        &zone_text(2026112801, ""),
        WRONG_SECRET,
        free_port(),
    );
    // dnslb first, so that Knot's NOTIFY at start finds it listening.
    let daemon = setup.dnslb();
    let knot = setup.knot(None);
    // Knot's NOTIFY, signed with the secret dnslb does not have, wakes
    // nothing; dnslb's own requests (the first before Knot listened) are
    // refused by Knot.
    let logged = [
        "refused a NOTIFY from 127.0.0.2: bad signature",
        "the primary answered Not authorized",
    ];
    let started = Instant::now();
    while !logged.iter().all(|line| daemon.log_text().contains(line)) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            daemon.log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let port = setup.port.to_string();
    let www = ["@127.0.0.1", "-p", &port, "www.example.com.", "A", "+tcp"];
    assert_eq!(status(&www), "REFUSED", "nothing copied is served");
    assert!(!setup.copy.exists(), "nothing is written");
    // And Knot was told why.
    let knot_log = knot.log_text();
    assert!(
        knot_log.contains("server responded with error 'BADSIG'"),
        "{knot_log}"
    );
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
    let setup = FromKnot::new("expire", &text, SECRET, free_port());
    let primary = setup.knot(None);
    let daemon = setup.dnslb();
    let port = setup.port.to_string();
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
    let daemon = setup.dnslb();
    assert_eq!(status(&www), "REFUSED", "{}", daemon.log_text());

    // The primary is back: served again from the next transfer.
    let _primary = setup.knot(None);
    let back = served("NOERROR", Duration::from_secs(8));
    println!("served again {back:?} after the primary came back");
    drop(daemon);
}

#[test]
fn a_secondary_zone_added_by_a_reload_is_copied_from_then_on() {
    let setup = FromKnot::new("added", &zone_text(2026112801, ""), SECRET, free_port());
    let with_zone = std::fs::read_to_string(&setup.policy).unwrap();
    std::fs::write(&setup.policy, "").unwrap();
    let daemon = setup.dnslb();
    let _knot = setup.knot(None);
    let port = setup.port.to_string();
    let www = ["@127.0.0.1", "-p", &port, "www.example.com.", "A", "+tcp"];
    assert_eq!(status(&www), "REFUSED", "not a zone here yet");
    std::fs::write(&setup.policy, with_zone).unwrap();
    daemon.cli(&["reload"]).expect("dnslb reload");
    let started = Instant::now();
    while status(&www) != "NOERROR" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}",
            daemon.log_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
    println!("copied {:?} after the reload", started.elapsed());
}

/// Knot DNS on `SECONDARY`:`knot_port`, in `dir`, as a secondary of the
/// signed zone dnslb serves on 127.0.0.1:`port`.
fn signed_zone_secondary(dir: &Path, knot_port: u16, port: u16) -> Process {
    let knot_dir = dir.join("knot");
    std::fs::create_dir_all(&knot_dir).unwrap();
    let config = knot_secondary(
        &knot_dir,
        &format!("{SECONDARY}@{knot_port}"),
        &format!("127.0.0.1@{port}"),
        signed::ORIGIN,
    );
    let mut knotd = Command::new("knotd");
    knotd.arg("-c").arg(&config);
    Process::spawn(knotd, dir.join("knotd.log")).expect("knotd starts (install knot)")
}

/// Whether delv, with `anchor`, validates Knot's answer (on `knot_port`)
/// for `name`/`record_type` (`positive` or a denial), and what it said.
fn knot_validates(
    anchor: &Path,
    knot_port: u16,
    name: &str,
    record_type: &str,
    positive: bool,
) -> (bool, String) {
    let said = signed::delv(
        Command::new("delv"),
        anchor,
        SECONDARY,
        knot_port,
        name,
        record_type,
    )
    .expect("delv runs");
    (signed::validated(&said, positive), said)
}

/// A zone signed elsewhere, with dnslb as its primary: a Knot secondary
/// copies it whole by AXFR (signatures and NSEC3 chain, each RRSIG with its
/// RRset's TTL) and serves answers that validate.
#[test]
fn knot_serves_a_signed_zone_copied_from_dnslb_and_its_answers_validate() {
    let dir = scratch("signed-secondary");
    let zone = signed::zone_file("signed.test.nsec3.zone");
    let knot_port = free_port();
    let policy = dir.join("dnslb.toml");
    let origin = format!("{}.", signed::ORIGIN);
    std::fs::write(&policy, primary_policy(&origin, &zone, knot_port, "")).unwrap();
    let port = free_port();
    let daemon = start(port, &policy).expect("dnslb starts");
    let knot = signed_zone_secondary(&dir, knot_port, port);
    let knot_port_text = knot_port.to_string();
    let at_knot = format!("@{SECONDARY}");
    until(
        Duration::from_secs(10),
        &[
            &at_knot,
            "-p",
            &knot_port_text,
            "www.signed.test.",
            "A",
            "+short",
            "+tcp",
        ],
        |out| out.contains("198.18.1.1"),
    );
    let anchor = signed::trust_anchor(&dir, false).unwrap();
    for (name, record_type, positive) in [
        ("www.signed.test.", "A", true),
        ("x.wild.signed.test.", "A", true),
        ("nope.signed.test.", "A", false),
        ("www.signed.test.", "TXT", false),
    ] {
        let (valid, said) = knot_validates(&anchor, knot_port, name, record_type, positive);
        assert!(
            valid,
            "Knot's copy: {name} {record_type}: {said}\n{}\n{}",
            knot.log_text(),
            daemon.log_text()
        );
    }
    drop(knot);
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The services of the zone dnslb signs online that a Knot secondary
/// copies: a failover and a weighted one.
const ONLINE_SERVICES: &str = r#"
[pool.a]
endpoints = ["198.18.10.1"]
[pool.b]
endpoints = ["198.18.20.1"]
[pool.w]
endpoints = [{ address = "198.18.40.1", weight = 1 }, { address = "198.18.40.2", weight = 3 }]

[service.f]
name = "f.signed.test."
[service.f.policy]
kind = "failover"
primary = { pool = "a" }
secondary = { pool = "b" }

[service.w]
name = "w.signed.test."
policy = { kind = "weighted", pool = "w" }
"#;

/// Starts dnslb on 127.0.0.1:`port` with its state (keys, the copies'
/// serials) in `dir`.
fn start_signing(port: u16, policy: &Path, dir: &Path) -> Daemon {
    let state = dir.join("state").display().to_string();
    Daemon::start_on_loopback(port, policy, &["--state-dir", &state]).expect("dnslb starts")
}

/// When the signature of `name`'s A RRset that Knot at `port` serves
/// expires (Unix time), and Knot's SOA serial.
fn knot_signed(port: u16, name: &str) -> (Option<u32>, Option<u32>) {
    let answer = signed::ask_with_do_at((SECONDARY, port), name, RecordType::A)
        .ok()
        .flatten();
    let expiration = answer.as_ref().and_then(|answer| {
        signed::rrsigs_of(answer, RecordType::A)
            .first()
            .map(|(_, e)| *e)
    });
    let (port, at_knot) = (port.to_string(), format!("@{SECONDARY}"));
    let soa = kdig(&[
        &at_knot,
        "-p",
        &port,
        "signed.test.",
        "SOA",
        "+tcp",
        "+short",
    ]);
    let serial = soa.split_whitespace().nth(2).and_then(|s| s.parse().ok());
    (expiration, serial)
}

/// A zone dnslb signs online, with Knot DNS as its secondary: Knot copies
/// a zone it can serve as it is (every RRset signed, an NSEC chain over
/// every name, services included), its answers validate (delv, with the
/// zone's key as anchor), and `kzonecheck` finds the copy sound. Knot
/// follows a service's change and the copy's signatures, made again half
/// way through their validity, before they expire; a restart of dnslb
/// goes on from the serial it had.
#[test]
fn knot_serves_a_zone_dnslb_signs_online_and_follows_its_changes_and_new_signatures() {
    // Signatures valid 12 s: the copy is made again every 6 s.
    const VALIDITY: u64 = 12;
    let dir = scratch("online-secondary");
    let knot_port = free_port();
    let policy = dir.join("dnslb.toml");
    let zone = signed::zone_file("signed.test.online.zone");
    let origin = format!("{}.", signed::ORIGIN);
    let dnssec = format!("[zone.dnssec]\nvalidity = \"{VALIDITY}s\"\n");
    let text = primary_policy(&origin, &zone, knot_port, &dnssec) + ONLINE_SERVICES;
    std::fs::write(&policy, text).unwrap();
    let port = free_port();
    let mut daemon = start_signing(port, &policy, &dir);
    let knot = signed_zone_secondary(&dir, knot_port, port);
    let knot_port_text = knot_port.to_string();
    let at_knot = format!("@{SECONDARY}");
    let knot_short =
        |name: &str| kdig(&[&at_knot, "-p", &knot_port_text, name, "A", "+short", "+tcp"]);
    until(
        Duration::from_secs(10),
        &[
            &at_knot,
            "-p",
            &knot_port_text,
            "w.signed.test.",
            "A",
            "+short",
            "+tcp",
        ],
        |out| out.contains("198.18.40.2"),
    );
    // The copy holds what a client of no listed network may get: both
    // weighted endpoints, the failover's primary.
    let sorted = |out: String| {
        let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(knot_short("w.signed.test.")),
        ["198.18.40.1", "198.18.40.2"]
    );
    assert_eq!(sorted(knot_short("f.signed.test.")), ["198.18.10.1"]);

    let anchor = signed::anchor_in_key_dir(&dir.join("state/keys"), false).unwrap();
    let anchor = signed::write_trust_anchor(&dir, &anchor, "anchor.conf").unwrap();
    let validates = |name: &str, record_type: &str, positive: bool| {
        knot_validates(&anchor, knot_port, name, record_type, positive)
    };
    let all_validate = |when: &str, daemon: &Daemon| {
        for (name, record_type, positive) in [
            ("www.signed.test.", "A", true),
            ("w.signed.test.", "A", true),
            ("f.signed.test.", "A", true),
            ("alias.signed.test.", "A", true),
            ("to-service.signed.test.", "A", true),
            ("x.wild.signed.test.", "A", true),
            ("a.b.c.signed.test.", "TXT", true),
            ("signed.test.", "DNSKEY", true),
            ("nope.signed.test.", "A", false),
            ("www.signed.test.", "TXT", false),
            ("w.signed.test.", "TXT", false),
            ("b.c.signed.test.", "A", false),
            ("x.b.c.signed.test.", "A", false),
        ] {
            let (valid, said) = validates(name, record_type, positive);
            assert!(
                valid,
                "{when}: Knot's copy: {name} {record_type}: {said}\n{}\n{}",
                knot.log_text(),
                daemon.log_text()
            );
        }
    };
    all_validate("first copy", &daemon);

    // The copy as a signer's zone checker sees it.
    let axfr = kdig(&[
        "@127.0.0.1",
        "-p",
        &port.to_string(),
        "-b",
        SECONDARY,
        "-y",
        &format!("hmac-sha256:{KEY}:{SECRET}"),
        "signed.test.",
        "AXFR",
        "+nocomments",
    ]);
    // The zone's records alone: not the transfer's TSIG record.
    let records: String = axfr
        .lines()
        .filter(|line| !line.starts_with(';') && !line.contains("\tTSIG\t"))
        .map(|line| format!("{line}\n"))
        .collect();
    let copy = dir.join("copy.zone");
    std::fs::write(&copy, &records).unwrap();
    let checked = Command::new("kzonecheck")
        .args(["-o", "signed.test.", "-d", "on"])
        .arg(&copy)
        .output()
        .expect("kzonecheck runs (install knot-dnssecutils)");
    assert!(
        checked.status.success(),
        "kzonecheck: {}{}\n{axfr}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // The failover's primary drained: a new copy, NOTIFY, and Knot serves
    // the secondary, validated.
    let (_, first_serial) = knot_signed(knot_port, "www.signed.test.");
    let first_serial = first_serial.unwrap();
    daemon
        .cli(&["endpoint", "drain", "198.18.10.1"])
        .expect("dnslb endpoint drain");
    let followed = until(
        Duration::from_secs(5),
        &[
            &at_knot,
            "-p",
            &knot_port_text,
            "f.signed.test.",
            "A",
            "+short",
            "+tcp",
        ],
        |out| out.trim() == "198.18.20.1",
    );
    println!("Knot served the failover's secondary {followed:?} after the drain");
    let (valid, said) = validates("f.signed.test.", "A", true);
    assert!(valid, "{said}");
    assert!(
        daemon.log_text().contains(&format!(
            "NOTIFY of signed.test. serial {} to",
            first_serial + 1
        )),
        "{}",
        daemon.log_text()
    );

    // With nothing changed, new signatures reach Knot in a new version
    // before the ones it has expire, and its answers validate past that.
    let (expiration, serial) = knot_signed(knot_port, "www.signed.test.");
    let (expiration, serial) = (expiration.unwrap(), serial.unwrap());
    let started = Instant::now();
    loop {
        let (now_expiring, now_serial) = knot_signed(knot_port, "www.signed.test.");
        if now_expiring.is_some_and(|e| e > expiration) {
            assert!(now_serial > Some(serial), "{now_serial:?} after {serial}");
            break;
        }
        assert!(
            u64::from(expiration) > unix_seconds(),
            "Knot's signatures expired before new ones came:\n{}",
            daemon.log_text()
        );
        thread::sleep(Duration::from_millis(200));
    }
    println!("Knot had new signatures {:?} later", started.elapsed());
    while unix_seconds() <= u64::from(expiration) + 1 {
        assert!(started.elapsed() < Duration::from_secs(2 * VALIDITY));
        thread::sleep(Duration::from_millis(200));
    }
    all_validate("after the first signatures expired", &daemon);

    // A restart numbers the next copy after the last.
    let before = knot_signed(knot_port, "www.signed.test.").1.unwrap();
    drop(daemon);
    daemon = start_signing(port, &policy, &dir);
    let started = Instant::now();
    while knot_signed(knot_port, "www.signed.test.").1 <= Some(before) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "Knot never had a copy after {before}:\n{}\n{}",
            daemon.log_text(),
            knot.log_text()
        );
        thread::sleep(Duration::from_millis(100));
    }
    all_validate("after a restart", &daemon);
    drop(knot);
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
