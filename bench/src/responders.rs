//! The servers compared, each started on the rig's server side with the
//! benchmark zone and stopped when its handle drops.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, XdpMode},
};
use dns_common::HotName;
use dnslb::dataplane::{AttachMode, Dataplane, DataplaneOptions, Endpoint, HotAnswer};
use dnslb_tests::{
    daemon::{Daemon, ZoneFile, kdig},
    frame::wire_name,
    netns::{Rig, SERVER_ADDR},
};

use crate::workload::{Mix, ORIGIN, WEIGHTED_NAME};

/// The floor: the least an XDP responder can do (bench/floor-ebpf).
pub static FLOOR_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floor-ebpf.o"));

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Responder {
    Floor,
    DnslbXdp,
    /// dnslb's XDP program with a weighted name, loaded through the
    /// library: the daemon has no weights to configure until routing
    /// policies arrive, the kernel's weighted pick has.
    DnslbXdpWeighted,
    DnslbUserspace,
    KnotXdp,
    KnotUdp,
    Nsd,
}

impl Responder {
    pub const ALL: [Responder; 7] = [
        Responder::Floor,
        Responder::DnslbXdp,
        Responder::DnslbXdpWeighted,
        Responder::DnslbUserspace,
        Responder::KnotXdp,
        Responder::KnotUdp,
        Responder::Nsd,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Responder::Floor => "floor (XDP swap only)",
            Responder::DnslbXdp => "dnslb (XDP)",
            Responder::DnslbXdpWeighted => "dnslb (XDP, weights 1:2:3)",
            Responder::DnslbUserspace => "dnslb --no-xdp",
            Responder::KnotXdp => "Knot DNS (XDP)",
            Responder::KnotUdp => "Knot DNS (UDP)",
            Responder::Nsd => "NSD",
        }
    }

    /// Whether this responder takes part in `mix`.
    pub fn runs(self, mix: &Mix) -> bool {
        self != Responder::DnslbXdpWeighted || mix.weighted
    }

    /// Starts the responder and waits until it answers.
    pub fn start(self, rig: &Rig, zone: &Path, scratch: &Path) -> anyhow::Result<Running> {
        let running = match self {
            Responder::Floor => Running::Floor {
                _program: attach_floor(rig)?,
            },
            Responder::DnslbXdp | Responder::DnslbUserspace => {
                let xdp = self == Responder::DnslbXdp;
                Running::Dnslb(Daemon::start_on_rig(
                    rig,
                    &bench_zone(zone),
                    xdp,
                    &["--hot-capacity", "1100000"],
                )?)
            }
            Responder::DnslbXdpWeighted => Running::Dataplane {
                _dataplane: Box::new(attach_weighted(rig)?),
            },
            Responder::KnotXdp | Responder::KnotUdp => {
                let xdp = (self == Responder::KnotXdp).then_some(rig.server_if.as_str());
                Running::Process(start_knot(rig, zone, scratch, xdp)?)
            }
            Responder::Nsd => Running::Process(start_nsd(rig, zone, scratch)?),
        };
        if !matches!(self, Responder::Floor | Responder::DnslbXdpWeighted) {
            wait_until_answering(rig)?;
        }
        Ok(running)
    }
}

/// A started responder; stopping it is dropping it.
pub enum Running {
    /// Attached for as long as this lives.
    Floor {
        _program: Ebpf,
    },
    Dnslb(Daemon),
    /// dnslb's program attached through the library, for as long as this
    /// lives (boxed: it is much larger than the other variants).
    Dataplane {
        _dataplane: Box<Dataplane>,
    },
    Process(Server),
}

/// A server process (Knot, NSD), terminated on drop.
pub struct Server {
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The benchmark zone as `dnslb run` takes it.
pub fn bench_zone(file: &Path) -> ZoneFile {
    ZoneFile {
        origin: ORIGIN.into(),
        file: file.to_path_buf(),
    }
}

fn attach_floor(rig: &Rig) -> anyhow::Result<Ebpf> {
    let iface = rig.server_if.clone();
    rig.server.run(move || -> anyhow::Result<Ebpf> {
        let mut ebpf = EbpfLoader::new().load(FLOOR_OBJECT)?;
        let program: &mut Xdp = ebpf
            .program_mut("floor")
            .context("no floor program")?
            .try_into()?;
        program.load()?;
        program.attach(&iface, XdpMode::Driver)?;
        Ok(ebpf)
    })?
}

/// Loads dnslb's XDP program with one name, `weighted`, whose three
/// addresses have weights 1, 2 and 3, and attaches it to the server veth.
fn attach_weighted(rig: &Rig) -> anyhow::Result<Dataplane> {
    let iface = rig.server_if.clone();
    rig.server.run(move || -> anyhow::Result<Dataplane> {
        let mut dataplane = Dataplane::load(DataplaneOptions {
            port: 53,
            edns_payload: 1232,
            hot_capacity: 16,
        })?;
        let endpoints = (1..=3)
            .map(|i| Endpoint {
                addr: Ipv4Addr::new(198, 18, 11, i),
                weight: i,
            })
            .collect();
        let name = format!("{WEIGHTED_NAME}.{ORIGIN}");
        let key = HotName::from_wire(&wire_name(&name)).context("bad weighted name")?;
        dataplane.set_hot_a(
            &key,
            &HotAnswer::Weighted {
                ttl: 300,
                endpoints,
            }
            .encode()?,
        )?;
        dataplane.attach(&iface, AttachMode::Native)?;
        Ok(dataplane)
    })?
}

fn spawn(
    rig: &Rig,
    scratch: &Path,
    name: &str,
    program: &str,
    args: &[&str],
) -> anyhow::Result<Server> {
    let log = scratch.join(format!("{name}.log"));
    let file = fs::File::create(&log)?;
    let child = rig
        .server
        .command(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    Ok(Server { child, log })
}

fn start_knot(rig: &Rig, zone: &Path, scratch: &Path, xdp: Option<&str>) -> anyhow::Result<Server> {
    let dir = scratch.join(if xdp.is_some() {
        "knot-xdp"
    } else {
        "knot-udp"
    });
    fs::create_dir_all(&dir)?;
    let xdp_section = xdp.map_or(String::new(), |iface| {
        format!("xdp:\n    listen: {iface}\n    udp: on\n")
    });
    let config = format!(
        "server:\n    rundir: \"{dir}\"\n    user: root:root\n    listen: {SERVER_ADDR}@53\n    udp-workers: 2\n    \
         background-workers: 1\n{xdp_section}database:\n    storage: \"{dir}\"\n\
         zone:\n  - domain: {ORIGIN}\n    file: \"{zone}\"\n    journal-content: none\n    zonefile-sync: -1\n\
         log:\n  - target: stderr\n    any: notice\n",
        dir = dir.display(),
        zone = zone.display(),
    );
    let path = dir.join("knot.conf");
    fs::write(&path, config)?;
    let path = path.to_string_lossy().into_owned();
    spawn(rig, &dir, "knotd", "knotd", &["-c", &path])
}

fn start_nsd(rig: &Rig, zone: &Path, scratch: &Path) -> anyhow::Result<Server> {
    let dir = scratch.join("nsd");
    fs::create_dir_all(&dir)?;
    let config = format!(
        "server:\n    ip-address: {SERVER_ADDR}\n    port: 53\n    server-count: 2\n    username: \"\"\n    \
         chroot: \"\"\n    zonesdir: \"{dir}\"\n    pidfile: \"{dir}/nsd.pid\"\n    database: \"\"\n    \
         zonelistfile: \"{dir}/zone.list\"\n    xfrdfile: \"{dir}/xfrd.state\"\n    xfrdir: \"{dir}\"\n    \
         verbosity: 1\n    rrl-ratelimit: 0\nremote-control:\n    control-enable: no\nzone:\n    name: {ORIGIN}\n    zonefile: \"{zone}\"\n",
        dir = dir.display(),
        zone = zone.display(),
    );
    let path = dir.join("nsd.conf");
    fs::write(&path, config)?;
    let path = path.to_string_lossy().into_owned();
    spawn(rig, &dir, "nsd", "nsd", &["-d", "-c", &path])
}

/// Polls with kdig from the client until the server answers `www`.
fn wait_until_answering(rig: &Rig) -> anyhow::Result<()> {
    // XDP answers reach the client only through its pass-through program.
    let _pass = rig.attach_client_pass_through()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let server = format!("@{SERVER_ADDR}");
    let name = format!("www.{ORIGIN}.");
    loop {
        let answer =
            kdig(&rig.client, &[&server, "+short", "+timeout=1", &name, "A"]).unwrap_or_default();
        if answer.contains("198.18.10.") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the responder did not answer {name} within 60 s");
        }
        thread::sleep(Duration::from_millis(200));
    }
}

impl Running {
    /// The server's own log, for error reports.
    pub fn log(&self) -> String {
        match self {
            Running::Floor { .. } | Running::Dataplane { .. } => String::new(),
            Running::Dnslb(daemon) => daemon.log_text(),
            Running::Process(server) => fs::read_to_string(&server.log).unwrap_or_default(),
        }
    }
}
