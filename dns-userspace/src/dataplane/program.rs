//! Loading, attaching and talking to the XDP program.

use std::{net::Ipv4Addr, time::Duration};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{
        HashMap, MapData, MapError, PerCpuArray,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use dns_common::{
    CLIENT_NET_SERVICE_BITS, COUNTER_COUNT, ClientNet, Counter, HotA, HotName, NameKey, names,
};

/// The compiled XDP program, built by this crate's build script.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dns-ebpf.o"));

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] EbpfError),
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("XDP program: {0}")]
    Program(#[from] ProgramError),
    #[error("kernel map: {0}")]
    Map(#[from] MapError),
    #[error("{0} is not a name the kernel can hold")]
    Name(String),
}

/// How the program runs on the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// In the driver, before any socket buffer exists: the fast path.
    Native,
    /// Generic XDP, after the kernel built a socket buffer: works on any
    /// interface, for testing.
    Skb,
}

impl From<AttachMode> for XdpMode {
    fn from(mode: AttachMode) -> XdpMode {
        match mode {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Skb => XdpMode::Skb,
        }
    }
}

/// What the program is told at load time.
#[derive(Clone, Copy, Debug)]
pub struct DataplaneOptions {
    /// UDP port answered in the kernel.
    pub port: u16,
    /// EDNS UDP payload size advertised and honoured.
    pub edns_payload: u16,
    /// How many hot names the kernel map holds, and how many client
    /// networks the client-dependent names may have between them.
    pub hot_capacity: u32,
}

/// The loaded XDP program and its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    hot_a: HotMaps,
    client_nets: LpmTrie<MapData, ClientNet, HotA>,
    counters: PerCpuArray<MapData, u64>,
    branch_answers: PerCpuArray<MapData, u64>,
    link: Option<XdpLinkId>,
}

/// The hot-name maps, one per name size class (`dns_common::NAME_CLASSES`).
struct HotMaps {
    class_32: HashMap<MapData, NameKey<32>, HotA>,
    class_64: HashMap<MapData, NameKey<64>, HotA>,
    class_128: HashMap<MapData, NameKey<128>, HotA>,
    class_256: HashMap<MapData, NameKey<256>, HotA>,
}

/// Runs `$body` with `$map` bound to `$name`'s class map and `$key` to its
/// key in that map: the classes differ in key type, so this cannot be a
/// plain function over them.
macro_rules! with_class_map {
    ($maps:expr, $name:expr, |$map:ident, $key:ident| $body:expr) => {
        match $name.class() {
            0 => {
                let ($map, $key) = (&mut $maps.class_32, $name.key::<32>());
                $body
            }
            1 => {
                let ($map, $key) = (&mut $maps.class_64, $name.key::<64>());
                $body
            }
            2 => {
                let ($map, $key) = (&mut $maps.class_128, $name.key::<128>());
                $body
            }
            _ => {
                let ($map, $key) = (&mut $maps.class_256, $name.key::<256>());
                $body
            }
        }
    };
}

impl HotMaps {
    fn take(ebpf: &mut Ebpf) -> Result<HotMaps, DataplaneError> {
        let [m32, m64, m128, m256] = names::HOT_A;
        Ok(HotMaps {
            class_32: HashMap::try_from(take_map(ebpf, m32)?)?,
            class_64: HashMap::try_from(take_map(ebpf, m64)?)?,
            class_128: HashMap::try_from(take_map(ebpf, m128)?)?,
            class_256: HashMap::try_from(take_map(ebpf, m256)?)?,
        })
    }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, DataplaneError> {
    ebpf.take_map(name).ok_or(DataplaneError::Missing(name))
}

/// Counter values summed over all CPUs, indexed by [`Counter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters([u64; COUNTER_COUNT as usize]);

impl KernelCounters {
    pub fn get(&self, counter: Counter) -> u64 {
        self.0[counter as usize]
    }

    /// Every packet lands in exactly one counter.
    pub fn seen(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// One run of the program through `BPF_PROG_TEST_RUN`.
#[derive(Debug)]
pub struct TestOutcome {
    /// The XDP action returned (`XDP_PASS` = 2, `XDP_TX` = 3).
    pub action: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// The kernel's mean time per run.
    pub mean: Duration,
}

impl Dataplane {
    /// Loads the program into the kernel (verifying it), without attaching.
    pub fn load(options: DataplaneOptions) -> Result<Dataplane, DataplaneError> {
        let mut loader = EbpfLoader::new();
        loader
            .override_global(names::GLOBAL_DNS_PORT, &options.port, true)
            .override_global(names::GLOBAL_EDNS_PAYLOAD, &options.edns_payload, true);
        for map in names::HOT_A.into_iter().chain([names::CLIENT_NETS]) {
            loader.map_max_entries(map, options.hot_capacity.max(1));
        }
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        xdp_program(&mut ebpf, names::PROGRAM)?.load()?;
        let hot_a = HotMaps::take(&mut ebpf)?;
        let client_nets = LpmTrie::try_from(take_map(&mut ebpf, names::CLIENT_NETS)?)?;
        let counters = PerCpuArray::try_from(take_map(&mut ebpf, names::COUNTERS)?)?;
        let branch_answers = PerCpuArray::try_from(take_map(&mut ebpf, names::BRANCH_ANSWERS)?)?;
        Ok(Dataplane {
            ebpf,
            hot_a,
            client_nets,
            counters,
            branch_answers,
            link: None,
        })
    }

    /// Attaches to `interface`; the program answers from then on.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<(), DataplaneError> {
        let program = xdp_program(&mut self.ebpf, names::PROGRAM)?;
        self.link = Some(program.attach(interface, mode.into())?);
        Ok(())
    }

    /// Detaches from the interface. Dropping the `Dataplane` does too.
    pub fn detach(&mut self) -> Result<(), DataplaneError> {
        if let Some(link) = self.link.take() {
            xdp_program(&mut self.ebpf, names::PROGRAM)?.detach(link)?;
        }
        Ok(())
    }

    /// Makes the kernel answer `name` with `value`, replacing what it had.
    /// The kernel swaps the whole value at once: no query sees half of it.
    pub fn set_hot_a(&mut self, name: &HotName, value: &HotA) -> Result<(), DataplaneError> {
        with_class_map!(self.hot_a, name, |map, key| map.insert(key, value, 0))?;
        Ok(())
    }

    /// Stops answering `name` in the kernel; a missing name is not an error.
    pub fn remove_hot_a(&mut self, name: &HotName) -> Result<(), DataplaneError> {
        match with_class_map!(self.hot_a, name, |map, key| map.remove(&key)) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Makes clients in `network`/`len` get `value` for the names whose
    /// value points at generation `service`; replaces the whole value at once.
    pub fn set_client_net(
        &mut self,
        service: u32,
        network: Ipv4Addr,
        len: u8,
        value: &HotA,
    ) -> Result<(), DataplaneError> {
        let key = client_key(service, network, len);
        self.client_nets.insert(&key, value, 0)?;
        Ok(())
    }

    /// Forgets one client network of generation `service`.
    pub fn remove_client_net(
        &mut self,
        service: u32,
        network: Ipv4Addr,
        len: u8,
    ) -> Result<(), DataplaneError> {
        match self.client_nets.remove(&client_key(service, network, len)) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Answers the kernel gave per policy branch slot, summed over CPUs.
    pub fn branch_answers(&self, slot: u16) -> Result<u64, DataplaneError> {
        Ok(self.branch_answers.get(&u32::from(slot), 0)?.iter().sum())
    }

    /// The program's counters, summed over CPUs.
    pub fn counters(&self) -> Result<KernelCounters, DataplaneError> {
        let mut totals = KernelCounters::default();
        for counter in Counter::ALL {
            let per_cpu = self.counters.get(&(counter as u32), 0)?;
            totals.0[counter as usize] = per_cpu.iter().sum();
        }
        Ok(totals)
    }

    /// Runs the program on `frame` `repeat` times in the kernel without
    /// attaching it (`BPF_PROG_TEST_RUN`), for tests and the micro-benchmark.
    pub fn test_run(&mut self, frame: &[u8], repeat: u32) -> Result<TestOutcome, DataplaneError> {
        // Room for the largest answer the program may grow a frame to.
        let mut out = vec![0u8; frame.len() + 1024];
        let program = xdp_program(&mut self.ebpf, names::PROGRAM)?;
        let result = program.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        })?;
        out.truncate(result.data_size_out as usize);
        Ok(TestOutcome {
            action: result.return_value,
            frame: out,
            mean: result.duration,
        })
    }
}

impl Dataplane {
    /// The kernel's mean time per run of the answering program on `frame`,
    /// over `runs` runs (see [`time_runs`]).
    pub fn time_runs(&mut self, frame: &[u8], runs: u32) -> Result<Duration, DataplaneError> {
        Ok(time_runs(
            xdp_program(&mut self.ebpf, names::PROGRAM)?,
            frame,
            runs,
        )?)
    }
}

/// Times `program` on `frame` with `BPF_PROG_TEST_RUN`, one run per call
/// so that every run sees the original frame (repeats within a call would
/// feed the program its own previous answer). Returns the kernel's mean
/// time per run over `runs` calls; each includes the kernel's fixed cost
/// of timing a run, which the pass-everything program measures alone.
pub fn time_runs(program: &Xdp, frame: &[u8], runs: u32) -> Result<Duration, ProgramError> {
    let mut out = vec![0u8; frame.len() + 1024];
    let mut total = Duration::ZERO;
    for _ in 0..runs {
        let result = program.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })?;
        total += result.duration;
    }
    Ok(total / runs.max(1))
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if let Err(error) = self.detach() {
            log::error!("detaching the XDP program: {error}");
        }
    }
}

fn client_key(service: u32, network: Ipv4Addr, len: u8) -> Key<ClientNet> {
    let data = ClientNet {
        service: service.to_be_bytes(),
        addr: network.octets(),
    };
    Key::new(CLIENT_NET_SERVICE_BITS + u32::from(len.min(32)), data)
}

/// The pass-everything program attached to an interface; detached on drop.
/// On a veth pair, frames sent with `XDP_TX` reach the peer only when the
/// peer has an XDP program, so test rigs and the demo put this one there.
pub struct PassThrough {
    _ebpf: Ebpf,
}

/// Attaches the pass-everything program to `interface`.
pub fn attach_pass_through(
    interface: &str,
    mode: AttachMode,
) -> Result<PassThrough, DataplaneError> {
    // The maps are allocated as filled, so the unused ones cost nothing.
    let mut ebpf = EbpfLoader::new().load(EBPF_OBJECT)?;
    let program = xdp_program(&mut ebpf, names::PASS_PROGRAM)?;
    program.load()?;
    program.attach(interface, mode.into())?;
    Ok(PassThrough { _ebpf: ebpf })
}

fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, DataplaneError> {
    let program = ebpf
        .program_mut(name)
        .ok_or(DataplaneError::Missing(name))?;
    Ok(program.try_into()?)
}
