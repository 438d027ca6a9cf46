//! The contract between dnslb's XDP program and its daemon.
//!
//! Everything the kernel reads from userspace, and everything userspace reads
//! back, is defined here once, as `#[repr(C)]` plain data. Userspace does all
//! the thinking (weights, rotation sets, pre-encoded TTLs and addresses) so the
//! kernel program only copies bytes.
#![cfg_attr(not(test), no_std)]

pub mod cookie;
pub mod guard;
pub mod signatures;
pub mod wire;

/// Longest domain name on the wire, root label included (RFC 1035 §3.1).
pub const MAX_NAME_LEN: usize = 255;

/// Endpoints one hot name can carry in the kernel.
pub const MAX_ENDPOINTS: usize = 16;

/// Hot names are looked up by a 64-bit digest of the lowercased name, and
/// the name itself is kept in the map value and compared, so a digest
/// collision can never give a wrong answer. Values live in one map per
/// size class so that a short name does not carry a 256-byte copy: a name
/// of `len` wire bytes lives in the first class that holds it.
pub const NAME_CLASSES: [usize; 2] = [64, 256];

/// The index into [`NAME_CLASSES`] for a name of `len` wire bytes.
pub const fn name_class(len: usize) -> usize {
    if len <= NAME_CLASSES[0] { 0 } else { 1 }
}

/// Where the name digest starts.
pub const DIGEST_SEED: u64 = 0x243f_6a88_85a3_08d3;

/// One step of the name digest: mixes in the next 8 bytes of the
/// lowercased, zero-padded name (read little-endian). After the last word
/// the name's length is mixed in the same way. Multiply-xorshift: cheap
/// in the kernel, and spreads single-bit differences over the whole word.
#[inline(always)]
pub const fn digest_step(state: u64, word: u64) -> u64 {
    let mixed = (state ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    mixed ^ (mixed >> 29)
}

/// The version of the maps' key and value layouts. Bumped with any change
/// to them: a daemon restarted with `--pin` adopts pinned maps only of its
/// own layout, and otherwise fills new ones and swaps the program.
pub const MAP_LAYOUT: u32 = 3;

/// Map and program names, shared so a rename cannot split the two sides.
pub mod names {
    /// `HashMap<u64, HotEntry<N, 4>>`: A RRsets by name digest, one map per
    /// name class, in the order of [`super::NAME_CLASSES`].
    pub const HOT_A: [&str; 2] = ["HOT_A_64", "HOT_A_256"];
    /// The same for AAAA RRsets (`HotEntry<N, 16>`).
    pub const HOT_AAAA: [&str; 2] = ["HOT_AAAA_64", "HOT_AAAA_256"];
    /// `PerCpuArray<u64>` indexed by [`super::Counter`].
    pub const COUNTERS: &str = "COUNTERS";
    /// `LpmTrie<ClientNetKey, HotSet<4>>`: the A answer of a
    /// client-dependent name, by service generation and client network.
    pub const CLIENT_NETS_A: &str = "CLIENT_NETS_A";
    /// The same for AAAA (`HotSet<16>`).
    pub const CLIENT_NETS_AAAA: &str = "CLIENT_NETS_AAAA";
    /// `PerCpuArray<u64>` of answers per policy branch, indexed by the
    /// values of [`super::HotSet::branches`].
    pub const BRANCH_ANSWERS: &str = "BRANCH_ANSWERS";
    /// `Array<CookieSecrets>` of one entry.
    pub const COOKIE_SECRETS: &str = "COOKIE_SECRETS";
    /// `HashMap<u32, guard::Guard>` of one entry, under key 0: our MAC, our
    /// addresses and the rate limit. A hash map rather than an array, so
    /// that an update replaces the value whole: no frame sees half of it.
    pub const GUARD: &str = "GUARD";
    /// `HashMap<[u8; 16], u8>`: the addresses answered on, as IPv6 (IPv4
    /// mapped); a frame to any other passes.
    pub const LOCAL_ADDRS: &str = "LOCAL_ADDRS";
    /// `LruHashMap<u64, guard::RrlBucket>`: the rate limit's buckets by
    /// client network (`guard::Guard::key`).
    pub const RRL_BUCKETS: &str = "RRL_BUCKETS";
    /// `LpmTrie<ClientNetKey, u8>`: client networks (IPv4 mapped, under
    /// service 0) the rate limit leaves alone.
    pub const RRL_EXEMPT: &str = "RRL_EXEMPT";
    /// `HashMap<signatures::SigKey, signatures::SigValue<L>>`: the RRSIG
    /// records of signed hot RRsets, one map per size class, in the order
    /// of [`super::signatures::SIG_CLASSES`].
    pub const SIGS: [&str; 2] = ["SIGS_256", "SIGS_640"];
    /// The answering XDP program.
    pub const PROGRAM: &str = "dnslb";
    /// An XDP program that passes everything: attached to a veth peer so that
    /// frames sent with `XDP_TX` are delivered to it.
    pub const PASS_PROGRAM: &str = "dnslb_pass";
    /// `u16`, host order: the UDP port the program answers on.
    pub const GLOBAL_DNS_PORT: &str = "DNS_PORT";
    /// `u16`, host order: the EDNS UDP payload size the server advertises.
    pub const GLOBAL_EDNS_PAYLOAD: &str = "EDNS_PAYLOAD";
    /// `u64`: the bits of the name digest used as the key. All of them,
    /// except in tests that force names to collide.
    pub const GLOBAL_DIGEST_MASK: &str = "DIGEST_MASK";
    /// `u16`: nonzero when the program logs its decisions (`--xdp-log`).
    pub const GLOBAL_XDP_LOG: &str = "XDP_LOG";
}

/// A query name as the kernel looks it up: wire format, ASCII lowercased,
/// zero-padded. Label lengths are at most 63, so lowercasing every byte of the
/// wire form never touches them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HotName {
    wire: [u8; MAX_NAME_LEN + 1],
    len: usize,
}

impl HotName {
    /// Builds the name from an uncompressed wire-format name (root label
    /// included). Returns `None` when it is not a well-formed name.
    pub fn from_wire(name: &[u8]) -> Option<HotName> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return None;
        }
        let mut key = HotName {
            wire: [0; MAX_NAME_LEN + 1],
            len: name.len(),
        };
        let mut label_at = 0;
        for (i, &byte) in name.iter().enumerate() {
            if i == label_at {
                if byte > 63 {
                    return None;
                }
                if byte == 0 {
                    return (i + 1 == name.len()).then_some(key);
                }
                label_at = i + 1 + byte as usize;
            }
            key.wire[i] = byte.to_ascii_lowercase();
        }
        None
    }

    /// The lowercased wire form.
    pub fn wire(&self) -> &[u8] {
        &self.wire[..self.len]
    }

    /// Length on the wire, root label included.
    /// Back from a map value's name, zero padded past its root label.
    pub fn from_padded(padded: &[u8]) -> Option<HotName> {
        let mut at = 0;
        while let Some(&label) = padded.get(at) {
            at += 1 + usize::from(label);
            if label == 0 {
                return HotName::from_wire(padded.get(..at)?);
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The index of the map class this name lives in.
    pub fn class(&self) -> usize {
        name_class(self.len)
    }

    /// The name as the kernel compares it: `N` bytes, zero past the name.
    pub fn padded<const N: usize>(&self) -> [u8; N] {
        let mut out = [0; N];
        let len = self.len.min(N);
        out[..len].copy_from_slice(&self.wire[..len]);
        out
    }

    /// The 64-bit digest the kernel computes while it reads the name: every
    /// 8-byte word of the padded name, then the length.
    pub fn digest(&self) -> u64 {
        let words = self.wire[..self.len.div_ceil(8) * 8].chunks_exact(8);
        let state = words.fold(DIGEST_SEED, |state, word| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(word);
            digest_step(state, u64::from_le_bytes(bytes))
        });
        digest_step(state, self.len as u64)
    }
}

/// How the kernel chooses among a hot name's endpoints.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// One endpoint, drawn with probability proportional to its weight.
    Weighted = 0,
    /// `answers` endpoints starting at a per-query rotating offset.
    RoundRobin = 1,
    /// The answer depends on the client's network: look the client's
    /// address (or its Client Subnet) up in the record type's client-net
    /// trie under [`HotSet::service`], and answer with the value found
    /// there (which is never itself `ByClient`).
    ByClient = 2,
}

/// Slots in `BRANCH_ANSWERS`. Slot 0 collects answers that belong to no
/// policy (plain zone records), so the kernel counts without a branch.
pub const BRANCH_SLOTS: u32 = 16384;

/// The client-net trie key: a service generation, then the client's
/// address as IPv6 (IPv4 mapped into `::ffff:0:0/96`), both in network
/// order, so a prefix length of `32 + n` matches the generation exactly and
/// the first `n` bits of the address. One trie serves both families.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientNetKey {
    pub service: [u8; 4],
    pub addr: [u8; 16],
}

/// Prefix bits of a [`ClientNetKey`] spent on the service generation.
pub const CLIENT_NET_SERVICE_BITS: u32 = 32;
/// Prefix bits before an IPv4 address mapped into IPv6.
pub const V4_MAPPED_BITS: u32 = 96;
/// The first 12 bytes of every IPv4-mapped address.
pub const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// [`HotSet::flags`]: the name is in a zone with DNSSEC records, so a
/// query with DO set is answered with signatures: those in the signature
/// maps under [`HotSet::signatures`], or, without them, by the daemon.
pub const SET_SIGNED: u8 = 1;

/// The kernel's answer material for one name's A (`W` = 4) or AAAA
/// (`W` = 16) RRset, fully precomputed: TTL and addresses are already in
/// network byte order, weights are already cumulative, so the program
/// picks and copies without arithmetic on policy.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HotSet<const W: usize> {
    /// TTL as it goes on the wire.
    pub ttl: [u8; 4],
    /// Sum of all weights; a weighted draw is `random % total_weight`.
    /// Never zero for a [`Selection::Weighted`] value.
    pub total_weight: u32,
    /// Valid entries in `addrs`, 0..=[`MAX_ENDPOINTS`]; 0 means the
    /// daemon answers this one (a policy the kernel cannot draw).
    pub endpoints: u8,
    /// Records per answer, 1..=`endpoints`.
    pub answers: u8,
    /// A [`Selection`] discriminant.
    pub selection: u8,
    /// [`SET_SIGNED`] or 0.
    pub flags: u8,
    /// The Client Subnet scope prefix an answer from this value carries
    /// (RFC 7871 §7.2.1): the length of the client network that decided
    /// it, 0 for answers that do not depend on the client.
    pub scope: u8,
    /// The [`signatures::SIG_CLASSES`] index of this value's signatures.
    pub sig_class: u8,
    /// Which signature an answer carries: its first endpoint's index
    /// masked by this. 0 where every answer is the same RRset in another
    /// order (one signature), `MAX_ENDPOINTS - 1` where each first
    /// endpoint starts a different RRset (a weighted pick, a window).
    pub variant_mask: u8,
    pub _pad: u8,
    /// For [`Selection::ByClient`]: the service generation to look up.
    pub service: u32,
    pub _reserved: u32,
    /// The [`signatures::SigKey::set`] of this value's signatures; 0 when
    /// the kernel holds none (DO queries for a signed name pass).
    pub signatures: u64,
    /// `cumulative[i]` is the sum of the weights of endpoints `0..=i`;
    /// entries past `endpoints` are `u16::MAX` so they are never chosen.
    pub cumulative: [u16; MAX_ENDPOINTS],
    /// The `BRANCH_ANSWERS` slot counting answers that start with each
    /// endpoint (0: not counted by branch).
    pub branches: [u16; MAX_ENDPOINTS],
    /// Addresses, network order.
    pub addrs: [[u8; W]; MAX_ENDPOINTS],
}

pub type HotA = HotSet<4>;
pub type HotAaaa = HotSet<16>;

impl<const W: usize> HotSet<W> {
    /// A value with no endpoints: the daemon answers.
    pub const EMPTY: HotSet<W> = HotSet {
        ttl: [0; 4],
        total_weight: 0,
        endpoints: 0,
        answers: 0,
        selection: Selection::RoundRobin as u8,
        flags: 0,
        scope: 0,
        sig_class: 0,
        variant_mask: 0,
        _pad: 0,
        service: 0,
        _reserved: 0,
        signatures: 0,
        cumulative: [u16::MAX; MAX_ENDPOINTS],
        branches: [0; MAX_ENDPOINTS],
        addrs: [[0; W]; MAX_ENDPOINTS],
    };
}

/// A hot-name map value: the name it answers for (lowercased, zero-padded
/// to the class size `N`), compared in full after the digest matched, and
/// the RRset.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotEntry<const N: usize, const W: usize> {
    pub name: [u8; N],
    pub set: HotSet<W>,
}

/// Per-CPU counters. Every packet the program sees lands in exactly one of
/// them, so their sum is the number of packets seen.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Answered from the kernel with `XDP_TX`.
    Answered = 0,
    /// Not UDP to the serving port (ARP, TCP, other ports, ...), or not
    /// sent to us alone (multicast and broadcast frames).
    PassNotDns,
    /// DNS we do not answer in the kernel: IPv6 extension headers, IP
    /// fragments, opcodes other than QUERY, unusual section counts or flags.
    PassUnsupported,
    /// A well-formed query, but not for A or AAAA in class IN.
    PassQtype,
    /// A well-formed A or AAAA query for a name the kernel does not hold.
    PassNotHot,
    /// EDNS the daemon must handle: version > 0, a malformed or repeated
    /// cookie or Client Subnet, too many options.
    PassEdns,
    /// Truncated or malformed headers, names or records.
    PassMalformed,
    /// The answer would not fit the client's UDP payload size.
    PassTooBig,
    /// Not addressed to this host: another MAC, or an IP address the
    /// daemon does not listen on (or the daemon has not said yet).
    PassNotOurs,
    /// Dropped: a DNS response (QR=1) sent to our port, which can never
    /// be a question for us (reflected traffic, or a spoofing probe).
    DropResponse,
    /// Over the client network's rate: sent truncated (TC=1), so that a
    /// real resolver asks again over TCP.
    RateSlipped,
    /// Over the client network's rate: dropped.
    RateDropped,
    /// A DO query for a name in a signed zone whose answer the kernel
    /// holds no signatures for: none written, none for the RRset drawn,
    /// or past the time they must be renewed by.
    PassUnsigned,
}

impl Counter {
    pub const ALL: [Counter; 13] = [
        Counter::Answered,
        Counter::PassNotDns,
        Counter::PassUnsupported,
        Counter::PassQtype,
        Counter::PassNotHot,
        Counter::PassEdns,
        Counter::PassMalformed,
        Counter::PassTooBig,
        Counter::PassNotOurs,
        Counter::DropResponse,
        Counter::RateSlipped,
        Counter::RateDropped,
        Counter::PassUnsigned,
    ];

    /// The `reason` label of `dnslb_xdp_passed_total`, or `None` for the
    /// packets that did not pass (answered, slipped or dropped).
    pub const fn pass_reason(self) -> Option<&'static str> {
        match self {
            Counter::Answered => None,
            Counter::PassNotDns => Some("not_dns"),
            Counter::PassUnsupported => Some("unsupported"),
            Counter::PassQtype => Some("qtype"),
            Counter::PassNotHot => Some("not_hot"),
            Counter::PassEdns => Some("edns"),
            Counter::PassMalformed => Some("malformed"),
            Counter::PassTooBig => Some("too_big"),
            Counter::PassNotOurs => Some("not_ours"),
            Counter::PassUnsigned => Some("unsigned"),
            Counter::DropResponse | Counter::RateSlipped | Counter::RateDropped => None,
        }
    }
}

pub const COUNTER_COUNT: u32 = Counter::ALL.len() as u32;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are `#[repr(C)]` structs of integers and byte arrays with
    // no implicit padding (sizes are asserted below), so every bit pattern is
    // a valid value and there are no uninitialised bytes to leak.
    unsafe impl<const N: usize, const W: usize> aya::Pod for super::HotEntry<N, W> {}
    unsafe impl<const W: usize> aya::Pod for super::HotSet<W> {}
    unsafe impl aya::Pod for super::ClientNetKey {}
    unsafe impl aya::Pod for super::cookie::CookieSecrets {}
    unsafe impl aya::Pod for super::guard::Guard {}
    unsafe impl aya::Pod for super::guard::RrlBucket {}
    unsafe impl aya::Pod for super::signatures::SigKey {}
    unsafe impl<const L: usize> aya::Pod for super::signatures::SigValue<L> {}

    const _: () = assert!(core::mem::size_of::<super::HotA>() == 32 + 32 + 32 + 64);
    const _: () = assert!(core::mem::size_of::<super::HotAaaa>() == 32 + 32 + 32 + 256);
    const _: () = assert!(core::mem::size_of::<super::HotEntry<64, 4>>() == 64 + 160);
    const _: () = assert!(core::mem::size_of::<super::signatures::SigKey>() == 16);
    const _: () = assert!(core::mem::size_of::<super::signatures::SigValue<256>>() == 16 + 256);
    const _: () = assert!(core::mem::size_of::<super::signatures::SigValue<640>>() == 16 + 640);
    const _: () = assert!(core::mem::size_of::<super::ClientNetKey>() == 20);
    const _: () = assert!(core::mem::size_of::<super::cookie::CookieSecrets>() == 48);
    const _: () = assert!(core::mem::size_of::<super::guard::Guard>() == 48 + 16 + 64);
    const _: () = assert!(core::mem::size_of::<super::guard::RrlBucket>() == 16);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_and_padded() {
        let name = HotName::from_wire(b"\x03WwW\x07Example\x03COM\x00").unwrap();
        assert_eq!((name.len(), name.class()), (17, 0));
        let padded = name.padded::<64>();
        assert_eq!(&padded[..17], b"\x03www\x07example\x03com\x00");
        assert!(padded[17..].iter().all(|&b| b == 0));
    }

    #[test]
    fn digests_ignore_case_and_tell_names_apart() {
        let digest = |wire: &[u8]| HotName::from_wire(wire).unwrap().digest();
        assert_eq!(digest(b"\x03WWW\x00"), digest(b"\x03www\x00"));
        assert_ne!(digest(b"\x03www\x00"), digest(b"\x03wwx\x00"));
        assert_ne!(digest(b"\x01a\x00"), digest(b"\x01a\x01a\x00"));
    }

    #[test]
    fn classes_hold_their_lengths() {
        let classes: [usize; 5] = [1, 32, 64, 65, 255].map(name_class);
        assert_eq!(classes, [0, 0, 0, 1, 1]);
        for (class, size) in NAME_CLASSES.iter().enumerate() {
            assert_eq!(name_class(*size), class);
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert!(HotName::from_wire(b"").is_none());
        assert!(HotName::from_wire(b"\x03www").is_none(), "no root label");
        assert!(
            HotName::from_wire(b"\x01a\x00\x00").is_none(),
            "trailing bytes"
        );
        assert!(
            HotName::from_wire(b"\xc0\x0c").is_none(),
            "compression pointer"
        );
        let mut long = [1u8; 256];
        long[255] = 0;
        assert!(HotName::from_wire(&long).is_none(), "over 255 bytes");
    }
}
