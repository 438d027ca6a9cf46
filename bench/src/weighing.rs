//! How soon a pushed load reaches the kernel's draws: the daemon attached
//! to the rig's veth, a weighted pool of three endpoints whose load is
//! pushed, and a client asking the kernel until the endpoint the report
//! sheds is gone from its answers (and, the next round, back).

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::ensure;
use dnslb_tests::{
    backend::tally_answers,
    daemon::{Daemon, ZoneFile},
    netns::{Rig, SERVER_ADDR},
};

const NAME: &str = "svc.example.com.";
/// Answers without the shed endpoint, in a row, that show it gone: with a
/// third of the draws otherwise, 20 in a row by chance is 3 in 10,000.
pub const IN_A_ROW: usize = 20;

/// From a report to the kernel drawing by it.
pub struct ReportToKernel {
    /// Each round: from the call that reports the load to the first of
    /// [`IN_A_ROW`] kernel answers drawn by it.
    pub rounds: Vec<Duration>,
    /// Of which the report's own call (`dnslb endpoint load`, a process
    /// and the control API), each round.
    pub calls: Vec<Duration>,
}

pub fn run(rig: &Rig, scratch: &Path, rounds: usize) -> anyhow::Result<ReportToKernel> {
    let dir = scratch.join("weighing");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("dnslb.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[pool.web]
endpoints = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
load = {{ source = "push", smoothing = 1.0 }}

[service.svc]
name = "{NAME}"
ttl = 5
policy = {{ kind = "weighted", pool = "web" }}
"#
        ),
    )?;
    let config = config.display().to_string();
    let daemon = Daemon::start_on_rig(rig, &ZoneFile::example(), true, &["--config", &config])?;
    let _pass = rig.attach_client_pass_through()?;
    let server = SocketAddr::new(SERVER_ADDR.parse()?, 53);
    let shed = Ipv4Addr::new(127, 0, 0, 13);
    let mut result = ReportToKernel {
        rounds: Vec::new(),
        calls: Vec::new(),
    };
    for round in 0..rounds {
        // Even rounds shed .13, odd ones bring it back.
        let (load, gone) = if round % 2 == 0 {
            ("0.95", true)
        } else {
            ("0.1", false)
        };
        let called = Instant::now();
        daemon
            .cli(&["endpoint", "load", "web", &shed.to_string(), load])
            .map_err(anyhow::Error::msg)?;
        result.calls.push(called.elapsed());
        let drawn = loop {
            let asked = called.elapsed();
            let tally = tally_answers(&rig.client, server, NAME, IN_A_ROW)?;
            let seen = tally.get(&Some(shed)).copied().unwrap_or(0);
            let unanswered = tally.get(&None).copied().unwrap_or(0);
            ensure!(
                unanswered == 0,
                "{unanswered} queries unanswered: {tally:?}"
            );
            // Back: seen at all (its share is a third again).
            if (gone && seen == 0) || (!gone && seen > 0) {
                break asked;
            }
            ensure!(
                called.elapsed() < Duration::from_secs(5),
                "round {round}: the kernel did not draw by the report in 5 s"
            );
        };
        result.rounds.push(drawn);
    }
    Ok(result)
}
