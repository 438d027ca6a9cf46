//! Load-aware steering end to end: the real daemon attached natively to
//! the rig's veth, endpoints that report their load, and the kernel's
//! answers counted by a real client in its own namespace. Needs root.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use dnslb_tests::{
    backend::{HttpBackend, tally_answers, web_check},
    daemon::{self, Answered, Daemon, ZoneFile},
    netns::{Rig, SERVER_ADDR},
};

/// These tests count shares of thousands of answers and time changes:
/// they take turns rather than share two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const NAME: &str = "svc.example.com.";

fn server() -> SocketAddr {
    SocketAddr::new(SERVER_ADDR.parse().unwrap(), 53)
}

fn endpoint(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// HTTP backends for the health check on 127.0.0.11 to .13.
fn backends(rig: &Rig) -> Vec<HttpBackend> {
    (11..=13)
        .map(|last| {
            HttpBackend::start(&rig.server, SocketAddr::new(endpoint(last).into(), 8080))
                .expect("backend")
        })
        .collect()
}

/// A weighted service over the three endpoints, checked, weighed by
/// `load` and with `extra` lines in the pool.
fn policy(test: &str, load: &str, extra: &str) -> String {
    let file = daemon::policy_file(
        "load_steering",
        test,
        &format!(
            r#"
{check}
[pool.web]
check = "web"
endpoints = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
{load}
{extra}

[service.svc]
name = "{NAME}"
ttl = 5
policy = {{ kind = "weighted", pool = "web" }}
"#,
            check = web_check(100, 50, 2, 3),
        ),
    );
    file.display().to_string()
}

/// Each endpoint's share of `tally`'s answers, in percent.
fn percent(tally: &BTreeMap<Option<Ipv4Addr>, u64>) -> Vec<f64> {
    let total: u64 = tally.values().sum();
    (11..=13)
        .map(|last| {
            let count = tally.get(&Some(endpoint(last))).copied().unwrap_or(0);
            100.0 * count as f64 / total as f64
        })
        .collect()
}

fn push(daemon: &Daemon, last: u8, load: &str) {
    let address = endpoint(last).to_string();
    daemon
        .cli(&["endpoint", "load", "web", &address, load])
        .expect("the load is taken");
}

/// The endpoint `last` of pool `web`, as the control API lists it.
fn listed(daemon: &Daemon, last: u8) -> serde_json::Value {
    let listed = daemon.api_get("/v1/endpoints?pool=web").expect("endpoints");
    listed
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|row| row["address"] == endpoint(last).to_string())
        })
        .cloned()
        .expect("the endpoint is listed")
}

#[test]
fn pushed_loads_split_the_kernels_answers_by_effective_weight_and_high_load_sheds() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let _backends = backends(&rig);
    let config = policy(
        "push",
        r#"load = { source = "push", low = 0.3, high = 0.8, smoothing = 0.5 }"#,
        "",
    );
    let daemon = Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &["--config", &config])
        .expect("dnslb starts");
    for (last, load) in [(11, "0.2"), (12, "0.5"), (13, "0.9")] {
        push(&daemon, last, load);
    }
    // Shares 1, 0.6 and 0 of equal weights: 62.5%, 37.5% and none.
    let before = Answered::scrape(&rig).expect("metrics");
    let tally = tally_answers(&rig.client, server(), NAME, 20_000).expect("queries");
    let after = Answered::scrape(&rig).expect("metrics");
    let shares = percent(&tally);
    for (share, expected) in shares.iter().zip([62.5, 37.5, 0.0]) {
        assert!(
            (share - expected).abs() <= 2.0,
            "shares {shares:?}, expected 62.5/37.5/0 within 2 points: {tally:?}"
        );
    }
    let by_kernel = after.xdp.unwrap_or(0) - before.xdp.unwrap_or(0);
    assert!(
        by_kernel >= 20_000,
        "the kernel answered {by_kernel} of 20,000 queries (daemon: {})",
        after.userspace - before.userspace
    );
    let row = listed(&daemon, 12);
    assert_eq!(row["load"], 0.5, "{row}");
    assert!(
        (row["effective_weight"].as_f64().unwrap() - 0.6).abs() < 1e-9,
        "{row}"
    );
    assert!(
        row["weighing"]
            .as_str()
            .unwrap()
            .contains("between the watermarks"),
        "{row}"
    );
    let text = daemon
        .cli(&["endpoint", "list", "--pool", "web"])
        .expect("list");
    assert!(
        text.contains("EFFECTIVE") && text.contains("at or above high 0.8: shed"),
        "{text}"
    );

    // .12 reports 0.95 as an agent does, every 250 ms: smoothed (0.725,
    // then 0.84) it is shed on the second report.
    let reported = Instant::now();
    let shed_at = loop {
        assert!(
            reported.elapsed() < Duration::from_secs(5),
            ".12 is still answered 5 s after its load rose past high"
        );
        push(&daemon, 12, "0.95");
        let tally = tally_answers(&rig.client, server(), NAME, 500).expect("queries");
        if !tally.contains_key(&Some(endpoint(12))) {
            break reported.elapsed();
        }
        thread::sleep(Duration::from_millis(250));
    };
    assert!(
        shed_at < Duration::from_secs(2),
        "shed {shed_at:?} after the first report"
    );
    let tally = tally_answers(&rig.client, server(), NAME, 2_000).expect("queries");
    assert_eq!(percent(&tally)[0], 100.0, "only .11 is left: {tally:?}");
    let row = listed(&daemon, 12);
    assert_eq!(row["healthy"], true, "shed, not down: {row}");
    assert_eq!(row["effective_weight"], 0.0, "{row}");
}
