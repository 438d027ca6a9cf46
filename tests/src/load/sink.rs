//! The reply sink's userspace side: loads `tests/sink-ebpf` onto the
//! client's interface for the generator's ports, reads its counters, and
//! detaches it when dropped.

use std::ops::Range;

use anyhow::Context;
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray},
    programs::{Xdp, XdpMode},
};
use sink_ebpf::{
    GLOBAL_PORT_BASE, GLOBAL_PORT_COUNT, GLOBAL_SERVER_PORT, PROGRAM, TALLY_MAP, Tally,
};

use crate::netns::Netns;

static SINK_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sink-ebpf.o"));

/// The replies the sink has counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replies {
    pub total: u64,
    /// With TC set (a rate limiter's slips, say).
    pub truncated: u64,
    pub no_error: u64,
    pub nx_domain: u64,
    /// Any other response code.
    pub other_rcode: u64,
}

/// The sink, attached for as long as this lives (the program is detached
/// when the `Ebpf` it belongs to drops).
pub struct ReplySink {
    tally: PerCpuArray<MapData, u64>,
    _ebpf: Ebpf,
}

impl ReplySink {
    /// Attaches the sink to `iface` in `netns` (native mode, the only one
    /// in which veth hands it the frames a server sends with `XDP_TX`),
    /// counting replies from `server_port` to `ports`.
    pub fn attach(
        netns: &Netns,
        iface: &str,
        server_port: u16,
        ports: Range<u16>,
    ) -> anyhow::Result<ReplySink> {
        let count = ports.end.saturating_sub(ports.start);
        let mut ebpf = EbpfLoader::new()
            .override_global(GLOBAL_SERVER_PORT, &server_port, true)
            .override_global(GLOBAL_PORT_BASE, &ports.start, true)
            .override_global(GLOBAL_PORT_COUNT, &count, true)
            .load(SINK_OBJECT)
            .context("loading the reply sink")?;
        let tally = PerCpuArray::try_from(
            ebpf.take_map(TALLY_MAP)
                .context("the reply sink has no tally map")?,
        )?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .context("the reply sink has no program")?
            .try_into()?;
        program.load().context("verifying the reply sink")?;
        let iface = iface.to_owned();
        netns
            .run(|| program.attach(&iface, XdpMode::Driver))?
            .with_context(|| format!("attaching the reply sink to {iface}"))?;
        Ok(ReplySink { tally, _ebpf: ebpf })
    }

    /// The counts so far, summed over the CPUs.
    pub fn replies(&self) -> anyhow::Result<Replies> {
        let read = |tally: Tally| -> anyhow::Result<u64> {
            Ok(self.tally.get(&(tally as u32), 0)?.iter().sum())
        };
        Ok(Replies {
            total: read(Tally::Replies)?,
            truncated: read(Tally::Truncated)?,
            no_error: read(Tally::NoError)?,
            nx_domain: read(Tally::NxDomain)?,
            other_rcode: read(Tally::OtherRcode)?,
        })
    }
}
