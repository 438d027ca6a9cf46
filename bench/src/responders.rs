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

    /// Starts the responder and waits until it answers, or finds that it
    /// cannot run on this machine. dnslb runs with `cookie_arg` (its
    /// cookie secret).
    pub fn start(
        self,
        rig: &Rig,
        zone: &Path,
        scratch: &Path,
        cookie_arg: &str,
    ) -> anyhow::Result<Started> {
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
        if self == Responder::Floor {
            return Ok(Started::Running(running));
        }
        match (wait_until_answering(rig, running)?, self) {
            // Knot DNS stops when its XDP program cannot be loaded or
            // attached (on some kernels it cannot): this kernel cannot run
            // it, which is no failure of the benchmark.
            (Started::Unavailable(log), Responder::KnotXdp) => {
                Ok(Started::Unavailable(xdp_failure(&log)))
            }
            (Started::Unavailable(log), _) => bail!("{} stopped:\n{log}", self.label()),
            (Started::Running(_), Responder::KnotXdp) if !rig.server_has_xdp()? => {
                Ok(Started::Unavailable(
                    "Knot DNS answers, but no XDP program is attached to the server's interface"
                        .into(),
                ))
            }
            (started, _) => Ok(started),
        }
    }
}

/// A responder started, or why it cannot run here.
pub enum Started {
    Running(Running),
    /// What its log says of why it stopped.
    Unavailable(String),
}

/// Why a server stopped, from its log: the BPF loader's lines and the
/// server's warnings and errors, without their timestamps.
fn xdp_failure(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| {
            ["libbpf", "warning:", "error:", "critical:"]
                .iter()
                .any(|mark| line.contains(mark))
        })
        .map(|line| match line.split_once("+0000 ") {
            Some((_, text)) => text,
            None => line,
        })
        .collect();
    if lines.is_empty() {
        "it stopped without saying why".into()
    } else {
        lines.join("; ")
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

/// Polls with kdig from the client until the server answers `www`, or
/// its process has ended (then [`Started::Unavailable`] with its log).
fn wait_until_answering(rig: &Rig, mut running: Running) -> anyhow::Result<Started> {
    // XDP answers reach the client only through its pass-through program.
    let _pass = rig.attach_client_pass_through()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let server = format!("@{SERVER_ADDR}");
    let name = format!("www.{ORIGIN}.");
    loop {
        let answer =
            kdig(&rig.client, &[&server, "+short", "+timeout=1", &name, "A"]).unwrap_or_default();
        if answer.contains("198.18.10.") {
            return Ok(Started::Running(running));
        }
        if let Running::Process(process) = &mut running
            && process.exited()?.is_some()
        {
            return Ok(Started::Unavailable(process.log_text()));
        }
        if Instant::now() > deadline {
            bail!(
                "the responder did not answer {name} within 60 s:\n{}",
                running.log()
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knots_xdp_failure_is_told_from_its_log() {
        // Knot DNS 3.2's log when its XDP program cannot be attached.
        let log = "2026-12-06T20:55:07+0000 info: binding to interface 198.18.0.2@53\n\
                   2026-12-06T20:55:07+0000 info: binding to XDP interface kv2\n\
                   libbpf: Kernel error message: veth: Peer MTU is too large to set XDP\n\
                   2026-12-06T20:55:07+0000 warning: failed to initialize XDP interface kv2@53, queue 0 (file descriptor error)\n\
                   2026-12-06T20:55:07+0000 critical: failed to configure server\n";
        assert_eq!(
            xdp_failure(log),
            "libbpf: Kernel error message: veth: Peer MTU is too large to set XDP; \
             warning: failed to initialize XDP interface kv2@53, queue 0 (file descriptor error); \
             critical: failed to configure server"
        );
        assert_eq!(xdp_failure("nothing\n"), "it stopped without saying why");
    }
}
