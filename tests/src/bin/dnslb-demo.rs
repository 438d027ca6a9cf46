//! `cargo xtask demo`: a client and a server namespace joined by veth,
//! dnslb attached natively on the server side with the example zone, and a
//! few kdig queries showing which answers come from the kernel and which
//! from the daemon. Everything is removed at the end, also on failure.

use std::process::ExitCode;

use dnslb_tests::{
    daemon::{Daemon, kdig, sample, scrape, workspace_root},
    netns::{CLIENT_ADDR, Rig, SERVER_ADDR},
};
use nix::sys::signal::Signal;

const METRICS: &str = "127.0.0.1:9153";

fn main() -> ExitCode {
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> anyhow::Result<()> {
    println!(
        "== rig: client {CLIENT_ADDR} and server {SERVER_ADDR}, two namespaces joined by veth"
    );
    let rig = Rig::new()?;
    let _pass = rig.attach_client_pass_through()?;
    let zone = workspace_root().join("examples/example.com.zone");
    let zone_arg = format!("example.com={}", zone.display());
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
        &zone_arg,
        "--metrics",
        METRICS,
    ];
    println!("== server: dnslb {}", args.join(" "));
    let daemon = Daemon::start(&rig.server, &args)?;
    print!("{}", daemon.log_text());

    let queries: [(&str, &str, &str); 4] = [
        (
            "www.example.com.",
            "A",
            "hot A RRset: answered by the XDP program",
        ),
        (
            "www.example.com.",
            "AAAA",
            "not an A query: passed to the daemon",
        ),
        (
            "nope.example.com.",
            "A",
            "not in the zone: the daemon says NXDOMAIN",
        ),
        (
            "www.example.org.",
            "A",
            "outside every zone: the daemon refuses",
        ),
    ];
    for (name, qtype, what) in queries {
        let before = counts(&rig)?;
        let output = kdig(
            &rig.client,
            &[
                &format!("@{SERVER_ADDR}"),
                "+noall",
                "+header",
                "+answer",
                name,
                qtype,
            ],
        )?;
        let after = counts(&rig)?;
        let path = if after.0 > before.0 {
            "kernel (XDP)"
        } else {
            "userspace"
        };
        println!("\n== client: kdig @{SERVER_ADDR} {name} {qtype}   # {what}");
        print!("{output}");
        println!("   -> answered by {path}");
    }

    println!("\n== counters from http://{METRICS}/metrics");
    let text = scrape(&rig.server, METRICS)?;
    for line in text.lines().filter(|line| line.starts_with("dnslb_")) {
        println!("   {line}");
    }
    let status = daemon.stop(Signal::SIGTERM)?;
    println!(
        "\n== dnslb stopped ({status}); XDP attached: {}",
        rig.server_has_xdp()?
    );
    Ok(())
}

/// (kernel answers, userspace answers).
fn counts(rig: &Rig) -> anyhow::Result<(u64, u64)> {
    let text = scrape(&rig.server, METRICS)?;
    let get = |path| sample(&text, &format!("dnslb_queries_total{{path=\"{path}\"}}")).unwrap_or(0);
    Ok((get("xdp"), get("userspace")))
}
