//! End to end: the real daemon attached natively to a veth in a server
//! namespace, real `kdig` in a client namespace. Needs root.

use dnslb_tests::{
    daemon::{Answered, Daemon, ZoneFile, kdig},
    netns::{Rig, SERVER_ADDR},
};
use nix::sys::signal::Signal;

/// Asks from the client side; returns kdig's output.
fn ask(rig: &Rig, args: &[&str]) -> String {
    let server = format!("@{SERVER_ADDR}");
    kdig(&rig.client, &[&[server.as_str()], args].concat()).expect("kdig runs")
}

fn answered(rig: &Rig) -> Answered {
    Answered::scrape(rig).expect("scrape /metrics")
}

#[test]
fn hot_names_are_answered_by_the_kernel_and_the_rest_by_the_daemon() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig
        .attach_client_pass_through()
        .expect("pass-through on the client veth");
    let daemon = Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &[]).expect("dnslb starts");
    assert!(
        rig.server_has_xdp().unwrap(),
        "XDP attached to the server veth"
    );

    let before = answered(&rig);
    let hot = ask(&rig, &["WwW.ExAmPlE.CoM.", "A"]);
    assert!(
        hot.contains("status: NOERROR") && hot.contains("qr aa"),
        "{hot}"
    );
    for addr in ["198.18.10.1", "198.18.10.2", "198.18.10.3"] {
        assert!(hot.contains(addr), "{addr} missing:\n{hot}");
    }
    let with_edns = ask(&rig, &["+bufsize=1232", "api.example.com", "A"]);
    assert!(
        with_edns.contains("198.18.20.1") && with_edns.contains("EDNS"),
        "{with_edns}"
    );
    let aaaa = ask(&rig, &["+dnssec", "+cookie", "www.example.com.", "AAAA"]);
    assert!(
        aaaa.contains("2001:db8::10") && aaaa.contains("qr aa") && aaaa.contains("COOKIE"),
        "{aaaa}"
    );
    let after = answered(&rig);
    assert_eq!(
        after.xdp.map(|n| n - before.xdp.unwrap_or(0)),
        Some(3),
        "answered in the kernel"
    );
    assert_eq!(after.userspace, before.userspace, "not seen by the daemon");

    let before = after;
    let apex = ask(&rig, &["example.com.", "SOA"]);
    assert!(apex.contains("SOA") && apex.contains("qr aa"), "{apex}");
    let nxdomain = ask(&rig, &["nope.example.com.", "A"]);
    assert!(
        nxdomain.contains("status: NXDOMAIN") && nxdomain.contains("SOA"),
        "{nxdomain}"
    );
    let refused = ask(&rig, &["www.example.org.", "A"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");
    let after = answered(&rig);
    assert_eq!(
        after.userspace,
        before.userspace + 3,
        "answered by the daemon"
    );
    assert_eq!(after.xdp, before.xdp, "not by the kernel");

    let status = daemon.stop(Signal::SIGTERM).expect("dnslb stops");
    assert!(status.success(), "exit status {status}");
    assert!(
        !rig.server_has_xdp().unwrap(),
        "no XDP program left on the interface"
    );
}

#[test]
fn without_xdp_the_daemon_answers_everything() {
    let rig = Rig::new().expect("namespaces and veth");
    let daemon =
        Daemon::start_on_rig(&rig, &ZoneFile::example(), false, &[]).expect("dnslb starts");
    let hot = ask(&rig, &["www.example.com.", "A"]);
    assert!(hot.contains("198.18.10.1"), "{hot}");
    let counts = answered(&rig);
    assert_eq!(counts.userspace, 1);
    assert_eq!(counts.xdp, None, "no kernel counters without XDP");
    assert!(!rig.server_has_xdp().unwrap());
    assert!(daemon.stop(Signal::SIGINT).unwrap().success());
}

/// `--xdp-log`: the program's decisions reach the daemon's log: an answer
/// or the pass reason, with the name length and the selection of the
/// name's records when the packet got that far.
#[test]
fn xdp_log_shows_the_kernels_decisions() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig
        .attach_client_pass_through()
        .expect("pass-through on the client veth");
    let daemon = Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &["--xdp-log"])
        .expect("dnslb starts");
    ask(&rig, &["www.example.com.", "A"]);
    ask(&rig, &["mail.example.com.", "MX"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let wanted = [
        // www.example.com: 17 bytes on the wire, round robin (1).
        "answered: name 17 bytes, selection 1",
        // The type is refused before the name is looked up.
        "qtype: name 0 bytes, selection 255",
    ];
    while !wanted.iter().all(|line| daemon.log_text().contains(line)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{wanted:?} not logged:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// An address added to the interface while dnslb runs (listening on
/// `[::]`) is answered on by the kernel too: dnslb follows address changes
/// through netlink. Until it has, the kernel passes such queries on.
#[test]
fn the_kernel_follows_the_interfaces_addresses() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let _daemon =
        Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &[]).expect("dnslb starts");
    rig.server
        .ip(&["addr", "add", "198.18.0.3/24", "dev", &rig.server_if])
        .expect("a second address");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let before = answered(&rig);
        let answer = kdig(
            &rig.client,
            &["@198.18.0.3", "+short", "api.example.com", "A"],
        );
        let after = answered(&rig);
        if answer.is_ok_and(|a| a.trim() == "198.18.20.1") && after.xdp > before.xdp {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new address is answered in the kernel within 2 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
