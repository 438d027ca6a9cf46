//! Cold starts of a function pool on the rig: a query for a name whose
//! pool has no instance running, from the client namespace, timed until
//! its answer arrives (the daemon starts busybox httpd, probes it ready,
//! writes it to the kernel and answers). The reference is the next query
//! for the same name, answered by the kernel, timed the same way.

use std::{
    fs,
    net::UdpSocket,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use dnslb_tests::{
    daemon::{Daemon, RIG_METRICS, ZoneFile, sample, scrape},
    frame::{QueryFrame, a_records},
    netns::{Rig, SERVER_ADDR},
};
use hickory_proto::op::Message;

pub struct ColdStarts {
    /// Query to answer, each cold start.
    pub cold: Vec<Duration>,
    /// Query to answer from the kernel right after each.
    pub warm: Vec<Duration>,
}

const NAME: &str = "fn.example.com.";
const PORT: u16 = 18180;

pub fn run(rig: &Rig, scratch: &Path, rounds: usize) -> anyhow::Result<ColdStarts> {
    let dir = scratch.join("coldstart");
    fs::create_dir_all(dir.join("www"))?;
    fs::write(dir.join("www/index.html"), "OK\n")?;
    let config = dir.join("dnslb.toml");
    fs::write(
        &config,
        format!(
            r#"
[check.up]
kind = "http"
port = {PORT}
interval = "1s"

[pool.fn]
kind = "function"
check = "up"
command = "exec busybox httpd -f -p {{address}}:{{port}} -h {www}"
addresses = "127.0.0.100-127.0.0.101"
port = {PORT}
max = 1
idle_after = "1s"

[service.fn]
name = "{NAME}"
ttl = 1
policy = {{ pool = "fn" }}
"#,
            www = dir.join("www").display()
        ),
    )?;
    let config = config.display().to_string();
    let daemon = Daemon::start_on_rig(rig, &ZoneFile::example(), true, &["--config", &config])?;
    let _pass = rig.attach_client_pass_through()?;
    let mut result = ColdStarts {
        cold: Vec::new(),
        warm: Vec::new(),
    };
    for _ in 0..rounds {
        // Idle long enough to be stopped (idle_after, plus the 1 s tick).
        let until = Instant::now() + Duration::from_secs(10);
        while instances(rig)? != 0 {
            ensure!(
                Instant::now() < until,
                "not stopped when idle:\n{}",
                daemon.log_text()
            );
            thread::sleep(Duration::from_millis(100));
        }
        result
            .cold
            .push(timed_query(rig).context(daemon.log_text())?);
        result.warm.push(timed_query(rig)?);
    }
    Ok(result)
}

fn instances(rig: &Rig) -> anyhow::Result<u64> {
    let text = scrape(&rig.server, RIG_METRICS)?;
    sample(&text, "dnslb_function_instances{pool=\"fn\"}").context("no instance gauge")
}

/// One query from the client namespace, timed to its answer, which must
/// carry the instance's address.
fn timed_query(rig: &Rig) -> anyhow::Result<Duration> {
    let query = QueryFrame::a(NAME).dns();
    rig.client.run(|| -> anyhow::Result<Duration> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect((SERVER_ADDR, 53))?;
        socket.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut buffer = [0u8; 1500];
        let started = Instant::now();
        socket.send(&query)?;
        let len = socket.recv(&mut buffer)?;
        let took = started.elapsed();
        let answer = Message::from_vec(&buffer[..len])?;
        ensure!(
            a_records(&answer) == [std::net::Ipv4Addr::new(127, 0, 0, 100)],
            "answered {answer:?}"
        );
        Ok(took)
    })?
}
