//! `cargo xtask demo`: a client and a server namespace joined by veth,
//! dnslb attached natively on the server side with the example zone, and a
//! few kdig queries showing which answers come from the kernel and which
//! from the daemon. Everything is removed at the end, also on failure.

use std::process::ExitCode;

use dnslb_tests::{
    daemon::{Answered, Daemon, RIG_METRICS, ZoneFile, kdig, scrape, workspace_root},
    netns::{CLIENT_ADDR, Rig, SERVER_ADDR},
};
use nix::sys::signal::Signal;

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
    println!(
        "== server: dnslb run --iface {} --listen {SERVER_ADDR}:53 --zone example.com=examples/example.com.zone --config examples/dnslb.toml\n   \
         (a service for every routing policy; their backends are not running, so the checks fail one by one, \
         and a service with nothing up answers as if all were up, as Route 53 does)",
        rig.server_if
    );
    let policy = workspace_root().join("examples/dnslb.toml");
    let policy = policy.display().to_string();
    let daemon = Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &["--config", &policy])?;
    print!("{}", daemon.log_text());

    let queries: [(&str, &str, &str); 8] = [
        (
            "mx.example.com.",
            "A",
            "hot A RRset of the zone: answered by the XDP program",
        ),
        (
            "canary.example.com.",
            "A",
            "weighted by endpoint weights: drawn by the XDP program",
        ),
        (
            "www.example.com.",
            "A",
            "weighted between two whole pools (eu 3 : us 1): a choice of sets, drawn by the daemon",
        ),
        (
            "geo.example.com.",
            "A",
            "geolocation: the client's network is in Berlin (examples/geo.csv)",
        ),
        (
            "www.example.com.",
            "AAAA",
            "AAAA RRset of the zone: answered by the XDP program, as A records are",
        ),
        (
            "mail.example.com.",
            "MX",
            "neither A nor AAAA: passed to the daemon",
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
        let before = Answered::scrape(&rig)?;
        let server = format!("@{SERVER_ADDR}");
        let output = kdig(
            &rig.client,
            &[&server, "+noall", "+header", "+answer", name, qtype],
        )?;
        let after = Answered::scrape(&rig)?;
        let path = if after.xdp > before.xdp {
            "the kernel (XDP)"
        } else {
            "userspace"
        };
        println!("\n== client: kdig {server} {name} {qtype}   # {what}");
        print!("{output}");
        println!("   -> answered by {path}");
    }

    println!("\n== counters from http://{RIG_METRICS}/metrics");
    let text = scrape(&rig.server, RIG_METRICS)?;
    // Each shown line starts with the family and has all the parts given.
    let shown: [&[&str]; 5] = [
        &["dnslb_queries_total"],
        &["dnslb_xdp_"],
        &["dnslb_policy_answers_total{", "service=\"www\""],
        &["dnslb_policy_answers_total{", "service=\"geo\""],
        &["dnslb_health_check_up{", "check=\"web\"", "pool=\"web-eu\""],
    ];
    for line in text.lines().filter(|line| {
        shown
            .iter()
            .any(|parts| line.starts_with(parts[0]) && parts.iter().all(|p| line.contains(p)))
    }) {
        println!("   {line}");
    }
    // The operator's view of the same daemon, through its control API.
    for command in [&["status"][..], &["service", "show", "www"][..]] {
        println!("\n== dnslb {}", command.join(" "));
        match daemon.cli(command) {
            Ok(text) => text.lines().for_each(|line| println!("   {line}")),
            Err(error) => anyhow::bail!("dnslb {}: {error}", command.join(" ")),
        }
    }
    let status = daemon.stop(Signal::SIGTERM)?;
    println!(
        "\n== dnslb stopped ({status}); XDP still attached: {}",
        rig.server_has_xdp()?
    );
    Ok(())
}
