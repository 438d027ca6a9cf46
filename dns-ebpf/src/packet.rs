//! Ethernet / IPv4 / UDP: finding the DNS payload, and turning the frame
//! around once the answer is in place.

use aya_ebpf::programs::XdpContext;
use dns_common::Counter;

use crate::{DNS_PORT, config};

const ETH_LEN: usize = 14;
const VLAN_LEN: usize = 4;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const IPV4_MIN_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const IPPROTO_UDP: u8 = 17;
pub const UDP_LEN: usize = 8;
/// The TTL we send answers with, as Linux does by default.
const REPLY_TTL: u8 = 64;

/// Where a UDP datagram to the DNS port sits in the frame.
pub struct Datagram {
    /// Offset of the IPv4 header: after Ethernet and an optional VLAN tag.
    pub l3: usize,
    /// Offset of the UDP header.
    pub l4: usize,
    /// UDP payload length, as both the IP and the UDP header agree.
    pub payload_len: usize,
    /// The client's IPv4 address, network order.
    pub source: [u8; 4],
}

impl Datagram {
    pub fn payload(&self) -> usize {
        self.l4 + UDP_LEN
    }
}

/// Returns a pointer to `len` bytes at `offset`, if the frame holds them.
#[inline(always)]
pub fn bytes_at(ctx: &XdpContext, offset: usize, len: usize) -> Option<*mut u8> {
    let start = ctx.data();
    if start + offset + len > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut u8)
}

#[inline(always)]
fn read_u16(p: *const u8) -> u16 {
    // SAFETY: callers only pass pointers obtained from `bytes_at` with enough
    // length for this read; packet data has no alignment guarantee, hence
    // the unaligned read.
    u16::from_be(unsafe { (p as *const u16).read_unaligned() })
}

/// Finds an IPv4 UDP datagram to our port, or says why this frame is not one.
#[inline(always)]
pub fn find_datagram(ctx: &XdpContext) -> Result<Datagram, Counter> {
    let eth = bytes_at(ctx, 0, ETH_LEN).ok_or(Counter::PassNotDns)?;
    // SAFETY: `eth` covers ETH_LEN bytes.
    if unsafe { *eth } & 1 != 0 {
        // Multicast or broadcast (neighbour discovery, mDNS, ...): never a
        // unicast question to this server.
        return Err(Counter::PassNotDns);
    }
    let mut ethertype = read_u16(eth.wrapping_add(12));
    let mut l3 = ETH_LEN;
    if ethertype == ETH_P_8021Q {
        let tag = bytes_at(ctx, ETH_LEN, VLAN_LEN).ok_or(Counter::PassMalformed)?;
        ethertype = read_u16(tag.wrapping_add(2));
        l3 += VLAN_LEN;
    }
    match ethertype {
        ETH_P_IPV4 => {}
        ETH_P_IPV6 => return Err(ipv6_reason(ctx, l3)),
        ETH_P_8021Q => return Err(Counter::PassUnsupported),
        _ => return Err(Counter::PassNotDns),
    }

    let ip = bytes_at(ctx, l3, IPV4_MIN_LEN).ok_or(Counter::PassMalformed)?;
    // SAFETY (all reads from `ip` below): `ip` covers IPV4_MIN_LEN bytes.
    let version_ihl = unsafe { *ip };
    let header_len = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || header_len < IPV4_MIN_LEN {
        return Err(Counter::PassMalformed);
    }
    if unsafe { *ip.wrapping_add(9) } != IPPROTO_UDP {
        return Err(Counter::PassNotDns);
    }
    if read_u16(ip.wrapping_add(6)) & 0x3fff != 0 {
        // More-fragments set or a non-zero offset: only the daemon's socket
        // sees the reassembled datagram.
        return Err(Counter::PassUnsupported);
    }
    let total_len = read_u16(ip.wrapping_add(2)) as usize;
    // SAFETY: bytes 12..16 of the IPV4_MIN_LEN bytes `ip` covers.
    let source = unsafe { (ip.wrapping_add(12) as *const [u8; 4]).read_unaligned() };

    let l4 = l3 + header_len;
    let udp = bytes_at(ctx, l4, UDP_LEN).ok_or(Counter::PassMalformed)?;
    if read_u16(udp.wrapping_add(2)) != config(&DNS_PORT) {
        return Err(Counter::PassNotDns);
    }
    let udp_len = read_u16(udp.wrapping_add(4)) as usize;
    let frame_len = ctx.data_end() - ctx.data();
    if read_u16(udp) == 0
        || udp_len < UDP_LEN
        || total_len != header_len + udp_len
        || l3 + total_len > frame_len
    {
        return Err(Counter::PassMalformed);
    }
    Ok(Datagram {
        l3,
        l4,
        payload_len: udp_len - UDP_LEN,
        source,
    })
}

/// IPv6 is answered by the daemon for now: count UDP to our port (without
/// extension headers) as DNS we do not handle, the rest as not DNS.
#[inline(always)]
fn ipv6_reason(ctx: &XdpContext, l3: usize) -> Counter {
    let Some(ip) = bytes_at(ctx, l3, IPV6_LEN + UDP_LEN) else {
        return Counter::PassNotDns;
    };
    // SAFETY: `ip` covers the IPv6 header and a UDP header after it.
    let next_header = unsafe { *ip.wrapping_add(6) };
    if next_header == IPPROTO_UDP && read_u16(ip.wrapping_add(IPV6_LEN + 2)) == config(&DNS_PORT) {
        Counter::PassUnsupported
    } else {
        Counter::PassNotDns
    }
}

/// One's-complement update of an Internet checksum when a 16-bit word of
/// the covered data changes from `old` to `new` (RFC 1624, eqn. 3). Works in
/// either byte order as long as all three values use the same one.
#[inline(always)]
fn checksum_update(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!check as u32) + (!old as u32) + (new as u32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Turns the frame around: swaps MAC, IP and port pairs, sets the IP total
/// length, TTL and checksum, and the UDP length, for a payload of
/// `payload_len` bytes. The UDP checksum is set to zero, which IPv4 allows
/// (RFC 768) and which every stack accepts.
///
/// `eth`, `ip` and `udp` must each be checked to cover their header.
#[inline(always)]
pub fn turn_around(
    eth: *mut u8,
    ip: *mut u8,
    udp: *mut u8,
    payload_len: usize,
    ip_header_len: usize,
) {
    // SAFETY (whole body): the caller checked that each pointer covers its
    // header (14, 20 and 8 bytes); all accesses stay within those.
    unsafe {
        for i in 0..6 {
            core::ptr::swap(eth.add(i), eth.add(6 + i));
        }

        let ip_words = ip as *mut u16;
        let old_len = ip_words.add(1).read_unaligned();
        let new_len = ((ip_header_len + UDP_LEN + payload_len) as u16).to_be();
        let old_ttl_proto = ip_words.add(4).read_unaligned();
        *ip.add(8) = REPLY_TTL;
        let new_ttl_proto = ip_words.add(4).read_unaligned();
        ip_words.add(1).write_unaligned(new_len);
        let mut check = ip_words.add(5).read_unaligned();
        check = checksum_update(check, old_len, new_len);
        check = checksum_update(check, old_ttl_proto, new_ttl_proto);
        ip_words.add(5).write_unaligned(check);
        // Swapping source and destination leaves the checksum as it is.
        let addrs = ip.add(12) as *mut u32;
        let source = addrs.read_unaligned();
        addrs.write_unaligned(addrs.add(1).read_unaligned());
        addrs.add(1).write_unaligned(source);

        let udp_words = udp as *mut u16;
        let source_port = udp_words.read_unaligned();
        udp_words.write_unaligned(udp_words.add(1).read_unaligned());
        udp_words.add(1).write_unaligned(source_port);
        udp_words
            .add(2)
            .write_unaligned(((UDP_LEN + payload_len) as u16).to_be());
        udp_words.add(3).write_unaligned(0);
    }
}
