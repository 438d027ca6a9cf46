//! `/metrics` of a real daemon on the veth rig, through the `prometheus`
//! crate: every family the Grafana dashboard in `deploy/` uses is there,
//! and the new families count what they say. Needs root.

use dnslb_tests::{
    daemon::{Daemon, RIG_METRICS, ZoneFile, kdig, sample, scrape, workspace_root},
    netns::{Rig, SERVER_ADDR},
};

/// Every `dnslb_...` metric name in the dashboard's queries.
fn dashboard_metrics() -> Vec<String> {
    let path = workspace_root().join("deploy/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            let mut rest = expr;
            while let Some(at) = rest.find("dnslb_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.push(name);
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// A rig, with XDP answers delivered to its client, and a daemon on it
/// serving the example zone and `policy`; dropped in that order's reverse.
struct Served {
    daemon: Daemon,
    _pass: dnslb::dataplane::PassThrough,
    rig: Rig,
}

fn serve(test: &str, policy: &str) -> Served {
    let rig = Rig::new().expect("rig");
    let pass = rig.attach_client_pass_through().expect("pass-through");
    let dir = std::env::temp_dir().join(format!("dnslb-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dnslb.toml");
    std::fs::write(&file, policy).unwrap();
    let config = file.display().to_string();
    let daemon = Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &["--config", &config])
        .expect("dnslb starts");
    Served {
        daemon,
        _pass: pass,
        rig,
    }
}

/// Asks each `(name, type)` once, with kdig from the client.
fn ask_each(rig: &Rig, questions: &[(&str, &str)]) {
    let server = format!("@{SERVER_ADDR}");
    for (name, qtype) in questions {
        kdig(&rig.client, &[server.as_str(), name, qtype]).expect("kdig");
    }
}

#[test]
fn every_metric_of_the_dashboard_is_served() {
    // A TCP check against the daemon's own DNS port: up once it serves.
    let Served { daemon, rig, .. } = &serve(
        "metrics",
        "[check.dns-port]\nkind = \"tcp\"\nport = 53\ninterval = \"200ms\"\n\
         [pool.self]\ncheck = \"dns-port\"\nendpoints = [\"198.18.0.2\"]\n\
         [service.self]\nname = \"self.example.com.\"\npolicy = { pool = \"self\" }\n",
    );
    ask_each(
        rig,
        &[
            ("www.example.com.", "A"),
            ("mail.example.com.", "MX"),
            ("nope.example.com.", "A"),
        ],
    );
    let server = format!("@{SERVER_ADDR}");
    kdig(
        &rig.client,
        &[server.as_str(), "+tcp", "mail.example.com.", "MX"],
    )
    .expect("kdig +tcp");
    daemon.cli(&["reload"]).expect("reload");
    // Wait for the first probe's verdict.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let text = loop {
        let text = scrape(&rig.server, RIG_METRICS).expect("scrape");
        if text.contains("dnslb_health_check_probes_total{") || std::time::Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };

    let served = |name: &str| {
        text.lines().any(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
    };
    let missing: Vec<String> = dashboard_metrics()
        .into_iter()
        .filter(|name| !served(name))
        .collect();
    assert!(missing.is_empty(), "not on /metrics: {missing:?}\n{text}");

    // The new families count what happened above.
    let get = |series: &str| sample(&text, series);
    assert_eq!(
        get("dnslb_userspace_answers_total{rcode=\"NXDOMAIN\"}"),
        Some(1),
        "{text}"
    );
    assert_eq!(
        get("dnslb_userspace_queries_by_type_total{qtype=\"MX\"}"),
        Some(2),
        "{text}"
    );
    assert_eq!(
        get("dnslb_userspace_answer_seconds_count"),
        Some(3),
        "{text}"
    );
    assert_eq!(
        get("dnslb_reloads_total{result=\"applied\"}"),
        Some(1),
        "{text}"
    );
    assert_eq!(
        get("dnslb_kernel_map_entries{names_up_to=\"64\",record_type=\"A\"}"),
        Some(5),
        "{text}"
    );
    assert_eq!(
        get("dnslb_kernel_map_capacity{names_up_to=\"256\",record_type=\"AAAA\"}"),
        Some(65536),
        "{text}"
    );
    assert_eq!(get("dnslb_tcp_connections_open"), Some(0), "{text}");
    assert!(text.contains("dnslb_build_info{version=\""), "{text}");
}

/// The counter and histogram samples of a scrape: series → value.
fn monotonic_samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    let monotonic: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let (name, kind) = rest.split_once(' ')?;
            matches!(kind, "counter" | "histogram").then_some(name)
        })
        .collect();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|family| monotonic.contains(family))
                .unwrap_or(name);
            monotonic
                .contains(&family)
                .then(|| Some((series.to_owned(), value.parse().ok()?)))?
        })
        .collect()
}

/// Prometheus counters only go up for the life of a process: a reload
/// (as configuration management does every few minutes) lowers none of
/// them, health checks' included.
#[test]
fn no_counter_goes_back_on_a_reload() {
    // One endpoint up (the daemon's own DNS port), one down (nothing on
    // port 1 there): probes, failures and transitions all count.
    let Served { daemon, rig, .. } = &serve(
        "counters",
        "[check.dns-port]\nkind = \"tcp\"\nport = 53\ninterval = \"50ms\"\ntimeout = \"50ms\"\n\
         [check.closed]\nkind = \"tcp\"\nport = 1\ninterval = \"50ms\"\ntimeout = \"50ms\"\n\
         [pool.self]\ncheck = \"dns-port\"\nendpoints = [\"198.18.0.2\"]\n\
         [pool.closed]\ncheck = \"closed\"\nendpoints = [\"198.18.0.2\"]\n\
         [service.self]\nname = \"self.example.com.\"\npolicy = { pool = \"self\" }\n",
    );
    ask_each(
        rig,
        &[
            ("www.example.com.", "A"),
            ("self.example.com.", "A"),
            ("mail.example.com.", "MX"),
            ("nope.example.com.", "A"),
        ],
    );
    // Some probes, and the closed check's first transition.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let before = loop {
        let text = scrape(&rig.server, RIG_METRICS).expect("scrape");
        if sample(
            &text,
            "dnslb_health_check_failures_total{check=\"closed\",endpoint=\"198.18.0.2\",pool=\"closed\",port=\"\"}",
        )
        .is_some_and(|failures| failures >= 5)
            || std::time::Instant::now() > deadline
        {
            break monotonic_samples(&text);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    daemon.cli(&["reload"]).expect("reload");
    let after = monotonic_samples(&scrape(&rig.server, RIG_METRICS).expect("scrape"));
    let lowered: Vec<String> = before
        .iter()
        .filter_map(|(series, was)| {
            let now = after.get(series)?;
            (now < was).then(|| format!("{series}: {was} → {now}"))
        })
        .collect();
    assert!(
        before
            .keys()
            .any(|s| s.starts_with("dnslb_health_check_probes_total")),
        "{before:?}"
    );
    assert!(
        lowered.is_empty(),
        "counters went back on a reload: {lowered:#?}"
    );
}
