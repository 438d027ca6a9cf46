//! End to end: the real daemon attached natively to a veth in a server
//! namespace, real `kdig` in a client namespace. Needs root.

use dnslb_tests::{
    daemon::{Daemon, kdig, sample, scrape, workspace_root},
    netns::{Rig, SERVER_ADDR},
};
use nix::sys::signal::Signal;

const METRICS: &str = "127.0.0.1:9153";
const XDP_ANSWERS: &str = "dnslb_queries_total{path=\"xdp\"}";
const USERSPACE_ANSWERS: &str = "dnslb_queries_total{path=\"userspace\"}";

struct Counts {
    xdp: u64,
    userspace: u64,
}

fn counts(rig: &Rig) -> Counts {
    let text = scrape(&rig.server, METRICS).expect("scrape /metrics");
    Counts {
        xdp: sample(&text, XDP_ANSWERS).expect("xdp answers exported"),
        userspace: sample(&text, USERSPACE_ANSWERS).expect("userspace answers exported"),
    }
}

fn start(rig: &Rig) -> Daemon {
    let zone = workspace_root().join("examples/example.com.zone");
    let zone = format!("example.com={}", zone.display());
    let listen = format!("{SERVER_ADDR}:53");
    let args = [
        "run",
        "--iface",
        &rig.server_if,
        "--xdp-mode",
        "native",
        "--listen",
        &listen,
        "--zone",
        &zone,
        "--metrics",
        METRICS,
    ];
    Daemon::start(&rig.server, &args).expect("dnslb starts")
}

/// Asks from the client side; returns kdig's output.
fn ask(rig: &Rig, name: &str, qtype: &str) -> String {
    kdig(&rig.client, &[&format!("@{SERVER_ADDR}"), name, qtype]).expect("kdig runs")
}

#[test]
fn hot_names_are_answered_by_the_kernel_and_the_rest_by_the_daemon() {
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig
        .attach_client_pass_through()
        .expect("pass-through on the client veth");
    let daemon = start(&rig);
    assert!(
        rig.server_has_xdp().unwrap(),
        "XDP attached to the server veth"
    );

    let before = counts(&rig);
    let hot = ask(&rig, "WwW.ExAmPlE.CoM.", "A");
    assert!(
        hot.contains("status: NOERROR") && hot.contains("qr aa"),
        "{hot}"
    );
    for addr in ["198.18.10.1", "198.18.10.2", "198.18.10.3"] {
        assert!(hot.contains(addr), "{addr} missing:\n{hot}");
    }
    let after = counts(&rig);
    assert_eq!(after.xdp, before.xdp + 1, "answered in the kernel");
    assert_eq!(after.userspace, before.userspace, "not seen by the daemon");

    let with_edns = kdig(
        &rig.client,
        &[
            &format!("@{SERVER_ADDR}"),
            "+bufsize=1232",
            "api.example.com",
            "A",
        ],
    )
    .unwrap();
    assert!(
        with_edns.contains("198.18.20.1") && with_edns.contains("EDNS"),
        "{with_edns}"
    );
    assert_eq!(counts(&rig).xdp, before.xdp + 2);

    let before = counts(&rig);
    let miss = ask(&rig, "www.example.com.", "AAAA");
    assert!(
        miss.contains("2001:db8::10") && miss.contains("qr aa"),
        "{miss}"
    );
    let nxdomain = ask(&rig, "nope.example.com.", "A");
    assert!(
        nxdomain.contains("status: NXDOMAIN") && nxdomain.contains("SOA"),
        "{nxdomain}"
    );
    let refused = ask(&rig, "www.example.org.", "A");
    assert!(refused.contains("status: REFUSED"), "{refused}");
    let after = counts(&rig);
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
    let zone = workspace_root().join("examples/example.com.zone");
    let zone = format!("example.com={}", zone.display());
    let listen = format!("{SERVER_ADDR}:53");
    let args = [
        "run",
        "--no-xdp",
        "--listen",
        &listen,
        "--zone",
        &zone,
        "--metrics",
        METRICS,
    ];
    let daemon = Daemon::start(&rig.server, &args).expect("dnslb starts");
    let hot = ask(&rig, "www.example.com.", "A");
    assert!(hot.contains("198.18.10.1"), "{hot}");
    let text = scrape(&rig.server, METRICS).unwrap();
    assert_eq!(sample(&text, USERSPACE_ANSWERS), Some(1), "{text}");
    assert_eq!(
        sample(&text, XDP_ANSWERS),
        None,
        "no kernel counters without XDP"
    );
    assert!(!rig.server_has_xdp().unwrap());
    assert!(daemon.stop(Signal::SIGINT).unwrap().success());
}
