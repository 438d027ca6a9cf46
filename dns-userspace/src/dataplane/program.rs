//! Loading, attaching and talking to the XDP program.

use std::{
    collections::{BTreeSet, HashMap as StdHashMap},
    net::IpAddr,
    time::Duration,
};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{
        Array, HashMap, MapData, MapError, PerCpuArray,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use aya_log::EbpfLogger;
use dns_common::{
    CLIENT_NET_SERVICE_BITS, COUNTER_COUNT, ClientNetKey, Counter, HotA, HotAaaa, HotEntry,
    HotName, HotSet, NAME_CLASSES, Selection,
    cookie::CookieSecrets,
    guard::{Guard, RrlBucket},
    names,
};

use super::{
    HotType, HotValue,
    log::XdpLogger,
    signed::{HotSignatures, SigMaps, SigOwner, Written},
};
use crate::api::types::MapFill;

/// The compiled XDP program, built by this crate's build script.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dns-ebpf.o"));

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] EbpfError),
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("{}", .path.display())]
    Pin {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is not on a BPF filesystem: --pin needs a directory under one \
         (mount -t bpf bpf /sys/fs/bpf)", .path.display()
    )]
    NotBpffs { path: std::path::PathBuf },
    #[error("duplicating a map's descriptor: {0}")]
    Descriptor(std::io::Error),
    #[error("the pinned XDP link: {0}")]
    Link(#[from] aya::programs::links::LinkError),
    #[error("the XDP program's log: {0}")]
    Log(#[from] aya_log::Error),
    #[error("XDP program: {0}")]
    Program(#[from] ProgramError),
    #[error("kernel map: {0}")]
    Map(#[from] MapError),
    #[error(
        "the kernel's map of {record_type} names up to {names_up_to} bytes would need \
         {needed} entries during the change and holds {capacity}: raise --hot-capacity"
    )]
    NoRoom {
        record_type: &'static str,
        names_up_to: usize,
        needed: u64,
        capacity: u32,
    },
    #[error(
        "the client networks of the services would need {needed} entries during the change \
         (every generation written, and the largest service's next) and the kernel holds \
         {capacity}: raise --hot-capacity"
    )]
    NoRoomForNetworks { needed: u64, capacity: u32 },
    #[error("{0} is not a name the kernel can hold")]
    Name(String),
    #[error("{name} has the same digest as a name the kernel holds; the daemon answers it")]
    Collision { name: String },
    #[error(
        "kernel {release} is older than {MIN_KERNEL_TEXT}, which the XDP program needs \
         (bpf_xdp_load_bytes and bpf_xdp_store_bytes); run with --no-xdp"
    )]
    OldKernel { release: String },
    #[error(
        "{iface} does not take a native XDP program ({source}); its driver may lack XDP \
         support: try --xdp-mode skb (generic XDP, slower) or --no-xdp"
    )]
    NoNativeXdp { iface: String, source: ProgramError },
}

/// aya-log's level global in the program: the most verbose level that is
/// logged; 0 logs nothing, and the verifier then removes the logging code.
const AYA_LOG_LEVEL: &str = "AYA_LOG_LEVEL";

/// The program's log level: its decisions (logged at info) or nothing.
fn log_level(log: bool) -> u8 {
    if log { aya_log::Level::Info as u8 } else { 0 }
}

/// The oldest kernel with every helper the program calls.
const MIN_KERNEL: (u32, u32) = (5, 18);
const MIN_KERNEL_TEXT: &str = "5.18";

/// Refuses kernels older than [`MIN_KERNEL`], naming the running one; the
/// verifier's own message for a missing helper would not say what to do.
fn check_kernel() -> Result<(), DataplaneError> {
    match kernel_older_than(MIN_KERNEL) {
        Some(release) => Err(DataplaneError::OldKernel { release }),
        None => Ok(()),
    }
}

/// The running kernel's release, if it is older than `min` (major, minor);
/// `None` too when it cannot be told.
pub fn kernel_older_than(min: (u32, u32)) -> Option<String> {
    let uname = nix::sys::utsname::uname().ok()?;
    let release = uname.release().to_string_lossy().into_owned();
    release_is_older(&release, min).then_some(release)
}

/// Whether a kernel release ("6.18.0-1-amd64") is older than `min`.
fn release_is_older(release: &str, min: (u32, u32)) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) < min,
        _ => false,
    }
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

impl AttachMode {
    /// As the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        }
    }
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
#[derive(Clone, Debug)]
pub struct DataplaneOptions {
    /// UDP port answered in the kernel.
    pub port: u16,
    /// EDNS UDP payload size advertised and honoured.
    pub edns_payload: u16,
    /// How many hot names each kernel map holds, and how many client
    /// networks the client-dependent names may have between them.
    pub hot_capacity: u32,
    /// The bits of the name digest the kernel keys on: `u64::MAX`, except
    /// in tests that make names collide on purpose.
    pub digest_mask: u64,
    /// Whether the program logs its decisions (`--xdp-log`).
    pub log: bool,
    /// `--pin DIR`: maps and link pinned there, adopted by the next daemon.
    pub pin: Option<std::path::PathBuf>,
    /// The map layout version pinned maps are kept under; only tests
    /// change it (to act as a build with another layout).
    pub layout: u32,
    /// Client networks the rate limit keeps buckets for at once.
    pub rate_table: u32,
}

impl DataplaneOptions {
    /// The options a server on `port` uses, with the given payload size
    /// and capacity.
    pub fn new(port: u16, edns_payload: u16, hot_capacity: u32) -> DataplaneOptions {
        DataplaneOptions {
            port,
            edns_payload,
            hot_capacity,
            digest_mask: u64::MAX,
            log: false,
            pin: None,
            layout: dns_common::MAP_LAYOUT,
            rate_table: 65_536,
        }
    }
}

/// The loaded XDP program and its maps.
pub struct Dataplane {
    pub(super) ebpf: Ebpf,
    pub(super) hot: HotMaps,
    pub(super) client_nets_a: LpmTrie<MapData, ClientNetKey, HotA>,
    pub(super) client_nets_aaaa: LpmTrie<MapData, ClientNetKey, HotAaaa>,
    pub(super) cookie_secrets: Array<MapData, CookieSecrets>,
    guard: HashMap<MapData, u32, Guard>,
    /// The guard as last set, without its addresses.
    guard_value: Guard,
    /// The addresses the kernel answers on, as written to it.
    local_addrs: HashMap<MapData, [u8; 16], u8>,
    written_addrs: BTreeSet<IpAddr>,
    rate_exempt: LpmTrie<MapData, ClientNetKey, u8>,
    written_exempt: Vec<(IpAddr, u8)>,
    pub(super) counters: PerCpuArray<MapData, u64>,
    pub(super) branch_answers: PerCpuArray<MapData, u64>,
    pub(super) link: Option<XdpLinkId>,
    /// Reads the program's log records, with `--xdp-log`, until taken.
    pub(super) logger: Option<XdpLogger>,
    pub(super) digest_mask: u64,
    /// Entries each hot-name map holds.
    pub(super) capacity: u32,
    /// Entries in each hot-name map, in `MAP_CLASSES` order.
    pub(super) fill: [u64; 4],
    /// Which name each digest in the kernel belongs to, per record type,
    /// as a second, independent fingerprint of the name (a whole name would
    /// cost 264 bytes a digest): a second name with the same digest is left
    /// to the daemon. Were two names to match in both, the later would
    /// replace the earlier in the kernel, and the kernel's full-name compare
    /// would pass the earlier's queries to the daemon: never a wrong answer.
    pub(super) holders: StdHashMap<(HotType, u64), u64>,
    /// The signatures of signed values, and whose they are.
    pub(super) sigs: SigMaps,
    /// Names of signed zones the kernel answers without DO only (it holds
    /// no signatures for them), with the reason.
    passed_unsigned: StdHashMap<(HotType, u64), (HotName, &'static str)>,
    /// With `--pin`: where the maps and the link are pinned, and what a
    /// previous daemon left that this one has not written again.
    pub(super) pinned: Option<super::pin::Pinned>,
}

const SMALL: usize = NAME_CLASSES[0];
const LARGE: usize = NAME_CLASSES[1];

/// The hot-name maps by record type and longest name, in the order of
/// `Dataplane::fill`.
const MAP_CLASSES: [(HotType, usize); 4] = [
    (HotType::A, SMALL),
    (HotType::A, LARGE),
    (HotType::Aaaa, SMALL),
    (HotType::Aaaa, LARGE),
];

/// Whether `name` goes in the map of short names (`NAME_CLASSES[0]`).
pub(super) fn is_small(name: &HotName) -> bool {
    name.len() <= SMALL
}

/// Where an entry of `hot_type` and name class (`small`) is counted in
/// `Dataplane::fill`.
pub(super) fn map_class(hot_type: HotType, small: bool) -> usize {
    let large = usize::from(!small);
    match hot_type {
        HotType::A => large,
        HotType::Aaaa => 2 + large,
    }
}

/// The hot-name maps, one per record type and name size class
/// (`dns_common::NAME_CLASSES`), keyed by name digest.
pub(super) struct HotMaps {
    a_small: HashMap<MapData, u64, HotEntry<SMALL, 4>>,
    a_large: HashMap<MapData, u64, HotEntry<LARGE, 4>>,
    aaaa_small: HashMap<MapData, u64, HotEntry<SMALL, 16>>,
    aaaa_large: HashMap<MapData, u64, HotEntry<LARGE, 16>>,
}

impl HotMaps {
    fn take(ebpf: &mut Ebpf) -> Result<HotMaps, DataplaneError> {
        let [a_small, a_large] = names::HOT_A;
        let [aaaa_small, aaaa_large] = names::HOT_AAAA;
        Ok(HotMaps {
            a_small: HashMap::try_from(take_map(ebpf, a_small)?)?,
            a_large: HashMap::try_from(take_map(ebpf, a_large)?)?,
            aaaa_small: HashMap::try_from(take_map(ebpf, aaaa_small)?)?,
            aaaa_large: HashMap::try_from(take_map(ebpf, aaaa_large)?)?,
        })
    }

    /// Writes `value` for `name` under `digest`, whole.
    fn insert(&mut self, digest: u64, name: &HotName, value: &HotValue) -> Result<(), MapError> {
        let small = is_small(name);
        match value {
            HotValue::A(set) if small => put(&mut self.a_small, digest, name, set),
            HotValue::A(set) => put(&mut self.a_large, digest, name, set),
            HotValue::Aaaa(set) if small => put(&mut self.aaaa_small, digest, name, set),
            HotValue::Aaaa(set) => put(&mut self.aaaa_large, digest, name, set),
        }
    }

    /// The value `name` has under `digest`, if the entry there is its own.
    fn get(
        &self,
        digest: u64,
        name: &HotName,
        hot_type: HotType,
    ) -> Result<Option<HotValue>, MapError> {
        fn read<const N: usize, const W: usize>(
            map: &HashMap<MapData, u64, HotEntry<N, W>>,
            digest: u64,
            name: &HotName,
        ) -> Result<Option<HotSet<W>>, MapError> {
            match map.get(&digest, 0) {
                Ok(entry) => Ok((entry.name == name.padded()).then_some(entry.set)),
                Err(MapError::KeyNotFound) => Ok(None),
                Err(error) => Err(error),
            }
        }
        let small = is_small(name);
        Ok(match (hot_type, small) {
            (HotType::A, true) => read(&self.a_small, digest, name)?.map(HotValue::A),
            (HotType::A, false) => read(&self.a_large, digest, name)?.map(HotValue::A),
            (HotType::Aaaa, true) => read(&self.aaaa_small, digest, name)?.map(HotValue::Aaaa),
            (HotType::Aaaa, false) => read(&self.aaaa_large, digest, name)?.map(HotValue::Aaaa),
        })
    }

    fn remove(&mut self, digest: u64, name: &HotName, hot_type: HotType) -> Result<(), MapError> {
        self.remove_digest(digest, hot_type, is_small(name))
    }

    /// Removes the entry under `digest` of the map for `hot_type` and the
    /// name class (`small`: names up to 64 bytes).
    pub(super) fn remove_digest(
        &mut self,
        digest: u64,
        hot_type: HotType,
        small: bool,
    ) -> Result<(), MapError> {
        match (hot_type, small) {
            (HotType::A, true) => self.a_small.remove(&digest),
            (HotType::A, false) => self.a_large.remove(&digest),
            (HotType::Aaaa, true) => self.aaaa_small.remove(&digest),
            (HotType::Aaaa, false) => self.aaaa_large.remove(&digest),
        }
    }
}

impl HotMaps {
    /// Every entry the maps hold: record type, digest and name.
    pub(super) fn entries(&self) -> Result<Vec<(HotType, u64, HotName)>, MapError> {
        fn each<const N: usize, const W: usize>(
            map: &HashMap<MapData, u64, HotEntry<N, W>>,
            hot_type: HotType,
            out: &mut Vec<(HotType, u64, HotName)>,
        ) -> Result<(), MapError> {
            for item in map.iter() {
                let (digest, entry) = item?;
                if let Some(name) = HotName::from_padded(&entry.name) {
                    out.push((hot_type, digest, name));
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        each(&self.a_small, HotType::A, &mut out)?;
        each(&self.a_large, HotType::A, &mut out)?;
        each(&self.aaaa_small, HotType::Aaaa, &mut out)?;
        each(&self.aaaa_large, HotType::Aaaa, &mut out)?;
        Ok(out)
    }
}

/// Writes one hot-name entry: the name, padded to its class, and the set.
fn put<const N: usize, const W: usize>(
    map: &mut HashMap<MapData, u64, HotEntry<N, W>>,
    digest: u64,
    name: &HotName,
    set: &HotSet<W>,
) -> Result<(), MapError> {
    let entry = HotEntry {
        name: name.padded(),
        set: *set,
    };
    map.insert(digest, entry, 0)
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
        check_kernel()?;
        let log_level = log_level(options.log);
        let logging = u16::from(options.log);
        let mut loader = EbpfLoader::new();
        loader
            .override_global(names::GLOBAL_DNS_PORT, &options.port, true)
            .override_global(names::GLOBAL_EDNS_PAYLOAD, &options.edns_payload, true)
            .override_global(names::GLOBAL_DIGEST_MASK, &options.digest_mask, true)
            .override_global(AYA_LOG_LEVEL, &log_level, true)
            .override_global(names::GLOBAL_XDP_LOG, &logging, true);
        let sized = names::HOT_A
            .into_iter()
            .chain(names::HOT_AAAA)
            .chain([names::CLIENT_NETS_A, names::CLIENT_NETS_AAAA]);
        for map in sized {
            loader.map_max_entries(map, options.hot_capacity.max(1));
        }
        // A zone's name has one signature; a service's value, one per
        // endpoint: room for every name and then as much again.
        for map in names::SIGS {
            loader.map_max_entries(map, options.hot_capacity.max(1).saturating_mul(2));
        }
        loader.map_max_entries(names::RRL_BUCKETS, options.rate_table.max(1));
        let pin = super::pin::PinPlan::new(options.pin.as_deref(), options.layout)?;
        if let Some(pin) = &pin {
            for (name, path) in pin.map_paths() {
                loader.map_pin_path(name, path);
            }
        }
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        let logger = match options.log {
            true => Some(EbpfLogger::init(&mut ebpf)?),
            false => None,
        };
        xdp_program(&mut ebpf, names::PROGRAM)?.load()?;
        let hot = HotMaps::take(&mut ebpf)?;
        let client_nets_a = LpmTrie::try_from(take_map(&mut ebpf, names::CLIENT_NETS_A)?)?;
        let client_nets_aaaa = LpmTrie::try_from(take_map(&mut ebpf, names::CLIENT_NETS_AAAA)?)?;
        let cookie_secrets = Array::try_from(take_map(&mut ebpf, names::COOKIE_SECRETS)?)?;
        let guard = HashMap::try_from(take_map(&mut ebpf, names::GUARD)?)?;
        let local_addrs = HashMap::try_from(take_map(&mut ebpf, names::LOCAL_ADDRS)?)?;
        let rate_exempt = LpmTrie::try_from(take_map(&mut ebpf, names::RRL_EXEMPT)?)?;
        let counters = PerCpuArray::try_from(take_map(&mut ebpf, names::COUNTERS)?)?;
        let branch_answers = PerCpuArray::try_from(take_map(&mut ebpf, names::BRANCH_ANSWERS)?)?;
        let [sigs_small, sigs_large] = names::SIGS;
        let sigs = SigMaps::new(
            HashMap::try_from(take_map(&mut ebpf, sigs_small)?)?,
            HashMap::try_from(take_map(&mut ebpf, sigs_large)?)?,
        );
        let mut dataplane = Dataplane {
            ebpf,
            hot,
            client_nets_a,
            client_nets_aaaa,
            cookie_secrets,
            guard,
            guard_value: Guard::default(),
            local_addrs,
            written_addrs: BTreeSet::new(),
            rate_exempt,
            written_exempt: Vec::new(),
            counters,
            branch_answers,
            link: None,
            logger,
            digest_mask: options.digest_mask,
            capacity: options.hot_capacity.max(1),
            fill: [0; 4],
            holders: StdHashMap::new(),
            sigs,
            passed_unsigned: StdHashMap::new(),
            pinned: None,
        };
        if let Some(pin) = pin {
            dataplane.adopt(pin)?;
        }
        Ok(dataplane)
    }

    /// The size of the program as the verifier translated it, in bytes:
    /// with `--xdp-log` off, the logging code is gone from it.
    pub fn translated_size(&mut self) -> Result<u32, DataplaneError> {
        let info = xdp_program(&mut self.ebpf, names::PROGRAM)?.info()?;
        Ok(info.size_translated().unwrap_or(0))
    }

    /// The reader of the program's log records, if it logs (`--xdp-log`);
    /// the caller polls it (`aya_log::EbpfLogger::flush`).
    pub fn take_logger(&mut self) -> Option<XdpLogger> {
        self.logger.take()
    }

    /// Attaches to `interface`; the program answers from then on.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<(), DataplaneError> {
        if self.pinned.is_some() {
            return self.attach_pinned(interface, mode);
        }
        let program = xdp_program(&mut self.ebpf, names::PROGRAM)?;
        let link = program
            .attach(interface, mode.into())
            .map_err(|source| match mode {
                AttachMode::Native => DataplaneError::NoNativeXdp {
                    iface: interface.to_string(),
                    source,
                },
                AttachMode::Skb => source.into(),
            })?;
        self.link = Some(link);
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
    /// A name whose digest another name already holds is refused
    /// ([`DataplaneError::Collision`]) and stays with the daemon.
    pub fn set_hot(&mut self, name: &HotName, value: &HotValue) -> Result<(), DataplaneError> {
        self.set_hot_signed(name, value, None)
    }

    /// As [`Dataplane::set_hot`], with the signatures DO queries are
    /// answered with (`None`: the daemon answers them): written first,
    /// under a new set, and the name's old ones removed last.
    pub fn set_hot_signed(
        &mut self,
        name: &HotName,
        value: &HotValue,
        signatures: Option<&HotSignatures>,
    ) -> Result<(), DataplaneError> {
        let digest = name.digest() & self.digest_mask;
        let holder = (value.hot_type(), digest);
        let fingerprint = fingerprint(name);
        match self.holders.get(&holder) {
            Some(held) if *held != fingerprint => {
                return Err(DataplaneError::Collision {
                    name: display(name),
                });
            }
            _ => {}
        }
        let (written, unsigned) = self.write_signatures(value, signatures)?;
        let (fields, set) = written.unzip();
        let value = value.with_signatures(fields.unwrap_or_default());
        if let Err(error) = self.hot.insert(digest, name, &value) {
            if let Some(set) = set {
                self.sigs.discard(set);
            }
            return Err(error.into());
        }
        self.sigs
            .replace(SigOwner::Name(value.hot_type(), digest), set);
        match unsigned {
            Some(reason) => self.passed_unsigned.insert(holder, (*name, reason)),
            None => self.passed_unsigned.remove(&holder),
        };
        if self.holders.insert(holder, fingerprint).is_none() {
            self.fill[map_class(value.hot_type(), is_small(name))] += 1;
        }
        if let Some(pinned) = &mut self.pinned {
            pinned.stale.remove(&holder);
        }
        Ok(())
    }

    /// Stops answering `name`'s records of `hot_type` in the kernel; a
    /// missing name is not an error.
    pub fn remove_hot(&mut self, name: &HotName, hot_type: HotType) -> Result<(), DataplaneError> {
        let digest = name.digest() & self.digest_mask;
        if self.holders.get(&(hot_type, digest)) != Some(&fingerprint(name)) {
            return Ok(());
        }
        match self.hot.remove(digest, name, hot_type) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(error) => return Err(error.into()),
        }
        if self.holders.remove(&(hot_type, digest)).is_some() {
            self.fill[map_class(hot_type, is_small(name))] -= 1;
        }
        self.sigs.replace(SigOwner::Name(hot_type, digest), None);
        self.passed_unsigned.remove(&(hot_type, digest));
        Ok(())
    }

    /// What the kernel's maps say of `name`'s records of `hot_type` for a
    /// client in `client` (an address or network, IPv6 with IPv4 mapped):
    /// the value it answers from, following a client-dependent name into
    /// its client-net trie as the program does. `None`: not held.
    pub fn kernel_value(
        &self,
        name: &HotName,
        hot_type: HotType,
        client: [u8; 16],
        prefix: u8,
    ) -> Result<Option<HotValue>, DataplaneError> {
        let digest = name.digest() & self.digest_mask;
        let Some(value) = self.hot.get(digest, name, hot_type)? else {
            return Ok(None);
        };
        let (selection, service) = value.selection();
        if selection != Selection::ByClient as u8 {
            return Ok(Some(value));
        }
        let key = client_key(service, client, prefix);
        let found = match hot_type {
            HotType::A => self.client_nets_a.get(&key, 0).map(HotValue::A),
            HotType::Aaaa => self.client_nets_aaaa.get(&key, 0).map(HotValue::Aaaa),
        };
        match found {
            Ok(value) => Ok(Some(value)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Makes clients in `network`/`prefix` (IPv6, IPv4 mapped, and its
    /// prefix length in that space) get `value` for the names whose value
    /// points at generation `service`; replaces the whole value at once.
    pub fn set_client_net(
        &mut self,
        service: u32,
        network: [u8; 16],
        prefix: u8,
        value: &HotValue,
    ) -> Result<(), DataplaneError> {
        self.set_client_net_signed(service, network, prefix, value, None)
    }

    /// As [`Dataplane::set_client_net`], with the signatures of the
    /// network's answers, as for [`Dataplane::set_hot_signed`].
    pub fn set_client_net_signed(
        &mut self,
        service: u32,
        network: [u8; 16],
        prefix: u8,
        value: &HotValue,
        signatures: Option<&HotSignatures>,
    ) -> Result<(), DataplaneError> {
        let key = client_key(service, network, prefix);
        let (written, _) = self.write_signatures(value, signatures)?;
        let (fields, set) = written.unzip();
        let value = value.with_signatures(fields.unwrap_or_default());
        let inserted = match value {
            HotValue::A(set) => self.client_nets_a.insert(&key, set, 0),
            HotValue::Aaaa(set) => self.client_nets_aaaa.insert(&key, set, 0),
        };
        if let Err(error) = inserted {
            if let Some(set) = set {
                self.sigs.discard(set);
            }
            return Err(error.into());
        }
        let owner = SigOwner::ClientNet(value.hot_type(), service, network, prefix);
        self.sigs.replace(owner, set);
        Ok(())
    }

    /// Writes `signatures` of `value` under a new set: the set, or why the
    /// kernel will pass the value's DO queries (`None` for a value of an
    /// unsigned zone, or one the kernel does not answer). Full signature
    /// maps leave the value without: its DO queries go to the daemon.
    fn write_signatures(
        &mut self,
        value: &HotValue,
        signatures: Option<&HotSignatures>,
    ) -> Result<(Written, Option<&'static str>), DataplaneError> {
        let (written, unsigned) = match signatures {
            Some(signatures) => match self.sigs.write(signatures, value) {
                Ok(Some(written)) => (Some(written), None),
                Ok(None) => (
                    None,
                    Some("its signatures are longer than the kernel holds"),
                ),
                Err(MapError::SyscallError(error))
                    if error.io_error.raw_os_error() == Some(nix::libc::E2BIG) =>
                {
                    (
                        None,
                        Some("the signature maps are full (raise --hot-capacity)"),
                    )
                }
                Err(error) => return Err(error.into()),
            },
            None => (None, Some("no signatures for its answers")),
        };
        let passes = value.is_signed() && value.answers_in_kernel();
        Ok((written, unsigned.filter(|_| passes)))
    }

    /// Whether the kernel holds `value` for `name` as it is, with
    /// signatures not yet due at `now`: writing it again would change
    /// nothing.
    pub fn holds_signed(&self, name: &HotName, value: &HotValue, now: u64) -> bool {
        let digest = name.digest() & self.digest_mask;
        self.holders.get(&(value.hot_type(), digest)) == Some(&fingerprint(name))
            && self
                .sigs
                .holds(SigOwner::Name(value.hot_type(), digest), value, now)
    }

    /// Whether any signatures in the kernel are due to be written again
    /// at `now` (unix seconds).
    pub fn signatures_due(&self, now: u64) -> bool {
        self.sigs.any_due(now)
    }

    /// Makes every signature in the kernel due to be written again (the
    /// keys signing changed: a key that leaves must not be relied on).
    pub fn renew_all_signatures(&mut self) {
        self.sigs.all_due();
    }

    /// Whether `name`'s signatures of `hot_type` are due to be written
    /// again at `now`.
    pub fn name_signatures_due(&self, name: &HotName, hot_type: HotType, now: u64) -> bool {
        let digest = name.digest() & self.digest_mask;
        self.sigs.due(SigOwner::Name(hot_type, digest), now)
    }

    /// Values the kernel answers DO queries for with signatures, and the
    /// signature entries that takes.
    pub fn signed_values(&self) -> (usize, u64) {
        self.sigs.count()
    }

    /// Names of signed zones whose DO queries the kernel passes to the
    /// daemon, holding no signatures for them: each with its type and why.
    pub fn passed_unsigned(&self) -> impl Iterator<Item = (&HotName, HotType, &'static str)> {
        self.passed_unsigned
            .iter()
            .map(|((hot_type, _), (name, reason))| (name, *hot_type, *reason))
    }

    /// Forgets one client network of generation `service`.
    pub fn remove_client_net(
        &mut self,
        hot_type: HotType,
        service: u32,
        network: [u8; 16],
        prefix: u8,
    ) -> Result<(), DataplaneError> {
        let key = client_key(service, network, prefix);
        let removed = match hot_type {
            HotType::A => self.client_nets_a.remove(&key),
            HotType::Aaaa => self.client_nets_aaaa.remove(&key),
        };
        match removed {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(error) => return Err(error.into()),
        }
        let owner = SigOwner::ClientNet(hot_type, service, network, prefix);
        self.sigs.replace(owner, None);
        Ok(())
    }

    /// Tells the program which frames are addressed to it (`guard.mac`)
    /// and how it limits answers; until the first call it answers nothing.
    pub fn set_guard(&mut self, guard: &Guard) -> Result<(), DataplaneError> {
        self.guard_value = *guard;
        self.write_guard()
    }

    /// Writes the guard with the addresses answered on, whole.
    fn write_guard(&mut self) -> Result<(), DataplaneError> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for addr in &self.written_addrs {
            match addr {
                IpAddr::V4(addr) => v4.push(addr.octets()),
                IpAddr::V6(addr) => v6.push(addr.octets()),
            }
        }
        let guard = Guard {
            ready: 1,
            ..self.guard_value
        }
        .with_addrs(&v4, &v6);
        self.guard.insert(0, guard, 0)?;
        Ok(())
    }

    /// Makes `addrs` the addresses the program answers on. The map of
    /// them all is added to before the guard changes and removed from
    /// after, so that an address staying is never missing from either.
    pub fn set_local_addrs(&mut self, addrs: &BTreeSet<IpAddr>) -> Result<(), DataplaneError> {
        for added in addrs.difference(&self.written_addrs) {
            self.local_addrs.insert(mapped(*added), 1, 0)?;
        }
        let gone: Vec<IpAddr> = self.written_addrs.difference(addrs).copied().collect();
        self.written_addrs = addrs.clone();
        self.write_guard()?;
        for gone in gone {
            match self.local_addrs.remove(&mapped(gone)) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Makes `networks` (address, prefix length) the client networks the
    /// rate limit leaves alone.
    pub fn set_rate_exempt(&mut self, networks: &[(IpAddr, u8)]) -> Result<(), DataplaneError> {
        for &(addr, prefix) in &self.written_exempt {
            match self.rate_exempt.remove(&exempt_key(addr, prefix)) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(error) => return Err(error.into()),
            }
        }
        self.written_exempt.clear();
        for &(addr, prefix) in networks {
            self.rate_exempt.insert(&exempt_key(addr, prefix), 1, 0)?;
            self.written_exempt.push((addr, prefix));
        }
        Ok(())
    }

    /// A second handle on the rate limit's buckets, for the daemon's UDP
    /// threads, which take their answers from the same buckets.
    pub fn rate_buckets(&self) -> Result<HashMap<MapData, u64, RrlBucket>, DataplaneError> {
        let map = self
            .ebpf
            .map(names::RRL_BUCKETS)
            .ok_or(DataplaneError::Missing(names::RRL_BUCKETS))?;
        let aya::maps::Map::LruHashMap(data) = map else {
            return Err(DataplaneError::Missing(names::RRL_BUCKETS));
        };
        let fd = std::os::fd::AsFd::as_fd(data.fd())
            .try_clone_to_owned()
            .map_err(DataplaneError::Descriptor)?;
        Ok(HashMap::try_from(aya::maps::Map::LruHashMap(
            MapData::from_fd(fd)?,
        ))?)
    }

    /// Gives the kernel the cookie secrets and the clock offset.
    pub fn set_cookie_secrets(&mut self, secrets: &CookieSecrets) -> Result<(), DataplaneError> {
        self.cookie_secrets.set(0, secrets, 0)?;
        Ok(())
    }

    /// Answers the kernel gave per policy branch slot, summed over CPUs.
    pub fn branch_answers(&self, slot: u16) -> Result<u64, DataplaneError> {
        Ok(self.branch_answers.get(&u32::from(slot), 0)?.iter().sum())
    }

    /// Checks, before anything is written, that the maps have room for a
    /// change: `names` written (those not held yet take a new entry each,
    /// while every entry held now stays until the change is done), and at
    /// most `networks` client networks at once. Names of the zones and the
    /// services alike.
    pub fn check_room(
        &self,
        names: impl IntoIterator<Item = (HotName, HotType)>,
        networks: u64,
    ) -> Result<(), DataplaneError> {
        if networks > u64::from(self.capacity) {
            return Err(DataplaneError::NoRoomForNetworks {
                needed: networks,
                capacity: self.capacity,
            });
        }
        let mut added = std::collections::HashSet::new();
        let mut needed = self.fill;
        for (name, hot_type) in names {
            let holder = (hot_type, name.digest() & self.digest_mask);
            if !self.holders.contains_key(&holder) && added.insert(holder) {
                needed[map_class(hot_type, is_small(&name))] += 1;
            }
        }
        let full = MAP_CLASSES
            .iter()
            .zip(needed)
            .find(|(_, needed)| *needed > u64::from(self.capacity));
        match full {
            Some((&(hot_type, names_up_to), needed)) => Err(DataplaneError::NoRoom {
                record_type: hot_type.name(),
                names_up_to,
                needed,
                capacity: self.capacity,
            }),
            None => Ok(()),
        }
    }

    /// Entries each map holds at most: the hot-name maps and the
    /// client-network tries alike.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Entries in each hot-name map, and capacity. Counted as entries are
    /// written and removed: reading the kernel's maps key by key would
    /// take a second at a million names.
    pub fn map_fill(&self) -> Vec<MapFill> {
        MAP_CLASSES
            .iter()
            .zip(self.fill)
            .map(|(&(hot_type, names_up_to), entries)| MapFill {
                record_type: hot_type.name().to_owned(),
                names_up_to,
                entries,
                capacity: self.capacity,
            })
            .collect()
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
            tracing::error!("detaching the XDP program: {error}");
        }
    }
}

/// An address as the program's maps key it: IPv6, IPv4 mapped.
fn mapped(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The exemption trie's key for `addr`/`prefix` (an IPv4 prefix counts
/// from the start of the IPv4 address): a client-net key of service 0.
fn exempt_key(addr: IpAddr, prefix: u8) -> Key<ClientNetKey> {
    let prefix = match addr {
        IpAddr::V4(_) => dns_common::V4_MAPPED_BITS as u8 + prefix.min(32),
        IpAddr::V6(_) => prefix.min(128),
    };
    client_key(0, mapped(addr), prefix)
}

fn client_key(service: u32, network: [u8; 16], prefix: u8) -> Key<ClientNetKey> {
    let data = ClientNetKey {
        service: service.to_be_bytes(),
        addr: network,
    };
    Key::new(CLIENT_NET_SERVICE_BITS + u32::from(prefix.min(128)), data)
}

/// A second hash of the name, independent of the kernel's digest (another
/// seed, then a different finishing mix), for telling names apart.
pub(super) fn fingerprint(name: &HotName) -> u64 {
    let seeded = name
        .wire()
        .iter()
        .fold(0x8422_2325_cbf2_9ce4_u64, |state, &byte| {
            (state ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    seeded ^ (seeded >> 31)
}

/// A kernel name as people write it, for messages.
fn display(name: &HotName) -> String {
    crate::zone::WireName::from(name.wire())
        .to_name()
        .to_string()
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

pub(super) fn xdp_program<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut Xdp, DataplaneError> {
    let program = ebpf
        .program_mut(name)
        .ok_or(DataplaneError::Missing(name))?;
    Ok(program.try_into()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_are_compared_by_major_and_minor() {
        assert!(release_is_older("5.15.0-91-generic", MIN_KERNEL));
        assert!(release_is_older("4.19.0", MIN_KERNEL));
        assert!(!release_is_older("5.18.0", MIN_KERNEL));
        assert!(!release_is_older("6.1.0-18-amd64", MIN_KERNEL));
        assert!(
            !release_is_older("unknown", MIN_KERNEL),
            "unparsable: let the load tell"
        );
    }
}
