//! Loading many hot names: how long until the kernel answers them, and what
//! they cost in daemon and kernel memory.

use std::{fs, path::Path, time::Instant};

use anyhow::{Context, ensure};
use dnslb_tests::{
    daemon::{Daemon, kdig},
    netns::{Rig, SERVER_ADDR},
};
use nix::sys::signal::Signal;

use crate::{
    responders::bench_zone,
    workload::{ORIGIN, write_zone},
};

pub struct HotLoad {
    pub names: usize,
    /// Whether the zone was signed online (every name's RRset signed and
    /// its signature written into the kernel).
    pub signed: bool,
    /// Parsing and checking the zone file.
    pub zone_seconds: f64,
    /// Writing every name into the kernel map.
    pub fill_seconds: f64,
    /// From starting the daemon until it serves.
    pub total_seconds: f64,
    /// The daemon's peak resident memory.
    pub daemon_peak_bytes: u64,
    /// The kernel's memory for the hot-name map.
    pub map_bytes: u64,
    /// The kernel's memory for the signature maps.
    pub signature_map_bytes: u64,
}

/// Loads a zone of `names` names, signed online when `signed`, and
/// measures it.
pub fn run(rig: &Rig, scratch: &Path, names: usize, signed: bool) -> anyhow::Result<HotLoad> {
    let dir = scratch.join(format!("hotload-{signed}"));
    fs::create_dir_all(&dir)?;
    let zone = write_zone(&dir, names)?;
    let capacity = (names + 16).to_string();
    let key_dir = dir.join("keys").display().to_string();
    let mut args = vec!["--hot-capacity", &capacity];
    if signed {
        args.extend(["--sign", ORIGIN, "--key-dir", &key_dir]);
    }
    let started = Instant::now();
    let daemon = Daemon::start_on_rig(rig, &bench_zone(&zone), true, &args)?;
    let total_seconds = started.elapsed().as_secs_f64();
    let log = daemon.log_text();
    let seconds_in = |marker: &str| -> anyhow::Result<f64> {
        let line = log
            .lines()
            .find(|line| line.contains(marker))
            .with_context(|| format!("no `{marker}` in:\n{log}"))?;
        let before_unit = line.trim_end().strip_suffix(" s").context("no seconds")?;
        Ok(before_unit.rsplit(' ').next().unwrap_or("").parse()?)
    };
    let zone_seconds = seconds_in("loaded zone")?;
    let fill_seconds = seconds_in("hot names written to the kernel")?;

    let last = format!("h{}.{ORIGIN}.", names - 1);
    let _pass = rig.attach_client_pass_through()?;
    let answer = kdig(
        &rig.client,
        &[&format!("@{SERVER_ADDR}"), "+dnssec", &last, "A"],
    )?;
    ensure!(
        answer.contains("\tA\t") && (!signed || answer.contains("\tRRSIG\t")),
        "{last} not answered{} after loading {names} names: {answer}",
        if signed { ", signed," } else { "" }
    );

    let pid = daemon.pid();
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let daemon_peak_bytes = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
        .context("no VmHWM")?
        * 1024;
    let map_bytes = hot_map_memlock(pid, names + 16)?;
    // The signature maps are sized twice the names (see `Dataplane::load`).
    let signature_map_bytes = hot_map_memlock(pid, 2 * (names + 16))?;
    daemon.stop(Signal::SIGTERM)?;
    Ok(HotLoad {
        names,
        signed,
        signature_map_bytes,
        zone_seconds,
        fill_seconds,
        total_seconds,
        daemon_peak_bytes,
        map_bytes,
    })
}

/// The `memlock` the kernel reports for the daemon's hot-name maps (the
/// maps with `max_entries`), summed, found among the process's descriptors.
fn hot_map_memlock(pid: u32, max_entries: usize) -> anyhow::Result<u64> {
    let mut total = None;
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let info = fs::read_to_string(entry?.path()).unwrap_or_default();
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.trim().parse::<u64>().ok())
        };
        if field("max_entries:") == Some(max_entries as u64) {
            *total.get_or_insert(0) +=
                field("memlock:").context("no memlock for a hot-name map")?;
        }
    }
    total.with_context(|| format!("no map with {max_entries} entries in process {pid}"))
}
