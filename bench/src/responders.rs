//! The servers compared, each started on the rig's server side with the
//! benchmark zone and stopped when its handle drops.

use std::{
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, XdpMode},
};
use dnslb_tests::{
    daemon::{Daemon, ZoneFile, kdig},
    netns::{Rig, SERVER_ADDR},
    peers::{PeerZone, knot_config, nsd_config},
    process::Process,
};

use crate::workload::{Mix, ORIGIN, WEIGHTED_NAME};

/// The floor: the least an XDP responder can do (bench/floor-ebpf).
pub static FLOOR_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floor-ebpf.o"));

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Responder {
    Floor,
    DnslbXdp,
    /// The daemon with XDP and a policy file that makes the weighted
    /// name's three addresses a weighted policy (1:2:3).
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

    /// Whether this responder takes part in `mix`: the weighted policy on
    /// the weighted name only; the resolver-shaped mixes (EDNS options,
    /// IPv6, AAAA) are for the XDP responders.
    pub fn runs(self, mix: &Mix) -> bool {
        match self {
            Responder::DnslbXdpWeighted => mix.weighted,
            Responder::Floor | Responder::DnslbXdp | Responder::KnotXdp => true,
            Responder::DnslbUserspace | Responder::KnotUdp | Responder::Nsd => !mix.resolver_shaped,
        }
    }

    /// Starts the responder and waits until it answers. dnslb runs with
    /// `cookie_arg` (its cookie secret).
    pub fn start(
        self,
        rig: &Rig,
        zone: &Path,
        scratch: &Path,
        cookie_arg: &str,
    ) -> anyhow::Result<Running> {
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
                    &["--hot-capacity", "1100000", cookie_arg],
                )?)
            }
            Responder::DnslbXdpWeighted => {
                let policy = weighted_policy(scratch)?.display().to_string();
                Running::Dnslb(Daemon::start_on_rig(
                    rig,
                    &bench_zone(zone),
                    true,
                    &["--hot-capacity", "1100000", "--config", &policy, cookie_arg],
                )?)
            }
            Responder::KnotXdp | Responder::KnotUdp => {
                let xdp = (self == Responder::KnotXdp).then_some(rig.server_if.as_str());
                Running::Process(start_knot(rig, zone, scratch, xdp)?)
            }
            Responder::Nsd => Running::Process(start_nsd(rig, zone, scratch)?),
        };
        if self != Responder::Floor {
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
    Process(Process),
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

/// A policy file making the weighted name a weighted policy over its three
/// addresses, weights 1, 2 and 3.
fn weighted_policy(scratch: &Path) -> anyhow::Result<std::path::PathBuf> {
    let path = scratch.join("weighted.toml");
    let endpoints: Vec<String> = (1..=3)
        .map(|i| format!("{{ address = \"198.18.11.{i}\", weight = {i} }}"))
        .collect();
    std::fs::write(
        &path,
        format!(
            "[pool.weighted]\nendpoints = [{}]\n\n[service.weighted]\nname = \"{WEIGHTED_NAME}.{ORIGIN}.\"\n\
             ttl = 300\npolicy = {{ kind = \"weighted\", pool = \"weighted\" }}\n",
            endpoints.join(", ")
        ),
    )?;
    Ok(path)
}

fn start_knot(
    rig: &Rig,
    zone: &Path,
    scratch: &Path,
    xdp: Option<&str>,
) -> anyhow::Result<Process> {
    let dir = scratch.join(if xdp.is_some() {
        "knot-xdp"
    } else {
        "knot-udp"
    });
    let zones = [PeerZone {
        origin: ORIGIN,
        file: zone,
    }];
    let config = knot_config(&dir, &format!("{SERVER_ADDR}@53"), xdp, &zones)?;
    let mut command = rig.server.command("knotd");
    command.arg("-c").arg(config);
    Process::spawn(command, dir.join("knotd.log"))
}

fn start_nsd(rig: &Rig, zone: &Path, scratch: &Path) -> anyhow::Result<Process> {
    let dir = scratch.join("nsd");
    let config = nsd_config(
        &dir,
        SERVER_ADDR,
        &[PeerZone {
            origin: ORIGIN,
            file: zone,
        }],
    )?;
    let mut command = rig.server.command("nsd");
    command.arg("-d").arg("-c").arg(config);
    Process::spawn(command, dir.join("nsd.log"))
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
            Running::Floor { .. } => String::new(),
            Running::Dnslb(daemon) => daemon.log_text(),
            Running::Process(process) => process.log_text(),
        }
    }
}
