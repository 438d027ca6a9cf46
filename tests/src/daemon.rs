//! Running the real `dnslb` binary inside a namespace, and talking to it
//! with real clients.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, ExitStatus},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;

use crate::{
    netns::{Netns, Rig, checked},
    process::Process,
};

/// The `dnslb` binary next to the running test or tool (`target/<profile>/`),
/// or `$DNSLB_BIN`.
pub fn dnslb_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("DNSLB_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let candidates = exe.ancestors().skip(1).take(2).map(|dir| dir.join("dnslb"));
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no dnslb binary beside {}; build it with `cargo build -p dns-userspace`",
        exe.display()
    )
}

/// Writes a policy file for one test of `suite` and returns its path (in a
/// directory of its own, which the test may use for other files).
pub fn policy_file(suite: &str, test: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dnslb-{suite}-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("dnslb.toml");
    std::fs::write(&path, text).expect("writing the policy file");
    path
}

/// The workspace root, for example files.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

/// A `dnslb run` process; stopped on drop if still running.
pub struct Daemon {
    process: Process,
    control_socket: PathBuf,
}

impl Daemon {
    /// Starts `dnslb ARGS` in `netns` and waits until it serves.
    pub fn start(netns: &Netns, args: &[&str]) -> anyhow::Result<Daemon> {
        let command = netns.command(dnslb_binary()?);
        Daemon::spawn(command, args, &format!("{}.dnslb", netns.name()))
    }

    /// As [`Daemon::start`], with at most `files` open files (soft and
    /// hard limit, set by prlimit).
    pub fn start_with_open_files(
        netns: &Netns,
        files: u32,
        args: &[&str],
    ) -> anyhow::Result<Daemon> {
        let mut command = netns.command("prlimit");
        command
            .arg(format!("--nofile={files}:{files}"))
            .arg(dnslb_binary()?);
        Daemon::spawn(command, args, &format!("{}.dnslb", netns.name()))
    }

    /// Starts `dnslb ARGS` here, in the test's own namespace (for servers
    /// on loopback), and waits until it serves.
    pub fn start_here(args: &[&str]) -> anyhow::Result<Daemon> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let command = Command::new(dnslb_binary()?);
        Daemon::spawn(command, args, &format!("dnslb-{}-{n}", std::process::id()))
    }

    /// Starts `dnslb run` from userspace alone (no XDP) on
    /// 127.0.0.1:`port` with the policy file `config` and `more`
    /// arguments, here.
    pub fn start_on_loopback(
        port: u16,
        config: &std::path::Path,
        more: &[&str],
    ) -> anyhow::Result<Daemon> {
        let (listen, config) = (format!("127.0.0.1:{port}"), config.display().to_string());
        let mut args = vec!["run", "--no-xdp", "--listen", &listen, "--config", &config];
        args.extend_from_slice(more);
        Daemon::start_here(&args)
    }

    /// The control socket: each test daemon gets its own (`name.sock` in
    /// the temporary directory) unless `args` name one; the same for the
    /// state directory (`name.state`).
    fn spawn(mut command: Command, args: &[&str], name: &str) -> anyhow::Result<Daemon> {
        command.args(args);
        let control_socket = match args.iter().position(|a| *a == "--control-socket") {
            Some(at) => PathBuf::from(
                args.get(at + 1)
                    .context("--control-socket without a path")?,
            ),
            None => {
                let socket = std::env::temp_dir().join(format!("{name}.sock"));
                command.arg("--control-socket").arg(&socket);
                socket
            }
        };
        // Tests and benchmarks load the server from one client network at
        // rates far over the default rate limit; the tests of the limit
        // set it themselves.
        if args.first() == Some(&"run") && !args.contains(&"--rate-limit") {
            command.args(["--rate-limit", "0"]);
        }
        // State (registrations, dead letters) stays with the test too.
        if !args.contains(&"--state-dir") {
            command
                .arg("--state-dir")
                .arg(std::env::temp_dir().join(format!("{name}.state")));
        }
        let log_name = format!("{name}.log");
        let mut process = Process::spawn(command, std::env::temp_dir().join(log_name))?;
        // Large zones take a while; a million names load well within this.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !process.log_text().contains("serving DNS on") {
            if let Some(status) = process.exited()? {
                bail!(
                    "dnslb exited with {status} before serving:\n{}",
                    process.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "dnslb did not start serving within 120 s:\n{}",
                    process.log_text()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(Daemon {
            process,
            control_socket,
        })
    }

    /// Where the daemon takes control requests.
    pub fn control_socket(&self) -> &std::path::Path {
        &self.control_socket
    }

    /// Runs `dnslb ARGS --socket <this daemon's>` (a control command) and
    /// returns what it printed, or its error output if it failed.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let binary = dnslb_binary().map_err(|error| error.to_string())?;
        let output = Command::new(binary)
            .args(args)
            .arg("--socket")
            .arg(&self.control_socket)
            .output()
            .map_err(|error| error.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// `GET path` of the control API through the control socket (with
    /// curl, as a script would), as JSON.
    pub fn api_get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--fail-with-body"])
            .args(["--max-time", "10", "--unix-socket"])
            .arg(&self.control_socket)
            .arg(format!("http://dnslb{path}"))
            .output()?;
        let body = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "GET {path}: {body}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(serde_json::from_str(&body)?)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// Sends `signal` (SIGHUP: reload the zones) and returns.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal)?;
        Ok(())
    }

    /// Sends `signal` and waits (up to 10 s) for the process to exit.
    pub fn stop(mut self, signal: Signal) -> anyhow::Result<ExitStatus> {
        self.process.stop(signal, Duration::from_secs(10))
    }
}

/// Runs `kdig ARGS` inside `netns` and returns what it printed.
pub fn kdig(netns: &Netns, args: &[&str]) -> anyhow::Result<String> {
    let output = netns
        .command("kdig")
        .args(["+timeout=2", "+retry=0"])
        .args(args)
        .output()
        .context("running kdig (install knot-dnsutils)")?;
    checked(&format!("kdig {}", args.join(" ")), output)
}

/// The A records the rig's daemon (198.18.0.2) answers `name` with, asked
/// by `kdig +short` from `client`, sorted.
pub fn rig_a_records(client: &Netns, name: &str) -> Vec<std::net::Ipv4Addr> {
    a_records(client, "198.18.0.2", name)
}

/// The A records `server` answers `name` with, asked by `kdig +short`
/// from `client`, sorted.
pub fn a_records(client: &Netns, server: &str, name: &str) -> Vec<std::net::Ipv4Addr> {
    let at = format!("@{server}");
    let out = kdig(client, &[&at, name, "A", "+short"]).unwrap_or_default();
    let mut addrs: Vec<std::net::Ipv4Addr> =
        out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    addrs.sort();
    addrs
}

/// Asks (as [`rig_a_records`]) until the answer is `want`, up to `limit`;
/// how long that took.
pub fn until_a_records(
    client: &Netns,
    name: &str,
    want: &[std::net::Ipv4Addr],
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if rig_a_records(client, name) == want {
            return Some(started.elapsed());
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

/// `GET /metrics` from inside `netns`.
pub fn scrape(netns: &Netns, addr: &str) -> anyhow::Result<String> {
    netns.run(|| -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: dnslb\r\nConnection: close\r\n\r\n")?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    })?
}

/// The value of the sample `series` (name with labels) in exposition text.
pub fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The value of `series` on the `/metrics` of the daemon in `server`
/// (served on [`RIG_METRICS`]).
pub fn metric(server: &Netns, series: &str) -> anyhow::Result<u64> {
    let text = scrape(server, RIG_METRICS)?;
    sample(&text, series).with_context(|| format!("no {series} in /metrics"))
}

/// Where a daemon started by [`Daemon::start_on_rig`] serves metrics, inside
/// the server namespace.
pub const RIG_METRICS: &str = "127.0.0.1:9153";

/// A zone given to `dnslb run --zone ORIGIN=FILE`.
pub struct ZoneFile {
    pub origin: String,
    pub file: PathBuf,
}

/// The policy file's `[[zone]]` for the example zone.
pub fn example_zone_entry() -> String {
    let zone = ZoneFile::example();
    format!(
        "[[zone]]\norigin = \"{}.\"\nfile = \"{}\"\n",
        zone.origin,
        zone.file.display()
    )
}

impl ZoneFile {
    /// The example zone the demo and the tests serve.
    pub fn example() -> ZoneFile {
        ZoneFile {
            origin: "example.com".into(),
            file: workspace_root().join("examples/example.com.zone"),
        }
    }
}

impl Daemon {
    /// `dnslb run` on the rig's server, on 198.18.0.2:53 with metrics on
    /// [`RIG_METRICS`]: attached natively to the server veth, or
    /// `--no-xdp`; `extra` arguments follow.
    pub fn start_on_rig(
        rig: &Rig,
        zone: &ZoneFile,
        xdp: bool,
        extra: &[&str],
    ) -> anyhow::Result<Daemon> {
        Daemon::start_on(&rig.server, &rig.server_if, zone, xdp, extra)
    }

    /// As [`Daemon::start_on_rig`], on any server namespace and interface.
    pub fn start_on(
        server: &Netns,
        server_if: &str,
        zone: &ZoneFile,
        xdp: bool,
        extra: &[&str],
    ) -> anyhow::Result<Daemon> {
        let zone = format!("{}={}", zone.origin, zone.file.display());
        let mut args = vec!["--zone", &zone];
        args.extend_from_slice(extra);
        Daemon::start_serving(server, xdp.then_some(server_if), &args)
    }

    /// `dnslb run` in `server` on port 53 with metrics on [`RIG_METRICS`],
    /// attached natively to `attach` if given (else `--no-xdp`), with
    /// `args` saying what to serve.
    pub fn start_serving(
        server: &Netns,
        attach: Option<&str>,
        args: &[&str],
    ) -> anyhow::Result<Daemon> {
        let mut all = vec!["run", "--listen", "[::]:53", "--metrics", RIG_METRICS];
        match attach {
            Some(server_if) => all.extend(["--iface", server_if, "--xdp-mode", "native"]),
            None => all.push("--no-xdp"),
        }
        all.extend_from_slice(args);
        Daemon::start(server, &all)
    }
}

/// Queries answered so far, by where: the rig daemon's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered {
    /// By the XDP program; `None` when it is not in use.
    pub xdp: Option<u64>,
    pub userspace: u64,
}

impl Answered {
    pub fn scrape(rig: &Rig) -> anyhow::Result<Answered> {
        Answered::scrape_from(&rig.server)
    }

    /// From a daemon started with [`Daemon::start_on`] in `server`.
    pub fn scrape_from(server: &Netns) -> anyhow::Result<Answered> {
        let text = scrape(server, RIG_METRICS)?;
        let count = |path: &str| sample(&text, &format!("dnslb_queries_total{{path=\"{path}\"}}"));
        Ok(Answered {
            xdp: count("xdp"),
            userspace: count("userspace").context("no userspace count in /metrics")?,
        })
    }
}

/// A loopback port free for both UDP and TCP, different on each call (and
/// for each test process), below the kernel's ephemeral range (32768 and
/// up by default), so that no client socket of a test running alongside
/// takes it between now and the server's bind.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let start = 20_000 + (std::process::id() % 500) as u16 * 20;
    loop {
        let port = start + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10_000;
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        if udp.is_ok() && tcp.is_ok() {
            return port;
        }
    }
}
