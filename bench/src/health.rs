//! What polling endpoints costs: the daemon checking 10,000 endpoints
//! every second, and reading the load of 1,000 every second (from a
//! HAProxy agent, and over HTTP), in CPU time, against a bare loop making
//! the same connections in the same run.
//!
//! The daemon runs in the rig's server namespace. The endpoints are either
//! across the veth, in the client namespace (198.19.0.0/16, all local
//! there and served by one listener), or loopback addresses beside the
//! daemon (127.1.0.0/16). Across the veth, both ends receive in NAPI
//! threads (GRO on, `threaded` set), so each host pays for the packets it
//! receives, as on a real network. On loopback, the endpoint's half of
//! every handshake runs in the prober's own context and is charged to it:
//! that is the worst case, shown for comparison.

use std::{
    collections::VecDeque,
    fmt::Write as _,
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::Context;
use dnslb_tests::{
    daemon::{Daemon, RIG_METRICS, scrape},
    netns::{Netns, Rig},
};
use nix::sys::signal::Signal;

const TCP_PORT: u16 = 7000;
const HTTP_PORT: u16 = 7001;
/// A HAProxy agent: `50%` and close.
const AGENT_PORT: u16 = 7002;
/// An HTTP load figure: `0.5`.
const LOAD_PORT: u16 = 7003;
/// How many endpoints' load is read every second.
pub const LOAD_ENDPOINTS: usize = 1_000;
const POOL_SIZE: usize = 100;
/// Before measuring: every check has started (they spread over one
/// interval) and the first verdicts are in.
const WARM_UP: Duration = Duration::from_secs(3);

/// Where the endpoints are.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    AcrossVeth,
    Loopback,
}

impl Placement {
    pub fn label(self) -> &'static str {
        match self {
            Placement::AcrossVeth => "across the veth",
            Placement::Loopback => "loopback",
        }
    }

    fn first_address(self) -> Ipv4Addr {
        match self {
            Placement::AcrossVeth => Ipv4Addr::new(198, 19, 0, 1),
            Placement::Loopback => Ipv4Addr::new(127, 1, 0, 1),
        }
    }
}

/// What the daemon polls the endpoints for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A health check of this kind (`tcp`, `http`).
    Check(&'static str),
    /// A pool's load, from this source (`agent`, `http`).
    Load(&'static str),
}

impl Work {
    fn port(self) -> u16 {
        match self {
            Work::Check("tcp") => TCP_PORT,
            Work::Check(_) => HTTP_PORT,
            Work::Load("agent") => AGENT_PORT,
            Work::Load(_) => LOAD_PORT,
        }
    }

    /// How it reads in the report.
    pub fn label(self) -> String {
        match self {
            Work::Check(kind) => format!("{kind} check"),
            Work::Load(source) => format!("load ({source})"),
        }
    }

    /// Whether the reference loop sends an HTTP request and reads, or
    /// (for an agent) just reads.
    fn reads(self) -> Option<&'static [u8]> {
        match self {
            Work::Check("tcp") => None,
            Work::Load("agent") => Some(b""),
            Work::Check(_) | Work::Load(_) => {
                Some(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            }
        }
    }

    /// The policy file's entries for pool `p` of `endpoints`.
    fn pool_entries(self, p: usize, endpoints: &str) -> String {
        match self {
            Work::Check(_) => {
                format!("[pool.p{p}]\ncheck = \"bench\"\nendpoints = [{endpoints}]\n")
            }
            Work::Load(source) => {
                let from = match source {
                    "agent" => format!("source = \"agent\", port = {AGENT_PORT}"),
                    _ => {
                        format!("source = \"http\", url = \"http://{{address}}:{LOAD_PORT}/load\"")
                    }
                };
                format!(
                    "[pool.p{p}]\nendpoints = [{endpoints}]\nload = {{ {from}, interval = \"1s\" }}\n"
                )
            }
        }
    }
}

/// One kind of polling at scale.
pub struct HealthCost {
    pub work: Work,
    pub placement: Placement,
    pub endpoints: usize,
    /// Probes or reads per second, and those that failed.
    pub probes_per_second: f64,
    pub failed_probes: u64,
    /// The daemon's CPU time over wall time: 1.0 is one core.
    pub daemon_cores: f64,
    /// The part of it spent in the kernel (system time).
    pub daemon_system_cores: f64,
    /// The same connections made by a bare loop, same measure.
    pub reference_cores: f64,
}

/// Every kind of polling: health checks of `endpoints` endpoints, and the
/// load of [`LOAD_ENDPOINTS`] (at most `endpoints`), across the veth and on
/// loopback.
pub fn every_kind(endpoints: usize) -> Vec<(Work, Placement, usize)> {
    let every = [
        (Work::Check("tcp"), endpoints),
        (Work::Check("http"), endpoints),
        (Work::Load("agent"), LOAD_ENDPOINTS.min(endpoints)),
        (Work::Load("http"), LOAD_ENDPOINTS.min(endpoints)),
    ];
    [Placement::AcrossVeth, Placement::Loopback]
        .into_iter()
        .flat_map(|placement| every.map(|(work, endpoints)| (work, placement, endpoints)))
        .collect()
}

/// Only the load reads of [`every_kind`].
pub fn load_reads() -> Vec<(Work, Placement, usize)> {
    every_kind(LOAD_ENDPOINTS)
        .into_iter()
        .filter(|(work, ..)| matches!(work, Work::Load(_)))
        .collect()
}

/// Measures each of `plan`'s kinds of polling for `seconds`.
pub fn run(
    rig: &Rig,
    scratch: &Path,
    plan: &[(Work, Placement, usize)],
    seconds: u64,
) -> anyhow::Result<Vec<HealthCost>> {
    let dir = scratch.join("health");
    fs::create_dir_all(&dir)?;
    endpoints_across_veth(rig)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut servers = Vec::new();
    for netns in [&rig.client, &rig.server] {
        for port in [TCP_PORT, HTTP_PORT, AGENT_PORT, LOAD_PORT] {
            servers.push(serve(netns, port, stop.clone())?);
        }
    }
    let mut result = Vec::new();
    for &(work, placement, endpoints) in plan {
        let measured = measure(&rig.server, &dir, work, placement, endpoints, seconds);
        match measured {
            Ok(cost) => result.push(cost),
            Err(error) => {
                stop.store(true, Ordering::Relaxed);
                return Err(error);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for server in servers {
        let _ = server.join();
    }
    Ok(result)
}

/// Makes 198.19.0.0/16 local to the client namespace and routes it there
/// from the server; turns on GRO (so veth receives through NAPI) and
/// threaded NAPI on both ends.
fn endpoints_across_veth(rig: &Rig) -> anyhow::Result<()> {
    rig.client
        .ip(&["route", "add", "local", "198.19.0.0/16", "dev", "lo"])?;
    rig.server.ip(&[
        "route",
        "add",
        "198.19.0.0/16",
        "via",
        dnslb_tests::netns::CLIENT_ADDR,
    ])?;
    for (netns, iface) in [(&rig.client, &rig.client_if), (&rig.server, &rig.server_if)] {
        let gro = netns
            .command("ethtool")
            .args(["-K", iface, "gro", "on", "tso", "off"])
            .output()?;
        dnslb_tests::netns::checked("ethtool -K gro on (apt install ethtool)", gro)?;
        let threaded = netns
            .command("sh")
            .arg("-c")
            .arg(format!("echo 1 > /sys/class/net/{iface}/threaded"))
            .output()?;
        dnslb_tests::netns::checked("threaded NAPI", threaded)?;
    }
    Ok(())
}

fn measure(
    server: &Netns,
    dir: &Path,
    work: Work,
    placement: Placement,
    endpoints: usize,
    seconds: u64,
) -> anyhow::Result<HealthCost> {
    let config = dir.join("bench.toml");
    let addrs = addresses(placement, endpoints);
    fs::write(&config, policy(dir, work, &addrs)?)?;
    let config_arg = config.display().to_string();
    let daemon = Daemon::start(
        server,
        &[
            "run",
            "--no-xdp",
            "--listen",
            "127.0.0.1:5353",
            "--metrics",
            RIG_METRICS,
            "--config",
            &config_arg,
        ],
    )?;
    thread::sleep(WARM_UP);
    // One scrape at each end, outside the CPU window: rendering 10,000
    // checks' metrics is the daemon's work too.
    let (probes_before, failed_before) = probe_counts(server, work)?;
    let cpu_before = cpu_time(daemon.pid(), None)?;
    let started = Instant::now();
    thread::sleep(Duration::from_secs(seconds));
    let cpu_after = cpu_time(daemon.pid(), None)?;
    let wall = started.elapsed().as_secs_f64();
    let (probes_after, failed_after) = probe_counts(server, work)?;
    daemon.stop(Signal::SIGTERM)?;
    // Whether the checks kept pace is judged in the report's targets, with
    // the CPU figure beside it: a short window on a busy machine may fall
    // behind without anything being broken.
    let probes_per_second = (probes_after - probes_before) as f64 / wall;
    let reference_cores = reference(server, work, &addrs, seconds)?;
    Ok(HealthCost {
        work,
        placement,
        endpoints,
        probes_per_second,
        failed_probes: failed_after - failed_before,
        daemon_cores: (cpu_after.total() - cpu_before.total()) / wall,
        daemon_system_cores: (cpu_after.system - cpu_before.system) / wall,
        reference_cores,
    })
}

/// 100-endpoint pools, one service each, every endpoint checked (or its
/// load read) each second.
fn policy(dir: &Path, work: Work, addrs: &[Ipv4Addr]) -> anyhow::Result<String> {
    let zone = dir.join("bench.test.zone");
    fs::write(
        &zone,
        "$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 198.18.0.2\n",
    )?;
    let mut text = format!(
        "[[zone]]\norigin = \"bench.test.\"\nfile = \"{}\"\n\n",
        zone.display()
    );
    if let Work::Check(kind) = work {
        let _ = write!(
            text,
            "[check.bench]\nkind = \"{kind}\"\nport = {}\ninterval = \"1s\"\ntimeout = \"500ms\"\n\n",
            work.port()
        );
    }
    for (pool, chunk) in addrs.chunks(POOL_SIZE).enumerate() {
        let list: Vec<String> = chunk.iter().map(|a| format!("\"{a}\"")).collect();
        let _ = write!(
            text,
            "{}\n[service.s{pool}]\nname = \"s{pool}.bench.test.\"\npolicy = {{ kind = \"weighted\", pool = \"p{pool}\" }}\n\n",
            work.pool_entries(pool, &list.join(", "))
        );
    }
    Ok(text)
}

fn addresses(placement: Placement, endpoints: usize) -> Vec<Ipv4Addr> {
    let first = u32::from(placement.first_address());
    (0..endpoints as u32)
        .map(|i| Ipv4Addr::from(first + i))
        .collect()
}

/// Accepts connections on `port` in `netns` (any 127/8 address) until
/// `stop`: closes TCP ones at once, answers HTTP ones `200 OK`.
fn serve(
    netns: &Netns,
    port: u16,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<thread::JoinHandle<()>> {
    let name = netns.name().to_owned();
    let (ready, bound) = std::sync::mpsc::channel();
    let handle = thread::spawn(move || {
        let listener = dnslb_tests::netns::enter_netns(&name).and_then(|()| listen(port));
        let listener = match listener {
            Ok(listener) => {
                let _ = ready.send(Ok(()));
                listener
            }
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        accept_until(&listener, port, &stop);
    });
    bound
        .recv_timeout(Duration::from_secs(5))
        .context("target server did not start")??;
    Ok(handle)
}

/// Never blocks on a client. An agent's connection gets its line at once;
/// an HTTP one its response once its request is in (as real servers do:
/// a strict client, hyper's, refuses a response that comes before its
/// request); both then a FIN, and are closed 50 ms later, after reading
/// what the client sent, so that closing with unread data does not turn
/// into a reset. A TCP check's connection is closed at once.
fn accept_until(listener: &TcpListener, port: u16, stop: &AtomicBool) {
    let (response, after_request): (&[u8], bool) = match port {
        HTTP_PORT => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
            true,
        ),
        LOAD_PORT => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n0.5",
            true,
        ),
        AGENT_PORT => (b"50%\n", false),
        _ => (b"", false),
    };
    let mut requested: VecDeque<(TcpStream, Instant)> = VecDeque::new();
    let mut closing: VecDeque<(TcpStream, Instant)> = VecDeque::new();
    let mut drained = [0u8; 1024];
    let answer = |mut stream: TcpStream, closing: &mut VecDeque<(TcpStream, Instant)>| {
        let _ = stream.write_all(response);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        closing.push_back((stream, Instant::now() + Duration::from_millis(50)));
    };
    while !stop.load(Ordering::Relaxed) {
        // Every connection waiting, then one look at each request.
        let mut accepted = 0;
        while let Ok((stream, _)) = listener.accept() {
            accepted += 1;
            if response.is_empty() {
                continue;
            }
            let _ = stream.set_nonblocking(true);
            if after_request {
                requested.push_back((stream, Instant::now() + Duration::from_secs(1)));
            } else {
                answer(stream, &mut closing);
            }
        }
        if accepted == 0 && requested.is_empty() {
            thread::sleep(Duration::from_micros(100));
        }
        // Whose request is in gets its response; who sent none in a
        // second is dropped.
        for _ in 0..requested.len() {
            let Some((mut stream, deadline)) = requested.pop_front() else {
                break;
            };
            match stream.read(&mut drained) {
                Ok(n) if n > 0 => answer(stream, &mut closing),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && deadline > Instant::now() =>
                {
                    requested.push_back((stream, deadline));
                }
                _ => {}
            }
        }
        while closing.front().is_some_and(|(_, at)| *at <= Instant::now()) {
            if let Some((mut stream, _)) = closing.pop_front() {
                while matches!(stream.read(&mut drained), Ok(n) if n > 0) {}
            }
        }
    }
}

/// A listener with room for the bursts that probes started together make
/// (std's backlog of 128 overflows and drops SYNs).
fn listen(port: u16) -> anyhow::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port).into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The reference: one thread making the same connections (and for HTTP
/// the same request) at the same rate, with none of the checker's work
/// around them. Returns its CPU time over wall time.
fn reference(netns: &Netns, work: Work, targets: &[Ipv4Addr], seconds: u64) -> anyhow::Result<f64> {
    let endpoints = targets.len();
    let port = work.port();
    netns.run(|| -> anyhow::Result<f64> {
        let tid = nix::unistd::gettid().as_raw() as u32;
        let before = cpu_time(std::process::id(), Some(tid))?.total();
        let started = Instant::now();
        let spacing = Duration::from_secs(1).div_f64(endpoints as f64);
        let mut next = Instant::now();
        let total = endpoints as u64 * seconds;
        for i in 0..total {
            let target = SocketAddr::new(targets[(i as usize) % endpoints].into(), port);
            let connected = TcpStream::connect_timeout(&target, Duration::from_millis(500));
            if let (Ok(mut stream), Some(request)) = (connected, work.reads()) {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let _ = stream.write_all(request);
                let mut response = [0u8; 512];
                let _ = stream.read(&mut response);
            }
            next += spacing;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        let after = cpu_time(std::process::id(), Some(tid))?.total();
        Ok((after - before) / started.elapsed().as_secs_f64())
    })?
}

/// CPU seconds, user and system.
#[derive(Clone, Copy)]
struct CpuTime {
    user: f64,
    system: f64,
}

impl CpuTime {
    fn total(&self) -> f64 {
        self.user + self.system
    }
}

/// The CPU time of a process, or of one of its threads.
fn cpu_time(pid: u32, tid: Option<u32>) -> anyhow::Result<CpuTime> {
    let path = match tid {
        Some(tid) => format!("/proc/{pid}/task/{tid}/stat"),
        None => format!("/proc/{pid}/stat"),
    };
    let stat = fs::read_to_string(&path)?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short stat")?.parse::<f64>()?)
    };
    let clock_ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after `)`.
    Ok(CpuTime {
        user: ticks(11)? / clock_ticks,
        system: ticks(12)? / clock_ticks,
    })
}

/// Probes run and probes failed, summed over every check (or load
/// figures read, and reads that failed, over every pool), from one scrape.
fn probe_counts(server: &Netns, work: Work) -> anyhow::Result<(u64, u64)> {
    let text = scrape(server, RIG_METRICS)?;
    let sum = |prefix: &str, contains: &str| {
        text.lines()
            .filter(|line| line.starts_with(prefix) && line.contains(contains))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    Ok(match work {
        Work::Check(_) => (
            sum("dnslb_health_check_probes_total{", ""),
            sum("dnslb_health_check_failures_total{", ""),
        ),
        Work::Load(_) => {
            let failed = sum("dnslb_load_reads_total{", "result=\"failed\"");
            (sum("dnslb_load_reads_total{", ""), failed)
        }
    })
}
