//! Response rate limiting on the veth rig: the daemon's UDP answers draw
//! on the same buckets as the kernel's (in a binary of its own, so that
//! nothing runs beside the flood test's latency measurements).

use anyhow::Context;
use dnslb_tests::{
    daemon::{Daemon, RIG_METRICS, ZoneFile, metric, sample, scrape},
    load::{Client, Dnsperf, flood::Edns, query_file},
    netns::{Rig, SERVER_ADDR},
};

#[test]
fn the_daemons_answers_draw_on_the_kernels_buckets() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let _daemon = Daemon::start_on_rig(
        &rig,
        &ZoneFile::example(),
        true,
        &[
            "--rate-limit",
            "1",
            "--rate-limit-burst",
            "20",
            "--rate-limit-slip",
            "0",
        ],
    )?;
    let _pass = rig.attach_client_pass_through()?;
    // Half the queries answered in XDP (A), half by the daemon (MX).
    let queries = query_file("mixed", "www.example.com A\nmail.example.com MX\n")?;
    let client = Client::new(&rig.client, &rig.client_if);
    let seconds = 2;
    Dnsperf {
        queries,
        server: SERVER_ADDR.to_owned(),
        seconds,
        qps: 500,
        edns: Edns::default(),
        // Enough queries in flight that the dropped ones, waiting for
        // their time-out, do not hold the rest back.
        options: vec!["-q".into(), "2000".into()],
    }
    .throughput(client)?;
    let series = |path: &str, action: &str| {
        metric(
            &rig.server,
            &format!("dnslb_rate_limited_total{{action=\"{action}\",path=\"{path}\"}}"),
        )
    };
    let text = scrape(&rig.server, RIG_METRICS)?;
    let answered = |path: &str| sample(&text, &format!("dnslb_queries_total{{path=\"{path}\"}}"));
    let xdp = answered("xdp").context("no xdp count")?;
    let userspace_dropped = series("userspace", "dropped")?;
    let userspace_received = answered("userspace").context("no userspace count")?;
    let userspace = userspace_received - userspace_dropped;
    eprintln!(
        "answered: {xdp} by XDP, {userspace} by the daemon; dropped: {} by XDP, {userspace_dropped} by the daemon",
        series("xdp", "dropped")?
    );
    assert!(series("xdp", "dropped")? > 0 && userspace_dropped > 0);
    // One budget for both paths: the burst and the rate (1 a second),
    // with a second of margin; separate budgets would give each the burst.
    assert!(
        xdp + userspace <= 20 + (seconds as u64 + 1),
        "{xdp} + {userspace} answers"
    );
    Ok(())
}
