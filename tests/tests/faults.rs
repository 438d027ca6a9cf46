//! No single fault stops serving: descriptors running out, clients that
//! hold TCP connections and never read, a daemon killed outright. On the
//! veth rig, with the real daemon.

use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use dnslb_tests::{
    daemon::{Answered, Daemon, RIG_METRICS, ZoneFile, kdig, policy_file, sample, scrape},
    frame::QueryFrame,
    netns::Rig,
};
use nix::sys::signal::Signal;
use socket2::{Domain, Socket, Type};

const SERVER: &str = "198.18.0.2";

/// Gives the client `count` more addresses from 198.18.0.`first` on.
fn client_addresses(rig: &Rig, first: u8, count: u8) -> Vec<Ipv4Addr> {
    (first..first + count)
        .map(|last| {
            let addr = Ipv4Addr::new(198, 18, 0, last);
            rig.client
                .ip(&["addr", "add", &format!("{addr}/24"), "dev", &rig.client_if])
                .unwrap();
            addr
        })
        .collect()
}

/// Opens `each` connections to the server's port 53 from each of the
/// `addresses.1` client addresses from 198.18.0.`addresses.0` on, and
/// sends `bytes` on each.
fn hold_connections(rig: &Rig, addresses: (u8, u8), each: usize, bytes: &[u8]) -> Vec<TcpStream> {
    let sources = client_addresses(rig, addresses.0, addresses.1);
    rig.client
        .run(|| {
            let mut held = Vec::new();
            for source in &sources {
                for _ in 0..each {
                    let Ok(mut stream) = connect_from(*source) else {
                        continue;
                    };
                    let _ = stream.write_all(bytes);
                    held.push(stream);
                }
            }
            held
        })
        .unwrap()
}

/// A TCP connection to the server's port 53 from `source`.
fn connect_from(source: Ipv4Addr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    let server: SocketAddr = format!("{SERVER}:53").parse().expect("an address");
    socket.connect_timeout(&server.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

/// Asks `args` over TCP until an answer comes, for up to `limit`; how long
/// it took.
fn until_tcp_answer(rig: &Rig, args: &[&str], limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let mut all = vec!["@198.18.0.2", "+tcp", "+short"];
        all.extend_from_slice(args);
        if kdig(&rig.client, &all).is_ok_and(|out| !out.trim().is_empty()) {
            return Some(started.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Raises this test process's open-files limit to its hard limit.
fn many_files_here() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

fn rig_args<'a>(rig: &'a Rig, zone: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--rate-limit",
        "0",
        "--listen",
        "[::]:53",
        "--zone",
        zone,
        "--metrics",
        RIG_METRICS,
        "--iface",
        &rig.server_if,
        "--xdp-mode",
        "native",
    ]
}

#[test]
fn out_of_descriptors_the_daemon_keeps_serving_and_recovers() {
    many_files_here();
    let rig = Rig::new().unwrap();
    let example = ZoneFile::example();
    let zone = format!("{}={}", example.origin, example.file.display());
    let daemon = Daemon::start_with_open_files(&rig.server, 256, &rig_args(&rig, &zone)).unwrap();
    let _pass = rig.attach_client_pass_through().unwrap();

    // 300 DNS connections from ten addresses (under the per-address
    // limit), and 300 to the metrics endpoint: more than 256 descriptors.
    let dns = hold_connections(&rig, (10, 10), 30, &[]);
    // Started without waiting: past the endpoint's 32 connections and its
    // listen backlog, the kernel holds the rest in SYN retries.
    let scrapers = rig
        .server
        .run(|| {
            let metrics: SocketAddr = RIG_METRICS.parse().expect("an address");
            (0..300)
                .filter_map(|_| {
                    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
                    socket.set_nonblocking(true).ok()?;
                    let _ = socket.connect(&metrics.into());
                    Some(socket)
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert!(
        dns.len() + scrapers.len() > 256,
        "{} + {}",
        dns.len(),
        scrapers.len()
    );
    thread::sleep(Duration::from_millis(300));

    // UDP is answered all along, by the daemon as by the kernel.
    let mx = kdig(
        &rig.client,
        &["@198.18.0.2", "+short", "mail.example.com", "MX"],
    )
    .unwrap();
    assert_eq!(mx.trim(), "10 mx.example.com.");
    let www = kdig(
        &rig.client,
        &["@198.18.0.2", "+short", "api.example.com", "A"],
    )
    .unwrap();
    assert_eq!(www.trim(), "198.18.20.1");

    drop(dns);
    drop(scrapers);
    let recovered = until_tcp_answer(&rig, &["mail.example.com", "MX"], Duration::from_secs(5));
    assert!(
        recovered.is_some(),
        "TCP answers again once the clients close"
    );
    let metrics = scrape(&rig.server, RIG_METRICS).unwrap();
    let accept_errors = sample(&metrics, "dnslb_accept_errors_total{server=\"dns\"}").unwrap();
    assert!(accept_errors > 0, "the descriptors did run out:\n{metrics}");
    daemon.stop(Signal::SIGTERM).unwrap();
}

#[test]
fn clients_that_pipeline_and_never_read_do_not_lock_others_out() {
    many_files_here();
    let rig = Rig::new().unwrap();
    let _daemon = Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &[]).unwrap();
    let _pass = rig.attach_client_pass_through().unwrap();

    // A hundred queries in a row, framed for TCP, sent and never read.
    let query = QueryFrame::a("www.example.com").dns();
    let mut pipelined = Vec::new();
    for _ in 0..100 {
        pipelined.extend_from_slice(&(query.len() as u16).to_be_bytes());
        pipelined.extend_from_slice(&query);
    }
    // 1,024 connections (every slot), 32 from each of 32 addresses.
    let held = hold_connections(&rig, (100, 32), 32, &pipelined);
    assert_eq!(held.len(), 1024);

    let answered = until_tcp_answer(&rig, &["www.example.com", "A"], Duration::from_secs(2));
    assert!(
        answered.is_some(),
        "a new client is answered within 2 s, with every slot held"
    );
    drop(held);
}

#[test]
fn a_killed_daemon_leaves_no_program_attached() {
    let rig = Rig::new().unwrap();
    let daemon = Daemon::start_on_rig(&rig, &ZoneFile::example(), true, &[]).unwrap();
    assert!(rig.server_has_xdp().unwrap());
    daemon.stop(Signal::SIGKILL).unwrap();
    // The link lives in the process's descriptor table: gone with it.
    assert!(!rig.server_has_xdp().unwrap(), "no XDP program left");
}

/// A zone of `www` at 198.18.10.`www` and `extra` more names; its serial
/// is `www` too, so each move is a new version.
fn big_zone(www: u8, extra: &str) -> String {
    let mut zone = format!(
        "$ORIGIN big.test.\n$TTL 300\n@ SOA ns1 h {www} 7200 3600 1209600 60\n@ NS ns1\nns1 A 198.18.0.2\n",
    );
    zone += &format!("www A 198.18.10.{www}\n");
    for i in 0..10 {
        zone += &format!("{extra}{i} A 198.18.11.{i}\n");
    }
    zone
}

/// The A records of www.big.test as the kernel (UDP) and the daemon (TCP)
/// answer them, plain and with DO: always the same four.
fn www_both_ways(rig: &Rig) -> Vec<String> {
    ["+notcp", "+tcp"]
        .into_iter()
        .flat_map(|transport| ["+nodnssec", "+dnssec"].map(|dnssec| (transport, dnssec)))
        .map(|(transport, dnssec)| {
            kdig(
                &rig.client,
                &[
                    "@198.18.0.2",
                    "+short",
                    transport,
                    dnssec,
                    "www.big.test",
                    "A",
                ],
            )
            .unwrap()
            .trim()
            .to_owned()
        })
        .collect()
}

#[test]
fn a_reload_the_kernel_maps_cannot_hold_is_refused_whole() {
    let rig = Rig::new().unwrap();
    let zone = policy_file("faults", "no_room", "").with_file_name("big.test.zone");
    std::fs::write(&zone, big_zone(1, "n")).unwrap();
    let zone_arg = format!("big.test={}", zone.display());
    // 12 names now: room for 4 more in each map.
    let daemon = Daemon::start(
        &rig.server,
        &[&rig_args(&rig, &zone_arg)[..], &["--hot-capacity", "16"]].concat(),
    )
    .unwrap();
    let _pass = rig.attach_client_pass_through().unwrap();
    let before = Answered::scrape(&rig).unwrap();
    assert_eq!(www_both_ways(&rig), ["198.18.10.1"; 4]);
    let after = Answered::scrape(&rig).unwrap();
    assert_eq!(
        after.xdp.unwrap() - before.xdp.unwrap(),
        2,
        "UDP from the kernel"
    );

    // www moves, and ten names come: 22 entries while both are in place.
    std::fs::write(&zone, big_zone(2, "m")).unwrap();
    let refused = daemon.cli(&["reload"]).unwrap_err();
    assert!(
        refused.contains("would need 22 entries") && refused.contains("--hot-capacity"),
        "{refused}"
    );
    assert_eq!(www_both_ways(&rig), ["198.18.10.1"; 4], "nothing applied");
    let m0 = kdig(
        &rig.client,
        &["@198.18.0.2", "+short", "+tcp", "m0.big.test", "A"],
    )
    .unwrap();
    assert_eq!(
        m0.trim(),
        "",
        "the daemon does not serve the refused zone either"
    );

    // www moves alone: that fits.
    std::fs::write(&zone, big_zone(2, "n")).unwrap();
    daemon.cli(&["reload"]).unwrap();
    assert_eq!(www_both_ways(&rig), ["198.18.10.2"; 4]);
    let status = daemon.cli(&["status"]).unwrap();
    assert!(status.contains("its next generation fits"), "{status}");
}
