//! The contract between dnslb's XDP program and its daemon.
//!
//! Everything the kernel reads from userspace, and everything userspace reads
//! back, is defined here once, as `#[repr(C)]` plain data. Userspace does all
//! the thinking (weights, rotation sets, pre-encoded TTLs and addresses) so the
//! kernel program only copies bytes.
#![cfg_attr(not(test), no_std)]

/// Longest domain name on the wire, root label included (RFC 1035 §3.1).
pub const MAX_NAME_LEN: usize = 255;

/// Endpoints one hot name can carry in the kernel.
pub const MAX_ENDPOINTS: usize = 16;

/// UDP payload limit for answers to queries without EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// Hot names are kept in one map per size class, so that a short name is
/// hashed and compared as a 32-byte key rather than a 256-byte one. A name
/// of `len` wire bytes lives in the first class that holds it.
pub const NAME_CLASSES: [usize; 4] = [32, 64, 128, 256];

/// The index into [`NAME_CLASSES`] for a name of `len` wire bytes.
pub const fn name_class(len: usize) -> usize {
    if len <= 32 {
        0
    } else if len <= 64 {
        1
    } else if len <= 128 {
        2
    } else {
        3
    }
}

/// Map and program names, shared so a rename cannot split the two sides.
pub mod names {
    /// `HashMap<NameKey<N>, HotA>` for each of the name classes, in order.
    pub const HOT_A: [&str; 4] = ["HOT_A_32", "HOT_A_64", "HOT_A_128", "HOT_A_256"];
    /// `PerCpuArray<u64>` indexed by [`super::Counter`].
    pub const COUNTERS: &str = "COUNTERS";
    /// `LpmTrie<ClientNet, HotA>`: the answer for a client-dependent name,
    /// by service generation and client network.
    pub const CLIENT_NETS: &str = "CLIENT_NETS";
    /// `PerCpuArray<u64>` of answers per policy branch, indexed by the
    /// values of [`super::HotA::branches`].
    pub const BRANCH_ANSWERS: &str = "BRANCH_ANSWERS";
    /// The answering XDP program.
    pub const PROGRAM: &str = "dnslb";
    /// An XDP program that passes everything: attached to a veth peer so that
    /// frames sent with `XDP_TX` are delivered to it.
    pub const PASS_PROGRAM: &str = "dnslb_pass";
    /// `u16`, host order: the UDP port the program answers on.
    pub const GLOBAL_DNS_PORT: &str = "DNS_PORT";
    /// `u16`, host order: the EDNS UDP payload size the server advertises.
    pub const GLOBAL_EDNS_PAYLOAD: &str = "EDNS_PAYLOAD";
}

/// A map key: the first `N` bytes of a [`HotName`]'s padded wire form.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NameKey<const N: usize> {
    pub wire: [u8; N],
}

/// A query name as the kernel looks it up: wire format, ASCII lowercased,
/// zero-padded. Label lengths are at most 63, so lowercasing every byte of the
/// wire form never touches them, and the padding keeps keys unique.
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

    /// The map key of class size `N`; meaningful when `N` is this name's class.
    pub fn key<const N: usize>(&self) -> NameKey<N> {
        let mut wire = [0; N];
        wire.copy_from_slice(&self.wire[..N]);
        NameKey { wire }
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
    /// address up in `CLIENT_NETS` under [`HotA::service`], and answer with
    /// the value found there (which is never itself `ByClient`).
    ByClient = 2,
}

/// Slots in `BRANCH_ANSWERS`. Slot 0 collects answers that belong to no
/// policy (plain zone records), so the kernel counts without a branch.
pub const BRANCH_SLOTS: u32 = 16384;

/// The `CLIENT_NETS` key: a service generation, then an IPv4 address, both
/// in network order so that a prefix length of `32 + n` matches the
/// generation exactly and the first `n` bits of the address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientNet {
    pub service: [u8; 4],
    pub addr: [u8; 4],
}

/// Prefix bits of a [`ClientNet`] spent on the service generation.
pub const CLIENT_NET_SERVICE_BITS: u32 = 32;

/// The kernel's answer material for one name's A RRset, fully precomputed:
/// TTL and addresses are already in network byte order, weights are already
/// cumulative, so the program picks and copies without arithmetic on policy.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotA {
    /// TTL as it goes on the wire.
    pub ttl: [u8; 4],
    /// Sum of all weights; a weighted draw is `random % total_weight`.
    /// Never zero for a [`Selection::Weighted`] value.
    pub total_weight: u32,
    /// Valid entries in `addrs`, 1..=[`MAX_ENDPOINTS`].
    pub endpoints: u8,
    /// Records per answer, 1..=`endpoints`.
    pub answers: u8,
    /// A [`Selection`] discriminant.
    pub selection: u8,
    pub _pad: u8,
    /// `cumulative[i]` is the sum of the weights of endpoints `0..=i`;
    /// entries past `endpoints` are `u16::MAX` so they are never chosen.
    pub cumulative: [u16; MAX_ENDPOINTS],
    /// IPv4 addresses, network order.
    pub addrs: [[u8; 4]; MAX_ENDPOINTS],
    /// For [`Selection::ByClient`]: the service generation to look up.
    pub service: u32,
    /// The `BRANCH_ANSWERS` slot counting answers that start with each
    /// endpoint (0: not counted by branch).
    pub branches: [u16; MAX_ENDPOINTS],
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
    /// DNS we do not answer in the kernel: IPv6, IP fragments, opcodes other
    /// than QUERY, unusual section counts or flags.
    PassUnsupported,
    /// A well-formed query, but not for QTYPE A / QCLASS IN.
    PassNotAIn,
    /// A well-formed A/IN query for a name the kernel does not hold.
    PassNotHot,
    /// EDNS that userspace must handle: DO bit, version > 0, any option.
    PassEdns,
    /// Truncated or malformed headers, names or records.
    PassMalformed,
    /// The answer would not fit the client's UDP payload size.
    PassTooBig,
}

impl Counter {
    pub const ALL: [Counter; 8] = [
        Counter::Answered,
        Counter::PassNotDns,
        Counter::PassUnsupported,
        Counter::PassNotAIn,
        Counter::PassNotHot,
        Counter::PassEdns,
        Counter::PassMalformed,
        Counter::PassTooBig,
    ];

    /// The `reason` label of `dnslb_xdp_passed_total`, or `None` for
    /// [`Counter::Answered`].
    pub const fn pass_reason(self) -> Option<&'static str> {
        match self {
            Counter::Answered => None,
            Counter::PassNotDns => Some("not_dns"),
            Counter::PassUnsupported => Some("unsupported"),
            Counter::PassNotAIn => Some("not_a_in"),
            Counter::PassNotHot => Some("not_hot"),
            Counter::PassEdns => Some("edns"),
            Counter::PassMalformed => Some("malformed"),
            Counter::PassTooBig => Some("too_big"),
        }
    }
}

pub const COUNTER_COUNT: u32 = Counter::ALL.len() as u32;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both are `#[repr(C)]` structs of integers and byte arrays with
    // no implicit padding (sizes are asserted below), so every bit pattern is
    // a valid value and there are no uninitialised bytes to leak.
    unsafe impl<const N: usize> aya::Pod for super::NameKey<N> {}
    unsafe impl aya::Pod for super::HotA {}
    unsafe impl aya::Pod for super::ClientNet {}

    const _: () = assert!(core::mem::size_of::<super::NameKey<32>>() == 32);
    const _: () = assert!(core::mem::size_of::<super::HotA>() == 4 + 4 + 4 + 32 + 64 + 4 + 32);
    const _: () = assert!(core::mem::size_of::<super::ClientNet>() == 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_lowercase_and_padded() {
        let name = HotName::from_wire(b"\x03WwW\x07Example\x03COM\x00").unwrap();
        assert_eq!((name.len(), name.class()), (17, 0));
        let key = name.key::<32>();
        assert_eq!(&key.wire[..17], b"\x03www\x07example\x03com\x00");
        assert!(key.wire[17..].iter().all(|&b| b == 0));
    }

    #[test]
    fn classes_hold_their_lengths() {
        let classes: [usize; 6] = [1, 32, 33, 64, 129, 255].map(name_class);
        assert_eq!(classes, [0, 0, 1, 1, 3, 3]);
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
